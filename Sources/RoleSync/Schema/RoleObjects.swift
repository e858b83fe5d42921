import Logging
import MigrationEngine
import Postgres

/// What the role sync keeps in migrator's own schema, and its upgrade from the layout of earlier releases.
///
/// - `role_version`: one row per sync that recorded a version, the newest being the catalogue in force.
/// - `project_role_group`: the link from (project, role) to its `auth_group` row, so that a renamed project keeps
///   its groups. Its group_id references `auth_group` (ON DELETE CASCADE); there is deliberately no foreign key to
///   the project table, which is the app's (Django's `flush` truncates it, and a migration of the app may rebuild it).
/// - `delete_role_groups(integer[])`: removes groups with every row that references them, found from the catalog's
///   foreign keys (Django's `auth_user_groups`, a custom user model's `users_user_groups`, guardian's tables, …),
///   so no user model is named anywhere.
/// - the trigger functions `project_deleted`, `projects_truncated` and `project_notify` (renames and deletes; no
///   trigger of ours fires on INSERT: `serve` polls for new projects); the triggers themselves sit on the project
///   table and are kept in step with the target by ``RoleTargetResolver``.
/// - the trigger function `group_deleted`, on `auth_group` (BEFORE DELETE, per row): a role group the app deletes
///   itself takes along the rows that reference it, including those a sync wrote while the app's DELETE waited for
///   it (see ``installVersion3(_:_:_:)``).
public enum RoleObjects {
    /// Versions and checksums of the migrations of earlier releases whose work this component took over.
    static let supersededMigrations: [(version: Int64, checksums: [String])] = [
        (6, ["sha256:0f93e8d41b57d464504bc90eecff56610cfa3da0716350ab8f4f4ec2b39bb699"]),
        (7, ["sha256:4ef5ed4634e921d69bdc6e8717fdc95c81543fbf712d9cc6fc565e8fc8354ce7"]),
        (8, ["sha256:9fb32703ae21aacb8b8829920ff6b7f2639a75fbd8adfb43fa7be223390b1ade"]),
    ]

    public static let component = OwnObjectsComponent(name: "role-sync", steps: [
        .init(version: 1, summary: "role versions, project/role/group links, trigger functions", apply: installVersion1),
        .init(version: 2, summary: "delete_role_groups locks the groups before the rows that reference them", apply: installVersion2),
        .init(version: 3, summary: "group_deleted: a role group the app deletes takes the rows that reference it along", apply: installVersion3),
        .init(version: 4, summary: "record_role_triggers: the triggers and the links' key, checked by their OIDs", apply: installVersion4),
    ])

    /// `recorded_role_triggers()`: what the check of a run with nothing to sync calls (see
    /// ``RoleTargetResolver/quickStatement(_:schema:)``). It returns the triggers of ours as they were when
    /// `record_role_triggers()` last found them in step with the target (`name|table|args;…`, as
    /// ``RoleTargetResolver/expectedTriggers(table:target:)`` spells them), or NULL once any of them, or the links'
    /// key to auth_group, is gone or defined otherwise: it compares `pg_get_triggerdef(oid)` and
    /// `pg_get_constraintdef(oid)` with the definitions recorded. Looking objects up by OID is what a new server
    /// process does cheaply (its catalogue caches are cold; planning a query over `pg_trigger` and `pg_constraint`
    /// costs it more than a millisecond of every deploy step).
    ///
    /// `record_role_triggers()` writes that function anew from the catalogue: the values are quoted by the server
    /// (`format('%L')`), nothing comes from the client. It is best effort: a role that may not replace the function
    /// (another owner) leaves it as it is, and the next run takes the full check again. An advisory lock of the
    /// transaction keeps two recorders from replacing the function at once.
    @Sendable
    static func installVersion4(_ connection: Connection, _ schema: OwnSchema, _ logger: Logger) throws {
        _ = try connection.execute(script: recordTriggersSQL(schema))
    }

