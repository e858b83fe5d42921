import Foundation
import InMemoryLogging
import Logging
@testable import MigrationEngine
import MigratorTestSupport
import Postgres
import Synchronization
import Testing

/// The engine against a real server, each test in its own database.
@Suite("Migrator engine")
struct MigratorTests {
    static func migrator(
        _ database: TestDatabase, _ folder: MigrationFolder, hooks: [any PostMigrateHook] = [],
        logger: Logger = Logger(label: "test"), configure: (inout MigratorOptions) -> Void = { _ in }
    ) -> Migrator {
        var options = MigratorOptions(migrationsPath: folder.path, lockTimeout: .seconds(20))
        configure(&options)
        return Migrator(connection: ConnectionConfig(connectionString: database.url), options: options, hooks: hooks, logger: logger)
    }

    static func history(_ connection: Connection) throws -> [Row] {
        try connection.query("SELECT version, state, checksum, failed_statement, statements_done, error FROM migrator.history ORDER BY version").rows
    }

    @Test("applies in order, records history with checksums, and a second run does nothing")
    func appliesInOrder() throws {
        try TestDatabase.with { database in
            let folder = try MigrationFolder()
            try folder.write("0002_insert.sql", "INSERT INTO log (step) VALUES ('two');")
            try folder.write("1_create.sql", "CREATE TABLE log (n serial, step text);\nINSERT INTO log (step) VALUES ('one');")
            let report = try Self.migrator(database, folder).migrate()
            #expect(report.applied.map(\.version) == [1, 2])
            let connection = try database.connect()
            #expect(try connection.query("SELECT string_agg(step, ',' ORDER BY n) AS s FROM log").first?["s"] == "one,two")
            let rows = try Self.history(connection)
            #expect(rows.map { $0["state"] } == ["applied", "applied"])
            let file = try MigrationDirectory(path: folder.path).entries()[0].load()
            #expect(rows[0]["checksum"] == file.checksum)

            let again = try Self.migrator(database, folder).migrate()
            #expect(again.applied.isEmpty)
            #expect(try connection.query("SELECT count(*) AS c FROM log").first?.int("c") == 2)
        }
    }

    @Test("a no-op run costs the same round trips for 3 and for 60 applied migrations")
    func constantRoundTrips() throws {
        func noopRoundTrips(_ count: Int) throws -> Int {
            try TestDatabase.with("noop\(count)") { database in
                let folder = try MigrationFolder()
                for index in 1...count { try folder.write(String(format: "%04d_m%d.sql", index, index), "CREATE TABLE t\(index) (id int);") }
                _ = try Self.migrator(database, folder).migrate()
                return try Self.migrator(database, folder).migrate().roundTrips
            }
        }
        let small = try noopRoundTrips(3)
        let large = try noopRoundTrips(60)
        #expect(small == large)
        #expect(small <= 3)
    }

