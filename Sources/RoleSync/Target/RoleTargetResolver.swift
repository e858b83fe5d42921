import Logging
import MigrationEngine
import Postgres

/// A ``RoleTarget`` checked against the database: the project table exists and has the columns, with the types the
/// sync needs, and the names to splice are the server's own (`regclass` output quotes where SQL needs it).
public struct ResolvedTarget: Sendable {
    public var target: RoleTarget
    /// The project table as the server prints it: `main_project`, `app.workspaces`.
    public var tableSQL: String
    var idSQL: String
    var nameSQL: String
    /// The length `auth_group.name` holds (150 in Django), nil when it has no limit.
    public var maxGroupName: Int?
    /// Whether the triggers on the project table are exactly the ones this target needs, and the links reference
    /// auth_group.
    var triggersInStep: Bool
    /// Whether `recorded_role_triggers()` (see ``RoleObjects/installVersion4(_:_:_:)``) answers with these triggers,
    /// so that the check of the next run with nothing to sync finds them by their OIDs.
    var recordedInStep: Bool
    /// The latest stored role version, read in the same query.
    public var stored: RoleSynchronizer.StoredVersion?
}

/// Checks the target and keeps our triggers (on the project table, and one on auth_group) in step with it.
enum RoleTargetResolver {
    /// No trigger fires on INSERT: `serve` finds new projects by polling past a watermark (see
    /// ``NewProjectsPoll``), so the app's inserts pay nothing for migrator. A database of an earlier release loses
    /// its `migrator_project_notify_insert` on the next check (the set differs, so every trigger of ours is replaced).
    ///
    /// `migrator_group_deleted` sits on `auth_group` (see ``RoleObjects/installVersion3(_:_:_:)``); the others on the
    /// project table. Sorted by name, as the checks read them back.
    static let triggerNames = [
        "migrator_group_deleted", "migrator_project_delete_groups", "migrator_project_notify_delete",
        "migrator_project_notify_rename", "migrator_project_truncate",
    ]

    /// Our trigger functions, whichever table their triggers sit on.
    static let triggerFunctions = ["project_deleted", "projects_truncated", "project_notify", "group_deleted"]

    /// `'project_deleted', …`, for `proname IN (…)`: names this binary holds, none from input.
    private static var triggerFunctionList: String {
        triggerFunctions.map { "'\($0)'" }.joined(separator: ", ")
    }

    /// The FROM and WHERE of every read of our triggers, whichever table they sit on (`tg` is their pg_trigger row).
    /// `namespace` is SQL that gives our schema's OID: a subquery on a parameter in a statement, a literal in the
    /// body of ``RoleObjects/recordTriggersSQL(_:)``.
    static func ourTriggersSource(namespace: String) -> String {
        """
        FROM pg_trigger tg JOIN pg_proc f ON f.oid = tg.tgfoid
        WHERE NOT tg.tgisinternal AND f.pronamespace = \(namespace) AND f.proname IN (\(triggerFunctionList))
        """
    }

    /// One trigger as ``expectedTriggers(table:target:)`` spells it, `name|table|args,`: for
    /// `string_agg(…, ';' ORDER BY tg.tgname)` over ``ourTriggersSource(namespace:)``.
    static let triggerSummary = "tg.tgname || '|' || tg.tgrelid::regclass::text || '|' || replace(encode(tg.tgargs, 'escape'), E'\\\\000', ',')"

