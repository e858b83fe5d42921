import Foundation
import MigratorTestSupport
import Postgres
import Testing

@Suite("migrator end to end: connections and server settings")
struct ConnectionFailureTests {
    static let wrongPassword = "n0t-the-p@ss%word"

    @Test("a wrong password exits 4 at once, in migrate and in wait, and is never printed")
    func wrongPassword() throws {
        try TestDatabase.with { db in
            let url = try Server.url(user: try Server.adminUser, password: Self.wrongPassword, database: db.name)
            #expect(url.contains("%40") && url.contains("%25"))
            let folder = try E2E.folder([("0001_a.sql", "CREATE TABLE a (id int);\n")])

            let migrate = try E2E.run(E2E.args("migrate", folder, "--database-url", url), secrets: [Self.wrongPassword])
            #expect(migrate.exitCode == 4, migrate.transcript)
            #expect(migrate.stderr.contains("password authentication failed"), migrate.transcript)

            let json = try E2E.run(E2E.args("migrate", folder, "--json"), environment: ["DATABASE_URL": url], secrets: [Self.wrongPassword])
            #expect(json.exitCode == 4, json.transcript)

            let wait = try E2E.run(
                ["wait", "--timeout", "10s", "--database-url", url, "--log-level", "trace"], secrets: [Self.wrongPassword],
                limit: 20
            )
            #expect(wait.exitCode == 4, wait.transcript)
            #expect(wait.seconds < 5, "an authentication failure must not be retried\n\(wait.transcript)")
        }
    }

    @Test("a password whose % the user forgot to percent-encode is not echoed by the connection-string error")
    func unencodedPercentInPasswordIsNotEchoed() throws {
        try TestDatabase.with { db in
            let password = "50%off-s3cret"
            let components = try Server.components
            let url = "postgresql://\(try Server.adminUser):\(password)@\(components.host ?? "127.0.0.1"):\(components.port ?? 5432)/\(db.name)"
            let folder = try E2E.folder([("0001_a.sql", "CREATE TABLE a (id int);\n")])
            for arguments in [E2E.args("migrate", folder), E2E.args("migrate", folder, "--json"), ["wait", "--timeout", "5s"]] {
                let run = try E2E.run(arguments + ["--database-url", url], secrets: [password], limit: 20)
                #expect(run.exitCode == 4, run.transcript)
            }
        }
    }

    /// Every piece of `password` four characters long: "no part of a password" is checked, not only the whole.
    static func pieces(of password: String) -> [String] {
        let characters = Array(password)
        return (0...(characters.count - 4)).map { String(characters[$0..<($0 + 4)]) }
    }

    @Test(
        "a connection string libpq would echo a piece of the password from is refused at once, quoting nothing of it",
        arguments: [
            // An unencoded '/' ends the host part early: libpq reads the password's first part as the port.
            "postgresql://USER:Kq7Zx/Wv9Ty@HOST/DB",
            // An unencoded '@': libpq takes the password's second part as the host name.
            "postgresql://USER:Kq7Zx@Wv9Ty@HOST/DB",
            // No @host: the password is read as a port.
            "postgresql://USER:Kq7ZxWv9Ty",
            // An unquoted space in a key=value string: `missing "=" after "Wv9Ty"`.
            "host=HOST user=USER dbname=DB password=Kq7Zx Wv9Ty",
            // An unterminated quote, a '%' that starts no escape, an encoded NUL.
            "host=HOST user=USER dbname=DB password='Kq7ZxWv9Ty",
            "postgresql://USER:Kq7Zx%ZZWv9Ty@HOST/DB",
            "postgresql://USER:Kq7Zx%00Wv9Ty@HOST/DB",
        ]
    )
    func malformedStringsQuoteNothing(shape: String) throws {
        let components = try Server.components
        let host = "\(components.host ?? "127.0.0.1"):\(components.port ?? 5432)"
        let text = shape.replacing("USER", with: try Server.adminUser)
            .replacing("HOST/DB", with: "\(host)/postgres")
            .replacing("host=HOST", with: "host=\(components.host ?? "127.0.0.1") port=\(components.port ?? 5432)")
            .replacing("dbname=DB", with: "dbname=postgres")
        let secrets = Self.pieces(of: "Kq7ZxWv9Ty") + ["Kq7Zx", "Wv9Ty"]
        let folder = try E2E.folder([("0001_a.sql", "CREATE TABLE a (id int);\n")])
        for arguments in [E2E.args("migrate", folder), E2E.args("migrate", folder, "--json"), E2E.args("status", folder)] {
            let run = try E2E.run(arguments + ["--log-level", "trace", "--database-url", text], secrets: secrets, limit: 20)
            #expect(run.exitCode == 4, run.transcript)
            #expect(run.stdout.contains("the connection string is not valid") || run.stderr.contains("the connection string is not valid"), run.transcript)
        }
        // Permanent: wait and serve stop at the first attempt instead of retrying until their timeout.
        let wait = try E2E.run(["wait", "--timeout", "120s", "--log-level", "trace", "--database-url", text], secrets: secrets, limit: 60)
        #expect(wait.exitCode == 4, wait.transcript)
        #expect(wait.stderr.contains("waiting will not help") && !wait.stderr.contains("retrying"), wait.transcript)
        let serve = try E2E.run(
            ["serve", "--migrations", folder.path, "--http-address", "127.0.0.1:0", "--wait-timeout", "120s", "--log-level", "trace"],
            environment: ["DATABASE_URL": text], secrets: secrets, limit: 60
        )
        #expect(serve.exitCode == 4, serve.transcript)
        #expect(serve.stderr.contains("waiting will not help") && !serve.stderr.contains("retrying"), serve.transcript)
    }

