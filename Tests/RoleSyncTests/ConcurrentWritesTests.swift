import Foundation
import Logging
import MigratorTestSupport
import Postgres
import RoleSync
import Synchronization
import Testing

/// The sync while the app writes: each test pauses the sync at a chosen statement (a test-only trigger, made in the
/// test's own database, that waits on an advisory lock the test holds), lets the app's statement run on another
/// connection, then releases the sync. Nothing waits on a clock: the test looks at `pg_stat_activity` to see whether a
/// session is paused or waits for a lock.
@Suite("Role sync next to a live app")
struct ConcurrentWritesTests {
    typealias Base = RoleSyncTests

    /// Work on a thread of its own with its own connection (a `Connection` stays on the thread that made it).
    final class Background<T: Sendable>: Sendable {
        private let result = Mutex<Result<T, any Error>?>(nil)

        init(_ url: String, applicationName: String, _ body: @escaping @Sendable (Connection) throws -> T) {
            let thread = Thread { [self] in
                let outcome = Result<T, any Error> {
                    let connection = try Connection(config: ConnectionConfig(connectionString: url), logger: Logger(label: "test"))
                    try connection.query("SELECT set_config('application_name', $1, false)", [applicationName])
                    return try body(connection)
                }
                self.result.withLock { $0 = outcome }
            }
            thread.start()
        }

        var isFinished: Bool { result.withLock { $0 != nil } }

        /// Polls, so that no thread of the test runner's pool blocks while the work waits for the test's next move.
        func wait() async throws -> T {
            while !isFinished { try await Task.sleep(for: .milliseconds(5)) }
            return try result.withLock { $0! }.get()
        }
    }

    /// What a session is doing, from the control connection: `.paused` (waiting on an advisory lock), `.waiting` (on a
    /// row or transaction lock), or `.other` (running, idle, or gone).
    enum State { case paused, waiting, other }

    static func state(_ control: Connection, _ applicationName: String) throws -> State {
        let row = try control.query(
            "SELECT wait_event_type, wait_event FROM pg_stat_activity WHERE application_name = $1 AND datname = current_database()",
            [applicationName]
        ).first
        guard let row, row["wait_event_type"] == "Lock" else { return .other }
        return row["wait_event"] == "advisory" ? .paused : .waiting
    }

    /// Polls until `condition` holds (a state the test forced, so it comes; the loop has no deadline of its own, the
    /// test runner's does).
    static func until(_ what: String, _ condition: () throws -> Bool) async throws {
        while try !condition() { try await Task.sleep(for: .milliseconds(5)) }
    }

    /// Until the app's statement has either finished or waits for a lock the sync holds; answers whether it waited.
    static func finishedOrWaiting(_ control: Connection, _ app: Background<some Sendable>, _ name: String) async throws -> Bool {
        var waited = false
        try await until("\(name) finished or waits") {
            if app.isFinished { return true }
            waited = try state(control, name) == .waiting
            return waited
        }
        return waited
    }

    /// A trigger that pauses the sync (the session with `migrator_test.pause_<key>` on) at its first row of `events`
    /// on `table`, until the test releases advisory lock `key`.
    static func pauseTrigger(_ connection: Connection, key: Int, table: String, events: String, when: String = "true") throws {
        try connection.execute(script: """
            CREATE OR REPLACE FUNCTION test_pause_\(key)() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                IF current_setting('migrator_test.pause_\(key)', true) = 'on' AND \(when) THEN
                    PERFORM pg_advisory_xact_lock_shared(\(key));
                END IF;
                IF TG_OP = 'DELETE' THEN RETURN OLD; END IF;
                RETURN NEW;
            END $$;
            CREATE TRIGGER test_pause_\(key) BEFORE \(events) ON \(table) FOR EACH ROW EXECUTE FUNCTION test_pause_\(key)();
            """)
    }

    static func deadlocks(_ control: Connection) throws -> Int {
        try control.query("SELECT deadlocks AS n FROM pg_stat_database WHERE datname = current_database()").first?.int("n") ?? -1
    }

    static func groupsOf(_ connection: Connection, _ project: Int64) throws -> Int {
        try Base.count(connection, """
            SELECT (SELECT count(*) FROM migrator.project_role_group WHERE project_id = \(project))
                 + (SELECT count(*) FROM auth_group WHERE name LIKE '\(project)\\_%') AS n
            """)
    }

    /// The catalogue of the incremental syncs: BasicMember gains a permission, Researcher loses one.
    static let changed = try! RoleCatalogue(
        permissions: RoleCatalogue.reference.permissions.map { ($0.codename, $0.name) },
        roles: RoleCatalogue.reference.roles.map { role in
            switch role.name {
            case "BasicMember": (role.name, role.permissions + ["import_data"])
            case "Researcher": (role.name, Array(role.permissions.dropFirst()))
            default: (role.name, role.permissions)
            }
        }
    )

