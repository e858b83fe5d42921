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
}

/// One row, in PostgreSQL's text format. Typed getters parse the text the server sent.
public struct Row: Sendable {
    public var columns: [String]
    public var values: [String?]

    public init(columns: [String], values: [String?]) {
        self.columns = columns
        self.values = values
    }

    public subscript(_ index: Int) -> String? { values[index] }

    public subscript(_ name: String) -> String? {
        guard let index = columns.firstIndex(of: name) else {
            preconditionFailure("no column \(name) in \(columns)")
        }
        return values[index]
    }

    public func string(_ name: String) -> String? { self[name] }
    public func int(_ name: String) -> Int? { self[name].flatMap { Int($0) } }
    public func double(_ name: String) -> Double? { self[name].flatMap { Double($0) } }
    public func bool(_ name: String) -> Bool? { self[name].map { $0 == "t" || $0 == "true" } }

    /// A text[] column, parsed from PostgreSQL's array literal (one dimension).
    public func stringArray(_ name: String) -> [String?]? { self[name].map(PostgresArray.parse) }
}
