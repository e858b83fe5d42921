import Foundation
import MigratorTestSupport
import Postgres
import Testing

/// The role commands as a deploy script uses them: real processes on a real database.
@Suite("role commands end to end")
struct RoleCommandTests {
    /// The shipped schema plus a migration that adds projects, so that the hook has work to do.
    static func folderWithProjects(_ count: Int) throws -> MigrationFolder {
        try E2E.shipped(plus: [
            ("0100_projects.sql", "INSERT INTO main_project (name) SELECT 'project ' || g FROM generate_series(1, \(count)) g;\n"),
        ])
    }

    @Test("migrate syncs the roles once; status shows the role version; a second migrate does no role work")
    func migrateSyncsRoles() throws {
        try TestDatabase.with { db in
            let folder = try Self.folderWithProjects(3)
            let first = try E2E.run(E2E.args("migrate", folder), database: db)
            #expect(first.exitCode == 0, first.transcript)
            #expect(first.stdout.contains("hook role-sync: synced 3 projects"), first.transcript)
            let connection = try db.connect()
            #expect(try connection.count("SELECT count(*) FROM migrator.project_role_group") == 15)
            #expect(try connection.count("SELECT count(*) FROM auth_group_permissions") == 3 * 82)

            let second = try E2E.run(E2E.args("migrate", folder, "--json"), database: db)
            #expect(second.exitCode == 0, second.transcript)
            let json = try JSONSerialization.jsonObject(with: Data(second.stdout.utf8)) as? [String: Any]
            let hooks = json?["hooks"] as? [[String: Any]]
            #expect((hooks?.first?["summary"] as? String)?.contains("unchanged") == true, second.transcript)
            #expect(try connection.count("SELECT count(*) FROM migrator.role_version") == 1)

            let status = try E2E.run(E2E.args("status", folder), database: db)
            #expect(status.stdout.contains("role-sync: role version"), status.transcript)
            #expect(status.stdout.contains("is current"), status.transcript)
        }
    }

    @Test("--skip-roles leaves the roles alone and verify then reports the stale role version; --force-roles reconciles")
    func skipAndForce() throws {
        try TestDatabase.with { db in
            let folder = try Self.folderWithProjects(2)
            let skipped = try E2E.run(E2E.args("migrate", folder, "--skip-roles"), database: db)
            #expect(skipped.exitCode == 0, skipped.transcript)
            let connection = try db.connect()
            // --skip-roles installs none of the role sync's objects and creates no group.
            #expect(try connection.count("SELECT count(*) FROM auth_group") == 0)
            #expect(try !connection.tableExists("migrator.project_role_group"))
            let verify = try E2E.run(E2E.args("verify", folder), database: db)
            #expect(verify.exitCode == 3, verify.transcript)
            #expect(verify.stderr.contains("role-sync: role version stored: none"), verify.transcript)

            #expect(try E2E.run(E2E.args("migrate", folder), database: db).exitCode == 0)
            // Damage one grant by hand: an unchanged version does not look, --force-roles does.
            try connection.query("DELETE FROM guardian_groupobjectpermission WHERE id = (SELECT min(id) FROM guardian_groupobjectpermission)")
            let plain = try E2E.run(E2E.args("migrate", folder, "--json"), database: db)
            #expect(plain.stdout.contains("unchanged"), plain.transcript)
            let forced = try E2E.run(E2E.args("migrate", folder, "--force-roles"), database: db)
            #expect(forced.exitCode == 0, forced.transcript)
            #expect(forced.stdout.contains("object permissions +1 -0"), forced.transcript)
            #expect(try E2E.run(E2E.args("verify", folder), database: db).exitCode == 0)
            let both = try E2E.run(E2E.args("migrate", folder, "--force-roles", "--skip-roles"), database: db)
            #expect(both.exitCode == 64, both.transcript)
        }
    }

    @Test("update-roles and migrate started at once serialise and leave no duplicate")
    func concurrentUpdateRolesAndMigrate() throws {
        try TestDatabase.with { db in
            let folder = try Self.folderWithProjects(50)
            var started: [E2E.Started] = []
            for index in 0..<6 {
                let command = index % 2 == 0 ? E2E.args("migrate", folder) : E2E.args("update-roles", folder)
                started.append(try E2E.start(command, database: db))
            }
            let runs = started.map { E2E.finish($0) }
            // update-roles may start before the tables exist; every run either succeeds or fails cleanly with the
            // missing tables named, and nothing is duplicated.
            for run in runs {
                #expect(run.exitCode == 0 || (run.exitCode == 2 && E2E.namesMissingAppTable(run)), run.transcript)
            }
            #expect(runs.filter { $0.exitCode == 0 }.count >= 3)
            let connection = try db.connect()
            #expect(try connection.count("SELECT count(*) FROM auth_group") == 250)
            #expect(try connection.count("SELECT count(*) FROM (SELECT name FROM auth_group GROUP BY name HAVING count(*) > 1) d") == 0)
            #expect(try connection.count("SELECT count(*) FROM migrator.project_role_group") == 250)
            #expect(try connection.count("SELECT count(*) FROM auth_group_permissions") == 50 * 82)
            #expect(try connection.count("SELECT count(*) FROM guardian_groupobjectpermission") == 50 * 82)
            #expect(try connection.historyVersions().count == 6)
            #expect(try E2E.run(E2E.args("verify", folder), database: db).exitCode == 0)
        }
    }

