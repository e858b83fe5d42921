import Foundation
import MigratorTestSupport
import Postgres
import Testing

/// `migrator lint` and `migrate --lint`, through the built binary.
@Suite("migrator lint")
struct LintTests {
    /// `lint --json` as a script reads it.
    struct Report: Decodable {
        struct Finding: Decodable, Equatable {
            var file: String
            var line: Int
            var column: Int
            var severity: String
            var rule: String
            var message: String
            var instead: String
        }
        var ok: Bool
        var exitCode: Int32
        var files: [String]
        var errors: Int
        var warnings: Int
        var findings: [Finding]
        var problems: [ProblemJSON]
    }

    /// One rule: SQL it must report (at `line`), SQL it must not, and options for both runs.
    struct Case: CustomTestStringConvertible, Sendable {
        var rule: String
        var severity = "error"
        var dangerous: String
        var line = 1
        var safe: [String]
        var arguments: [String] = []
        var testDescription: String { rule }
    }

    static let cases: [Case] = [
        Case(rule: "require-concurrent-index-creation", dangerous: "CREATE INDEX t_a_idx ON t (a);\n", safe: [
            "-- migrator:no-transaction\nCREATE INDEX CONCURRENTLY t_a_idx ON t (a);\n",
            // A table made by the same migration: nobody uses it yet.
            "CREATE TABLE t (a text);\nCREATE INDEX t_a_idx ON t (a);\n",
        ]),
        Case(rule: "require-concurrent-index-deletion", dangerous: "DROP INDEX t_a_idx;\n", safe: [
            "-- migrator:no-transaction\nDROP INDEX CONCURRENTLY t_a_idx;\n",
            "CREATE TABLE t (a text);\nCREATE INDEX t_a_idx ON t (a);\nDROP INDEX t_a_idx;\n",
        ]),
        Case(rule: "ban-concurrent-index-creation-in-transaction", dangerous: "SELECT 1;\nCREATE INDEX CONCURRENTLY t_a_idx ON t (a);\n", line: 2, safe: [
            "-- migrator:no-transaction\nSELECT 1;\nCREATE INDEX CONCURRENTLY t_a_idx ON t (a);\n",
        ]),
        Case(rule: "adding-foreign-key-constraint", dangerous: "ALTER TABLE t ADD CONSTRAINT t_u_fk FOREIGN KEY (u) REFERENCES u (id);\n", safe: [
            "ALTER TABLE t ADD CONSTRAINT t_u_fk FOREIGN KEY (u) REFERENCES u (id) NOT VALID;\n",
            "ALTER TABLE t VALIDATE CONSTRAINT t_u_fk;\n",
            "CREATE TABLE t (u bigint);\nALTER TABLE t ADD CONSTRAINT t_u_fk FOREIGN KEY (u) REFERENCES u (id);\n",
        ]),
        Case(rule: "constraint-missing-not-valid", dangerous: "ALTER TABLE t ADD CONSTRAINT t_a_positive CHECK (a > 0);\n", safe: [
            "ALTER TABLE t ADD CONSTRAINT t_a_positive CHECK (a > 0) NOT VALID;\n",
            "ALTER TABLE t VALIDATE CONSTRAINT t_a_positive;\n",
        ]),
        // Validated in the same transaction that added it: the ADD's lock is held through the scan.
        Case(rule: "constraint-missing-not-valid", dangerous: "ALTER TABLE t ADD CONSTRAINT c CHECK (a > 0) NOT VALID;\nALTER TABLE t VALIDATE CONSTRAINT c;\n", line: 2, safe: [
            "-- migrator:no-transaction\nALTER TABLE t ADD CONSTRAINT c CHECK (a > 0) NOT VALID;\nALTER TABLE t VALIDATE CONSTRAINT c;\n",
        ]),
        Case(rule: "adding-not-nullable-field", dangerous: "ALTER TABLE t ALTER COLUMN a SET NOT NULL;\n", safe: [
            "ALTER TABLE t VALIDATE CONSTRAINT t_a_not_null;\nALTER TABLE t ALTER COLUMN a SET NOT NULL;\n",
            "CREATE TABLE t (a text);\nALTER TABLE t ALTER COLUMN a SET NOT NULL;\n",
        ]),
        Case(rule: "adding-required-field", dangerous: "ALTER TABLE t ADD COLUMN a text NOT NULL;\n", safe: [
            "ALTER TABLE t ADD COLUMN a text NOT NULL DEFAULT '';\n",
        ]),
        Case(rule: "changing-column-type", dangerous: "ALTER TABLE t ALTER COLUMN a TYPE bigint;\n", safe: [
            "CREATE TABLE t (a integer);\nALTER TABLE t ALTER COLUMN a TYPE bigint;\n",
        ]),
        Case(rule: "changing-column-type", severity: "warning", dangerous: "ALTER TABLE t ALTER COLUMN a TYPE text;\n", safe: [
            "-- migrator:lint-ignore changing-column-type: a is varchar(20), binary-coercible to text\nALTER TABLE t ALTER COLUMN a TYPE text;\n",
        ]),
        Case(rule: "adding-field-with-default", dangerous: "ALTER TABLE t ADD COLUMN a uuid DEFAULT gen_random_uuid();\n", safe: [
            "ALTER TABLE t ADD COLUMN a timestamptz DEFAULT now();\n",
            "ALTER TABLE t ADD COLUMN a integer DEFAULT 0;\n",
        ]),
        Case(rule: "adding-serial-primary-key-field", dangerous: "ALTER TABLE t ADD PRIMARY KEY (id);\n", safe: [
            "ALTER TABLE t ADD CONSTRAINT t_pkey PRIMARY KEY USING INDEX t_id_idx;\n",
        ]),
        Case(rule: "disallowed-unique-constraint", dangerous: "ALTER TABLE t ADD CONSTRAINT t_a_key UNIQUE (a);\n", safe: [
            "ALTER TABLE t ADD CONSTRAINT t_a_key UNIQUE USING INDEX t_a_idx;\n",
        ]),
        Case(rule: "renaming-column", dangerous: "ALTER TABLE t RENAME COLUMN a TO b;\n", safe: [
            "CREATE TABLE t (a text);\nALTER TABLE t RENAME COLUMN a TO b;\n",
        ]),
        Case(rule: "renaming-table", dangerous: "ALTER TABLE t RENAME TO u;\n", safe: [
            "CREATE TABLE t (a text);\nALTER TABLE t RENAME TO u;\n",
        ]),
        Case(rule: "ban-drop-column", dangerous: "ALTER TABLE t DROP COLUMN a;\n", safe: [
            "CREATE TABLE t (a text, b text);\nALTER TABLE t DROP COLUMN a;\n",
        ]),
        Case(rule: "ban-drop-table", dangerous: "DROP TABLE t;\n", safe: [
            "CREATE TABLE t (a text);\nDROP TABLE t;\n",
        ]),
        Case(rule: "ban-new-enum-value-use-in-transaction", dangerous: "ALTER TYPE mood ADD VALUE 'meh';\nUPDATE t SET m = 'meh';\n", line: 2, safe: [
            "ALTER TYPE mood ADD VALUE 'meh';\n",
            "-- migrator:no-transaction\nALTER TYPE mood ADD VALUE 'meh';\nUPDATE t SET m = 'meh';\n",
        ]),
        Case(rule: "ban-vacuum-full", dangerous: "-- migrator:no-transaction\nVACUUM FULL t;\n", line: 2, safe: [
            "-- migrator:no-transaction\nVACUUM t;\n",
        ]),
        Case(rule: "ban-cluster", dangerous: "CLUSTER t USING t_a_idx;\n", safe: [
            "CREATE TABLE t (a text);\nCREATE INDEX t_a_idx ON t (a);\nCLUSTER t USING t_a_idx;\n",
        ]),
        Case(rule: "require-concurrent-reindex", dangerous: "REINDEX TABLE t;\n", safe: [
            "-- migrator:no-transaction\nREINDEX TABLE CONCURRENTLY t;\n",
        ]),
        Case(rule: "ban-truncate-cascade", dangerous: "TRUNCATE t CASCADE;\n", safe: ["TRUNCATE t;\n"]),
        Case(rule: "require-lock-timeout", dangerous: "SELECT 1;\nALTER TABLE t ADD COLUMN a text;\n", line: 2, safe: [
            "SET lock_timeout = '2s';\nALTER TABLE t ADD COLUMN a text;\n",
            "SELECT set_config('lock_timeout', '2s', true);\nALTER TABLE t ADD COLUMN a text;\n",
            "CREATE TABLE t (a text);\nALTER TABLE t ADD COLUMN b text;\n",
        ], arguments: ["--ddl-lock-timeout", "0"]),
        Case(rule: "prefer-bigint-over-int", severity: "warning", dangerous: "CREATE TABLE t (id integer PRIMARY KEY);\n", safe: [
            "CREATE TABLE t (id bigint PRIMARY KEY, n integer);\n",
        ]),
        Case(rule: "prefer-bigint-over-int", severity: "warning", dangerous: "CREATE TABLE t (id int, CONSTRAINT t_pkey PRIMARY KEY (id));\n", safe: [
            "CREATE TABLE t (id bigint, n int, CONSTRAINT t_pkey PRIMARY KEY (id));\n",
        ]),
        Case(rule: "prefer-identity", severity: "warning", dangerous: "CREATE TABLE t (id bigserial PRIMARY KEY);\n", safe: [
            "CREATE TABLE t (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY);\n",
        ]),
        Case(rule: "prefer-text-field", severity: "warning", dangerous: "CREATE TABLE t (a varchar(20));\n", safe: [
            "CREATE TABLE t (a text, b varchar);\n",
        ]),
        Case(rule: "ban-char-field", severity: "warning", dangerous: "CREATE TABLE t (a char(2));\n", safe: ["CREATE TABLE t (a text);\n"]),
        Case(rule: "prefer-timestamp-tz", severity: "warning", dangerous: "ALTER TABLE t ADD COLUMN a timestamp;\n", safe: [
            "ALTER TABLE t ADD COLUMN a timestamptz;\n",
        ]),
        Case(rule: "lint-ignore-without-reason", dangerous: "-- migrator:lint-ignore ban-drop-table\nDROP TABLE t;\n", safe: [
            "-- migrator:lint-ignore ban-drop-table: replaced by u in release 7, which no longer reads it\nDROP TABLE t;\n",
        ]),
        Case(rule: "lint-ignore-unknown-rule", dangerous: "-- migrator:lint-ignore ban-drop-tables: typo\nSELECT 1;\n", safe: [
            "-- migrator:lint-ignore ban-drop-table, ban-drop-column: both gone from the app in release 7\nDROP TABLE t;\n",
        ]),
    ]

