import Foundation
import MigratorTestSupport
import Postgres
import SystemSupport
import Testing

/// Issue 13, the deploy side: rolling deploys with replicas of two releases, a burst of projects while another runner
/// waits for the lock, and readiness while another runner holds it. The "old release" is the same binary given the
/// previous catalogue file (`--roles`), as a real old release would carry its own catalogue.
@Suite("running next to a live app: rolling deploys, bursts, the lock")
struct LiveAppTests {
    /// The old release's catalogue: one role, one permission (per project: 1 group, 1 + 1 permission rows).
    static let oldRoles = #"{"roles": [{"name": "Viewer", "permissions": ["view_project"]}]}"#
    /// The new release's: a permission more, a role more (per project: 2 groups, 3 + 3).
    static let newRoles = #"{"roles": [{"name": "Viewer", "permissions": ["view_project", "change_project"]}, {"name": "Editor", "permissions": ["change_project"]}]}"#
    static let oldRows = [1, 1, 1]
    static let newRows = [2, 3, 3]
    /// The old catalogue again, with the Editor groups the new one made (kept, without permissions).
    static let rolledBackRows = [2, 1, 1]

    /// The version history, oldest first.
    static func history(_ connection: Connection) throws -> [String] {
        try connection.query("SELECT version FROM migrator.role_version ORDER BY id").rows.compactMap { $0["version"] }
    }

    static func rows(_ connection: Connection, _ ids: [Int64]) throws -> [[Int]] {
        try ids.map { try connection.roleRows($0) }
    }

    @Test("old and new replicas restarting in every order: the newest catalogue is synced and kept; update-roles --force rolls back")
    func rollingDeploy() throws {
        try TestDatabase.with { db in
            let folder = try MigrationFolder.shipped()
            let old = try folder.write("old-roles.json", Self.oldRoles)
            let new = try folder.write("new-roles.json", Self.newRoles)
            let connection = try db.connect()

            // The old release is deployed and serving.
            #expect(try E2E.run(E2E.args("migrate", folder, "--roles", old), database: db).exitCode == 0)
            let first = try db.insertProject(connection, "before the deploy")
            var oldServe = try DaemonProcess(folder, database: db, ["--roles", old, "--reconcile-interval", "300ms"])
            #expect(oldServe.waitUntilReady(), oldServe.transcript)
            #expect(try DaemonProcess.wait(timeout: 5) { try connection.roleRows(first) == Self.oldRows }, oldServe.transcript)
            let oldVersion = try #require(try Self.history(connection).last)

            // 1. The new release's deploy step runs while the old one serves: the new catalogue, never synced, wins.
            let deploy = try E2E.run(E2E.args("migrate", folder, "--roles", new), database: db)
            #expect(deploy.exitCode == 0, deploy.transcript)
            let newVersion = try #require(try Self.history(connection).last)
            #expect(newVersion != oldVersion)
            #expect(try Self.history(connection) == [oldVersion, newVersion])
            #expect(try connection.roleRows(first) == Self.newRows)

            // The old daemon says so (log, /readyz note, metric), stays ready and out of the way.
            #expect(DaemonProcess.wait(timeout: 10) { (try? oldServe.get("/readyz").body.contains("superseded by \(newVersion.prefix(12))")) == true }, oldServe.transcript)
            #expect(try oldServe.get("/readyz").status == 200)
            #expect(try oldServe.metrics()["migrator_role_catalogue_superseded"] == 1)
            #expect(oldServe.stderr.contains("this daemon's role catalogue was superseded by a newer one; not syncing"), oldServe.transcript)

            // 2. The new release serves; a project made now gets the new catalogue's rows (the old daemon writes none).
            let newServe = try DaemonProcess(folder, database: db, ["--roles", new, "--reconcile-interval", "300ms"])
            #expect(newServe.waitUntilReady(), newServe.transcript)
            let second = try db.insertProject(connection, "during the rollout")
            #expect(try DaemonProcess.wait(timeout: 5) { try connection.roleRows(second) == Self.newRows }, newServe.transcript)

            // 3. The old replica restarts (its start-up migrate) while the new one serves: nothing flips.
            #expect(oldServe.stop().code == 0, oldServe.transcript)
            oldServe = try DaemonProcess(folder, database: db, ["--roles", old, "--reconcile-interval", "300ms"])
            #expect(oldServe.waitUntilReady(), oldServe.transcript)
            #expect(oldServe.stderr.contains("skipped: this role catalogue (\(oldVersion.prefix(12))) was superseded by \(newVersion.prefix(12))"), oldServe.transcript)
            #expect(try oldServe.get("/readyz").body.contains("superseded by \(newVersion.prefix(12))"))

            // 4. The old release's deploy steps run again (a replica of the old release rescheduled): exit 0, say so.
            let oldMigrate = try E2E.run(E2E.args("migrate", folder, "--roles", old, "--json"), database: db)
            #expect(oldMigrate.exitCode == 0, oldMigrate.transcript)
            let json = try JSONSerialization.jsonObject(with: Data(oldMigrate.stdout.utf8)) as? [String: Any]
            let hook = (json?["hooks"] as? [[String: Any]])?.first
            let details = hook?["details"] as? [String: Any]
            #expect(details?["mode"] as? String == "superseded", oldMigrate.transcript)
            #expect(details?["supersededBy"] as? String == newVersion, oldMigrate.transcript)
            let forced = try E2E.run(E2E.args("migrate", folder, "--roles", old, "--force-roles"), database: db)
            #expect(forced.exitCode == 0 && forced.stdout.contains("skipped: this role catalogue"), "--force-roles is a full reconcile, not a rollback: \(forced.transcript)")
            let entry = try E2E.run(E2E.args("migrate", folder, "--roles", old, "--then-exec", "--", "sh", "-c", "exit 0"), database: db)
            #expect(entry.exitCode == 0, entry.transcript)

            // 5. The new replica restarts after all that: nothing to do, still current.
            #expect(newServe.stop().code == 0, newServe.transcript)
            let newAgain = try DaemonProcess(folder, database: db, ["--roles", new, "--reconcile-interval", "300ms"])
            #expect(newAgain.waitUntilReady(), newAgain.transcript)
            #expect(try newAgain.get("/readyz").body == "ready\n")
            #expect(newAgain.stderr.contains("role catalogue unchanged"), newAgain.transcript)

            // Through every restart the newest catalogue stayed: one row each in the history, the new rows kept.
            #expect(try Self.history(connection) == [oldVersion, newVersion])
            #expect(try Self.rows(connection, [first, second]) == [Self.newRows, Self.newRows])
            #expect(!oldServe.stderr.contains("synced projects"), "the old release never wrote a row: \(oldServe.transcript)")

            // 6. An intended rollback: update-roles --force with the old catalogue. Now the new one is superseded.
            let rollback = try E2E.run(E2E.args("update-roles", folder, "--roles", old, "--force"), database: db)
            #expect(rollback.exitCode == 0, rollback.transcript)
            #expect(try Self.history(connection) == [oldVersion, newVersion, oldVersion])
            #expect(try Self.rows(connection, [first, second]) == [Self.rolledBackRows, Self.rolledBackRows])
            #expect(DaemonProcess.wait(timeout: 10) { (try? newAgain.get("/readyz").body.contains("superseded by \(oldVersion.prefix(12))")) == true }, newAgain.transcript)
            #expect(DaemonProcess.wait(timeout: 10) { (try? oldServe.get("/readyz").body) == "ready\n" }, oldServe.transcript)
            let third = try db.insertProject(connection, "after the rollback")
            #expect(try DaemonProcess.wait(timeout: 5) { try connection.roleRows(third) == Self.oldRows }, oldServe.transcript)
            #expect(try Self.history(connection) == [oldVersion, newVersion, oldVersion])
            #expect(oldServe.stop().code == 0, oldServe.transcript)
            #expect(newAgain.stop().code == 0, newAgain.transcript)
        }
    }

