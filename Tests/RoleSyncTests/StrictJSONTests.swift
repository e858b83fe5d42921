import RoleSync
import Testing

/// The strict reader in front of the roles file's decoder: RFC 8259, plus what readers disagree on refused at its
/// line and column.
@Suite("Strict JSON reader")
struct StrictJSONTests {
    static func parse(_ text: String) throws(StrictJSON.Error) -> StrictJSON.Value {
        try StrictJSON.parse(Array(text.utf8))
    }

    static func error(_ text: String) -> StrictJSON.Error? {
        do {
            _ = try StrictJSON.parse(Array(text.utf8))
            return nil
        } catch {
            return error
        }
    }

    @Test("values, nesting and order are read as written")
    func values() throws {
        let value = try Self.parse(#" {"a": [1, -2.5e+3, 0, true, false, null, "x"], "b": {}, "c": []} "#)
        #expect(value == .object([
            .init(key: "a", value: .array([.number("1"), .number("-2.5e+3"), .number("0"), .bool(true), .bool(false), .null, .string("x")])),
            .init(key: "b", value: .object([])),
            .init(key: "c", value: .array([])),
        ]))
        #expect(try Self.parse("\"top\"") == .string("top"))
        #expect(try Self.parse("\u{FEFF}{}") == .object([]), "a leading byte order mark is skipped")
        #expect(try Self.parse("\t\r\n 7 \n") == .number("7"))
    }

    @Test("escapes and surrogate pairs decode to the scalars they name")
    func escapes() throws {
        #expect(try Self.parse(#""\" \\ \/ \b \f \n \r \t \u0041 \u00e9 \u20AC""#) == .string("\" \\ / \u{08} \u{0C} \n \r \t A é €"))
        #expect(try Self.parse(#""\uD83D\uDE00""#) == .string("😀"))
        #expect(try Self.parse("\"é😀\"") == .string("é😀"), "raw UTF-8 is kept")
        // A combining sequence stays the code points it was written as.
        guard case .string(let text) = try Self.parse(#""e\u0301""#) else { Issue.record("not a string"); return }
        #expect(text.unicodeScalars.count == 2)
    }

    struct Bad: Sendable, CustomTestStringConvertible {
        var label: String
        var text: String
        var line: Int
        var column: Int
        var message: String
        var syntax = true
        var testDescription: String { label }
    }

    static let bad: [Bad] = [
        Bad(label: "empty", text: "", line: 1, column: 1, message: "holds no JSON value"),
        Bad(label: "only spaces", text: " \n ", line: 2, column: 2, message: "holds no JSON value"),
        Bad(label: "trailing comma in a list", text: "[1,]", line: 1, column: 4, message: "expected a value"),
        Bad(label: "trailing comma in an object", text: #"{"a": 1,}"#, line: 1, column: 9, message: "expected a key"),
        Bad(label: "unclosed object", text: #"{"a": 1"#, line: 1, column: 8, message: "the top-level object is not closed with '}'"),
        Bad(label: "unclosed list", text: "[1, 2", line: 1, column: 6, message: "is not closed with ']'"),
        Bad(label: "unclosed string", text: "{\"a\": \"abc", line: 1, column: 7, message: "the string starting here is not closed"),
        Bad(label: "single quotes", text: "{'a': 1}", line: 1, column: 2, message: "expected a key"),
        Bad(label: "bare key", text: "{a: 1}", line: 1, column: 2, message: "expected a key"),
        Bad(label: "missing colon", text: #"{"a" 1}"#, line: 1, column: 6, message: "expected ':' after the key \"a\""),
        Bad(label: "comment", text: "// x\n{}", line: 1, column: 1, message: "expected a value"),
        Bad(label: "two values", text: "{} {}", line: 1, column: 4, message: "after the JSON value"),
        Bad(label: "leading zero", text: "[01]", line: 1, column: 2, message: "leading zero"),
        Bad(label: "plus sign", text: "[+1]", line: 1, column: 2, message: "expected a value"),
        Bad(label: "bare fraction", text: "[.5]", line: 1, column: 2, message: "expected a value"),
        Bad(label: "dot without digits", text: "[1.]", line: 1, column: 2, message: "a digit after '.'"),
        Bad(label: "empty exponent", text: "[1e]", line: 1, column: 2, message: "a digit in its exponent"),
        Bad(label: "minus alone", text: "[-]", line: 1, column: 2, message: "a digit after '-'"),
        Bad(label: "NaN", text: "[NaN]", line: 1, column: 2, message: "expected a value"),
        Bad(label: "True", text: "[True]", line: 1, column: 2, message: "expected a value"),
        Bad(label: "truncated literal", text: "[tru]", line: 1, column: 2, message: "expected true"),
        Bad(label: "unknown escape", text: #"["\x41"]"#, line: 1, column: 3, message: "unknown escape sequence \\x"),
        Bad(label: "short \\u", text: #"["\u12"]"#, line: 1, column: 3, message: "four hexadecimal digits"),
        Bad(label: "raw tab in a string", text: "[\"a\tb\"]", line: 1, column: 4, message: "a control character (0x9) in a string must be escaped"),
        Bad(label: "raw newline in a string", text: "[\"a\nb\"]", line: 1, column: 4, message: "must be escaped"),
        Bad(label: "raw NUL in a string", text: "[\"a\u{0}b\"]", line: 1, column: 4, message: "a NUL byte in a string"),
        Bad(label: "escaped NUL", text: #"{"k": "a\u0000b"}"#, line: 1, column: 9, message: "\\u0000 (NUL) in a string; PostgreSQL text cannot hold it", syntax: false),
        Bad(label: "lone high surrogate", text: #"["\uD83D"]"#, line: 1, column: 3, message: "first half of a surrogate pair without a second", syntax: false),
        Bad(label: "high surrogate then a letter", text: #"["\uD83Dx"]"#, line: 1, column: 3, message: "without a second", syntax: false),
        Bad(label: "two high surrogates", text: #"["\uD83D\uD83D"]"#, line: 1, column: 3, message: "is not a second half", syntax: false),
        Bad(label: "lone low surrogate", text: #"["\uDE00"]"#, line: 1, column: 3, message: "second half of a surrogate pair without a first", syntax: false),
        Bad(label: "duplicate key at the top", text: "{\"roles\": [],\n \"roles\": []}", line: 2, column: 2, message: "duplicate key \"roles\" in the top-level object (first at 1:2)", syntax: false),
        Bad(label: "duplicate key deep inside", text: "{\"roles\": [{\"name\": \"A\"},\n  {\"name\": \"B\", \"x\": {\"y\": 1, \"y\": 2}}]}", line: 2, column: 31, message: "duplicate key \"y\" in roles[1].x (first at 2:23)", syntax: false),
        Bad(label: "duplicate key spelt with an escape", text: #"{"name": 1, "n\u0061me": 2}"#, line: 1, column: 13, message: "duplicate key \"name\"", syntax: false),
        Bad(label: "duplicate key in two canonically equal spellings", text: "{\"\u{E9}\": 1, \"e\u{301}\": 2}", line: 1, column: 10, message: "duplicate key", syntax: false),
        Bad(label: "not UTF-8", text: "", line: 1, column: 3, message: "not UTF-8"),
        Bad(label: "too deep", text: String(repeating: "[", count: StrictJSON.maxDepth + 1) + String(repeating: "]", count: StrictJSON.maxDepth + 1), line: 1, column: StrictJSON.maxDepth + 1, message: "nest deeper than \(StrictJSON.maxDepth) levels"),
    ]

    @Test("malformed input and what readers disagree on are refused at their line and column", arguments: bad)
    func refused(_ bad: Bad) {
        let bytes: [UInt8] = bad.label == "not UTF-8" ? [0x5B, 0x22, 0xC3, 0x28, 0x22, 0x5D] : Array(bad.text.utf8)
        do {
            _ = try StrictJSON.parse(bytes)
            Issue.record("accepted")
        } catch {
            #expect(error.message.contains(bad.message), "\(error)")
            #expect(error.line == bad.line && error.column == bad.column, "\(error)")
            #expect(error.isSyntax == bad.syntax, "\(error)")
        }
    }

    @Test("nesting up to the limit is read; columns count scalars, not bytes")
    func limitsAndColumns() throws {
        let depth = StrictJSON.maxDepth
        _ = try Self.parse(String(repeating: "[", count: depth) + String(repeating: "]", count: depth))
        let error = Self.error("[\"é😀\", x]")
        #expect(error?.line == 1 && error?.column == 8, "\(String(describing: error))")
    }
}