    /// Lints `sql` as one file (`0001_case.sql`) and reads the JSON.
    static func lint(_ sql: String, _ arguments: [String] = []) throws -> (Run, Report) {
        let folder = try E2E.folder([("0001_case.sql", sql)])
        let path = (folder.path as NSString).appendingPathComponent("0001_case.sql")
        let run = try E2E.run(["lint", path, "--json"] + arguments)
        return (run, try decode(Report.self, run.stdout))
    }

    @Test("each rule reports its hazard, at its line, with its severity and exit code", arguments: cases)
    func reportsTheHazard(_ rule: Case) throws {
        let (run, report) = try Self.lint(rule.dangerous, rule.arguments)
        let found = report.findings.filter { $0.rule == rule.rule }
        #expect(found.count == 1, "\(report.findings.map(\.rule))")
        #expect(found.first?.line == rule.line, run.transcript)
        #expect(found.first?.severity == rule.severity, run.transcript)
        #expect(found.first?.instead.isEmpty == false)
        #expect(run.exitCode == (report.findings.contains { $0.severity == "error" } ? 1 : 0), run.transcript)
    }

    @Test("each rule stays silent on the safe way to do the same, and on a table the migration created", arguments: cases)
    func silentOnTheSafeForm(_ rule: Case) throws {
        for sql in rule.safe {
            let (run, report) = try Self.lint(sql, rule.arguments)
            #expect(!report.findings.contains { $0.rule == rule.rule }, "\(sql)\n\(run.stdout)")
        }
    }

