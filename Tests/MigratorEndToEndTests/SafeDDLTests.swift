import Foundation
import MigratorTestSupport
import Postgres
import SystemSupport
import Testing

/// A `migrate` run whose standard error is read while it runs, so that a test can wait for what it logs (a refused
/// lock, a progress line) before it lets the next thing happen.
final class WatchedRun: @unchecked Sendable {
    let process: Process
    let startedAt = ContinuousClock.now
    private let lock = NSLock()
    private var stderrText = ""
    private var stdoutText = ""
    private let drained = DispatchGroup()

    init(_ arguments: [String], database: TestDatabase) throws {
        let started = try MigratorProcess.start(arguments, environment: ["DATABASE_URL": database.url])
        process = started.0
        for (pipe, isStderr) in [(started.1, false), (started.2, true)] {
            drained.enter()
            pipe.fileHandleForReading.readabilityHandler = { [weak self] handle in
                let data = handle.availableData
                if data.isEmpty {
                    handle.readabilityHandler = nil
                    self?.drained.leave()
                    return
                }
                self?.append(data, isStderr)
            }
        }
    }

    deinit {
        if process.isRunning { kill(process.processIdentifier, SIGKILL) }
    }

    private func append(_ data: Data, _ isStderr: Bool) {
        lock.lock()
        defer { lock.unlock() }
        if isStderr { stderrText += String(decoding: data, as: UTF8.self) } else { stdoutText += String(decoding: data, as: UTF8.self) }
    }

    var stderr: String { lock.lock(); defer { lock.unlock() }; return stderrText }

    /// What was logged so far, for a failing expectation (the password masked).
    var transcript: Comment { Comment(rawValue: E2E.masked("--- stderr so far\n\(stderr)")) }

    /// How many lines of standard error contain `text`.
    func lines(containing text: String) -> Int {
        stderr.split(separator: "\n").count { $0.contains(text) }
    }

    /// Waits until `condition` holds on what was logged so far, or the process ends, or `timeout` passes (a guard
    /// against a hang, not a bound the test asserts).
    @discardableResult
    func waitFor(timeout: Double = 60, _ condition: (String) -> Bool) -> Bool {
        DaemonProcess.wait(timeout: timeout) { condition(self.stderr) || !self.process.isRunning } && condition(stderr)
    }

    /// Waits for the exit (killing the run after `limit` seconds) and returns it, checked for secrets.
    func finish(limit: Double = 120, sourceLocation: SourceLocation = #_sourceLocation) -> Run {
        let exited = DaemonProcess.wait(timeout: limit) { !self.process.isRunning }
        if !exited { kill(process.processIdentifier, SIGKILL) }
        process.waitUntilExit()
        _ = drained.wait(timeout: .now() + 5)
        let elapsed = ContinuousClock.now - startedAt
        lock.lock()
        let result = MigratorProcess.Result(exitCode: process.terminationStatus, stdout: stdoutText, stderr: stderrText)
        lock.unlock()
        let run = Run(result: result, seconds: Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18)
        #expect(exited, "migrator was still running after \(limit) s and was killed", sourceLocation: sourceLocation)
        E2E.expectNoSecrets(in: run, sourceLocation: sourceLocation)
        return run
    }
}

/// Migrations that meet the app's locks: retried with backoff, the blocker named, the app's queries never queued
/// behind a lock request for longer than the lock timeout, concurrent index builds cleaned up, progress reported.
@Suite("Lock-aware migrations: retries, blockers, INVALID indexes, progress")
struct SafeDDLTests {
    static let refused = "a lock the migration needs was not granted; trying again"

    /// Whether a session other than `except` waits for `mode` on table `table`.
    static func waitsForLock(_ connection: Connection, table: String, mode: String) throws -> Bool {
        try connection.count(
            "SELECT count(*) FROM pg_locks WHERE relation = to_regclass($1) AND mode = $2 AND NOT granted",
            [table, mode]
        ) > 0
    }

