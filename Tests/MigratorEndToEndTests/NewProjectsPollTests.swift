import Foundation
import MigratorTestSupport
import Postgres
import SystemSupport
import Testing

/// New projects without a trigger on INSERT: `serve` polls the project table past an id watermark (README "Running
/// next to a live app"). The interleavings are forced with sessions held open; every wait is for an event.
extension LiveAppTests {
    static let insertTriggers =
        "SELECT count(*) FROM pg_trigger WHERE tgrelid = 'main_project'::regclass AND NOT tgisinternal AND tgtype & 4 <> 0"

    @Test(
        "a project committed after a higher id was already synced gets its groups from the poll, without a reconcile",
        arguments: [false, true]
    )
    func outOfOrderCommit(committedTransactionIsOlder: Bool) throws {
        try TestDatabase.with { db in
            let folder = try MigrationFolder.shipped()
            let daemon = try DaemonProcess(folder, database: db, ["--poll-interval", "50ms", "--reconcile-interval", "10m"])
            #expect(daemon.waitUntilReady(), daemon.transcript)
            let connection = try db.connect()
            try connection.query("CREATE TABLE scratch (i int)")
            let a = try db.connect()
            let b = try db.connect()
            if committedTransactionIsOlder {
                // B's transaction id is older than A's: when B commits, the newest completed transaction is older than
                // A, so a snapshot's xmax would not count A as running (the case the poll's own transaction id covers).
                try b.query("BEGIN")
                try b.query("INSERT INTO scratch VALUES (1)")
            }
            // Session A takes an id and holds its transaction open.
            try a.query("BEGIN")
            let held = try #require(Int64(try a.scalar("INSERT INTO main_project (name, description) VALUES ('held', '') RETURNING id") ?? ""))
            // Session B takes the next id and commits.
            if !committedTransactionIsOlder { try b.query("BEGIN") }
            let committed = try #require(Int64(try b.scalar("INSERT INTO main_project (name, description) VALUES ('committed', '') RETURNING id") ?? ""))
            try b.query("COMMIT")
            #expect(committed > held)
            #expect(try DaemonProcess.wait(timeout: 10) { try connection.roleRows(committed) == DaemonTests.complete }, daemon.transcript)
            #expect(try connection.roleRows(held) == [0, 0, 0])

            // Polls go on while A is open; the watermark stays below A's id.
            let polls = try daemon.metrics()["migrator_project_polls_total"] ?? 0
            #expect(DaemonProcess.wait(timeout: 10) { ((try? daemon.metrics())?["migrator_project_polls_total"] ?? 0) >= polls + 5 }, daemon.transcript)
            #expect((try daemon.metrics()["migrator_project_watermark"] ?? 0) < Double(held))
            let pollOK = #"migrator_role_syncs_total{trigger="poll",result="ok"}"#
            let before = try daemon.metrics()
            #expect(before[pollOK] == 1, "the committed project's sync")

            try a.query("COMMIT")
            #expect(try DaemonProcess.wait(timeout: 10) { try connection.roleRows(held) == DaemonTests.complete }, daemon.transcript)
            // The metric counts a sync just after its commit, which the groups above show first.
            #expect(DaemonProcess.wait(timeout: 10) { ((try? daemon.metrics())?[pollOK] ?? 0) >= 2 }, daemon.transcript)
            let after = try daemon.metrics()
            #expect(after[pollOK] == 2, "the held project's sync, by the poll")
            #expect(after["migrator_reconciles_total"] == before["migrator_reconciles_total"], "no reconcile ran: the poll found it")
            // Every sync the daemon made (the log has one line per sync, with its trigger, written just after the
            // metric is counted): the two polled projects, one each; none by a reconcile.
            #expect(DaemonProcess.wait(timeout: 10) { Self.syncs(in: daemon.stderr).count >= 2 }, daemon.transcript)
            #expect(Self.syncs(in: daemon.stderr).map { "\($0.trigger):\($0.projects)" } == ["poll:1", "poll:1"], daemon.transcript)
            #expect(daemon.stop().code == 0, daemon.transcript)
        }
    }