    @Test("without --ddl-lock-timeout 0 migrator's own lock_timeout applies and no file needs one")
    func lockTimeoutOnlyWhenMigratorsIsOff() throws {
        let (run, report) = try Self.lint("ALTER TABLE t ADD COLUMN a text;\n")
        #expect(report.findings.isEmpty, run.transcript)
        #expect(run.exitCode == 0, run.transcript)
        let folder = try E2E.folder([("0001_a.sql", "ALTER TABLE t ADD COLUMN a text;\n")])
        let viaVariable = try E2E.run(
            ["lint", (folder.path as NSString).appendingPathComponent("0001_a.sql")],
            environment: ["MIGRATOR_DDL_LOCK_TIMEOUT": "0"]
        )
        #expect(viaVariable.exitCode == 1, viaVariable.transcript)
        #expect(viaVariable.stdout.contains("[require-lock-timeout]"), viaVariable.transcript)
    }

    @Test("text output: file:line:col: severity: [rule] message, then an instead line; warnings alone exit 0")
    func textOutput() throws {
        let folder = try E2E.folder([
            ("0001_index.sql", "-- make it fast\nSELECT 1;\n  CREATE INDEX t_a_idx ON t (a);\n"),
            ("0002_warn.sql", "CREATE TABLE w (a varchar(10));\n"),
        ])
        let first = (folder.path as NSString).appendingPathComponent("0001_index.sql")
        let second = (folder.path as NSString).appendingPathComponent("0002_warn.sql")
        let run = try E2E.run(["lint", first, second])
        #expect(run.exitCode == 1, run.transcript)
        let lines = run.stdout.split(separator: "\n").map(String.init)
        #expect(lines.first?.hasPrefix("\(first):3:3: error: [require-concurrent-index-creation] CREATE INDEX on \"t\"") == true, run.transcript)
        #expect(lines.dropFirst().first?.hasPrefix("  instead: CREATE INDEX CONCURRENTLY") == true, run.transcript)
        #expect(lines.contains { $0.hasPrefix("\(second):1:19: warning: [prefer-text-field]") }, run.transcript)
        #expect(lines.last == "1 error, 1 warning in 2 files", run.transcript)

        let warningsOnly = try E2E.run(["lint", second])
        #expect(warningsOnly.exitCode == 0, warningsOnly.transcript)
        #expect(warningsOnly.stdout.contains("warning: [prefer-text-field]"), warningsOnly.transcript)
    }