    @Test("the history read by binary COPY gives every column as the SELECT does; a column altered by hand to another type is read by the SELECT")
    func historyCopyMatchesSelect() throws {
        try TestDatabase.with { database in
            let folder = try MigrationFolder()
            try folder.write("0001_a.sql", "CREATE TABLE a (id int);")
            try folder.write("0002_b.sql", "-- migrator:no-transaction\nCREATE TABLE b (id int);\nCREATE TABLE c (id int);")
            try folder.write("0002_b.down.sql", "DROP TABLE c;\nDROP TABLE b;")
            _ = try Self.migrator(database, folder).migrate()
            let connection = try database.connect()
            // Values that differ between the two reads when a type is read wrong: a failed row with progress,
            // a quote and a backslash, a timestamp before 2000.
            try connection.query(
                """
                UPDATE migrator.history SET error = $1, superseded = 'sha256:old', applied_at = '1999-12-31 23:59:59.998877+00',
                       duration_ms = 0.125
                WHERE version = 1
                """,
                ["a \"quoted\" back\\slash"]
            )
            // The ALTER below rounds each double to 15 significant digits (a measured 14.411610999999999 ms becomes
            // 14.411611): the other row's duration is set to a value both types hold exactly, so that the comparison
            // is about the read and not about what the ALTER did to the data.
            try connection.query("UPDATE migrator.history SET duration_ms = 2.5 WHERE version = 2")
            let store = HistoryStore(schema: try OwnSchema(OwnSchema.defaultName))
            let viaCopy = try #require(try store.read(connection, legacyFallback: false)).records
            let viaSelect = try store.decodeForTests(connection.query(store.selectSQL(store.table, layout: .current)))
            #expect(viaCopy.count == 2)
            #expect(String(describing: viaCopy) == String(describing: viaSelect))
            #expect(viaCopy[0].appliedAt == "1999-12-31T23:59:59.998Z")
            #expect(viaCopy[1].down != nil)

            // A type of another width: the COPY's bytes do not fit, the SELECT reads the same rows.
            try connection.execute(script: "ALTER TABLE migrator.history ALTER COLUMN duration_ms TYPE numeric")
            let altered = try #require(try store.read(connection, legacyFallback: false)).records
            #expect(String(describing: altered) == String(describing: viaSelect))
            #expect(try Self.migrator(database, folder).migrate().applied.isEmpty)
        }
    }

    @Test("a failing transactional migration leaves nothing, and the error points into the file")
    func failureRollsBack() throws {
        try TestDatabase.with { database in
            let folder = try MigrationFolder()
            try folder.write("0001_ok.sql", "CREATE TABLE ok (id int);")
            try folder.write("0002_bad.sql", "CREATE TABLE half (id int);\nINSERT INTO half VALUES (1);\n\n  CREATE INDEX ON sites (name);\n")
            try folder.write("0003_later.sql", "CREATE TABLE later (id int);")
            let error = #expect(throws: MigrationError.self) { try Self.migrator(database, folder).migrate() }
            #expect(error?.code == .migrationFailed)
            #expect(error?.appliedBeforeFailure == ["0001_ok"])
            #expect(error?.reports(at: "0002_bad.sql:4:19", "relation \"sites\" does not exist") == true, "\(String(describing: error))")
            #expect(error?.diagnostics.first?.location?.lineText == "  CREATE INDEX ON sites (name);")
            #expect(error?.serverError?.sqlState == "42P01")
            let connection = try database.connect()
            #expect(try connection.query("SELECT to_regclass('half') IS NULL AS gone").first?.bool("gone") == true)
            #expect(try connection.query("SELECT to_regclass('later') IS NULL AS gone").first?.bool("gone") == true)
            #expect(try Self.history(connection).map { $0["version"] } == ["1"])
        }
    }

    @Test("changed, missing and out-of-order files stop the run before anything is applied")
    func strictChecks() throws {
        try TestDatabase.with { database in
            let folder = try MigrationFolder()
            try folder.write("0001_a.sql", "CREATE TABLE a (id int);")
            try folder.write("0003_c.sql", "CREATE TABLE c (id int);")
            try folder.write("0004_d.sql", "CREATE TABLE d (id int);")
            _ = try Self.migrator(database, folder).migrate()

            try folder.write("0001_a.sql", "CREATE TABLE a (id bigint);")
            try folder.remove("0004_d.sql")
            try folder.write("0002_b.sql", "CREATE TABLE b (id int);")
            try folder.write("0005_e.sql", "CREATE TABLE e (id int);")
            let error = #expect(throws: MigrationError.self) { try Self.migrator(database, folder).migrate() }
            #expect(error?.code == .historyMismatch)
            #expect(error?.reports(at: "0001_a.sql", "migration 1 was changed after it was applied") == true)
            #expect(error?.mentions("migration 0004_d is in the history but its file is gone") == true)
            #expect(error?.reports(at: "0002_b.sql", "pending migration 2 is numbered below the newest applied migration 4") == true)
            #expect(error?.notes == ["nothing was applied; the folder and the history must agree before migrating"])
            let connection = try database.connect()
            #expect(try connection.query("SELECT to_regclass('e') IS NULL AND to_regclass('b') IS NULL AS none").first?.bool("none") == true)

            let status = try Self.migrator(database, folder).status()
            #expect(status.migrations.map(\.state) == [.changed, .pending, .applied, .missing, .pending])
            #expect(status.migrations[1].outOfOrder == true)
            #expect(!status.isClean)

            try folder.write("0001_a.sql", "CREATE TABLE a (id int);")
            try folder.write("0004_d.sql", "CREATE TABLE d (id int);")
            #expect(throws: MigrationError.self) { try Self.migrator(database, folder).migrate() }
            let report = try Self.migrator(database, folder) { $0.allowOutOfOrder = true }.migrate()
            #expect(report.applied.map(\.version) == [2, 5])
            #expect(try Self.migrator(database, folder).status().isClean)
        }
    }