    @Test("a new release's serve started first (no deploy step), then the old one restarts: the new catalogue stays")
    func newServeFirst() throws {
        try TestDatabase.with { db in
            let folder = try MigrationFolder.shipped()
            let old = try folder.write("old-roles.json", Self.oldRoles)
            let new = try folder.write("new-roles.json", Self.newRoles)
            let connection = try db.connect()
            #expect(try E2E.run(E2E.args("migrate", folder, "--roles", old), database: db).exitCode == 0)
            let project = try db.insertProject(connection, "p")
            // A sidecar of the new release (no migrate of its own): its catalogue was never synced, so it is newer.
            let newSidecar = try DaemonProcess(folder, database: db, ["--roles", new, "--no-migrate", "--reconcile-interval", "300ms"])
            #expect(newSidecar.waitUntilReady(), newSidecar.transcript)
            #expect(try DaemonProcess.wait(timeout: 10) { try connection.roleRows(project) == Self.newRows }, newSidecar.transcript)
            let versions = try Self.history(connection)
            #expect(versions.count == 2)
            // The old release's serve starts after it, with its start-up migrate, then restarts once more.
            for _ in 0..<2 {
                let oldServe = try DaemonProcess(folder, database: db, ["--roles", old, "--reconcile-interval", "300ms"])
                #expect(oldServe.waitUntilReady(), oldServe.transcript)
                #expect(try oldServe.get("/readyz").body.contains("superseded by \(versions[1].prefix(12))"))
                #expect(oldServe.stop().code == 0, oldServe.transcript)
            }
            #expect(try Self.history(connection) == versions)
            #expect(try connection.roleRows(project) == Self.newRows)
            #expect(newSidecar.stop().code == 0, newSidecar.transcript)
        }
    }