    @Test("--json: one document with every finding's file, line, column, severity, rule, message and instead")
    func jsonShape() throws {
        let (run, report) = try Self.lint("CREATE TABLE n (id serial PRIMARY KEY);\nDROP TABLE t;\n")
        #expect(run.exitCode == 1, run.transcript)
        #expect(!report.ok)
        #expect(report.exitCode == 1)
        #expect(report.errors == 1 && report.warnings == 2, run.transcript)
        #expect(report.files.count == 1 && report.files[0].hasSuffix("/0001_case.sql"))
        #expect(report.findings.map(\.rule) == ["prefer-bigint-over-int", "prefer-identity", "ban-drop-table"])
        let drop = try #require(report.findings.last)
        #expect(drop.file == report.files[0] && drop.line == 2 && drop.column == 1 && drop.severity == "error")
        #expect(drop.message.contains("\"t\""))
        // Exactly these keys, so that a script can rely on them.
        let object = try JSONSerialization.jsonObject(with: Data(run.stdout.utf8)) as? [String: Any]
        let first = (object?["findings"] as? [[String: Any]])?.first
        #expect(Set(first?.keys ?? [:].keys) == ["file", "line", "column", "severity", "rule", "message", "instead"])
    }

    @Test("an excuse with a reason silences its rule for the next statement only; one without a reason is reported itself")
    func excuses() throws {
        let (run, report) = try Self.lint(
            "-- migrator:lint-ignore ban-drop-table: the app stopped using it in release 7\nDROP TABLE old;\nDROP TABLE other;\n"
        )
        #expect(report.findings.map(\.rule) == ["ban-drop-table"], run.transcript)
        #expect(report.findings.first?.line == 3, run.transcript)

        let (bare, bareReport) = try Self.lint("SELECT 1;\n--   migrator:lint-ignore ban-drop-table:   \nDROP TABLE old;\n")
        #expect(bareReport.findings.map(\.rule) == ["lint-ignore-without-reason"], bare.transcript)
        #expect(bareReport.findings.first.map { ($0.line, $0.column) } ?? (0, 0) == (2, 1), bare.transcript)
        #expect(bare.exitCode == 1, bare.transcript)
    }

    @Test("a file that cannot be read or parsed exits 2 at file:line:col, after linting the others")
    func unreadableOrUnparsable() throws {
        let folder = try E2E.folder([
            ("0001_ok.sql", "DROP TABLE t;\n"),
            ("0002_bad.sql", "SELECT 1;\nSELEC 2;\n"),
        ])
        let ok = (folder.path as NSString).appendingPathComponent("0001_ok.sql")
        let bad = (folder.path as NSString).appendingPathComponent("0002_bad.sql")
        let missing = (folder.path as NSString).appendingPathComponent("0003_missing.sql")
        let run = try E2E.run(["lint", ok, bad, missing])
        #expect(run.exitCode == 2, run.transcript)
        #expect(run.stdout.contains("\(ok):1:1: error: [ban-drop-table]"), run.transcript)
        #expect(run.stderr.contains("\(bad):2:1: error: cannot be linted: syntax error at or near \"SELEC\""), run.transcript)
        #expect(run.stderr.contains("\(missing): error: the file cannot be read"), run.transcript)

        let json = try E2E.run(["lint", ok, bad, "--json"])
        #expect(json.exitCode == 2, json.transcript)
        let report = try decode(Report.self, json.stdout)
        #expect(report.exitCode == 2 && report.findings.map(\.rule) == ["ban-drop-table"])
        #expect(report.problems.first?.location?.line == 2, json.transcript)

        let usage = try E2E.run(["lint", "--all", ok])
        #expect(usage.exitCode == 64, usage.transcript)
    }

