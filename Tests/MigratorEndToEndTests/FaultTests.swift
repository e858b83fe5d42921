import Foundation
#if canImport(Glibc)
import Glibc
#endif
import MigratorTestSupport
import Postgres
import Synchronization
import Testing

/// Faults in the worst moments: runners killed or cut off mid-transaction, the server restarted under the daemon,
/// many kinds of runner at once. Each test starts real processes against a real server.
@Suite("faults")
struct FaultTests {
    /// A statement that sleeps only in sessions whose application_name is `slow`, so that the run to be killed
    /// sleeps and the rerun does not.
    static let sleepIfSlow = "SELECT pg_sleep(CASE WHEN current_setting('application_name') = 'slow' THEN 30 ELSE 0 END);"

    static func slowURL(_ db: TestDatabase) -> String {
        db.url + (db.url.contains("?") ? "&" : "?") + "application_name=slow"
    }

    /// Waits until a session of `application` (`slow` by default) on the connection's database is inside pg_sleep;
    /// returns its pid. Tests run in parallel on one server: a sleeper of another test's database must not count.
    static func sleepingBackend(_ connection: Connection, application: String = "slow", timeout: Double = 20) throws -> Int32? {
        var pid: Int32?
        DaemonProcess.wait(timeout: timeout) {
            pid = (try? connection.scalar(
                """
                SELECT pid FROM pg_stat_activity
                WHERE application_name = $1 AND wait_event = 'PgSleep' AND datname = current_database() LIMIT 1
                """, [application]
            )).flatMap { $0.flatMap { Int32($0) } }
            return pid != nil
        }
        return pid
    }

    static let advisoryLocks = """
        SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'
          AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
        """

    /// The bound is measured on the server's clock, not by polling: a session waiting for the migration lock takes it
    /// the moment the killed runner's backend frees it, and reads `clock_timestamp()` then; the other end is the
    /// server's clock read just before the kill. The test waits for that event (60 s only as a failure guard).
    @Test("kill -9 during a long transactional migration: the lock is free within about a second, nothing remains, a rerun applies it")
    func killDuringMigration() throws {
        try TestDatabase.with { db in
            let folder = try E2E.shipped(plus: [("0009_slow.sql", "CREATE TABLE slow_t (id int);\nINSERT INTO slow_t VALUES (1);\n\(Self.sleepIfSlow)\n")])
            let connection = try db.connect()
            let runner = try E2E.start(E2E.args("migrate", folder), environment: ["DATABASE_URL": Self.slowURL(db)])
            #expect(try Self.sleepingBackend(connection) != nil, "the migration never reached its sleep")
            try connection.query("""
                CREATE FUNCTION test_lock_then_now(k bigint) RETURNS double precision LANGUAGE plpgsql AS $$
                BEGIN PERFORM pg_advisory_lock(k); RETURN extract(epoch FROM clock_timestamp()); END $$
                """)
            let waiter = ServerClockLockWaiter(db, key: E2E.lockKey)
            #expect(DaemonProcess.wait(timeout: 60) {
                (try? connection.count("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted AND database = (SELECT oid FROM pg_database WHERE datname = current_database())")) == 1
            }, "the waiting session never queued for the lock")
            let killedAt = try #require(Double(try connection.scalar("SELECT extract(epoch FROM clock_timestamp())") ?? ""))
            kill(runner.process.0.processIdentifier, SIGKILL)
            _ = E2E.finish(runner, limit: 10)
            let acquiredAt = try #require(waiter.wait(timeout: 60), "the lock was not freed within 60 s of the kill")
            // client_connection_check_interval is 1 s: the server notices the closed socket at its next check, rolls
            // back and frees the lock. Server time, so a loaded machine's scheduling of the test does not count.
            let freed = acquiredAt - killedAt
            #expect(freed >= 0 && freed < 2, "the lock was freed \(freed) s after the kill (server clock)")
            #expect(try DaemonProcess.wait(timeout: 60) { try connection.count(Self.advisoryLocks) == 0 })
            #expect(try !connection.tableExists("public.slow_t"))
            #expect(try connection.historyVersions() == Array(1...5))