    @Test("a migration blocked by an app's open transaction is retried and succeeds once the transaction ends; the app's queries queued behind each try wait no longer than the lock timeout")
    func retriesUntilTheBlockerEnds() throws {
        try TestDatabase.with { db in
            let folder = try E2E.folder([("0001_a.sql", "CREATE TABLE a (id int);\nINSERT INTO a SELECT generate_series(1, 100);\n")])
            #expect(try E2E.run(E2E.migrate(folder), database: db).exitCode == 0)
            try folder.write("0002_alter.sql", "ALTER TABLE a ADD COLUMN b int;\n")
            let blocker = try db.connect()
            try blocker.query("SET application_name = 'app-blocker'")
            try blocker.query("BEGIN")
            try blocker.query("SELECT count(*) FROM a")
            let blockerPID = try #require(try blocker.scalar("SELECT pg_backend_pid()::text"))

            let run = try WatchedRun(E2E.migrate(folder, "--ddl-lock-timeout", "1s", "--ddl-lock-retries", "5m"), database: db)
            // The app: its queries must never wait longer than the lock timeout behind the migration's lock request.
            // Its own lock_timeout (the migration's plus a margin for the server's own work) turns a longer wait into
            // an error, measured by the server rather than by this test's clock.
            let app = try db.connect()
            try app.query("SET lock_timeout = '1500ms'")
            let observer = try db.connect()
            var appWaits: [Duration] = []
            for round in 1...3 {
                // The migration's ALTER waits for its lock: a query of the app now queues behind it.
                let waiting = DaemonProcess.wait(timeout: 60) { (try? Self.waitsForLock(observer, table: "a", mode: "AccessExclusiveLock")) == true }
                #expect(waiting, "round \(round): the migration's try never waited for its lock; \(run.transcript)")
                guard waiting else { return }
                let start = ContinuousClock.now
                #expect(try app.count("SELECT count(*) FROM a") == 100, "round \(round)")
                appWaits.append(ContinuousClock.now - start)
                // The try was refused and logged before the next one starts.
                #expect(run.waitFor { _ in run.lines(containing: Self.refused) >= round }, "round \(round): \(run.transcript)")
            }
            try blocker.query("COMMIT")
            let finished = run.finish()
            #expect(finished.exitCode == 0, finished.transcript)
            #expect(try observer.historyVersions() == [1, 2])
            #expect(try observer.count("SELECT count(*) FROM information_schema.columns WHERE table_name = 'a' AND column_name = 'b'") == 1)
            // Each refusal names the session that held the lock and what the migration waited for.
            let refusals = finished.stderr.split(separator: "\n").filter { $0.contains(Self.refused) }
            #expect(refusals.count >= 3, finished.transcript)
            #expect(refusals.allSatisfy { $0.contains("pid \(blockerPID) (application_name app-blocker") }, finished.transcript)
            #expect(refusals.allSatisfy { $0.contains("AccessExclusiveLock on relation a") }, finished.transcript)
            // Every app query returned (none hit its 1.5 s lock_timeout); printed for the reader.
            print("app queries queued behind the migration's tries waited: \(appWaits.map { String(format: "%.2f s", Double($0.components.attoseconds) / 1e18 + Double($0.components.seconds)) })")
        }
    }

    @Test("a lock never granted within --ddl-lock-retries fails the migration naming the blocker: pid, application, user, state, how long, its query")
    func failsNamingTheBlocker() throws {
        try TestDatabase.with { db in
            let folder = try E2E.folder([("0001_a.sql", "CREATE TABLE a (id int);\n")])
            #expect(try E2E.run(E2E.migrate(folder), database: db).exitCode == 0)
            try folder.write("0002_alter.sql", "ALTER TABLE a ADD COLUMN b int;\n")
            let blocker = try db.connect()
            try blocker.query("SET application_name = 'app-blocker'")
            let pid = try #require(try blocker.scalar("SELECT pg_backend_pid()::text"))
            let user = try #require(try blocker.scalar("SELECT current_user::text"))
            try blocker.query("BEGIN")
            // The blocker's last query, the one the report shows, is the one that took the lock.
            try blocker.query("SELECT count(*) FROM a -- the report's query\n")
            let run = try E2E.run(E2E.migrate(folder, "--ddl-lock-timeout", "300ms", "--ddl-lock-retries", "2s", "--json"), database: db, limit: 60)
            #expect(run.exitCode == 1, run.transcript)
            let failure = try decode(FailureJSON.self, run.stdout)
            #expect(failure.error.server?.sqlState == "55P03", run.transcript)
            let note = try #require(failure.error.notes.first { $0.contains("the lock was not granted in") }, run.transcript)
            #expect(note.contains("tries over"), run.transcript)
            #expect(note.contains("waiting for AccessExclusiveLock on relation a"), run.transcript)
            #expect(note.contains("pid \(pid) (application_name app-blocker, user \(user), idle in transaction, transaction open "), run.transcript)
            #expect(note.contains("query started "), run.transcript)
            #expect(note.contains("SELECT count(*) FROM a -- the report's query"), run.transcript)
            #expect(run.stderr.split(separator: "\n").count { $0.contains(Self.refused) } >= 1, run.transcript)
            try blocker.query("ROLLBACK")
            #expect(try blocker.historyVersions() == [1])
        }
    }