    @Test("no trigger of migrator's fires on INSERT; an earlier release's insert trigger goes on the next migrate; renames still notify")
    func noInsertTrigger() throws {
        try TestDatabase.with { db in
            let folder = try MigrationFolder.shipped()
            #expect(try E2E.run(E2E.args("migrate", folder), database: db).exitCode == 0)
            let connection = try db.connect()
            #expect(try connection.count(Self.insertTriggers) == 0)
            #expect(try connection.scalar(
                "SELECT string_agg(tgname, ',' ORDER BY tgname) FROM pg_trigger WHERE tgrelid = 'main_project'::regclass AND NOT tgisinternal"
            ) == "migrator_project_delete_groups,migrator_project_notify_delete,migrator_project_notify_rename,migrator_project_truncate")

            // The release before the poll, run against this database (a rolling deploy), replaces every trigger of
            // ours with its own set, the insert trigger included, as its check finds our set different from its. The
            // next migrate of this release (nothing to migrate, the catalogue unchanged) finds the triggers it
            // recorded gone, replaces them, and the insert trigger is gone.
            _ = try connection.execute(script: """
                DROP TRIGGER migrator_project_delete_groups ON main_project;
                DROP TRIGGER migrator_project_notify_delete ON main_project;
                DROP TRIGGER migrator_project_notify_rename ON main_project;
                DROP TRIGGER migrator_project_truncate ON main_project;
                DROP TRIGGER migrator_group_deleted ON auth_group;
                CREATE TRIGGER migrator_project_delete_groups BEFORE DELETE ON main_project FOR EACH ROW EXECUTE FUNCTION migrator.project_deleted('id');
                CREATE TRIGGER migrator_project_truncate AFTER TRUNCATE ON main_project FOR EACH STATEMENT EXECUTE FUNCTION migrator.projects_truncated();
                CREATE TRIGGER migrator_project_notify_rename AFTER UPDATE OF name ON main_project FOR EACH ROW WHEN (OLD.name IS DISTINCT FROM NEW.name) EXECUTE FUNCTION migrator.project_notify('id', 'name');
                CREATE TRIGGER migrator_project_notify_delete AFTER DELETE ON main_project FOR EACH ROW EXECUTE FUNCTION migrator.project_notify('id');
                CREATE TRIGGER migrator_project_notify_insert AFTER INSERT ON main_project FOR EACH ROW EXECUTE FUNCTION migrator.project_notify('id');
                CREATE TRIGGER migrator_group_deleted BEFORE DELETE ON auth_group FOR EACH ROW EXECUTE FUNCTION migrator.group_deleted();
                """)
            #expect(try connection.count(Self.insertTriggers) == 1)
            let again = try E2E.run(E2E.args("migrate", folder), database: db)
            #expect(again.exitCode == 0 && again.stdout.contains("role catalogue unchanged"), again.transcript)
            #expect(try connection.count(Self.insertTriggers) == 0)