    /// The classid of the advisory lock `record_role_triggers()` takes for its transaction (with objid 0):
    /// "mrtr" in ASCII, apart from the migrate lock's keys.
    static let recordLockClass: Int32 = 0x6D72_7472

    static func recordTriggersSQL(_ schema: OwnSchema) -> String {
        let links = schema.qualified("project_role_group")
        let recorded = schema.qualified("recorded_role_triggers")
        return """
            CREATE OR REPLACE FUNCTION \(recorded)() RETURNS text LANGUAGE sql STABLE AS $fn$ SELECT NULL::text $fn$;

            CREATE OR REPLACE FUNCTION \(schema.qualified("record_role_triggers"))() RETURNS void
            LANGUAGE plpgsql AS $fn$
            DECLARE
                checks text;
                summary text;
                links_key oid;
                body text := 'SELECT NULL::text';
            BEGIN
                SELECT string_agg(format('pg_get_triggerdef(%s) IS NOT DISTINCT FROM %L', tg.oid, pg_get_triggerdef(tg.oid)),
                                  ' AND ' ORDER BY tg.tgname),
                       string_agg(\(RoleTargetResolver.triggerSummary), ';' ORDER BY tg.tgname)
                INTO checks, summary
                \(RoleTargetResolver.ourTriggersSource(namespace: "'\(schema.sql)'::regnamespace"));
                SELECT c.oid INTO links_key FROM pg_constraint c
                WHERE c.conrelid = '\(links)'::regclass AND c.contype = 'f' AND c.confrelid = to_regclass('auth_group')
                ORDER BY c.oid LIMIT 1;
                IF checks IS NOT NULL AND links_key IS NOT NULL THEN
                    body := format('SELECT CASE WHEN %s AND pg_get_constraintdef(%s) IS NOT DISTINCT FROM %L THEN %L END',
                                   checks, links_key, pg_get_constraintdef(links_key), summary);
                END IF;
                PERFORM pg_advisory_xact_lock(\(recordLockClass), 0);
                EXECUTE format('CREATE OR REPLACE FUNCTION %s() RETURNS text LANGUAGE sql STABLE AS %L', '\(recorded)', body);
            EXCEPTION WHEN insufficient_privilege THEN
                NULL;  -- another role owns the function: the next run takes the full check, as before
            END;
            $fn$;
            """
    }

    /// The transaction-local setting with which `delete_role_groups` tells `group_deleted` that the rows referencing
    /// the groups it deletes are gone already (it holds the groups' locks, so no sync wrote any since).
    static let deletingGroupsSetting = "migrator.deleting_role_groups"

    /// An app that deletes one of our role groups itself (Django: the memberships and grants it read, then the group;
    /// its foreign keys are checked at COMMIT) may have its DELETE wait for a sync that locked the group and wrote a
    /// grant for it. Its own deletes never saw that grant, so its COMMIT used to fail with 23503. `group_deleted` runs
    /// BEFORE DELETE of each row of the group table, after the server has locked the row (so after that sync
    /// committed), and its statements take a new snapshot: they see the sync's rows and delete them with the group.
    /// A group that is not ours (no link) is left to the app: its foreign keys behave as before.
    ///
    /// `delete_role_groups` (the project delete and truncate triggers, a sync removing roles) deletes the referencing
    /// rows itself, holding the groups' locks; it sets ``deletingGroupsSetting`` around its DELETE of the groups so
    /// that the trigger costs one setting lookup per group, not a catalog query and a DELETE per referencing table.
    @Sendable
    static func installVersion3(_ connection: Connection, _ schema: OwnSchema, _ logger: Logger) throws {
        _ = try connection.execute(script: deleteGroupsSQLVersion3(schema) + "\n" + groupDeletedSQL(schema))
    }

