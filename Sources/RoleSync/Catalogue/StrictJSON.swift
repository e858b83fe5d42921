/// A strict JSON reader (RFC 8259) for files whose every byte must mean one thing to every reader.
///
/// Foundation's decoder resolves a duplicate key silently (the first wins; jq, Python and JavaScript keep the last),
/// so a roles file could mean one catalogue here and another in the tools that check it. This reader refuses what
/// readers disagree on, each at its line and column: a duplicate key at any depth (keys compared as Swift compares
/// strings, so two spellings of one canonical form count as one key, as they do for a Swift decoder), a lone
/// surrogate, and — since the values go into PostgreSQL text, which cannot hold it — U+0000. Everything else is
/// RFC 8259 exactly: no comments, no trailing commas, no leading zeros or `+`, only space, tab, CR and LF between
/// tokens, UTF-8 only (a leading byte order mark is skipped), one value and nothing after it. Nesting deeper than
/// ``maxDepth`` is refused rather than recursed into.
///
/// Columns count Unicode scalars, as the migration errors do; lines and columns are 1-based.
public enum StrictJSON {
    public static let maxDepth = 128

    /// A value as read, with where it starts (a byte offset into the input).
    public indirect enum Value: Sendable, Equatable {
        case object([Member])
        case array([Value])
        case string(String)
        /// The number's text as written (already checked against the grammar).
        case number(String)
        case bool(Bool)
        case null
    }

    public struct Member: Sendable, Equatable {
        public var key: String
        public var value: Value

        public init(key: String, value: Value) {
            self.key = key
            self.value = value
        }
    }

    public struct Error: Swift.Error, Sendable, Equatable, CustomStringConvertible {
        public var line: Int
        public var column: Int
        public var message: String
        /// False for what the grammar allows but this reader refuses (a duplicate key, `\u0000`, a lone surrogate).
        public var isSyntax: Bool
        public var description: String { "\(line):\(column): \(message)" }
    }

    /// Reads one JSON value from `bytes`.
    /// - Throws: ``Error`` at the first problem, with its line and column.
    public static func parse(_ bytes: [UInt8]) throws(Error) -> Value {
        var reader = Reader(bytes: bytes)
        do throws(Reader.Failure) {
            return try reader.document()
        } catch {
            let (line, column) = position(of: error.offset, in: bytes)
            throw Error(line: line, column: column, message: error.message, isSyntax: error.isSyntax)
        }
    }

    /// The 1-based line and column (in scalars) of byte `offset`.
    static func position(of offset: Int, in bytes: [UInt8]) -> (line: Int, column: Int) {
        var line = 1
        var column = 1
        var index = 0
        let end = min(offset, bytes.count)
        while index < end {
            let byte = bytes[index]
            if byte == 0x0A {
                line += 1
                column = 1
            } else if byte & 0xC0 != 0x80 {
                // A lead byte or ASCII starts a scalar; continuation bytes do not.
                column += 1
            }
            index += 1
        }
        return (line, column)
    }
}