    @Test("--to stops at a version and --dry-run changes nothing")
    func targetAndDryRun() throws {
        try TestDatabase.with { database in
            let folder = try MigrationFolder()
            for index in 1...3 { try folder.write("000\(index)_m.sql", "CREATE TABLE m\(index) (id int);") }
            let dry = try Self.migrator(database, folder) { $0.dryRun = true }.migrate()
            #expect(dry.dryRun && dry.applied.map(\.version) == [1, 2, 3])
            let connection = try database.connect()
            #expect(try connection.query("SELECT to_regclass('migrator.history') IS NULL AS none").first?.bool("none") == true)

            let partial = try Self.migrator(database, folder) { $0.target = 2 }.migrate()
            #expect(partial.applied.map(\.version) == [1, 2])
            #expect(partial.pendingAfter == 1)
            #expect(try Self.migrator(database, folder).migrate().applied.map(\.version) == [3])
        }
    }

    @Test("a migration outside a transaction records progress and resumes at the failed statement")
    func nonTransactionalResume() throws {
        try TestDatabase.with { database in
            let folder = try MigrationFolder()
            try folder.write("0001_base.sql", "CREATE TABLE t (id int);")
            let first = "-- migrator:no-transaction\nINSERT INTO t VALUES (1);\nINSERT INTO nowhere VALUES (2);\nCREATE INDEX CONCURRENTLY t_id ON t (id);\n"
            try folder.write("0002_concurrent.sql", first)
            let error = #expect(throws: MigrationError.self) { try Self.migrator(database, folder).migrate() }
            #expect(error?.code == .migrationFailed)
            #expect(error?.reports(at: "0002_concurrent.sql:3:13", "relation \"nowhere\" does not exist") == true)
            #expect(error?.mentions("fix statement 2 and run migrate again") == true)
            let connection = try database.connect()
            let row = try Self.history(connection).last
            #expect(row?["state"] == "failed" && row?.int("failed_statement") == 2 && row?.int("statements_done") == 1)
            #expect(try Self.migrator(database, folder).status().migrations.last?.state == .failed)

            // Changing a statement that already ran is refused.
            try folder.write("0002_concurrent.sql", first.replacingOccurrences(of: "VALUES (1)", with: "VALUES (9)"))
            let refused = #expect(throws: MigrationError.self) { try Self.migrator(database, folder).migrate() }
            #expect(refused?.code == .historyMismatch)
            #expect(refused?.mentions("statement 1 already ran") == true)

            // Fixing the failed statement resumes there: statement 1 does not run twice.
            try folder.write("0002_concurrent.sql", first.replacingOccurrences(of: "nowhere", with: "t"))
            let report = try Self.migrator(database, folder).migrate()
            #expect(report.applied.first?.resumedAtStatement == 2)
            #expect(try connection.query("SELECT string_agg(id::text, ',' ORDER BY id) AS ids FROM t").first?["ids"] == "1,2")
            #expect(try connection.query("SELECT indisvalid FROM pg_index WHERE indexrelid = 't_id'::regclass").first?.bool("indisvalid") == true)
            let done = try Self.history(connection).last
            #expect(done?["state"] == "applied" && done?["error"] == nil)
            #expect(try Self.migrator(database, folder).status().isClean)
        }
    }

