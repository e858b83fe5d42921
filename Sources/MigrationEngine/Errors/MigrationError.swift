/// Why a run stopped, as data: a code, the problems found (each with its place in a file when it has one, the
/// server's fields, a hint and notes), and what the run had applied by then.
///
/// Nothing here is terminal text: the CLI renders it compiler-style (`file:line:column: error: …`, the line with a
/// caret, then `hint:` and `note:` lines) and `--json` prints the fields. Exit codes are the CLI's business.
public struct MigrationError: Error, Sendable, CustomStringConvertible {
    public enum Code: String, Sendable, Codable {
        /// A file in the migrations folder is misnamed, duplicated, unreadable, not UTF-8 or cannot be split.
        case invalidMigrationFile
        /// The folder and the history disagree: an applied file changed or is gone, a new file is numbered below
        /// the newest applied one, or a failed migration cannot be resumed as it is now.
        case historyMismatch
        /// A migration's SQL failed; nothing of it remains (or, outside a transaction, the history says how far
        /// it got).
        case migrationFailed
        /// A post-migrate hook failed.
        case hookFailed
        /// Other input given to the run is unusable (a configuration file a hook reads, for instance).
        case invalidInput
        /// The database could not be reached or refused the connection.
        case connectionFailed
        /// Another runner held the lock past `--lock-timeout`.
        case lockTimeout
        /// The server is a read-only standby, or the session is read-only.
        case readOnly
        /// Any other database error while reading or writing the history.
        case databaseError
        /// ``MigratorOptions/stopRequested`` asked the run to end: it stopped while waiting for the lock or between
        /// two migrations (or before the hooks), never inside one. What it had applied stays; the rest is pending.
        case stopped
    }

    public var code: Code
    /// Every problem found, at least one; a check that looks at many files lists them all at once.
    public var diagnostics: [Diagnostic]
    /// About the run as a whole ("nothing was applied; …"), after the diagnostics.
    public var notes: [String] = []
    /// Migrations that this run applied before it stopped, as `0005_add_sites` labels.
    public var appliedBeforeFailure: [String] = []

    public init(code: Code, diagnostics: [Diagnostic], notes: [String] = []) {
        precondition(!diagnostics.isEmpty, "an error says what went wrong")
        self.code = code
        self.diagnostics = diagnostics
        self.notes = notes
    }

    /// One problem.
    public init(
        code: Code, message: String, location: SourceLocation? = nil, hint: String? = nil, notes: [String] = [],
        server: ServerDiagnostics? = nil
    ) {
        self.init(code: code, diagnostics: [
            Diagnostic(message: message, location: location, server: server, hint: hint, notes: notes),
        ])
    }

    /// The first problem's message: what went wrong, in one sentence.
    public var message: String { diagnostics[0].message }

    /// The server's error behind the first problem, when there was one.
    public var serverError: ServerDiagnostics? { diagnostics[0].server }

    /// Whether a hook or a migration failed: the runs whose report says what was applied before the failure.
    public var reportsAppliedMigrations: Bool { code == .migrationFailed || code == .hookFailed }

    /// Adds a note to the error as a whole.
    public func adding(note: String) -> MigrationError {
        var copy = self
        copy.notes.append(note)
        return copy
    }

    /// A plain one-line form for logs and wrapped errors (`file:line:column: message`); the CLI renders the full
    /// form, excerpt, hints and notes included.
    public var description: String {
        diagnostics.map { $0.summary }.joined(separator: "; ")
    }
}

/// One problem, the way a compiler reports it.
public struct Diagnostic: Sendable, Codable, Equatable {
    /// What went wrong, without an `error:` prefix.
    public var message: String
    /// Where, when it is in a file.
    public var location: SourceLocation?
    /// The server's fields, when the server reported it.
    public var server: ServerDiagnostics?
    /// What to do about it.
    public var hint: String?
    /// More about this problem.
    public var notes: [String] = []

    public init(
        message: String, location: SourceLocation? = nil, server: ServerDiagnostics? = nil, hint: String? = nil,
        notes: [String] = []
    ) {
        self.message = message
        self.location = location
        self.server = server
        self.hint = hint
        self.notes = notes
    }

    /// `file:line:column: message (SQLSTATE x)` on one line.
    public var summary: String {
        var text = location.map { "\($0.description): " } ?? ""
        text += message
        if let sqlState = server?.sqlState { text += " (SQLSTATE \(sqlState))" }
        return text
    }
}

/// A place in a file: its path as the user wrote it, and a 1-based line and column when known, with that line's
/// text (for the caret excerpt).
public struct SourceLocation: Sendable, Codable, Equatable, CustomStringConvertible {
    public var file: String
    public var line: Int?
    public var column: Int?
    /// The text of `line`, without its newline.
    public var lineText: String?

    public init(file: String, line: Int? = nil, column: Int? = nil, lineText: String? = nil) {
        self.file = file
        self.line = line
        self.column = column
        self.lineText = lineText
    }

    /// `file:line:column`, or `file` alone.
    public var description: String {
        guard let line, let column else { return file }
        return "\(file):\(line):\(column)"
    }

    enum CodingKeys: String, CodingKey { case file, line, column }
}

/// The server's diagnostic fields.
public struct ServerDiagnostics: Sendable, Codable, Equatable {
    public var sqlState: String?
    public var message: String
    public var detail: String?
    public var hint: String?
    public var context: String?
    /// The 1-based character position in the statement the server reported, when it did.
    public var position: Int?

    public init(
        sqlState: String?, message: String, detail: String? = nil, hint: String? = nil, context: String? = nil,
        position: Int? = nil
    ) {
        self.sqlState = sqlState
        self.message = message
        self.detail = detail
        self.hint = hint
        self.context = context
        self.position = position
    }
}
