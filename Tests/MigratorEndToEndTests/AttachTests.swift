import Foundation
import MigratorTestSupport
import Postgres
import RoleSync
import SystemSupport
import Testing

/// migrator's own objects in a schema of their own: upgrading a database an earlier release made, attaching to a
/// schema someone else owns (no migrations folder), and a project table other than the reference app's.
@Suite("Attach", .serialized)
struct AttachTests {
    // MARK: - The previous release's layout

    /// The migrations the previous release shipped: today's 0001-0005 and the 0006-0008 it also had, kept verbatim.
    static func previousReleaseFolder() throws -> MigrationFolder {
        let folder = try MigrationFolder.shipped()
        let source = RepositoryPaths.root.appendingPathComponent("Tests/Fixtures/previous-release-migrations").path
        for name in try FileManager.default.contentsOfDirectory(atPath: source) where name.hasSuffix(".sql") {
            try folder.write(name, String(contentsOfFile: (source as NSString).appendingPathComponent(name), encoding: .utf8))
        }
        return folder
    }

    /// Builds the database exactly as the previous release left it after `migrate` on its shipped files and a
    /// sync of the reference catalogue: its history table in public, with the rows it wrote (same checksum
    /// algorithm), its role tables and triggers in public, three projects with their groups, permissions and a
    /// member in each group. Nothing of today's release runs here.
    static func makePreviousRelease(_ connection: Connection, folder: MigrationFolder) throws {
        try connection.query(
            """
            CREATE TABLE public.migrator_history (
                version bigint PRIMARY KEY CHECK (version > 0), name text NOT NULL, checksum text NOT NULL,
                transactional boolean NOT NULL, state text NOT NULL CHECK (state IN ('applied', 'failed')),
                applied_at timestamptz NOT NULL DEFAULT now(), applied_by text NOT NULL DEFAULT current_user,
                duration_ms double precision NOT NULL DEFAULT 0, statements_done integer, statement_checksums text[],
                failed_statement integer, error text
            )
            """
        )
        let names = try FileManager.default.contentsOfDirectory(atPath: folder.path).filter { $0.hasSuffix(".sql") }.sorted()
        #expect(names.count == 8)
        for name in names {
            let text = try String(contentsOfFile: (folder.path as NSString).appendingPathComponent(name), encoding: .utf8)
            try connection.query("BEGIN")
            _ = try connection.execute(script: text)
            try connection.query(
                """
                INSERT INTO public.migrator_history (version, name, checksum, transactional, state, duration_ms)
                VALUES ($1, $2, 'sha256:' || encode(sha256(convert_to($3, 'UTF8')), 'hex'), true, 'applied', 1)
                """,
                [Int64(name.prefix(4))!, String(name.dropFirst(5).dropLast(4)), text]
            )
            try connection.query("COMMIT")
        }
        let catalogue = RoleCatalogue.reference
        let pairs = catalogue.roles.flatMap { role in role.permissions.map { (role.name, $0) } }
        _ = try connection.execute(script: "INSERT INTO main_project (name) VALUES ('alpha'), ('beta'), ('gamma')")
        try connection.query(
            """
            INSERT INTO auth_permission (name, content_type_id, codename)
            SELECT w.name, ct.id, w.codename FROM unnest($1::text[], $2::text[]) AS w(codename, name),
                   django_content_type ct WHERE ct.app_label = 'main' AND ct.model = 'project'
            """,
            [catalogue.permissions.map(\.codename), catalogue.permissions.map(\.name)]
        )
        try connection.query(
            """
            WITH roles AS (SELECT DISTINCT unnest($1::text[]) AS role),
            made AS (
                INSERT INTO auth_group (name) SELECT p.id || '_' || p.name || '_' || r.role FROM main_project p, roles r
                RETURNING id, name
            )
            INSERT INTO public.project_role_group (project_id, role, group_id)
            SELECT p.id, r.role, m.id FROM main_project p, roles r JOIN made m ON true
            WHERE m.name = p.id || '_' || p.name || '_' || r.role
            """,
            [catalogue.roles.map(\.name)]
        )
        try connection.query(
            """
            WITH wanted AS (
                SELECT l.group_id, l.project_id, ap.id AS permission_id, ap.content_type_id
                FROM public.project_role_group l
                JOIN unnest($1::text[], $2::text[]) AS w(role, codename) ON w.role = l.role
                JOIN auth_permission ap ON ap.codename = w.codename
                JOIN django_content_type ct ON ct.id = ap.content_type_id AND ct.app_label = 'main' AND ct.model = 'project'
            ), global AS (
                INSERT INTO auth_group_permissions (group_id, permission_id) SELECT group_id, permission_id FROM wanted
            )
            INSERT INTO guardian_groupobjectpermission (object_pk, content_type_id, group_id, permission_id)
            SELECT project_id::text, content_type_id, group_id, permission_id FROM wanted
            """,
            [pairs.map(\.0), pairs.map(\.1)]
        )
        try connection.query(
            """
            INSERT INTO public.role_schema_version (version, catalogue, projects, groups_created, duration_ms)
            VALUES ($1, $2::jsonb, 3, 15, 1)
            """,
            [catalogue.version, catalogue.canonicalJSON]
        )
        _ = try connection.execute(script: """
            INSERT INTO users_user (username, email, password, is_superuser, is_staff, is_active, first_name, last_name, date_joined)
            VALUES ('ana', 'ana@example.com', '!', false, false, true, '', '', now());
            INSERT INTO users_user_groups (user_id, group_id) SELECT u.id, g.id FROM users_user u, auth_group g;
            """)
    }

