/// The schema that holds migrator's own objects: the history, and whatever the hooks keep for themselves (the role
/// sync's version rows and links). Default `migrator`; `--schema` / `MIGRATOR_SCHEMA` choose another.
///
/// A schema name is an identifier, not a value, so it cannot be a statement parameter: it is checked here (letters,
/// digits and underscores, 63 bytes at most, not a system schema) and always spliced double-quoted.
public struct OwnSchema: Sendable, Equatable, CustomStringConvertible {
    public static let defaultName = "migrator"
    public static let `default` = OwnSchema(checked: defaultName)

    public let name: String

    /// - Throws: ``MigrationError`` `.invalidInput` saying what is wrong with the name.
    public init(_ name: String) throws(MigrationError) {
        if let problem = SQLIdentifier.problem(name, what: "schema") {
            throw MigrationError(code: .invalidInput, message: "--schema (MIGRATOR_SCHEMA) '\(name)': \(problem)")
        }
        let lowered = name.lowercased()
        guard lowered != "public", lowered != "information_schema", !lowered.hasPrefix("pg_") else {
            throw MigrationError(
                code: .invalidInput,
                message: "--schema (MIGRATOR_SCHEMA) '\(name)' is a schema that migrator does not own; "
                    + "choose a schema of its own, such as the default '\(Self.defaultName)'"
            )
        }
        self.name = name
    }

    private init(checked name: String) { self.name = name }

    /// The schema as SQL: `"migrator"`.
    public var sql: String { SQLIdentifier.quote(name) }

    /// One of migrator's tables or functions in this schema, as SQL: `"migrator"."history"`.
    public func qualified(_ object: String) -> String { sql + "." + SQLIdentifier.quote(object) }

    /// The advisory lock that serialises runners working on this schema. The default schema keeps the key of the
    /// earlier releases ("migrator" in ASCII), so an old and a new runner on one database still exclude each other;
    /// another schema gets a key of its own, so two independent installations in one database do not wait on each
    /// other.
    public var lockKey: Int64 {
        if name == Self.defaultName { return 0x6D69_6772_6174_6F72 }
        // FNV-1a of the name: stable across runs and releases (Swift's hashValue is seeded per process).
        var hash: UInt64 = 0xCBF2_9CE4_8422_2325
        for byte in name.utf8 {
            hash ^= UInt64(byte)
            hash = hash &* 0x0000_0100_0000_01B3
        }
        return Int64(bitPattern: hash)
    }

    public var description: String { name }
}

/// Identifiers that migrator splices into SQL (its own schema, a configured table or column): checked, then
/// double-quoted. Values never take this path; they are statement parameters.
public enum SQLIdentifier {
    /// PostgreSQL truncates longer identifiers (NAMEDATALEN - 1 bytes), which would make two names collide.
    public static let maxBytes = 63

    /// Why `name` is not accepted as an identifier, or nil when it is: an ASCII letter or underscore, then letters,
    /// digits and underscores. Deliberately narrower than what PostgreSQL accepts quoted, so that the same name works
    /// quoted and unquoted and can be typed in a shell.
    public static func problem(_ name: String, what: String) -> String? {
        guard !name.isEmpty else { return "the \(what) name is empty" }
        guard name.utf8.count <= maxBytes else {
            return "the \(what) name has \(name.utf8.count) bytes; PostgreSQL keeps at most \(maxBytes)"
        }
        for (index, scalar) in name.unicodeScalars.enumerated() {
            let isLetter = ("a"..."z").contains(scalar) || ("A"..."Z").contains(scalar) || scalar == "_"
            let isDigit = ("0"..."9").contains(scalar)
            guard isLetter || (isDigit && index > 0) else {
                return "a \(what) name may have only ASCII letters, digits and underscores, and may not start with a digit"
            }
        }
        return nil
    }

    /// `name` double-quoted, with embedded quotes doubled (none pass ``problem(_:what:)``, but quoting stays correct
    /// for any text).
    public static func quote(_ name: String) -> String {
        "\"" + name.replacingAll("\"", with: "\"\"") + "\""
    }
}

extension String {
    fileprivate func replacingAll(_ target: Character, with replacement: String) -> String {
        var result = ""
        for character in self {
            if character == target { result += replacement } else { result.append(character) }
        }
        return result
    }
}