extension StrictJSON {
    fileprivate struct Reader {
        struct Failure: Swift.Error {
            var offset: Int
            var message: String
            var isSyntax = true
        }

        let bytes: [UInt8]
        var index = 0
        /// Where the reader is, for messages: `roles[1]`, `target`, … (empty at the top level).
        var path: [String] = []

        init(bytes: [UInt8]) {
            self.bytes = bytes
        }

        var place: String { path.isEmpty ? "the top-level object" : path.joined() }

        mutating func document() throws(Failure) -> Value {
            if bytes.starts(with: [0xEF, 0xBB, 0xBF]) { index = 3 }
            skipSpace()
            guard index < bytes.count else { throw Failure(offset: index, message: "the file holds no JSON value") }
            let value = try value(depth: 0)
            skipSpace()
            guard index == bytes.count else {
                throw Failure(offset: index, message: "unexpected \(describe(at: index)) after the JSON value; a file holds one value")
            }
            return value
        }

        mutating func skipSpace() {
            while index < bytes.count, [0x20, 0x09, 0x0A, 0x0D].contains(bytes[index]) { index += 1 }
        }

        func describe(at offset: Int) -> String {
            guard offset < bytes.count else { return "end of file" }
            let byte = bytes[offset]
            if byte >= 0x21 && byte < 0x7F { return "'\(Character(Unicode.Scalar(byte)))'" }
            if byte == 0x20 { return "space" }
            return "byte 0x" + String(byte, radix: 16, uppercase: true)
        }

        mutating func value(depth: Int) throws(Failure) -> Value {
            guard index < bytes.count else { throw Failure(offset: index, message: "a value is missing at the end of file") }
            switch bytes[index] {
            case UInt8(ascii: "{"): return try object(depth: depth + 1)
            case UInt8(ascii: "["): return try array(depth: depth + 1)
            case UInt8(ascii: "\""): return .string(try string())
            case UInt8(ascii: "t"): try literal("true"); return .bool(true)
            case UInt8(ascii: "f"): try literal("false"); return .bool(false)
            case UInt8(ascii: "n"): try literal("null"); return .null
            case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"): return .number(try number())
            default:
                throw Failure(offset: index, message: "expected a value (an object, list, string, number, true, false or null), found \(describe(at: index))")
            }
        }

        mutating func literal(_ word: String) throws(Failure) {
            let expected = Array(word.utf8)
            guard index + expected.count <= bytes.count, Array(bytes[index..<(index + expected.count)]) == expected else {
                throw Failure(offset: index, message: "expected \(word), found \(describe(at: index))")
            }
            index += expected.count
        }

        func checkDepth(_ depth: Int) throws(Failure) {
            guard depth <= StrictJSON.maxDepth else {
                throw Failure(offset: index, message: "the values nest deeper than \(StrictJSON.maxDepth) levels")
            }
        }

        mutating func object(depth: Int) throws(Failure) -> Value {
            try checkDepth(depth)
            index += 1
            var members: [Member] = []
            var seen: [String: Int] = [:]
            skipSpace()
            if index < bytes.count, bytes[index] == UInt8(ascii: "}") {
                index += 1
                return .object(members)
            }
            while true {
                skipSpace()
                guard index < bytes.count, bytes[index] == UInt8(ascii: "\"") else {
                    throw Failure(offset: index, message: "expected a key (a string in double quotes) in \(place), found \(describe(at: index))")
                }
                let keyOffset = index
                let key = try string()
                if let first = seen[key] {
                    let (line, column) = StrictJSON.position(of: first, in: bytes)
                    throw Failure(
                        offset: keyOffset,
                        message: "duplicate key \(Self.quoted(key)) in \(place) (first at \(line):\(column)); JSON readers "
                            + "disagree on which one counts (jq, Python and JavaScript keep the last), so keep one",
                        isSyntax: false
                    )
                }
                seen[key] = keyOffset
                skipSpace()
                guard index < bytes.count, bytes[index] == UInt8(ascii: ":") else {
                    throw Failure(offset: index, message: "expected ':' after the key \(Self.quoted(key)), found \(describe(at: index))")
                }
                index += 1
                skipSpace()
                let component = Self.component(key)
                path.append(path.isEmpty || component.hasPrefix("[") ? component : "." + component)
                let value = try value(depth: depth)
                path.removeLast()
                members.append(Member(key: key, value: value))
                skipSpace()
                guard index < bytes.count else { throw Failure(offset: index, message: "\(place) is not closed with '}'") }
                if bytes[index] == UInt8(ascii: ",") {
                    index += 1
                    continue
                }
                guard bytes[index] == UInt8(ascii: "}") else {
                    throw Failure(offset: index, message: "expected ',' or '}' in \(place), found \(describe(at: index))")
                }
                index += 1
                return .object(members)
            }
        }

        mutating func array(depth: Int) throws(Failure) -> Value {
            try checkDepth(depth)
            let name = path.isEmpty ? "the top-level list" : path.joined()
            index += 1
            var elements: [Value] = []
            skipSpace()
            if index < bytes.count, bytes[index] == UInt8(ascii: "]") {
                index += 1
                return .array(elements)
            }
            while true {
                skipSpace()
                path.append("[\(elements.count)]")
                elements.append(try value(depth: depth))
                path.removeLast()
                skipSpace()
                guard index < bytes.count else { throw Failure(offset: index, message: "\(name) is not closed with ']'") }
                if bytes[index] == UInt8(ascii: ",") {
                    index += 1
                    continue
                }
                guard bytes[index] == UInt8(ascii: "]") else {
                    throw Failure(offset: index, message: "expected ',' or ']' in \(name), found \(describe(at: index))")
                }
                index += 1
                return .array(elements)
            }
        }

        /// A string starting at the opening quote; escapes resolved, UTF-8 checked.
        mutating func string() throws(Failure) -> String {
            let start = index
            index += 1
            var scalars = String.UnicodeScalarView()
            while true {
                guard index < bytes.count else {
                    throw Failure(offset: start, message: "the string starting here is not closed with '\"'")
                }
                let byte = bytes[index]
                switch byte {
                case UInt8(ascii: "\""):
                    index += 1
                    return String(scalars)
                case UInt8(ascii: "\\"):
                    scalars.append(try escape())
                case 0x00..<0x20:
                    throw Failure(
                        offset: index,
                        message: byte == 0 ? "a NUL byte in a string; PostgreSQL text cannot hold it"
                            : "a control character (0x\(String(byte, radix: 16, uppercase: true))) in a string must be escaped"
                    )
                case 0x20..<0x80:
                    scalars.append(Unicode.Scalar(byte))
                    index += 1
                default:
                    scalars.append(try utf8Scalar())
                }
            }
        }

        /// One escape sequence at the backslash.
        mutating func escape() throws(Failure) -> Unicode.Scalar {
            let start = index
            index += 1
            guard index < bytes.count else { throw Failure(offset: start, message: "an escape sequence is cut off by the end of file") }
            let letter = bytes[index]
            index += 1
            switch letter {
            case UInt8(ascii: "\""): return "\""
            case UInt8(ascii: "\\"): return "\\"
            case UInt8(ascii: "/"): return "/"
            case UInt8(ascii: "b"): return "\u{08}"
            case UInt8(ascii: "f"): return "\u{0C}"
            case UInt8(ascii: "n"): return "\n"
            case UInt8(ascii: "r"): return "\r"
            case UInt8(ascii: "t"): return "\t"
            case UInt8(ascii: "u"):
                let first = try hex4(escapeAt: start)
                if (0xDC00...0xDFFF).contains(first) {
                    throw Failure(offset: start, message: "\\u\(Self.hex(first)) is the second half of a surrogate pair without a first", isSyntax: false)
                }
                if (0xD800...0xDBFF).contains(first) {
                    let second = index
                    guard index + 1 < bytes.count, bytes[index] == UInt8(ascii: "\\"), bytes[index + 1] == UInt8(ascii: "u") else {
                        throw Failure(offset: start, message: "\\u\(Self.hex(first)) is the first half of a surrogate pair without a second (\\uDC00-\\uDFFF)", isSyntax: false)
                    }
                    index += 2
                    let low = try hex4(escapeAt: second)
                    guard (0xDC00...0xDFFF).contains(low) else {
                        throw Failure(offset: start, message: "\\u\(Self.hex(first)) is the first half of a surrogate pair, but \\u\(Self.hex(low)) is not a second half", isSyntax: false)
                    }
                    return Unicode.Scalar(0x10000 + ((first - 0xD800) << 10) + (low - 0xDC00))!
                }
                guard first != 0 else {
                    throw Failure(offset: start, message: "\\u0000 (NUL) in a string; PostgreSQL text cannot hold it", isSyntax: false)
                }
                return Unicode.Scalar(first)!
            default:
                throw Failure(offset: start, message: "unknown escape sequence \\\(Character(Unicode.Scalar(letter))); JSON has \\\" \\\\ \\/ \\b \\f \\n \\r \\t and \\uXXXX")
            }
        }

        mutating func hex4(escapeAt start: Int) throws(Failure) -> UInt32 {
            var value: UInt32 = 0
            for _ in 0..<4 {
                guard index < bytes.count, let digit = Self.hexDigit(bytes[index]) else {
                    throw Failure(offset: start, message: "\\u must be followed by four hexadecimal digits")
                }
                value = value << 4 | digit
                index += 1
            }
            return value
        }

        static func hexDigit(_ byte: UInt8) -> UInt32? {
            switch byte {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): UInt32(byte - UInt8(ascii: "0"))
            case UInt8(ascii: "a")...UInt8(ascii: "f"): UInt32(byte - UInt8(ascii: "a") + 10)
            case UInt8(ascii: "A")...UInt8(ascii: "F"): UInt32(byte - UInt8(ascii: "A") + 10)
            default: nil
            }
        }