    /// The statements a sync can be paused in, by the table and events of their first write.
    enum Phase: String, CaseIterable, Sendable, CustomTestStringConvertible {
        case adopt, create, groupPermissions, objectPermissions, rename
        var table: String {
            switch self {
            case .adopt: "migrator.project_role_group"
            case .create, .rename: "auth_group"
            case .groupPermissions: "auth_group_permissions"
            case .objectPermissions: "guardian_groupobjectpermission"
            }
        }
        var events: String {
            switch self {
            case .adopt, .create: "INSERT"
            case .rename: "UPDATE"
            case .groupPermissions, .objectPermissions: "INSERT OR DELETE"
            }
        }
        var testDescription: String { rawValue }
    }

    /// Projects p1, p2, X, p4 synced, then changed so that every phase writes for X (adoption aside) and for another
    /// project: the Researcher groups of p2 and p4 unlinked (adopted), the BasicMember groups of p2 and X gone
    /// (created), for a full sync grants of X and p4 removed by hand (an incremental sync writes the changed pairs),
    /// X and p1 renamed.
    static func prepared(_ database: TestDatabase, incremental: Bool = false) throws -> (Connection, [Int64]) {
        let connection = try Base.migrated(database)
        let ids = try Base.addProjects(connection, ["p1", "p2", "x", "p4"])
        try Base.sync(connection)
        let x = ids[2]
        try connection.execute(script: """
            DELETE FROM migrator.project_role_group WHERE role = 'Researcher' AND project_id IN (\(ids[1]), \(ids[3]));
            SELECT migrator.delete_role_groups(ARRAY(
                SELECT group_id FROM migrator.project_role_group WHERE role = 'BasicMember' AND project_id IN (\(ids[1]), \(x))));
            DELETE FROM auth_group_permissions WHERE NOT \(incremental) AND id IN (
                SELECT min(x.id) FROM auth_group_permissions x JOIN migrator.project_role_group l ON l.group_id = x.group_id
                WHERE l.project_id IN (\(x), \(ids[3])) GROUP BY l.project_id);
            DELETE FROM guardian_groupobjectpermission WHERE NOT \(incremental) AND id IN (
                SELECT min(x.id) FROM guardian_groupobjectpermission x JOIN migrator.project_role_group l ON l.group_id = x.group_id
                WHERE l.project_id IN (\(x), \(ids[3])) GROUP BY l.project_id);
            UPDATE main_project SET name = name || ' renamed' WHERE id IN (\(ids[0]), \(x));
            """)
        return (connection, ids)
    }

    /// After a sync that ran next to the app: the version is this catalogue's, nothing drifts, nothing deadlocked.
    static func expectSettled(_ connection: Connection, _ catalogue: RoleCatalogue, deadlocksBefore: Int, sourceLocation: SourceLocation = #_sourceLocation) throws {
        #expect(try RoleSynchronizer.storedVersion(connection)?.version == catalogue.version, sourceLocation: sourceLocation)
        let drift = try RoleSynchronizer(catalogue: catalogue).drift(connection)
        #expect(drift.projectIDs == [] && drift.orphanedLinks == 0 && !drift.permissionsMissing, "\(drift)", sourceLocation: sourceLocation)
        #expect(try deadlocks(connection) == deadlocksBefore, sourceLocation: sourceLocation)
        let all = try connection.query("SELECT id, name FROM main_project").rows.map { (Int64($0["id"]!)!, $0["name"]!) }
        let grants = try linkedGrants(connection)
        #expect(grants.group == Base.expected(all, catalogue).group, sourceLocation: sourceLocation)
        #expect(grants.object == Base.expected(all, catalogue).object, sourceLocation: sourceLocation)
    }

    static let pauseKey = 4242

    /// ``RoleSyncTests/grants(_:)`` of linked groups only: a group unlinked by hand stays the app's, with its grants.
    static func linkedGrants(_ connection: Connection) throws -> (group: Set<String>, object: Set<String>) {
        let group = try connection.query("""
            SELECT g.name || ':' || p.codename AS k FROM auth_group_permissions x JOIN migrator.project_role_group l ON l.group_id = x.group_id
            JOIN auth_group g ON g.id = x.group_id JOIN auth_permission p ON p.id = x.permission_id
            """).rows.compactMap { $0["k"] }
        let object = try connection.query("""
            SELECT g.name || ':' || p.codename || '@' || x.object_pk AS k FROM guardian_groupobjectpermission x
            JOIN migrator.project_role_group l ON l.group_id = x.group_id
            JOIN auth_group g ON g.id = x.group_id JOIN auth_permission p ON p.id = x.permission_id
            """).rows.compactMap { $0["k"] }
        return (Set(group), Set(object))
    }