    static func groupDeletedSQL(_ schema: OwnSchema) -> String {
        let links = schema.qualified("project_role_group")
        return """
            CREATE OR REPLACE FUNCTION \(schema.qualified("group_deleted"))() RETURNS trigger
            LANGUAGE plpgsql AS $fn$
            DECLARE
                ref record;
            BEGIN
                IF current_setting('\(deletingGroupsSetting)', true) = 'on' THEN
                    RETURN OLD;  -- delete_role_groups deleted what references its groups already
                END IF;
                IF NOT EXISTS (SELECT 1 FROM \(links) WHERE group_id = OLD.id) THEN
                    RETURN OLD;  -- not a role group: the app's own foreign keys decide
                END IF;
                FOR ref IN
                    \(referencingColumns(of: "TG_RELID", links: links))
                LOOP
                    EXECUTE format('DELETE FROM %s WHERE %I = $1', ref.tbl, ref.col) USING OLD.id;
                END LOOP;
                RETURN OLD;
            END;
            $fn$;
            """
    }

    /// The query the functions loop over: each single-column foreign key that references `groups` (a regclass
    /// expression of the function), but not the links' own nor the group table's self-references, as `tbl`, `col`.
    static func referencingColumns(of groups: String, links: String) -> String {
        """
        SELECT c.conrelid::regclass AS tbl, a.attname AS col
                            FROM pg_constraint c
                            JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = c.conkey[1]
                            WHERE c.contype = 'f' AND c.confrelid = \(groups) AND cardinality(c.conkey) = 1
                              AND c.conrelid <> '\(links)'::regclass AND c.conrelid <> \(groups)
                            ORDER BY c.conrelid::regclass::text, a.attname
        """
    }

    /// Version 2's function, with ``deletingGroupsSetting`` on around its DELETE of the groups.
    static func deleteGroupsSQLVersion3(_ schema: OwnSchema) -> String {
        deleteGroupsSQLVersion2(schema, markingItsDelete: true)
    }

    /// `delete_role_groups` takes the sync's lock order (``DesiredRows/lockCTEs(_:scope:)``): the project row is locked by the
    /// app's DELETE already, then the groups (`FOR UPDATE`, in id order), then the rows that reference them. Version 1
    /// deleted the referencing rows first and the groups last, the other order, which deadlocked with a sync that
    /// renamed groups and then removed their permissions.
    @Sendable
    static func installVersion2(_ connection: Connection, _ schema: OwnSchema, _ logger: Logger) throws {
        _ = try connection.execute(script: deleteGroupsSQLVersion2(schema))
    }

    /// - Parameter markingItsDelete: version 3's change (``installVersion3(_:_:_:)``).
    static func deleteGroupsSQLVersion2(_ schema: OwnSchema, markingItsDelete: Bool = false) -> String {
        let links = schema.qualified("project_role_group")
        // The count is read right after the DELETE: a later PERFORM would set ROW_COUNT to 1.
        let groupsDelete = """
            EXECUTE format('DELETE FROM %s WHERE id = ANY ($1)', groups) USING gids;
                            GET DIAGNOSTICS deleted = ROW_COUNT;
            """
        let markedDelete = markingItsDelete
            ? """
            PERFORM set_config('\(deletingGroupsSetting)', 'on', true);
                            \(groupsDelete)
                            PERFORM set_config('\(deletingGroupsSetting)', 'off', true);
            """
            : groupsDelete
        return """
            CREATE OR REPLACE FUNCTION \(schema.qualified("delete_role_groups"))(gids integer[]) RETURNS integer
            LANGUAGE plpgsql AS $fn$
            DECLARE
                groups regclass;
                ref record;
                deleted integer;
            BEGIN
                IF gids IS NULL OR cardinality(gids) = 0 THEN
                    RETURN 0;
                END IF;
                -- The group table is the one our links reference; the rows that reference it are found from the
                -- catalog, so memberships of any user model and any app's grants go with the group.
                SELECT c.confrelid::regclass INTO groups FROM pg_constraint c
                WHERE c.conrelid = '\(links)'::regclass AND c.contype = 'f';
                IF groups IS NULL THEN
                    RETURN 0;  -- no sync has run yet, so no group is linked
                END IF;
                -- The lock order of migrator's sync: the groups (in id order) before the rows that reference them, so
                -- that a sync writing for these groups and this delete never wait for each other's locks in turn. A
                -- group deleted meanwhile is skipped.
                EXECUTE format('SELECT array_agg(id) FROM (SELECT id FROM %s WHERE id = ANY ($1) ORDER BY id FOR UPDATE) g', groups)
                    INTO gids USING gids;
                IF gids IS NULL THEN
                    RETURN 0;
                END IF;
                FOR ref IN
                    \(referencingColumns(of: "groups", links: links))
                LOOP
                    EXECUTE format('DELETE FROM %s WHERE %I = ANY ($1)', ref.tbl, ref.col) USING gids;
                END LOOP;
                \(markedDelete)
                RETURN deleted;
            END;
            $fn$;
            """
    }