            // An insert sends nothing; a rename of another project still does, and its notification is the first.
            let renamed = try db.insertProject(connection, "to rename")
            let listener = try db.connect()
            try listener.listen("migrator_projects")
            let inserted = try db.insertProject(connection, "inserted")
            try connection.query("UPDATE main_project SET name = 'renamed' WHERE id = $1", [renamed])
            var received: [PostgresNotification] = []
            #expect(DaemonProcess.wait(timeout: 5) {
                received += (try? listener.waitForNotifications(timeout: .milliseconds(100))) ?? []
                return !received.isEmpty
            })
            #expect(received.first?.payload == "\(renamed)", "the first notification is the rename's, not the insert's of \(inserted)")
        }
    }

    @Test("3,000 projects inserted at once while serve runs: found by the poll, synced in bounded batches, every one in step")
    func bulkInsert() throws {
        try TestDatabase.with { db in
            let folder = try MigrationFolder.shipped()
            let daemon = try DaemonProcess(folder, database: db, [
                "--poll-interval", "100ms", "--sync-batch-size", "400", "--reconcile-interval", "10m",
            ])
            #expect(daemon.waitUntilReady(), daemon.transcript)
            let connection = try db.connect()
            try connection.query("INSERT INTO main_project (name, description) SELECT 'bulk ' || g, '' FROM generate_series(1, 3000) g")
            let linked = "SELECT count(DISTINCT project_id) FROM migrator.project_role_group"
            #expect(try DaemonProcess.wait(timeout: 240) { try connection.count(linked) == 3000 }, daemon.transcript)
            #expect(try DaemonProcess.wait(timeout: 10) { Self.syncs(in: daemon.stderr).reduce(0) { $0 + $1.projects } == 3000 }, daemon.transcript)

            // Every project in step: five groups, each with its role's permissions, globally and on the project.
            #expect(try connection.count("SELECT count(*) FROM main_project p WHERE (SELECT count(*) FROM migrator.project_role_group l WHERE l.project_id = p.id) <> 5") == 0)
            #expect(try connection.count("SELECT count(*) FROM auth_group_permissions") == 3000 * 82)
            #expect(try connection.count("SELECT count(*) FROM guardian_groupobjectpermission") == 3000 * 82)
            #expect(try connection.count("SELECT count(*) FROM guardian_groupobjectpermission x JOIN migrator.project_role_group l ON l.group_id = x.group_id WHERE x.object_pk <> l.project_id::text") == 0)

            let syncs = Self.syncs(in: daemon.stderr)
            #expect(syncs.allSatisfy { $0.projects <= 400 }, "every sync transaction covers at most the batch size: \(syncs.map(\.projects))")
            #expect(syncs.count >= 8, "\(syncs.map(\.projects))")
            #expect(syncs.allSatisfy { $0.trigger == "poll" }, "\(syncs)")
            let metrics = try daemon.metrics()
            #expect(metrics["migrator_projects_polled_total"] == 3000)
            #expect(metrics["migrator_reconcile_drifted_projects_total"] == 0, "no reconcile had to find one")
            #expect(metrics["migrator_projects_waiting"] == 0)
            #expect(daemon.stop().code == 0, daemon.transcript)
        }
    }

    @Test("--poll-interval and MIGRATOR_POLL_INTERVAL are checked like the other durations: a usage error names them")
    func pollIntervalUsage() throws {
        let short = try E2E.run(["serve", "--poll-interval", "5ms", "--http-address", "127.0.0.1:0"])
        #expect(short.exitCode == 64 && short.stderr.contains("--poll-interval (MIGRATOR_POLL_INTERVAL) must be at least 10ms"), short.transcript)
        let bad = try E2E.run(["serve", "--poll-interval", "soon", "--http-address", "127.0.0.1:0"])
        #expect(bad.exitCode == 64 && bad.stderr.contains("--poll-interval"), bad.transcript)
        let variable = try E2E.run(["serve", "--http-address", "127.0.0.1:0"], environment: ["MIGRATOR_POLL_INTERVAL": "soon"])
        #expect(variable.exitCode == 64 && variable.stderr.contains("MIGRATOR_POLL_INTERVAL (for --poll-interval) has an invalid value 'soon'"), variable.transcript)
    }

    @Test("the project table renamed under serve: the poll fails and a reconcile says why on /readyz; renamed back, the polls resume")
    func pollFailure() throws {
        try TestDatabase.with { db in
            let daemon = try DaemonProcess(try MigrationFolder.shipped(), database: db, ["--poll-interval", "50ms", "--reconcile-interval", "1s"])
            #expect(daemon.waitUntilReady(), daemon.transcript)
            let connection = try db.connect()
            try connection.query("ALTER TABLE main_project RENAME TO main_project_away")
            #expect(DaemonProcess.wait(timeout: 10) { daemon.stderr.contains("the poll for new projects failed; reconciling") }, daemon.transcript)
            #expect(DaemonProcess.wait(timeout: 10) {
                guard let answer = try? daemon.get("/readyz") else { return false }
                return answer.status == 503 && answer.body.contains("the project table 'main_project' does not exist")
            }, daemon.transcript)
            try connection.query("ALTER TABLE main_project_away RENAME TO main_project")
            #expect(daemon.waitUntilReady(), daemon.transcript)
            let id = try db.insertProject(connection, "after the rename back")
            #expect(try DaemonProcess.wait(timeout: 10) { try connection.roleRows(id) == DaemonTests.complete }, daemon.transcript)
            #expect(daemon.stop().code == 0, daemon.transcript)
        }
    }
}