    /// The `daemon.projects` of every "synced projects" line, with its trigger.
    static func syncs(in log: String) -> [(trigger: String, projects: Int)] {
        log.split(separator: "\n").filter { $0.contains("synced projects") }.compactMap { line in
            func value(_ key: String) -> String? {
                guard let range = line.range(of: key + "=") else { return nil }
                return String(line[range.upperBound...].prefix { !$0.isWhitespace }).trimmingCharacters(in: CharacterSet(charactersIn: "\""))
            }
            guard let projects = value("daemon.projects").flatMap({ Int($0) }), let trigger = value("daemon.trigger") else { return nil }
            return (trigger, projects)
        }
    }

    @Test("a burst of 10,000 projects while another runner waits: bounded transactions, the runner gets the lock, all end in step")
    func burst() throws {
        try TestDatabase.with { db in
            let folder = try MigrationFolder.shipped()
            #expect(try E2E.run(E2E.args("migrate", folder), database: db).exitCode == 0)
            let connection = try db.connect()
            // Each sync transaction creates groups in one statement; this test-only trigger makes each take at least
            // 0.3 s, so the burst lasts long (40 chunks) whatever the machine's speed, and the runner surely arrives
            // in the middle of it. The time budget is out of the way here (SyncBudgetTests cover it): a loaded machine
            // must not shrink the chunks below 250 and stretch the burst.
            try connection.query("""
                CREATE FUNCTION slow_group_insert() RETURNS trigger LANGUAGE plpgsql AS $$
                BEGIN PERFORM pg_sleep(0.3); RETURN NULL; END $$
                """)
            try connection.query("CREATE TRIGGER slow_group_insert AFTER INSERT ON auth_group FOR EACH STATEMENT EXECUTE FUNCTION slow_group_insert()")
            let daemon = try DaemonProcess(folder, database: db, ["--sync-batch-size", "250", "--sync-time-budget", "1h", "--reconcile-interval", "10m"])
            #expect(daemon.waitUntilReady(), daemon.transcript)

            // Hold the lock while the burst arrives, so that it is all pending at once.
            let holder = try db.connect()
            try holder.query("SELECT pg_advisory_lock($1)", [E2E.lockKey])
            try connection.query("INSERT INTO main_project (name, description) SELECT 'burst ' || g, '' FROM generate_series(1, 10000) g")
            #expect(DaemonProcess.wait(timeout: 20) { daemon.stderr.contains("another runner holds the migration lock; the batch waits") }, daemon.transcript)
            try holder.query("SELECT pg_advisory_unlock($1)", [E2E.lockKey])
            #expect(DaemonProcess.wait(timeout: 20) { !Self.syncs(in: daemon.stderr).isEmpty }, daemon.transcript)

            // A deploy step arrives mid-burst and waits for the lock.
            let deploy = try E2E.run(E2E.args("migrate", folder, "--lock-timeout", "20s"), database: db, limit: 40)
            #expect(deploy.exitCode == 0, deploy.transcript)
            let syncedBeforeDeployEnded = Self.syncs(in: daemon.stderr).reduce(0) { $0 + $1.projects }
            #expect(syncedBeforeDeployEnded < 10_000, "the deploy got the lock in the middle of the burst, not after it")

            let linked = "SELECT count(DISTINCT project_id) FROM migrator.project_role_group"
            #expect(try DaemonProcess.wait(timeout: 180) { try connection.count(linked) == 10_000 }, daemon.transcript)
            #expect(try connection.count("SELECT count(*) FROM migrator.project_role_group") == 50_000)
            #expect(try DaemonProcess.wait(timeout: 10) { Self.syncs(in: daemon.stderr).reduce(0) { $0 + $1.projects } == 10_000 }, daemon.transcript)
            let syncs = Self.syncs(in: daemon.stderr)
            #expect(syncs.allSatisfy { $0.projects <= 250 }, "every sync transaction covers at most the batch size: \(syncs.map(\.projects))")
            #expect(syncs.count >= 40)
            #expect(daemon.stderr.contains("another runner waits for the migration lock; letting it go first"), daemon.transcript)
            #expect((try daemon.metrics()["migrator_lock_yields_total"] ?? 0) >= 1)
            #expect(try daemon.get("/readyz").status == 200)
            #expect(daemon.stop().code == 0, daemon.transcript)
        }
    }