    @Test("update-roles --dry-run prints what would change per role and changes nothing; --project-id limits it")
    func updateRolesDryRunAndProjects() throws {
        try TestDatabase.with { db in
            let folder = try Self.folderWithProjects(2)
            #expect(try E2E.run(E2E.args("migrate", folder, "--skip-roles"), database: db).exitCode == 0)
            let dry = try E2E.run(E2E.args("update-roles", folder, "--dry-run"), database: db)
            #expect(dry.exitCode == 0, dry.transcript)
            #expect(dry.stdout.contains("would sync 2 projects"), dry.transcript)
            #expect(dry.stdout.contains("ProjectManager"), dry.transcript)
            #expect(dry.stdout.contains("dry run: rolled back"), dry.transcript)
            let connection = try db.connect()
            #expect(try connection.count("SELECT count(*) FROM auth_group") == 0)

            let id = try connection.scalar("SELECT min(id)::text FROM main_project") ?? "0"
            let one = try E2E.run(E2E.args("update-roles", folder, "--project-id", id, "--json"), database: db)
            #expect(one.exitCode == 0, one.transcript)
            #expect(one.stdout.contains("\"mode\" : \"projects\""), one.transcript)
            #expect(try connection.count("SELECT count(*) FROM auth_group") == 5)
            #expect(try connection.count("SELECT count(*) FROM migrator.role_version") == 0)

            let unchanged = try E2E.run(E2E.args("update-roles", folder), database: db)
            #expect(unchanged.stdout.contains("synced 2 projects"), unchanged.transcript)
            let noForce = try E2E.run(E2E.args("update-roles", folder, "--no-force"), database: db)
            #expect(noForce.stdout.contains("unchanged"), noForce.transcript)
        }
    }

