import Crypto
import FoundationEssentials
import Postgres
import SystemSupport

/// One `NNNN_description.sql` file, read and normalised.
public struct MigrationFile: Sendable {
    /// The number before the first underscore; `1` and `0001` are the same version.
    public var version: Int64
    /// The part between the first underscore and `.sql`.
    public var name: String
    /// The file name as it is on disk, e.g. `0007_add_index.sql`.
    public var fileName: String
    /// The path shown to people: the migrations folder as the user gave it, joined with the file name.
    public var displayPath: String
    /// The content with a UTF-8 BOM removed and CRLF turned into LF: what is checksummed and sent to the server.
    public var content: String
    /// `sha256:` and the hex digest of `content`'s UTF-8 bytes.
    public var checksum: String
    /// False when the file's leading comments hold `-- migrator:no-transaction`.
    public var transactional: Bool
    /// True when they hold `-- migrator:irreversible`: a plan that would reverse it stops before anything runs.
    public var irreversible = false

    /// The version and name as people read them: `0007_add_index`.
    public var label: String { String(fileName.dropLast(4)) }

    static let noTransactionDirective = "migrator:no-transaction"
    static let irreversibleDirective = "migrator:irreversible"
    /// `-- migrator:lint-ignore rule-id: reason` excuses the statement after it from a lint rule (the Lint module reads
    /// it). It belongs above a statement, so unlike the other directive it may stand anywhere in the file.
    public static let lintIgnoreDirective = "migrator:lint-ignore"

    /// Whether a comment's text (after the dashes) is a lint excuse: the directive, then white space, `:` or nothing.
    public static func isLintIgnore(_ comment: some StringProtocol) -> Bool {
        guard comment.lowercased().hasPrefix(lintIgnoreDirective) else { return false }
        let next = comment.dropFirst(lintIgnoreDirective.count).first
        return next == nil || next == ":" || next!.isWhitespace
    }

    /// A file named on the command line (`migrator lint FILE`), read and normalised as the folder's files are. Its
    /// name need not be numbered; the version is then 0.
    /// - Throws: ``MigrationError`` `.invalidMigrationFile` when it cannot be read, is not UTF-8 or has a bad directive.
    public static func read(path: String) throws(MigrationError) -> MigrationFile {
        let fileName = path.split(separator: "/").last.map(String.init) ?? path
        var version: Int64 = 0
        var name = fileName.hasSuffix(".sql") ? String(fileName.dropLast(4)) : fileName
        if case .success(let parsed) = MigrationDirectory.parse(fileName: fileName) { (version, name) = parsed }
        let entry = MigrationDirectory.Entry(version: version, name: name, fileName: fileName, displayPath: path, path: path)
        return try entry.load()
    }

    /// Normalises raw bytes and reads the directive.
    /// - Throws: ``MigrationError`` `.invalidMigrationFile` when the bytes are not UTF-8 or a directive is unknown.
    init(version: Int64, name: String, fileName: String, displayPath: String, bytes: [UInt8]) throws(MigrationError) {
        self.version = version
        self.name = name
        self.fileName = fileName
        self.displayPath = displayPath
        let normalised = Self.normalise(bytes)
        guard let content = String(validating: normalised, as: UTF8.self) else {
            let (line, column) = Self.firstInvalidUTF8(normalised)
            throw MigrationError(
                code: .invalidMigrationFile,
                message: "the file is not valid UTF-8; save it as UTF-8 (a BOM and CRLF line endings are accepted)",
                location: SourceLocation(file: displayPath, line: line, column: column)
            )
        }
        // libpq sends the text as a C string: everything after a NUL byte would be dropped without a word, and the
        // file recorded as applied.
        if let nul = normalised.firstIndex(of: 0) {
            let before = Array(String(decoding: normalised[..<nul], as: UTF8.self).unicodeScalars)
            let lineStart = (before.lastIndex(of: "\n") ?? -1) + 1
            let line = before.count { $0 == "\n" } + 1
            let column = before.count - lineStart + 1
            throw MigrationError(
                code: .invalidMigrationFile,
                message: "the file contains a NUL byte, which PostgreSQL cannot receive (everything after it would be "
                    + "lost); remove it",
                location: SourceLocation(file: displayPath, line: line, column: column)
            )
        }
        self.content = content
        self.checksum = "sha256:" + TextFormat.hex(SHA256.hash(data: normalised))
        (self.transactional, self.irreversible) = try Self.readDirectives(content, displayPath: displayPath)
    }

