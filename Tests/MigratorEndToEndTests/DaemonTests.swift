import Foundation
import MigratorTestSupport
import Postgres
import RoleSync
import SystemSupport
import Synchronization
import Testing

/// `migrator serve`, started from the built binary against a real server. The reference catalogue gives every
/// project 5 groups, 82 group permissions and 82 object permissions.
@Suite("serve: the daemon")
struct DaemonTests {
    static let complete = [5, 82, 82]

    /// The latency is read from the daemon's log: from a moment just before the app's statement (the test's clock,
    /// the same machine's) to the timestamp of the daemon's "synced projects" line, written after its commit. The
    /// test waits for the event itself with a generous timeout, so its own polling adds nothing to the figure.
    @Test("a project inserted, renamed or deleted while the daemon runs is in step within 1 s")
    func notifiedProjects() throws {
        try TestDatabase.with { db in
            let daemon = try DaemonProcess(try MigrationFolder.shipped(), database: db)
            #expect(daemon.waitUntilReady(), daemon.transcript)
            let connection = try db.connect()
            let syncOK = #"migrator_role_syncs_total{trigger="notify",result="ok"}"#

            let hostile = #"O'Brien "%s" $1 \ ; DROP TABLE main_project; --"#
            let insertedAt = Date()
            let id = try db.insertProject(connection, hostile)
            #expect(try DaemonProcess.wait(timeout: 30) { try connection.roleRows(id) == Self.complete }, daemon.transcript)
            // The line is written just after the commit that the rows above show first.
            #expect(DaemonProcess.wait(timeout: 30) { daemon.logLines("synced projects").contains { $0.value("daemon.trigger") == "poll" } }, daemon.transcript)
            let created = try #require(daemon.logLines("synced projects").first { $0.value("daemon.trigger") == "poll" }, daemon.transcript)
            #expect(created.time.timeIntervalSince(insertedAt) < 1.0, "groups and permissions took \(created.time.timeIntervalSince(insertedAt)) s")
            let names = try connection.query("SELECT g.name FROM auth_group g JOIN migrator.project_role_group l ON l.group_id = g.id WHERE l.project_id = $1 ORDER BY 1", [id]).rows.compactMap { $0["name"] }
            #expect(names.count == 5 && names.allSatisfy { $0.hasPrefix("\(id)_\(hostile)_") }, "\(names)")

            let renamedAt = Date()
            try connection.query("UPDATE main_project SET name = 'renamed' WHERE id = $1", [id])
            #expect(try DaemonProcess.wait(timeout: 30) {
                try connection.count("SELECT count(*) FROM auth_group g JOIN migrator.project_role_group l ON l.group_id = g.id WHERE l.project_id = $1 AND g.name LIKE $2", [id, "\(id)_renamed_%"]) == 5
            }, daemon.transcript)
            #expect(DaemonProcess.wait(timeout: 30) { daemon.logLines("synced projects").contains { $0.value("daemon.trigger") == "notify" } }, daemon.transcript)
            let renamed = try #require(daemon.logLines("synced projects").first { $0.value("daemon.trigger") == "notify" }, daemon.transcript)
            #expect(renamed.time.timeIntervalSince(renamedAt) < 1.0, "rename took \(renamed.time.timeIntervalSince(renamedAt)) s")
            #expect(try connection.roleRows(id) == Self.complete)
            #expect(DaemonProcess.wait(timeout: 30) { ((try? daemon.metrics())?[syncOK]) == 1 }, daemon.transcript)

