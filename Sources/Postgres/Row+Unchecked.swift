// Transitional: the unchecked getters that callers are moving off (to Row.decode/decodeIfPresent). Removed when the
// last caller has moved.
extension Row {
    @available(*, deprecated, message: "use text(_:), decode(_:as:) or decodeIfPresent(_:as:)")
    public subscript(_ name: String) -> String? {
        guard let index = columns.firstIndex(of: name) else {
            preconditionFailure("no column \(name) in \(columns)")
        }
        return values[index]
    }

    @available(*, deprecated, message: "use decodeIfPresent(_:as:)")
    public func string(_ name: String) -> String? { self[name] }
    @available(*, deprecated, message: "use decodeIfPresent(_:as:)")
    public func int(_ name: String) -> Int? { self[name].flatMap { Int($0) } }
    @available(*, deprecated, message: "use decodeIfPresent(_:as:)")
    public func double(_ name: String) -> Double? { self[name].flatMap { Double($0) } }
    @available(*, deprecated, message: "use decodeIfPresent(_:as:)")
    public func bool(_ name: String) -> Bool? { self[name].map { $0 == "t" || $0 == "true" } }
    @available(*, deprecated, message: "use decodeIfPresent(_:as: [String?].self)")
    public func stringArray(_ name: String) -> [String?]? { self[name].map(PostgresArray.parse) }
}
