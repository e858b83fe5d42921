import MigrationEngine
import SystemSupport

/// The projects `update-roles` is limited to: `--project-id N` (repeatable), `--project-ids 1,2,3` and
/// `--project-ids-from FILE` (`-` for standard input), in any mix. Ids are separated by commas and white space, one
/// per line or many; each is a positive whole number of ASCII digits below 2^63. An id given twice, in one form or in
/// two, counts once (the sync is limited to a set of projects): the list keeps each id's first place.
///
/// A list is read here, in one pass, rather than as thousands of repeated options: the argument parser's work grows
/// faster than the number of options it is given.
enum ProjectIDList {
    /// The largest id file read: ten million ids of 19 digits and a newline.
    static let maxFileBytes = 200 << 20

    /// What is wrong with one entry, and where it starts: a 1-based line and column (in Unicode scalars) and the
    /// line's text.
    struct Problem: Error, Equatable {
        var line: Int
        var column: Int
        var lineText: String
        var message: String
    }

    /// The ids in `bytes`, in order of first appearance, each once.
    static func parse(_ bytes: [UInt8]) throws(Problem) -> [Int64] {
        var ids: [Int64] = []
        var seen = Set<Int64>()
        var index = 0
        var line = 1
        var lineStart = 0
        func isSeparator(_ byte: UInt8) -> Bool {
            byte == UInt8(ascii: ",") || byte == 0x20 || byte == 0x09 || byte == 0x0A || byte == 0x0D
        }
        while index < bytes.count {
            let byte = bytes[index]
            if byte == 0x0A {
                line += 1
                lineStart = index + 1
            }
            if isSeparator(byte) {
                index += 1
                continue
            }
            let start = index
            while index < bytes.count, !isSeparator(bytes[index]) { index += 1 }
            let token = bytes[start..<index]
            if let id = id(token) {
                if seen.insert(id).inserted { ids.append(id) }
                continue
            }
            var lineEnd = start
            while lineEnd < bytes.count, bytes[lineEnd] != 0x0A, bytes[lineEnd] != 0x0D { lineEnd += 1 }
            let text = String(decoding: bytes[lineStart..<lineEnd], as: UTF8.self)
            let column = String(decoding: bytes[lineStart..<start], as: UTF8.self).unicodeScalars.count + 1
            throw Problem(line: line, column: column, lineText: text, message: problem(String(decoding: token, as: UTF8.self)))
        }
        return ids
    }

    /// A positive id of ASCII digits (leading zeros allowed) that fits in 63 bits.
    static func id(_ token: ArraySlice<UInt8>) -> Int64? {
        guard !token.isEmpty, token.count <= 40 else { return nil }
        var value: Int64 = 0
        for byte in token {
            guard byte >= UInt8(ascii: "0"), byte <= UInt8(ascii: "9") else { return nil }
            let (times, overflow) = value.multipliedReportingOverflow(by: 10)
            let (sum, overflow2) = times.addingReportingOverflow(Int64(byte - UInt8(ascii: "0")))
            guard !overflow, !overflow2 else { return nil }
            value = sum
        }
        return value > 0 ? value : nil
    }

    static func problem(_ token: String) -> String {
        let shown = token.unicodeScalars.count > 40 ? String(String.UnicodeScalarView(token.unicodeScalars.prefix(40))) + "…" : token
        let quoted = "'" + String(shown.unicodeScalars.map { $0.value < 0x20 || $0.value == 0x7F ? "?" : Character($0) }) + "'"
        if token.unicodeScalars.allSatisfy({ ("0"..."9").contains($0) }) {
            return token.allSatisfy({ $0 == "0" })
                ? "\(quoted) is not a project id: ids are positive"
                : "\(quoted) is not a project id: it is larger than 9223372036854775807"
        }
        if token.hasPrefix("-"), token.dropFirst().allSatisfy(\.isASCII), Int64(token) != nil {
            return "\(quoted) is not a project id: ids are positive"
        }
        return "\(quoted) is not a project id (a positive whole number of digits; ids are separated by commas or white space)"
    }

    /// Reads `path` (`-`: standard input) and parses it.
    /// - Throws: ``MigrationError`` `.invalidInput` naming the file, and for a bad id its line and column.
    static func load(path: String) throws(MigrationError) -> [Int64] {
        let name = path == "-" ? "standard input" : path
        let bytes: [UInt8]
        if path == "-" {
            guard let read = FileSystem.readStandardInput(maxBytes: maxFileBytes) else {
                throw unreadable(name, tooLarge: FileSystem.lastErrorWasTooLarge)
            }
            bytes = read
        } else {
            switch FileSystem.kind(path) {
            case .directory:
                throw MigrationError(code: .invalidInput, message: "this is a folder, not a file of project ids; check --project-ids-from", location: SourceLocation(file: name))
            case .other:
                throw MigrationError(
                    code: .invalidInput,
                    message: "this is not a regular file (a FIFO, socket or device); give --project-ids-from a file, or - to read standard input",
                    location: SourceLocation(file: name)
                )
            case .file, .missing:
                break
            }
            guard let read = FileSystem.readFile(path, maxBytes: maxFileBytes) else {
                throw unreadable(name, tooLarge: FileSystem.lastErrorWasTooLarge)
            }
            bytes = read
        }
        do {
            return try parse(bytes)
        } catch {
            throw MigrationError(
                code: .invalidInput, message: error.message,
                location: SourceLocation(file: name, line: error.line, column: error.column, lineText: error.lineText)
            )
        }
    }

    private static func unreadable(_ name: String, tooLarge: Bool) -> MigrationError {
        MigrationError(
            code: .invalidInput,
            message: tooLarge
                ? "the file of project ids is larger than \(maxFileBytes) bytes; at most \(maxFileBytes) are read"
                : "the file of project ids cannot be read (\(FileSystem.lastError())); check --project-ids-from",
            location: SourceLocation(file: name)
        )
    }
}
