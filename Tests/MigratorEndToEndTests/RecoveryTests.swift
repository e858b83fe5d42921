import Foundation
import MigratorTestSupport
import Postgres
import SystemSupport
import Testing

/// An older release meeting the database a newer one migrated: a rolled-back image must be able to boot.
@Suite("Recovery: an older release meeting a newer database")
struct RecoveryTests {
    /// The newer release's folder: the shipped schema plus two migrations; the older one lacks those two.
    static func releases() throws -> (newer: MigrationFolder, older: MigrationFolder) {
        let newer = try E2E.shipped(plus: [
            ("0009_reports.sql", "CREATE TABLE reports (id bigint PRIMARY KEY);\n"),
            ("0010_report_title.sql", "ALTER TABLE reports ADD COLUMN title text;\n"),
        ])
        return (newer, try MigrationFolder.shipped())
    }

    @Test("without --allow-newer-database every command that migrates refuses, naming the newer versions and the option; with it (or its variable) nothing is applied or reverted, the run warns and exits 0, --then-exec runs")
    func olderReleaseBoots() throws {
        try TestDatabase.with { db in
            let (newer, older) = try Self.releases()
            #expect(try E2E.run(["migrate", "--migrations", newer.path], database: db).exitCode == 0)
            let connection = try db.connect()
            let history = try connection.historyVersions()
            #expect(history.suffix(2) == [9, 10])

            let refused = try E2E.run(["migrate", "--migrations", older.path, "--json"], database: db)
            #expect(refused.exitCode == 2, refused.transcript)
            let failure = try decode(FailureJSON.self, refused.stdout)
            let message = try #require(failure.error.diagnostics.first { $0.message.contains("newer than every file") }, refused.transcript)
            #expect(message.message.contains("0009_reports, 0010_report_title"), refused.transcript)
            #expect(message.message.contains("--allow-newer-database (MIGRATOR_ALLOW_NEWER_DATABASE=1)"), refused.transcript)
            // Not also reported one by one as files to restore.
            #expect(!refused.stdout.contains("restore 0009_reports.sql"), refused.transcript)
            let exec = try E2E.run(["migrate", "--migrations", older.path, "--then-exec", "--", "true"], database: db)
            #expect(exec.exitCode == 2, exec.transcript)

            let allowed = try E2E.run(["migrate", "--migrations", older.path, "--allow-newer-database"], database: db)
            #expect(allowed.exitCode == 0, allowed.transcript)
            #expect(allowed.stdout.contains("warning: ") && allowed.stdout.contains("has migrations newer than this folder (0009_reports, 0010_report_title)"), allowed.transcript)
            #expect(allowed.stderr.contains("the database has migrations newer than this folder; applying nothing, reverting nothing"), allowed.transcript)
            let json = try E2E.run(["migrate", "--migrations", older.path, "--json"], database: db, environment: ["MIGRATOR_ALLOW_NEWER_DATABASE": "1"])
            #expect(json.exitCode == 0, json.transcript)
            struct Report: Decodable { var applied: [MigrateJSON.Applied]; var newerThanFolder: [String] }
            let report = try decode(Report.self, json.stdout)
            #expect(report.applied.isEmpty && report.newerThanFolder == ["0009_reports", "0010_report_title"], json.transcript)
            let marker = try older.write("exec-ran", "")
            try FileManager.default.removeItem(atPath: marker)
            let then = try E2E.run(["migrate", "--migrations", older.path, "--allow-newer-database", "--then-exec", "--", "touch", marker], database: db)
            #expect(then.exitCode == 0, then.transcript)
            #expect(FileManager.default.fileExists(atPath: marker), then.transcript)
            // Nothing was reverted: the newer release's history and table are there.
            #expect(try connection.historyVersions() == history)
            #expect(try connection.tableExists("reports"))

            // status names them as newer than the folder; verify does not pass on them.
            let status = try E2E.run(E2E.args("status", older), database: db)
            #expect(status.stdout.contains("missing (newer than this folder)"), status.transcript)
            #expect(try E2E.run(E2E.args("verify", older), database: db).exitCode == 3)
        }
    }