    /// Also reads the latest stored role version, so that a sync with nothing to do needs no query of its own for
    /// it. Fails with 42P01 / 3F000 when migrator's role objects are not installed.
    static func resolveStatement(_ target: RoleTarget, schema: OwnSchema) -> SyncStatement {
        SyncStatement("check the project table") { p in
        let table = p.text(target.tableSQL)
        let idColumn = p.text(target.idColumn)
        let nameColumn = p.text(target.nameColumn)
        let schemaName = p.text(schema.name)
        let links = p.text(schema.qualified("project_role_group"))
        return """
        WITH t AS (SELECT to_regclass(\(table)) AS oid),
        stored AS (
            SELECT version FROM \(schema.qualified("role_version")) ORDER BY id DESC LIMIT 1
        )
        SELECT t.oid::text AS table_sql, (SELECT relkind::text FROM pg_class WHERE oid = t.oid) AS relkind,
               (SELECT format_type(atttypid, NULL) FROM pg_attribute
                WHERE attrelid = t.oid AND attname = \(idColumn) AND attnum > 0 AND NOT attisdropped) AS id_type,
               (SELECT format_type(atttypid, NULL) FROM pg_attribute
                WHERE attrelid = t.oid AND attname = \(nameColumn) AND attnum > 0 AND NOT attisdropped) AS name_type,
               (SELECT CASE WHEN a.atttypmod > 4 THEN a.atttypmod - 4 END FROM pg_attribute a
                WHERE a.attrelid = to_regclass('auth_group') AND a.attname = 'name') AS group_name_max,
               to_regclass('auth_group') IS NOT NULL AS has_auth_group,
               current_setting('search_path') AS search_path,
               EXISTS (SELECT 1 FROM pg_constraint WHERE conrelid = to_regclass(\(links)) AND contype = 'f'
                       AND confrelid = to_regclass('auth_group')) AS links_reference_groups,
               (SELECT string_agg(\(triggerSummary), ';' ORDER BY tg.tgname)
                \(ourTriggersSource(namespace: "(SELECT oid FROM pg_namespace WHERE nspname = \(schemaName))"))) AS triggers,
               (SELECT version FROM stored) AS stored_version,
               \(schema.qualified("recorded_role_triggers"))() AS recorded
        FROM t
        """
        }
    }

    /// The check of a run with nothing to sync, cheap for a new server process (whose catalogue caches are cold, so
    /// that planning the full ``resolveStatement(_:schema:)`` costs several milliseconds of every deploy step): the
    /// stored version, and the triggers and the links' key as `recorded_role_triggers()` finds them by their OIDs
    /// (NULL once one of them is gone or defined otherwise since it was recorded). The columns are checked when a
    /// sync runs.
    static func quickStatement(_ target: RoleTarget, schema: OwnSchema) -> SyncStatement {
        SyncStatement("check the stored version and the triggers") { p in
        // Every stored version with its id, one row each (one row of NULLs when there is none), the newest picked
        // here. An ORDER BY would have the planner of a new server process weigh the table's index (`psql -c` on a
        // new server process, 16 runs each: 2.22 ms against 2.49 ms); array_agg() looked up the aggregate and the
        // array types (21 more buffer reads of the catalogue on a new server process than this join, counted with
        // pg_stat_get_xact_blocks_fetched). The table holds one row per recorded catalogue.
        """
        SELECT t.table_sql, t.triggers, v.id::text AS id, v.version
        FROM (SELECT to_regclass(\(p.text(target.tableSQL)))::text AS table_sql,
                     \(schema.qualified("recorded_role_triggers"))() AS triggers) t
        LEFT JOIN \(schema.qualified("role_version")) v ON true
        """
        }
    }

    /// Records the triggers and the links' key, as they are now, for ``quickStatement(_:schema:)``.
    static func recordTriggers(_ schema: OwnSchema) -> SyncStatement {
        SyncStatement("record the triggers for the next runs' check") { _ in
            "SELECT \(schema.qualified("record_role_triggers"))()"
        }
    }

    /// The stored version when ``quickStatement(_:schema:)`` finds the triggers and the links' key as the target
    /// needs them; nil otherwise, or when it cannot be read (migrator's role objects not installed yet): then the
    /// full check runs and says what is wrong.
    static func storedVersionIfInStep(_ connection: Connection, _ target: RoleTarget, schema: OwnSchema) -> String? {
        guard let rows = try? quickStatement(target, schema: schema).run(on: connection).rows, let row = rows.first,
              let table = (try? row.decodeIfPresent("table_sql", as: String.self)) ?? nil,
              ((try? row.decodeIfPresent("triggers", as: String.self)) ?? nil) == expectedTriggers(table: table, target: target)
        else { return nil }
        return newest(ids: rows.map { (try? $0.text("id")) ?? nil }, versions: rows.map { (try? $0.text("version")) ?? nil })
    }

    /// The version of the highest id; nil when the lists do not pair up or an element is not what the table holds
    /// (then the full check reads the version itself).
    static func newest(ids: [String?], versions: [String?]) -> String? {
        guard ids.count == versions.count else { return nil }
        var best: (id: Int64, version: String)?
        for (text, version) in zip(ids, versions) {
            guard let text, let id = Int64(text), let version else { return nil }
            if best.map({ id > $0.id }) ?? true { best = (id, version) }
        }
        return best?.version
    }