    @Test("--ddl-lock-retries 0 fails at the first refusal, still naming the blocker")
    func noRetries() throws {
        try TestDatabase.with { db in
            let folder = try E2E.folder([("0001_a.sql", "CREATE TABLE a (id int);\n")])
            #expect(try E2E.run(E2E.migrate(folder), database: db).exitCode == 0)
            try folder.write("0002_alter.sql", "ALTER TABLE a ADD COLUMN b int;\n")
            let blocker = try db.connect()
            try blocker.query("SET application_name = 'app-blocker'")
            try blocker.query("BEGIN")
            try blocker.query("LOCK TABLE a IN ACCESS SHARE MODE")
            let run = try E2E.run(E2E.migrate(folder, "--ddl-lock-timeout", "500ms", "--ddl-lock-retries", "0"), database: db, limit: 60)
            #expect(run.exitCode == 1, run.transcript)
            #expect(run.stderr.contains("the lock was not granted in 1 try"), run.transcript)
            #expect(run.stderr.contains("application_name app-blocker"), run.transcript)
            #expect(!run.stderr.contains(Self.refused), run.transcript)
            try blocker.query("ROLLBACK")
        }
    }

    @Test("a CREATE UNIQUE INDEX CONCURRENTLY that fails on a duplicate key leaves no INVALID index; one that was there before stays, and status and verify report it")
    func failedConcurrentIndexLeavesNothing() throws {
        try TestDatabase.with { db in
            let folder = try E2E.folder([("0001_d.sql", "CREATE TABLE d (v int);\nINSERT INTO d VALUES (1), (1), (2);\n")])
            #expect(try E2E.run(E2E.migrate(folder), database: db).exitCode == 0)
            let connection = try db.connect()
            // An INVALID index that is not this migration's: a failed build of the app's own.
            #expect(throws: PostgresError.self) { try connection.query("CREATE UNIQUE INDEX CONCURRENTLY theirs ON d (v)") }
            try folder.write("0002_index.sql", "-- migrator:no-transaction\nCREATE UNIQUE INDEX CONCURRENTLY d_v ON d (v);\n")
            let run = try E2E.run(E2E.migrate(folder), database: db)
            #expect(run.exitCode == 1, run.transcript)
            #expect(run.stderr.contains("23505"), run.transcript)
            #expect(run.stderr.contains("the INVALID index this statement left behind (public.d_v) was dropped; nothing of it remains"), run.transcript)
            let invalid = "SELECT string_agg(c.relname, ',' ORDER BY c.relname) FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid WHERE NOT i.indisvalid"
            #expect(try connection.scalar(invalid) == "theirs")

            // status and verify name the one that is left, with what to do.
            let status = try E2E.run(E2E.args("status", folder), database: db)
            #expect(status.stdout.contains("warning: index public.theirs on public.d is INVALID"), status.transcript)
            #expect(status.stdout.contains("DROP INDEX CONCURRENTLY public.theirs"), status.transcript)
            let json = try E2E.run(E2E.args("status", folder, "--json"), database: db)
            struct Hazards: Decodable {
                struct Hazard: Decodable { var kind: String; var name: String; var table: String }
                var hazards: [Hazard]
            }
            let hazards = try decode(Hazards.self, json.stdout).hazards
            #expect(hazards.map(\.kind) == ["invalid-index"], json.transcript)
            #expect(hazards.map(\.name) == ["public.theirs"], json.transcript)

            // Once the data is fixed, the migration resumes and builds a valid index.
            try connection.query("DELETE FROM d WHERE ctid = (SELECT max(ctid) FROM d WHERE v = 1)")
            let again = try E2E.run(E2E.migrate(folder), database: db)
            #expect(again.exitCode == 0, again.transcript)
            #expect(try connection.scalar("SELECT indisvalid::text FROM pg_index WHERE indexrelid = 'd_v'::regclass") == "true")
        }
    }