    @Test("an older release with an older role catalogue, started with --allow-newer-database, never syncs it over the newer one")
    func olderCatalogueNotApplied() throws {
        try TestDatabase.with { db in
            let (newer, older) = try Self.releases()
            // The older release ran first (the built-in catalogue), then the newer one with a catalogue of its own.
            #expect(try E2E.run(["migrate", "--migrations", older.path], database: db).exitCode == 0)
            let roles = try newer.write("newer-roles.json", #"{"roles": [{"name": "Viewer", "permissions": ["view_project"]}]}"#)
            #expect(try E2E.run(["migrate", "--migrations", newer.path, "--roles", roles], database: db).exitCode == 0)
            let connection = try db.connect()
            let latest = "SELECT version FROM migrator.role_version ORDER BY id DESC LIMIT 1"
            let newest = try connection.scalar(latest)
            let rollback = try E2E.run(["migrate", "--migrations", older.path, "--allow-newer-database", "--json"], database: db)
            #expect(rollback.exitCode == 0, rollback.transcript)
            #expect(rollback.stdout.contains("superseded"), rollback.transcript)
            #expect(try connection.scalar(latest) == newest)
        }
    }

    @Test("serve of an older release with --allow-newer-database starts, is ready, and says so in /readyz and a metric; without it, it does not start")
    func serveOfOlderRelease() throws {
        try TestDatabase.with { db in
            let (newer, older) = try Self.releases()
            #expect(try E2E.run(["migrate", "--migrations", newer.path], database: db).exitCode == 0)
            let refused = try E2E.run(["serve", "--migrations", older.path, "--http-address", "127.0.0.1:0"], database: db, limit: 60)
            #expect(refused.exitCode != 0, refused.transcript)
            #expect(refused.stderr.contains("--allow-newer-database"), refused.transcript)

            let daemon = try DaemonProcess(older, database: db, ["--allow-newer-database", "--reconcile-interval", "300ms"])
            #expect(daemon.waitUntilReady(), daemon.transcript)
            let said = DaemonProcess.wait(timeout: 30) {
                (try? daemon.get("/readyz").body.contains("the database has migrations newer than this release (0009_reports, 0010_report_title)")) == true
            }
            #expect(said, daemon.transcript)
            #expect(try daemon.get("/readyz").status == 200)
            #expect(try daemon.metrics()["migrator_migrations_newer_than_folder"] == 2)
            #expect(daemon.stop().code == 0, daemon.transcript)
        }
    }
}

/// Down migrations kept at apply time, baseline, repair, mark-applied / mark-pending.
@Suite("Recovery: downs, baseline, repair, hand marks")
struct DownAndRepairTests {
    struct Report: Decodable {
        var applied: [MigrateJSON.Applied]
        var reverted: [MigrateJSON.Applied]
        var hooks: [Hook]
        struct Hook: Decodable { var name: String }
    }

    struct Changes: Decodable {
        struct Change: Decodable { var action: String; var version: Int64; var oldChecksum: String?; var newChecksum: String? }
        var ok: Bool
        var changes: [Change]
    }

    static func reversible(_ folder: MigrationFolder, _ db: TestDatabase) throws -> [Int64: Bool] {
        struct Status: Decodable {
            struct Migration: Decodable { var version: Int64; var reversible: Bool? }
            var migrations: [Migration]
        }
        let run = try E2E.run(E2E.args("status", folder, "--json"), database: db)
        return Dictionary(uniqueKeysWithValues: try decode(Status.self, run.stdout).migrations.map { ($0.version, $0.reversible ?? false) })
    }