    @Test("--all lints every file of the folder without a database")
    func allWithoutDatabase() throws {
        let folder = try E2E.folder([
            ("0001_a.sql", "CREATE TABLE a (id bigint PRIMARY KEY);\n"),
            ("0002_b.sql", "CREATE INDEX a_id_idx ON a (id);\n"),
        ])
        // Nothing listens on port 1: a lint that tried to connect would fail with exit 4.
        let run = try E2E.run(E2E.args("lint", folder, "--all"), environment: ["DATABASE_URL": "postgresql://nobody@127.0.0.1:1/none"])
        #expect(run.exitCode == 1, run.transcript)
        #expect(run.stdout.contains("0002_b.sql:1:1: error: [require-concurrent-index-creation]"), run.transcript)
        #expect(run.stdout.hasSuffix("1 error, 0 warnings in 2 files\n"), run.transcript)
    }

    @Test("without FILEs lint checks only the pending migrations, which it learns from the database")
    func pendingOnly() throws {
        try TestDatabase.with { db in
            let folder = try E2E.folder([("0001_a.sql", "CREATE TABLE a (id bigint PRIMARY KEY, v text);\nCREATE INDEX a_v_idx ON a (v);\n")])
            let migrate = try E2E.run(E2E.migrate(folder, "--lint", "off"), database: db)
            #expect(migrate.exitCode == 0, migrate.transcript)
            try folder.write("0002_b.sql", "ALTER TABLE a DROP COLUMN v;\n")
            let run = try E2E.run(E2E.args("lint", folder, "--json"), database: db)
            #expect(run.exitCode == 1, run.transcript)
            let report = try decode(Report.self, run.stdout)
            #expect(report.files.map { ($0 as NSString).lastPathComponent } == ["0002_b.sql"], run.transcript)
            #expect(report.findings.map(\.rule) == ["ban-drop-column"], run.transcript)

            let unreachable = try E2E.run(E2E.args("lint", folder), environment: ["DATABASE_URL": "postgresql://nobody@127.0.0.1:1/none"])
            #expect(unreachable.exitCode == 4, unreachable.transcript)
        }
    }

    @Test("migrate --lint error refuses before applying anything: exit 2, the findings named, the history empty")
    func migrateLintErrorRefuses() throws {
        try TestDatabase.with { db in
            let folder = try E2E.folder([
                ("0001_a.sql", "CREATE TABLE a (id bigint PRIMARY KEY, v text);\n"),
                ("0002_b.sql", "-- migrator:lint-ignore ban-drop-column: test\nSELECT 1;\nCREATE INDEX a_v_idx ON a (v);\n"),
            ])
            let connection = try db.connect()
            for arguments in [["--lint", "error"], ["--lint", "error", "--json"]] {
                let run = try E2E.run(E2E.migrate(folder) + arguments, database: db)
                #expect(run.exitCode == 2, run.transcript)
                #expect(run.stderr.contains("0002_b.sql:3:1: error: [require-concurrent-index-creation]"), run.transcript)
                #expect(run.stderr.contains("nothing was applied"), run.transcript)
                #expect(try connection.historyVersions() == [], run.transcript)
                #expect(try !connection.tableExists("a"), run.transcript)
                if arguments.contains("--json") {
                    let failure = try decode(FailureJSON.self, run.stdout)
                    #expect(failure.exitCode == 2 && failure.error.code == "invalidMigrationFile", run.transcript)
                }
            }
            let viaVariable = try E2E.run(E2E.migrate(folder), database: db, environment: ["MIGRATOR_LINT": "error"])
            #expect(viaVariable.exitCode == 2, viaVariable.transcript)
            #expect(try connection.historyVersions() == [])
            // The option wins over the variable.
            let overridden = try E2E.run(E2E.migrate(folder, "--lint", "warn"), database: db, environment: ["MIGRATOR_LINT": "error"])
            #expect(overridden.exitCode == 0, overridden.transcript)
            #expect(try connection.historyVersions() == [1, 2])
        }
    }

