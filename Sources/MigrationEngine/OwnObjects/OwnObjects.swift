import Logging
import Postgres

/// A versioned part of migrator's own objects: the engine's history, or what a hook keeps for itself. Its steps
/// run once each, in order, like migrations, but they ship inside the binary instead of the user's folder.
public struct OwnObjectsComponent: Sendable {
    public struct Step: Sendable {
        /// 1, 2, 3, … within the component.
        public var version: Int
        /// What the step does, for the log.
        public var summary: String
        /// Runs inside the installer's transaction, with the lock held.
        public var apply: @Sendable (Connection, OwnSchema, Logger) throws -> Void

        public init(version: Int, summary: String, apply: @escaping @Sendable (Connection, OwnSchema, Logger) throws -> Void) {
            self.version = version
            self.summary = summary
            self.apply = apply
        }
    }

    public var name: String
    public var steps: [Step]

    public init(name: String, steps: [Step]) {
        self.name = name
        self.steps = steps
    }

    var newest: Int { steps.map(\.version).max() ?? 0 }
}

/// Creates and upgrades migrator's own objects in its schema: `<schema>.components` records each component's
/// version, and what is missing is installed in one transaction (all of it or none). The caller holds the lock.
public enum OwnObjects {
    /// For a component step: moves an earlier release's table from public into the schema with every row
    /// (ALTER TABLE … SET SCHEMA keeps rows, indexes, constraints and privileges; nothing is copied), under its new
    /// name, unless the schema has that table already. Returns whether it moved.
    @discardableResult
    public static func adoptLegacyTable(
        _ connection: Connection, from legacy: String, to name: String, schema: OwnSchema, logger: Logger
    ) throws(PostgresError) -> Bool {
        let present = try connection.query(
            "SELECT to_regclass($1) IS NOT NULL AS legacy, to_regclass($2) IS NOT NULL AS current",
            ["public.\(legacy)", schema.qualified(name)]
        ).from("to_regclass")
        guard let row = present.first, try decoded({ try row.decode("legacy", as: Bool.self) }),
              try !decoded({ try row.decode("current", as: Bool.self) })
        else { return false }
        try connection.query("ALTER TABLE public.\(SQLIdentifier.quote(legacy)) SET SCHEMA \(schema.sql)")
        if legacy != name {
            try connection.query("ALTER TABLE \(schema.qualified(legacy)) RENAME TO \(SQLIdentifier.quote(name))")
        }
        logger.info("moved an earlier release's table into migrator's schema", metadata: [
            "schema.from": "public.\(legacy)", "schema.to": "\(schema.qualified(name))",
        ])
        return true
    }

    static func versionsSQL(_ schema: OwnSchema) -> String {
        "SELECT component, version FROM \(schema.qualified("components"))"
    }

    /// Each component's installed version; empty when nothing is installed yet (no schema or no table).
    public static func installedVersions(_ connection: Connection, schema: OwnSchema) throws(PostgresError) -> [String: Int] {
        do throws(PostgresError) {
            let result = try connection.query(versionsSQL(schema))
            var versions: [String: Int] = [:]
            for row in result.from(schema.qualified("components")).rows {
                versions[try decoded { try row.decode("component", as: String.self) }] = try decoded { try row.decode("version", as: Int.self) }
            }
            return versions
        } catch where error.sqlState == SQLState.undefinedTable || error.sqlState == SQLState.invalidSchemaName {
            return [:]
        }
    }

    /// The schema's comment records the installed versions too (`migrator own objects: engine 1, role-sync 1`), so
    /// that a run can read them in its session set-up query, which cannot fail on a missing table, and skip the
    /// installer without a round trip of its own. The table stays the record of when and by whom.
    static let markerPrefix = "migrator own objects: "