    @Test("up, down, up on the shipped schema plus a transactional and a non-transactional migration with downs; the dry run changes nothing; the role hook runs after the down")
    func upDownUp() throws {
        try TestDatabase.with { db in
            let folder = try E2E.shipped(plus: [
                ("0009_reports.sql", "CREATE TABLE reports (id bigint PRIMARY KEY, title text);\n"),
                ("0009_reports.down.sql", "DROP TABLE reports;\n"),
                ("0010_reports_title.sql", "-- migrator:no-transaction\nCREATE INDEX CONCURRENTLY reports_title ON reports (title);\n"),
                ("0010_reports_title.down.sql", "-- migrator:no-transaction\nDROP INDEX CONCURRENTLY IF EXISTS reports_title;\n"),
            ])
            let connection = try db.connect()
            let up = try E2E.run(["migrate", "--migrations", folder.path], database: db)
            #expect(up.exitCode == 0, up.transcript)
            let flags = try Self.reversible(folder, db)
            #expect(flags[9] == true && flags[10] == true && flags[5] == false, "\(flags)")
            #expect(try E2E.run(E2E.args("status", folder), database: db).stdout.contains("applied (reversible)"))

            let dry = try E2E.run(["migrate", "--migrations", folder.path, "--to", "5", "--dry-run", "--json"], database: db)
            #expect(dry.exitCode == 0, dry.transcript)
            #expect(try decode(Report.self, dry.stdout).reverted.map(\.version) == [10, 9], dry.transcript)
            #expect(try connection.historyVersions().suffix(2) == [9, 10])

            let down = try E2E.run(["migrate", "--migrations", folder.path, "--to", "5", "--json"], database: db)
            #expect(down.exitCode == 0, down.transcript)
            let report = try decode(Report.self, down.stdout)
            #expect(report.reverted.map(\.version) == [10, 9] && report.applied.isEmpty, down.transcript)
            #expect(report.hooks.map(\.name) == ["role-sync"], down.transcript)
            #expect(try connection.historyVersions() == [1, 2, 3, 4, 5])
            #expect(try !connection.tableExists("reports"))

            let again = try E2E.run(["migrate", "--migrations", folder.path], database: db)
            #expect(again.exitCode == 0, again.transcript)
            #expect(try connection.historyVersions().suffix(2) == [9, 10])
            #expect(try connection.count("SELECT count(*) FROM pg_indexes WHERE indexname = 'reports_title'") == 1)
        }
    }

    @Test("a down file edited or deleted after its migration was applied: the text stored at apply time runs")
    func storedDownRuns() throws {
        try TestDatabase.with { db in
            let folder = try E2E.folder([
                ("0001_a.sql", "CREATE TABLE a (id int);\n"),
                ("0002_b.sql", "CREATE TABLE b (id int);\n"),
                ("0002_b.down.sql", "DROP TABLE b;\n"),
            ])
            #expect(try E2E.run(E2E.migrate(folder), database: db).exitCode == 0)
            try folder.write("0002_b.down.sql", "SELECT 1/0;\n")
            let edited = try E2E.run(E2E.migrate(folder, "--to", "1", "--dry-run"), database: db)
            #expect(edited.exitCode == 0, edited.transcript)
            try folder.remove("0002_b.down.sql")
            let run = try E2E.run(E2E.migrate(folder, "--to", "1"), database: db)
            #expect(run.exitCode == 0, run.transcript)
            #expect(run.stdout.contains("reversed 0002_b"), run.transcript)
            let connection = try db.connect()
            #expect(try !connection.tableExists("b") && connection.historyVersions() == [1])
        }
    }

    @Test("a failing down: rolled back, its migration stays applied, the error points into the stored down at line and column")
    func failingDown() throws {
        try TestDatabase.with { db in
            let folder = try E2E.folder([
                ("0001_a.sql", "CREATE TABLE a (id int);\n"),
                ("0001_a.down.sql", "DROP TABLE a;\n"),
                ("0002_b.sql", "CREATE TABLE b (id int);\n"),
                ("0002_b.down.sql", "-- the reverse\nDROP TABLE b;\nDROP TABLE not_there;\n"),
            ])
            #expect(try E2E.run(E2E.migrate(folder), database: db).exitCode == 0)
            let run = try E2E.run(E2E.migrate(folder, "--to", "0", "--json"), database: db)
            #expect(run.exitCode == 1, run.transcript)
            let failure = try decode(FailureJSON.self, run.stdout)
            let location = try #require(failure.error.diagnostics.first?.location, run.transcript)
            #expect(location.file == "0002_b.down.sql (as stored in migrator.history)", run.transcript)
            #expect(location.line == 3 && location.column == 12, "at \(location.line ?? 0):\(location.column ?? 0); \(run.transcript)")
            #expect(failure.error.server?.sqlState == "42P01", run.transcript)
            #expect(failure.error.notes.contains("the down of 0002_b was rolled back; 0002_b stays applied"), run.transcript)
            let connection = try db.connect()
            #expect(try connection.historyVersions() == [1, 2])
            #expect(try connection.tableExists("b") && connection.tableExists("a"))
        }
    }