    @Test("migrate lints by default (--lint warn): findings on standard error, JSON on standard output intact, the run goes on")
    func migrateLintWarnGoesOn() throws {
        try TestDatabase.with { db in
            let folder = try E2E.folder([
                ("0001_a.sql", "CREATE TABLE a (id bigint PRIMARY KEY, v text);\nCREATE INDEX a_v_idx ON a (v);\n"),
                ("0002_b.sql", "CREATE INDEX a_v2_idx ON a (v);\n"),
            ])
            let run = try E2E.run(E2E.migrate(folder, "--json"), database: db)
            #expect(run.exitCode == 0, run.transcript)
            #expect(run.stderr.contains("0002_b.sql:1:1: error: [require-concurrent-index-creation]"), run.transcript)
            #expect(run.stderr.contains("  instead: CREATE INDEX CONCURRENTLY"), run.transcript)
            #expect(!run.stderr.contains("0001_a.sql:"), run.transcript)
            #expect(try decode(MigrateJSON.self, run.stdout).applied.map(\.version) == [1, 2])
            let connection = try db.connect()
            #expect(try connection.historyVersions() == [1, 2])

            // Nothing pending: nothing to lint, nothing printed.
            let again = try E2E.run(E2E.migrate(folder), database: db)
            #expect(!again.stderr.contains("[require-concurrent-index-creation]"), again.transcript)
        }
    }

    @Test("migrate --lint off prints nothing; with JSON logs the findings are log events")
    func migrateLintOffAndJSONLogs() throws {
        try TestDatabase.with { db in
            let folder = try E2E.folder([("0001_a.sql", "CREATE TABLE a (id integer PRIMARY KEY);\n")])
            let off = try E2E.run(E2E.migrate(folder, "--lint", "off", "--dry-run"), database: db)
            #expect(off.exitCode == 0, off.transcript)
            #expect(!off.stderr.contains("prefer-bigint-over-int"), off.transcript)

            let logged = try E2E.run(E2E.migrate(folder, "--log-format", "json"), database: db)
            #expect(logged.exitCode == 0, logged.transcript)
            let events = logged.stderr.split(separator: "\n").map { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
            #expect(events.allSatisfy { $0 != nil }, logged.transcript)
            #expect(events.contains { $0?["lint.rule"] as? String == "prefer-bigint-over-int" && $0?["lint.line"] as? String == "1" }, logged.transcript)

            let bad = try E2E.run(E2E.migrate(folder, "--lint", "loud"), database: db)
            #expect(bad.exitCode == 64, bad.transcript)
        }
    }

    @Test("migrator new writes a header that says how to lint and excuse; the new file lints clean and migrates")
    func newHeader() throws {
        try TestDatabase.with { db in
            let folder = try E2E.folder([])
            for arguments in [["first"], ["second", "--no-transaction"]] {
                let created = try E2E.run(E2E.args("new", folder) + arguments)
                #expect(created.exitCode == 0, created.transcript)
                let path = created.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
                let content = try String(contentsOfFile: path, encoding: .utf8)
                #expect(content.contains("migrator lint FILE"), "\(content)")
                #expect(content.contains("-- migrator:lint-ignore rule-id: reason"), "\(content)")
                let lint = try E2E.run(["lint", path])
                #expect(lint.exitCode == 0 && lint.stdout == "0 errors, 0 warnings in 1 file\n", lint.transcript)
            }
            // An excuse below the first statement is accepted by migrate (other migrator: directives are not there),
            // and lets --lint error through.
            try folder.write("0003_table.sql", "CREATE TABLE t (a text);\n")
            try folder.write("0004_excused.sql", "SELECT 1;\n-- migrator:lint-ignore require-concurrent-index-creation: t is new and empty (0003)\nCREATE INDEX t_a_idx ON t (a);\n")
            let migrate = try E2E.run(E2E.migrate(folder, "--lint", "error"), database: db)
            #expect(migrate.exitCode == 0, migrate.transcript)
            #expect(!migrate.stderr.contains("[require-concurrent-index-creation]"), migrate.transcript)
            #expect(try db.connect().historyVersions() == [1, 2, 3, 4])
        }
    }
}
