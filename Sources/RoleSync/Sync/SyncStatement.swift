import Postgres

/// One statement of the sync: the name it is known by (the phase it runs in, the source a decoding error names), its
/// text, and the values bound to its parameters.
///
/// A statement is made by one function that takes named Swift arguments and binds each of them through
/// ``StatementParameters``, which answers the placeholder to write in the text (`$3::bigint[]`). A parameter's number,
/// its SQL type and the Swift value behind it are therefore declared once, where the text uses it; no fragment is
/// handed a number to count from, and no caller lines values up with `$n` by position.
struct SyncStatement: Sendable {
    var name: String
    var sql: String
    var parameters: [(any PostgresBindable)?]
    /// What decoding errors name as the source of the statement's rows: the table it reads, or the statement.
    var source: String

    /// - Parameters:
    ///   - table: the one table the statement reads its rows from, if so (`migrator.role_version`).
    ///   - text: writes the text, binding what it needs through the parameters it is given.
    init(_ name: String, reads table: String? = nil, _ text: (StatementParameters) -> String) {
        let parameters = StatementParameters()
        self.name = name
        self.sql = text(parameters)
        self.parameters = parameters.values
        self.source = table ?? "the role sync's \(name) statement"
    }

    /// Runs the statement.
    func run(on connection: Connection) throws(PostgresError) -> QueryResult {
        try connection.query(sql, parameters).from(source)
    }

    /// Sends the statement without waiting for its answer (``Connection/sendAhead(_:_:)``): a later ``run(on:)``
    /// of the same statement takes the answer.
    func sendAhead(on connection: Connection) {
        connection.sendAhead(sql, parameters)
    }

    /// Runs a statement that always answers one row (an aggregate, or an insert that returns what must be there).
    func one(on connection: Connection) throws(PostgresError) -> Row {
        guard let row = try run(on: connection).first else {
            throw PostgresError(code: .clientError, message: "\(source) returned no row")
        }
        return row
    }
}

/// The parameters of one statement, numbered in the order the text binds them. Every value, whatever its origin,
/// reaches the server this way; only identifiers checked beforehand are ever spliced.
///
/// A class so that the fragments a statement is assembled from (``DesiredRows``) can bind what they use while the
/// text is written; ``once(_:_:)`` lets them share one placeholder for a value that several of them read.
final class StatementParameters {
    private(set) var values: [(any PostgresBindable)?] = []
    private var shared: [String: String] = [:]

    func text(_ value: String) -> String { bind(value, as: "text") }
    func texts(_ values: [String]) -> String { bind(values, as: "text[]") }
    func integer(_ value: Int?) -> String { bind(value, as: "integer") }
    func bigint(_ value: Int64) -> String { bind(value, as: "bigint") }
    func bigints(_ values: [Int64]?) -> String { bind(values, as: "bigint[]") }
    func boolean(_ value: Bool) -> String { bind(value, as: "boolean") }
    func double(_ value: Double) -> String { bind(value, as: "double precision") }
    func jsonb(_ text: String) -> String { bind(text, as: "jsonb") }

    /// The placeholder bound for `key` in this statement, bound by `make` the first time it is asked for.
    func once(_ key: String, _ make: () -> String) -> String {
        if let placeholder = shared[key] { return placeholder }
        let placeholder = make()
        shared[key] = placeholder
        return placeholder
    }

    /// Every use of a placeholder carries its cast, so the server never has to guess a parameter's type.
    private func bind(_ value: (any PostgresBindable)?, as type: String) -> String {
        values.append(value)
        return "$\(values.count)::\(type)"
    }
}