    @Test("a migration without a down, or marked irreversible, stops the plan before anything is reversed, naming it")
    func irreversibleInTheWay() throws {
        try TestDatabase.with { db in
            let folder = try E2E.folder([
                ("0001_a.sql", "CREATE TABLE a (id int);\n"),
                ("0002_b.sql", "CREATE TABLE b (id int);\n"),
                ("0002_b.down.sql", "DROP TABLE b;\n"),
                ("0003_c.sql", "-- migrator:irreversible\nCREATE TABLE c (id int);\n"),
                ("0003_c.down.sql", "DROP TABLE c;\n"),
                ("0004_d.sql", "CREATE TABLE d (id int);\n"),
                ("0004_d.down.sql", "DROP TABLE d;\n"),
            ])
            #expect(try E2E.run(E2E.migrate(folder), database: db).exitCode == 0)
            let blocked = try E2E.run(E2E.migrate(folder, "--to", "2"), database: db)
            #expect(blocked.exitCode == 2, blocked.transcript)
            #expect(blocked.stderr.contains("0003_c is marked irreversible (-- migrator:irreversible)"), blocked.transcript)
            let none = try E2E.run(E2E.migrate(folder, "--to", "0"), database: db)
            #expect(none.exitCode == 2, none.transcript)
            #expect(none.stderr.contains("0001_a has no down migration: it was applied without 0001_a.down.sql beside it"), none.transcript)
            let connection = try db.connect()
            #expect(try connection.historyVersions() == [1, 2, 3, 4] && connection.tableExists("d"))
            // Above the irreversible one it works.
            #expect(try E2E.run(E2E.migrate(folder, "--to", "3"), database: db).exitCode == 0)
            #expect(try connection.historyVersions() == [1, 2, 3] && !connection.tableExists("d"))
        }
    }

    @Test("baseline on a database made by hand, then migrate; refused on a database with history unless told; audited")
    func baseline() throws {
        try TestDatabase.with { db in
            let connection = try db.connect()
            try connection.query("CREATE TABLE a (id int)")
            try connection.query("CREATE TABLE b (id int)")
            let folder = try E2E.folder([
                ("0001_a.sql", "CREATE TABLE a (id int);\n"),
                ("0002_b.sql", "CREATE TABLE b (id int);\n"),
                ("0003_c.sql", "CREATE TABLE c (id int);\n"),
            ])
            let run = try E2E.run(E2E.args("baseline", folder, "--to", "2", "--reason", "adopting the schema", "--json"), database: db)
            #expect(run.exitCode == 0, run.transcript)
            #expect(try decode(Changes.self, run.stdout).changes.map(\.version) == [1, 2], run.transcript)
            #expect(try connection.query("SELECT string_agg(kind, ',' ORDER BY version) AS k FROM migrator.history").first?["k"] == "baseline,baseline")
            let migrate = try E2E.run(E2E.migrate(folder), database: db)
            #expect(migrate.exitCode == 0, migrate.transcript)
            #expect(migrate.stdout.contains("applied 0003_c") && !migrate.stdout.contains("applied 0001_a"), migrate.transcript)
            let again = try E2E.run(E2E.args("baseline", folder, "--to", "3"), database: db)
            #expect(again.exitCode == 2, again.transcript)
            #expect(again.stderr.contains("--allow-existing-history"), again.transcript)
            // Told: only the versions not in the history are recorded.
            try folder.write("0004_d.sql", "CREATE TABLE d (id int);\n")
            try connection.query("CREATE TABLE d (id int)")
            let told = try E2E.run(E2E.args("baseline", folder, "--to", "4", "--allow-existing-history", "--json"), database: db)
            #expect(told.exitCode == 0, told.transcript)
            #expect(try decode(Changes.self, told.stdout).changes.map(\.version) == [4], told.transcript)
            #expect(try connection.query("SELECT string_agg(kind, ',' ORDER BY version) AS k FROM migrator.history").first?["k"] == "baseline,baseline,migration,baseline")
            #expect(try connection.query("SELECT string_agg(action || ':' || version || ':' || coalesce(reason, '-') || ':' || (by = current_user)::text, ',' ORDER BY id) AS a FROM migrator.history_audit").first?["a"]
                == "baseline:1:adopting the schema:true,baseline:2:adopting the schema:true,baseline:4:-:true")
        }
    }