    /// The pause at `phase`, armed (its trigger made, the advisory lock held): before the app opens a transaction, since
    /// CREATE TRIGGER waits for every transaction that wrote to the table.
    static func armPause(_ control: Connection, at phase: Phase) throws {
        try pauseTrigger(control, key: pauseKey, table: phase.table, events: phase.events)
        try control.query("SELECT pg_advisory_lock($1::bigint)", [pauseKey])
    }

    /// Starts a sync paused at `phase` (armed already with `armed`); returns once it waits there.
    static func pausedSync(
        _ database: TestDatabase, _ control: Connection, _ catalogue: RoleCatalogue, force: Bool, at phase: Phase, armed: Bool = false
    ) async throws -> Background<RoleSyncReport> {
        if !armed { try armPause(control, at: phase) }
        let sync = Background(database.url, applicationName: "sync-under-test") { connection in
            try connection.query("SELECT set_config('migrator_test.pause_\(pauseKey)', 'on', false)")
            return try RoleSynchronizer(catalogue: catalogue).sync(connection, options: .init(force: force), logger: Base.logger)
        }
        try await until("the sync is paused") { try sync.isFinished || state(control, "sync-under-test") == .paused }
        #expect(!sync.isFinished, "the sync did not reach \(phase)")
        return sync
    }

    static func release(_ control: Connection) throws {
        try control.query("SELECT pg_advisory_unlock($1::bigint)", [pauseKey])
    }

    static let cases: [(Phase, Bool)] = Phase.allCases.flatMap { [($0, false), ($0, true)] }

    @Test("a project deleted while the sync is paused in each statement, full and incremental: no error, its groups gone, the version recorded, no drift, no deadlock", arguments: cases)
    func projectDeletedDuringPhase(phase: Phase, incremental: Bool) async throws {
        try await TestDatabase.with("deleted\(phase)\(incremental)") { database in
            let (control, ids) = try Self.prepared(database, incremental: incremental)
            let x = ids[2]
            let catalogue = incremental ? Self.changed : .reference
            let deadlocks = try Self.deadlocks(control)
            let sync = try await Self.pausedSync(database, control, catalogue, force: !incremental, at: phase)
            // The app deletes X. If the paused statement has locked X already, the delete waits for the sync's commit;
            // otherwise it commits now and the sync's later statements skip X.
            let app = Background(database.url, applicationName: "app-under-test") { connection in
                try connection.query("DELETE FROM main_project WHERE id = $1", [x]).affectedRows
            }
            _ = try await Self.finishedOrWaiting(control, app, "app-under-test")
            try Self.release(control)
            let report = try await sync.wait()
            #expect(try await app.wait() == 1)
            #expect(report.recordedVersion)
            #expect(report.mode == (incremental ? .incremental : .full))
            #expect(report.lockedProjects == [])
            #expect(try Self.groupsOf(control, x) == 0)
            try Self.expectSettled(control, catalogue, deadlocksBefore: deadlocks)
        }
    }

    @Test("a project whose delete is in progress (uncommitted) when the sync starts is skipped in every statement without waiting; the delete commits while the sync is paused in each statement", arguments: cases)
    func deleteInProgress(phase: Phase, incremental: Bool) async throws {
        try await TestDatabase.with("inprogress\(phase)\(incremental)") { database in
            let (control, ids) = try Self.prepared(database, incremental: incremental)
            let x = ids[2]
            let catalogue = incremental ? Self.changed : .reference
            let deadlocks = try Self.deadlocks(control)
            try Self.armPause(control, at: phase)
            let app = try database.connect()
            try app.query("BEGIN")
            #expect(try app.query("DELETE FROM main_project WHERE id = $1", [x]).affectedRows == 1)
            // Every statement sees X (the delete is not committed) and reads its groups; none may write for them.
            let sync = try await Self.pausedSync(database, control, catalogue, force: !incremental, at: phase, armed: true)
            try app.query("COMMIT")
            try Self.release(control)
            let report = try await sync.wait()
            #expect(report.recordedVersion)
            #expect(report.lockedProjects == [])
            #expect(try Self.groupsOf(control, x) == 0)
            try Self.expectSettled(control, catalogue, deadlocksBefore: deadlocks)
        }
    }

    @Test("a delete that is rolled back after the sync skipped its project: that project is reported, the version recorded, drift names it and a sync of it brings it in step")
    func deleteRolledBack() async throws {
        try await TestDatabase.with { database in
            let (control, ids) = try Self.prepared(database)
            let x = ids[2]
            let app = try database.connect()
            try app.query("BEGIN")
            try app.query("DELETE FROM main_project WHERE id = $1", [x])
            // The sync never waits for the delete's locks; it ends while the delete is still open: X exists at the
            // sync's commit, and is reported.
            let report = try Base.sync(control, .reference, .init(force: true))
            try app.query("ROLLBACK")
            #expect(report.recordedVersion)
            #expect(report.lockedProjects == [x])
            #expect(try RoleSynchronizer(catalogue: .reference).drift(control).projectIDs == [x])
            try Base.sync(control, .reference, .init(projectIDs: [x]))
            try Self.expectSettled(control, .reference, deadlocksBefore: try Self.deadlocks(control))
        }
    }