    static func marker(_ versions: [String: Int]) -> String {
        markerPrefix + versions.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: ", ")
    }

    static func parseMarker(_ text: String?) -> [String: Int]? {
        guard let text, text.hasPrefix(markerPrefix) else { return nil }
        var versions: [String: Int] = [:]
        for part in text.dropFirst(markerPrefix.count).split(separator: ",") {
            let words = part.split(separator: " ")
            guard words.count == 2, let version = Int(words[1]) else { return nil }
            versions[String(words[0])] = version
        }
        return versions
    }

    /// Brings every component to its newest step. No query when `marker` (the schema's comment, read by the caller)
    /// says everything is current; one when it cannot tell.
    /// - Returns: the steps that ran, as `component N: summary`.
    @discardableResult
    public static func install(
        _ components: [OwnObjectsComponent], on connection: Connection, schema: OwnSchema, marker: String? = nil,
        logger: Logger
    ) throws(MigrationError) -> [String] {
        if let known = parseMarker(marker), components.allSatisfy({ known[$0.name, default: 0] >= $0.newest }) {
            return []
        }
        let installed: [String: Int]
        do {
            installed = try installedVersions(connection, schema: schema)
        } catch {
            throw MigrationError(
                code: error.code == .connectionLost ? .connectionFailed : .databaseError,
                message: "could not read the version of migrator's own objects (\(schema.qualified("components"))): \(error)"
            )
        }
        let due = components.filter { installed[$0.name, default: 0] < $0.newest }
        if due.isEmpty {
            // Current, but the marker was missing or stale (a release before it, a comment edited by hand).
            if parseMarker(marker) != installed {
                try? connection.query("COMMENT ON SCHEMA \(schema.sql) IS '\(Self.marker(installed))'")
            }
            return []
        }
        for component in components {
            if let version = installed[component.name], version > component.newest {
                // A newer release installed this component; its objects are a superset of what this one needs.
                logger.warning("migrator's own objects are newer than this release", metadata: [
                    "schema.component": "\(component.name)", "schema.installed": "\(version)",
                    "schema.known": "\(component.newest)",
                ])
            }
        }
        var ran: [String] = []
        var current = ""
        do {
            try connection.query("BEGIN")
            // IF NOT EXISTS answers with a NOTICE for what is there already; that is expected, not news.
            try connection.query("SET LOCAL client_min_messages = warning")
            current = "create schema \(schema.name)"
            try connection.query("CREATE SCHEMA IF NOT EXISTS \(schema.sql)")
            try connection.query(
                """
                CREATE TABLE IF NOT EXISTS \(schema.qualified("components")) (
                    component text PRIMARY KEY,
                    version integer NOT NULL CHECK (version > 0),
                    upgraded_at timestamptz NOT NULL DEFAULT now(),
                    upgraded_by text NOT NULL DEFAULT current_user
                )
                """
            )
            for component in due {
                let from = installed[component.name, default: 0]
                for step in component.steps.sorted(by: { $0.version < $1.version }) where step.version > from {
                    current = "\(component.name) \(step.version) (\(step.summary))"
                    try step.apply(connection, schema, logger)
                    ran.append("\(component.name) \(step.version): \(step.summary)")
                }
                try connection.query(
                    """
                    INSERT INTO \(schema.qualified("components")) (component, version) VALUES ($1, $2)
                    ON CONFLICT (component) DO UPDATE SET version = EXCLUDED.version, upgraded_at = now(),
                        upgraded_by = current_user
                    """,
                    [component.name, component.newest]
                )
            }
            var now = installed
            for component in due { now[component.name] = component.newest }
            // COMMENT takes no parameters; the text is made of component names and numbers of this binary only.
            try connection.query("COMMENT ON SCHEMA \(schema.sql) IS '\(Self.marker(now))'")
            try connection.query("COMMIT")
        } catch {
            if connection.isConnected, connection.transactionStatus != .idle { _ = try? connection.query("ROLLBACK") }
            let lost = (error as? PostgresError)?.code == .connectionLost
            throw MigrationError(
                code: lost ? .connectionFailed : .databaseError,
                message: "could not install migrator's own objects in schema \(schema.name) at step \(current): \(error)",
                notes: ["that installation was rolled back; nothing of it remains, and the next run tries again"]
            )
        }
        for step in ran {
            logger.info("installed migrator's own objects", metadata: ["schema.name": "\(schema.name)", "schema.step": "\(step)"])
        }
        return ran
    }
}

/// A row decoding error as the ``PostgresError`` the caller reports.
func decoded<T>(_ read: () throws -> T) throws(PostgresError) -> T {
    do {
        return try read()
    } catch let error as PostgresError {
        throw error
    } catch {
        throw PostgresError(code: .clientError, message: "\(error)")
    }
}