    /// Engine step 1 kept the checksums of the statements done in `statement_checksums`; step 2 keeps them in
    /// `migrator.history_statements`. The database below is the one step 1 leaves after a migration failed at its
    /// third statement (made by this release, then turned back: the array filled from the rows, the table dropped,
    /// step 3's columns and audit table dropped, the engine's version set to 1 and its markers of versions 2 and 3 dropped).
    @Test("a migration that failed part way under the previous layout (checksums in the array) resumes after the upgrade")
    func previousProgressLayoutResumes() throws {
        try TestDatabase.with { database in
            let folder = try MigrationFolder()
            let first = "-- migrator:no-transaction\nCREATE TABLE t (id int);\nINSERT INTO t VALUES (1);\nINSERT INTO nowhere VALUES (2);\nINSERT INTO t VALUES (3);\n"
            try folder.write("0001_steps.sql", first)
            #expect(throws: MigrationError.self) { try Self.migrator(database, folder).migrate() }
            let connection = try database.connect()
            let checksums = try connection.query(
                "SELECT array_agg(checksum ORDER BY statement)::text AS list FROM migrator.history_statements WHERE version = 1"
            ).first?["list"]
            #expect(try connection.query(#"SELECT to_regprocedure('migrator."installed: engine 3"()') IS NOT NULL AS m"#).first?.bool("m") == true)
            _ = try connection.execute(script: """
                UPDATE migrator.history h SET statement_checksums = (
                    SELECT array_agg(checksum ORDER BY statement) FROM migrator.history_statements s WHERE s.version = h.version
                );
                DROP TABLE migrator.history_statements;
                DROP TABLE migrator.history_audit;
                ALTER TABLE migrator.history DROP COLUMN kind, DROP COLUMN down_sql, DROP COLUMN down_checksum,
                    DROP COLUMN down_transactional, DROP COLUMN irreversible;
                UPDATE migrator.components SET version = 1 WHERE component = 'engine';
                """)
            _ = try connection.execute(script: #"DROP FUNCTION migrator."installed: engine 3"(); DROP FUNCTION migrator."installed: engine 2"()"#)
            let legacy = try #require(try connection.query("SELECT statements_done, statement_checksums::text AS list FROM migrator.history").first)
            #expect(legacy.int("statements_done") == 2 && legacy["list"] == checksums && checksums != nil)

            // Read as it is, without upgrading: status and a dry run see the failure and where it resumes.
            let status = try Self.migrator(database, folder).status()
            #expect(status.migrations.first?.state == .failed && status.migrations.first?.failedStatement == 3)
            #expect(try connection.query("SELECT to_regclass('migrator.history_statements') IS NULL AS gone").first?.bool("gone") == true)
            try folder.write("0001_steps.sql", first.replacingOccurrences(of: "nowhere", with: "t"))
            let dry = try Self.migrator(database, folder) { $0.dryRun = true }.migrate()
            #expect(dry.applied.first?.resumedAtStatement == 3)

            // A statement that ran, changed, is still refused after the upgrade: the checksums moved with it.
            try folder.write("0001_steps.sql", first.replacingOccurrences(of: "nowhere", with: "t").replacingOccurrences(of: "VALUES (1)", with: "VALUES (9)"))
            let refused = #expect(throws: MigrationError.self) { try Self.migrator(database, folder).migrate() }
            #expect(refused?.code == .historyMismatch)
            #expect(refused?.mentions("statement 2 already ran") == true)
            let moved = try #require(try connection.query(
                "SELECT h.statement_checksums::text AS marker, (SELECT array_agg(checksum ORDER BY statement)::text FROM migrator.history_statements) AS list FROM migrator.history h"
            ).first)
            #expect(moved["marker"] == #"{"see history_statements (migrator engine step 2)"}"# && moved["list"] == checksums)
            #expect(try connection.query("SELECT version FROM migrator.components WHERE component = 'engine'").first?.int("version") == 3)

            // Fixed: it resumes at statement 3; statements 1 and 2 do not run again.
            try folder.write("0001_steps.sql", first.replacingOccurrences(of: "nowhere", with: "t"))
            let report = try Self.migrator(database, folder).migrate()
            #expect(report.applied.first?.resumedAtStatement == 3)
            #expect(try connection.query("SELECT string_agg(id::text, ',' ORDER BY id) AS ids FROM t").first?["ids"] == "1,2,3")
            #expect(try Self.history(connection).last?["state"] == "applied")
            #expect(try connection.query("SELECT count(*) AS c FROM migrator.history_statements").first?.int("c") == 0)
            #expect(try Self.migrator(database, folder).status().isClean)
        }
    }

    /// A release of engine step 1 reads only `statement_checksums`. What this release leaves there for a migration
    /// that stopped part way (one marker) makes that release's resume check refuse, with nothing run, instead of
    /// taking an empty array for "no statement ran" and running statement 1 again. The check below is step 1's, which
    /// this release still has: the row decoded as step 1 decoded it.
    @Test("a migration that failed part way is refused, not rerun from statement 1, by a release that reads only the array")
    func olderReleaseRefusesToResume() throws {
        try TestDatabase.with { database in
            let folder = try MigrationFolder()
            let text = "-- migrator:no-transaction\nCREATE TABLE t (id int);\nINSERT INTO t VALUES (1);\nINSERT INTO nowhere VALUES (2);\n"
            try folder.write("0001_steps.sql", text)
            #expect(throws: MigrationError.self) { try Self.migrator(database, folder).migrate() }
            let connection = try database.connect()
            let row = try #require(try connection.query(
                "SELECT statement_checksums, failed_statement FROM migrator.history WHERE version = 1"
            ).first)
            let array = PostgresArray.parse(try #require(row["statement_checksums"])).compactMap { $0 }
            #expect(array == ["see history_statements (migrator engine step 2)"])
            // This release reads the checksums of the two statements done from the table ...
            var asStepOne = try #require(try HistoryStore(schema: .default).read(connection, legacyFallback: false)?.records.first)
            #expect(asStepOne.statementChecksums?.count == 2 && asStepOne.statementChecksums != array)
            // ... a release of step 1 reads the array.
            asStepOne.statementChecksums = array
            let file = try MigrationDirectory(path: folder.path).entries()[0].load()
            let refused = #expect(throws: MigrationError.self) { try MigrationPlan.resumeStep(file: file, record: asStepOne) }
            #expect(refused?.code == .historyMismatch)
            #expect(refused?.mentions("statement 1 already ran") == true)
        }
    }

    @Test("transaction control in a transactional migration is refused before anything runs")
    func transactionControlRefused() throws {
        try TestDatabase.with { database in
            let folder = try MigrationFolder()
            try folder.write("0001_a.sql", "CREATE TABLE a (id int);\nCOMMIT;\nCREATE TABLE b (id int);\n")
            let error = #expect(throws: MigrationError.self) { try Self.migrator(database, folder).migrate() }
            #expect(error?.code == .invalidMigrationFile)
            #expect(error?.reports(at: "0001_a.sql:2:1", "'COMMIT' controls the transaction") == true)
            let connection = try database.connect()
            #expect(try connection.query("SELECT to_regclass('a') IS NULL AS none").first?.bool("none") == true)
        }
    }

    @Test("an unterminated dollar quote in a file outside a transaction is reported where it starts")
    func unterminatedQuote() throws {
        try TestDatabase.with { database in
            let folder = try MigrationFolder()
            try folder.write("0001_a.sql", "-- migrator:no-transaction\nSELECT 1;\nCREATE FUNCTION f() RETURNS int AS $body$ SELECT 1;\n")
            let error = #expect(throws: MigrationError.self) { try Self.migrator(database, folder).migrate() }
            #expect(error?.code == .invalidMigrationFile)
            #expect(error?.reports(at: "0001_a.sql:3:36", "unterminated dollar-quoted string") == true)
        }
    }

    @Test("notices from a migration are logged with the migration's file")
    func noticesLogged() throws {
        try TestDatabase.with { database in
            let folder = try MigrationFolder()
            try folder.write("0001_notice.sql", "DO $$ BEGIN RAISE NOTICE 'hello %', 42; END $$;")
            let handler = InMemoryLogHandler()
            _ = try Self.migrator(database, folder, logger: Logger(label: "test") { _ in handler }).migrate()
            let notice = handler.entries.first { $0.message == "server notice" }
            #expect(notice?.metadata["db.message"] == "hello 42")
            #expect(notice?.metadata["migration.file"] == .string(folder.path + "/0001_notice.sql"))
        }
    }

    @Test("a server statement_timeout is ignored unless one is given; the lock_timeout applies to DDL")
    func sessionTimeouts() throws {
        try TestDatabase.with { database in
            let connection = try database.connect()
            try connection.query("ALTER DATABASE \(database.name) SET statement_timeout = '100ms'")
            let folder = try MigrationFolder()
            try folder.write("0001_slow.sql", "SELECT pg_sleep(0.4);")
            #expect(try Self.migrator(database, folder).migrate().applied.count == 1)

            try folder.write("0002_slow.sql", "SELECT pg_sleep(0.4);")
            let timedOut = #expect(throws: MigrationError.self) {
                try Self.migrator(database, folder) { $0.statementTimeout = .milliseconds(100) }.migrate()
            }
            #expect(timedOut?.serverError?.sqlState == "57014")

            // An application holding a lock on the table: the DDL gives up after lock_timeout instead of queueing.
            try connection.query("CREATE TABLE busy (id int)")
            try connection.query("BEGIN")
            try connection.query("LOCK TABLE busy IN ACCESS SHARE MODE")
            try folder.write("0002_slow.sql", "ALTER TABLE busy ADD COLUMN x int;")
            let blocked = #expect(throws: MigrationError.self) {
                try Self.migrator(database, folder) {
                    $0.ddlLockTimeout = .milliseconds(200)
                    $0.ddlLockRetryBudget = .zero
                }.migrate()
            }
            #expect(blocked?.serverError?.sqlState == "55P03")
            try connection.query("ROLLBACK")
        }
    }

    @Test("a read-only session is refused with its own error")
    func readOnly() throws {
        try TestDatabase.with { database in
            let connection = try database.connect()
            try connection.query("ALTER DATABASE \(database.name) SET default_transaction_read_only = on")
            let folder = try MigrationFolder()
            try folder.write("0001_a.sql", "CREATE TABLE a (id int);")
            let error = #expect(throws: MigrationError.self) { try Self.migrator(database, folder).migrate() }
            #expect(error?.code == .readOnly)
            #expect(error?.mentions("read-only") == true)
        }
    }

    @Test("a runner waits for the lock, says who holds it, and gives up at the deadline")
    func lockTimeout() throws {
        try TestDatabase.with { database in
            let holder = try database.connect()
            try holder.query("SELECT pg_advisory_lock($1::bigint)", [OwnSchema.default.lockKey])
            let folder = try MigrationFolder()
            try folder.write("0001_a.sql", "CREATE TABLE a (id int);")
            let handler = InMemoryLogHandler()
            let started = ContinuousClock.now
            let error = #expect(throws: MigrationError.self) {
                try Self.migrator(database, folder, logger: Logger(label: "t") { _ in handler }) {
                    $0.lockTimeout = .milliseconds(1200)
                    $0.lockReportInterval = .milliseconds(300)
                }.migrate()
            }
            #expect(ContinuousClock.now - started < .seconds(10))
            #expect(error?.code == .lockTimeout)
            #expect(error?.mentions("pid \(holder.backendPID)") == true)
            let waits = handler.entries.filter { $0.message == "waiting for the migration lock" }
            #expect(waits.count >= 2)
            #expect(waits.first?.metadata["lock.holder"].map { "\($0)".contains("pid \(holder.backendPID)") } == true)
            #expect(try holder.query("SELECT to_regclass('a') IS NULL AS none").first?.bool("none") == true)

            try holder.query("SELECT pg_advisory_unlock($1::bigint)", [OwnSchema.default.lockKey])
            #expect(try Self.migrator(database, folder).migrate().applied.count == 1)
        }
    }

    @Test("the lock is released after a run and server-side keepalives are set")
    func lockReleased() throws {
        try TestDatabase.with { database in
            let folder = try MigrationFolder()
            // The migration records the settings its session ran with, so the test reads what the server used.
            try folder.write("0001_a.sql", """
                CREATE TABLE seen AS SELECT current_setting('tcp_keepalives_idle') AS idle,
                    current_setting('tcp_keepalives_interval') AS interval, current_setting('tcp_keepalives_count') AS count;
                """)
            _ = try Self.migrator(database, folder).migrate()
            let connection = try database.connect()
            #expect(try connection.query("SELECT pg_try_advisory_lock($1::bigint) AS ok", [OwnSchema.default.lockKey]).first?.bool("ok") == true)
            let seen = try #require(try connection.query("SELECT idle, interval, count FROM seen").first)
            #expect(try [seen.decode("idle", as: String.self), seen.decode("interval", as: String.self), seen.decode("count", as: String.self)] == ["10", "5", "3"])
        }
    }

    struct RecordingHook: PostMigrateHook {
        let name = "recorder"
        let fail: Bool
        func run(_ context: HookContext) throws -> HookReport {
            // The hook runs under the engine's lock: another session cannot take it.
            let locked = try context.connection.query(
                "SELECT count(*) AS n FROM pg_locks WHERE locktype = 'advisory' AND granted AND pid = pg_backend_pid()"
            ).first?.int("n")
            if fail { throw HookFailure() }
            return HookReport(name: name, summary: "saw \(context.appliedVersions)", details: ["locks": "\(locked ?? 0)"])
        }
    }

    struct HookFailure: Error, CustomStringConvertible { var description: String { "the catalogue is broken" } }

    @Test("hooks run after the migrations under the lock; a failing hook is named")
    func hooks() throws {
        try TestDatabase.with { database in
            let folder = try MigrationFolder()
            try folder.write("0001_a.sql", "CREATE TABLE a (id int);")
            let report = try Self.migrator(database, folder, hooks: [RecordingHook(fail: false)]).migrate()
            #expect(report.hooks == [HookReport(name: "recorder", summary: "saw [1]", details: ["locks": "1"])])
            #expect(try Self.migrator(database, folder, hooks: [RecordingHook(fail: false)]).migrate().hooks.first?.summary == "saw []")

            let error = #expect(throws: MigrationError.self) {
                try Self.migrator(database, folder, hooks: [RecordingHook(fail: true)]).migrate()
            }
            #expect(error?.code == .hookFailed)
            #expect(error?.mentions("post-migrate hook 'recorder' failed: the catalogue is broken") == true)
        }
    }

    /// Says "stop" from its `after`-th question on.
    final class StopAfter: Sendable {
        let after: Int
        let asked = Mutex(0)
        init(_ after: Int) { self.after = after }
        var closure: @Sendable () -> Bool { { self.asked.withLock { $0 += 1; return $0 > self.after } } }
    }

    @Test("a stop request ends the run between migrations, before the hooks, or while it waits for the lock, cutting nothing short")
    func stopRequested() throws {
        try TestDatabase.with { database in
            let folder = try MigrationFolder()
            try folder.write("0001_a.sql", "CREATE TABLE a (id int);")
            try folder.write("0002_b.sql", "CREATE TABLE b (id int);")
            try folder.write("0003_c.sql", "CREATE TABLE c (id int);")
            let connection = try database.connect()

            // Asked before each migration: the first runs whole, the second never starts.
            let between = #expect(throws: MigrationError.self) {
                try Self.migrator(database, folder) { $0.stopRequested = StopAfter(1).closure }.migrate()
            }
            #expect(between?.code == .stopped)
            #expect(between?.appliedBeforeFailure == ["0001_a"])
            #expect(between?.mentions("before 0002_b") == true, "\(between?.description ?? "")")
            #expect(try Self.history(connection).map { $0["version"] } == ["1"])
            #expect(try connection.query("SELECT pg_try_advisory_lock($1::bigint) AS ok", [OwnSchema.default.lockKey]).first?.bool("ok") == true)
            try connection.query("SELECT pg_advisory_unlock($1::bigint)", [OwnSchema.default.lockKey])

            // Asked before the hook once the migrations are done: they stay, the hook does not run.
            let beforeHook = #expect(throws: MigrationError.self) {
                try Self.migrator(database, folder, hooks: [RecordingHook(fail: false)]) { $0.stopRequested = StopAfter(2).closure }.migrate()
            }
            #expect(beforeHook?.code == .stopped)
            #expect(beforeHook?.mentions("before the post-migrate hook 'recorder'") == true, "\(beforeHook?.description ?? "")")
            #expect(try Self.history(connection).map { $0["version"] } == ["1", "2", "3"])

            // Waiting for another runner's lock: it gives up at once instead of at the deadline.
            try folder.write("0004_d.sql", "CREATE TABLE d (id int);")
            try connection.query("SELECT pg_advisory_lock($1::bigint)", [OwnSchema.default.lockKey])
            let started = ContinuousClock.now
            let waiting = #expect(throws: MigrationError.self) {
                try Self.migrator(database, folder) { $0.stopRequested = StopAfter(3).closure }.migrate()
            }
            #expect(ContinuousClock.now - started < .seconds(10), "it waited for the 20 s lock deadline")
            #expect(waiting?.code == .stopped)
            #expect(waiting?.mentions("while waiting for the migration lock") == true, "\(waiting?.description ?? "")")
            #expect(try Self.history(connection).count == 3)
        }
    }

    @Test("an unreachable server is a connection failure that never shows the password")
    func connectionFailure() {
        let options = MigratorOptions(migrationsPath: RepositoryPaths.root.appendingPathComponent("Migrations").path)
        let migrator = Migrator(
            connection: ConnectionConfig(connectionString: "postgresql://app:p%40ss%25word@127.0.0.1:1/app"),
            options: options, logger: Logger(label: "t")
        )
        let error = #expect(throws: MigrationError.self) { try migrator.migrate() }
        #expect(error?.code == .connectionFailed)
        #expect(error?.mentions("p@ss%word") == false)
        #expect(error?.mentions("p%40ss%25word") == false)
    }
}

extension MigrationError {
    /// Whether one of the problems is at `place` (`file:line:column` or `file`, matched at the end of the path the
    /// error gives) with a message that contains `message`.
    func reports(at place: String, _ message: String) -> Bool {
        diagnostics.contains { diagnostic in
            guard let location = diagnostic.location else { return false }
            return (location.description == place || location.description.hasSuffix("/" + place))
                && diagnostic.message.contains(message)
        }
    }

    /// Whether `text` is in a message, a hint or a note of one of the problems, or in a note of the whole error.
    func mentions(_ text: String) -> Bool {
        notes.contains { $0.contains(text) } || diagnostics.contains { diagnostic in
            ([diagnostic.message, diagnostic.hint ?? ""] + diagnostic.notes).contains { $0.contains(text) }
        }
    }
}