    @Test("a reconcile's drifted projects are synced in bounded batches too")
    func driftInBatches() throws {
        try TestDatabase.with { db in
            let folder = try MigrationFolder.shipped()
            #expect(try E2E.run(E2E.args("migrate", folder), database: db).exitCode == 0)
            let connection = try db.connect()
            // No daemon runs: nothing is told about these (there is no insert trigger either; the reconcile on start
            // finds them before the first poll).
            try connection.query("INSERT INTO main_project (name, description) SELECT 'quiet ' || g, '' FROM generate_series(1, 1200) g")
            let daemon = try DaemonProcess(folder, database: db, ["--sync-batch-size", "500", "--reconcile-interval", "10m"])
            #expect(daemon.waitUntilReady(timeout: 60), daemon.transcript)
            #expect(try connection.count("SELECT count(DISTINCT project_id) FROM migrator.project_role_group") == 1200)
            let syncs = Self.syncs(in: daemon.stderr)
            // At most 500 per transaction; fewer when one took longer than the time budget (2 s) on a busy machine.
            #expect(syncs.map(\.trigger).allSatisfy { $0 == "reconcile" }, "\(syncs)")
            #expect(syncs.first?.projects == 500 && syncs.allSatisfy { $0.projects <= 500 }, "\(syncs)")
            #expect(syncs.reduce(0) { $0 + $1.projects } == 1200 && syncs.count >= 3, "\(syncs)")
            #expect(daemon.stop().code == 0, daemon.transcript)
        }
    }

    /// Two phases, each with one way in for the work, so which of the daemon's loops meets the held lock is never
    /// left to timing: first only the poll can find the new project (the reconcile is an hour away), then only a
    /// reconcile can find the project deleted behind migrator's back (the poll is an hour away).
    @Test("/readyz stays 200 while another session holds the lock longer than the daemon's lock wait")
    func readyWhileLockHeld() throws {
        try TestDatabase.with { db in
            let folder = try MigrationFolder.shipped()
            let connection = try db.connect()
            let holder = try db.connect()

            // A new project found by the poll (a batch) needs the lock.
            let polling = try DaemonProcess(folder, database: db, ["--reconcile-interval", "1h"])
            #expect(polling.waitUntilReady(), polling.transcript)
            let gone = try db.insertProject(connection, "deleted behind migrator's back")
            #expect(try DaemonProcess.wait(timeout: 5) { try connection.roleRows(gone) == DaemonTests.complete }, polling.transcript)
            try holder.query("SELECT pg_advisory_lock($1)", [E2E.lockKey])
            let project = try db.insertProject(connection, "while locked")
            #expect(DaemonProcess.wait(timeout: 20) { polling.stderr.contains("another runner holds the migration lock; the batch waits") }, polling.transcript)
            let batchAnswer = try polling.get("/readyz")
            #expect(batchAnswer.status == 200 && batchAnswer.body == "ready\n", "\(batchAnswer.body)")
            #expect(!polling.stderr.contains("raise --lock-timeout"), polling.transcript)
            #expect(try polling.metrics()["migrator_ready"] == 1)
            // Released: the daemon catches up.
            try holder.query("SELECT pg_advisory_unlock($1)", [E2E.lockKey])
            #expect(try DaemonProcess.wait(timeout: 10) { try connection.roleRows(project) == DaemonTests.complete }, polling.transcript)
            #expect(try polling.get("/readyz").status == 200)
            #expect(polling.stop().code == 0, polling.transcript)

            // The links of a project deleted without migrator's trigger: only a reconcile's full sync finds them.
            let reconciling = try DaemonProcess(folder, database: db, ["--reconcile-interval", "300ms", "--poll-interval", "1h"])
            #expect(reconciling.waitUntilReady(), reconciling.transcript)
            try holder.query("SELECT pg_advisory_lock($1)", [E2E.lockKey])
            try connection.query("SET session_replication_role = replica")
            try connection.query("DELETE FROM main_project WHERE id = $1", [gone])
            try connection.query("RESET session_replication_role")
            #expect(DaemonProcess.wait(timeout: 20) { reconciling.stderr.contains("another runner holds the migration lock; the reconcile waits") }, reconciling.transcript)
            let reconcileAnswer = try reconciling.get("/readyz")
            #expect(reconcileAnswer.status == 200 && reconcileAnswer.body == "ready\n", "\(reconcileAnswer.body)")
            #expect(!reconciling.stderr.contains("raise --lock-timeout"), reconciling.transcript)
            #expect(try reconciling.metrics()["migrator_ready"] == 1)
            try holder.query("SELECT pg_advisory_unlock($1)", [E2E.lockKey])
            #expect(try DaemonProcess.wait(timeout: 10) { try connection.count("SELECT count(*) FROM migrator.project_role_group WHERE project_id = $1", [gone]) == 0 }, reconciling.transcript)
            #expect(try reconciling.get("/readyz").status == 200)
            #expect(reconciling.stop().code == 0, reconciling.transcript)
        }
    }
}
