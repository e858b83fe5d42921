/// The rows of one statement's result, copied out of libpq so that no C memory outlives the call.
public struct QueryResult: Sendable {
    public var columns: [String]
    public var rows: [Row]
    /// The command tag, e.g. `INSERT 0 3`.
    public var commandTag: String
    /// Rows affected by INSERT, UPDATE, DELETE, MERGE, SELECT, MOVE, FETCH or COPY; 0 otherwise.
    public var affectedRows: Int

    public init(columns: [String], rows: [Row], commandTag: String, affectedRows: Int) {
        self.columns = columns
        self.rows = rows
        self.commandTag = commandTag
        self.affectedRows = affectedRows
    }

    /// The first row, for queries that return one.
    public var first: Row? { rows.first }

    /// The same rows, whose decoding errors name `source` (a table, `migrator.history`, or what the query reads).
    public func from(_ source: String) -> QueryResult {
        var copy = self
        for index in copy.rows.indices { copy.rows[index].source = source }
        return copy
    }
}

/// One row, in PostgreSQL's text format.
///
/// Values are read with throwing accessors: a column the query does not return, a NULL where a value is required,
/// or text that does not parse as the type asked for is a ``RowDecodingError`` that names the source and the column,
/// never a trap and never a silent default.
public struct Row: Sendable {
    public var columns: [String]
    public var values: [String?]
    /// What the row was read from, for error messages (see ``QueryResult/from(_:)``).
    public var source: String

    public init(columns: [String], values: [String?], source: String = "the query's result") {
        self.columns = columns
        self.values = values
        self.source = source
    }

    /// The text of the column at `index` (which must exist), nil for NULL.
    public subscript(_ index: Int) -> String? { values[index] }

    /// The column's text, nil for NULL.
    /// - Throws: ``RowDecodingError`` when the row has no such column.
    public func text(_ name: String) throws(RowDecodingError) -> String? {
        guard let index = columns.firstIndex(of: name) else {
            throw RowDecodingError(source: source, column: name, problem: "is not in the result (columns: \(columns.joined(separator: ", ")))")
        }
        return values[index]
    }

    /// The column's value as `T`.
    /// - Throws: ``RowDecodingError`` when the column is missing, NULL, or its text is not a `T`.
    public func decode<T: PostgresDecodable>(_ name: String, as type: T.Type = T.self) throws(RowDecodingError) -> T {
        guard let value = try decodeIfPresent(name, as: type) else {
            throw RowDecodingError(source: source, column: name, problem: "is NULL")
        }
        return value
    }

    /// The column's value as `T`, nil for NULL.
    /// - Throws: ``RowDecodingError`` when the column is missing or its text is not a `T`.
    public func decodeIfPresent<T: PostgresDecodable>(
        _ name: String, as type: T.Type = T.self
    ) throws(RowDecodingError) -> T? {
        guard let text = try text(name) else { return nil }
        guard let value = T(postgresText: text) else {
            throw RowDecodingError(
                source: source, column: name,
                problem: "holds \(Self.quoted(text)), which is not \(T.postgresTypeDescription)"
            )
        }
        return value
    }

    private static func quoted(_ text: String) -> String {
        text.count > 40 ? "'\(text.prefix(40))…'" : "'\(text)'"
    }
}

/// A row that could not be read as expected: which source, which column, what is wrong with it.
public struct RowDecodingError: Error, Sendable, Equatable, CustomStringConvertible {
    public var source: String
    public var column: String
    public var problem: String

    public init(source: String, column: String, problem: String) {
        self.source = source
        self.column = column
        self.problem = problem
    }

    public var description: String { "\(source): column \(column) \(problem)" }
}

/// A Swift type read from PostgreSQL's text format.
public protocol PostgresDecodable: Sendable {
    init?(postgresText: String)
    /// What the text should have been, for error messages ("an integer").
    static var postgresTypeDescription: String { get }
}

extension String: PostgresDecodable {
    public init?(postgresText: String) { self = postgresText }
    public static var postgresTypeDescription: String { "text" }
}

extension Int: PostgresDecodable {
    public init?(postgresText: String) { self.init(postgresText) }
    public static var postgresTypeDescription: String { "an integer" }
}

extension Int64: PostgresDecodable {
    public init?(postgresText: String) { self.init(postgresText) }
    public static var postgresTypeDescription: String { "a 64-bit integer" }
}

extension Int32: PostgresDecodable {
    public init?(postgresText: String) { self.init(postgresText) }
    public static var postgresTypeDescription: String { "a 32-bit integer" }
}

extension Double: PostgresDecodable {
    public init?(postgresText: String) { self.init(postgresText) }
    public static var postgresTypeDescription: String { "a number" }
}

extension Bool: PostgresDecodable {
    /// `t`/`f` as the server sends booleans; `true`/`false`, `on`/`off` as settings read through `current_setting`.
    public init?(postgresText: String) {
        switch postgresText {
        case "t", "true", "on": self = true
        case "f", "false", "off": self = false
        default: return nil
        }
    }
    public static var postgresTypeDescription: String { "a boolean" }
}

/// A one-dimensional array (`text[]`, `bigint[]`) in PostgreSQL's literal format; NULL elements become nil.
extension Array: PostgresDecodable where Element == String? {
    public init?(postgresText: String) {
        guard postgresText.hasPrefix("{"), postgresText.hasSuffix("}") else { return nil }
        self = PostgresArray.parse(postgresText)
    }
    public static var postgresTypeDescription: String { "an array" }
}