    /// - Throws: ``RoleSyncError`` that says what is wrong with the table or a column, and which option sets it.
    static func resolve(_ connection: Connection, _ target: RoleTarget, schema: OwnSchema) throws(RoleSyncError) -> ResolvedTarget {
        let statement = resolveStatement(target, schema: schema)
        let phase = statement.name
        let row: Row
        do {
            // A SELECT FROM a one-row CTE: always one row.
            row = try statement.one(on: connection)
        } catch {
            throw RoleSyncError(phase: phase, error: error)
        }
        let found: Found
        do {
            found = try Found(row)
        } catch {
            throw RoleSyncError(phase: phase, decoding: error)
        }
        func refuse(_ message: String) -> RoleSyncError {
            RoleSyncError(phase: phase, error: PostgresError(code: .clientError, message: message), input: true)
        }
        guard found.hasAuthGroup else {
            throw refuse(
                "there is no auth_group table (search_path \(found.searchPath)): the role sync needs Django's "
                    + "auth tables; run the app's `manage.py migrate` first (or migrator's example Migrations/)"
            )
        }
        guard let table = found.tableSQL, ["r", "p"].contains(found.relkind ?? "") else {
            throw refuse(
                "the project table '\(target.projectTable)' does not exist (search_path \(found.searchPath)); "
                    + "create it, or set --project-table (MIGRATOR_PROJECT_TABLE, or \"target\" in the roles file)"
            )
        }
        guard let idType = found.idType else {
            throw refuse("the project table \(table) has no column '\(target.idColumn)'; set --project-id-column (MIGRATOR_PROJECT_ID_COLUMN)")
        }
        guard ["smallint", "integer", "bigint"].contains(idType) else {
            throw refuse("the project id column \(table).\(target.idColumn) is \(idType); it must be smallint, integer or bigint")
        }
        guard let nameType = found.nameType else {
            throw refuse("the project table \(table) has no column '\(target.nameColumn)'; set --project-name-column (MIGRATOR_PROJECT_NAME_COLUMN)")
        }
        guard ["text", "character varying", "character", "citext"].contains(nameType) else {
            throw refuse("the project name column \(table).\(target.nameColumn) is \(nameType), not text; a group name is made of it")
        }
        let expected = expectedTriggers(table: table, target: target)
        return ResolvedTarget(
            target: target, tableSQL: table, idSQL: SQLIdentifier.quote(target.idColumn),
            nameSQL: SQLIdentifier.quote(target.nameColumn), maxGroupName: found.groupNameMax,
            triggersInStep: found.triggers == expected && found.linksReferenceGroups,
            recordedInStep: found.recorded == expected,
            // The stored catalogue itself is read only when a sync needs it (RoleSynchronizer.sync).
            stored: found.storedVersion.map { RoleSynchronizer.StoredVersion(version: $0, catalogue: nil) }
        )
    }

    /// The row of ``resolveStatement(_:schema:)``. NULL means: no such table, column or type (`to_regclass` and the
    /// subqueries), no limit on `auth_group.name`, no trigger of ours, no stored version.
    private struct Found {
        var searchPath: String
        var hasAuthGroup: Bool
        var tableSQL: String?
        var relkind: String?
        var idType: String?
        var nameType: String?
        var groupNameMax: Int?
        var triggers: String
        var linksReferenceGroups: Bool
        var storedVersion: String?
        var recorded: String?

        init(_ row: Row) throws(RowDecodingError) {
            searchPath = try row.decode("search_path")
            hasAuthGroup = try row.decode("has_auth_group")
            tableSQL = try row.decodeIfPresent("table_sql")
            relkind = try row.decodeIfPresent("relkind")
            idType = try row.decodeIfPresent("id_type")
            nameType = try row.decodeIfPresent("name_type")
            groupNameMax = try row.decodeIfPresent("group_name_max")
            triggers = try row.decodeIfPresent("triggers") ?? ""
            linksReferenceGroups = try row.decode("links_reference_groups")
            storedVersion = try row.decodeIfPresent("stored_version")
            recorded = try row.decodeIfPresent("recorded")
        }
    }

    /// What ``resolveStatement(_:schema:)`` reads back when the triggers are right: `name|table|args,` sorted by name.
    static func expectedTriggers(table: String, target: RoleTarget) -> String {
        let id = target.idColumn
        let arguments = [
            "migrator_project_delete_groups": "\(id),",
            "migrator_project_notify_delete": "\(id),",
            "migrator_project_notify_rename": "\(id),\(target.nameColumn),",
            "migrator_project_truncate": "",
        ]
        // Django's auth_group, found on the search_path as every statement of the sync finds it (so printed bare).
        let tables = ["migrator_group_deleted": "auth_group"]
        return triggerNames.map { "\($0)|\(tables[$0] ?? table)|\(arguments[$0] ?? "")" }.joined(separator: ";")
    }