    @Test("wait gives up at once on an SSL set-up that cannot work and on a server that is not what target_session_attrs asks for")
    func permanentSetUpErrorsAreNotRetried() throws {
        var components = try Server.components
        components.path = "/postgres"
        let base = try #require(components.string)
        // The throwaway server has no SSL; the test server is a primary.
        let cases = [
            ("sslmode=require", "SSL was required"),
            ("sslmode=verify-full&sslrootcert=/nonexistent/root.crt", "SSL"),
            ("target_session_attrs=standby", "not in hot standby mode"),
            ("sslmode=bogus", "invalid sslmode value"),
        ]
        for (query, reason) in cases {
            let url = base + (base.contains("?") ? "&" : "?") + query
            let wait = try E2E.run(["wait", "--timeout", "120s", "--database-url", url], limit: 60)
            #expect(wait.exitCode == 4, "\(query)\n\(wait.transcript)")
            #expect(wait.stderr.contains(reason) && wait.stderr.contains("waiting will not help"), "\(query)\n\(wait.transcript)")
            #expect(!wait.stderr.contains("retrying"), "\(query)\n\(wait.transcript)")
        }
    }

    @Test("an unreachable server is retried by wait until its timeout, then exits 4")
    func unreachablePort() throws {
        let password = "unre@chable%pw"
        let url = try Server.url(user: "postgres", password: password, database: "postgres", port: 1)
        let wait = try E2E.run(["wait", "--timeout", "1s", "--database-url", url], secrets: [password], limit: 15)
        #expect(wait.exitCode == 4, wait.transcript)
        #expect(wait.seconds >= 1, wait.transcript)
        #expect(wait.stderr.contains("retrying"), wait.transcript)

        let folder = try MigrationFolder()
        let migrate = try E2E.run(E2E.args("migrate", folder, "--database-url", url), secrets: [password], limit: 15)
        #expect(migrate.exitCode == 4, migrate.transcript)
    }

    @Test("an unknown database exits 4, and wait gives up on it at once")
    func unknownDatabase() throws {
        var components = try Server.components
        components.path = "/mt_no_such_database_\(UUID().uuidString.prefix(8).lowercased())"
        let url = try #require(components.string)
        let folder = try E2E.folder([("0001_a.sql", "CREATE TABLE a (id int);\n")])
        let migrate = try E2E.run(E2E.args("migrate", folder, "--database-url", url))
        #expect(migrate.exitCode == 4, migrate.transcript)
        #expect(migrate.stderr.contains("does not exist"), migrate.transcript)
        let status = try E2E.run(E2E.args("status", folder, "--database-url", url))
        #expect(status.exitCode == 4, status.transcript)
        let wait = try E2E.run(["wait", "--timeout", "10s", "--database-url", url], limit: 20)
        #expect(wait.exitCode == 4, wait.transcript)
        #expect(wait.seconds < 5, "an unknown database must not be retried\n\(wait.transcript)")
    }