    /// While the sync is paused: the app inserts a project ('inserted meanwhile') and renames `project` ('renamed
    /// meanwhile'), neither waiting; then the sync is released. Answers the new project's id and the sync's report.
    static func insertAndRename(
        _ database: TestDatabase, _ control: Connection, renaming project: Int64, thenRelease sync: Background<RoleSyncReport>
    ) async throws -> (Int64, RoleSyncReport) {
        let app = Background(database.url, applicationName: "app-under-test") { connection in
            let new = try connection.query("INSERT INTO main_project (name) VALUES ('inserted meanwhile') RETURNING id").rows[0].int("id")!
            try connection.query("UPDATE main_project SET name = 'renamed meanwhile' WHERE id = $1", [project])
            return Int64(new)
        }
        #expect(try await !finishedOrWaiting(control, app, "app-under-test"))
        let new = try await app.wait()
        try release(control)
        return (new, try await sync.wait())
    }

    @Test("a project inserted and one renamed while the sync is paused: the insert is synced in the same transaction (the catch-up pass), the rename by the next sync, nothing waits")
    func insertedAndRenamed() async throws {
        try await TestDatabase.with { database in
            let (control, ids) = try Self.prepared(database)
            let deadlocks = try Self.deadlocks(control)
            let sync = try await Self.pausedSync(database, control, .reference, force: true, at: .groupPermissions)
            // Neither waits, though the paused statement holds FOR KEY SHARE on p4: that conflicts with neither an
            // insert nor an update of a non-key column.
            let p4 = ids[3]
            let (new, report) = try await Self.insertAndRename(database, control, renaming: p4, thenRelease: sync)
            #expect(report.recordedVersion)
            // The insert came after the first pass read the projects: the catch-up pass gave it its groups. The rename
            // came before the rename statement, which follows it.
            #expect(try Self.groupsOf(control, new) == 10)
            #expect(try Base.count(control, "SELECT count(*) AS n FROM auth_group WHERE name LIKE '\(p4)\\_renamed meanwhile\\_%'") == 5)
            try Self.expectSettled(control, .reference, deadlocksBefore: deadlocks)
        }
    }

    @Test("an incremental sync that found every project linked at its start (adoption and creation skipped): a project inserted and one renamed while it is paused in the group permissions get their groups (the catch-up pass) and their new names in the same transaction, nothing waits")
    func insertedAndRenamedDuringIncremental() async throws {
        try await TestDatabase.with { database in
            let control = try Base.migrated(database)
            let ids = try Base.addProjects(control, ["p1", "p2", "p3"])
            try Base.sync(control)
            let deadlocks = try Self.deadlocks(control)
            let sync = try await Self.pausedSync(database, control, Self.changed, force: false, at: .groupPermissions)
            let p2 = ids[1]
            let (new, report) = try await Self.insertAndRename(database, control, renaming: p2, thenRelease: sync)
            #expect(report.mode == .incremental)
            #expect(report.recordedVersion)
            #expect(!report.phases.contains { $0.name == "adopt groups" }, "\(report.phases.map(\.name))")
            #expect(try Self.groupsOf(control, new) == 10)
            #expect(report.totals.groupsCreated == 5 && report.totals.groupsRenamed == 5)
            #expect(try control.query("SELECT count(*) AS n FROM auth_group WHERE name LIKE $1::text || '\\_renamed meanwhile\\_%'", [String(p2)]).first?.int("n") == 5)
            try Self.expectSettled(control, Self.changed, deadlocksBefore: deadlocks)
        }
    }

    @Test("an incremental sync with nothing to rename, a retired role's groups still linked: a project inserted while it is paused in the group permissions gets its groups in the same transaction (the catch-up pass), nothing waits")
    func insertedDuringIncrementalWithRetiredRole() async throws {
        try await TestDatabase.with { database in
            let control = try Base.migrated(database)
            try Base.addProjects(control, ["p1", "p2", "p3", "p4"])
            try Base.sync(control)
            #expect(try Base.sync(control, try Base.withoutIdentifier(plus: false)).retiredRoles == ["Identifier": 4])
            let plus = try Base.withoutIdentifier(plus: true)
            let deadlocks = try Self.deadlocks(control)
            let sync = try await Self.pausedSync(database, control, plus, force: false, at: .groupPermissions)
            // After the insert: 5 projects x 4 roles = 20 pairs, 16 links of the catalogue's roles and 4 of Identifier,
            // which must not make up for the new project's missing ones.
            let app = Background(database.url, applicationName: "app-under-test") { connection in
                Int64(try connection.query("INSERT INTO main_project (name) VALUES ('inserted meanwhile') RETURNING id").rows[0].int("id")!)
            }
            #expect(try await !Self.finishedOrWaiting(control, app, "app-under-test"))
            let new = try await app.wait()
            try Self.release(control)
            let report = try await sync.wait()
            #expect(report.mode == .incremental)
            #expect(report.recordedVersion)
            #expect(report.totals.groupsCreated == 4 && report.totals.groupsRenamed == 0, "\(report.totals)")
            #expect(try Self.groupsOf(control, new) == 8)
            try Self.expectSettled(control, plus, deadlocksBefore: deadlocks)
        }
    }