        static func hex(_ value: UInt32) -> String {
            let text = String(value, radix: 16, uppercase: true)
            return String(repeating: "0", count: max(0, 4 - text.count)) + text
        }

        /// One multi-byte UTF-8 scalar (shortest form, no surrogates, at most U+10FFFF).
        mutating func utf8Scalar() throws(Failure) -> Unicode.Scalar {
            let start = index
            let lead = bytes[index]
            let (count, minimum): (Int, UInt32)
            switch lead {
            case 0xC2...0xDF: (count, minimum) = (2, 0x80)
            case 0xE0...0xEF: (count, minimum) = (3, 0x800)
            case 0xF0...0xF4: (count, minimum) = (4, 0x10000)
            default: throw Failure(offset: start, message: "the file is not UTF-8 here (byte 0x\(String(lead, radix: 16, uppercase: true)))")
            }
            guard start + count <= bytes.count else {
                throw Failure(offset: start, message: "the file is not UTF-8 here (a sequence cut off by the end of file)")
            }
            var value = UInt32(lead) & (0xFF >> (count + 1))
            for offset in 1..<count {
                let byte = bytes[start + offset]
                guard byte & 0xC0 == 0x80 else {
                    throw Failure(offset: start, message: "the file is not UTF-8 here (byte 0x\(String(byte, radix: 16, uppercase: true)) after 0x\(String(lead, radix: 16, uppercase: true)))")
                }
                value = value << 6 | UInt32(byte & 0x3F)
            }
            guard value >= minimum, !(0xD800...0xDFFF).contains(value), let scalar = Unicode.Scalar(value) else {
                throw Failure(offset: start, message: "the file is not UTF-8 here (an overlong form, a surrogate or a value past U+10FFFF)")
            }
            index += count
            return scalar
        }