    @Sendable
    static func installVersion1(_ connection: Connection, _ schema: OwnSchema, _ logger: Logger) throws {
        let versions = schema.qualified("role_version")
        let links = schema.qualified("project_role_group")
        // Tables of an earlier release move with their rows; nothing is copied, so no row can be lost or doubled.
        try OwnObjects.adoptLegacyTable(connection, from: "role_schema_version", to: "role_version", schema: schema, logger: logger)
        if try OwnObjects.adoptLegacyTable(connection, from: "project_role_group", to: "project_role_group", schema: schema, logger: logger) {
            // Its foreign key to main_project goes: the project table is the app's (see above).
            let projectKeys = SyncStatement("find the links' other foreign keys", reads: "pg_constraint") { p in
                """
                SELECT conname FROM pg_constraint
                WHERE conrelid = to_regclass(\(p.text(links))) AND contype = 'f' AND confrelid <> to_regclass('auth_group')
                """
            }
            for row in try projectKeys.run(on: connection).rows {
                let name: String = try row.decode("conname")
                try connection.query("ALTER TABLE \(links) DROP CONSTRAINT \(SQLIdentifier.quote(name))")
            }
        }
        try connection.query(
            """
            CREATE TABLE IF NOT EXISTS \(versions) (
                id bigint NOT NULL PRIMARY KEY GENERATED BY DEFAULT AS IDENTITY,
                version text NOT NULL CHECK (version ~ '^[0-9a-f]{64}$'),
                catalogue jsonb NOT NULL,
                synced_at timestamp with time zone NOT NULL DEFAULT now(),
                synced_by text NOT NULL DEFAULT current_user,
                projects integer NOT NULL CHECK (projects >= 0),
                groups_created integer NOT NULL DEFAULT 0 CHECK (groups_created >= 0),
                groups_renamed integer NOT NULL DEFAULT 0 CHECK (groups_renamed >= 0),
                permissions_added integer NOT NULL DEFAULT 0 CHECK (permissions_added >= 0),
                permissions_removed integer NOT NULL DEFAULT 0 CHECK (permissions_removed >= 0),
                duration_ms double precision NOT NULL CHECK (duration_ms >= 0),
                forced boolean NOT NULL DEFAULT false
            )
            """
        )
        try connection.query(
            """
            ALTER TABLE \(versions)
                ADD COLUMN IF NOT EXISTS groups_name_taken integer NOT NULL DEFAULT 0,
                ADD COLUMN IF NOT EXISTS groups_name_too_long integer NOT NULL DEFAULT 0
            """
        )
        try connection.query("CREATE INDEX IF NOT EXISTS role_version_latest_idx ON \(versions) (synced_at DESC, id DESC)")
        try connection.query(
            """
            CREATE TABLE IF NOT EXISTS \(links) (
                project_id bigint NOT NULL,
                role varchar(150) NOT NULL,
                -- REFERENCES auth_group (id) ON DELETE CASCADE, added once auth_group exists (RoleTargetResolver):
                -- migrator's objects are installed before the app's migrations have run.
                group_id integer NOT NULL,
                PRIMARY KEY (project_id, role),
                UNIQUE (group_id)
            )
            """
        )
        _ = try connection.execute(script: functionsSQL(schema))
        // The earlier release's trigger functions (and with them their triggers on main_project): the target's
        // triggers replace them before the next sync (RoleTargetResolver).
        try connection.query("DROP FUNCTION IF EXISTS public.project_role_group_delete_groups() CASCADE")
        try connection.query("DROP FUNCTION IF EXISTS public.main_project_notify_migrator() CASCADE")
        let marked = try HistoryStore(schema: schema).supersede(
            connection, migrations: supersededMigrations, by: "migrator's own schema \(schema.name)"
        )
        if marked > 0 {
            logger.info("history rows of an earlier release's shipped migrations are now superseded", metadata: [
                "history.rows": "\(marked)",
            ])
        }
    }