            // The delete: migrator's trigger removes the groups in the app's own transaction (README "Running next to a
            // live app"), and sends the id; the daemon receives it and syncs that project, which no longer exists,
            // without an error. (That the daemon itself removes what a delete leaves behind is "a project deleted
            // without migrator's delete trigger".)
            try connection.query("DELETE FROM main_project WHERE id = $1", [id])
            #expect(try connection.count("SELECT count(*) FROM auth_group WHERE name LIKE $1", ["\(id)\\_%"]) == 0)
            #expect(try connection.count("SELECT count(*) FROM migrator.project_role_group") == 0)
            // Two notifications, the rename's and the delete's (an INSERT sends none: the poll found the project), and
            // two notified syncs, both ok.
            #expect(DaemonProcess.wait(timeout: 30) { ((try? daemon.metrics())?[syncOK]) == 2 }, daemon.transcript)
            let metrics = try daemon.metrics()
            #expect(metrics["migrator_notifications_received_total"] == 2)
            #expect(metrics[#"migrator_role_syncs_total{trigger="notify",result="error"}"#] == nil, daemon.transcript)
            #expect(DaemonProcess.wait(timeout: 30) { daemon.logLines("synced projects").count == 3 }, daemon.transcript)
            #expect(daemon.logLines("synced projects").filter { $0.value("daemon.trigger") == "notify" }.map { $0.value("daemon.projects") } == ["1", "1"])
            #expect((try? daemon.get("/readyz").status) == 200)
            #expect(daemon.stop().code == 0, daemon.transcript)
        }
    }

    @Test("a project deleted without migrator's delete trigger while the daemon runs: the reconcile puts the trigger back and removes the project's groups with every row that references them")
    func deletedWithoutTrigger() throws {
        try TestDatabase.with { db in
            let daemon = try DaemonProcess(try MigrationFolder.shipped(), database: db, ["--reconcile-interval", "300ms"])
            #expect(daemon.waitUntilReady(), daemon.transcript)
            let connection = try db.connect()
            let kept = try db.insertProject(connection, "kept")
            let gone = try db.insertProject(connection, "gone")
            #expect(try DaemonProcess.wait(timeout: 30) { try [kept, gone].allSatisfy { try connection.roleRows($0) == Self.complete } }, daemon.transcript)
            let groups = try connection.query("SELECT group_id FROM migrator.project_role_group WHERE project_id = $1", [gone]).rows.compactMap { $0["group_id"] }
            #expect(groups.count == 5)
            let groupList = "{" + groups.joined(separator: ",") + "}"
            try connection.query("INSERT INTO users_user (username) VALUES ('ada')")
            try connection.query("INSERT INTO users_user_groups (user_id, group_id) SELECT u.id, $1::int FROM users_user u", [groups[0]])

            // The trigger is dropped and the project deleted in one transaction, so no reconcile can put the trigger
            // back in between: nothing of the database removes the groups; only the daemon can.
            try connection.execute(script: """
                BEGIN;
                DROP TRIGGER migrator_project_delete_groups ON main_project;
                DELETE FROM main_project WHERE id = \(gone);
                COMMIT;
                """)
            let left = "SELECT (SELECT count(*) FROM auth_group WHERE id = ANY ($1::int[])) + (SELECT count(*) FROM auth_group_permissions WHERE group_id = ANY ($1::int[])) + (SELECT count(*) FROM guardian_groupobjectpermission WHERE group_id = ANY ($1::int[])) + (SELECT count(*) FROM users_user_groups WHERE group_id = ANY ($1::int[])) + (SELECT count(*) FROM migrator.project_role_group WHERE group_id = ANY ($1::int[]))"
            #expect(try connection.count(left, [groupList]) > 0, "the groups were removed by the delete: the test proves nothing")

            #expect(try DaemonProcess.wait(timeout: 60) { try connection.count(left, [groupList]) == 0 }, daemon.transcript)
            #expect(daemon.stderr.contains("groups of deleted projects are still linked; running a full sync"), daemon.transcript)
            #expect(DaemonProcess.wait(timeout: 30) { ((try? daemon.metrics())?[#"migrator_role_syncs_total{trigger="reconcile",result="ok"}"#] ?? 0) >= 1 }, daemon.transcript)
            #expect(try connection.count("SELECT count(*) FROM pg_trigger WHERE tgrelid = 'main_project'::regclass AND tgname = 'migrator_project_delete_groups'") == 1)
            #expect(try connection.roleRows(kept) == Self.complete)
            #expect(try connection.count("SELECT count(*) FROM users_user") == 1, "the member stays; only the membership went")
            #expect((try? daemon.get("/readyz").status) == 200)
            #expect(daemon.stop().code == 0, daemon.transcript)
        }
    }

    @Test("projects inserted while no daemon ran are synced by the reconcile on start; a periodic reconcile catches a project below the poll's watermark and a damaged grant")
    func reconcile() throws {
        try TestDatabase.with { db in
            let folder = try MigrationFolder.shipped()
            #expect(try E2E.run(E2E.args("migrate", folder), database: db).exitCode == 0)
            let connection = try db.connect()
            let offline = try (1...3).map { try db.insertProject(connection, "offline \($0)") }
            #expect(try offline.map { try connection.roleRows($0) } == [[0, 0, 0], [0, 0, 0], [0, 0, 0]])

            let daemon = try DaemonProcess(folder, database: db, ["--reconcile-interval", "500ms", "--poll-interval", "1h"])
            #expect(try DaemonProcess.wait(timeout: 10) { try offline.allSatisfy { try connection.roleRows($0) == Self.complete } }, daemon.transcript)
            #expect(daemon.waitUntilReady(), daemon.transcript)
            let metrics = try daemon.metrics()
            #expect((metrics["migrator_reconcile_drifted_projects_total"] ?? 0) >= 3)
            #expect((metrics[#"migrator_role_syncs_total{trigger="reconcile",result="ok"}"#] ?? 0) >= 1)

            // A project the poll does not find (there is no insert trigger to switch off now): with --poll-interval 1h
            // the daemon polled once, at the start of its session; the next periodic reconcile finds it.
            let silent = try db.insertProject(connection, "silent")
            #expect(try DaemonProcess.wait(timeout: 5) { try connection.roleRows(silent) == Self.complete }, daemon.transcript)

            // A grant removed by hand is restored, and only that project is touched.
            try connection.query(
                "DELETE FROM guardian_groupobjectpermission WHERE id = (SELECT x.id FROM guardian_groupobjectpermission x JOIN migrator.project_role_group l ON l.group_id = x.group_id WHERE l.project_id = $1 LIMIT 1)",
                [offline[0]]
            )
            let untouched = try connection.scalar("SELECT string_agg(xmin::text, ',' ORDER BY id) FROM guardian_groupobjectpermission WHERE object_pk = $1", ["\(offline[1])"])
            #expect(try DaemonProcess.wait(timeout: 5) { try connection.roleRows(offline[0]) == Self.complete }, daemon.transcript)
            #expect(try connection.scalar("SELECT string_agg(xmin::text, ',' ORDER BY id) FROM guardian_groupobjectpermission WHERE object_pk = $1", ["\(offline[1])"]) == untouched)
            #expect(daemon.stop().code == 0, daemon.transcript)
        }
    }

    @Test("a rename onto a group name another group has: warned about once, counted in a gauge, not synced again by every reconcile")
    func nameTakenByAnotherGroup() throws {
        try TestDatabase.with { db in
            let daemon = try DaemonProcess(try MigrationFolder.shipped(), database: db, ["--reconcile-interval", "300ms"])
            #expect(daemon.waitUntilReady(), daemon.transcript)
            let connection = try db.connect()
            let id = try db.insertProject(connection, "alpha")
            #expect(try DaemonProcess.wait(timeout: 30) { try connection.roleRows(id) == Self.complete }, daemon.transcript)
            // A grant removed by hand, so that a reconcile surely syncs and its counter exists with a value: the
            // comparison below then reads a number, not two absent samples. (The new project itself may have been
            // found by a reconcile or by the poll, whichever ran first.)
            let reconcileOK = #"migrator_role_syncs_total{trigger="reconcile",result="ok"}"#
            try connection.query(
                "DELETE FROM auth_group_permissions WHERE id = (SELECT x.id FROM auth_group_permissions x JOIN migrator.project_role_group l ON l.group_id = x.group_id WHERE l.project_id = $1 LIMIT 1)",
                [id]
            )
            #expect(try DaemonProcess.wait(timeout: 30) { try connection.roleRows(id) == Self.complete }, daemon.transcript)
            #expect(DaemonProcess.wait(timeout: 30) { ((try? daemon.metrics())?[reconcileOK] ?? 0) >= 1 }, daemon.transcript)
            try connection.query("INSERT INTO auth_group (name) VALUES ($1)", ["\(id)_omega_Researcher"])
            try connection.query("UPDATE main_project SET name = 'omega' WHERE id = $1", [id])

            #expect(DaemonProcess.wait(timeout: 30) { daemon.stderr.contains("a role group's name is taken by another group") }, daemon.transcript)
            #expect(DaemonProcess.wait(timeout: 30) { ((try? daemon.metrics())?["migrator_role_groups_name_taken"]) == 1 }, daemon.transcript)
            #expect(try connection.count("SELECT count(*) FROM auth_group g JOIN migrator.project_role_group l ON l.group_id = g.id WHERE l.project_id = $1 AND g.name LIKE $2", [id, "\(id)_omega_%"]) == 4)
            let before = try daemon.metrics()
            // Three more reconciles, counted (not slept for).
            let reconciles = try #require(before["migrator_reconciles_total"])
            #expect(DaemonProcess.wait(timeout: 60) { ((try? daemon.metrics())?["migrator_reconciles_total"] ?? 0) >= reconciles + 3 }, daemon.transcript)
            let after = try daemon.metrics()
            let synced = try #require(before[reconcileOK], "the reconcile's sync counter is exported")
            #expect(after[reconcileOK] == synced, "no reconcile synced the project again")
            let drifted = try #require(before["migrator_reconcile_drifted_projects_total"])
            #expect(drifted >= 1 && after["migrator_reconcile_drifted_projects_total"] == drifted)
            #expect(daemon.stderr.components(separatedBy: "role groups whose name another group has").count - 1 == 1, daemon.transcript)
            #expect((try? daemon.get("/readyz"))?.status == 200)

            // Once the name is free, the next reconcile renames the group and the gauge drops to 0.
            try connection.query("DELETE FROM auth_group WHERE name = $1", ["\(id)_omega_Researcher"])
            #expect(try DaemonProcess.wait(timeout: 5) {
                try connection.count("SELECT count(*) FROM auth_group g JOIN migrator.project_role_group l ON l.group_id = g.id WHERE l.project_id = $1 AND g.name LIKE $2", [id, "\(id)_omega_%"]) == 5
            }, daemon.transcript)
            #expect(DaemonProcess.wait(timeout: 5) { ((try? daemon.metrics())?["migrator_role_groups_name_taken"]) == 0 }, daemon.transcript)
            #expect(daemon.stop().code == 0, daemon.transcript)
        }
    }

    /// With --reconcile-interval 1h, only the reconcile of the new session runs; the rename made after it completed
    /// can reach the daemon only as a notification on the new session's LISTEN.
    @Test("pg_terminate_backend on the daemon's connection: it reconnects, listens again and keeps syncing")
    func survivesTerminatedConnection() throws {
        try TestDatabase.with { db in
            let daemon = try DaemonProcess(try MigrationFolder.shipped(), database: db, ["--reconcile-interval", "1h"])
            #expect(daemon.waitUntilReady(), daemon.transcript)
            let connection = try db.connect()
            let id = try db.insertProject(connection, "before the reconnect")
            #expect(try DaemonProcess.wait(timeout: 30) { try connection.roleRows(id) == Self.complete }, daemon.transcript)
            let reconcilesBefore = try #require(try daemon.metrics()["migrator_reconciles_total"])
            let terminated = try connection.count(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = current_database() AND application_name = 'migrator' AND pid <> pg_backend_pid()"
            )
            #expect(terminated == 1)
            #expect(DaemonProcess.wait(timeout: 30) { ((try? daemon.metrics())?["migrator_reconnects_total"] ?? 0) >= 1 }, daemon.transcript)
            // The new session's reconcile started (it is counted first) and completed (ready needs a reconcile on the
            // current session, and the session is new).
            #expect(DaemonProcess.wait(timeout: 30) { ((try? daemon.metrics())?["migrator_reconciles_total"] ?? 0) >= reconcilesBefore + 1 }, daemon.transcript)
            #expect(daemon.waitUntilReady(timeout: 30), daemon.transcript)
            #expect(daemon.stderr.contains("reconnected to the database; listening again"), daemon.transcript)
            let reconciles = try #require(try daemon.metrics()["migrator_reconciles_total"])
            #expect(reconciles == reconcilesBefore + 1)

            try connection.query("UPDATE main_project SET name = 'renamed after the reconnect' WHERE id = $1", [id])
            #expect(try DaemonProcess.wait(timeout: 30) {
                try connection.count("SELECT count(*) FROM auth_group g JOIN migrator.project_role_group l ON l.group_id = g.id WHERE l.project_id = $1 AND g.name LIKE $2", [id, "\(id)_renamed after the reconnect_%"]) == 5
            }, daemon.transcript)
            #expect(DaemonProcess.wait(timeout: 30) { ((try? daemon.metrics())?[#"migrator_role_syncs_total{trigger="notify",result="ok"}"#]) == 1 }, daemon.transcript)
            let metrics = try daemon.metrics()
            #expect(metrics["migrator_notifications_received_total"] == 1)
            #expect(metrics["migrator_reconciles_total"] == reconciles, "no reconcile ran after the new session's first: the notification did it")

            // New projects too: the poll of the new session.
            let after = try db.insertProject(connection, "after the reconnect")
            #expect(try DaemonProcess.wait(timeout: 30) { try connection.roleRows(after) == Self.complete }, daemon.transcript)
            #expect(daemon.stop().code == 0, daemon.transcript)
        }
    }

    /// The interleaving is forced: the sync's group insert waits at a barrier the test holds, the signal is sent and
    /// seen by the daemon ("shutdown requested") while that transaction is open, and only then is the barrier
    /// released. The bounds are read from the daemon's own log timestamps, not from the test's clock.
    @Test("SIGTERM and SIGINT in the middle of a sync: the sync in progress commits whole, then exit 0 within a few seconds, no lock held, no connection left", arguments: [SIGTERM, SIGINT])
    func gracefulStop(signal: Int32) throws {
        try TestDatabase.with { db in
            let daemon = try DaemonProcess(try MigrationFolder.shipped(), database: db)
            #expect(daemon.waitUntilReady(), daemon.transcript)
            let connection = try db.connect()
            let barrier = try Barrier(connection, on: "auth_group", "INSERT")
            try connection.query("INSERT INTO main_project (name, description) SELECT 'p' || i, '' FROM generate_series(1, 3) AS i")
            let ids = try connection.query("SELECT id FROM main_project ORDER BY id").rows.compactMap { $0["id"].flatMap { Int64($0) } }
            #expect(ids.count == 3)
            #expect(try barrier.reached(), "the daemon's sync never reached the barrier\n\(daemon.transcript.rawValue)")
            // In progress: the groups are inserted, not committed.
            #expect(try ids.map { try connection.roleRows($0) } == [[0, 0, 0], [0, 0, 0], [0, 0, 0]])
            #expect(try connection.count(FaultTests.advisoryLocks + " AND granted AND pid <> pg_backend_pid()") == 1, "the sync holds the migration lock")

            kill(daemon.process.processIdentifier, signal)
            #expect(DaemonProcess.wait(timeout: 30) { !daemon.logLines("shutdown requested; finishing the transaction in progress").isEmpty }, daemon.transcript)
            // The daemon saw the signal and still waits for its transaction: it neither exited nor rolled back.
            #expect(daemon.process.isRunning, daemon.transcript)
            #expect(try barrier.isWaiting(), "the sync in progress was cut short\n\(daemon.transcript.rawValue)")
            try barrier.release()

            let stopped = daemon.waitForExit(limit: 30)
            #expect(stopped.code == 0, daemon.transcript)
            #expect(try ids.map { try connection.roleRows($0) } == [Self.complete, Self.complete, Self.complete], "the sync in progress was not finished")
            let requested = try #require(daemon.logLines("shutdown requested; finishing the transaction in progress").first, daemon.transcript)
            let synced = try #require(daemon.logLines("synced projects").last, daemon.transcript)
            let end = try #require(daemon.logLines("stopped").last, daemon.transcript)
            #expect(synced.value("daemon.projects") == "3", "one transaction, whole: \(synced.text)")
            #expect(requested.time <= synced.time && synced.time <= end.time, daemon.transcript)
            // From the commit of the sync in progress to the exit.
            #expect(end.time.timeIntervalSince(synced.time) < 5, "stopping took \(end.time.timeIntervalSince(synced.time)) s after the commit")
            #expect(daemon.logLines("synced projects").count == 1, "nothing more was started after the signal: \(daemon.transcript.rawValue)")
            #expect(try connection.count(FaultTests.advisoryLocks) == 0)
            #expect(try connection.count("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND application_name = 'migrator' AND pid <> pg_backend_pid()") == 0)
        }
    }

    @Test("SIGTERM during a reconcile's drift query: it stops between two chunks of projects, syncs nothing, exit 0")
    func stopBetweenDriftChunks() throws {
        try TestDatabase.with { db in
            let folder = try MigrationFolder.shipped()
            #expect(try E2E.run(E2E.args("migrate", folder), database: db).exitCode == 0)
            let connection = try db.connect()
            // More projects than one chunk of the drift query reads (RoleSynchronizer.driftChunkSize), all in step.
            let projects = RoleSynchronizer.driftChunkSize + 1
            try connection.query("INSERT INTO main_project (name, description) SELECT 'p' || i, '' FROM generate_series(1, $1::integer) AS i", [projects])
            #expect(try E2E.run(["update-roles"], database: db).exitCode == 0)
            // The app holds a lock the drift query's first chunk waits for (--ddl-lock-timeout 0: it waits as long as
            // it takes), so the signal provably arrives while that chunk runs.
            let holder = try db.connect()
            try holder.execute(script: "BEGIN; LOCK TABLE guardian_groupobjectpermission IN ACCESS EXCLUSIVE MODE")
            let daemon = try DaemonProcess(folder, database: db, ["--ddl-lock-timeout", "0", "--reconcile-interval", "1h"])
            #expect(try DaemonProcess.wait(timeout: 30) {
                try connection.count("""
                    SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND application_name = 'migrator'
                    AND wait_event_type = 'Lock' AND query LIKE '%unlinked_wanted%'
                    """) == 1
            }, "the drift query never waited for the app's lock\n\(daemon.transcript.rawValue)")

            kill(daemon.process.processIdentifier, SIGTERM)
            #expect(DaemonProcess.wait(timeout: 30) { !daemon.logLines("shutdown requested; finishing the transaction in progress").isEmpty }, daemon.transcript)
            #expect(daemon.process.isRunning, daemon.transcript)
            try holder.query("ROLLBACK")

            let stopped = daemon.waitForExit(limit: 30)
            #expect(stopped.code == 0, daemon.transcript)
            let cut = try #require(daemon.logLines("stopping: the reconcile's drift query ends between two chunks").first, daemon.transcript)
            #expect(cut.value("daemon.drift_chunks") == "1", "it read more chunks after the signal: \(cut.text)")
            #expect(daemon.logLines("synced projects").isEmpty, daemon.transcript)
            #expect(try connection.count(FaultTests.advisoryLocks) == 0)
        }
    }

    @Test("SIGTERM while serve waits at start-up for another runner's lock: exit 0 within seconds, nothing applied")
    func stopWhileWaitingForTheLock() throws {
        try TestDatabase.with { db in
            let holder = try db.connect()
            try holder.query("SELECT pg_advisory_lock($1::bigint)", [E2E.lockKey])
            let daemon = try DaemonProcess(try MigrationFolder.shipped(), database: db)
            #expect(DaemonProcess.wait(timeout: 10) { daemon.stderr.contains("waiting for the migration lock") }, daemon.transcript)
            #expect((try? daemon.get("/readyz"))?.status == 503)

            let stopped = daemon.stop(SIGTERM, limit: 30)
            #expect(stopped.code == 0, daemon.transcript)
            #expect(daemon.stderr.contains("stopped on request while waiting for the migration lock"), daemon.transcript)
            // From the daemon's own timestamps: the signal seen, the wait given up. (A waiter tries the lock every
            // 1.5 s at most; "at once" means it does not wait for the holder, who keeps the lock throughout.)
            let requested = try #require(daemon.logLines("shutdown requested; finishing the transaction in progress").first, daemon.transcript)
            let gaveUp = try #require(daemon.logLines("stopped during the start-up migrate; nothing was cut short").first, daemon.transcript)
            #expect(gaveUp.time.timeIntervalSince(requested.time) < 3, "it waited \(gaveUp.time.timeIntervalSince(requested.time)) s for the lock instead of stopping")
            #expect(try holder.count("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted AND pid = pg_backend_pid()") == 1)
            #expect(try holder.count("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'") == 0)
        }
    }

    @Test("SIGTERM during the start-up migrate: the migration in progress commits, the next stay pending, exit 0")
    func stopDuringStartUpMigrate() throws {
        try TestDatabase.with { db in
            // 0009 waits at a barrier the test holds until the daemon has seen the signal: the signal provably arrives
            // while 0009's transaction is open. (--ddl-lock-timeout 0: the barrier is an advisory lock wait.)
            let key: Int64 = 0x5354_4F50
            let folder = try E2E.shipped(plus: [
                ("0009_slow.sql", "CREATE TABLE slow_t (id int);\nSELECT pg_advisory_xact_lock_shared(\(key));\n"),
                ("0010_after.sql", "CREATE TABLE after_t (id int);\n"),
            ])
            let connection = try db.connect()
            let barrier = try Barrier(holding: key, connection)
            let daemon = try DaemonProcess(folder, database: db, ["--ddl-lock-timeout", "0"])
            #expect(try barrier.reached(), "the daemon never reached 0009_slow.sql\n\(daemon.transcript.rawValue)")

            kill(daemon.process.processIdentifier, SIGTERM)
            #expect(DaemonProcess.wait(timeout: 30) { !daemon.logLines("shutdown requested; finishing the transaction in progress").isEmpty }, daemon.transcript)
            #expect(try barrier.isWaiting() && daemon.process.isRunning, "0009 was cut short\n\(daemon.transcript.rawValue)")
            #expect(try connection.historyVersions() == Array(1...5))
            try barrier.release()

            let stopped = daemon.waitForExit(limit: 30)
            #expect(stopped.code == 0, daemon.transcript)
            #expect(daemon.stderr.contains("stopped on request before 0010_after"), daemon.transcript)
            #expect(try connection.historyVersions() == Array(1...5) + [9])
            #expect(try connection.tableExists("public.slow_t"))
            #expect(try !connection.tableExists("public.after_t"))
            #expect(try connection.count(FaultTests.advisoryLocks) == 0)

            let rerun = try E2E.run(E2E.args("migrate", folder), database: db)
            #expect(rerun.exitCode == 0, rerun.transcript)
            #expect(try connection.historyVersions() == Array(1...5) + [9, 10])
        }
    }

    @Test("/readyz answers 503 while the migrations run and 200 after; /healthz answers 200 throughout")
    func readinessDuringMigrations() throws {
        try TestDatabase.with { db in
            let folder = try E2E.shipped(plus: [("0009_slow.sql", "SELECT pg_sleep(2);\n")])
            let daemon = try DaemonProcess(folder, database: db)
            var sawMigrating = false
            let ready = DaemonProcess.wait(timeout: 20) {
                guard let answer = try? daemon.get("/readyz") else { return false }
                if answer.status == 503, answer.body.contains("applying migrations") { sawMigrating = true }
                if answer.status == 503 { #expect((try? daemon.get("/healthz").status) == 200) }
                return answer.status == 200
            }
            #expect(sawMigrating, daemon.transcript)
            #expect(ready, daemon.transcript)
            #expect(try daemon.get("/readyz").body == "ready\n")
            #expect(try db.connect().historyVersions().count == 6)
            #expect(daemon.stop().code == 0, daemon.transcript)
        }
    }

    @Test("--no-migrate on an unmigrated database: 503 naming the pending migrations until `migrator migrate` ran")
    func readinessWithoutMigrating() throws {
        try TestDatabase.with { db in
            let folder = try MigrationFolder.shipped()
            let daemon = try DaemonProcess(folder, database: db, ["--no-migrate", "--reconcile-interval", "300ms"])
            #expect(DaemonProcess.wait(timeout: 10) { (try? daemon.get("/readyz").body) == "not ready: 5 migrations pending\n" }, daemon.transcript)
            #expect(try daemon.get("/readyz").status == 503)
            let probe = try E2E.run(["probe", "--http-address", "127.0.0.1:\(daemon.port)"])
            #expect(probe.exitCode == 1 && probe.stderr.contains("503 not ready: 5 migrations pending"), probe.transcript)
            #expect(try db.connect().historyVersions().isEmpty)

            #expect(try E2E.run(E2E.args("migrate", folder), database: db).exitCode == 0)
            #expect(daemon.waitUntilReady(timeout: 10), daemon.transcript)
            let ok = try E2E.run(["probe", "--http-address", "127.0.0.1:\(daemon.port)", "/readyz"])
            #expect(ok.exitCode == 0 && ok.stdout == "200 ready\n", ok.transcript)
            let metrics = try daemon.metrics()
            #expect(metrics["migrator_migrations_applied"] == 5 && metrics["migrator_migrations_pending"] == 0)
            #expect(daemon.stop().code == 0, daemon.transcript)
        }
    }

    // Until issue 13 this answered 503: but an older release meeting a newer catalogue is how a rolling deploy goes,
    // not a problem an operator must act on, so /readyz stays 200 and says so in a note (README "Running next to a
    // live app").
    @Test("a newer deploy recorded another role catalogue: the daemon stops syncing, says so and stays ready, then resumes")
    func roleVersionMismatch() throws {
        try TestDatabase.with { db in
            let folder = try MigrationFolder.shipped()
            let daemon = try DaemonProcess(folder, database: db, ["--reconcile-interval", "300ms"])
            #expect(daemon.waitUntilReady(), daemon.transcript)
            let other = try folder.write("other-roles.json", #"{"roles": [{"name": "Viewer", "permissions": ["view_project"]}]}"#)
            #expect(try E2E.run(E2E.args("update-roles", folder, "--roles", other), database: db).exitCode == 0)
            #expect(DaemonProcess.wait(timeout: 5) { (try? daemon.get("/readyz").body.contains("was superseded by")) == true }, daemon.transcript)
            let answer = try daemon.get("/readyz")
            #expect(answer.status == 200 && answer.body.hasPrefix("ready\nnote: this daemon's role catalogue was superseded by "), "\(answer.body)")
            #expect(try daemon.metrics()["migrator_role_catalogue_superseded"] == 1)

            let connection = try db.connect()
            let id = try db.insertProject(connection, "during the other deploy")
            // Two more reconciles, counted (not slept for): the daemon had every chance to sync the project.
            let reconciles = try #require(try daemon.metrics()["migrator_reconciles_total"])
            #expect(DaemonProcess.wait(timeout: 60) { ((try? daemon.metrics())?["migrator_reconciles_total"] ?? 0) >= reconciles + 2 }, daemon.transcript)
            // The daemon did not write its catalogue's groups next to the other deploy's.
            #expect(try connection.count("SELECT count(*) FROM migrator.project_role_group WHERE project_id = $1", [id]) == 0)
            #expect(daemon.stderr.contains("this daemon's role catalogue was superseded by a newer one; not syncing"), daemon.transcript)

            // Back to this catalogue (update-roles is --force by default: a rollback): the note goes, and the
            // reconcile brings the project in step.
            #expect(try E2E.run(E2E.args("update-roles", folder), database: db).exitCode == 0)
            #expect(DaemonProcess.wait(timeout: 10) { (try? daemon.get("/readyz").body) == "ready\n" }, daemon.transcript)
            #expect(try DaemonProcess.wait(timeout: 5) { try connection.roleRows(id) == Self.complete }, daemon.transcript)
            #expect(try daemon.metrics()["migrator_role_catalogue_superseded"] == 0)
            #expect(daemon.stop().code == 0, daemon.transcript)
        }
    }

    @Test("/metrics is valid Prometheus text with the documented families and counts")
    func metrics() throws {
        try TestDatabase.with { db in
            let daemon = try DaemonProcess(try MigrationFolder.shipped(), database: db)
            #expect(daemon.waitUntilReady(), daemon.transcript)
            let connection = try db.connect()
            let id = try db.insertProject(connection, "measured")
            #expect(try DaemonProcess.wait(timeout: 5) { try connection.roleRows(id) == Self.complete })
            #expect(DaemonProcess.wait(timeout: 5) { ((try? daemon.metrics())?["migrator_projects_synced_total"] ?? 0) >= 1 })
            let answer = try daemon.get("/metrics")
            #expect(answer.headers["content-type"]?.hasPrefix("text/plain; version=0.0.4") == true)
            let metrics = try PrometheusText(parsing: answer.body)
            #expect(metrics["migrator_migrations_applied"] == 5)
            #expect(metrics["migrator_migrations_pending"] == 0)
            // The INSERT sends no notification (until the poll for new projects it sent one, and the sync counted as
            // `notify`): the poll found the project, and its sync counts as `poll`.
            #expect(metrics["migrator_notifications_received_total"] == 0)
            #expect(metrics["migrator_projects_polled_total"] == 1)
            #expect((metrics["migrator_project_polls_total"] ?? 0) >= 1)
            #expect(metrics["migrator_projects_synced_total"] == 1)
            #expect(metrics[#"migrator_role_syncs_total{trigger="poll",result="ok"}"#] == 1)
            #expect(metrics[#"migrator_role_sync_duration_seconds_count{trigger="poll"}"#] == 1)
            #expect(metrics["migrator_projects_waiting"] == 0)
            // The watermark itself moves only once every transaction in the cluster older than the poll ended (other
            // tests' may stay open for minutes): its rule is ProjectWatermarkTests'; here only that it is exported.
            #expect(metrics["migrator_project_watermark"] != nil)
            #expect(metrics["migrator_reconnects_total"] == 0)
            #expect(metrics["migrator_ready"] == 1)
            let lastSync = metrics["migrator_last_successful_sync_timestamp_seconds"] ?? 0
            #expect(abs(lastSync - Date().timeIntervalSince1970) < 60)
            #expect(metrics.types["migrator_role_sync_duration_seconds"] == "histogram")
            #expect((metrics["migrator_database_queries_total"] ?? 0) > 0)
            // Malformed text is rejected, so the checks above mean something.
            #expect(throws: PrometheusText.Malformed.self) { try PrometheusText(parsing: "migrator_ready one\n") }
            #expect(daemon.stop().code == 0, daemon.transcript)
        }
    }

    @Test("start-up failures exit with the documented codes and never print the password")
    func startupFailures() throws {
        try TestDatabase.with { db in
            let folder = try MigrationFolder.shipped()
            let wrong = try Server.url(user: "postgres", password: "not-the-password", database: db.name)
            let refused = try E2E.run(["serve", "--migrations", folder.path, "--http-address", "127.0.0.1:0"], environment: ["DATABASE_URL": wrong], secrets: ["not-the-password"], limit: 20)
            #expect(refused.exitCode == 4, refused.transcript)
            #expect(refused.seconds < 10 && refused.stderr.contains("waiting will not help"), refused.transcript)

            let nobody = "postgresql://u:secret%40pw@127.0.0.1:1/db?connect_timeout=1"
            let unreachable = try E2E.run(["serve", "--migrations", folder.path, "--http-address", "127.0.0.1:0", "--wait-timeout", "1s"], environment: ["DATABASE_URL": nobody], secrets: ["secret@pw"], limit: 20)
            #expect(unreachable.exitCode == 4 && unreachable.stderr.contains("did not accept connections within 1 s"), unreachable.transcript)

            try folder.write("0009_broken.sql", "CREATE TABLE broken (id int);\nINSERT INTO nowhere VALUES (1);\n")
            let failed = try E2E.run(["serve", "--migrations", folder.path, "--http-address", "127.0.0.1:0"], database: db, limit: 30)
            #expect(failed.exitCode == 1, failed.transcript)
            #expect(failed.stderr.contains("0009_broken.sql:2:"), failed.transcript)
            #expect(try db.connect().tableExists("public.broken") == false)

            let usage = try E2E.run(["serve", "--http-address", "nowhere"])
            #expect(usage.exitCode == 64 && usage.stderr.contains("--http-address"), usage.transcript)
        }
    }

    @Test("--log-format json: one JSON object per line with ts, level and msg")
    func jsonLogs() throws {
        try TestDatabase.with { db in
            let daemon = try DaemonProcess(try MigrationFolder.shipped(), database: db, ["--log-format", "json"])
            #expect(daemon.waitUntilReady(), daemon.transcript)
            let connection = try db.connect()
            let id = try db.insertProject(connection, "logged")
            #expect(try DaemonProcess.wait(timeout: 5) { try connection.roleRows(id) == Self.complete })
            #expect(daemon.stop().code == 0, daemon.transcript)
            let lines = daemon.stderr.split(separator: "\n")
            #expect(lines.count >= 5)
            var messages: [String] = []
            for line in lines {
                let object = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any]
                #expect(object != nil, "not a JSON object: \(E2E.masked(String(line)))")
                #expect(object?["ts"] is String && object?["level"] is String)
                if let message = object?["msg"] as? String { messages.append(message) }
            }
            for expected in ["http listening", "ready", "synced projects", "stopped"] {
                #expect(messages.contains(expected), "\(messages)")
            }
        }
    }

    @Test("probe: exit 1 with the reason when nothing listens")
    func probeWithoutDaemon() throws {
        let run = try E2E.run(["probe", "--http-address", "127.0.0.1:1", "/healthz"])
        #expect(run.exitCode == 1 && run.stderr.contains("cannot connect to 127.0.0.1:1"), run.transcript)
        let bad = try E2E.run(["probe", "healthz"])
        #expect(bad.exitCode == 64, bad.transcript)
        let forever = try E2E.run(["probe", "--timeout", "0", "--http-address", "127.0.0.1:1"])
        #expect(forever.exitCode == 64 && forever.stderr.contains("--timeout must be more than 0"), forever.transcript)
    }

    @Test("probe --timeout bounds the whole request: a server that sends one byte at a time does not keep it waiting")
    func probeTimeoutBoundsTheWholeRequest() throws {
        let server = try DrippingServer()
        defer { server.stop() }
        // The server sends a byte every 0.2 s for as long as the connection is open: a per-read timeout is never
        // reached. The probe must give up at its 1 s deadline; the run's limit (20 s) stands for "it hung".
        let run = try E2E.run(["probe", "--timeout", "1s", "--http-address", "127.0.0.1:\(server.port)", "/readyz"], limit: 20)
        #expect(run.exitCode == 1, run.transcript)
        #expect(run.stderr.contains("no complete answer from 127.0.0.1:\(server.port) within 1 s"), run.transcript)
        #expect(server.bytesSent > 0, "the server never sent anything, so the test proves nothing")
    }
}

/// A TCP server on 127.0.0.1 that accepts one connection and sends it one byte every 0.2 s until it closes.
final class DrippingServer: @unchecked Sendable {
    let port: Int
    private let listener: Int32
    private let stopped = Mutex(false)
    private let sent = Mutex(0)
    var bytesSent: Int { sent.withLock { $0 } }

    init() throws {
        let (fd, port) = try Loopback.listen()
        listener = fd
        self.port = port
        Thread.detachNewThread { [self] in
            let client = accept(fd, nil, nil)
            guard client >= 0 else { return }
            defer { close(client) }
            var byte: UInt8 = 0x48  // "H", the start of an HTTP answer that never completes
            while !stopped.withLock({ $0 }) {
                guard send(client, &byte, 1, Int32(MSG_NOSIGNAL)) == 1 else { return }
                sent.withLock { $0 += 1 }
                Thread.sleep(forTimeInterval: 0.2)
            }
        }
    }

    func stop() {
        stopped.withLock { $0 = true }
        shutdown(listener, Int32(SHUT_RDWR))
        close(listener)
    }
}