        /// `-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?`, as written.
        mutating func number() throws(Failure) -> String {
            let start = index
            func digits() -> Int {
                let from = index
                while index < bytes.count, (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(bytes[index]) { index += 1 }
                return index - from
            }
            if bytes[index] == UInt8(ascii: "-") { index += 1 }
            guard index < bytes.count, (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(bytes[index]) else {
                throw Failure(offset: start, message: "a number needs a digit after '-'")
            }
            if bytes[index] == UInt8(ascii: "0") {
                index += 1
                if index < bytes.count, (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(bytes[index]) {
                    throw Failure(offset: start, message: "a number may not have a leading zero")
                }
            } else {
                _ = digits()
            }
            if index < bytes.count, bytes[index] == UInt8(ascii: ".") {
                index += 1
                guard digits() > 0 else { throw Failure(offset: start, message: "a number needs a digit after '.'") }
            }
            if index < bytes.count, bytes[index] | 0x20 == UInt8(ascii: "e") {
                index += 1
                if index < bytes.count, bytes[index] == UInt8(ascii: "+") || bytes[index] == UInt8(ascii: "-") { index += 1 }
                guard digits() > 0 else { throw Failure(offset: start, message: "a number needs a digit in its exponent") }
            }
            return String(decoding: bytes[start..<index], as: UTF8.self)
        }

        /// A key as a part of a path: as it is when it reads like a name, else quoted.
        static func component(_ key: String) -> String {
            let plain = !key.isEmpty && key.unicodeScalars.allSatisfy {
                ("a"..."z").contains($0) || ("A"..."Z").contains($0) || ("0"..."9").contains($0) || $0 == "_"
            }
            return plain ? key : "[\(quoted(key))]"
        }

        /// A key as JSON would write it, so that odd keys stay readable in a message.
        static func quoted(_ key: String) -> String {
            var text = "\""
            for scalar in key.unicodeScalars {
                switch scalar {
                case "\"": text += "\\\""
                case "\\": text += "\\\\"
                case _ where scalar.value < 0x20 || scalar.value == 0x7F: text += "\\u" + hex(scalar.value)
                default: text.unicodeScalars.append(scalar)
                }
            }
            return text + "\""
        }
    }
}
