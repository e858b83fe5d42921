import Foundation
import MigratorTestSupport
import Postgres
import Testing

@Suite("migrator end to end: several runners")
struct ConcurrencyTests {
    /// The shipped migrations plus one that seeds a row, with the default role sync: what 8 replicas run on deploy.
    @Test("8 runners started at once on an empty database apply every migration exactly once")
    func eightRunnersAtOnce() throws {
        try TestDatabase.with { db in
            let folder = try E2E.shipped(plus: [
                ("0009_seed.sql", "INSERT INTO main_project (name) VALUES ('seeded once');\n"),
            ])
            let started = try (0..<8).map { _ in try E2E.start(E2E.args("migrate", folder, "--json"), database: db) }
            let runs = started.map { E2E.finish($0, limit: 60) }
            var appliedVersions: [Int64] = []
            for run in runs {
                #expect(run.exitCode == 0, run.transcript)
                if let report = try? decode(MigrateJSON.self, run.stdout) {
                    appliedVersions += report.applied.map(\.version)
                } else {
                    Issue.record("stdout is not the --json report\n\(run.stdout)")
                }
            }
            #expect(appliedVersions.sorted() == Array(1...5) + [9], "each migration must be applied by exactly one runner")

            let connection = try db.connect()
            #expect(try connection.historyVersions() == Array(1...5) + [9])
            #expect(try connection.count("SELECT count(*) FROM migrator.history WHERE state = 'applied'") == 6)
            #expect(try connection.count("SELECT count(*) FROM main_project WHERE name = 'seeded once'") == 1)
            let verify = try E2E.run(E2E.args("verify", folder), database: db)
            #expect(verify.exitCode == 0, verify.transcript)
        }
    }

    @Test("CREATE INDEX CONCURRENTLY outside a transaction completes while another runner waits for the lock")
    func concurrentIndexWithWaitingRunner() throws {
        try TestDatabase.with { db in
            let folder = try E2E.folder([
                ("0001_table.sql", "CREATE TABLE big AS SELECT g AS id, md5(g::text) AS label FROM generate_series(1, 5000) g;\n"),
                ("0002_index.sql", """
                    -- migrator:no-transaction
                    SELECT pg_sleep(2);
                    CREATE INDEX CONCURRENTLY big_label_idx ON big (label);

                    """),
            ])
            let connection = try db.connect()
            let runnerA = try E2E.start(E2E.migrate(folder), database: db)
            let aHoldsLock = try connection.waitForAdvisoryLockHolder()
            #expect(aHoldsLock, "runner A never took the lock")
            let runnerB = try E2E.start(E2E.migrate(folder), database: db)

            let a = E2E.finish(runnerA, limit: 30)
            let b = E2E.finish(runnerB, limit: 30)
            #expect(a.exitCode == 0, a.transcript)
            #expect(b.exitCode == 0, b.transcript)
            #expect(a.stdout.contains("applied 0002_index"), a.transcript)
            #expect(b.stderr.contains("waiting for the migration lock"), "runner B did not wait, so the test proved nothing\n\(b.stderr)")
            #expect(b.stdout.contains("nothing to migrate"), b.transcript)
            #expect(try connection.scalar("SELECT indisvalid FROM pg_index WHERE indexrelid = 'big_label_idx'::regclass") == "t")
            #expect(try connection.historyVersions() == [1, 2])
        }
    }

    @Test("a runner that cannot get the lock in time exits 5 and names the holder's pid")
    func lockTimeout() throws {
        try TestDatabase.with { db in
            let folder = try E2E.folder([("0001_a.sql", "CREATE TABLE a (id int);\n")])
            let holder = try db.connect()
            try holder.query("SET application_name = 'deploy-holder-test'")
            try holder.query("SELECT pg_advisory_lock($1::bigint)", [E2E.lockKey])
            let run = try E2E.run(E2E.migrate(folder, "--lock-timeout", "1s"), database: db, limit: 20)
            #expect(run.exitCode == 5, run.transcript)
            #expect(run.stderr.contains("pid \(holder.backendPID)"), run.transcript)
            // The holder as an operator needs it: its application, its user, since when, and for how long it has
            // been in its state (at least the second this run waited).
            #expect(run.stderr.contains("application_name deploy-holder-test, user \(try Server.adminUser), connected since 20"), run.transcript)
            // The last sentence naming the holder is the error's, written after the second of waiting.
            let idleSeconds = run.stderr.matches(of: /idle for (\d+) s/).last.flatMap { Int($0.1) }
            #expect((idleSeconds ?? -1) >= 1, run.transcript)
            let json = try E2E.run(E2E.migrate(folder, "--lock-timeout", "1s", "--json"), database: db, limit: 20)
            #expect(json.exitCode == 5, json.transcript)
            let object = try JSONSerialization.jsonObject(with: Data(json.stdout.utf8)) as? [String: Any]
            let error = object?["error"] as? [String: Any]
            #expect(object?["exitCode"] as? Int == 5 && (error?["message"] as? String)?.contains("deploy-holder-test") == true, json.transcript)
            #expect(try holder.historyVersions() == [])
            #expect(try !holder.tableExists("a"))

            try holder.query("SELECT pg_advisory_unlock($1::bigint)", [E2E.lockKey])
            let after = try E2E.run(E2E.migrate(folder, "--lock-timeout", "1s"), database: db)
            #expect(after.exitCode == 0, after.transcript)
        }
    }

    @Test("a runner killed in the middle of a migration outside a transaction leaves a row the next run resumes from")
    func killedRunnerResumes() throws {
        try TestDatabase.with { db in
            let folder = try E2E.folder([
                ("0001_killed.sql", """
                    -- migrator:no-transaction
                    CREATE TABLE k (id int);
                    SELECT pg_sleep(1.5);
                    INSERT INTO k VALUES (1);

                    """),
            ])
            let connection = try db.connect()
            let runner = try E2E.start(E2E.migrate(folder), database: db)
            let deadline = Date().addingTimeInterval(15)
            var sleeping = false
            while !sleeping, Date() < deadline {
                sleeping = try connection.count("SELECT count(*) FROM pg_stat_activity WHERE query LIKE 'SELECT pg_sleep(1.5)%'") > 0
                if !sleeping { Thread.sleep(forTimeInterval: 0.02) }
            }
            #expect(sleeping, "statement 2 never started")
            kill(runner.process.0.processIdentifier, SIGKILL)
            _ = E2E.finish(runner, limit: 10)

            let row = try #require(try connection.query(
                "SELECT state, failed_statement, statements_done, error FROM migrator.history WHERE version = 1"
            ).first)
            #expect(row["state"] == "failed")
            #expect(row.int("failed_statement") == 2)
            #expect(row.int("statements_done") == 1)

            // The killed runner's server session finishes its statement, then frees the lock; the rerun waits for it.
            let rerun = try E2E.run(E2E.migrate(folder, "--json"), database: db, limit: 30)
            #expect(rerun.exitCode == 0, rerun.transcript)
            #expect(try decode(MigrateJSON.self, rerun.stdout).applied.first?.resumedAtStatement == 2)
            #expect(try connection.count("SELECT count(*) FROM k") == 1)
            #expect(try connection.scalar("SELECT state FROM migrator.history WHERE version = 1") == "applied")
        }
    }
}