            let rerun = try E2E.run(E2E.args("migrate", folder), database: db)
            #expect(rerun.exitCode == 0, rerun.transcript)
            #expect(try connection.historyVersions() == Array(1...5) + [9])
            #expect(try connection.count("SELECT count(*) FROM slow_t") == 1)
        }
    }

    /// A database with `projects` projects synced with the reference catalogue, and a trigger that makes a sync
    /// that creates groups sleep in `slow` sessions.
    static func syncedDatabase(_ db: TestDatabase, projects: Int) throws -> (MigrationFolder, Connection, String) {
        let folder = try MigrationFolder.shipped()
        let connection = try db.connect()
        #expect(try E2E.run(E2E.args("migrate", folder, "--skip-roles"), database: db).exitCode == 0)
        try connection.query("INSERT INTO main_project (name) SELECT 'p' || i FROM generate_series(1, \(projects)) AS i")
        #expect(try E2E.run(E2E.args("migrate", folder), database: db).exitCode == 0)
        try connection.execute(script: """
            CREATE FUNCTION slow_group_insert() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                IF current_setting('application_name') = 'slow' THEN PERFORM pg_sleep(30); END IF;
                RETURN NULL;
            END $$;
            CREATE TRIGGER slow_group_insert AFTER INSERT ON auth_group FOR EACH STATEMENT EXECUTE FUNCTION slow_group_insert();
            """)
        let roles = try folder.write("viewer.json", #"""
            {"roles": [{"name": "Viewer", "permissions": ["view_project"]},
                       {"name": "BasicMember", "permissions": ["view_project"]}]}
            """#)
        return (folder, connection, roles)
    }

    static func snapshot(_ connection: Connection) throws -> [String?] {
        try [
            connection.scalar("SELECT version FROM migrator.role_version ORDER BY id DESC LIMIT 1"),
            connection.scalar("SELECT count(*) FROM migrator.role_version"),
            connection.scalar("SELECT md5(string_agg(id::text || name, ',' ORDER BY id)) FROM auth_group"),
            connection.scalar("SELECT md5(string_agg(group_id || ':' || permission_id, ',' ORDER BY id)) FROM auth_group_permissions"),
            connection.scalar("SELECT md5(string_agg(group_id || ':' || permission_id || ':' || object_pk, ',' ORDER BY id)) FROM guardian_groupobjectpermission"),
        ]
    }

    @Test("kill -9 in the middle of a role sync: the old version and rows remain, the lock is freed, a rerun completes")
    func killDuringSync() throws {
        try TestDatabase.with { db in
            let (folder, connection, roles) = try Self.syncedDatabase(db, projects: 40)
            let before = try Self.snapshot(connection)
            let runner = try E2E.start(E2E.args("update-roles", folder, "--roles", roles), environment: ["DATABASE_URL": Self.slowURL(db)])
            #expect(try Self.sleepingBackend(connection) != nil, "the sync never reached the sleeping trigger")
            kill(runner.process.0.processIdentifier, SIGKILL)
            _ = E2E.finish(runner, limit: 10)
            // No bound is claimed here (the migration's test measures it): the wait is a failure guard only.
            #expect(try DaemonProcess.wait(timeout: 60) { try connection.count(Self.advisoryLocks) == 0 })
            #expect(try Self.snapshot(connection) == before)

            let rerun = try E2E.run(E2E.args("update-roles", folder, "--roles", roles), database: db)
            #expect(rerun.exitCode == 0, rerun.transcript)
            #expect(try connection.count("SELECT count(*) FROM migrator.project_role_group WHERE role = 'Viewer'") == 40)
            #expect(try Self.snapshot(connection)[0] != before[0])
        }
    }

    @Test("pg_terminate_backend during a migration and during a sync: a clear error, a non-zero exit, nothing half-applied")
    func terminatedRunner() throws {
        try TestDatabase.with { db in
            let folder = try E2E.shipped(plus: [("0009_slow.sql", "CREATE TABLE slow_t (id int);\n\(Self.sleepIfSlow)\n")])
            let connection = try db.connect()
            let runner = try E2E.start(E2E.args("migrate", folder), environment: ["DATABASE_URL": Self.slowURL(db)])
            let pid = try #require(try Self.sleepingBackend(connection))
            try connection.query("SELECT pg_terminate_backend($1)", [pid])
            let run = E2E.finish(runner, limit: 20)
            #expect(run.exitCode == 1, run.transcript)
            #expect(run.stderr.contains("0009_slow.sql") && run.stderr.contains("terminating connection due to administrator command"), run.transcript)
            #expect(try !connection.tableExists("public.slow_t"))
            #expect(try connection.historyVersions() == Array(1...5))
            #expect(try connection.count(Self.advisoryLocks) == 0)
        }
        try TestDatabase.with { db in
            let (folder, connection, roles) = try Self.syncedDatabase(db, projects: 10)
            let before = try Self.snapshot(connection)
            let runner = try E2E.start(E2E.args("update-roles", folder, "--roles", roles), environment: ["DATABASE_URL": Self.slowURL(db)])
            let pid = try #require(try Self.sleepingBackend(connection))
            try connection.query("SELECT pg_terminate_backend($1)", [pid])
            let run = E2E.finish(runner, limit: 20)
            #expect(run.exitCode == 1, run.transcript)
            #expect(run.stderr.contains("role sync failed while it tried to create groups"), run.transcript)
            // libpq reports the server's FATAL message or, when the socket closed first, the closed connection.
            #expect(run.stderr.contains("terminating connection due to administrator command") || run.stderr.contains("server closed the connection unexpectedly"), run.transcript)
            #expect(try Self.snapshot(connection) == before)
        }
    }

    @Test("8 runners at once, mixing migrate, update-roles and serve: each exits as documented, nothing twice, no deadlock")
    func mixedRunners() throws {
        try TestDatabase.with { db in
            let folder = try MigrationFolder.shipped()
            var oneShots: [E2E.Started] = []
            var daemons: [DaemonProcess] = []
            for index in 0..<5 {
                oneShots.append(try E2E.start(index < 3 ? E2E.args("migrate", folder) : E2E.args("update-roles", folder), database: db))
                if index < 3 { daemons.append(try DaemonProcess(folder, database: db, ["--reconcile-interval", "1s"])) }
            }
            let runs = oneShots.map { E2E.finish($0) }
            for (index, run) in runs.enumerated() {
                // update-roles may start before the app's tables exist, and then says which is missing (exit 2).
                #expect(run.exitCode == 0 || (index >= 3 && run.exitCode == 2 && E2E.namesMissingAppTable(run)), run.transcript)
            }
            for daemon in daemons { #expect(daemon.waitUntilReady(), daemon.transcript) }
            let connection = try db.connect()
            try connection.query("INSERT INTO main_project (name) SELECT 'p' || i FROM generate_series(1, 30) AS i")
            for i in 1...10 { _ = try db.insertProject(connection, "single \(i)") }
            #expect(try DaemonProcess.wait(timeout: 10) {
                try connection.count("SELECT count(*) FROM main_project p WHERE (SELECT count(*) FROM migrator.project_role_group WHERE project_id = p.id) <> 5") == 0
            })
            for daemon in daemons { #expect(daemon.stop().code == 0, daemon.transcript) }
            #expect(try connection.historyVersions() == Array(1...5))
            #expect(try connection.count("SELECT count(*) FROM auth_group") == 40 * 5)
            #expect(try connection.count("SELECT count(*) FROM (SELECT name FROM auth_group GROUP BY name HAVING count(*) > 1) d") == 0)
            #expect(try connection.count("SELECT count(*) FROM auth_group_permissions") == 40 * 82)
            #expect(try connection.count("SELECT count(*) FROM guardian_groupobjectpermission") == 40 * 82)
            #expect(try connection.count("SELECT deadlocks FROM pg_stat_database WHERE datname = current_database()") == 0)
            #expect(try E2E.run(E2E.args("verify", folder), database: db).exitCode == 0)
        }
    }

    @Test("the server restarted under serve: it comes back, listens again, and reconciles what it missed")
    func serverRestart() throws {
        let server = try OwnServer()
        defer { server.stop() }
        try TestDatabase.with(admin: server.url) { db in
            let folder = try MigrationFolder.shipped()
            let daemon = try DaemonProcess(folder, database: db, ["--reconcile-interval", "1h"])
            #expect(daemon.waitUntilReady(), daemon.transcript)
            let connection = try db.connect()
            // A project the daemon's poll does not find (there is no insert trigger to switch off now): an id the app
            // supplies below the poll's watermark. Only a reconcile, or the first poll of a new session, finds it.
            try connection.query("SELECT setval(pg_get_serial_sequence('main_project', 'id'), 100)")
            let high = try db.insertProject(connection, "high")
            #expect(try DaemonProcess.wait(timeout: 10) { try connection.roleRows(high) == DaemonTests.complete }, daemon.transcript)
            #expect(DaemonProcess.wait(timeout: 60) { ((try? daemon.metrics())?["migrator_project_watermark"] ?? 0) >= Double(high) }, daemon.transcript)
            let missed = try #require(Int64(try connection.scalar("INSERT INTO main_project (id, name, description) VALUES (50, 'missed', '') RETURNING id") ?? ""))
            usleep(300_000)
            #expect(try connection.roleRows(missed) == [0, 0, 0])

            try server.restart()
            #expect(DaemonProcess.wait(timeout: 20) { ((try? daemon.metrics())?["migrator_reconnects_total"] ?? 0) >= 1 }, daemon.transcript)
            #expect(daemon.waitUntilReady(), daemon.transcript)
            let after = try db.connect()
            #expect(try DaemonProcess.wait(timeout: 10) { try after.roleRows(missed) == DaemonTests.complete }, daemon.transcript)
            let polled = try db.insertProject(after, "after the restart")
            #expect(try DaemonProcess.wait(timeout: 30) { try after.roleRows(polled) == DaemonTests.complete }, daemon.transcript)
            // Listening again: with --reconcile-interval 1h no reconcile runs after the new session's first, so the
            // rename reaches the daemon only as a notification.
            let reconciles = try #require(try daemon.metrics()["migrator_reconciles_total"])
            try after.query("UPDATE main_project SET name = 'renamed after the restart' WHERE id = $1", [polled])
            #expect(try DaemonProcess.wait(timeout: 30) {
                try after.count("SELECT count(*) FROM auth_group g JOIN migrator.project_role_group l ON l.group_id = g.id WHERE l.project_id = $1 AND g.name LIKE $2", [polled, "\(polled)_renamed after the restart_%"]) == 5
            }, daemon.transcript)
            #expect(DaemonProcess.wait(timeout: 30) { ((try? daemon.metrics())?[#"migrator_role_syncs_total{trigger="notify",result="ok"}"#]) == 1 }, daemon.transcript)
            #expect(try daemon.metrics()["migrator_reconciles_total"] == reconciles, "the notification did it, not a reconcile")
            #expect(daemon.stop().code == 0, daemon.transcript)
            let password = server.password
            #expect(!daemon.stderr.contains(password) && !daemon.stdout.contains(password))
        }
    }
}

extension FaultTests {
    // A server-wide setting would make every test's database read-only on the shared test server, so this one runs
    // on a server of its own.
    @Test("a server whose sessions are all read-only (ALTER SYSTEM default_transaction_read_only): migrate exits 6, also with --json, nothing is written; a dry run and status still read")
    func readOnlyServer() throws {
        let server = try OwnServer()
        defer { server.stop() }
        try TestDatabase.with(admin: server.url) { db in
            let password = server.password
            let admin = try db.connect()
            try admin.query("ALTER SYSTEM SET default_transaction_read_only = on")
            try admin.query("SELECT pg_reload_conf()")
            // Writable again before the test's database is dropped.
            defer {
                _ = try? admin.query("SET default_transaction_read_only = off")
                _ = try? admin.query("ALTER SYSTEM RESET default_transaction_read_only")
                _ = try? admin.query("SELECT pg_reload_conf()")
                _ = DaemonProcess.wait(timeout: 30) { (try? db.connect().scalar("SHOW default_transaction_read_only")) == "off" }
            }
            // A new session sees the reloaded setting.
            let settled = DaemonProcess.wait(timeout: 30) {
                (try? db.connect().scalar("SHOW default_transaction_read_only")) == "on"
            }
            #expect(settled, "the server never turned read-only")
            let folder = try E2E.folder([("0001_a.sql", "CREATE TABLE a (id int);\n")])
            let run = try E2E.run(E2E.args("migrate", folder), database: db, secrets: [password])
            #expect(run.exitCode == 6, run.transcript)
            #expect(run.stderr.contains("read-only"), run.transcript)
            let json = try E2E.run(E2E.args("migrate", folder, "--json"), database: db, secrets: [password])
            #expect(json.exitCode == 6, json.transcript)
            #expect(try decode(FailureJSON.self, json.stdout).error.code == "readOnly", json.transcript)
            #expect(try E2E.run(E2E.args("migrate", folder, "--dry-run"), database: db, secrets: [password]).exitCode == 0)
            #expect(try E2E.run(E2E.args("status", folder), database: db, secrets: [password]).exitCode == 0)
            #expect(try db.connect().count("SELECT count(*) FROM pg_namespace WHERE nspname = 'migrator'") == 0)
        }
    }

    @Test("a real hot standby: migrate and serve exit 6 naming it, status reads it, and nothing is written")
    func hotStandby() throws {
        let server = try OwnServer()
        defer { server.stop() }
        try TestDatabase.with(admin: server.url) { db in
            let folder = try MigrationFolder.shipped()
            let password = server.password
            #expect(try E2E.run(E2E.args("migrate", folder), database: db, secrets: [password]).exitCode == 0)
            let port = try server.startStandby()
            defer { server.stopStandby() }
            let standby = db.url(port: port)
            // The standby has replayed the migrated database once its history reads 8 rows there.
            let replayed = DaemonProcess.wait(timeout: 30) {
                (try? db.connect(port: port).count("SELECT count(*) FROM migrator.history")) == 5
            }
            #expect(replayed, "the standby never showed the migrated database")
            let newer = try E2E.shipped(plus: [("0009_more.sql", "CREATE TABLE more_t (id int);\n")])
            let environment = ["DATABASE_URL": standby]

            let migrate = try E2E.run(E2E.args("migrate", newer), environment: environment, secrets: [password])
            #expect(migrate.exitCode == 6, migrate.transcript)
            #expect(migrate.stderr.contains("is a read-only standby (in recovery)"), migrate.transcript)
            #expect(migrate.stderr.contains("target_session_attrs=read-write"), migrate.transcript)
            // Reading is fine on a standby: status shows the new file pending.
            let status = try E2E.run(E2E.args("status", newer, "--json"), environment: environment, secrets: [password])
            #expect(status.stdout.contains("0009") && status.stdout.contains("pending"), status.transcript)
            let serve = try E2E.run(
                E2E.args("serve", newer, "--http-address", "127.0.0.1:0"), environment: environment, secrets: [password], limit: 30
            )
            #expect(serve.exitCode == 6, serve.transcript)
            #expect(serve.stderr.contains("read-only standby"), serve.transcript)

            #expect(try db.connect().historyVersions() == Array(1...5))
        }
    }
}

/// A throwaway PostgreSQL server of the test's own (scripts/throwaway-postgres.sh), for faults that need to stop or
/// restart the server. It needs PostgreSQL's server binaries, as `scripts/test` does without MIGRATOR_TEST_DATABASE_URL.
final class OwnServer: @unchecked Sendable {
    let url: String
    let directory: String
    let bindir: String
    /// Its own password: every migrator run against it is checked for this one too.
    var password: String { URLComponents(string: url)?.password ?? "" }

    init() throws {
        let out = try Self.shell("throwaway_pg_start >&2 && printf '%s\\n%s\\n%s\\n' \"$THROWAWAY_PG_URL\" \"$THROWAWAY_PG_DIR\" \"$THROWAWAY_PG_BINDIR\"")
        let lines = out.split(separator: "\n").map(String.init)
        guard lines.count == 3 else { throw TestSetupError("could not start a server of the test's own (scripts/throwaway-postgres.sh): \(out)") }
        (url, directory, bindir) = (lines[0], lines[1], lines[2])
    }

    func restart() throws {
        _ = try Self.shell("throwaway_pg_as_owner \"\(bindir)/pg_ctl\" -D \"\(directory)/data\" -m fast -w restart >&2")
    }

    func stop() {
        _ = try? Self.shell("THROWAWAY_PG_DIR='\(directory)' THROWAWAY_PG_BINDIR='\(bindir)' throwaway_pg_stop")
    }

    /// A hot standby of this server, on a port of its own; returns that port. pg_basebackup -R over the trusted
    /// local socket, streaming, with a fast checkpoint (a spread one takes minutes); max_connections must be at
    /// least the primary's (scripts/throwaway-postgres.sh). Stop it with `stopStandby()` before `stop()`.
    func startStandby() throws -> Int {
        let port = try #require(URLComponents(string: url)?.port)
        let standby = "\(directory)/standby"
        let out = try Self.shell("""
            set -e
            throwaway_pg_as_owner "\(bindir)/pg_basebackup" -h '\(directory)' -p \(port) -U postgres -D '\(standby)' -R -X stream --checkpoint=fast >&2
            p=$(throwaway_pg_free_port)
            throwaway_pg_as_owner "\(bindir)/pg_ctl" -D '\(standby)' -l '\(directory)/standby.log' -w -t 60 \\
              -o "-p $p -k '\(directory)' -c listen_addresses=127.0.0.1 -c max_connections=300 -c hot_standby=on" start >&2 \\
              || { cat '\(directory)/standby.log' >&2; exit 1; }
            echo "$p"
            """)
        return try #require(Int(out.trimmingCharacters(in: .whitespacesAndNewlines)), "no standby port in \(out)")
    }

    func stopStandby() {
        _ = try? Self.shell("throwaway_pg_as_owner \"\(bindir)/pg_ctl\" -D '\(directory)/standby' -m fast -w stop >&2")
    }

    /// Runs `command` with the script's functions. Its output goes through files, not pipes: the server it starts
    /// would inherit a pipe and keep it open, and reading to the end would never finish.
    @discardableResult
    static func shell(_ command: String) throws -> String {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("own-server-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: folder) }
        let outPath = folder.appendingPathComponent("out").path
        let errPath = folder.appendingPathComponent("err").path
        let script = RepositoryPaths.root.appendingPathComponent("scripts/throwaway-postgres.sh").path
        let runner = folder.appendingPathComponent("run.sh").path
        try "exec >'\(outPath)' 2>'\(errPath)' </dev/null\n. '\(script)'\n\(command)\n".write(toFile: runner, atomically: true, encoding: .utf8)
        // system() waits for bash alone; Foundation's Process also waits on descriptors the server inherits.
        let status = Glibc.system("/bin/bash '\(runner)'")
        let output = (try? String(contentsOfFile: outPath, encoding: .utf8)) ?? ""
        guard status == 0 else {
            let errors = (try? String(contentsOfFile: errPath, encoding: .utf8)) ?? ""
            throw TestSetupError("\(command) failed: \(E2E.masked(errors))")
        }
        return output
    }
}

/// A session of its own, on a thread of its own, that waits for advisory lock `key` and answers the server's clock
/// (Unix seconds) at the moment it got it, through `test_lock_then_now(bigint)`; it then releases the lock and closes.
final class ServerClockLockWaiter: Sendable {
    private let result = Mutex<Double??>(nil)

    init(_ db: TestDatabase, key: Int64) {
        Thread.detachNewThread { [self] in
            let value: Double? = {
                guard let connection = try? db.connect() else { return nil }
                let got = (try? connection.scalar("SELECT test_lock_then_now($1::bigint)", [key])).flatMap { $0.flatMap(Double.init) }
                _ = try? connection.query("SELECT pg_advisory_unlock($1::bigint)", [key])
                return got
            }()
            result.withLock { $0 = .some(value) }
        }
    }

    /// The server time the lock was got; nil when it was not within `timeout` seconds (or the query failed).
    func wait(timeout: Double) -> Double? {
        DaemonProcess.wait(timeout: timeout) { result.withLock { $0 != nil } }
        return result.withLock { $0 ?? nil } ?? nil
    }
}
