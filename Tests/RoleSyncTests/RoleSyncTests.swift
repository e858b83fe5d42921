import Foundation
import InMemoryLogging
import Logging
import MigrationEngine
import MigratorTestSupport
import Postgres
import RoleSync
import Testing

/// The sync against a real server: each test migrates its own database with the shipped Migrations/.
@Suite("Role sync")
struct RoleSyncTests {
    static let logger = Logger(label: "test")

    static func migrated(_ database: TestDatabase) throws -> Connection {
        let folder = try MigrationFolder.shipped()
        _ = try Migrator(
            connection: ConnectionConfig(connectionString: database.url),
            options: MigratorOptions(migrationsPath: folder.path), logger: logger
        ).migrate()
        let connection = try database.connect()
        // The engine installs the sync's own objects for its hooks; these tests call the synchronizer directly.
        try RoleSynchronizer.installObjects(connection, logger: logger)
        return connection
    }

    @discardableResult
    static func addProjects(_ connection: Connection, _ names: [String]) throws -> [Int64] {
        try connection.query("INSERT INTO main_project (name) SELECT unnest($1::text[]) RETURNING id", [names]).rows.map { Int64($0["id"]!)! }
    }

    static func sync(_ connection: Connection, _ catalogue: RoleCatalogue = .reference, _ options: RoleSynchronizer.Options = .init()) throws -> RoleSyncReport {
        try RoleSynchronizer(catalogue: catalogue).sync(connection, options: options, logger: logger)
    }

    /// Every (group name, codename) pair of our content type, from both permission tables, as Django would read them.
    static func grants(_ connection: Connection) throws -> (group: Set<String>, object: Set<String>) {
        let group = try connection.query("""
            SELECT g.name || ':' || p.codename AS k FROM auth_group_permissions x
            JOIN auth_group g ON g.id = x.group_id JOIN auth_permission p ON p.id = x.permission_id
            """).rows.compactMap { $0["k"] }
        let object = try connection.query("""
            SELECT g.name || ':' || p.codename || '@' || x.object_pk AS k FROM guardian_groupobjectpermission x
            JOIN auth_group g ON g.id = x.group_id JOIN auth_permission p ON p.id = x.permission_id
            """).rows.compactMap { $0["k"] }
        return (Set(group), Set(object))
    }

    /// What the catalogue says the grants must be.
    static func expected(_ projects: [(Int64, String)], _ catalogue: RoleCatalogue = .reference) -> (group: Set<String>, object: Set<String>) {
        var group = Set<String>()
        var object = Set<String>()
        for (id, name) in projects {
            for role in catalogue.roles {
                for codename in role.permissions {
                    group.insert("\(id)_\(name)_\(role.name):\(codename)")
                    object.insert("\(id)_\(name)_\(role.name):\(codename)@\(id)")
                }
            }
        }
        return (group, object)
    }

    static func count(_ connection: Connection, _ sql: String) throws -> Int {
        try connection.query(sql).first?.int("n") ?? -1
    }

    /// xmin of every row we own: unchanged xmins mean no row was rewritten.
    static func rowVersions(_ connection: Connection) throws -> [String] {
        try connection.query("""
            SELECT 'g' || id || ':' || xmin AS v FROM auth_group
            UNION ALL SELECT 'gp' || id || ':' || xmin FROM auth_group_permissions
            UNION ALL SELECT 'op' || id || ':' || xmin FROM guardian_groupobjectpermission
            UNION ALL SELECT 'l' || group_id || ':' || xmin FROM migrator.project_role_group
            UNION ALL SELECT 'p' || id || ':' || xmin FROM auth_permission
            ORDER BY 1
            """).rows.compactMap { $0["v"] }
    }

    @Test("the first sync gives every project its groups and exactly the catalogue's permissions; a second writes nothing")
    func firstSyncAndIdempotence() throws {
        try TestDatabase.with { database in
            let connection = try Self.migrated(database)
            let ids = try Self.addProjects(connection, ["alpha", "beta", "gamma"])
            let report = try Self.sync(connection)
            #expect(report.mode == .full)
            #expect(report.totals.groupsCreated == 15)
            #expect(report.totals.groupPermissionsAdded == 3 * 82)
            #expect(report.totals.objectPermissionsAdded == 3 * 82)
            #expect(report.recordedVersion)
            let (group, object) = try Self.grants(connection)
            let expected = Self.expected(Array(zip(ids, ["alpha", "beta", "gamma"])))
            #expect(group == expected.group)
            #expect(object == expected.object)
            #expect(try Self.count(connection, "SELECT count(*) AS n FROM migrator.project_role_group") == 15)

            let before = try Self.rowVersions(connection)
            let again = try Self.sync(connection, .reference, .init(force: true))
            #expect(again.mode == .full)
            #expect(again.totals.rowsWritten == 0)
            #expect(again.permissionsCreated == 0 && again.permissionsRenamed == 0)
            #expect(try Self.rowVersions(connection) == before)

            let unchanged = try Self.sync(connection)
            #expect(unchanged.mode == .unchanged)
            #expect(unchanged.roundTrips <= 2)
        }
    }