    @Test("a password with @, % and other URL characters works and never appears in any output, even at trace level")
    func specialPasswordNeverPrinted() throws {
        let role = "mt_role_\(UUID().uuidString.prefix(8).lowercased())"
        let password = "p@ss%w0rd:/?#&=x"
        try TestDatabase.with { db in
            let setup = try db.connect()
            // A role name cannot be a parameter; this one is made of [a-z0-9_] only, and the password is a literal.
            try setup.query("CREATE ROLE \(role) LOGIN PASSWORD 'p@ss%w0rd:/?#&=x'")
            defer {
                _ = try? setup.query("REASSIGN OWNED BY \(role) TO CURRENT_USER")
                _ = try? setup.query("DROP OWNED BY \(role)")
                _ = try? setup.query("DROP ROLE \(role)")
            }
            try setup.query("ALTER DATABASE \(db.name) OWNER TO \(role)")
            let url = try Server.url(user: role, password: password, database: db.name)
            let folder = try E2E.shipped(plus: [
                ("0009_a.sql", "DO $$ BEGIN RAISE NOTICE 'hello'; END $$;\nCREATE TABLE a (id int);\n"),
                ("0010_b.sql", "-- migrator:no-transaction\nCREATE TABLE b (id int);\nINSERT INTO nowhere VALUES (1);\n"),
            ])
            for format in ["text", "json"] {
                let failing = try E2E.run(
                    E2E.args("migrate", folder, "--log-level", "trace", "--log-format", format, "--json"),
                    environment: ["DATABASE_URL": url], secrets: [password]
                )
                #expect(failing.exitCode == 1, failing.transcript)
            }
            try folder.write("0010_b.sql", "-- migrator:no-transaction\nCREATE TABLE b (id int);\nCREATE TABLE nowhere (id int);\n")
            let fixed = try E2E.run(E2E.args("migrate", folder, "--log-level", "trace"), environment: ["DATABASE_URL": url], secrets: [password])
            #expect(fixed.exitCode == 0, fixed.transcript)
            for command in ["status", "verify"] {
                let run = try E2E.run(E2E.args(command, folder, "--log-level", "trace"), environment: ["DATABASE_URL": url], secrets: [password])
                #expect(run.exitCode == 0, run.transcript)
            }
            let wait = try E2E.run(["wait", "--log-level", "trace", "--database-url", url], secrets: [password])
            #expect(wait.exitCode == 0, wait.transcript)
            // libpq's own variables: the password comes from PGPASSWORD, the rest from a URL without one.
            let noPassword = "postgresql://\(role)@\(try Server.components.host ?? "127.0.0.1"):\(try Server.components.port ?? 5432)/\(db.name)"
            let viaEnvironment = try E2E.run(
                E2E.args("status", folder, "--log-level", "trace"),
                environment: ["DATABASE_URL": noPassword, "PGPASSWORD": password], secrets: [password]
            )
            #expect(viaEnvironment.exitCode == 0, viaEnvironment.transcript)
            let wrongViaEnvironment = try E2E.run(
                E2E.args("status", folder), environment: ["DATABASE_URL": noPassword, "PGPASSWORD": password + "-wrong"],
                secrets: [password]
            )
            #expect(wrongViaEnvironment.exitCode == 4, wrongViaEnvironment.transcript)
        }
    }

    @Test("a role whose sessions are read-only exits 6, also with --json, and nothing is applied")
    func readOnlyRole() throws {
        try TestDatabase.with { db in
            let connection = try db.connect()
            try E2E.withRole(db, connection, settings: [("default_transaction_read_only", "on")]) { _, password, url in
                let folder = try E2E.folder([("0001_a.sql", "CREATE TABLE a (id int);\n")])
                let run = try E2E.run(E2E.args("migrate", folder), environment: ["DATABASE_URL": url], secrets: [password])
                #expect(run.exitCode == 6, run.transcript)
                #expect(run.stderr.contains("read-only") && run.stderr.contains("the role"), run.transcript)
                let json = try E2E.run(E2E.args("migrate", folder, "--json"), environment: ["DATABASE_URL": url], secrets: [password])
                #expect(json.exitCode == 6, json.transcript)
                let object = try JSONSerialization.jsonObject(with: Data(json.stdout.utf8)) as? [String: Any]
                let error = object?["error"] as? [String: Any]
                #expect(object?["exitCode"] as? Int == 6 && error?["code"] as? String == "readOnly", json.transcript)
                #expect(try connection.count("SELECT count(*) FROM pg_namespace WHERE nspname = 'migrator'") == 0)
            }
        }
    }

    @Test("an unknown host exits 4 naming it; wait retries it (DNS may come up) until its timeout")
    func unknownHost() throws {
        let url = "postgresql://someone:some-secret-pw@no-such-host.invalid:5432/db"
        let folder = try E2E.folder([("0001_a.sql", "CREATE TABLE a (id int);\n")])
        let migrate = try E2E.run(E2E.args("migrate", folder, "--database-url", url), secrets: ["some-secret-pw"], limit: 30)
        #expect(migrate.exitCode == 4, migrate.transcript)
        #expect(migrate.stderr.contains("no-such-host.invalid"), migrate.transcript)
        let wait = try E2E.run(["wait", "--timeout", "1s", "--database-url", url], secrets: ["some-secret-pw"], limit: 30)
        #expect(wait.exitCode == 4 && wait.stderr.contains("retrying") && wait.stderr.contains("did not accept connections within"), wait.transcript)
    }

