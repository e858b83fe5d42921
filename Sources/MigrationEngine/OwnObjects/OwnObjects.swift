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

    /// The installed versions are also recorded as markers the session set-up can check in the same query as its
    /// settings, which cannot fail on a missing table, so that a run with nothing to install spends no round trip on
    /// them: one empty function `<schema>."installed: <component> <version>"()` for every version of a component up
    /// to the installed one (a newer release's markers include an older one's, so an older release finds its own). A
    /// new server process finds a function through its catalogue cache (`to_regprocedure`), which costs about 0.1 ms
    /// for both markers, where reading the schema's comment from `pg_description`, as earlier releases did, cost
    /// about 1.2 ms (`psql -c` on a new server process, 12 runs each: 0.41 ms against 1.66 ms, `select 1` 0.22 ms).
    /// The table stays the record of when and by whom; the schema's comment is still written, for people and for
    /// earlier releases, which read it.
    static let commentPrefix = "migrator own objects: "

    static func comment(_ versions: [String: Int]) -> String {
        commentPrefix + versions.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: ", ")
    }

    /// The marker of `component` at `version`, as `to_regprocedure` reads it: `"migrator"."installed: engine 3"()`.
    public static func markerSignature(schema: OwnSchema, component: String, version: Int) -> String {
        schema.sql + "." + SQLIdentifier.quote("installed: \(component) \(version)") + "()"
    }

    /// The markers each of `components` needs at its newest version (a component with no steps needs none).
    public static func markerSignatures(_ components: [OwnObjectsComponent], schema: OwnSchema) -> [String] {
        components.filter { $0.newest > 0 }.map { markerSignature(schema: schema, component: $0.name, version: $0.newest) }
    }

    /// Creates the markers of `versions` (every version up to each installed one) and the schema's comment: a
    /// script of this binary's own text (the names of `components`, numbers, the checked schema name). Versions of
    /// components this binary does not know (a newer release's, or a row written by hand) are left out: their
    /// names are text from the table, never spliced into SQL.
    static func markersScript(_ versions: [String: Int], of components: [OwnObjectsComponent], schema: OwnSchema) -> String {
        let known = Set(components.map(\.name))
        let versions = versions.filter { known.contains($0.key) }
        var statements: [String] = []
        for (component, installed) in versions.sorted(by: { $0.key < $1.key }) where installed > 0 {
            for version in 1...installed {
                statements.append(
                    "CREATE OR REPLACE FUNCTION \(markerSignature(schema: schema, component: component, version: version)) "
                        + "RETURNS void LANGUAGE sql IMMUTABLE AS ''"
                )
            }
        }
        statements.append("COMMENT ON SCHEMA \(schema.sql) IS '\(comment(versions))'")
        return statements.joined(separator: ";\n")
    }

    /// Brings every component to its newest step. No query when `markersPresent` (the set-up found every
    /// component's marker at its newest version); one when it cannot tell.
    /// - Returns: the steps that ran, as `component N: summary`.
    @discardableResult
    public static func install(
        _ components: [OwnObjectsComponent], on connection: Connection, schema: OwnSchema, markersPresent: Bool = false,
        logger: Logger
    ) throws(MigrationError) -> [String] {
        if markersPresent { return [] }
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
            // Current, but a marker is missing (a release before them, a function dropped by hand): put them back, so
            // that the next run is spared this query. Best effort: a role that may not create in the schema still
            // runs, one query slower.
            do {
                try connection.execute(script: markersScript(installed, of: components, schema: schema))
            } catch {
                logger.debug("could not record the versions of migrator's own objects", metadata: [
                    "schema.name": "\(schema.name)", "db.error": "\(error)",
                ])
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
            // COMMENT and CREATE FUNCTION take no parameters; the text is made of component names and numbers of this
            // binary only.
            try connection.execute(script: markersScript(now, of: components, schema: schema))
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
