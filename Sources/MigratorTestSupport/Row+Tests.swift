import Postgres

/// Tests only: short getters for asserting on rows (`row["state"] == "applied"`). A column the query does not return
/// stops the test with its name. The product decodes rows through `Row.decode`/`decodeIfPresent`, whose errors name
/// the table and the column; nothing outside the tests can see these.
extension Row {
    public subscript(_ name: String) -> String? {
        guard let index = columns.firstIndex(of: name) else {
            preconditionFailure("the test reads column \(name), which the query does not return (columns: \(columns))")
        }
        return values[index]
    }

    public func string(_ name: String) -> String? { self[name] }
    public func int(_ name: String) -> Int? { self[name].flatMap { Int($0) } }
    public func double(_ name: String) -> Double? { self[name].flatMap { Double($0) } }
    public func bool(_ name: String) -> Bool? { self[name].map { $0 == "t" || $0 == "true" } }
    public func stringArray(_ name: String) -> [String?]? { self[name].map(PostgresArray.parse) }
}
