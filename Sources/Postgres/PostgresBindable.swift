/// A value that can be sent as a statement parameter, in PostgreSQL's text format.
///
/// Every value goes through `PQexecParams` as a parameter: nothing a user or a row supplies is spliced into SQL.
public protocol PostgresBindable: Sendable {
    var postgresText: String { get }
}

extension String: PostgresBindable { public var postgresText: String { self } }
extension Substring: PostgresBindable { public var postgresText: String { String(self) } }
extension Int: PostgresBindable { public var postgresText: String { String(self) } }
extension Int64: PostgresBindable { public var postgresText: String { String(self) } }
extension Int32: PostgresBindable { public var postgresText: String { String(self) } }
extension UInt64: PostgresBindable { public var postgresText: String { String(self) } }
extension Double: PostgresBindable { public var postgresText: String { String(self) } }
extension Bool: PostgresBindable { public var postgresText: String { self ? "true" : "false" } }

/// Arrays are sent as one-dimensional array literals; cast the parameter in SQL (`$1::text[]`, `$1::bigint[]`).
extension Array: PostgresBindable where Element: PostgresBindable {
    public var postgresText: String { PostgresArray.literal(map(\.postgresText)) }
}

/// PostgreSQL's one-dimensional array literal format.
public enum PostgresArray {
    /// `{"a","b\"c"}`: every element quoted, so no element needs to be inspected for special characters.
    public static func literal(_ elements: [String?]) -> String {
        var text = "{"
        for (index, element) in elements.enumerated() {
            if index > 0 { text += "," }
            guard let element else {
                text += "NULL"
                continue
            }
            text += "\""
            for character in element {
                if character == "\"" || character == "\\" { text += "\\" }
                text.append(character)
            }
            text += "\""
        }
        return text + "}"
    }

    /// Parses a one-dimensional array literal as the server prints it.
    public static func parse(_ text: String) -> [String?] {
        let scalars = Array(text.unicodeScalars)
        guard scalars.first == "{", scalars.last == "}" else { return [text] }
        var elements: [String?] = []
        var index = 1
        let end = scalars.count - 1
        if end == 1 { return [] }
        while index < end {
            var value = String.UnicodeScalarView()
            if scalars[index] == "\"" {
                index += 1
                while index < end, scalars[index] != "\"" {
                    if scalars[index] == "\\" { index += 1 }
                    value.append(scalars[index])
                    index += 1
                }
                index += 1
                elements.append(String(value))
            } else {
                while index < end, scalars[index] != "," {
                    value.append(scalars[index])
                    index += 1
                }
                let plain = String(value)
                elements.append(plain == "NULL" ? nil : plain)
            }
            index += 1  // the comma
        }
        return elements
    }
}
