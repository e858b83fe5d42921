import FoundationEssentials

/// A node of libpg_query's JSON parse tree, read as plain values.
///
/// The tree's shape is PostgreSQL's own (`src/include/nodes/parsenodes.h`): a node is an object with one key, its
/// type (`{"IndexStmt": {…}}`), whose value holds the fields; a field left at its zero value (false, 0, an empty
/// list) is omitted. The accessors return nil or an empty value for what is absent, so a rule reads the fields it
/// knows and nothing traps on a shape it did not expect.
indirect enum Node: Decodable, Sendable, Equatable {
    case object([String: Node])
    case array([Node])
    case string(String)
    case number(Double)
    case bool(Bool)
    case null

    init(from decoder: any Decoder) throws {
        let container = try decoder.singleValueContainer()
        if container.decodeNil() {
            self = .null
        } else if let value = try? container.decode(Bool.self) {
            self = .bool(value)
        } else if let value = try? container.decode(Double.self) {
            self = .number(value)
        } else if let value = try? container.decode(String.self) {
            self = .string(value)
        } else if let value = try? container.decode([Node].self) {
            self = .array(value)
        } else {
            self = .object(try container.decode([String: Node].self))
        }
    }

    /// A field of an object.
    subscript(_ key: String) -> Node? {
        if case .object(let fields) = self { return fields[key] }
        return nil
    }

    /// For a wrapped node (`{"Constraint": {…}}`): its type name.
    var type: String? {
        if case .object(let fields) = self, fields.count == 1 { return fields.keys.first }
        return nil
    }

    /// The fields of a wrapped node of type `type`, or nil when it is another type.
    func node(_ type: String) -> Node? {
        self.type == type ? self[type] : nil
    }

    var string: String? {
        if case .string(let value) = self { return value }
        return nil
    }

    var int: Int? {
        if case .number(let value) = self, let exact = Int(exactly: value) { return exact }
        return nil
    }

    /// Omitted booleans are false.
    var isTrue: Bool {
        if case .bool(let value) = self { return value }
        return false
    }

    var array: [Node] {
        if case .array(let values) = self { return values }
        return []
    }

    /// A list of `{"String": {"sval": …}}` nodes (a qualified name), as its strings.
    var names: [String] {
        array.compactMap { $0.node("String")?["sval"]?.string }
    }

    /// Every node below this one, this one included, depth first.
    func walk(_ visit: (Node) -> Void) {
        visit(self)
        switch self {
        case .object(let fields): for value in fields.values { value.walk(visit) }
        case .array(let values): for value in values { value.walk(visit) }
        default: break
        }
    }
}