    @Test("a CREATE INDEX CONCURRENTLY that waits too long for an app's old transaction is retried after dropping the INVALID index it left, and succeeds once the transaction ends")
    func concurrentIndexRetried() throws {
        try TestDatabase.with { db in
            let folder = try E2E.folder([("0001_c.sql", "CREATE TABLE c (v int);\nINSERT INTO c SELECT generate_series(1, 1000);\n")])
            #expect(try E2E.run(E2E.migrate(folder), database: db).exitCode == 0)
            try folder.write("0002_index.sql", "-- migrator:no-transaction\nCREATE INDEX CONCURRENTLY c_v ON c (v);\n")
            // A snapshot older than the index: the build waits for it to end.
            let blocker = try db.connect()
            try blocker.query("SET application_name = 'app-reporting'")
            try blocker.query("BEGIN ISOLATION LEVEL REPEATABLE READ")
            try blocker.query("SELECT 1")
            let run = try WatchedRun(E2E.migrate(folder, "--ddl-lock-timeout", "500ms", "--ddl-lock-retries", "5m"), database: db)
            // Two refusals, each followed by the drop of the INVALID index its try left.
            #expect(run.waitFor { _ in run.lines(containing: Self.refused) >= 2 && run.lines(containing: "dropping the INVALID index") >= 2 }, run.transcript)
            try blocker.query("COMMIT")
            let finished = run.finish()
            #expect(finished.exitCode == 0, finished.transcript)
            let observer = try db.connect()
            #expect(try observer.historyVersions() == [1, 2])
            #expect(try observer.count("SELECT count(*) FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid WHERE c.relname LIKE 'c_v%'") == 1)
            #expect(try observer.count("SELECT count(*) FROM pg_index WHERE NOT indisvalid") == 0)
            #expect(finished.stderr.contains("application_name app-reporting"), finished.transcript)
        }
    }

    @Test("an index build on 2,000,000 rows reports its progress while it runs: command, phase, percent of blocks")
    func progressOfAnIndexBuild() throws {
        try TestDatabase.with { db in
            // The last row makes the build wait on an advisory lock the test holds: the build is then provably
            // running, past its scan of the other rows, until the test lets it go.
            let folder = try E2E.folder([("0001_p.sql", """
                CREATE TABLE p (x int);
                INSERT INTO p SELECT generate_series(2, 2000000);
                INSERT INTO p VALUES (1);
                CREATE FUNCTION gate(x int) RETURNS int IMMUTABLE LANGUAGE plpgsql SET lock_timeout = 0 AS $$
                BEGIN
                  IF x = 1 THEN PERFORM pg_advisory_lock_shared(4242); PERFORM pg_advisory_unlock_shared(4242); END IF;
                  RETURN x;
                END $$;

                """)])
            #expect(try E2E.run(E2E.migrate(folder), database: db, limit: 120).exitCode == 0)
            try folder.write("0002_index.sql", "CREATE INDEX p_gate ON p (gate(x));\n")
            let gate = try db.connect()
            try gate.query("SELECT pg_advisory_lock(4242)")
            let run = try WatchedRun(E2E.migrate(folder, "--progress-every", "200ms"), database: db)
            let reported = run.waitFor(timeout: 120) { log in
                log.split(separator: "\n").contains { $0.contains("statement progress") && $0.contains("building index: scanning table") && $0.contains("% (") }
            }
            try gate.query("SELECT pg_advisory_unlock(4242)")
            let finished = run.finish()
            #expect(reported, finished.transcript)
            #expect(finished.exitCode == 0, finished.transcript)
            let line = try #require(finished.stderr.split(separator: "\n").first { $0.contains("statement progress") && $0.contains("% (") })
            #expect(line.contains("0002_index running for "), finished.transcript)
            #expect(line.contains("CREATE INDEX, building index: scanning table"), finished.transcript)
            #expect(line.contains("progress.percent="), finished.transcript)
            #expect(line.contains("blocks)"), finished.transcript)
            #expect(line.contains("migration.version=2"), finished.transcript)
        }
    }

    @Test("verify passes on an up-to-date database and fails (exit 3) once an index is INVALID, naming it; a NOT VALID constraint is said but does not fail it")
    func verifyAndInvalidIndex() throws {
        try TestDatabase.with { db in
            let folder = try E2E.shipped(plus: [
                ("0009_d.sql", "CREATE TABLE d (v int);\nINSERT INTO d VALUES (1), (1);\n"),
                ("0010_check.sql", "ALTER TABLE d ADD CONSTRAINT d_v_positive CHECK (v > 0) NOT VALID;\n"),
            ])
            #expect(try E2E.run(["migrate", "--migrations", folder.path], database: db).exitCode == 0)
            let clean = try E2E.run(E2E.args("verify", folder), database: db)
            #expect(clean.exitCode == 0, clean.transcript)
            #expect(clean.stdout.contains("warning: constraint d_v_positive on public.d is NOT VALID"), clean.transcript)
            let connection = try db.connect()
            #expect(throws: PostgresError.self) { try connection.query("CREATE UNIQUE INDEX CONCURRENTLY d_v ON d (v)") }
            let verify = try E2E.run(E2E.args("verify", folder), database: db)
            #expect(verify.exitCode == 3, verify.transcript)
            #expect(verify.stderr.contains("error: index public.d_v on public.d is INVALID"), verify.transcript)
            #expect(verify.stderr.contains("1 INVALID index"), verify.transcript)
        }
    }