    @Test("update-roles --project-ids and --project-ids-from (a file, or - for standard input) limit the sync; a bad id is refused at its line and column")
    func updateRolesProjectIDLists() throws {
        try TestDatabase.with { db in
            let folder = try Self.folderWithProjects(6)
            #expect(try E2E.run(E2E.args("migrate", folder, "--skip-roles"), database: db).exitCode == 0)
            let connection = try db.connect()
            let ids = try connection.query("SELECT id::text AS id FROM main_project ORDER BY id").rows.compactMap { $0["id"] }
            #expect(ids.count == 6)
            func groups() throws -> Int { try connection.count("SELECT count(*) FROM auth_group") }

            // Refused before anything is synced: a bad id in a file (exit 2, file:line:column and the line), in a
            // list (exit 64), a missing file, an empty one.
            let bad = try folder.write("ids.txt", "\(ids[0])\n\(ids[1]), 12x\n")
            let refused = try E2E.run(E2E.args("update-roles", folder, "--project-ids-from", bad), database: db)
            #expect(refused.exitCode == 2, refused.transcript)
            #expect(refused.stderr.contains("ids.txt:2:\(ids[1].count + 3): error: '12x' is not a project id"), refused.transcript)
            #expect(refused.stderr.contains("   2 | \(ids[1]), 12x"), refused.transcript)
            let refusedJSON = try E2E.run(E2E.args("update-roles", folder, "--project-ids-from", bad, "--json"), database: db)
            #expect(refusedJSON.exitCode == 2 && refusedJSON.stdout.contains("\"code\" : \"invalidInput\""), refusedJSON.transcript)
            let negative = try E2E.run(E2E.args("update-roles", folder, "--project-ids-from", "-"), database: db, standardInput: "1\n-5\n")
            #expect(negative.exitCode == 2, negative.transcript)
            #expect(negative.stderr.contains("standard input:2:1: error: '-5' is not a project id: ids are positive"), negative.transcript)
            let list = try E2E.run(E2E.args("update-roles", folder, "--project-ids", "\(ids[0]),x"), database: db)
            #expect(list.exitCode == 64, list.transcript)
            #expect(list.stderr.contains("--project-ids: 'x' is not a project id"), list.transcript)
            let tooLarge = try E2E.run(E2E.args("update-roles", folder, "--project-ids", "9223372036854775808"), database: db)
            #expect(tooLarge.exitCode == 64 && tooLarge.stderr.contains("larger than 9223372036854775807"), tooLarge.transcript)
            let missing = try E2E.run(E2E.args("update-roles", folder, "--project-ids-from", folder.path + "/none.txt"), database: db)
            #expect(missing.exitCode == 2 && missing.stderr.contains("none.txt: error: the file of project ids cannot be read"), missing.transcript)
            let empty = try folder.write("empty.txt", " \n\n")
            let none = try E2E.run(E2E.args("update-roles", folder, "--project-ids-from", empty), database: db)
            #expect(none.exitCode == 2 && none.stderr.contains("names no project"), none.transcript)
            #expect(try groups() == 0)

            // A list, with --project-id and a duplicate: two projects.
            let two = try E2E.run(
                E2E.args("update-roles", folder, "--project-ids", "\(ids[0]), \(ids[1])", "--project-id", ids[0], "--json"), database: db
            )
            #expect(two.exitCode == 0, two.transcript)
            #expect(two.stdout.contains("\"mode\" : \"projects\"") && two.stdout.contains("\"projects\" : 2"), two.transcript)
            #expect(try groups() == 10)
            // A file: one id a line, commas and spaces too, an id twice (it counts once).
            let file = try folder.write("more.txt", "\(ids[2])\r\n\(ids[3]),\(ids[3])\n\n")
            let fromFile = try E2E.run(E2E.args("update-roles", folder, "--project-ids-from", file, "--json"), database: db)
            #expect(fromFile.exitCode == 0 && fromFile.stdout.contains("\"projects\" : 2"), fromFile.transcript)
            #expect(try groups() == 20)
            // Standard input, with thousands of ids (most of them no project): only the real ones are synced.
            let many = ([ids[4], ids[5]] + (1...20_000).map { String(1_000_000 + $0) }).joined(separator: "\n")
            let fromInput = try E2E.run(
                E2E.args("update-roles", folder, "--project-ids-from", "-", "--json"), database: db, standardInput: many + "\n"
            )
            #expect(fromInput.exitCode == 0, fromInput.transcript)
            #expect(try groups() == 30)
            #expect(try connection.count("SELECT count(DISTINCT project_id) FROM migrator.project_role_group") == 6)
            #expect(try connection.count("SELECT count(*) FROM migrator.role_version") == 0)
        }
    }

    @Test("a bad --roles file is refused with exit 2 naming the file and the role")
    func badRolesFile() throws {
        try TestDatabase.with { db in
            let folder = try Self.folderWithProjects(1)
            let roles = try folder.write("roles.json", #"{"roles": [{"name": "Lead", "permissions": []}, {"name": "Lead", "permissions": []}]}"#)
            for command in ["migrate", "status", "verify", "update-roles"] {
                let run = try E2E.run(E2E.args(command, folder, "--roles", roles), database: db)
                #expect(run.exitCode == 2, run.transcript)
                #expect(run.stderr.contains("roles.json: role 'Lead': error: the role is declared twice"), run.transcript)
            }
            let viaEnvironment = try E2E.run(E2E.args("migrate", folder), database: db, environment: ["MIGRATOR_ROLES": roles])
            #expect(viaEnvironment.exitCode == 2, viaEnvironment.transcript)
            let connection = try db.connect()
            #expect(try !connection.tableExists("migrator.history"))
        }
    }

    @Test("a custom catalogue from --roles is what migrate syncs")
    func customCatalogue() throws {
        try TestDatabase.with { db in
            let folder = try Self.folderWithProjects(2)
            let roles = try folder.write("roles.json", """
                {"project_permissions": [{"codename": "view_project", "name": "Can view project"}],
                 "roles": [{"name": "Viewer", "permissions": ["view_project"]}]}
                """)
            let run = try E2E.run(E2E.args("migrate", folder, "--roles", roles), database: db)
            #expect(run.exitCode == 0, run.transcript)
            let connection = try db.connect()
            #expect(try connection.count("SELECT count(*) FROM auth_group WHERE name LIKE '%\\_Viewer'") == 2)
            #expect(try connection.count("SELECT count(*) FROM guardian_groupobjectpermission") == 2)
            #expect(try E2E.run(E2E.args("verify", folder, "--roles", roles), database: db).exitCode == 0)
            #expect(try E2E.run(E2E.args("verify", folder), database: db).exitCode == 3)
        }
    }
}