    @Test("wait succeeds once the database comes up: retries while the server is not up, then exits 0")
    func waitSucceedsWhenTheDatabaseComesUp() throws {
        try TestDatabase.with { db in
            // At first the port answers like a server that is not up yet: it accepts the connection and closes it.
            // Once wait has tried that way, a PgBouncer (session mode) in front of the test server starts on the same
            // port: the database "comes up" at a moment the test chooses.
            let (notYet, port) = try Loopback.listen()
            var components = try #require(URLComponents(string: db.url))
            components.port = port
            let url = try #require(components.string)
            let started = try E2E.start(["wait", "--timeout", "60s", "--allow-session-pooler", "--database-url", url])
            var entry = pollfd(fd: notYet, events: Int16(POLLIN), revents: 0)
            try #require(poll(&entry, 1, 30_000) == 1, "wait never tried to connect")
            let attempt = accept(notYet, nil, nil)
            close(attempt)
            close(notYet)
            let pooler = try PgBouncer(poolMode: .session, port: port)
            defer { pooler.stop() }
            let wait = E2E.finish(started, limit: 60)
            #expect(wait.exitCode == 0, wait.transcript)
            #expect(wait.stderr.contains("retrying") && wait.stderr.contains("database reachable"), wait.transcript)
        }
    }

    @Test("a read-only database exits 6 and nothing is applied")
    func readOnlyDatabase() throws {
        try TestDatabase.with { db in
            let connection = try db.connect()
            try connection.query("ALTER DATABASE \(db.name) SET default_transaction_read_only = on")
            let folder = try E2E.folder([("0001_a.sql", "CREATE TABLE a (id int);\n")])
            let run = try E2E.run(E2E.args("migrate", folder), database: db)
            #expect(run.exitCode == 6, run.transcript)
            #expect(try connection.historyVersions() == [])
            // A dry run only reads, so a read-only database is fine for it.
            let dry = try E2E.run(E2E.args("migrate", folder, "--dry-run"), database: db)
            #expect(dry.exitCode == 0, dry.transcript)
        }
    }

    @Test("a database-level statement_timeout does not apply to migrations; --statement-timeout does")
    func statementTimeout() throws {
        try TestDatabase.with { db in
            let connection = try db.connect()
            try connection.query("ALTER DATABASE \(db.name) SET statement_timeout = '100ms'")
            let folder = try E2E.folder([("0001_slow.sql", "SELECT pg_sleep(0.5);\nCREATE TABLE slow (id int);\n")])
            let limited = try E2E.run(E2E.migrate(folder, "--statement-timeout", "100ms"), database: db)
            #expect(limited.exitCode == 1, limited.transcript)
            #expect(limited.stderr.contains("57014"), limited.transcript)
            #expect(try connection.historyVersions() == [])

            let unlimited = try E2E.run(E2E.migrate(folder), database: db)
            #expect(unlimited.exitCode == 0, unlimited.transcript)
            #expect(try connection.historyVersions() == [1])
        }
    }

    @Test("a migration that waits for a table lock longer than --ddl-lock-timeout fails instead of queueing")
    func ddlLockTimeout() throws {
        try TestDatabase.with { db in
            let folder = try E2E.folder([("0001_a.sql", "CREATE TABLE a (id int);\n")])
            #expect(try E2E.run(E2E.migrate(folder), database: db).exitCode == 0)
            try folder.write("0002_alter.sql", "ALTER TABLE a ADD COLUMN b int;\n")
            let reader = try db.connect()
            try reader.query("BEGIN")
            try reader.query("LOCK TABLE a IN ACCESS SHARE MODE")
            // Without retries (SafeDDLTests has them): the first refusal fails the run.
            let run = try E2E.run(E2E.migrate(folder, "--ddl-lock-timeout", "300ms", "--ddl-lock-retries", "0"), database: db, limit: 20)
            #expect(run.exitCode == 1, run.transcript)
            #expect(run.stderr.contains("55P03"), run.transcript)
            try reader.query("COMMIT")
            #expect(try reader.historyVersions() == [1])
            let after = try E2E.run(E2E.migrate(folder), database: db)
            #expect(after.exitCode == 0, after.transcript)
        }
    }
}
