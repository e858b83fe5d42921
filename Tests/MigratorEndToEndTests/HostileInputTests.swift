import Foundation
#if canImport(Glibc)
import Glibc
#endif
import MigratorTestSupport
import Postgres
import Testing

/// Hostile input through the binary: each case gets a clear error or a correct result, never a crash, a hang or a
/// half-applied state. (Bad names, BOM/CRLF, invalid UTF-8, changed/missing/out-of-order files, project names,
/// connection strings and read-only sessions have their own tests in EndToEndTests, RoleSyncTests and
/// ConnectionFailureTests.)
@Suite("hostile input")
struct HostileInputTests {
    @Test("a FIFO, a folder and a broken link named like migrations are refused at once, each named; a link to a file works")
    func specialFiles() throws {
        try TestDatabase.with { db in
            let folder = try E2E.folder([("0001_fine.sql", "CREATE TABLE fine (id int);\n")])
            let target = try MigrationFolder()
            let linked = try target.write("linked.sql", "CREATE TABLE linked (id int);\n")
            #expect(mkfifo(folder.path + "/0002_pipe.sql", 0o644) == 0)
            try FileManager.default.createDirectory(atPath: folder.path + "/0003_folder.sql", withIntermediateDirectories: false)
            try FileManager.default.createSymbolicLink(atPath: folder.path + "/0004_gone.sql", withDestinationPath: target.path + "/nowhere.sql")
            try FileManager.default.createSymbolicLink(atPath: folder.path + "/0005_link.sql", withDestinationPath: linked)

            let run = try E2E.run(E2E.migrate(folder), database: db, limit: 20)
            #expect(run.exitCode == 2, run.transcript)
            #expect(run.stderr.contains("0002_pipe.sql: error: this is not a regular file"), run.transcript)
            #expect(run.stderr.contains("0003_folder.sql: error: this is a folder"), run.transcript)
            #expect(run.stderr.contains("0004_gone.sql: error: the file cannot be read (a broken symbolic link?)"), run.transcript)
            #expect(!run.stderr.contains("0005_link.sql"), run.transcript)
            let connection = try db.connect()
            #expect(try connection.historyVersions().isEmpty)

            for name in ["0002_pipe.sql", "0003_folder.sql", "0004_gone.sql"] { try folder.remove(name) }
            let fixed = try E2E.run(E2E.migrate(folder), database: db)
            #expect(fixed.exitCode == 0, fixed.transcript)
            #expect(try connection.historyVersions() == [1, 5])
            #expect(try connection.tableExists("public.linked"))
        }
    }

