import Foundation
import MigratorTestSupport
import Postgres
import Testing

@Suite("migrator end to end")
struct EndToEndTests {
    @Test("the shipped migrations apply to an empty database; rerun, verify and status --json agree")
    func shippedMigrations() throws {
        try TestDatabase.with { db in
            let folder = try MigrationFolder.shipped()
            let first = try E2E.run(E2E.args("migrate", folder), database: db)
            #expect(first.exitCode == 0, first.transcript)
            #expect(first.stdout.contains("5 migrations applied"), first.transcript)

            let connection = try db.connect()
            #expect(try connection.historyVersions() == Array(1...5))
            #expect(try connection.count("SELECT count(*) FROM migrator.history WHERE state = 'applied'") == 5)
            for table in [
                "django_content_type", "auth_permission", "auth_group", "users_user", "guardian_userobjectpermission",
                "main_project", "migrator.project_role_group", "migrator.role_version",
            ] {
                #expect(try connection.tableExists(table), "table \(table) is missing")
            }

            let second = try E2E.run(E2E.args("migrate", folder), database: db)
            #expect(second.exitCode == 0, second.transcript)
            #expect(second.stdout.contains("nothing to migrate"), second.transcript)

            let verify = try E2E.run(E2E.args("verify", folder), database: db)
            #expect(verify.exitCode == 0, verify.transcript)

            let status = try E2E.run(E2E.args("status", folder, "--json"), database: db)
            #expect(status.exitCode == 0, status.transcript)
            let report = try decode(StatusJSON.self, status.stdout)
            #expect(report.migrations.map(\.version) == Array(1...5))
            #expect(report.migrations.allSatisfy { $0.state == "applied" })
            #expect(report.migrations.first?.name == "django_content_types")
            #expect(report.problems.isEmpty)
        }
    }

    @Test("a failing statement is reported at file:line:col with the line and a caret; nothing of it remains")
    func failingMigrationPointsAtTheError() throws {
        try TestDatabase.with { db in
            let failing = """
                -- 0002 x: the table below is created, then the index fails

                CREATE TABLE made_before_failure (id int);

                CREATE INDEX ON sites (name);
                """
            let folder = try E2E.folder([
                ("0001_first.sql", "CREATE TABLE first_table (id int);\n"),
                ("0002_x.sql", failing),
            ])
            let run = try E2E.run(E2E.migrate(folder), database: db)
            #expect(run.exitCode == 1, run.transcript)
            #expect(
                run.stderr.contains(#"0002_x.sql:5:17: error: relation "sites" does not exist (SQLSTATE 42P01)"#),
                run.transcript
            )
            expectCaret(in: run, under: "sites", on: "CREATE INDEX ON sites (name);")
            #expect(run.stderr.contains("applied by this run before the failure: 0001_first"), run.transcript)

            let connection = try db.connect()
            #expect(try connection.historyVersions() == [1])
            #expect(try connection.tableExists("first_table"))
            #expect(try !connection.tableExists("made_before_failure"))

            let json = try E2E.run(E2E.migrate(folder, "--json"), database: db)
            #expect(json.exitCode == 1, json.transcript)
            let failure = try decode(FailureJSON.self, json.stdout)
            #expect(failure.ok == false)
            #expect(failure.exitCode == 1)
            #expect(failure.error.code == "migrationFailed")
            #expect(failure.error.server?.sqlState == "42P01")
            #expect(failure.error.appliedBeforeFailure == [])
            // The fields, not prose: the message alone, the place apart, and the terminal's text beside them.
            #expect(failure.error.message == #"relation "sites" does not exist"#)
            #expect(failure.error.diagnostics.first?.location?.file.hasSuffix("0002_x.sql") == true)
            #expect(failure.error.diagnostics.first?.location?.line == 5 && failure.error.diagnostics.first?.location?.column == 17)
            #expect(failure.error.text.contains(#"0002_x.sql:5:17: error: relation "sites" does not exist (SQLSTATE 42P01)"#))
            #expect(try connection.historyVersions() == [1])
        }
    }

    @Test("a syntax error on the last line is reported with its line and column, counted in characters")
    func syntaxErrorOnLastLine() throws {
        try TestDatabase.with { db in
            let lastLine = "SELECT 'ü ✓ 🎉' AS a, FROM syntax_ok;"
            let folder = try E2E.folder([
                ("0001_syntax.sql", "-- café ✓\nCREATE TABLE syntax_ok (id int);\n\n\(lastLine)"),
            ])
            let run = try E2E.run(E2E.migrate(folder), database: db)
            #expect(run.exitCode == 1, run.transcript)
            let column = scalarColumn(of: "FROM", in: lastLine)
            #expect(
                run.stderr.contains(#"0001_syntax.sql:4:\#(column): error: syntax error at or near "FROM" (SQLSTATE 42601)"#),
                run.transcript
            )
            expectCaret(in: run, under: "FROM", on: lastLine)
            #expect(run.stderr.contains("no migration was applied by this run"), run.transcript)
            let connection = try db.connect()
            #expect(try connection.historyVersions() == [])
            #expect(try !connection.tableExists("syntax_ok"))
        }
    }

