import Foundation
import MigratorTestSupport
import Postgres
import Testing

/// `migrate --then-exec -- COMMAND`: the container entrypoint form.
@Suite("entrypoint: migrate --then-exec")
struct EntrypointTests {
    @Test("after a successful migrate the command replaces the process: same pid, its output, its exit code")
    func execsAfterSuccess() throws {
        try TestDatabase.with { db in
            let folder = try MigrationFolder.shipped()
            let started = try E2E.start(E2E.args("migrate", folder, "--then-exec", "--", "sh", "-c", "echo app pid $$; exit 7"), database: db)
            let pid = started.process.0.processIdentifier
            let run = E2E.finish(started)
            #expect(run.exitCode == 7, run.transcript)
            #expect(run.stdout.contains("5 migrations applied"), run.transcript)
            #expect(run.stdout.contains("app pid \(pid)"), run.transcript)
            let connection = try db.connect()
            #expect(try connection.historyVersions().count == 5)
        }
    }

    @Test("while the exec'd app runs, migrator's lock and its connection are already gone")
    func lockReleasedBeforeTheExec() throws {
        try TestDatabase.with { db in
            let folder = try MigrationFolder.shipped()
            let running = folder.path + "/app-running"
            let stop = folder.path + "/app-stop"
            // The app says it runs, then waits until the test has looked, so the check happens during the app's life.
            let app = "touch '\(running)'; while [ ! -f '\(stop)' ]; do sleep 0.05; done; exit 7"
            let started = try E2E.start(E2E.args("migrate", folder, "--then-exec", "--", "sh", "-c", app), database: db)
            let deadline = Date().addingTimeInterval(60)
            while !FileManager.default.fileExists(atPath: running), Date() < deadline { Thread.sleep(forTimeInterval: 0.05) }
            #expect(FileManager.default.fileExists(atPath: running), "the app never started")
            let connection = try db.connect()
            #expect(try connection.query("SELECT pg_try_advisory_lock($1::bigint) AS ok", [E2E.lockKey]).first?.bool("ok") == true)
            try connection.query("SELECT pg_advisory_unlock($1::bigint)", [E2E.lockKey])
            let sessions = try connection.query(
                "SELECT count(*) AS n FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
            ).first?.decode("n", as: Int.self)
            #expect(sessions == 0, "migrator's connection is still open while the app runs")
            FileManager.default.createFile(atPath: stop, contents: nil)
            let run = E2E.finish(started)
            #expect(run.exitCode == 7, run.transcript)
        }
    }

    @Test("a failed migration does not start the app")
    func noExecAfterFailure() throws {
        try TestDatabase.with { db in
            let folder = try E2E.folder([("0001_bad.sql", "CREATE INDEX ON sites (name);\n")])
            let marker = folder.path + "/app-started"
            let run = try E2E.run(E2E.args("migrate", folder, "--skip-roles", "--then-exec", "--", "touch", marker), database: db)
            #expect(run.exitCode == 1, run.transcript)
            #expect(!FileManager.default.fileExists(atPath: marker))
        }
    }

    @Test("a command that cannot run exits 127; a missing command is a usage error")
    func execFailures() throws {
        try TestDatabase.with { db in
            let folder = try MigrationFolder.shipped()
            let missing = try E2E.run(E2E.args("migrate", folder, "--then-exec", "--", "/nonexistent/app"), database: db)
            #expect(missing.exitCode == 127, missing.transcript)
            #expect(missing.stderr.contains("could not run '/nonexistent/app'"), missing.transcript)
            // A file that exists but may not be executed: 127 as well, with the system's reason.
            let script = try folder.write("app.sh", "#!/bin/sh\necho started\n")
            try FileManager.default.setAttributes([.posixPermissions: 0o644], ofItemAtPath: script)
            let notExecutable = try E2E.run(E2E.args("migrate", folder, "--then-exec", "--", script), database: db)
            #expect(notExecutable.exitCode == 127, notExecutable.transcript)
            #expect(notExecutable.stderr.contains("could not run '\(script)'") && notExecutable.stderr.contains("ermission denied"), notExecutable.transcript)
            #expect(!notExecutable.stdout.contains("started"), notExecutable.transcript)
            #expect(try E2E.run(E2E.args("migrate", folder, "--then-exec"), database: db).exitCode == 64)
            #expect(try E2E.run(E2E.args("migrate", folder, "--", "true"), database: db).exitCode == 64)
        }
    }
}