    /// Triggers on any table that call our trigger functions: `tgname`, `tbl`.
    static func ourTriggers(_ schema: OwnSchema) -> SyncStatement {
        SyncStatement("find our triggers", reads: "pg_trigger") { p in
            """
            SELECT tg.tgname, tg.tgrelid::regclass::text AS tbl
            \(ourTriggersSource(namespace: "(SELECT oid FROM pg_namespace WHERE nspname = \(p.text(schema.name)))"))
            """
        }
    }

    /// Whether the links reference auth_group yet: `present`.
    static func linksReferenceGroups(_ links: String) -> SyncStatement {
        SyncStatement("check the links' foreign key", reads: "pg_constraint") { p in
            """
            SELECT EXISTS (SELECT 1 FROM pg_constraint WHERE conrelid = to_regclass(\(p.text(links))) AND contype = 'f'
                           AND confrelid = to_regclass('auth_group')) AS present
            """
        }
    }

    /// Replaces whatever triggers of ours exist (on this table or on a table that was the target before) with the
    /// target's, in one short transaction of its own: the DDL's lock on the app's table is held for a moment, never
    /// for a whole sync.
    static func installTriggers(
        _ connection: Connection, _ resolved: ResolvedTarget, schema: OwnSchema, logger: Logger
    ) throws(RoleSyncError) {
        let table = resolved.tableSQL
        let id = resolved.target.idColumn
        let name = resolved.nameSQL
        // The column names passed as trigger arguments are string literals; SQLIdentifier admits no quote in them.
        let create = """
            CREATE TRIGGER migrator_project_delete_groups BEFORE DELETE ON \(table)
                FOR EACH ROW EXECUTE FUNCTION \(schema.qualified("project_deleted"))('\(id)');
            CREATE TRIGGER migrator_project_truncate AFTER TRUNCATE ON \(table)
                FOR EACH STATEMENT EXECUTE FUNCTION \(schema.qualified("projects_truncated"))();
            CREATE TRIGGER migrator_project_notify_rename AFTER UPDATE OF \(name) ON \(table)
                FOR EACH ROW WHEN (OLD.\(name) IS DISTINCT FROM NEW.\(name))
                EXECUTE FUNCTION \(schema.qualified("project_notify"))('\(id)', '\(resolved.target.nameColumn)');
            CREATE TRIGGER migrator_project_notify_delete AFTER DELETE ON \(table)
                FOR EACH ROW EXECUTE FUNCTION \(schema.qualified("project_notify"))('\(id)');
            CREATE TRIGGER migrator_group_deleted BEFORE DELETE ON auth_group
                FOR EACH ROW EXECUTE FUNCTION \(schema.qualified("group_deleted"))();
            """
        let phase = "install the triggers on the project table \(table)"
        let links = schema.qualified("project_role_group")
        func failed(_ error: PostgresError) -> RoleSyncError {
            if connection.isConnected, connection.transactionStatus != .idle { _ = try? connection.query("ROLLBACK") }
            return RoleSyncError(phase: phase, error: error)
        }
        do throws(PostgresError) {
            try connection.query("BEGIN")
            let existing = try ourTriggers(schema).run(on: connection)
            let referenced = try linksReferenceGroups(links).one(on: connection)
            let drops: [String]
            let present: Bool
            do {
                drops = try existing.rows.map { row throws(RowDecodingError) in
                    "DROP TRIGGER \(SQLIdentifier.quote(try row.decode("tgname"))) ON \(try row.decode("tbl", as: String.self))"
                }
                present = try referenced.decode("present")
            } catch {
                throw PostgresError(code: .clientError, message: error.description)
            }
            for drop in drops { try connection.query(drop) }
            if !present {
                // A group deleted by the app (Django deletes the rows that reference it first) takes its link along.
                try connection.query(
                    "ALTER TABLE \(links) ADD FOREIGN KEY (group_id) REFERENCES auth_group (id) ON DELETE CASCADE"
                )
            }
            _ = try connection.execute(script: create)
            _ = try recordTriggers(schema).run(on: connection)
            try connection.query("COMMIT")
        } catch {
            throw failed(error)
        }
        logger.info("installed the triggers on the project table and auth_group", metadata: ["roles.project_table": "\(table)"])
    }
}
