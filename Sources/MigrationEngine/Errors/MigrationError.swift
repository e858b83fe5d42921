/// Why a run stopped. `description` is what a person reads: what failed, where, and what to do.
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
    public var message: String
    /// Migrations that this run applied before it stopped, as `0005_add_sites` labels.
    public var appliedBeforeFailure: [String] = []
    /// The server's error, when there was one.
    public var serverError: SendablePostgresDetails?

    public init(code: Code, message: String, serverError: SendablePostgresDetails? = nil) {
        self.code = code
        self.message = message
        self.serverError = serverError
    }

    public var description: String {
        guard code == .migrationFailed || code == .hookFailed else { return message }
        if appliedBeforeFailure.isEmpty {
            return message + "\nnote: no migration was applied by this run"
        }
        return message + "\nnote: applied by this run before the failure: " + appliedBeforeFailure.joined(separator: ", ")
    }
}

/// The server's diagnostic fields, for `--json` output.
public struct SendablePostgresDetails: Sendable, Codable, Equatable {
    public var sqlState: String?
    public var message: String
    public var detail: String?
    public var hint: String?
    public var position: Int?
}
