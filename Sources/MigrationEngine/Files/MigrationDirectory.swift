import SystemSupport
#if canImport(Glibc)
import Glibc
#endif

/// The migrations folder: every `.sql` file in it, checked and in version order.
public struct MigrationDirectory: Sendable {
    /// The folder as the user gave it; messages show paths relative to it the way the user wrote it.
    public var path: String

    public init(path: String) {
        self.path = path
    }

    /// The expected form, quoted in every naming error.
    static let expectedForm = "NNNN_description.sql: a positive number, an underscore, a description (e.g. 0007_add_index.sql)"

    /// A migration found on disk whose content has not been read yet.
    public struct Entry: Sendable {
        public var version: Int64
        public var name: String
        public var fileName: String
        public var displayPath: String
        /// The path opened to read the file.
        public var path: String
        /// Its reverse, `NNNN_description.down.sql` beside it, when there is one.
        public var downFileName: String?
        public var downDisplayPath: String?

        /// Reads and normalises the down file, when there is one.
        public func loadDown() throws(MigrationError) -> MigrationFile? {
            guard let downFileName, let downDisplayPath else { return nil }
            let down = Entry(version: version, name: name, fileName: downFileName, displayPath: downDisplayPath, path: downDisplayPath)
            return try down.load()
        }

        /// Reads and normalises the file.
        public func load() throws(MigrationError) -> MigrationFile {
            try load(bytes: readBytes())
        }

        func load(bytes: [UInt8]) throws(MigrationError) -> MigrationFile {
            try MigrationFile(version: version, name: name, fileName: fileName, displayPath: displayPath, bytes: bytes)
        }

        func readBytes() throws(MigrationError) -> [UInt8] {
            guard let bytes = FileSystem.readFile(path) else {
                throw MigrationError(
                    code: .invalidMigrationFile,
                    message: "the file cannot be read (\(FileSystem.lastError())); check its permissions",
                    location: SourceLocation(file: displayPath)
                )
            }
            return bytes
        }
    }

    /// Lists the migrations, sorted by version.
    ///
    /// Files that do not end in `.sql` and hidden files (editor swap files, `.DS_Store`) are ignored. Every problem
    /// is collected, so one run shows all of them.
    /// - Throws: ``MigrationError`` `.invalidMigrationFile` naming each bad file and the expected form.
    public func entries() throws(MigrationError) -> [Entry] {
        guard FileSystem.kind(path) == .directory else {
            throw MigrationError(
                code: .invalidMigrationFile,
                message: "the migrations folder does not exist; "
                    + "create it, or point --migrations (MIGRATOR_MIGRATIONS) at the right one",
                location: SourceLocation(file: path)
            )
        }
        guard let names = FileSystem.list(path) else {
            throw MigrationError(
                code: .invalidMigrationFile,
                message: "the migrations folder cannot be read (\(FileSystem.lastError()))",
                location: SourceLocation(file: path)
            )
        }
        var problems: [Diagnostic] = []
        var byVersion: [Int64: Entry] = [:]
        var downs: [(version: Int64, name: String, fileName: String, displayPath: String)] = []
        for fileName in names.sorted() where !fileName.hasPrefix(".") && fileName.lowercased().hasSuffix(".sql") {
            let displayPath = Self.join(path, fileName)
            // `0007_add_index.down.sql` is the reverse of `0007_add_index.sql`, not a migration of its own.
            let isDown = fileName.hasSuffix(".down.sql")
            let parsed: (Int64, String)
            switch Self.parse(fileName: isDown ? String(fileName.dropLast(9)) + ".sql" : fileName) {
            case .success(let value): parsed = value
            case .failure(let reason):
                problems.append(Diagnostic(message: "\(reason); expected \(Self.expectedForm)", location: SourceLocation(file: displayPath)))
                continue
            }
            switch FileSystem.kind(displayPath) {
            case .missing:
                problems.append(Diagnostic(message: "the file cannot be read (a broken symbolic link?)", location: SourceLocation(file: displayPath)))
                continue
            case .directory:
                problems.append(Diagnostic(message: "this is a folder, not a migration file; rename or move it", location: SourceLocation(file: displayPath)))
                continue
            case .other:
                problems.append(Diagnostic(message: "this is not a regular file (a FIFO, socket or device); a migration must be a file", location: SourceLocation(file: displayPath)))
                continue
            case .file:
                break
            }
            if isDown {
                downs.append((parsed.0, parsed.1, fileName, displayPath))
                continue
            }
            let entry = Entry(version: parsed.0, name: parsed.1, fileName: fileName, displayPath: displayPath, path: displayPath)
            if let other = byVersion[parsed.0] {
                problems.append(Diagnostic(
                    message: "version \(parsed.0) is also used by \(other.displayPath); "
                        + "every migration needs its own number (1 and 0001 are the same version)",
                    location: SourceLocation(file: displayPath)
                ))
                continue
            }
            byVersion[parsed.0] = entry
        }
        for down in downs {
            guard let up = byVersion[down.version], up.name == down.name else {
                let expected = String(down.fileName.dropLast(9)) + ".sql"
                problems.append(Diagnostic(
                    message: "a down migration without its migration: \(expected) is not in the folder"
                        + (byVersion[down.version].map { " (version \(down.version) is \($0.fileName))" } ?? "")
                        + "; name the down file after the migration it reverses",
                    location: SourceLocation(file: down.displayPath)
                ))
                continue
            }
            byVersion[down.version]?.downFileName = down.fileName
            byVersion[down.version]?.downDisplayPath = down.displayPath
            _ = up
        }
        if !problems.isEmpty {
            throw MigrationError(code: .invalidMigrationFile, diagnostics: problems)
        }
        return byVersion.values.sorted { $0.version < $1.version }
    }

    enum NameProblem: Error, CustomStringConvertible {
        case reason(String)

        /// The reason alone, as the message says it.
        var description: String {
            switch self {
            case .reason(let text): text
            }
        }
    }

    /// Splits `0007_add_index.sql` into 7 and `add_index`, or says what is wrong with the name.
    static func parse(fileName: String) -> Result<(Int64, String), NameProblem> {
        let stem = fileName.dropLast(4)
        guard fileName.hasSuffix(".sql") else { return .failure(.reason("the extension must be lowercase .sql")) }
        guard let underscore = stem.firstIndex(of: "_") else {
            return .failure(.reason("the name has no '_' between the number and the description"))
        }
        let digits = stem[..<underscore]
        let name = stem[stem.index(after: underscore)...]
        guard !digits.isEmpty, digits.unicodeScalars.allSatisfy({ $0.isASCII && ("0"..."9").contains($0) }) else {
            return .failure(.reason("the name does not start with a number made of the digits 0-9"))
        }
        guard !name.isEmpty else { return .failure(.reason("the description after the '_' is empty")) }
        guard let version = Int64(digits) else {
            return .failure(.reason("the number is too large (at most \(Int64.max))"))
        }
        guard version > 0 else { return .failure(.reason("the number must be positive; 0 is not a version")) }
        return .success((version, String(name)))
    }

    static func join(_ folder: String, _ file: String) -> String {
        folder.hasSuffix("/") ? folder + file : folder + "/" + file
    }
}

extension MigrationDirectory.NameProblem {
    var text: String {
        switch self { case .reason(let text): text }
    }
}