    @Test("a changed applied file is refused, and a new pending file next to it is not applied")
    func changedFileIsRefused() throws {
        try TestDatabase.with { db in
            let folder = try E2E.folder([
                ("0001_a.sql", "CREATE TABLE a (id int);\n"),
                ("0002_b.sql", "CREATE TABLE b (id int);\n"),
            ])
            #expect(try E2E.run(E2E.migrate(folder), database: db).exitCode == 0)
            try folder.write("0002_b.sql", "CREATE TABLE b (id bigint);\n")
            try folder.write("0003_c.sql", "CREATE TABLE c (id int);\n")

            let run = try E2E.run(E2E.migrate(folder), database: db)
            #expect(run.exitCode == 2, run.transcript)
            #expect(run.stderr.contains("0002_b.sql"), run.transcript)
            #expect(run.stderr.contains("changed"), run.transcript)
            let connection = try db.connect()
            #expect(try connection.historyVersions() == [1, 2])
            #expect(try !connection.tableExists("c"))

            let verify = try E2E.run(E2E.args("verify", folder), database: db)
            #expect(verify.exitCode == 3, verify.transcript)
            #expect(verify.stderr.contains("1 changed"), verify.transcript)
        }
    }

    @Test("a file whose only change is a BOM and CRLF line endings still matches its history")
    func crlfAndBOMAreNotChanges() throws {
        try TestDatabase.with { db in
            let folder = try E2E.folder([("0001_a.sql", "-- a\nCREATE TABLE a (id int);\n")])
            #expect(try E2E.run(E2E.migrate(folder), database: db).exitCode == 0)
            try folder.write("0001_a.sql", bytes: [0xEF, 0xBB, 0xBF] + Array("-- a\r\nCREATE TABLE a (id int);\r\n".utf8))
            try E2E.expectAllApplied(folder, database: db, versions: [1])
        }
    }

    @Test("an applied file that is gone is refused")
    func missingFileIsRefused() throws {
        try TestDatabase.with { db in
            let folder = try E2E.folder([
                ("0001_a.sql", "CREATE TABLE a (id int);\n"),
                ("0002_b.sql", "CREATE TABLE b (id int);\n"),
            ])
            #expect(try E2E.run(E2E.migrate(folder), database: db).exitCode == 0)
            try folder.remove("0002_b.sql")
            let run = try E2E.run(E2E.migrate(folder), database: db)
            #expect(run.exitCode == 2, run.transcript)
            #expect(run.stderr.contains("0002_b"), run.transcript)
        }
    }

    @Test("a new file numbered below the newest applied is refused, and applies with --allow-out-of-order")
    func outOfOrder() throws {
        try TestDatabase.with { db in
            let folder = try E2E.folder([
                ("0001_a.sql", "CREATE TABLE a (id int);\n"),
                ("0003_c.sql", "CREATE TABLE c (id int);\n"),
            ])
            #expect(try E2E.run(E2E.migrate(folder), database: db).exitCode == 0)
            try folder.write("0002_b.sql", "CREATE TABLE b (id int);\n")

            let refused = try E2E.run(E2E.migrate(folder), database: db)
            #expect(refused.exitCode == 2, refused.transcript)
            #expect(refused.stderr.contains("0002_b.sql"), refused.transcript)
            let connection = try db.connect()
            #expect(try connection.historyVersions() == [1, 3])

            let allowed = try E2E.run(E2E.migrate(folder, "--allow-out-of-order"), database: db)
            #expect(allowed.exitCode == 0, allowed.transcript)
            #expect(try connection.historyVersions() == [1, 2, 3])
            #expect(try connection.tableExists("b"))

            let again = try E2E.run(E2E.migrate(folder), database: db)
            #expect(again.exitCode == 0, again.transcript)
        }
    }

    @Test("a failed migration outside a transaction resumes at the failed statement once it is fixed")
    func nonTransactionalResume() throws {
        try TestDatabase.with { db in
            let folder = try E2E.folder([
                ("0001_first.sql", "CREATE TABLE first_table (id int);\n"),
                ("0002_resume.sql", Self.resumable(statement2: "INSERT INTO missing_table VALUES (1);")),
            ])
            let failed = try E2E.run(E2E.migrate(folder), database: db)
            #expect(failed.exitCode == 1, failed.transcript)
            // Statement 2 is on line 7, and the server's position points at the table name.
            #expect(
                failed.stderr.contains(#"0002_resume.sql:7:13: error: relation "missing_table" does not exist (SQLSTATE 42P01)"#),
                failed.transcript
            )
            let connection = try db.connect()
            let row = try #require(try connection.query(
                "SELECT state, failed_statement, statements_done FROM migrator.history WHERE version = 2"
            ).first)
            #expect(row["state"] == "failed")
            #expect(row.int("failed_statement") == 2)
            #expect(row.int("statements_done") == 1)
            #expect(try connection.count("SELECT count(*) FROM t") == 1)