    @Test("status reports a constraint added NOT VALID with how to validate it; verify says it and still passes on it")
    func unvalidatedConstraint() throws {
        try TestDatabase.with { db in
            let folder = try E2E.folder([
                ("0001_t.sql", "CREATE TABLE t (v int);\n"),
                ("0002_check.sql", "ALTER TABLE t ADD CONSTRAINT t_v_positive CHECK (v > 0) NOT VALID;\n"),
            ])
            #expect(try E2E.run(E2E.migrate(folder), database: db).exitCode == 0)
            let status = try E2E.run(E2E.args("status", folder), database: db)
            #expect(status.stdout.contains("warning: constraint t_v_positive on public.t is NOT VALID"), status.transcript)
            #expect(status.stdout.contains("ALTER TABLE public.t VALIDATE CONSTRAINT t_v_positive"), status.transcript)
            let json = try E2E.run(E2E.args("status", folder, "--json"), database: db)
            #expect(json.stdout.contains("\"unvalidated-constraint\""), json.transcript)
            #expect(json.stdout.contains("CHECK ((v > 0)) NOT VALID"), json.transcript)
        }
    }
}

/// The same lock-awareness where the role sync and `serve` meet it.
@Suite("Lock-aware migrations: the role hook and serve")
struct SafeDDLServeTests {
    @Test("the post-migrate role sync refused a lock by an app's transaction is rolled back and tried again, and completes once the transaction ends")
    func hookRetried() throws {
        try TestDatabase.with { db in
            let folder = try MigrationFolder.shipped()
            #expect(try E2E.run(["migrate", "--migrations", folder.path], database: db).exitCode == 0)
            let connection = try db.connect()
            let project = try db.insertProject(connection, "locked-out")
            // The app holds a lock that keeps every write out of auth_group_permissions.
            let blocker = try db.connect()
            try blocker.query("BEGIN")
            try blocker.query("LOCK TABLE auth_group_permissions IN SHARE MODE")
            let run = try WatchedRun(
                ["migrate", "--migrations", folder.path, "--force-roles", "--ddl-lock-timeout", "300ms", "--ddl-lock-retries", "5m"],
                database: db
            )
            let message = "a lock the post-migrate hook needs was not granted; trying again"
            #expect(run.waitFor { _ in run.lines(containing: message) >= 2 }, run.transcript)
            // Nothing of a refused try remains: the project is still without its groups.
            #expect(try connection.roleRows(project)[0] == 0)
            try blocker.query("COMMIT")
            let finished = run.finish()
            #expect(finished.exitCode == 0, finished.transcript)
            #expect(try connection.roleRows(project).allSatisfy { $0 > 0 }, finished.transcript)
        }
    }

    @Test("serve's /readyz reason during a long start-up migration says what the statement is doing")
    func readyzShowsProgress() throws {
        try TestDatabase.with { db in
            let folder = try E2E.shipped(plus: [("0009_p.sql", """
                CREATE TABLE p (x int);
                INSERT INTO p SELECT generate_series(2, 200000);
                INSERT INTO p VALUES (1);
                CREATE FUNCTION gate(x int) RETURNS int IMMUTABLE LANGUAGE plpgsql SET lock_timeout = 0 AS $$
                BEGIN
                  IF x = 1 THEN PERFORM pg_advisory_lock_shared(4242); PERFORM pg_advisory_unlock_shared(4242); END IF;
                  RETURN x;
                END $$;

                """)])
            #expect(try E2E.run(["migrate", "--migrations", folder.path], database: db).exitCode == 0)
            try folder.write("0010_index.sql", "CREATE INDEX p_gate ON p (gate(x));\n")
            let gate = try db.connect()
            try gate.query("SELECT pg_advisory_lock(4242)")
            let daemon = try DaemonProcess(folder, database: db, ["--progress-every", "200ms"])
            var reason = ""
            let said = DaemonProcess.wait(timeout: 60) {
                reason = (try? daemon.get("/readyz").body) ?? ""
                return reason.contains("applying migrations: 0010_index running for") && reason.contains("CREATE INDEX, building index")
            }
            #expect(said, "last /readyz answer: \(reason)")
            #expect((try? daemon.get("/readyz").status) == 503)
            try gate.query("SELECT pg_advisory_unlock(4242)")
            #expect(daemon.waitUntilReady(timeout: 60), daemon.transcript)
            #expect(daemon.stop().code == 0)
        }
    }
}