    @Test("an unreadable migration file is refused with the reason; nothing is applied")
    func unreadableFile() throws {
        try TestDatabase.with { db in
        let folder = try E2E.folder([("0001_secret.sql", "SELECT 1;\n")])
        chmod(folder.path, 0o755)
        chmod(folder.path + "/0001_secret.sql", 0o000)
        var arguments = try [MigratorProcess.binary] + E2E.migrate(folder)
        // root reads any file; run as nobody then, so that the permission applies.
        if getuid() == 0 { arguments = ["--reuid=65534", "--regid=65534", "--clear-groups"] + arguments }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: getuid() == 0 ? "/usr/bin/setpriv" : arguments.removeFirst())
        process.arguments = arguments
        process.environment = ["DATABASE_URL": db.url, "PATH": "/usr/bin:/bin"]
        let err = Pipe()
        process.standardError = err
        process.standardOutput = FileHandle.nullDevice
        try process.run()
        let stderr = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        #expect(process.terminationStatus == 2, "\(E2E.masked(stderr))")
        #expect(stderr.contains("0001_secret.sql: error: the file cannot be read (Permission denied)"), "\(E2E.masked(stderr))")
        #expect(try db.connect().historyVersions().isEmpty)
        }
    }

    @Test("empty and comment-only files apply as no-ops, in and outside a transaction")
    func emptyFiles() throws {
        try TestDatabase.with { db in
            let folder = try E2E.folder([
                ("0001_empty.sql", ""),
                ("0002_comments.sql", "-- nothing yet\n/* still nothing */\n"),
                ("0003_outside.sql", "-- migrator:no-transaction\n-- nothing here either\n"),
                ("0004_real.sql", "CREATE TABLE real_one (id int);\n"),
            ])
            let run = try E2E.run(E2E.migrate(folder), database: db)
            #expect(run.exitCode == 0, run.transcript)
            #expect(try db.connect().historyVersions() == [1, 2, 3, 4])
            #expect(try E2E.run(E2E.migrate(folder), database: db).stdout.contains("nothing to migrate"))
        }
    }

    @Test("a 50 MB migration applies, and its checksum holds on the next run")
    func hugeFile() throws {
        try TestDatabase.with { db in
            let pad = String(repeating: "x", count: 500_000)
            var sql = "CREATE TABLE big (id int, pad text);\n"
            for index in 1...100 { sql += "INSERT INTO big VALUES (\(index), '\(pad)');\n" }
            #expect(sql.utf8.count > 50_000_000)
            let folder = try E2E.folder([("0001_big.sql", sql)])
            let run = try E2E.run(E2E.migrate(folder), database: db, limit: 120)
            #expect(run.exitCode == 0, run.transcript)
            let connection = try db.connect()
            #expect(try connection.count("SELECT count(*) FROM big WHERE length(pad) = 500000") == 100)
            let again = try E2E.run(E2E.migrate(folder), database: db, limit: 60)
            #expect(again.exitCode == 0 && again.stdout.contains("nothing to migrate"), again.transcript)
        }
    }

    @Test("an unterminated quote or comment in a file outside a transaction is reported where it starts; nothing runs", arguments: [
        ("SELECT 1;\nSELECT 'abc;\nSELECT 2;\n", "0001_bad.sql:3:8: error: unterminated quoted string starting here"),
        ("SELECT 1;\n/* never closed\nSELECT 2;\n", "0001_bad.sql:3:1: error: unterminated /* comment starting here"),
    ])
    func unterminated(body: String, message: String) throws {
        try TestDatabase.with { db in
            let folder = try E2E.folder([("0001_bad.sql", "-- migrator:no-transaction\n" + body)])
            let run = try E2E.run(E2E.migrate(folder), database: db)
            #expect(run.exitCode == 2, run.transcript)
            #expect(run.stderr.contains(message), run.transcript)
            #expect(try db.connect().historyVersions().isEmpty)
        }
    }

    @Test("BEGIN inside a transactional migration is refused before anything runs")
    func beginInside() throws {
        try TestDatabase.with { db in
            let folder = try E2E.folder([("0001_begin.sql", "CREATE TABLE before_begin (id int);\nBEGIN;\nCREATE TABLE after_begin (id int);\n")])
            let run = try E2E.run(E2E.migrate(folder), database: db)
            #expect(run.exitCode == 2, run.transcript)
            #expect(run.stderr.contains("0001_begin.sql:2:1: error:"), run.transcript)
            let connection = try db.connect()
            #expect(try !connection.tableExists("public.before_begin"))
            #expect(try connection.historyVersions().isEmpty)
        }
    }

    @Test("--roles files that are not JSON, have a duplicate key, are huge, a folder or a FIFO exit 2 at once, naming the file")
    func hostileRolesFiles() throws {
        try TestDatabase.with { db in
            let folder = try MigrationFolder.shipped()
            let notJSON = try folder.write("roles-not-json.txt", "roles: [Lead]\n")
            let duplicate = try folder.write(
                "roles-duplicate.json", "{\"roles\": [{\"name\": \"Lead\", \"permissions\": [],\n  \"permissions\": [\"view_project\"]}]}\n"
            )
            let huge = try folder.write("roles-huge.json", "{\"roles\": [], \"pad\": \"" + String(repeating: "p", count: 5 << 20) + "\"}")
            try FileManager.default.createDirectory(atPath: folder.path + "/roles-folder.json", withIntermediateDirectories: false)
            #expect(mkfifo(folder.path + "/roles-fifo.json", 0o644) == 0)
            let cases = [
                (notJSON, "roles-not-json.txt:1:1: error: the file is not valid JSON: expected a value"),
                (duplicate, #"roles-duplicate.json:2:3: error: duplicate key "permissions" in roles[0] (first at 1:29)"#),
                (huge, "roles-huge.json: error: the roles file is larger than 4194304 bytes"),
                (folder.path + "/roles-folder.json", "roles-folder.json: error: this is a folder"),
                (folder.path + "/roles-fifo.json", "roles-fifo.json: error: this is not a regular file"),
            ]
            for (path, message) in cases {
                let run = try E2E.run(E2E.args("migrate", folder, "--roles", path), database: db, limit: 20)
                #expect(run.exitCode == 2, run.transcript)
                #expect(run.stderr.contains(message), run.transcript)
            }
            #expect(try db.connect().historyVersions().isEmpty)
        }
    }

    @Test("no DATABASE_URL and no server: exit 4 naming where libpq looked, in migrate and serve")
    func noServer() throws {
        let empty = try MigrationFolder()
        let shipped = try MigrationFolder.shipped()
        let environment = ["PGHOST": empty.path, "PGPORT": "5432", "PGUSER": "nobody", "PGDATABASE": "none"]
        let migrate = try E2E.run(["migrate", "--migrations", shipped.path], environment: environment, limit: 20)
        #expect(migrate.exitCode == 4, migrate.transcript)
        #expect(migrate.stderr.contains("\(empty.path)/.s.PGSQL.5432"), migrate.transcript)
        let serve = try E2E.run(["serve", "--migrations", shipped.path, "--http-address", "127.0.0.1:0", "--wait-timeout", "1s"], environment: environment, limit: 20)
        #expect(serve.exitCode == 4, serve.transcript)
        #expect(serve.stderr.contains("did not accept connections within 1 s"), serve.transcript)
    }

    @Test("a role whose statement_timeout is 100 ms migrates a 0.5 s migration and syncs roles")
    func lowStatementTimeoutRole() throws {
        try TestDatabase.with { db in
            let connection = try db.connect()
            try E2E.withRole(db, connection, settings: [("statement_timeout", "100ms")]) { _, password, url in
                let folder = try E2E.shipped(plus: [("0009_slow.sql", "SELECT pg_sleep(0.5);\n")])
                let run = try E2E.run(E2E.args("migrate", folder), environment: ["DATABASE_URL": url], secrets: [password])
                #expect(run.exitCode == 0, run.transcript)
                #expect(run.stdout.contains("6 migrations applied"), run.transcript)
                #expect(try connection.count("SELECT count(*) FROM migrator.role_version") == 1)
            }
        }
    }

    @Test("an unterminated dollar quote is exit 2 at the line where it starts (text and --json), and nothing runs")
    func unterminatedDollarQuote() throws {
        try TestDatabase.with { db in
            let connection = try db.connect()
            let folder = try E2E.folder([
                ("0001_ok.sql", "CREATE TABLE ok (id int);\n"),
                ("0002_open.sql", "CREATE TABLE two (id int);\nCREATE FUNCTION f() RETURNS int LANGUAGE sql AS $body$\n  SELECT 1;\n"),
            ])
            let run = try E2E.run(E2E.migrate(folder), database: db)
            #expect(run.exitCode == 2, run.transcript)
            #expect(run.stderr.contains("0002_open.sql:2:") && run.stderr.contains("unterminated dollar-quoted string $body$"), run.transcript)
            let json = try E2E.run(E2E.migrate(folder, "--json"), database: db)
            #expect(json.exitCode == 2, json.transcript)
            let object = try JSONSerialization.jsonObject(with: Data(json.stdout.utf8)) as? [String: Any]
            let error = object?["error"] as? [String: Any]
            let diagnostic = (error?["diagnostics"] as? [[String: Any]])?.first
            let location = diagnostic?["location"] as? [String: Any]
            #expect(object?["exitCode"] as? Int == 2 && error?["code"] as? String == "invalidMigrationFile", json.transcript)
            #expect(location?["line"] as? Int == 2 && (location?["file"] as? String)?.hasSuffix("0002_open.sql") == true, json.transcript)
            // A file that cannot be split stops the run before anything is applied, the good file before it included.
            #expect(try connection.historyVersions() == [])
            #expect(try !connection.tableExists("ok"))
        }
    }

    @Test("standard_conforming_strings off: files are read as the server reads them, a COMMIT hidden from a standard reader is refused, and the role sync works")
    func standardConformingStringsOff() throws {
        try TestDatabase.with { db in
            let connection = try db.connect()
            try connection.query("ALTER DATABASE \(db.name) SET standard_conforming_strings = off")
            // Read with backslash escapes (as the server will), the second line is a SELECT, a COMMIT and a comment;
            // read without them, it is one SELECT of one long literal with no COMMIT in it.
            let hidden = "CREATE TABLE leaked (id int);\nSELECT 'x\\''; COMMIT; SELECT 1 --';\nSELECT * FROM no_such_table;\n"
            let folder = try E2E.shipped(plus: [("0009_hidden_commit.sql", hidden)])
            let refused = try E2E.run(E2E.args("migrate", folder), database: db)
            #expect(refused.exitCode == 2, refused.transcript)
            #expect(refused.stderr.contains("0009_hidden_commit.sql:2:") && refused.stderr.contains("'COMMIT' controls the transaction"), refused.transcript)
            #expect(try connection.count("SELECT count(*) FROM pg_tables WHERE tablename = 'leaked'") == 0)
            // A backslash-escaped quote is a quote, as the file's author meant on this database; the role sync, whose
            // own statements must not depend on the setting, works.
            try folder.write("0009_hidden_commit.sql", "CREATE TABLE quoted (t text);\nINSERT INTO quoted VALUES ('it\\'s');\n")
            let applied = try E2E.run(E2E.args("migrate", folder), database: db)
            #expect(applied.exitCode == 0, applied.transcript)
            #expect(try connection.query("SELECT t FROM quoted").first?.decode("t", as: String.self) == "it's")
            #expect(try connection.count("SELECT count(*) FROM migrator.role_version") == 1)
            let verify = try E2E.run(E2E.args("verify", folder), database: db)
            #expect(verify.exitCode == 0, verify.transcript)
        }
    }

    @Test("odd durations: a huge one is a usage error, not a crash; one the server cannot take is refused by name; under a millisecond stays a timeout")
    func oddDurations() throws {
        try TestDatabase.with { db in
            let folder = try E2E.folder([("0001_seen.sql", "CREATE TABLE seen AS SELECT current_setting('lock_timeout') AS lock_timeout;\n")])
            for arguments in [["--lock-timeout", "9999999999999h"], ["--statement-timeout", "99999999999999999999"]] {
                let run = try E2E.run(E2E.migrate(folder) + arguments, database: db)
                #expect(run.exitCode == 64, run.transcript)
            }
            let fromEnvironment = try E2E.run(E2E.migrate(folder), database: db, environment: ["MIGRATOR_LOCK_TIMEOUT": "9999999999999h"])
            #expect(fromEnvironment.exitCode == 64, fromEnvironment.transcript)
            #expect(fromEnvironment.stderr.contains("MIGRATOR_LOCK_TIMEOUT (for --lock-timeout) has an invalid value"), fromEnvironment.transcript)
            let tooLong = try E2E.run(E2E.migrate(folder, "--ddl-lock-timeout", "9000h"), database: db)
            #expect(tooLong.exitCode == 64, tooLong.transcript)
            #expect(tooLong.stderr.contains("--ddl-lock-timeout (MIGRATOR_DDL_LOCK_TIMEOUT) is longer than PostgreSQL allows"), tooLong.transcript)
            let connection = try db.connect()
            #expect(try connection.historyVersions().isEmpty)

            let small = try E2E.run(E2E.migrate(folder, "--ddl-lock-timeout", "0.4ms"), database: db)
            #expect(small.exitCode == 0, small.transcript)
            #expect(try connection.query("SELECT lock_timeout FROM seen").first?["lock_timeout"] == "1ms")
        }
    }

    @Test("standard output that cannot be written (a full disk) is an error, exit 74, not a silent success")
    func fullStandardOutput() throws {
        try TestDatabase.with { db in
            let folder = try E2E.folder([("0001_a.sql", "CREATE TABLE a (id int);\n")])
            for arguments in [["--help"], E2E.args("status", folder)] {
                let process = Process()
                process.executableURL = URL(fileURLWithPath: try MigratorProcess.binary)
                process.arguments = arguments
                var environment = ProcessInfo.processInfo.environment
                environment["DATABASE_URL"] = db.url
                process.environment = environment
                process.standardOutput = try FileHandle(forWritingTo: URL(fileURLWithPath: "/dev/full"))
                let errors = Pipe()
                process.standardError = errors
                try process.run()
                let stderr = String(decoding: errors.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
                process.waitUntilExit()
                #expect(process.terminationStatus == 74, "\(arguments): \(stderr)")
                #expect(stderr.contains("could not write to standard output: No space left on device"), "\(arguments): \(stderr)")
            }
        }
    }

    @Test("a misnamed file's reason is plain text, not Swift enum syntax")
    func misnamedReason() throws {
        try TestDatabase.with { db in
            let folder = try E2E.folder([("abc.sql", "SELECT 1;\n")])
            let run = try E2E.run(E2E.migrate(folder), database: db)
            #expect(run.exitCode == 2, run.transcript)
            #expect(run.stderr.contains("abc.sql: error: the name has no '_' between the number and the description; expected"), run.transcript)
            #expect(!run.stderr.contains("reason("), run.transcript)
        }
    }

    @Test("an option wins over a contradicting variable; two contradicting options, or variables, are a usage error")
    func optionsWinOverVariables() throws {
        try TestDatabase.with { db in
            let folder = try E2E.folder([("0001_a.sql", "CREATE TABLE a (id int);\n")])
            let skip = ["migrate", "--migrations", folder.path, "--skip-roles"]
            let won = try E2E.run(skip, database: db, environment: ["MIGRATOR_FORCE_ROLES": "1"])
            #expect(won.exitCode == 0, won.transcript)
            #expect(!won.output.contains("role-sync"), won.transcript)
            let both = try E2E.run(skip + ["--force-roles"], database: db)
            #expect(both.exitCode == 64, both.transcript)
            let variables = try E2E.run(["migrate", "--migrations", folder.path], database: db, environment: ["MIGRATOR_FORCE_ROLES": "1", "MIGRATOR_SKIP_ROLES": "1"])
            #expect(variables.exitCode == 64, variables.transcript)
        }
    }
}