            let status = try E2E.run(E2E.args("status", folder), database: db)
            #expect(status.exitCode == 0, status.transcript)
            #expect(status.stdout.contains("failed at statement 2"), status.transcript)
            let statusJSON = try decode(StatusJSON.self, try E2E.run(E2E.args("status", folder, "--json"), database: db).stdout)
            #expect(statusJSON.migrations.first { $0.version == 2 }?.state == "failed")
            #expect(statusJSON.migrations.first { $0.version == 2 }?.failedStatement == 2)

            try folder.write("0002_resume.sql", Self.resumable(statement2: "CREATE TABLE missing_table AS SELECT 1 AS id;"))
            let resumed = try E2E.run(E2E.migrate(folder, "--json"), database: db)
            #expect(resumed.exitCode == 0, resumed.transcript)
            let report = try decode(MigrateJSON.self, resumed.stdout)
            #expect(report.applied.map(\.version) == [2])
            #expect(report.applied.first?.resumedAtStatement == 2)
            #expect(try connection.count("SELECT count(*) FROM t") == 1, "statement 1 ran again")
            #expect(try connection.scalar("SELECT state FROM migrator.history WHERE version = 2") == "applied")
            #expect(try connection.scalar("SELECT indisvalid FROM pg_index WHERE indexrelid = 't_id_idx'::regclass") == "t")