    @Test("repair accepts a file changed on purpose (old and new checksum printed) and clears a failed migration outside a transaction so it runs again from its first statement; each is audited")
    func repair() throws {
        try TestDatabase.with { db in
            let folder = try E2E.folder([
                ("0001_a.sql", "CREATE TABLE a (id int);\n"),
                ("0002_b.sql", "-- migrator:no-transaction\nCREATE TABLE IF NOT EXISTS b (id int);\nSELECT 1/0;\n"),
            ])
            #expect(try E2E.run(E2E.migrate(folder), database: db).exitCode == 1)
            try folder.write("0001_a.sql", "-- the table of a's\nCREATE TABLE a (id int);\n")
            #expect(try E2E.run(E2E.migrate(folder), database: db).exitCode == 2)
            let connection = try db.connect()
            let oldChecksum = try #require(try connection.scalar("SELECT checksum FROM migrator.history WHERE version = 1"))
            let accepted = try E2E.run(E2E.args("repair", folder, "1", "--reason", "comment only"), database: db)
            #expect(accepted.exitCode == 0, accepted.transcript)
            #expect(accepted.stdout.contains("accepted the changed checksum of 0001_a: \(oldChecksum) -> sha256:"), accepted.transcript)
            let cleared = try E2E.run(E2E.args("repair", folder, "--all", "--json"), database: db)
            #expect(cleared.exitCode == 0, cleared.transcript)
            #expect(try decode(Changes.self, cleared.stdout).changes.map(\.action) == ["clear-failed"], cleared.transcript)
            #expect(try connection.historyVersions() == [1])
            try folder.write("0002_b.sql", "-- migrator:no-transaction\nCREATE TABLE IF NOT EXISTS b (id int);\nSELECT 1;\n")
            let rerun = try E2E.run(E2E.migrate(folder, "--json"), database: db)
            #expect(rerun.exitCode == 0, rerun.transcript)
            #expect(try decode(MigrateJSON.self, rerun.stdout).applied.first?.resumedAtStatement == nil, rerun.transcript)
            #expect(try connection.query("SELECT string_agg(action || ':' || version || ':' || coalesce(reason, '-'), ',' ORDER BY id) AS a FROM migrator.history_audit").first?["a"]
                == "accept-checksum:1:comment only,clear-failed:2:-")
            let nothing = try E2E.run(E2E.args("repair", folder, "1"), database: db)
            #expect(nothing.exitCode == 2 && nothing.stderr.contains("0001_a is applied: repair accepts a changed checksum or clears a failed migration"), nothing.transcript)
        }
    }

    @Test("mark-applied and mark-pending change only the history, audited; --json; new --down creates the pair")
    func marks() throws {
        try TestDatabase.with { db in
            let folder = try E2E.folder([("0001_a.sql", "CREATE TABLE a (id int);\n"), ("0002_b.sql", "CREATE TABLE b (id int);\n")])
            let connection = try db.connect()
            try connection.query("CREATE TABLE a (id int)")
            let marked = try E2E.run(E2E.args("mark-applied", folder, "1", "--reason", "made by hand", "--json"), database: db)
            #expect(marked.exitCode == 0, marked.transcript)
            #expect(try decode(Changes.self, marked.stdout).changes.map(\.action) == ["mark-applied"], marked.transcript)
            // 0001 is not run (its CREATE TABLE would fail on the table made by hand); 0002 is.
            let migrate = try E2E.run(E2E.migrate(folder), database: db)
            #expect(migrate.exitCode == 0, migrate.transcript)
            #expect(try connection.tableExists("b"))
            #expect(try E2E.run(E2E.args("mark-applied", folder, "1"), database: db).exitCode == 2)
            let pending = try E2E.run(E2E.args("mark-pending", folder, "2", "--json"), database: db)
            #expect(pending.exitCode == 0, pending.transcript)
            #expect(try decode(Changes.self, pending.stdout).changes.map(\.action) == ["mark-pending"], pending.transcript)
            let unknown = try E2E.run(E2E.args("mark-pending", folder, "7", "--json"), database: db)
            #expect(unknown.exitCode == 2, unknown.transcript)
            #expect(try decode(FailureJSON.self, unknown.stdout).error.message.contains("version 7 is not in the history"), unknown.transcript)
            // Nothing was reversed: only the history row went.
            #expect(try connection.historyVersions() == [1] && connection.tableExists("b"))
            #expect(try connection.count("SELECT count(*) FROM migrator.history_audit") == 2)

            let empty = try MigrationFolder()
            let created = try E2E.run(["new", "--migrations", empty.path, "add reports", "--down"])
            #expect(created.exitCode == 0, created.transcript)
            #expect(FileManager.default.fileExists(atPath: empty.path + "/0001_add_reports.down.sql"), created.transcript)
            #expect(try E2E.run(E2E.args("status", empty), database: db).exitCode == 0)
        }
    }
}