    /// The bytes with a BOM removed and CRLF turned into LF: what is checksummed.
    static func normalise(_ bytes: [UInt8]) -> [UInt8] {
        var slice = bytes[...]
        if slice.starts(with: [0xEF, 0xBB, 0xBF]) { slice = slice.dropFirst(3) }
        return crlfToLF(slice)
    }

    /// The checksum of raw file bytes, without decoding them: enough to confirm an applied file is unchanged.
    static func checksum(ofFileBytes bytes: [UInt8]) -> String {
        "sha256:" + TextFormat.hex(SHA256.hash(data: normalise(bytes)))
    }

    private static func crlfToLF(_ bytes: ArraySlice<UInt8>) -> [UInt8] {
        guard bytes.contains(0x0D) else { return Array(bytes) }
        var output: [UInt8] = []
        output.reserveCapacity(bytes.count)
        var index = bytes.startIndex
        while index < bytes.endIndex {
            let byte = bytes[index]
            if byte == 0x0D, bytes.index(after: index) < bytes.endIndex, bytes[bytes.index(after: index)] == 0x0A {
                index = bytes.index(after: index)
                continue
            }
            output.append(byte)
            index = bytes.index(after: index)
        }
        return output
    }

    /// Where decoding first fails, as 1-based line and byte column, so the message can point at it.
    private static func firstInvalidUTF8(_ bytes: [UInt8]) -> (Int, Int) {
        var line = 1
        var lineStart = 0
        var index = 0
        while index < bytes.count {
            let byte = bytes[index]
            let length: Int
            switch byte {
            case 0x00...0x7F: length = 1
            case 0xC2...0xDF: length = 2
            case 0xE0...0xEF: length = 3
            case 0xF0...0xF4: length = 4
            default: return (line, index - lineStart + 1)
            }
            if index + length > bytes.count || String(validating: bytes[index..<(index + length)], as: UTF8.self) == nil {
                return (line, index - lineStart + 1)
            }
            if byte == 0x0A {
                line += 1
                lineStart = index + 1
            }
            index += length
        }
        return (line, index - lineStart + 1)
    }

    /// Reads the directives in the comment lines before the first statement. An unknown `migrator:` directive is an
    /// error, so that a misspelt one never silently turns a migration transactional.
    private static func readDirectives(_ content: String, displayPath: String) throws(MigrationError) -> (transactional: Bool, irreversible: Bool) {
        var transactional = true
        var irreversible = false
        var lineNumber = 0
        var inHeader = true
        var rest = Substring(content)
        while !rest.isEmpty {
            let end = rest.firstIndex(of: "\n") ?? rest.endIndex
            let line = rest[..<end]
            rest = end < rest.endIndex ? rest[rest.index(after: end)...] : rest[end...]
            lineNumber += 1
            let trimmed = line.trimmingWhitespace()
            if trimmed.isEmpty { continue }
            if !trimmed.hasPrefix("--") { inHeader = false }
            // `--- migrator:…` is the same comment with more dashes.
            let comment = trimmed.hasPrefix("--") ? String(trimmed.drop { $0 == "-" }).trimmingWhitespace() : ""
            guard comment.lowercased().hasPrefix("migrator:"), !isLintIgnore(comment) else { continue }
            guard inHeader else {
                // After SQL or a /* */ comment a directive would be ignored: say so instead of running the file
                // the other way.
                throw MigrationError(
                    code: .invalidMigrationFile,
                    message: "'\(comment)' is not in the file's first comment lines, where directives are read",
                    location: SourceLocation(file: displayPath, line: lineNumber, column: 1),
                    hint: "move it above the first statement and any /* */ comment (only `--` comment lines may come before it)"
                )
            }
            if comment.lowercased() == noTransactionDirective {
                transactional = false
            } else if comment.lowercased() == irreversibleDirective {
                irreversible = true
            } else {
                throw MigrationError(
                    code: .invalidMigrationFile,
                    message: "unknown directive '\(comment)'; the directives are '-- \(noTransactionDirective)' and "
                        + "'-- \(irreversibleDirective)' (in the first comment lines) and '-- \(lintIgnoreDirective) rule-id: "
                        + "reason' (above a statement)",
                    location: SourceLocation(file: displayPath, line: lineNumber, column: 1)
                )
            }
        }
        return (transactional, irreversible)
    }
}