    @Test("a membership added to a group the sync renames: before the rename statement it does not wait at all; after it, it waits for the sync's commit only")
    func membershipDuringRename() async throws {
        try await TestDatabase.with { database in
            let (control, ids) = try Self.prepared(database)
            let x = ids[2]
            let deadlocks = try Self.deadlocks(control)
            try control.query("INSERT INTO users_user (username) VALUES ('ada'), ('bob')")
            let group: Int = try #require(try control.query(
                "SELECT group_id FROM migrator.project_role_group WHERE project_id = $1 AND role = 'ProjectManager'", [x]
            ).first?.decode("group_id"))
            // A second pause in the catch-up pass, after the rename: a project inserted meanwhile gets its groups there.
            try Self.pauseTrigger(control, key: 4343, table: "auth_group", events: "INSERT", when: "NEW.name LIKE '%\\_late\\_%'")
            try control.query("SELECT pg_advisory_lock(4343)")
            try Self.pauseTrigger(control, key: Self.pauseKey, table: Phase.objectPermissions.table, events: Phase.objectPermissions.events)
            try control.query("SELECT pg_advisory_lock($1::bigint)", [Self.pauseKey])
            let sync = Background(database.url, applicationName: "sync-under-test") { connection in
                try connection.query("SELECT set_config('migrator_test.pause_\(Self.pauseKey)', 'on', false)")
                try connection.query("SELECT set_config('migrator_test.pause_4343', 'on', false)")
                return try RoleSynchronizer(catalogue: .reference).sync(connection, options: .init(force: true), logger: Base.logger)
            }
            try await Self.until("paused before the rename") { try Self.state(control, "sync-under-test") == .paused }
            let before = Background(database.url, applicationName: "member-before-rename") { connection in
                try connection.query(
                    "INSERT INTO users_user_groups (user_id, group_id) SELECT id, $1::integer FROM users_user WHERE username = 'ada'", [group]
                ).affectedRows
            }
            #expect(try await !Self.finishedOrWaiting(control, before, "member-before-rename"))
            #expect(try await before.wait() == 1)
            // A project the first pass did not see: the catch-up pass, after the rename, creates its groups and
            // pauses there.
            try Base.addProjects(control, ["late"])
            try Self.release(control)
            try await Self.until("paused after the rename") { try Self.state(control, "sync-under-test") == .paused && Self.secondPause(control) }
            let after = Background(database.url, applicationName: "member-after-rename") { connection in
                try connection.query(
                    "INSERT INTO users_user_groups (user_id, group_id) SELECT id, $1::integer FROM users_user WHERE username = 'bob'", [group]
                ).affectedRows
            }
            #expect(try await Self.finishedOrWaiting(control, after, "member-after-rename"))
            #expect(try Self.state(control, "sync-under-test") == .paused)
            try control.query("SELECT pg_advisory_unlock(4343)")
            let report = try await sync.wait()
            #expect(try await after.wait() == 1)
            #expect(report.totals.groupsRenamed == 9)  // X and p1, but X's BasicMember group, which is created anew
            #expect(try Base.count(control, "SELECT count(*) AS n FROM users_user_groups WHERE group_id = \(group)") == 2)
            try Self.expectSettled(control, .reference, deadlocksBefore: deadlocks)
        }
    }

    /// The sync waits on the second pause (key 4343), not the first.
    static func secondPause(_ control: Connection) throws -> Bool {
        try Base.count(control, """
            SELECT count(*) AS n FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
            WHERE a.application_name = 'sync-under-test' AND a.datname = current_database() AND l.locktype = 'advisory' AND NOT l.granted AND l.objid = 4343
            """) == 1
    }

    @Test("a project deleted while an incremental sync removes permissions and renames groups: both succeed, no deadlock", arguments: [Phase.groupPermissions, .objectPermissions, .rename])
    func deleteDuringRemoveAndRename(phase: Phase) async throws {
        try await TestDatabase.with("removerename\(phase)") { database in
            let connection = try Base.migrated(database)
            let ids = try Base.addProjects(connection, ["a", "b", "c"])
            try Base.sync(connection)
            try connection.query("UPDATE main_project SET name = name || '2'")
            let deadlocks = try Self.deadlocks(connection)
            let sync = try await Self.pausedSync(database, connection, Self.changed, force: false, at: phase)
            let id = ids[0]
            let app = Background(database.url, applicationName: "app-under-test") { connection in
                try connection.query("DELETE FROM main_project WHERE id = $1", [id]).affectedRows
            }
            // The group permissions statement locked every project it writes for (all three): the delete waits for
            // the sync's commit, holding nothing the sync needs (its trigger has not run yet).
            #expect(try await Self.finishedOrWaiting(connection, app, "app-under-test"))
            try Self.release(connection)
            #expect(try await sync.wait().recordedVersion)
            #expect(try await app.wait() == 1)
            #expect(try Self.groupsOf(connection, ids[0]) == 0)
            #expect(try Self.deadlocks(connection) == deadlocks)
            try Self.expectSettled(connection, Self.changed, deadlocksBefore: deadlocks)
        }
    }

    @Test("the app creates a group with the name the rename gives while the rename statement runs: the rename fails on the unique name (SQLSTATE 23505), is rolled back to its savepoint and run again; that group keeps its old name and is reported, the sync commits, no deadlock; freeing the name fixes it")
    func nameTakenDuringRename() async throws {
        try await TestDatabase.with { database in
            let control = try Base.migrated(database)
            let ids = try Base.addProjects(control, ["a", "b"])
            try Base.sync(control)
            let a = ids[0]
            try control.query("UPDATE main_project SET name = 'a2' WHERE id = $1", [a])
            let wanted = "\(a)_a2_Researcher"
            let deadlocks = try Self.deadlocks(control)
            // The pause is on the row of the one group whose new name the app will take, before that name is written:
            // the rename statement's snapshot was taken before the app's group existed.
            try Self.pauseTrigger(control, key: Self.pauseKey, table: "auth_group", events: "UPDATE", when: "NEW.name = '\(wanted)'")
            try control.query("SELECT pg_advisory_lock($1::bigint)", [Self.pauseKey])
            let sync = try await Self.pausedSync(database, control, .reference, force: true, at: .rename, armed: true)
            let app = Background(database.url, applicationName: "app-under-test") { connection in
                Int64(try connection.query("INSERT INTO auth_group (name) VALUES ($1) RETURNING id", [wanted]).rows[0].int("id")!)
            }
            // The app's INSERT does not wait: the name is not in the index yet.
            #expect(try await !Self.finishedOrWaiting(control, app, "app-under-test"))
            let appGroup = try await app.wait()
            try Self.release(control)
            let report = try await sync.wait()

            // The first rename hit the app's committed name; the second, with a new snapshot, left that group alone.
            #expect(report.phases.filter { $0.name == "roll back to savepoint" }.count == 1, "\(report.phases.map(\.name))")
            #expect(report.recordedVersion)
            #expect(report.blockedGroups == [.init(projectID: a, role: "Researcher", currentName: "\(a)_a_Researcher", wantedName: wanted)])
            #expect(try Base.count(control, "SELECT count(*) AS n FROM auth_group WHERE id = \(appGroup) AND name = '\(wanted)'") == 1, "the app's group is untouched")
            #expect(try Base.count(control, "SELECT count(*) AS n FROM migrator.project_role_group WHERE group_id = \(appGroup)") == 0)
            #expect(try Base.count(control, """
                SELECT count(*) AS n FROM auth_group g JOIN migrator.project_role_group l ON l.group_id = g.id
                WHERE l.project_id = \(a) AND g.name LIKE '\(a)\\_a2\\_%'
                """) == 4)
            #expect(try Self.deadlocks(control) == deadlocks)
            // As for a name taken before the sync (README: "a group name another group has"): no drift is reported for
            // it, and once the app's group goes, the next sync renames ours.
            #expect(try RoleSynchronizer(catalogue: .reference).drift(control).projectIDs == [])
            try control.query("DELETE FROM auth_group WHERE id = $1", [appGroup])
            try Base.sync(control, .reference, .init(force: true))
            try Self.expectSettled(control, .reference, deadlocksBefore: deadlocks)
        }
    }

    /// The first row a sync will insert for one of p4's groups (not created by the sync, so written without ON CONFLICT
    /// on its first try) into `table`: the group and permission ids, found from the names the catalogue gives p4's
    /// groups and the rows they have now.
    static func firstMissingRow(_ connection: Connection, _ catalogue: RoleCatalogue, project: Int64, table: Phase) throws -> (group: Int64, permission: Int64)? {
        for role in catalogue.roles {
            for codename in role.permissions {
                let condition = table == .objectPermissions ? "AND x.object_pk = $1::text" : ""
                let row = try connection.query("""
                    SELECT g.id AS g, ap.id AS p, EXISTS (
                        SELECT 1 FROM \(table.table) x WHERE x.group_id = g.id AND x.permission_id = ap.id \(condition)) AS present
                    FROM auth_group g, auth_permission ap JOIN django_content_type ct ON ct.id = ap.content_type_id
                    WHERE g.name = $1::text || '_p4_' || $2 AND ap.codename = $3 AND ct.app_label = 'main' AND ct.model = 'project'
                    """, [project, role.name, codename]).first
                if let row, row["present"] == "f", let group = row.int("g"), let permission = row.int("p") {
                    return (Int64(group), Int64(permission))
                }
            }
        }
        return nil
    }

    @Test("the app grants a row the sync is about to write, while the sync is paused in that permission statement (full and incremental): the statement's first try, without ON CONFLICT, fails on the unique key (SQLSTATE 23505) in its savepoint and runs again with ON CONFLICT DO NOTHING; the app's row stays as it wrote it, the report counts only the sync's rows, the sync commits, no drift, no deadlock", arguments: [
        (Phase.groupPermissions, false), (.groupPermissions, true), (.objectPermissions, false), (.objectPermissions, true),
    ])
    func appGrantsTheSameRow(phase: Phase, incremental: Bool) async throws {
        try await TestDatabase.with("samerow\(phase)\(incremental)") { database in
            let (control, ids) = try Self.prepared(database, incremental: incremental)
            let p4 = ids[3]
            let catalogue = incremental ? Self.changed : .reference
            let deadlocks = try Self.deadlocks(control)
            let missing = try #require(try Self.firstMissingRow(control, catalogue, project: p4, table: phase))
            let rowsBefore = try Base.count(control, "SELECT count(*) AS n FROM \(phase.table)")
            let sync = try await Self.pausedSync(database, control, catalogue, force: !incremental, at: phase)
            // The sync's snapshot for this statement is older than the app's row, which the app commits before the
            // sync goes on.
            let app = Background(database.url, applicationName: "app-under-test") { connection in
                let result = phase == .objectPermissions
                    ? try connection.query("""
                        INSERT INTO guardian_groupobjectpermission (object_pk, content_type_id, group_id, permission_id)
                        SELECT $1::text, content_type_id, $2, id FROM auth_permission WHERE id = $3 RETURNING id
                        """, [p4, missing.group, missing.permission])
                    : try connection.query(
                        "INSERT INTO auth_group_permissions (group_id, permission_id) VALUES ($1, $2) RETURNING id",
                        [missing.group, missing.permission]
                    )
                return Int64(try result.rows[0].int("id")!)
            }
            #expect(try await !Self.finishedOrWaiting(control, app, "app-under-test"), "the app's insert waits for nothing")
            let appRow = try await app.wait()
            try Self.release(control)
            let report = try await sync.wait()

            #expect(report.phases.filter { $0.name == "roll back to savepoint" }.count == 1, "\(report.phases.map(\.name))")
            #expect(report.recordedVersion)
            #expect(report.mode == (incremental ? .incremental : .full))
            #expect(try Base.count(control, "SELECT count(*) AS n FROM \(phase.table) WHERE id = \(appRow)") == 1, "the app's row is kept")
            let changes = report.totals
            let (added, removed) = phase == .objectPermissions
                ? (changes.objectPermissionsAdded, changes.objectPermissionsRemoved)
                : (changes.groupPermissionsAdded, changes.groupPermissionsRemoved)
            #expect(added > 0)
            let rowsAfter = try Base.count(control, "SELECT count(*) AS n FROM \(phase.table)")
            #expect(rowsAfter - rowsBefore == added - removed + 1, "the app's row is not counted as the sync's")
            try Self.expectSettled(control, catalogue, deadlocksBefore: deadlocks)
        }
    }

    /// Django deletes a group by first reading and deleting what references it, then the group; its foreign keys are
    /// checked at COMMIT. When a full sync has locked the group and written a grant for it (the group permissions
    /// statement, and every statement after it), the app's DELETE of the group waits for the sync's commit. Its own
    /// deletes never saw the sync's new grant, so before role-sync step 3 the app's COMMIT failed with 23503; now
    /// migrator's `group_deleted` trigger on auth_group (BEFORE DELETE, after the row lock, with a new snapshot) deletes
    /// that grant with the group, and the app's transaction commits in every phase. A group deleted before the sync's
    /// catch-up pass is made anew by it; one deleted after the sync committed is drift until the next sync.
    @Test("the app deletes one of our groups (Django's order: memberships, grants, then the group) while the sync is paused in each statement: the sync never fails, no deadlock; the app's transaction commits, also after a full sync wrote a grant for that group (migrator's trigger on auth_group deletes it with the group); the sync's catch-up pass, or the next sync, gives the project a new group", arguments: cases)
    func groupDeletedDuringPhase(phase: Phase, incremental: Bool) async throws {
        try await TestDatabase.with("groupdeleted\(phase)\(incremental)") { database in
            let (control, ids) = try Self.prepared(database, incremental: incremental)
            let x = ids[2]
            let catalogue = incremental ? Self.changed : .reference
            let group: Int = try #require(try control.query(
                "SELECT group_id FROM migrator.project_role_group WHERE project_id = $1 AND role = 'Researcher'", [x]
            ).first?.decode("group_id"))
            // A full sync writes for that group in both permission statements: a grant of each table missing.
            try control.execute(script: """
                DELETE FROM auth_group_permissions WHERE id = (SELECT min(id) FROM auth_group_permissions WHERE group_id = \(group));
                DELETE FROM guardian_groupobjectpermission WHERE id = (SELECT min(id) FROM guardian_groupobjectpermission WHERE group_id = \(group));
                INSERT INTO users_user (username) VALUES ('ada');
                INSERT INTO users_user_groups (user_id, group_id) SELECT id, \(group) FROM users_user;
                """)
            let deadlocks = try Self.deadlocks(control)
            let djangoDelete = """
                BEGIN;
                DELETE FROM users_user_groups WHERE group_id = \(group);
                DELETE FROM auth_group_permissions WHERE group_id = \(group);
                DELETE FROM guardian_groupobjectpermission WHERE group_id = \(group);
                DELETE FROM auth_group WHERE id = \(group);
                COMMIT;
                """
            let sync = try await Self.pausedSync(database, control, catalogue, force: !incremental, at: phase)
            let app = Background(database.url, applicationName: "app-under-test") { connection in
                do {
                    try connection.execute(script: djangoDelete)
                    return "committed"
                } catch {
                    _ = try? connection.query("ROLLBACK")
                    return (error as? PostgresError)?.sqlState ?? "\(error)"
                }
            }
            _ = try await Self.finishedOrWaiting(control, app, "app-under-test")
            try Self.release(control)
            let report = try await sync.wait()
            #expect(report.recordedVersion)
            // The phases in which a full sync has locked the group and written for it: the app's DELETE waited for the
            // sync's commit, so the group goes after the sync's catch-up pass.
            let deletedAfterTheSync = !incremental && [.groupPermissions, .objectPermissions, .rename].contains(phase)
            #expect(try await app.wait() == "committed")
            #expect(try Self.deadlocks(control) == deadlocks)
            #expect(try Base.count(control, "SELECT count(*) AS n FROM auth_group WHERE id = \(group)") == 0)
            #expect(try Base.count(control, "SELECT count(*) AS n FROM auth_group_permissions WHERE group_id = \(group)") == 0)
            #expect(try Base.count(control, "SELECT count(*) AS n FROM guardian_groupobjectpermission WHERE group_id = \(group)") == 0)
            // A group deleted before the sync's catch-up pass is made anew by it: the project is in step at once. One
            // deleted after the sync committed is drift, and the next sync makes it.
            #expect(try RoleSynchronizer(catalogue: catalogue).drift(control).projectIDs == (deletedAfterTheSync ? [x] : []))
            try Base.sync(control, catalogue, .init(force: true))
            try Self.expectSettled(control, catalogue, deadlocksBefore: deadlocks)
        }
    }

    @Test("a guardian row of our group on another content type's object with the project's object_pk: drift reports it, and the sync replaces it", arguments: [false, true])
    func foreignContentTypeRow(perProject: Bool) async throws {
        try await TestDatabase.with { database in
            let connection = try Base.migrated(database)
            let ids = try Base.addProjects(connection, ["a", "b"])
            try Base.sync(connection)
            try connection.execute(script: """
                INSERT INTO django_content_type (app_label, model) VALUES ('other', 'thing');
                -- The row project a's BasicMember group should have for view_project, made on another content type's
                -- object with the same pk: guardian's unique key (group, permission, object_pk) lets only one exist.
                UPDATE guardian_groupobjectpermission x SET content_type_id = (SELECT id FROM django_content_type WHERE app_label = 'other')
                FROM migrator.project_role_group l, auth_permission p
                WHERE l.group_id = x.group_id AND l.project_id = \(ids[0]) AND l.role = 'BasicMember'
                  AND p.id = x.permission_id AND p.codename = 'view_project';
                """)
            let drift = try Base.expectDriftMatchesSync(connection, .reference, perProject: perProject, "a foreign content type's row")
            #expect(drift.projectIDs == [ids[0]])
            #expect(try Base.count(connection, """
                SELECT count(*) AS n FROM guardian_groupobjectpermission x JOIN django_content_type c ON c.id = x.content_type_id
                WHERE c.app_label = 'other'
                """) == 0)
            let grants = try Base.grants(connection)
            #expect(grants.object == Base.expected([(ids[0], "a"), (ids[1], "b")]).object)
        }
    }
}