    @Test("a forced full sync looks once whether each permission table is in step and skips the comparison of a table that is: nothing to write skips both; a grant removed, one the role does not give, or one with another content type sends only that table's statement, which fixes it")
    func fullSyncSkipsTablesInStep() throws {
        try TestDatabase.with { database in
            let connection = try Self.migrated(database)
            let ids = try Self.addProjects(connection, ["alpha", "beta"])
            let expected = Self.expected(Array(zip(ids, ["alpha", "beta"])))
            try Self.sync(connection)
            func forced() throws -> [String] {
                let report = try Self.sync(connection, .reference, .init(force: true))
                #expect(report.mode == .full)
                let (group, object) = try Self.grants(connection)
                #expect(group == expected.group && object == expected.object)
                return report.phases.map(\.name).filter { ["check the permissions", "group permissions", "object permissions"].contains($0) }
            }
            #expect(try forced() == ["check the permissions"])
            func group(_ project: Int64, _ role: String) throws -> Int {
                try #require(try connection.query(
                    "SELECT group_id FROM migrator.project_role_group WHERE project_id = $1 AND role = $2", [project, role]
                ).first?.decode("group_id"))
            }
            try connection.query("""
                DELETE FROM guardian_groupobjectpermission WHERE id = (SELECT min(id) FROM guardian_groupobjectpermission WHERE group_id = $1::integer)
                """, [try group(ids[1], "Identifier")])
            #expect(try forced() == ["check the permissions", "object permissions"])
            try connection.query("""
                INSERT INTO auth_group_permissions (group_id, permission_id)
                SELECT $1::integer, id FROM auth_permission WHERE codename = 'delete_project'
                """, [try group(ids[0], "BasicMember")])
            #expect(try forced() == ["check the permissions", "group permissions"])
            // The same count of rows, one of them on another content type: the valid ones are one short.
            let other: Int = try connection.query(
                "INSERT INTO django_content_type (app_label, model) VALUES ('tests', 'other') RETURNING id"
            ).rows[0].decode("id")
            try connection.query("""
                UPDATE guardian_groupobjectpermission SET content_type_id = $1::integer
                WHERE id = (SELECT max(id) FROM guardian_groupobjectpermission WHERE group_id = $2::integer)
                """, [other, try group(ids[0], "ProjectManager")])
            #expect(try forced() == ["check the permissions", "object permissions"])
            #expect(try forced() == ["check the permissions"])
        }
    }

    @Test("the number of statements does not depend on the number of projects")
    func constantStatements() throws {
        func trips(_ projects: Int) throws -> (Int, Int) {
            try TestDatabase.with("trips\(projects)") { database in
                let connection = try Self.migrated(database)
                try Self.addProjects(connection, (1...projects).map { "p\($0)" })
                let full = try Self.sync(connection).roundTrips
                let changed = try RoleCatalogue(
                    permissions: RoleCatalogue.reference.permissions.map { ($0.codename, $0.name) },
                    roles: RoleCatalogue.reference.roles.map { ($0.name, $0.name == "BasicMember" ? $0.permissions + ["import_data"] : $0.permissions) }
                )
                let incremental = try Self.sync(connection, changed).roundTrips
                return (full, incremental)
            }
        }
        let one = try trips(1)
        let many = try trips(300)
        #expect(one == many)
    }

    @Test("a permission added to one role writes exactly one group and one object permission per project; removing it deletes exactly those")
    func addAndRemoveOnePermission() throws {
        try TestDatabase.with { database in
            let connection = try Self.migrated(database)
            let ids = try Self.addProjects(connection, (1...20).map { "p\($0)" })
            try Self.sync(connection)
            let base = RoleCatalogue.reference
            let plus = try RoleCatalogue(
                permissions: base.permissions.map { ($0.codename, $0.name) },
                roles: base.roles.map { ($0.name, $0.name == "Researcher" ? $0.permissions + ["update_project"] : $0.permissions) }
            )
            let before = Set(try Self.rowVersions(connection))
            let added = try Self.sync(connection, plus)
            #expect(added.mode == .incremental)
            #expect(added.roles.keys.sorted() == ["Researcher"])
            #expect(added.totals.groupPermissionsAdded == ids.count && added.totals.objectPermissionsAdded == ids.count)
            #expect(added.totals.rowsWritten == 2 * ids.count)
            let after = Set(try Self.rowVersions(connection))
            #expect(after.subtracting(before).count == 2 * ids.count)
            #expect(before.subtracting(after).isEmpty)
            #expect(try Self.grants(connection).group == Self.expected(ids.map { ($0, "p\($0 - ids[0] + 1)") }, plus).group)

            let removed = try Self.sync(connection, base)
            #expect(removed.mode == .incremental)
            #expect(removed.totals.groupPermissionsRemoved == ids.count && removed.totals.objectPermissionsRemoved == ids.count)
            #expect(removed.totals.rowsWritten == 2 * ids.count)
            #expect(Set(try Self.rowVersions(connection)) == before)
        }
    }

    @Test("an incremental sync that only changes permissions skips adoption, creation, the rename and the orphans when nothing needs them, and still gives a project created since the last sync its groups, renames a renamed project's groups, makes a new group for one the app deleted, adopts a group whose link was deleted and removes the groups of a project deleted without the trigger")
    func incrementalStillSeesProjects() throws {
        try TestDatabase.with { database in
            let connection = try Self.migrated(database)
            let ids = try Self.addProjects(connection, ["a", "b", "c", "d"])
            try Self.sync(connection)
            let plus = try RoleCatalogue(
                permissions: RoleCatalogue.reference.permissions.map { ($0.codename, $0.name) },
                roles: RoleCatalogue.reference.roles.map { ($0.name, $0.name == "BasicMember" ? $0.permissions + ["import_data"] : $0.permissions) }
            )
            func projects() throws -> [(Int64, String)] {
                try connection.query("SELECT id, name FROM main_project").rows.map { (Int64($0["id"]!)!, $0["name"]!) }
            }
            let structural: Set<String> = [
                "adopt groups", "create groups", "rename groups", "remove groups of deleted projects", "look for projects created meanwhile",
            ]

            let quiet = try Self.sync(connection, plus)
            #expect(quiet.mode == .incremental)
            #expect(quiet.totals.groupPermissionsAdded == 4 && quiet.totals.objectPermissionsAdded == 4)
            #expect(quiet.totals.rowsWritten == 8)
            #expect(Set(quiet.phases.map(\.name)).isDisjoint(with: structural), "\(quiet.phases.map(\.name))")
            #expect(try Self.grants(connection) == Self.expected(try projects(), plus))

            let new = try Self.addProjects(connection, ["e"])[0]
            try connection.query("UPDATE main_project SET name = 'renamed' WHERE id = $1", [ids[1]])
            try connection.query("ALTER TABLE main_project DISABLE TRIGGER migrator_project_delete_groups")
            try connection.query("DELETE FROM main_project WHERE id = $1", [ids[2]])
            try connection.query("ALTER TABLE main_project ENABLE TRIGGER migrator_project_delete_groups")
            try connection.query("""
                DELETE FROM auth_group WHERE id = (SELECT group_id FROM migrator.project_role_group WHERE project_id = $1 AND role = 'Researcher')
                """, [ids[3]])
            // a's Identifier group stays and only its link goes (as a group the app made itself): it is adopted, not made anew.
            let identifier = try connection.query(
                "DELETE FROM migrator.project_role_group WHERE project_id = $1 AND role = 'Identifier' RETURNING group_id", [ids[0]]
            ).rows[0].int("group_id")!
            let back = try Self.sync(connection, .reference)
            #expect(back.mode == .incremental)
            #expect(back.totals.groupsAdopted == 1)
            #expect(try connection.query(
                "SELECT count(*) AS n FROM migrator.project_role_group WHERE project_id = $1 AND role = 'Identifier' AND group_id = $2", [ids[0], Int64(identifier)]
            ).first?.int("n") == 1)
            #expect(back.totals.groupsCreated == 6)  // e's five, d's Researcher
            #expect(back.totals.groupsRenamed == 5)
            #expect(back.groupsOfDeletedProjectsRemoved == 5)
            // import_data goes from a's, b's and d's BasicMember groups; c's went with c's groups (the orphans' removal runs first).
            #expect(back.totals.groupPermissionsRemoved == 3 && back.totals.objectPermissionsRemoved == 3, "\(back.totals)")
            #expect(try connection.query("SELECT count(*) AS n FROM auth_group WHERE name LIKE $1::text || '\\_%'", [String(ids[2])]).first?.int("n") == 0)
            #expect(try connection.query("SELECT count(*) AS n FROM migrator.project_role_group WHERE project_id = $1", [new]).first?.int("n") == 5)
            #expect(try Self.grants(connection) == Self.expected(try projects()))
            let drift = try Self.drift(connection)
            #expect(drift.projectIDs == [] && drift.orphanedLinks == 0 && !drift.permissionsMissing, "\(drift)")
        }
    }

    /// The reference catalogue without the Identifier role, BasicMember with `import_data` when `plus`.
    static func withoutIdentifier(plus: Bool) throws -> RoleCatalogue {
        try RoleCatalogue(
            permissions: RoleCatalogue.reference.permissions.map { ($0.codename, $0.name) },
            roles: RoleCatalogue.reference.roles.filter { $0.name != "Identifier" }.map {
                ($0.name, plus && $0.name == "BasicMember" ? $0.permissions + ["import_data"] : $0.permissions)
            }
        )
    }

    @Test("an incremental sync while a retired role's groups are still linked: their links do not stand in for a link a project lacks, so a group unlinked by hand is adopted")
    func incrementalWithRetiredRole() throws {
        try TestDatabase.with { database in
            let connection = try Self.migrated(database)
            let ids = try Self.addProjects(connection, ["a", "b", "c", "d"])
            try Self.sync(connection)
            let retired = try Self.withoutIdentifier(plus: false)
            let plus = try Self.withoutIdentifier(plus: true)
            #expect(try Self.sync(connection, retired).retiredRoles == ["Identifier": 4])
            // Once b's Researcher link goes: 15 links of the catalogue's roles for 4 projects x 4 roles, and 4 of
            // Identifier, which must not make up for the missing one.
            let researcher = try connection.query(
                "DELETE FROM migrator.project_role_group WHERE project_id = $1 AND role = 'Researcher' RETURNING group_id", [ids[1]]
            ).rows[0].int("group_id")!
            let report = try Self.sync(connection, plus)
            #expect(report.mode == .incremental)
            #expect(report.totals.groupsAdopted == 1 && report.totals.groupsCreated == 0, "\(report.totals)")
            #expect(try connection.query(
                "SELECT count(*) AS n FROM migrator.project_role_group WHERE project_id = $1 AND role = 'Researcher' AND group_id = $2", [ids[1], Int64(researcher)]
            ).first?.int("n") == 1)
            let projects = try connection.query("SELECT id, name FROM main_project").rows.map { (Int64($0["id"]!)!, $0["name"]!) }
            #expect(try Self.grants(connection) == Self.expected(projects, plus))
            let drift = try RoleSynchronizer(catalogue: plus).drift(connection)
            #expect(drift.projectIDs == [] && drift.orphanedLinks == 0 && !drift.permissionsMissing, "\(drift)")
        }
    }

    @Test("a stored catalogue edited by hand is not trusted: the next sync is a full reconcile that brings every group in step")
    func handEditedStoredCatalogue() throws {
        try TestDatabase.with { database in
            let connection = try Self.migrated(database)
            let ids = try Self.addProjects(connection, (1...5).map { "p\($0)" })
            try Self.sync(connection)
            let base = RoleCatalogue.reference
            let plus = try RoleCatalogue(
                permissions: base.permissions.map { ($0.codename, $0.name) },
                roles: base.roles.map { ($0.name, $0.name == "Researcher" ? $0.permissions + ["update_project"] : $0.permissions) }
            )
            // The stored catalogue claims Researcher has update_project already; its version says otherwise.
            let edited = try connection.query("""
                UPDATE migrator.role_version SET catalogue = replace(catalogue::text,
                    '"name": "Researcher", "permissions": [', '"name": "Researcher", "permissions": ["update_project", ')::jsonb
                WHERE id = (SELECT max(id) FROM migrator.role_version)
                """).affectedRows
            #expect(edited == 1)
            #expect(try Self.count(connection, "SELECT count(*) AS n FROM migrator.role_version WHERE catalogue::text LIKE '%\"Researcher\", \"permissions\": [\"update_project\"%'") == 1)
            let logs = InMemoryLogHandler()
            let report = try RoleSynchronizer(catalogue: plus).sync(connection, logger: Logger(label: "test") { _ in logs })
            #expect(report.mode == .full)
            #expect(report.totals.groupPermissionsAdded == ids.count && report.totals.objectPermissionsAdded == ids.count)
            #expect(try Self.grants(connection).group == Self.expected(ids.map { ($0, "p\($0 - ids[0] + 1)") }, plus).group)
            #expect(logs.entries.contains { $0.message.description.contains("does not hash to its stored version") })
        }
    }

    @Test("memberships survive every kind of sync, renames rename the groups, deletes remove them")
    func membershipsRenamesDeletes() throws {
        try TestDatabase.with { database in
            let connection = try Self.migrated(database)
            let ids = try Self.addProjects(connection, ["keep", "rename me", "delete me"])
            try Self.sync(connection)
            try connection.query("INSERT INTO users_user (username) VALUES ('ada'), ('bob')")
            try connection.query("""
                INSERT INTO users_user_groups (user_id, group_id)
                SELECT u.id, l.group_id FROM users_user u, migrator.project_role_group l WHERE l.role IN ('Researcher', 'ProjectManager')
                """)
            let memberships = try Self.count(connection, "SELECT count(*) AS n FROM users_user_groups")
            #expect(memberships == 2 * 3 * 2)
            let groupIDs = try connection.query("SELECT group_id FROM migrator.project_role_group WHERE project_id = $1 ORDER BY role", [ids[1]]).rows.map { $0["group_id"] }

            try connection.query("UPDATE main_project SET name = 'renamed' WHERE id = $1", [ids[1]])
            let renamed = try Self.sync(connection, .reference, .init(force: true))
            #expect(renamed.totals.groupsRenamed == 5)
            #expect(renamed.totals.groupsCreated == 0)
            #expect(try connection.query("SELECT group_id FROM migrator.project_role_group WHERE project_id = $1 ORDER BY role", [ids[1]]).rows.map { $0["group_id"] } == groupIDs)
            let names = try connection.query("SELECT g.name FROM auth_group g JOIN migrator.project_role_group l ON l.group_id = g.id WHERE l.project_id = $1 ORDER BY 1", [ids[1]]).rows.compactMap { $0["name"] }
            #expect(names == ["BasicMember", "Identifier", "MLDataManager", "ProjectManager", "Researcher"].map { "\(ids[1])_renamed_\($0)" })

            // A role removed from the catalogue keeps its groups (and memberships) but loses its permissions.
            let withoutResearcher = try RoleCatalogue(
                permissions: RoleCatalogue.reference.permissions.map { ($0.codename, $0.name) },
                roles: RoleCatalogue.reference.roles.filter { $0.name != "Researcher" }.map { ($0.name, $0.permissions) }
            )
            let retired = try Self.sync(connection, withoutResearcher)
            #expect(retired.retiredRoles == ["Researcher": 3])
            #expect(retired.summary.contains("Researcher (3 groups)"))
            #expect(try Self.count(connection, "SELECT count(*) AS n FROM migrator.project_role_group WHERE role = 'Researcher'") == 3)
            #expect(try Self.count(connection, """
                SELECT count(*) AS n FROM auth_group_permissions x JOIN migrator.project_role_group l ON l.group_id = x.group_id WHERE l.role = 'Researcher'
                """) == 0)
            try Self.sync(connection)
            #expect(try Self.count(connection, "SELECT count(*) AS n FROM users_user_groups") == memberships)

            try connection.query("DELETE FROM main_project WHERE id = $1", [ids[2]])
            #expect(try Self.count(connection, "SELECT count(*) AS n FROM auth_group WHERE name LIKE '\(ids[2])\\_%'") == 0)
            #expect(try Self.count(connection, "SELECT count(*) AS n FROM migrator.project_role_group WHERE project_id = \(ids[2])") == 0)
            #expect(try Self.count(connection, "SELECT count(*) AS n FROM guardian_groupobjectpermission WHERE object_pk = '\(ids[2])'") == 0)
            #expect(try Self.count(connection, "SELECT count(*) AS n FROM users_user_groups") == memberships - 4)
            let full = try Self.sync(connection, .reference, .init(force: true))
            #expect(full.totals.rowsWritten == 0)
        }
    }

    static func drift(_ connection: Connection) throws -> RoleSynchronizer.Drift {
        try chunkedAlike(connection, RoleSynchronizer(catalogue: .reference))
    }

    /// The drift query in one chunk of every project, and read one and two projects per statement: the same answer.
    static func chunkedAlike(
        _ connection: Connection, _ synchronizer: RoleSynchronizer, sourceLocation: Testing.SourceLocation = #_sourceLocation
    ) throws -> RoleSynchronizer.Drift {
        let target = try synchronizer.resolveTarget(connection)
        let whole = try #require(try synchronizer.drift(connection, target: target, chunkSize: 1_000_000), sourceLocation: sourceLocation)
        for size in [1, 2] {
            let chunked = try synchronizer.drift(connection, target: target, chunkSize: size)
            #expect(chunked == whole, "\(size) project(s) per statement: \(chunked), in one: \(whole)", sourceLocation: sourceLocation)
        }
        return whole
    }

    @Test("drift finds exactly the projects a sync would change: a missing group, an old name, a missing or a foreign grant")
    func driftFindsWhatDiffers() throws {
        try TestDatabase.with { database in
            let connection = try Self.migrated(database)
            let ids = try Self.addProjects(connection, ["a", "b", "c", "d", "e"])
            #expect(try Self.drift(connection).projectIDs == ids)
            try Self.sync(connection)
            #expect(try Self.drift(connection) == .init(projectIDs: [], permissionsMissing: false, blockedGroups: 0))

            let new = try Self.addProjects(connection, ["new"])[0]
            try connection.query("UPDATE main_project SET name = 'renamed' WHERE id = $1", [ids[0]])
            try connection.query("""
                DELETE FROM auth_group_permissions WHERE id = (SELECT min(x.id) FROM auth_group_permissions x
                JOIN migrator.project_role_group l ON l.group_id = x.group_id WHERE l.project_id = $1)
                """, [ids[1]])
            try connection.query("""
                INSERT INTO guardian_groupobjectpermission (object_pk, content_type_id, group_id, permission_id)
                SELECT $1::text, p.content_type_id, l.group_id, p.id FROM migrator.project_role_group l, auth_permission p
                WHERE l.project_id = $2 AND l.role = 'BasicMember' AND p.codename = 'delete_project'
                """, [String(ids[2]), ids[2]])
            #expect(try Self.drift(connection).projectIDs == [ids[0], ids[1], ids[2], new])

            try Self.sync(connection, .reference, .init(projectIDs: try Self.drift(connection).projectIDs))
            #expect(try Self.drift(connection).projectIDs == [])
            let all = try connection.query("SELECT id, name FROM main_project").rows.map { (Int64($0["id"]!)!, $0["name"]!) }
            let grants = try Self.grants(connection)
            #expect(grants.group == Self.expected(all).group)
            #expect(grants.object == Self.expected(all).object)
        }
    }

    @Test("the drift query reads the projects in chunks by id, each its own statements: the same answer whatever the chunk, links of deleted projects counted in every range, no lock held between the statements, so an app's ALTER TABLE gets its lock at once; told to stop, it reads no further chunk")
    func driftInChunks() throws {
        try TestDatabase.with { database in
            let connection = try Self.migrated(database)
            let ids = try Self.addProjects(connection, ["a", "b", "c", "d", "e", "f", "g", "h"])
            try Self.sync(connection)
            // Out of step: a (renamed), f (a permission removed by hand). Deleted while the trigger that takes their
            // groups along was not there: c, in the middle, and h, the last id, whose links lie past every project.
            try connection.query("UPDATE main_project SET name = 'renamed' WHERE id = $1", [ids[0]])
            try connection.query("""
                DELETE FROM auth_group_permissions WHERE id = (SELECT min(x.id) FROM auth_group_permissions x
                JOIN migrator.project_role_group l ON l.group_id = x.group_id WHERE l.project_id = $1)
                """, [ids[5]])
            try connection.execute(script: """
                ALTER TABLE main_project DISABLE TRIGGER migrator_project_delete_groups;
                DELETE FROM main_project WHERE id IN (\(ids[2]), \(ids[7]));
                ALTER TABLE main_project ENABLE TRIGGER migrator_project_delete_groups;
                """)
            let roles = RoleCatalogue.reference.roles.count
            let expected = RoleSynchronizer.Drift(
                projectIDs: [ids[0], ids[5]], permissionsMissing: false, blockedGroups: 0, orphanedLinks: 2 * roles
            )
            let synchronizer = RoleSynchronizer(catalogue: .reference)
            let target = try synchronizer.resolveTarget(connection)
            // 6 projects remain (a, b, d, e, f, g): chunks of 1 to 7, and the default.
            for size in 1...7 {
                var chunks: [RoleSynchronizer.DriftChunk] = []
                let drift = try synchronizer.drift(connection, target: target, chunkSize: size) { chunks.append($0); return true }
                #expect(drift == expected, "\(size) per statement")
                // A full chunk may be followed by more; the one that is not full is the last.
                #expect(chunks.count == 6 / size + 1, "\(size) per statement: \(chunks.count) statements")
                #expect(chunks.map(\.number) == Array(1...chunks.count))
            }
            #expect(try synchronizer.drift(connection, target: target) == expected)
            // Told to stop after the second chunk (a daemon asked to stop), it reads no third and answers nothing.
            var read = 0
            let stopped = try synchronizer.drift(connection, target: target, chunkSize: 2) { _ in read += 1; return read < 2 }
            #expect(stopped == nil && read == 2)

            // Between two statements the session holds no lock: an ALTER TABLE of the project table, which needs
            // ACCESS EXCLUSIVE, gets it within its lock_timeout (while a statement held ACCESS SHARE it could not: the
            // drift session is stopped in this closure, so it would wait the whole timeout and fail).
            let app = try database.connect()
            try app.query("SET lock_timeout = '5s'")
            var altered = 0
            let drift = try synchronizer.drift(connection, target: target, chunkSize: 2) { chunk in
                do {
                    let held = try app.query("""
                        SELECT count(*) AS n FROM pg_locks WHERE pid = $1 AND locktype = 'relation'
                        """, [Int64(connection.backendPID)]).first?.decode("n", as: Int.self)
                    #expect(held == 0, "after statement \(chunk.number): \(held ?? -1) relation locks held")
                    try app.query("ALTER TABLE main_project ADD COLUMN note_\(chunk.number) text")
                    altered += 1
                } catch {
                    Issue.record("after statement \(chunk.number): \(error)")
                }
                return true
            }
            #expect(altered == 4)
            #expect(drift == expected)
        }
    }

    /// Every row a sync may write for each existing project (its links, groups, group and object permissions), with
    /// the row versions, so that any write to a project shows.
    static func projectRows(_ connection: Connection) throws -> [Int64: String] {
        let result = try connection.query("""
            SELECT p.id AS project_id, coalesce(string_agg(r.v, ';' ORDER BY r.v), '') AS rows
            FROM main_project p LEFT JOIN (
                SELECT l.project_id, 'l:' || l.role || ':' || l.group_id || ':' || l.xmin || ':' || g.name || ':' || g.xmin AS v
                FROM migrator.project_role_group l JOIN auth_group g ON g.id = l.group_id
                UNION ALL
                SELECT l.project_id, 'gp:' || x.id || ':' || x.xmin
                FROM migrator.project_role_group l JOIN auth_group_permissions x ON x.group_id = l.group_id
                UNION ALL
                SELECT l.project_id, 'op:' || x.id || ':' || x.object_pk || ':' || x.xmin
                FROM migrator.project_role_group l JOIN guardian_groupobjectpermission x ON x.group_id = l.group_id
            ) r ON r.project_id = p.id
            GROUP BY p.id
            """).from("the projects' rows")
        var rows: [Int64: String] = [:]
        for row in result.rows { rows[try row.decode("project_id")] = try row.decode("rows") }
        return rows
    }

    /// The drift query, then a sync, in one state of the database: the projects drift names are exactly those whose
    /// rows the sync writes, the links of deleted projects it counts are the groups the sync removes, and afterwards
    /// there is no drift. `perProject` syncs as the daemon does: the drifted projects, or everything when only a full
    /// sync can help; otherwise a forced full sync, or with `incremental` a plain one.
    @discardableResult
    static func expectDriftMatchesSync(
        _ connection: Connection, _ catalogue: RoleCatalogue, perProject: Bool, incremental: Bool = false, _ state: String,
        sourceLocation: Testing.SourceLocation = #_sourceLocation
    ) throws -> RoleSynchronizer.Drift {
        let synchronizer = RoleSynchronizer(catalogue: catalogue)
        let drift = try chunkedAlike(connection, synchronizer, sourceLocation: sourceLocation)
        let before = try projectRows(connection)
        let options: RoleSynchronizer.Options
        if perProject, !drift.permissionsMissing, drift.orphanedLinks == 0 {
            options = .init(projectIDs: drift.projectIDs)
        } else {
            options = .init(force: !incremental)
        }
        let report = try synchronizer.sync(connection, options: options, logger: logger)
        if incremental { #expect(report.mode == .incremental, "\(state)", sourceLocation: sourceLocation) }
        let after = try projectRows(connection)
        let changed = Set(before.keys).union(after.keys).filter { before[$0] != after[$0] }
        #expect(changed == Set(drift.projectIDs), "\(state): drift \(drift.projectIDs), changed \(changed.sorted())", sourceLocation: sourceLocation)
        #expect(report.groupsOfDeletedProjectsRemoved == drift.orphanedLinks, "\(state)", sourceLocation: sourceLocation)
        let again = try synchronizer.drift(connection)
        #expect(again.projectIDs == [] && again.orphanedLinks == 0 && !again.permissionsMissing, "\(state): \(again)", sourceLocation: sourceLocation)
        #expect(again.blockedGroups == drift.blockedGroups, "\(state)", sourceLocation: sourceLocation)
        return drift
    }

    @Test("drift and the sync agree on what is in step: fresh, synced, a group renamed by hand, grants removed or added by hand, projects renamed, added and deleted, a name taken, the catalogue changed", arguments: [false, true])
    func driftAgreesWithSync(perProject: Bool) throws {
        try TestDatabase.with { database in
            let connection = try Self.migrated(database)
            let ids = try Self.addProjects(connection, ["a", "b", "c", "d"])
            func group(_ project: Int64, _ role: String) throws -> Int {
                try #require(try connection.query(
                    "SELECT group_id FROM migrator.project_role_group WHERE project_id = $1 AND role = $2", [project, role]
                ).first?.decode("group_id"))
            }
            var drift = try Self.expectDriftMatchesSync(connection, .reference, perProject: perProject, "fresh")
            #expect(drift.projectIDs == ids)
            drift = try Self.expectDriftMatchesSync(connection, .reference, perProject: perProject, "synced")
            #expect(drift.projectIDs == [])

            try connection.query("UPDATE auth_group SET name = name || ' (edited)' WHERE id = $1::integer", [try group(ids[0], "Researcher")])
            drift = try Self.expectDriftMatchesSync(connection, .reference, perProject: perProject, "a group renamed by hand")
            #expect(drift.projectIDs == [ids[0]])

            try connection.query("""
                DELETE FROM auth_group_permissions WHERE id = (SELECT min(id) FROM auth_group_permissions WHERE group_id = $1::integer)
                """, [try group(ids[1], "ProjectManager")])
            try connection.query("""
                DELETE FROM guardian_groupobjectpermission WHERE id = (SELECT max(id) FROM guardian_groupobjectpermission WHERE group_id = $1::integer)
                """, [try group(ids[2], "BasicMember")])
            drift = try Self.expectDriftMatchesSync(connection, .reference, perProject: perProject, "a group and an object permission removed by hand")
            #expect(drift.projectIDs == [ids[1], ids[2]])

            // A grant the role does not give, for the group and on the project, is drift; a grant on another project
            // is someone else's.
            try connection.query("""
                INSERT INTO auth_group_permissions (group_id, permission_id)
                SELECT $1::integer, id FROM auth_permission WHERE codename = 'delete_project'
                """, [try group(ids[3], "BasicMember")])
            try connection.query("""
                INSERT INTO guardian_groupobjectpermission (object_pk, content_type_id, group_id, permission_id)
                SELECT $1::text, content_type_id, $2::integer, id FROM auth_permission WHERE codename = 'delete_project'
                """, [String(ids[3]), try group(ids[0], "BasicMember")])
            drift = try Self.expectDriftMatchesSync(connection, .reference, perProject: perProject, "grants added by hand")
            #expect(drift.projectIDs == [ids[3]])

            let new = try Self.addProjects(connection, ["e"])[0]
            try connection.query("UPDATE main_project SET name = 'renamed' WHERE id = $1", [ids[1]])
            drift = try Self.expectDriftMatchesSync(connection, .reference, perProject: perProject, "a project renamed, one added")
            #expect(drift.projectIDs == [ids[1], new])

            // Deleted while the trigger that takes its groups along was not there (an upgrade from an earlier release).
            try connection.execute(script: """
                ALTER TABLE main_project DISABLE TRIGGER migrator_project_delete_groups;
                DELETE FROM main_project WHERE id = \(ids[2]);
                ALTER TABLE main_project ENABLE TRIGGER migrator_project_delete_groups;
                """)
            drift = try Self.expectDriftMatchesSync(connection, .reference, perProject: perProject, "a project deleted")
            #expect(drift.projectIDs == [] && drift.orphanedLinks == 5)

            // The name project d's Identifier group would get after a rename is another group's: its other groups follow.
            try connection.query("INSERT INTO auth_group (name) VALUES ($1)", ["\(ids[3])_omega_Identifier"])
            try connection.query("UPDATE main_project SET name = 'omega' WHERE id = $1", [ids[3]])
            drift = try Self.expectDriftMatchesSync(connection, .reference, perProject: perProject, "a name taken")
            #expect(drift.projectIDs == [ids[3]] && drift.blockedGroups == 1)

            // A role leaves the catalogue and another gains a permission: every project, through the incremental sync.
            let changed = try RoleCatalogue(
                permissions: RoleCatalogue.reference.permissions.map { ($0.codename, $0.name) },
                roles: RoleCatalogue.reference.roles.filter { $0.name != "Researcher" }
                    .map { ($0.name, $0.name == "BasicMember" ? $0.permissions + ["import_data"] : $0.permissions) }
            )
            drift = try Self.expectDriftMatchesSync(connection, changed, perProject: perProject, incremental: !perProject, "the catalogue changed")
            #expect(drift.projectIDs == [ids[0], ids[1], ids[3], new])
            drift = try Self.expectDriftMatchesSync(connection, changed, perProject: perProject, "synced to the changed catalogue")
            #expect(drift.projectIDs == [])
        }
    }

    @Test("a group name another group has: that group is left alone and reported, the project's other rows are synced, drift stops flagging it")
    func nameTakenByAnotherGroup() throws {
        try TestDatabase.with { database in
            let connection = try Self.migrated(database)
            let ids = try Self.addProjects(connection, ["alpha", "beta"])
            try Self.sync(connection)
            // Someone made a group with the name project 1's Researcher group would get after a rename.
            let foreign = try #require(try connection.query("INSERT INTO auth_group (name) VALUES ($1) RETURNING id", ["\(ids[0])_omega_Researcher"]).first?["id"])
            try connection.query("INSERT INTO auth_group_permissions (group_id, permission_id) SELECT $1::integer, min(id) FROM auth_permission", [foreign])
            try connection.query("UPDATE main_project SET name = 'omega' WHERE id = $1", [ids[0]])
            #expect(try Self.drift(connection) == .init(projectIDs: [ids[0]], permissionsMissing: false, blockedGroups: 1))

            let report = try Self.sync(connection, .reference, .init(projectIDs: [ids[0]]))
            #expect(report.totals.groupsRenamed == 4)
            let blocked = RoleSyncReport.BlockedGroup(
                projectID: ids[0], role: "Researcher", currentName: "\(ids[0])_alpha_Researcher", wantedName: "\(ids[0])_omega_Researcher"
            )
            #expect(report.blockedGroups == [blocked])
            #expect(report.summary.contains("1 group name(s) taken by another group"), "\(report.summary)")
            #expect(report.summary.contains("rename or delete the other group"))
            // Not drift any more: a reconcile does not sync it again and again. Its permissions are still kept in step.
            #expect(try Self.drift(connection) == .init(projectIDs: [], permissionsMissing: false, blockedGroups: 1))
            try connection.query("""
                DELETE FROM auth_group_permissions WHERE group_id = (SELECT id FROM auth_group WHERE name = $1)
                """, ["\(ids[0])_alpha_Researcher"])
            #expect(try Self.drift(connection).projectIDs == [ids[0]])
            #expect(try Self.sync(connection, .reference, .init(projectIDs: [ids[0]])).totals.groupPermissionsAdded > 0)
            #expect(try Self.drift(connection) == .init(projectIDs: [], permissionsMissing: false, blockedGroups: 1))
            // The other group is untouched: name, id, permission.
            #expect(try Self.count(connection, "SELECT count(*) AS n FROM auth_group_permissions WHERE group_id = \(foreign)") == 1)
            #expect(try connection.query("SELECT name FROM auth_group WHERE id = $1::integer", [foreign]).first?["name"] == "\(ids[0])_omega_Researcher")

            // A group that cannot be created because a group linked elsewhere has its name: reported with no current name.
            let gamma = try Self.addProjects(connection, ["gamma"])[0]
            try connection.query("""
                WITH g AS (INSERT INTO auth_group (name) VALUES ($1) RETURNING id)
                INSERT INTO migrator.project_role_group (project_id, role, group_id) SELECT $2, 'Legacy', id FROM g
                """, ["\(gamma)_gamma_Identifier", ids[1]])
            let onlyGamma = try Self.sync(connection, .reference, .init(projectIDs: [gamma]))
            #expect(onlyGamma.blockedGroups == [.init(projectID: gamma, role: "Identifier", currentName: nil, wantedName: "\(gamma)_gamma_Identifier")])
            #expect(onlyGamma.totals.groupsCreated == 4)
            // A full sync renames the group linked elsewhere first, which frees the name; then the last group is made.
            try connection.query("DELETE FROM auth_group_permissions WHERE group_id = $1::integer", [foreign])
            try connection.query("DELETE FROM auth_group WHERE id = $1::integer", [foreign])
            let full = try Self.sync(connection, .reference, .init(force: true))
            #expect(full.blockedGroups == [])
            #expect(try Self.drift(connection) == .init(projectIDs: [], permissionsMissing: false, blockedGroups: 0))
            #expect(try Self.count(connection, "SELECT count(*) AS n FROM auth_group WHERE name = '\(ids[0])_omega_Researcher' OR name = '\(ids[1])_beta_Legacy' OR name = '\(gamma)_gamma_Identifier'") == 3)
        }
    }

    @Test("rows that are not ours are never touched")
    func foreignRowsUntouched() throws {
        try TestDatabase.with { database in
            let connection = try Self.migrated(database)
            let ids = try Self.addProjects(connection, ["mine"])
            try Self.sync(connection)
            try connection.query("""
                INSERT INTO django_content_type (app_label, model) VALUES ('other', 'thing');
                """)
            try connection.execute(script: """
                INSERT INTO auth_permission (name, content_type_id, codename)
                    SELECT 'Can poke thing', id, 'poke_thing' FROM django_content_type WHERE app_label = 'other';
                INSERT INTO auth_group (name) VALUES ('editors');
                INSERT INTO users_user (username) VALUES ('ada');
                -- another group with one of our permissions, globally and on our project
                INSERT INTO auth_group_permissions (group_id, permission_id)
                    SELECT g.id, p.id FROM auth_group g, auth_permission p WHERE g.name = 'editors' AND p.codename = 'view_project';
                INSERT INTO guardian_groupobjectpermission (object_pk, content_type_id, group_id, permission_id)
                    SELECT '\(ids[0])', p.content_type_id, g.id, p.id FROM auth_group g, auth_permission p WHERE g.name = 'editors' AND p.codename = 'delete_project';
                -- a user object permission, and another content type's permission on one of our groups
                INSERT INTO guardian_userobjectpermission (object_pk, content_type_id, user_id, permission_id)
                    SELECT '\(ids[0])', p.content_type_id, u.id, p.id FROM users_user u, auth_permission p WHERE p.codename = 'delete_project';
                INSERT INTO auth_group_permissions (group_id, permission_id)
                    SELECT l.group_id, p.id FROM migrator.project_role_group l, auth_permission p WHERE l.role = 'BasicMember' AND p.codename = 'poke_thing';
                """)
            let before = try Self.count(connection, "SELECT (SELECT count(*) FROM auth_group_permissions) + (SELECT count(*) FROM guardian_groupobjectpermission) + (SELECT count(*) FROM guardian_userobjectpermission) AS n")
            let report = try Self.sync(connection, .reference, .init(force: true))
            #expect(report.totals.rowsWritten == 0)
            let after = try Self.count(connection, "SELECT (SELECT count(*) FROM auth_group_permissions) + (SELECT count(*) FROM guardian_groupobjectpermission) + (SELECT count(*) FROM guardian_userobjectpermission) AS n")
            #expect(after == before)
        }
    }

    @Test("groups the Django app made are adopted, not duplicated, and brought to the catalogue")
    func adoptsDjangoGroups() throws {
        try TestDatabase.with { database in
            let connection = try Self.migrated(database)
            let ids = try Self.addProjects(connection, ["legacy"])
            // The reference app's way: a group per role by name, some permissions, a member.
            try connection.query("INSERT INTO auth_group (name) SELECT $1::text || '_legacy_' || r FROM unnest($2::text[]) r", [String(ids[0]), RoleCatalogue.reference.roles.map(\.name)])
            try connection.query("INSERT INTO users_user (username) VALUES ('ada')")
            try connection.query("INSERT INTO users_user_groups (user_id, group_id) SELECT u.id, g.id FROM users_user u, auth_group g WHERE g.name LIKE '%_Researcher'")
            try connection.query("""
                INSERT INTO django_content_type (app_label, model) VALUES ('main', 'project') ON CONFLICT DO NOTHING
                """)
            let report = try Self.sync(connection)
            #expect(report.totals.groupsAdopted == 5)
            #expect(report.totals.groupsCreated == 0)
            #expect(try Self.count(connection, "SELECT count(*) AS n FROM auth_group") == 5)
            #expect(try Self.count(connection, "SELECT count(*) AS n FROM users_user_groups") == 1)
            #expect(try Self.grants(connection).group == Self.expected([(ids[0], "legacy")]).group)
        }
    }

    @Test("a failure half way rolls everything back and keeps the old version; the next run completes")
    func failureRollsBack() throws {
        try TestDatabase.with { database in
            let connection = try Self.migrated(database)
            let ids = try Self.addProjects(connection, ["one", "two", "three"])
            try Self.sync(connection)
            let oldVersion = try RoleSynchronizer.storedVersion(connection)?.version
            let before = try Self.rowVersions(connection)
            try connection.execute(script: """
                CREATE FUNCTION fail_on_two() RETURNS trigger LANGUAGE plpgsql AS $$
                BEGIN
                    IF NEW.object_pk = '\(ids[1])' THEN RAISE EXCEPTION 'injected failure for project %', NEW.object_pk; END IF;
                    RETURN NEW;
                END $$;
                CREATE TRIGGER fail_on_two BEFORE INSERT ON guardian_groupobjectpermission FOR EACH ROW EXECUTE FUNCTION fail_on_two();
                """)
            let plus = try RoleCatalogue(
                permissions: RoleCatalogue.reference.permissions.map { ($0.codename, $0.name) },
                roles: RoleCatalogue.reference.roles.map { ($0.name, $0.name == "BasicMember" ? $0.permissions + ["run_ml_job"] : $0.permissions) } + [("Auditor", ["view_project"])]
            )
            let error = #expect(throws: RoleSyncError.self) { try Self.sync(connection, plus) }
            #expect(error?.phase == "object permissions")
            #expect(error?.description.contains("injected failure for project \(ids[1])") == true)
            #expect(connection.transactionStatus == .idle)
            #expect(try RoleSynchronizer.storedVersion(connection)?.version == oldVersion)
            #expect(try Self.rowVersions(connection) == before)

            try connection.query("DROP TRIGGER fail_on_two ON guardian_groupobjectpermission")
            let retried = try Self.sync(connection, plus)
            #expect(retried.totals.groupsCreated == 3)
            #expect(try RoleSynchronizer.storedVersion(connection)?.version == plus.version)
            #expect(try Self.grants(connection).object == Self.expected(Array(zip(ids, ["one", "two", "three"])), plus).object)
        }
    }

    @Test("project names with quotes, backslashes, %, $1, unicode and 80 characters are stored exactly and inject nothing")
    func hostileNames() throws {
        try TestDatabase.with { database in
            let connection = try Self.migrated(database)
            let names = [
                "O'Brien's \"lab\"", #"back\slash\\"#, "100% %s %d", "$1 $$ $tag$", "'); DROP TABLE auth_group; --",
                "zürich – 東京 🦋", String(repeating: "x", count: 80), "_%_",
            ]
            let ids = try Self.addProjects(connection, names)
            let report = try Self.sync(connection)
            #expect(report.totals.groupsCreated == names.count * 5)
            #expect(try Self.grants(connection).group == Self.expected(Array(zip(ids, names))).group)
            #expect(try Self.count(connection, "SELECT count(*) AS n FROM auth_group") == names.count * 5)
            #expect(try Self.sync(connection, .reference, .init(force: true)).totals.rowsWritten == 0)
        }
    }

    /// The catalogue's limits count code points, which is what PostgreSQL's varchar(n) counts: a codename of 100 code
    /// points in 51 Characters (combining accents) and a display name of 255 in 128 fit the tables, to the last one.
    @Test("a codename and a display name at the limit in code points, written with combining characters, are synced as written")
    func codePointLimits() throws {
        try TestDatabase.with { database in
            let connection = try Self.migrated(database)
            let codename = String(repeating: "e\u{301}", count: 49) + "cc"
            let name = String(repeating: "e\u{301}", count: 127) + "n"
            #expect(codename.count == 51 && codename.unicodeScalars.count == 100)
            #expect(name.count == 128 && name.unicodeScalars.count == 255)
            let catalogue = try RoleCatalogue(permissions: [(codename, name)], roles: [("Accented", [codename])])
            let ids = try Self.addProjects(connection, ["p"])
            let report = try Self.sync(connection, catalogue)
            #expect(report.recordedVersion && report.totals.groupsCreated == 1)
            let row = try #require(try connection.query(
                "SELECT codename, name, char_length(codename) AS c, char_length(name) AS n FROM auth_permission WHERE codename = $1",
                [codename]
            ).first)
            #expect(row["codename"] == codename && row["name"] == name)
            #expect(row.int("c") == 100 && row.int("n") == 255)
            #expect(try Self.grants(connection).object == ["\(ids[0])_p_Accented:\(codename)@\(ids[0])"])
        }
    }

    @Test("a dry run reports what would change per role and changes nothing")
    func dryRun() throws {
        try TestDatabase.with { database in
            let connection = try Self.migrated(database)
            try Self.addProjects(connection, ["a", "b"])
            let before = try Self.rowVersions(connection)
            let report = try Self.sync(connection, .reference, .init(dryRun: true))
            #expect(report.dryRun && !report.recordedVersion)
            #expect(report.roles["ProjectManager"]?.groupPermissionsAdded == 2 * 47)
            #expect(report.totals.groupsCreated == 10)
            #expect(try Self.rowVersions(connection) == before)
            #expect(try RoleSynchronizer.storedVersion(connection) == nil)
        }
    }

    @Test("a sync limited to projects touches only them and does not record the version")
    func projectScope() throws {
        try TestDatabase.with { database in
            let connection = try Self.migrated(database)
            let ids = try Self.addProjects(connection, ["a", "b", "c"])
            let report = try Self.sync(connection, .reference, .init(projectIDs: [ids[1]]))
            #expect(report.mode == .projects && !report.recordedVersion)
            #expect(report.summary.contains("not recorded"))
            #expect(report.projects == 1)
            #expect(try Self.count(connection, "SELECT count(DISTINCT project_id) AS n FROM migrator.project_role_group") == 1)
            #expect(try Self.grants(connection).object == Self.expected([(ids[1], "b")]).object)
            #expect(try RoleSynchronizer.storedVersion(connection) == nil)
        }
    }

    // Until the poll for new projects this test also expected a notification for the INSERT (three payloads): no
    // trigger of migrator's fires on INSERT now (README "New projects are polled"), so an insert sends nothing.
    @Test("the project table's triggers, installed by the first sync, notify on a project's rename and delete, not on its insert or other updates")
    func projectNotifications() throws {
        try TestDatabase.with { database in
            let connection = try Self.migrated(database)
            try Self.sync(connection)
            let listener = try database.connect()
            try listener.listen("migrator_projects")
            let id = try Self.addProjects(connection, ["watched"])[0]
            try connection.query("UPDATE main_project SET description = 'no rename' WHERE id = $1", [id])
            try connection.query("UPDATE main_project SET name = 'renamed' WHERE id = $1", [id])
            try connection.query("DELETE FROM main_project WHERE id = $1", [id])
            var payloads: [String] = []
            let deadline = ContinuousClock.now + .seconds(5)
            while payloads.count < 2, ContinuousClock.now < deadline {
                payloads += try listener.waitForNotifications(timeout: .milliseconds(300)).map(\.payload)
            }
            payloads += try listener.waitForNotifications(timeout: .milliseconds(200)).map(\.payload)
            #expect(payloads == [String(id), String(id)])
        }
    }

    @Test("the app deleting one of our groups itself takes the rows that reference it along (grants, object permissions, memberships); a group of the app's own keeps its foreign keys; a project delete still removes its groups")
    func groupDeletedByTheApp() throws {
        try TestDatabase.with { database in
            let connection = try Self.migrated(database)
            let ids = try Self.addProjects(connection, ["a", "b"])
            try Self.sync(connection)
            let group = try Self.count(connection, "SELECT group_id AS n FROM migrator.project_role_group WHERE project_id = \(ids[0]) AND role = 'Researcher'")
            try connection.execute(script: """
                INSERT INTO users_user (username) VALUES ('ada');
                INSERT INTO users_user_groups (user_id, group_id) SELECT id, \(group) FROM users_user;
                """)
            #expect(try Self.count(connection, "SELECT count(*) AS n FROM auth_group_permissions WHERE group_id = \(group)") > 0)
            // The group alone, in a transaction of its own: the foreign keys (deferred, as Django makes them) pass at COMMIT.
            try connection.execute(script: "BEGIN; DELETE FROM auth_group WHERE id = \(group); COMMIT;")
            for table in ["auth_group_permissions", "guardian_groupobjectpermission", "users_user_groups", "migrator.project_role_group"] {
                #expect(try Self.count(connection, "SELECT count(*) AS n FROM \(table) WHERE group_id = \(group)") == 0, "\(table)")
            }
            #expect(try RoleSynchronizer(catalogue: .reference).drift(connection).projectIDs == [ids[0]])
            try Self.sync(connection, .reference, .init(force: true))
            #expect(try RoleSynchronizer(catalogue: .reference).drift(connection).projectIDs == [])

            // A group that is not a role group: deleting it with a grant left is the app's foreign key error, as before.
            try connection.execute(script: """
                INSERT INTO auth_group (name) VALUES ('staff');
                INSERT INTO auth_group_permissions (group_id, permission_id)
                    SELECT g.id, min(p.id) FROM auth_group g, auth_permission p WHERE g.name = 'staff' GROUP BY g.id;
                """)
            let refused = #expect(throws: PostgresError.self) {
                try connection.execute(script: "BEGIN; DELETE FROM auth_group WHERE name = 'staff'; COMMIT;")
            }
            #expect(refused?.sqlState == "23503")
            _ = try? connection.query("ROLLBACK")
            #expect(try Self.count(connection, "SELECT count(*) AS n FROM auth_group WHERE name = 'staff'") == 1)

            // The project delete (delete_role_groups, which tells the group trigger to stand aside) still removes
            // every group of the project with what references it.
            try connection.query("DELETE FROM main_project WHERE id = $1", [ids[1]])
            #expect(try Self.count(connection, "SELECT count(*) AS n FROM migrator.project_role_group WHERE project_id = \(ids[1])") == 0)
            #expect(try Self.count(connection, "SELECT count(*) AS n FROM auth_group g WHERE NOT EXISTS (SELECT 1 FROM migrator.project_role_group l WHERE l.group_id = g.id) AND g.name <> 'staff'") == 0)
            #expect(try RoleSynchronizer(catalogue: .reference).drift(connection).projectIDs == [])
        }
    }

    @Test("a sync with nothing to do (one quick query) still puts back a trigger the app dropped and the links' foreign key, and does not take another's trigger of our name for ours")
    func unchangedSyncRepairs() throws {
        try TestDatabase.with { database in
            let connection = try Self.migrated(database)
            try Self.addProjects(connection, ["a"])
            try Self.sync(connection)
            let ours = """
                SELECT string_agg(tg.tgname || ':' || tg.tgfoid::regprocedure::text, ',' ORDER BY tg.tgname) AS t
                FROM pg_trigger tg WHERE tg.tgrelid = 'main_project'::regclass AND NOT tg.tgisinternal
                """
            let installed = try connection.query(ours).first?["t"]
            let quiet = try Self.sync(connection)
            #expect(quiet.mode == .unchanged && quiet.roundTrips == 1)

            try connection.query("DROP TRIGGER migrator_project_delete_groups ON main_project")
            #expect(try Self.sync(connection).mode == .unchanged)
            #expect(try connection.query(ours).first?["t"] == installed)

            // A trigger of that name calling a function of someone else's is not taken for ours: the quick check
            // does not call it in step, and the full one refuses to replace it.
            try connection.query("DROP TRIGGER migrator_project_truncate ON main_project")
            try connection.query("CREATE FUNCTION public.projects_truncated() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NULL; END $$")
            try connection.query("CREATE TRIGGER migrator_project_truncate AFTER TRUNCATE ON main_project EXECUTE FUNCTION public.projects_truncated()")
            let taken = #expect(throws: RoleSyncError.self) { try Self.sync(connection) }
            #expect(taken?.error.sqlState == "42710")
            try connection.query("DROP TRIGGER migrator_project_truncate ON main_project")
            #expect(try Self.sync(connection).mode == .unchanged)
            #expect(try connection.query(ours).first?["t"] == installed)

            let key = "SELECT count(*) AS n FROM pg_constraint WHERE conrelid = 'migrator.project_role_group'::regclass AND contype = 'f' AND confrelid = 'auth_group'::regclass"
            let keys = try Self.count(connection, key)
            #expect(keys == 1)
            let name = try #require(try connection.query("SELECT conname FROM pg_constraint WHERE conrelid = 'migrator.project_role_group'::regclass AND confrelid = 'auth_group'::regclass").first?["conname"])
            // The constraint's name is the server's own, read just above.
            try connection.query("ALTER TABLE migrator.project_role_group DROP CONSTRAINT \(SQLIdentifier.quote(name))")
            #expect(try Self.sync(connection).mode == .unchanged)
            #expect(try Self.count(connection, key) == 1)
            #expect(try Self.sync(connection).roundTrips == 1)
        }
    }

    @Test("the quick check reads the triggers by the OIDs recorded when they were last found in step; anything else takes the full check, which records them again")
    func recordedTriggers() throws {
        try TestDatabase.with { database in
            let connection = try Self.migrated(database)
            try Self.addProjects(connection, ["a"])
            try Self.sync(connection)
            let recorded = "SELECT migrator.recorded_role_triggers() AS r"
            let answer = try #require(try connection.query(recorded).first?["r"], "nothing recorded by the first sync")
            // name|table|arguments, sorted by name.
            #expect(answer == "migrator_group_deleted|auth_group|;migrator_project_delete_groups|main_project|id,;"
                + "migrator_project_notify_delete|main_project|id,;migrator_project_notify_rename|main_project|id,name,;"
                + "migrator_project_truncate|main_project|")
            #expect(try Self.sync(connection).roundTrips == 1)

            // Nothing recorded (the first run after the upgrade to this release, or a restored dump whose OIDs differ):
            // the full check finds the triggers in step, replaces none of them, and records them.
            let oids = "SELECT string_agg(oid::text, ',' ORDER BY tgname) AS o FROM pg_trigger WHERE tgname LIKE 'migrator%'"
            let before = try connection.query(oids).first?["o"]
            try connection.query("CREATE OR REPLACE FUNCTION migrator.recorded_role_triggers() RETURNS text LANGUAGE sql STABLE AS $$ SELECT NULL::text $$")
            let upgraded = try Self.sync(connection)
            #expect(upgraded.mode == .unchanged && upgraded.roundTrips == 3, "quick check, full check, record: \(upgraded.roundTrips)")
            #expect(try connection.query(oids).first?["o"] == before, "a trigger in step was replaced")
            #expect(try connection.query(recorded).first?["r"] == answer)
            #expect(try Self.sync(connection).roundTrips == 1)

            // A trigger of our name calling our function with other arguments: the OID recorded is gone, so the full
            // check runs and puts ours back.
            try connection.query("DROP TRIGGER migrator_project_delete_groups ON main_project")
            try connection.query("CREATE TRIGGER migrator_project_delete_groups BEFORE DELETE ON main_project FOR EACH ROW EXECUTE FUNCTION migrator.project_deleted('name')")
            #expect(try connection.query(recorded).first?["r"] == nil)
            #expect(try Self.sync(connection).mode == .unchanged)
            let arguments = "SELECT encode(tgargs, 'escape') AS a FROM pg_trigger WHERE tgname = 'migrator_project_delete_groups'"
            #expect(try connection.query(arguments).first?["a"] == "id\\000")
            #expect(try connection.query(recorded).first?["r"] == answer)

            // The same trigger, redefined in place (another WHEN on the rename trigger): its definition no longer
            // matches the one recorded.
            try connection.query("CREATE OR REPLACE TRIGGER migrator_project_notify_rename AFTER UPDATE OF name ON main_project FOR EACH ROW EXECUTE FUNCTION migrator.project_notify('id', 'name')")
            #expect(try connection.query(recorded).first?["r"] == nil)

            // What the check by OIDs does not look for: a trigger calling our functions added by hand beside ours
            // (a release that wants other triggers replaces the whole set, so the OIDs recorded go). The no-op run
            // leaves it; the next sync's full check finds the set different and replaces it.
            #expect(try Self.sync(connection).mode == .unchanged)
            try connection.query("CREATE TRIGGER migrator_project_notify_insert AFTER INSERT ON main_project FOR EACH ROW EXECUTE FUNCTION migrator.project_notify('id')")
            let insertTrigger = "SELECT count(*) AS n FROM pg_trigger WHERE tgname = 'migrator_project_notify_insert'"
            #expect(try Self.sync(connection).roundTrips == 1)
            #expect(try Self.count(connection, insertTrigger) == 1)
            try Self.sync(connection, .reference, .init(force: true))
            #expect(try Self.count(connection, insertTrigger) == 0)
            #expect(try connection.query(recorded).first?["r"] == answer)
            try connection.query("CREATE OR REPLACE TRIGGER migrator_project_notify_rename AFTER UPDATE OF name ON main_project FOR EACH ROW EXECUTE FUNCTION migrator.project_notify('id', 'name')")

            // A dry run reads and writes nothing of it.
            let dry = try Self.sync(connection, .reference, .init(dryRun: true))
            #expect(dry.mode == .unchanged && dry.dryRun)
            #expect(try connection.query(recorded).first?["r"] == nil)
            #expect(try Self.sync(connection).mode == .unchanged)
            #expect(try connection.query(recorded).first?["r"] == answer)
            #expect(try Self.sync(connection).roundTrips == 1)
        }
    }

    @Test("a changed display name is corrected in place, and a missing content type is created")
    func displayNamesAndContentType() throws {
        try TestDatabase.with { database in
            let connection = try Self.migrated(database)
            try connection.query("DELETE FROM django_content_type WHERE app_label = 'main' AND model = 'project'")
            try Self.addProjects(connection, ["a"])
            let first = try Self.sync(connection)
            #expect(first.permissionsCreated == 50)
            #expect(try Self.count(connection, "SELECT count(*) AS n FROM django_content_type WHERE app_label = 'main' AND model = 'project'") == 1)
            let ids = try connection.query("SELECT id, codename FROM auth_permission ORDER BY id").rows.map { "\($0["id"]!):\($0["codename"]!)" }

            let renamed = try RoleCatalogue(
                permissions: RoleCatalogue.reference.permissions.map { ($0.codename, $0.codename == "create_job" ? "Can start a job" : $0.name) },
                roles: RoleCatalogue.reference.roles.map { ($0.name, $0.permissions) }
            )
            let report = try Self.sync(connection, renamed)
            #expect(report.permissionsRenamed == 1 && report.permissionsCreated == 0)
            #expect(report.totals.rowsWritten == 0)
            #expect(try connection.query("SELECT name FROM auth_permission WHERE codename = 'create_job'").first?["name"] == "Can start a job")
            #expect(try connection.query("SELECT id, codename FROM auth_permission ORDER BY id").rows.map { "\($0["id"]!):\($0["codename"]!)" } == ids)
        }
    }

    @Test("going back to a version seen before records it again")
    func revisitVersion() throws {
        try TestDatabase.with { database in
            let connection = try Self.migrated(database)
            try Self.addProjects(connection, ["a"])
            let other = try RoleCatalogue(permissions: [], roles: [("Viewer", ["view_project"])])
            try Self.sync(connection)
            try Self.sync(connection, other)
            let back = try Self.sync(connection)
            #expect(back.mode == .incremental && back.recordedVersion)
            #expect(try Self.count(connection, "SELECT count(*) AS n FROM migrator.role_version WHERE version = '\(RoleCatalogue.reference.version)'") == 2)
        }
    }
}

extension RoleSynchronizer.StoredVersion: Equatable {
    public static func == (lhs: Self, rhs: Self) -> Bool { lhs.version == rhs.version }
}