    /// What must survive the upgrade row for row.
    static func snapshot(_ connection: Connection, links: String, versions: String) throws -> [String] {
        try [
            "SELECT project_id || ':' || role || ':' || group_id FROM \(links) ORDER BY 1",
            "SELECT id || ':' || name FROM auth_group ORDER BY 1",
            "SELECT user_id || ':' || group_id FROM users_user_groups ORDER BY 1",
            "SELECT group_id || ':' || permission_id FROM auth_group_permissions ORDER BY 1",
            "SELECT group_id || ':' || permission_id || ':' || object_pk FROM guardian_groupobjectpermission ORDER BY 1",
            "SELECT id || ':' || version || ':' || projects FROM \(versions) ORDER BY 1",
        ].map { sql in try connection.query(sql).rows.map { $0.values.first.flatMap { $0 } ?? "" }.joined(separator: ",") }
    }

    /// A database as the previous release left it, and its snapshot before the upgrade.
    static func previousReleaseDatabase(_ db: TestDatabase) throws -> (Connection, [String]) {
        let connection = try db.connect()
        try makePreviousRelease(connection, folder: previousReleaseFolder())
        return (connection, try snapshot(connection, links: "public.project_role_group", versions: "public.role_schema_version"))
    }

    @Test("a database of the previous release is upgraded in place by migrate: rows kept, objects moved, 0006-0008 superseded")
    func upgradeByMigrate() throws {
        try TestDatabase.with { db in
            let (connection, before) = try Self.previousReleaseDatabase(db)
            #expect(before[0].split(separator: ",").count == 15 && before[2].split(separator: ",").count == 15)

            // status reads the old layout without changing it.
            let folder = try MigrationFolder.shipped()
            let status = try E2E.run(E2E.args("status", folder), database: db)
            #expect(status.exitCode == 0, status.transcript)
            #expect(status.stdout.contains("public.migrator_history, where an earlier release kept it"), status.transcript)
            #expect(try connection.tableExists("public.migrator_history"))

            let run = try E2E.run(E2E.args("migrate", folder), database: db)
            #expect(run.exitCode == 0, run.transcript)
            #expect(run.stdout.contains("nothing to migrate"), run.transcript)
            #expect(run.stdout.contains("role catalogue unchanged"), run.transcript)

            let after = try Self.snapshot(connection, links: "migrator.project_role_group", versions: "migrator.role_version")
            #expect(after == before, "a row was lost, changed or duplicated")
            for gone in ["public.migrator_history", "public.project_role_group", "public.role_schema_version"] {
                #expect(try !connection.tableExists(gone), "\(gone) is still there")
            }
            #expect(try connection.count("SELECT count(*) FROM pg_proc WHERE pronamespace = 'public'::regnamespace") == 0)
            #expect(try connection.scalar(
                "SELECT string_agg(tgname, ',' ORDER BY tgname) FROM pg_trigger WHERE tgrelid = 'main_project'::regclass AND NOT tgisinternal"
            ) == "migrator_project_delete_groups,migrator_project_notify_delete,migrator_project_notify_rename,migrator_project_truncate")
            #expect(try connection.scalar(
                "SELECT string_agg(version || ':' || coalesce(superseded, '-'), ',' ORDER BY version) FROM migrator.history"
            ) == "1:-,2:-,3:-,4:-,5:-,6:migrator's own schema migrator,7:migrator's own schema migrator,8:migrator's own schema migrator")

            // Without the old files (today's folder) and with them (a team that kept its copy), verify passes.
            let verify = try E2E.run(E2E.args("verify", folder), database: db)
            #expect(verify.exitCode == 0, verify.transcript)
            #expect(verify.stdout.contains("3 more superseded by migrator's own schema"), verify.transcript)
            let previous = try Self.previousReleaseFolder()
            let kept = try E2E.run(E2E.args("verify", previous), database: db)
            #expect(kept.exitCode == 0, kept.transcript)
            let json = try decode(StatusJSON.self, E2E.run(E2E.args("status", folder, "--json"), database: db).stdout)
            #expect(json.migrations.map(\.state) == ["applied", "applied", "applied", "applied", "applied", "superseded", "superseded", "superseded"])

            // The new trigger does what the old one did: a deleted project takes its groups and memberships along.
            let alpha = try #require(try connection.scalar("SELECT id FROM main_project WHERE name = 'alpha'"))
            try connection.query("DELETE FROM main_project WHERE id = $1::bigint", [alpha])
            #expect(try connection.count("SELECT count(*) FROM auth_group WHERE name LIKE $1", ["\(alpha)\\_%"]) == 0)
            #expect(try connection.count("SELECT count(*) FROM users_user_groups") == 10)
            #expect(try connection.count("SELECT count(*) FROM migrator.project_role_group") == 10)

            // A second run changes nothing.
            let again = try E2E.run(E2E.args("migrate", folder), database: db)
            #expect(again.exitCode == 0 && again.stdout.contains("nothing to migrate"), again.transcript)
        }
    }

    @Test("update-roles upgrades the previous release's layout too, without a migrations folder")
    func upgradeByUpdateRoles() throws {
        try TestDatabase.with { db in
            let (connection, before) = try Self.previousReleaseDatabase(db)
            let empty = try MigrationFolder()
            let run = try E2E.run(["update-roles", "--no-force"], database: db, currentDirectory: empty.path)
            #expect(run.exitCode == 0, run.transcript)
            #expect(run.stdout.contains("role catalogue unchanged"), run.transcript)
            #expect(try Self.snapshot(connection, links: "migrator.project_role_group", versions: "migrator.role_version") == before)
            // The full reconcile on top finds nothing to change: the groups were adopted as they are.
            let full = try E2E.run(["update-roles", "--json"], database: db, currentDirectory: empty.path)
            #expect(full.exitCode == 0, full.transcript)
            let report = try JSONSerialization.jsonObject(with: Data(full.stdout.utf8)) as? [String: Any]
            let roles = try #require(report?["roles"] as? [String: [String: Any]], full.transcript)
            let written = roles.values.map { changes in changes.values.compactMap { $0 as? Int }.reduce(0, +) }.reduce(0, +)
            #expect(written == 0, full.transcript)
            #expect(try connection.count("SELECT count(*) FROM auth_group") == 15)
            #expect(try connection.count("SELECT count(*) FROM migrator.role_version") == 2)
            // status and verify read the history without a folder and say so.
            let status = try E2E.run(["status"], database: db, currentDirectory: empty.path)
            #expect(status.exitCode == 0, status.transcript)
            #expect(status.stdout.contains("no migrations folder"), status.transcript)
            let verify = try E2E.run(["verify"], database: db, currentDirectory: empty.path)
            #expect(verify.exitCode == 0, verify.transcript)
        }
    }

    @Test("serve --no-migrate upgrades the previous release's layout too, and keeps syncing")
    func upgradeBySidecar() throws {
        try TestDatabase.with { db in
            let (connection, before) = try Self.previousReleaseDatabase(db)
            let empty = try MigrationFolder()
            let daemon = try DaemonProcess(empty, database: db, ["--no-migrate"], sidecar: true)
            #expect(daemon.waitUntilReady(), daemon.transcript)
            #expect(try Self.snapshot(connection, links: "migrator.project_role_group", versions: "migrator.role_version") == before)
            #expect(try !connection.tableExists("public.migrator_history"))
            let id = try db.insertProject(connection, "after the upgrade")
            #expect(DaemonProcess.wait(timeout: 10) { (try? connection.roleRows(id)) == [5, 82, 82] }, daemon.transcript)
            #expect(daemon.stop().code == 0, daemon.transcript)
        }
    }

    @Test("DROP SCHEMA migrator CASCADE removes migrator with its triggers; the app's rows stay and a delete still works")
    func removal() throws {
        try TestDatabase.with { db in
            let folder = try MigrationFolder.shipped()
            let connection = try db.connect()
            let run = try E2E.run(E2E.args("migrate", folder), database: db)
            #expect(run.exitCode == 0, run.transcript)
            let id = try db.insertProject(connection, "kept")
            #expect(try E2E.run(["update-roles"], database: db).exitCode == 0)
            #expect(try connection.count("SELECT count(*) FROM auth_group") == 5)
            try connection.query("DROP SCHEMA migrator CASCADE")
            #expect(try connection.count("SELECT count(*) FROM pg_trigger WHERE tgrelid = 'main_project'::regclass AND NOT tgisinternal") == 0)
            #expect(try connection.count("SELECT count(*) FROM pg_trigger WHERE tgrelid = 'auth_group'::regclass AND NOT tgisinternal") == 0)
            #expect(try connection.count("SELECT count(*) FROM auth_group") == 5)
            #expect(try connection.count("SELECT count(*) FROM auth_group_permissions") == 82)
            try connection.query("DELETE FROM main_project WHERE id = $1", [id])
            #expect(try connection.count("SELECT count(*) FROM main_project") == 0)
        }
    }

    @Test("migrate adds nothing to public beyond the app's tables and its triggers (four on the project table, one on auth_group); everything else of migrator's is in its schema")
    func nothingInPublic() throws {
        try TestDatabase.with { db in
            let folder = try MigrationFolder.shipped()
            let run = try E2E.run(E2E.args("migrate", folder), database: db)
            #expect(run.exitCode == 0, run.transcript)
            let connection = try db.connect()
            #expect(try connection.scalar(
                "SELECT string_agg(relname, ',' ORDER BY relname) FROM pg_class WHERE relnamespace = 'public'::regnamespace AND relkind = 'r'"
            ) == "auth_group,auth_group_permissions,auth_permission,django_content_type,guardian_groupobjectpermission,guardian_userobjectpermission,main_project,users_user,users_user_groups,users_user_user_permissions")
            #expect(try connection.count("SELECT count(*) FROM pg_proc WHERE pronamespace = 'public'::regnamespace") == 0)
            #expect(try connection.scalar(
                "SELECT string_agg(relname, ',' ORDER BY relname) FROM pg_class WHERE relnamespace = 'migrator'::regnamespace AND relkind = 'r'"
            ) == "components,history,history_audit,history_statements,project_role_group,role_version")
            #expect(try connection.scalar("SELECT string_agg(component || ' ' || version, ',' ORDER BY 1) FROM migrator.components") == "engine 3,role-sync 4")
            // Outside its schema only triggers, calling its functions: four on the project table, one on auth_group.
            #expect(try connection.scalar("""
                SELECT string_agg(t, ',' ORDER BY t) FROM (
                    SELECT tgrelid::regclass::text || ':' || tgname || ':' || tgfoid::regprocedure::text AS t
                    FROM pg_trigger WHERE NOT tgisinternal) triggers
                """) == "auth_group:migrator_group_deleted:migrator.group_deleted(),"
                + "main_project:migrator_project_delete_groups:migrator.project_deleted(),"
                + "main_project:migrator_project_notify_delete:migrator.project_notify(),"
                + "main_project:migrator_project_notify_rename:migrator.project_notify(),"
                + "main_project:migrator_project_truncate:migrator.projects_truncated()")
        }
    }

    @Test("--schema puts migrator's objects elsewhere, with a lock of its own; a system schema is refused")
    func otherSchema() throws {
        try TestDatabase.with { db in
            let folder = try MigrationFolder.shipped()
            let run = try E2E.run(E2E.args("migrate", folder, "--schema", "deploy_tool"), database: db)
            #expect(run.exitCode == 0, run.transcript)
            let connection = try db.connect()
            #expect(try connection.tableExists("deploy_tool.history") && connection.tableExists("deploy_tool.role_version"))
            #expect(try !connection.tableExists("migrator.history"))
            let viaEnvironment = try E2E.run(E2E.args("verify", folder), database: db, environment: ["MIGRATOR_SCHEMA": "deploy_tool"])
            #expect(viaEnvironment.exitCode == 0, viaEnvironment.transcript)
            for bad in ["public", "pg_catalog", "my-schema", "1st"] {
                let refused = try E2E.run(E2E.args("status", folder, "--schema", bad), database: db)
                #expect(refused.exitCode == 64, refused.transcript)
                #expect(refused.stderr.contains("'\(bad)'"), refused.transcript)
            }
        }
    }

    // MARK: - A project table of another app

    static let workspaceSchema = """
        CREATE SCHEMA app;
        CREATE TABLE app.workspaces (pk integer PRIMARY KEY GENERATED BY DEFAULT AS IDENTITY, title text NOT NULL, size int NOT NULL DEFAULT 0);
        INSERT INTO app.workspaces (pk, title) VALUES (-3, 'negative'), (1, 'one'), (2, 'two');
        INSERT INTO app.workspaces (pk, title) SELECT 1000, repeat('w', 200);
        ALTER TABLE app.workspaces ALTER COLUMN pk RESTART WITH 2000;
        """

    static let target = [
        "--project-table", "app.workspaces", "--project-id-column", "pk", "--project-name-column", "title",
        "--content-type", "app.workspace", "--group-name", "ws{id}:{name}/{role}",
    ]

    /// The Django tables from the shipped migrations, without main_project: an app whose projects live elsewhere.
    static func appTables(_ db: TestDatabase) throws -> Connection {
        let folder = try MigrationFolder.shipped()
        try folder.remove("0005_main_project.sql")
        let run = try E2E.run(E2E.migrate(folder), database: db)
        #expect(run.exitCode == 0, run.transcript)
        let connection = try db.connect()
        _ = try connection.execute(script: workspaceSchema)
        return connection
    }

    @Test("a custom target: another table, columns, content type and name template, end to end; a name too long is left out and reported")
    func customTarget() throws {
        try TestDatabase.with { db in
            let connection = try Self.appTables(db)
            let empty = try MigrationFolder()
            let run = try E2E.run(["update-roles", "--json"] + Self.target, database: db, currentDirectory: empty.path)
            #expect(run.exitCode == 0, run.transcript)
            let long = try #require(try connection.scalar("SELECT pk FROM app.workspaces WHERE title LIKE 'www%'"))
            let report = try JSONSerialization.jsonObject(with: Data(run.stdout.utf8)) as? [String: Any]
            let tooLong = try #require(report?["tooLongGroups"] as? [[String: Any]], run.transcript)
            #expect(tooLong.count == 5 && tooLong.allSatisfy { "\($0["projectID"] ?? "")" == long }, run.transcript)
            #expect(report?["tooLongGroupsTotal"] as? Int == 5, run.transcript)
            #expect(run.stderr.contains("longer than auth_group.name holds"), run.transcript)

            #expect(try connection.scalar("SELECT string_agg(name, ',' ORDER BY name) FROM auth_group WHERE name LIKE 'ws-3:%'")
                == "ws-3:negative/BasicMember,ws-3:negative/Identifier,ws-3:negative/MLDataManager,ws-3:negative/ProjectManager,ws-3:negative/Researcher")
            #expect(try connection.count("SELECT count(*) FROM auth_group") == 15, "the long-named project must get no group")
            #expect(try connection.count("SELECT count(*) FROM migrator.project_role_group WHERE project_id = $1::bigint", [long]) == 0)
            let objectRows = try connection.count(
                """
                SELECT count(*) FROM guardian_groupobjectpermission x JOIN django_content_type ct ON ct.id = x.content_type_id
                JOIN migrator.project_role_group l ON l.group_id = x.group_id
                WHERE ct.app_label = 'app' AND ct.model = 'workspace' AND x.object_pk = l.project_id::text
                """
            )
            #expect(objectRows == 3 * 82)
            #expect(try connection.count("SELECT count(*) FROM auth_group_permissions") == 3 * 82)
            #expect(try connection.count("SELECT count(*) FROM pg_trigger WHERE tgrelid = 'app.workspaces'::regclass AND NOT tgisinternal") == 4)

            // status and verify say what was left out; the version is current.
            let verify = try E2E.run(["verify"] + Self.target, database: db, currentDirectory: empty.path)
            #expect(verify.exitCode == 0, verify.transcript)
            #expect(verify.stdout.contains("the last sync left out 5 role groups with a name too long for auth_group.name"), verify.transcript)

            // A rename follows; a delete takes the groups; a new name template renames every group.
            try connection.query("UPDATE app.workspaces SET title = 'uno' WHERE pk = 1")
            try connection.query("DELETE FROM app.workspaces WHERE pk = 2")
            #expect(try connection.count("SELECT count(*) FROM auth_group WHERE name LIKE 'ws2:%'") == 0)
            let resync = try E2E.run(["update-roles"] + Self.target, database: db, currentDirectory: empty.path)
            #expect(resync.exitCode == 0, resync.transcript)
            #expect(try connection.count("SELECT count(*) FROM auth_group WHERE name LIKE 'ws1:uno/%'") == 5)
            let roles = try MigrationFolder()
            let file = try roles.write("roles.json", """
                {"project_permissions": [], "roles": [{"name": "Viewer", "permissions": ["view_project"]}],
                 "target": {"project_table": "app.workspaces", "id_column": "pk", "name_column": "title",
                            "content_type": "app.workspace", "group_name": "{role} of {id}"}}
                """)
            let retemplated = try E2E.run(["update-roles", "--roles", file, "--no-force"], database: db, currentDirectory: empty.path)
            #expect(retemplated.exitCode == 0, retemplated.transcript)
            #expect(retemplated.stdout.contains("(full)"), retemplated.transcript)
            #expect(try connection.scalar("SELECT string_agg(g.name, ',' ORDER BY g.name) FROM auth_group g JOIN migrator.project_role_group l ON l.group_id = g.id AND l.role = 'Viewer'")
                == "Viewer of -3,Viewer of 1,Viewer of \(long)")
        }
    }

    @Test("serve --no-migrate as a sidecar on a custom target: no folder, a new row gets its groups, a rename and a delete are followed")
    func customTargetSidecar() throws {
        try TestDatabase.with { db in
            let connection = try Self.appTables(db)
            let empty = try MigrationFolder()
            let daemon = try DaemonProcess(empty, database: db, ["--no-migrate", "--reconcile-interval", "60s"] + Self.target, sidecar: true)
            #expect(DaemonProcess.wait(timeout: 20) { (try? daemon.get("/readyz").status) == 200 }, daemon.transcript)
            #expect(try connection.count("SELECT count(*) FROM auth_group") == 15, daemon.transcript)
            // The project whose names do not fit: ready all the same, with a note, a metric and one warning.
            #expect(DaemonProcess.wait(timeout: 10) {
                (try? daemon.get("/readyz").body) == "ready\nnote: 5 role groups left out: their names are too long for auth_group.name (`migrator update-roles` lists them)\n"
            }, daemon.transcript)
            #expect(try daemon.metrics()["migrator_role_groups_name_too_long"] == 5)
            #expect(daemon.stderr.contains("role groups whose name is too long for auth_group.name are left out"), daemon.transcript)
            let id = try #require(try connection.scalar("INSERT INTO app.workspaces (title) VALUES ('fresh') RETURNING pk"))
            #expect(DaemonProcess.wait(timeout: 10) {
                (try? connection.count("SELECT count(*) FROM auth_group WHERE name LIKE $1", ["ws\(id):fresh/%"])) == 5
            }, daemon.transcript)
            try connection.query("UPDATE app.workspaces SET title = 'renamed' WHERE pk = $1::int", [id])
            #expect(DaemonProcess.wait(timeout: 10) {
                (try? connection.count("SELECT count(*) FROM auth_group WHERE name LIKE $1", ["ws\(id):renamed/%"])) == 5
            }, daemon.transcript)
            try connection.query("DELETE FROM app.workspaces WHERE pk = $1::int", [id])
            #expect(try connection.count("SELECT count(*) FROM auth_group WHERE name LIKE $1", ["ws\(id):%"]) == 0)
            #expect(daemon.stop().code == 0, daemon.transcript)
        }
    }

    @Test("a target that does not fit the database is refused with what is wrong and which option sets it")
    func badTarget() throws {
        try TestDatabase.with { db in
            _ = try Self.appTables(db)
            let empty = try MigrationFolder()
            let cases: [([String], String)] = [
                (["--project-table", "app.nope"], "the project table 'app.nope' does not exist"),
                (["--project-table", "app.workspaces", "--project-id-column", "nope"], "has no column 'nope'; set --project-id-column"),
                (["--project-table", "app.workspaces", "--project-id-column", "pk", "--project-name-column", "size"], "is integer, not text"),
                (["--project-table", "app.workspaces", "--project-id-column", "title", "--project-name-column", "pk"], "it must be smallint, integer or bigint"),
            ]
            for (arguments, message) in cases {
                let run = try E2E.run(["update-roles"] + arguments, database: db, currentDirectory: empty.path)
                #expect(run.exitCode == 2, run.transcript)
                #expect(run.stderr.contains(message), run.transcript)
                #expect(run.stderr.contains("nothing was changed"), run.transcript)
            }
            let badInput: [([String], String)] = [
                (["--group-name", "{name}_{role}"], "must contain {id} and {role}"),
                (["--group-name", "{id}_{nope}_{role}"], "unknown placeholder {nope}"),
                (["--content-type", "project"], "must be app_label.model"),
                (["--project-table", "a.b.c"], "must be `table` or `schema.table`"),
                (["--project-name-column", "na me"], "ASCII letters, digits and underscores"),
            ]
            for (arguments, message) in badInput {
                let run = try E2E.run(["update-roles"] + arguments, database: db, currentDirectory: empty.path)
                #expect(run.exitCode == 2, run.transcript)
                #expect(run.stderr.contains(message), run.transcript)
            }
            let connection = try db.connect()
            #expect(try connection.count("SELECT count(*) FROM auth_group") == 0)
        }
    }
}
