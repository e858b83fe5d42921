import Postgres

/// One database (or one tenant schema in a database) of a fleet run: where to connect, which tenant schema, and
/// the names it is shown and sharded by, none of which holds a password.
public struct FleetTarget: Sendable {
    /// The connection string as written, without the `schema=NAME` part (libpq does not know that keyword).
    public var connectionString: String
    /// The tenant schema: the session's `search_path` starts with it, and migrator's own objects live in
    /// `<schema>_<own schema>` (see ``ownSchema(base:)``).
    public var schema: String?
    /// `user@host:port/database`, plus `#schema` for a tenant: what output names the target by. Parts the string does
    /// not set are shown as libpq will take them from the environment, or left empty.
    public var label: String
    /// `host/port/database[/schema]`: what makes two targets the same one (the user and the password do not), and
    /// what its shard is computed from.
    public var identity: String
    /// Where the target was listed: `FILE:LINE`, or `--database-url #N`.
    public var origin: String

    public init(connectionString: String, schema: String?, origin: String, environment: [String: String]) {
        self.connectionString = connectionString
        self.schema = schema
        self.origin = origin
        let options = ConnectionConfig.options(of: connectionString) ?? [:]
        func part(_ keyword: String, _ variable: String) -> String {
            if let value = options[keyword], !value.isEmpty { return value }
            return environment[variable] ?? ""
        }
        let host = part("host", "PGHOST").isEmpty ? part("hostaddr", "PGHOSTADDR") : part("host", "PGHOST")
        let shownHost = host.hasPrefix("/") ? "[\(host)]" : host
        let port = part("port", "PGPORT")
        let user = part("user", "PGUSER")
        let database = part("dbname", "PGDATABASE").isEmpty ? user : part("dbname", "PGDATABASE")
        label = "\(user)@\(shownHost):\(port)/\(database)" + (schema.map { "#" + $0 } ?? "")
        identity = "\(host)/\(port)/\(database)" + (schema.map { "/" + $0 } ?? "")
    }

    /// The shard this target falls in out of `count`: FNV-1a (64-bit) of ``identity``, stable across runs,
    /// machines and releases (Swift's `hashValue` is seeded per process), so N runners split a fleet the same way.
    public func shard(of count: Int) -> Int {
        precondition(count > 0)
        return Int(FleetTarget.fnv1a(identity) % UInt64(count))
    }

    static func fnv1a(_ text: String) -> UInt64 {
        var hash: UInt64 = 0xCBF2_9CE4_8422_2325
        for byte in text.utf8 {
            hash ^= UInt64(byte)
            hash = hash &* 0x0000_0100_0000_01B3
        }
        return hash
    }

    /// migrator's own schema for this target: `base` for a whole database, `<tenant>_<base>` for a tenant, so each
    /// tenant has its own history and its own lock key.
    public func ownSchema(base: OwnSchema) throws(MigrationError) -> OwnSchema {
        guard let schema else { return base }
        return try OwnSchema(schema + "_" + base.name)
    }
}