            try E2E.expectAllApplied(folder, database: db, versions: [1, 2])
        }
    }

    /// The progress record is a constant amount of work per statement (one row of migrator.history_statements and the
    /// count in the history row), so a long file is linear; this checks what is recorded at that size, not a time
    /// (scripts/bench-no-transaction prints the time).
    @Test("a migration outside a transaction with 10,000 statements fails at its last, records 9,999, and resumes there")
    func tenThousandStatements() throws {
        try TestDatabase.with { db in
            let count = 10_000
            func file(last: String) -> String {
                var text = "-- migrator:no-transaction\nCREATE TABLE many (id int PRIMARY KEY);\n"
                for index in 2..<count { text += "INSERT INTO many VALUES (\(index));\n" }
                return text + last + "\n"
            }
            let folder = try E2E.folder([("0001_many.sql", file(last: "INSERT INTO nowhere VALUES (\(count));"))])
            let failed = try E2E.run(E2E.migrate(folder), database: db, limit: 300)
            #expect(failed.exitCode == 1, failed.transcript)
            #expect(failed.stderr.contains("0001_many.sql:\(count + 1):13: error: relation \"nowhere\" does not exist"), failed.transcript)
            let connection = try db.connect()
            let row = try #require(try connection.query(
                "SELECT state, failed_statement, statements_done, statement_checksums FROM migrator.history WHERE version = 1"
            ).first)
            #expect(row["state"] == "failed")
            #expect(row.int("failed_statement") == count)
            #expect(row.int("statements_done") == count - 1)
            // The checksums are rows of migrator.history_statements; the array holds one marker that matches no statement,
            // so an older release (which reads only the array) refuses to resume instead of running statement 1 again.
            #expect(row["statement_checksums"] == #"{"see history_statements (migrator engine step 2)"}"#)
            #expect(try connection.count("SELECT count(*) FROM migrator.history_statements WHERE version = 1") == count - 1)
            #expect(try connection.count(
                "SELECT count(*) FROM migrator.history_statements WHERE version = 1 AND statement BETWEEN 1 AND \(count - 1)"
            ) == count - 1)
            #expect(try connection.count("SELECT count(*) FROM many") == count - 2)

            let status = try decode(StatusJSON.self, try E2E.run(E2E.args("status", folder, "--json"), database: db).stdout)
            #expect(status.migrations.first?.state == "failed" && status.migrations.first?.failedStatement == count)

            try folder.write("0001_many.sql", file(last: "INSERT INTO many VALUES (\(count));"))
            let resumed = try E2E.run(E2E.migrate(folder, "--json"), database: db, limit: 300)
            #expect(resumed.exitCode == 0, resumed.transcript)
            let report = try decode(MigrateJSON.self, resumed.stdout)
            #expect(report.applied.first?.resumedAtStatement == count)
            #expect(report.applied.first?.statements == count)
            #expect(try connection.count("SELECT count(*) FROM many") == count - 1)
            #expect(try connection.scalar("SELECT state FROM migrator.history WHERE version = 1") == "applied")
            #expect(try connection.count("SELECT count(*) FROM migrator.history_statements") == 0)
            try E2E.expectAllApplied(folder, database: db, versions: [1])

            // From the start, in one run: all 10,000 statements.
            try folder.write("0002_many_again.sql", file(last: "INSERT INTO many VALUES (\(count));").replacingOccurrences(of: "many", with: "many_again"))
            let whole = try E2E.run(E2E.migrate(folder, "--json"), database: db, limit: 300)
            #expect(whole.exitCode == 0, whole.transcript)
            let wholeReport = try decode(MigrateJSON.self, whole.stdout)
            #expect(wholeReport.applied.map(\.version) == [2] && wholeReport.applied.first?.statements == count)
            #expect(wholeReport.applied.first?.resumedAtStatement == nil)
            #expect(try connection.count("SELECT count(*) FROM many_again") == count - 1)
            #expect(try connection.count("SELECT count(*) FROM migrator.history_statements") == 0)
            try E2E.expectAllApplied(folder, database: db, versions: [1, 2])
        }
    }

    @Test("a failed migration outside a transaction whose completed statement changed is refused")
    func nonTransactionalResumeRefusesChangedStatement() throws {
        try TestDatabase.with { db in
            let folder = try E2E.folder([
                ("0002_resume.sql", Self.resumable(statement2: "INSERT INTO missing_table VALUES (1);")),
            ])
            #expect(try E2E.run(E2E.migrate(folder), database: db).exitCode == 1)

            let changed = Self.resumable(statement2: "CREATE TABLE missing_table AS SELECT 1 AS id;")
                .replacingOccurrences(of: "INSERT INTO t VALUES (1)", with: "INSERT INTO t VALUES (100)")
            try folder.write("0002_resume.sql", changed)
            let run = try E2E.run(E2E.migrate(folder), database: db)
            #expect(run.exitCode == 2, run.transcript)
            #expect(run.stderr.contains("statement 1"), run.transcript)
            #expect(run.stderr.contains("changed"), run.transcript)
            let connection = try db.connect()
            #expect(try connection.count("SELECT count(*) FROM t") == 1)
            #expect(try connection.scalar("SELECT state FROM migrator.history WHERE version = 2") == "failed")
        }
    }

    @Test("a migration outside a transaction that opens a transaction is refused at the BEGIN before anything runs")
    func openTransactionInNonTransactionalMigration() throws {
        try TestDatabase.with { db in
            let folder = try E2E.folder([
                ("0001_open.sql", "-- migrator:no-transaction\nCREATE TABLE before_begin (id int);\nBEGIN;\nCREATE TABLE after_begin (id int);\n"),
            ])
            let run = try E2E.run(E2E.migrate(folder), database: db)
            let connection = try db.connect()
            // The BEGIN is refused at its line before any statement runs (it would swallow the progress records).
            #expect(run.exitCode == 2, run.transcript)
            #expect(run.stderr.contains("0001_open.sql:3:1: error: 'BEGIN' controls the transaction"), run.transcript)
            #expect(try connection.count("SELECT count(*) FROM migrator.history") == 0)
            #expect(try !connection.tableExists("before_begin") && !connection.tableExists("after_begin"))
        }
    }

    /// Statement 1 is a DO block so that running it twice would leave two rows, not an error.
    static func resumable(statement2: String) -> String {
        """
        -- migrator:no-transaction
        -- 0002 resume
        DO $$ BEGIN
            CREATE TABLE IF NOT EXISTS t (id int);
            INSERT INTO t VALUES (1);
        END $$;
        INSERT INTO t_placeholder;
        CREATE INDEX CONCURRENTLY t_id_idx ON t (id);

        """.replacingOccurrences(of: "INSERT INTO t_placeholder;", with: statement2)
    }

    @Test("COMMIT inside a transactional migration is refused before anything runs")
    func commitInTransactionalMigration() throws {
        try TestDatabase.with { db in
            let folder = try E2E.folder([
                ("0001_ok.sql", "CREATE TABLE ok (id int);\n"),
                ("0002_commit.sql", "CREATE TABLE c (id int);\n  COMMIT;\nCREATE TABLE d (id int);\n"),
            ])
            let run = try E2E.run(E2E.migrate(folder), database: db)
            #expect(run.exitCode == 2, run.transcript)
            #expect(run.stderr.contains("0002_commit.sql:2:3: error:"), run.transcript)
            #expect(run.stderr.contains("-- migrator:no-transaction"), run.transcript)
            let connection = try db.connect()
            #expect(try connection.historyVersions() == [])
            #expect(try !connection.tableExists("ok"))
            #expect(try !connection.tableExists("c"))
        }
    }

    @Test("--dry-run changes nothing and lists what would apply; --to 2 applies only 1 and 2")
    func dryRunAndTarget() throws {
        try TestDatabase.with { db in
            let folder = try E2E.folder([
                ("0001_a.sql", "CREATE TABLE a (id int);\n"),
                ("0002_b.sql", "CREATE TABLE b (id int);\n"),
                ("0003_c.sql", "CREATE TABLE c (id int);\n"),
            ])
            let dry = try E2E.run(E2E.migrate(folder, "--dry-run"), database: db)
            #expect(dry.exitCode == 0, dry.transcript)
            for label in ["0001_a", "0002_b", "0003_c"] {
                #expect(dry.stdout.contains("would apply \(label)"), dry.transcript)
            }
            let connection = try db.connect()
            #expect(try !connection.tableExists("migrator.history"))
            #expect(try !connection.tableExists("a"))

            let dryJSON = try decode(MigrateJSON.self, try E2E.run(E2E.migrate(folder, "--dry-run", "--json"), database: db).stdout)
            #expect(dryJSON.dryRun)
            #expect(dryJSON.applied.map(\.version) == [1, 2, 3])
            #expect(try !connection.tableExists("migrator.history"))

            let partial = try E2E.run(E2E.migrate(folder, "--to", "2"), database: db)
            #expect(partial.exitCode == 0, partial.transcript)
            #expect(partial.stdout.contains("1 still pending"), partial.transcript)
            #expect(try connection.historyVersions() == [1, 2])
            #expect(try !connection.tableExists("c"))
        }
    }

    @Test("--dry-run and --to on a database with history: only what is pending is listed, --to stops there, nothing else changes")
    func dryRunAndTargetWithHistory() throws {
        try TestDatabase.with { db in
            let folder = try MigrationFolder.shipped()
            let connection = try db.connect()
            let first = try E2E.run(E2E.args("migrate", folder, "--to", "2"), database: db)
            #expect(first.exitCode == 0 && first.stdout.contains("3 still pending beyond --to"), first.transcript)
            #expect(try connection.historyVersions() == [1, 2])

            let dry = try E2E.run(E2E.args("migrate", folder, "--dry-run"), database: db)
            #expect(dry.exitCode == 0, dry.transcript)
            #expect(!dry.stdout.contains("would apply 0001") && !dry.stdout.contains("would apply 0002"), dry.transcript)
            #expect(dry.stdout.contains("would apply 0003_users") && dry.stdout.contains("would apply 0005_main_project"), dry.transcript)
            #expect(try connection.historyVersions() == [1, 2])
            #expect(try !connection.tableExists("main_project"))

            let dryTo = try E2E.run(E2E.args("migrate", folder, "--dry-run", "--to", "4", "--json"), database: db)
            #expect(dryTo.exitCode == 0, dryTo.transcript)
            let object = try JSONSerialization.jsonObject(with: Data(dryTo.stdout.utf8)) as? [String: Any]
            let versions = (object?["applied"] as? [[String: Any]])?.compactMap { $0["version"] as? Int }
            #expect(versions == [3, 4] && object?["dryRun"] as? Bool == true, dryTo.transcript)
            #expect(try connection.historyVersions() == [1, 2])

            let to = try E2E.run(E2E.args("migrate", folder, "--to", "4"), database: db)
            #expect(to.exitCode == 0, to.transcript)
            #expect(try connection.historyVersions() == [1, 2, 3, 4])
            // A target below what is applied reverses with the stored downs (issue 16); these files have none, so the
            // plan stops before anything is reversed, naming the newest of them (until then this was a no-op, exit 0).
            let below = try E2E.run(E2E.args("migrate", folder, "--to", "1"), database: db)
            #expect(below.exitCode == 2 && below.stderr.contains("0004_guardian has no down migration"), below.transcript)
            #expect(try connection.historyVersions() == [1, 2, 3, 4])
        }
    }

    @Test("verify exits 3 for a migration whose file is gone and for one that failed part way, text and --json")
    func verifyMissingAndFailed() throws {
        try TestDatabase.with { db in
            let folder = try E2E.folder([
                ("0001_a.sql", "CREATE TABLE a (id int);\n"),
                ("0002_b.sql", "-- migrator:no-transaction\nCREATE TABLE b (id int);\nINSERT INTO nowhere VALUES (1);\n"),
            ])
            let failing = try E2E.run(E2E.migrate(folder), database: db)
            #expect(failing.exitCode == 1, failing.transcript)
            let failed = try E2E.run(E2E.args("verify", folder), database: db)
            #expect(failed.exitCode == 3, failed.transcript)
            #expect(failed.stderr.contains("1 failed"), failed.transcript)
            let failedJSON = try E2E.run(E2E.args("verify", folder, "--json"), database: db)
            #expect(failedJSON.exitCode == 3, failedJSON.transcript)
            #expect(try decode(StatusJSON.self, failedJSON.stdout).migrations.last?.state == "failed")

            try folder.write("0002_b.sql", "-- migrator:no-transaction\nCREATE TABLE b (id int);\nCREATE TABLE nowhere (id int);\n")
            #expect(try E2E.run(E2E.migrate(folder), database: db).exitCode == 0)
            try FileManager.default.removeItem(atPath: folder.path + "/0001_a.sql")
            let missing = try E2E.run(E2E.args("verify", folder), database: db)
            #expect(missing.exitCode == 3, missing.transcript)
            #expect(missing.stderr.contains("1 missing"), missing.transcript)
            let missingJSON = try E2E.run(E2E.args("verify", folder, "--json"), database: db)
            #expect(missingJSON.exitCode == 3, missingJSON.transcript)
            #expect(try decode(StatusJSON.self, missingJSON.stdout).migrations.first?.state == "missing")
        }
    }

    @Test("verify exits 3 while something is pending and 0 once everything is applied")
    func verify() throws {
        try TestDatabase.with { db in
            let folder = try MigrationFolder.shipped()
            let before = try E2E.run(E2E.args("verify", folder), database: db)
            #expect(before.exitCode == 3, before.transcript)
            #expect(before.stderr.contains("5 pending"), before.transcript)
            #expect(try E2E.run(E2E.migrate(folder, "--to", "4"), database: db).exitCode == 0)
            let partial = try E2E.run(E2E.args("verify", folder), database: db)
            #expect(partial.exitCode == 3, partial.transcript)
            #expect(partial.stderr.contains("1 pending"), partial.transcript)
            let migrate = try E2E.run(E2E.args("migrate", folder), database: db)
            #expect(migrate.exitCode == 0, migrate.transcript)
            let after = try E2E.run(E2E.args("verify", folder), database: db)
            #expect(after.exitCode == 0, after.transcript)

            try folder.write("0009_more.sql", "CREATE TABLE more_things (id int);\n")
            let pending = try E2E.run(E2E.args("verify", folder, "--json"), database: db)
            #expect(pending.exitCode == 3, pending.transcript)
            #expect(try decode(StatusJSON.self, pending.stdout).migrations.last?.state == "pending")
        }
    }

    /// `--to` is how a staged deploy applies part of the folder; the role sync after it must not turn that into a failure.
    @Test("migrate --to a version before the role tables exist applies those migrations and exits 0")
    func targetBeforeRoleTables() throws {
        try TestDatabase.with { db in
            let folder = try MigrationFolder.shipped()
            let run = try E2E.run(E2E.args("migrate", folder, "--to", "2"), database: db)
            #expect(run.exitCode == 0, run.transcript)
            let connection = try db.connect()
            #expect(try connection.historyVersions() == [1, 2])
            let rest = try E2E.run(E2E.args("migrate", folder), database: db)
            #expect(rest.exitCode == 0, rest.transcript)
            #expect(try connection.historyVersions() == Array(1...5))
        }
    }

    @Test("new creates the next numbered file with a header, which migrate accepts")
    func newCreatesTheNextFile() throws {
        try TestDatabase.with { db in
            let folder = try E2E.folder([
                ("0001_a.sql", "CREATE TABLE a (id int);\n"),
                ("0002_b.sql", "CREATE TABLE b (id int);\n"),
            ])
            let created = try E2E.run(E2E.args("new", folder, "add sites index"))
            #expect(created.exitCode == 0, created.transcript)
            let path = (folder.path as NSString).appendingPathComponent("0003_add_sites_index.sql")
            #expect(created.stdout.contains("0003_add_sites_index.sql"), created.transcript)
            let content = try String(contentsOfFile: path, encoding: .utf8)
            #expect(content.hasPrefix("-- 0003 add sites index"), "\(content)")

            let noTransaction = try E2E.run(E2E.args("new", folder, "build index", "--no-transaction"))
            #expect(noTransaction.exitCode == 0, noTransaction.transcript)
            let second = try String(
                contentsOfFile: (folder.path as NSString).appendingPathComponent("0004_build_index.sql"), encoding: .utf8
            )
            #expect(second.split(separator: "\n", omittingEmptySubsequences: false).first == "-- migrator:no-transaction")

            try (content + "CREATE INDEX a_id_idx ON a (id);\n").write(toFile: path, atomically: true, encoding: .utf8)
            let migrate = try E2E.run(E2E.migrate(folder, "--json"), database: db)
            #expect(migrate.exitCode == 0, migrate.transcript)
            let report = try decode(MigrateJSON.self, migrate.stdout)
            #expect(report.applied.map(\.version) == [1, 2, 3, 4])
            #expect(report.applied.map(\.transactional) == [true, true, true, false])
        }
    }

    @Test("new keeps a name with a newline in its comment: no line of it becomes SQL or a directive; after the largest version it refuses")
    func newWithHostileNames() throws {
        let folder = try E2E.folder([])
        let created = try E2E.run(E2E.args("new", folder, "sneaky\n-- migrator:no-transaction\nDROP TABLE users;"))
        #expect(created.exitCode == 0, created.transcript)
        let path = created.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        let content = try String(contentsOfFile: path, encoding: .utf8)
        let lines = content.split(separator: "\n", omittingEmptySubsequences: false)
        #expect(lines.first?.hasPrefix("-- 0001 sneaky -- migrator:no-transaction DROP TABLE users;") == true, "\(content)")
        #expect(lines.allSatisfy { $0.isEmpty || $0.hasPrefix("--") }, "\(content)")
        #expect(!lines.contains("-- migrator:no-transaction"), "\(content)")

        let full = try E2E.folder([("9223372036854775807_last.sql", "SELECT 1;\n")])
        let refused = try E2E.run(E2E.args("new", full, "one more"))
        #expect(refused.exitCode == 2, refused.transcript)
        #expect(refused.stderr.contains("no number is left after it"), refused.transcript)
    }

    @Test("a NOTICE raised by a migration appears in the logs")
    func serverNoticeIsLogged() throws {
        try TestDatabase.with { db in
            let folder = try E2E.folder([
                ("0001_notice.sql", "DO $$ BEGIN RAISE NOTICE 'hello %', 42; END $$;\nCREATE TABLE n (id int);\n"),
            ])
            let run = try E2E.run(E2E.migrate(folder), database: db)
            #expect(run.exitCode == 0, run.transcript)
            let line = run.stderr.split(separator: "\n").first { $0.contains("server notice") }
            #expect(line?.contains(#"db.message="hello 42""#) == true, run.transcript)
            #expect(line?.contains("0001_notice.sql") == true, run.transcript)
        }
    }

    @Test("usage errors exit 64", arguments: [
        ["migrate", "--to", "-1"],
        ["migrate", "--log-format", "xml"],
        ["status", "--log-level", "loud"],
        ["migrate", "--lock-timeout", "soon"],
        ["wait", "--timeout", "forever"],
        ["migrate", "--no-such-option"],
    ])
    func usageErrors(arguments: [String]) throws {
        let folder = try MigrationFolder()
        let run = try E2E.run(arguments + ["--migrations", folder.path, "--database-url", "postgresql://nobody@127.0.0.1:1/none"])
        #expect(run.exitCode == 64, run.transcript)
    }

    @Test("a usage error does not echo a password given in the wrong place")
    func usageErrorDoesNotEchoPassword() throws {
        let url = try Server.url(user: "postgres", password: "us@ge%secret", database: "postgres")
        let run = try E2E.run(["migrate", url], secrets: ["us@ge%secret"])
        #expect(run.exitCode == 64, run.transcript)
    }

    @Test("a file that is not UTF-8 or has an unknown directive exits 2 naming file:line:col; nothing is applied")
    func invalidFileContents() throws {
        try TestDatabase.with { db in
            let folder = try E2E.folder([
                ("0001_fine.sql", "CREATE TABLE fine (id int);\n"),
                ("0003_directive.sql", "-- header\n-- migrator:no-transactions\nSELECT 1;\n"),
            ])
            try folder.write("0002_latin1.sql", bytes: Array("-- ok\nSELECT 'caf".utf8) + [0xE9] + Array("';\n".utf8))
            let run = try E2E.run(E2E.migrate(folder), database: db)
            #expect(run.exitCode == 2, run.transcript)
            #expect(run.stderr.contains("0002_latin1.sql:2:12: error:"), run.transcript)
            #expect(run.stderr.contains("0003_directive.sql:2:1: error:"), run.transcript)
            let connection = try db.connect()
            #expect(try !connection.tableExists("fine"))
        }
    }

    @Test("hidden files and files that do not end in .sql are ignored")
    func ignoredFiles() throws {
        try TestDatabase.with { db in
            let folder = try E2E.folder([
                ("0001_a.sql", "CREATE TABLE a (id int);\n"),
                (".0002_swap.sql", "this is not SQL"),
                ("README.md", "# migrations"),
                ("0002_b.sql.orig", "this is not SQL either"),
            ])
            let run = try E2E.run(E2E.migrate(folder, "--json"), database: db)
            #expect(run.exitCode == 0, run.transcript)
            #expect(try decode(MigrateJSON.self, run.stdout).applied.map(\.version) == [1])
            try E2E.expectAllApplied(folder, database: db, versions: [1])
        }
    }

    @Test("badly named files exit 2, and the message names each of them")
    func badFileNames() throws {
        try TestDatabase.with { db in
            let folder = try E2E.folder([
                ("abc.sql", "SELECT 1;\n"),
                ("0_zero.sql", "SELECT 1;\n"),
                ("1_a.sql", "SELECT 1;\n"),
                ("0001_b.sql", "SELECT 1;\n"),
                ("0002_fine.sql", "CREATE TABLE fine (id int);\n"),
            ])
            let run = try E2E.run(E2E.migrate(folder), database: db)
            #expect(run.exitCode == 2, run.transcript)
            for name in ["abc.sql", "0_zero.sql", "1_a.sql", "0001_b.sql"] {
                #expect(run.stderr.contains(name), "\(name) is not named\n\(run.stderr)")
            }
            let connection = try db.connect()
            #expect(try !connection.tableExists("fine"))
        }
    }

    @Test("--json reports applied migrations, and a no-op run costs the same round trips for 5 or 60 files")
    func constantRoundTrips() throws {
        func noOpRoundTrips(_ label: String, _ folder: MigrationFolder, files: Int, arguments: [String]) throws -> Int {
            try TestDatabase.with(label) { db in
                let first = try E2E.run(arguments + ["--json"], database: db)
                #expect(first.exitCode == 0, first.transcript)
                #expect(try decode(MigrateJSON.self, first.stdout).applied.count == files)
                // The first run's lock goes with its server process, which ends a moment after the client closed the
                // connection: under load the second run could find it still held and count a retry's round trips.
                let connection = try db.connect()
                #expect(try DaemonProcess.wait(timeout: 30) {
                    try connection.count("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND application_name = 'migrator' AND pid <> pg_backend_pid()") == 0
                }, "the first run's server process did not end")
                let again = try E2E.run(arguments + ["--json"], database: db)
                #expect(again.exitCode == 0, again.transcript)
                let report = try decode(MigrateJSON.self, again.stdout)
                #expect(report.applied.isEmpty)
                return report.roundTrips
            }
        }
        func own(_ files: Int) throws -> MigrationFolder {
            let folder = try MigrationFolder()
            for index in 1...files {
                try folder.write(String(format: "%04d_t%d.sql", index, index), "CREATE TABLE t\(index) (id int);\n")
            }
            return folder
        }
        let five = try own(5)
        let sixty = try own(60)
        let small = try noOpRoundTrips("roundtrips5", five, files: 5, arguments: E2E.migrate(five))
        let large = try noOpRoundTrips("roundtrips60", sixty, files: 60, arguments: E2E.migrate(sixty))
        #expect(small > 0)
        #expect(small == large)
        // The set-up (with the lock's first try) and the history; the lock goes with the session, no unlock.
        #expect(small == 2)

        let shipped = try MigrationFolder.shipped()
        let shippedPlus = try MigrationFolder.shipped()
        for index in 6...60 {
            try shippedPlus.write(String(format: "%04d_t%d.sql", index, index), "CREATE TABLE t\(index) (id int);\n")
        }
        let withHook = try noOpRoundTrips("roundtripsshipped", shipped, files: 5, arguments: E2E.args("migrate", shipped))
        let withHookLarge = try noOpRoundTrips("roundtripsshipped60", shippedPlus, files: 60, arguments: E2E.args("migrate", shippedPlus))
        #expect(withHook == withHookLarge)
        // The same and the role hook's check.
        #expect(withHook == 3)
    }
}

func scalarColumn(of word: String, in line: String) -> Int {
    let range = line.range(of: word)!
    return line.unicodeScalars[line.startIndex..<range.lowerBound].count + 1
}

func expectCaret(in run: Run, under word: String, on line: String, sourceLocation: SourceLocation = #_sourceLocation) {
    let lines = run.stderr.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
    guard let index = lines.firstIndex(where: { $0.hasSuffix("| " + line) }), index + 1 < lines.count else {
        Issue.record("the source line is not shown\n\(run.stderr)", sourceLocation: sourceLocation)
        return
    }
    let shown = lines[index]
    let caret = lines[index + 1]
    let gutter = shown.unicodeScalars.count - line.unicodeScalars.count
    let expected = gutter + scalarColumn(of: word, in: line) - 1
    #expect(caret.hasSuffix("^"), "no caret line\n\(run.stderr)", sourceLocation: sourceLocation)
    #expect(caret.contains("|"), "no caret gutter\n\(run.stderr)", sourceLocation: sourceLocation)
    #expect(caret.unicodeScalars.count - 1 == expected, "the caret is not under \(word)\n\(run.stderr)", sourceLocation: sourceLocation)
}