    static func functionsSQL(_ schema: OwnSchema) -> String {
        let links = schema.qualified("project_role_group")
        return """
            CREATE OR REPLACE FUNCTION \(schema.qualified("delete_role_groups"))(gids integer[]) RETURNS integer
            LANGUAGE plpgsql AS $fn$
            DECLARE
                groups regclass;
                ref record;
                deleted integer;
            BEGIN
                IF gids IS NULL OR cardinality(gids) = 0 THEN
                    RETURN 0;
                END IF;
                -- The group table is the one our links reference; the rows that reference it are found from the
                -- catalog, so memberships of any user model and any app's grants go with the group.
                SELECT c.confrelid::regclass INTO groups FROM pg_constraint c
                WHERE c.conrelid = '\(links)'::regclass AND c.contype = 'f';
                IF groups IS NULL THEN
                    RETURN 0;  -- no sync has run yet, so no group is linked
                END IF;
                FOR ref IN
                    \(referencingColumns(of: "groups", links: links))
                LOOP
                    EXECUTE format('DELETE FROM %s WHERE %I = ANY ($1)', ref.tbl, ref.col) USING gids;
                END LOOP;
                EXECUTE format('DELETE FROM %s WHERE id = ANY ($1)', groups) USING gids;
                GET DIAGNOSTICS deleted = ROW_COUNT;
                RETURN deleted;
            END;
            $fn$;

            -- BEFORE DELETE, per project row: the links are still there to be read. TG_ARGV[0] is the id column.
            CREATE OR REPLACE FUNCTION \(schema.qualified("project_deleted"))() RETURNS trigger
            LANGUAGE plpgsql AS $fn$
            BEGIN
                PERFORM \(schema.qualified("delete_role_groups"))(ARRAY(
                    SELECT group_id FROM \(links) WHERE project_id = (to_jsonb(OLD) ->> TG_ARGV[0])::bigint
                ));
                RETURN OLD;
            END;
            $fn$;

            -- AFTER TRUNCATE: no row trigger fires, so every linked group goes.
            CREATE OR REPLACE FUNCTION \(schema.qualified("projects_truncated"))() RETURNS trigger
            LANGUAGE plpgsql AS $fn$
            BEGIN
                PERFORM \(schema.qualified("delete_role_groups"))(ARRAY(SELECT group_id FROM \(links)));
                RETURN NULL;
            END;
            $fn$;

            -- AFTER UPDATE OF the name, AFTER DELETE: tells `migrator serve` which project changed. (Releases before
            -- the polling of new projects also ran it AFTER INSERT; no insert trigger calls it now.)
            CREATE OR REPLACE FUNCTION \(schema.qualified("project_notify"))() RETURNS trigger
            LANGUAGE plpgsql AS $fn$
            BEGIN
                IF TG_OP = 'DELETE' THEN
                    PERFORM pg_notify('migrator_projects', to_jsonb(OLD) ->> TG_ARGV[0]);
                ELSE
                    PERFORM pg_notify('migrator_projects', to_jsonb(NEW) ->> TG_ARGV[0]);
                END IF;
                RETURN NULL;
            END;
            $fn$;
            """
    }
}
