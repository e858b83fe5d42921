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
