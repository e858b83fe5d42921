import Foundation
import InMemoryLogging
import Logging
import MigratorTestSupport
@testable import Postgres
import Testing

@Suite("Postgres connection layer")
struct ConnectionTests {
    @Test("parameters carry any text unchanged, and nothing is spliced into SQL")
    func parametersRoundTrip() throws {
        try TestDatabase.with { database in
            let connection = try database.connect()
            let values = ["it's", "back\\slash", "100%", "$1", "'); DROP TABLE x; --", "zürich ✓ 🎉", "", String(repeating: "x", count: 80)]
            for value in values {
                let row = try connection.query("SELECT $1::text AS value, length($1::text) AS length", [value]).first
                #expect(row?["value"] == value)
                #expect(row?.int("length") == value.count)
            }
            let null = try connection.query("SELECT $1::text IS NULL AS isnull", [nil]).first
            #expect(null?.bool("isnull") == true)
            let array = try connection.query("SELECT $1::text[] AS a, cardinality($1::text[]) AS n", [["a\"b", "c,d", "{e}", "\\"]]).first
            #expect(array?.int("n") == 4)
            #expect(array?.stringArray("a") == ["a\"b", "c,d", "{e}", "\\"])
            let numbers = try connection.query("SELECT $1::bigint + $2::int AS sum, $3::boolean AS flag", [Int64.max - 1, 1, true]).first
            #expect(numbers?["sum"] == String(Int64.max))
            #expect(numbers?.bool("flag") == true)
        }
    }

    @Test("server errors carry SQLSTATE, position, detail, hint and context")
    func serverErrorFields() throws {
        try TestDatabase.with { database in
            let connection = try database.connect()
            let syntax = #expect(throws: PostgresError.self) { try connection.query("SELECT 1 FROM nowhere_at_all") }
            #expect(syntax?.sqlState == "42P01")
            #expect(syntax?.position == 15)
            #expect(syntax?.code == .queryFailed)
            #expect(syntax?.message == #"relation "nowhere_at_all" does not exist"#)

            try connection.query("CREATE TABLE t (id int PRIMARY KEY)")
            try connection.query("INSERT INTO t VALUES (1)")
            let duplicate = #expect(throws: PostgresError.self) { try connection.query("INSERT INTO t VALUES (1)") }
            #expect(duplicate?.sqlState == "23505")
            #expect(duplicate?.detail == "Key (id)=(1) already exists.")
            #expect(duplicate?.constraintName == "t_pkey")
            #expect(duplicate?.tableName == "t")

            let raised = #expect(throws: PostgresError.self) {
                try connection.execute(script: "DO $$ BEGIN RAISE EXCEPTION 'boom' USING HINT = 'try less', DETAIL = 'too much'; END $$")
            }
            #expect(raised?.message == "boom")
            #expect(raised?.hint == "try less")
            #expect(raised?.detail == "too much")
            #expect(raised?.context?.contains("PL/pgSQL function") == true)
            #expect(raised?.description.contains("(SQLSTATE P0001)") == true)
            // The connection is usable after every error.
            #expect(try connection.query("SELECT 2 AS two").first?.int("two") == 2)
        }
    }

    @Test("a script's error position counts characters from the start of the whole script")
    func scriptErrorPosition() throws {
        try TestDatabase.with { database in
            let connection = try database.connect()
            let script = "SELECT 'é';\nSELECT 1;\nSELECT * FROM missing_table;"
            let error = #expect(throws: PostgresError.self) { try connection.execute(script: script) }
            let expected = script.unicodeScalars.count - "missing_table;".unicodeScalars.count + 1
            #expect(error?.position == expected)
            #expect(connection.transactionStatus == .idle)
        }
    }

    @Test("server notices reach the logger with their fields")
    func noticesAreLogged() throws {
        try TestDatabase.with { database in
            let handler = InMemoryLogHandler()
            let connection = try database.connect(logger: Logger(label: "test") { _ in handler })
            try connection.execute(script: "DO $$ BEGIN RAISE NOTICE 'hello from %', 'plpgsql'; RAISE WARNING 'careful'; END $$")
            let notices = handler.entries.filter { $0.message == "server notice" }
            #expect(notices.count == 2)
            #expect(notices.first?.metadata["db.message"] == "hello from plpgsql")
            #expect(notices.first?.metadata["db.severity"] == "NOTICE")
            #expect(notices.last?.level == .warning)
        }
    }

    @Test("round trips are counted per request")
    func roundTrips() throws {
        try TestDatabase.with { database in
            let connection = try database.connect()
            #expect(connection.roundTrips == 0)
            try connection.query("SELECT 1")
            try connection.execute(script: "SELECT 1; SELECT 2; SELECT 3")
            _ = try? connection.query("SELECT broken(")
            #expect(connection.roundTrips == 3)
        }
    }

    @Test("a statement sent ahead: the same query takes its answer or its error in one round trip; anything else drops it and goes on")
    func sentAhead() throws {
        try TestDatabase.with { database in
            let connection = try database.connect()
            try connection.query("CREATE SEQUENCE ahead")
            let trips = connection.roundTrips
            // The same text and parameters: the answer computed when it was sent, not a second run.
            connection.sendAhead("SELECT nextval('ahead') + $1::int AS n", [100])
            #expect(try connection.query("SELECT nextval('ahead') + $1::int AS n", [100]).first?["n"] == "101")
            #expect(connection.roundTrips == trips + 1)
            #expect(try connection.query("SELECT currval('ahead') AS n").first?["n"] == "1")

            // Other parameters, another statement: the one sent ahead has run (it is for reads), its answer is dropped.
            connection.sendAhead("SELECT nextval('ahead') + $1::int AS n", [100])
            #expect(try connection.query("SELECT nextval('ahead') + $1::int AS n", [200]).first?["n"] == "203")
            connection.sendAhead("SELECT nextval('ahead') AS n")
            #expect(try connection.query("SELECT currval('ahead') AS n").first?["n"] == "4")

            // An error reaches the query that wanted it, and only that one; the connection stays usable.
            connection.sendAhead("SELECT 1 / $1::int AS n", [0])
            let error = #expect(throws: PostgresError.self) { try connection.query("SELECT 1 / $1::int AS n", [0]) }
            #expect(error?.sqlState == "22012")
            connection.sendAhead("SELECT 1 / $1::int AS n", [0])
            #expect(try connection.query("SELECT 2 AS n").first?["n"] == "2")

            // A script, the transaction status and a wait for notifications read the answer first, too.
            connection.sendAhead("SELECT pg_sleep(0.01)")
            #expect(try connection.execute(script: "SELECT 1; SELECT 2").count == 2)
            connection.sendAhead("SELECT pg_sleep(0.01)")
            #expect(connection.transactionStatus == .idle)
            connection.sendAhead("SELECT pg_sleep(0.01)")
            #expect(try connection.waitForNotifications(timeout: .milliseconds(1)).isEmpty)
            #expect(try connection.query("SELECT 3 AS n").first?["n"] == "3")
        }
    }

    @Test("application_name and keepalives default to ours, and the user's own settings win")
    func applicationName() throws {
        try TestDatabase.with { database in
            let connection = try database.connect()
            #expect(try connection.query("SELECT current_setting('application_name') AS a").first?["a"] == "migrator")
            let custom = try Connection(config: ConnectionConfig(connectionString: database.url + "?application_name=deploy"), logger: Logger(label: "t"))
            #expect(try custom.query("SELECT current_setting('application_name') AS a").first?["a"] == "deploy")
            #expect(connection.option("keepalives") == "1")
            #expect(connection.option("keepalives_idle") == "10")
            let short = try Connection(config: ConnectionConfig(connectionString: database.url + "?keepalives_idle=3"), logger: Logger(label: "t"))
            #expect(short.option("keepalives_idle") == "3")
        }
    }

    @Test("a wrong password fails at once, is not transient, and is never echoed")
    func wrongPassword() throws {
        guard var components = URLComponents(string: try TestDatabase.adminURL) else { return }
        let secret = "s3cr@t%pa ss"
        components.password = secret
        let url = components.string!
        let error = #expect(throws: PostgresError.self) {
            try Connection(config: ConnectionConfig(connectionString: url), logger: Logger(label: "t"))
        }
        #expect(error?.code == .connectionFailed)
        #expect(error?.isTransient == false)
        #expect(error?.message.contains("password authentication failed") == true)
        #expect(error?.description.contains(secret) == false)
        #expect(error?.description.contains(components.percentEncodedPassword ?? secret) == false)
    }

    @Test("nobody listening is a transient connection failure")
    func unreachable() throws {
        let error = #expect(throws: PostgresError.self) {
            try Connection(config: ConnectionConfig(connectionString: "postgresql://u:hunter2@127.0.0.1:1/db"), logger: Logger(label: "t"))
        }
        #expect(error?.code == .connectionFailed)
        #expect(error?.isTransient == true)
        #expect(error?.description.contains("hunter2") == false)
    }

    @Test("a malformed connection string is refused without echoing its secrets")
    func malformedConnectionString() throws {
        for bad in ["postgresql://user:topsecret@host:notaport/db", "host=localhost password=topsecret bogus_option=1", "postgresql://user:topsecret@[::1/db"] {
            let error = #expect(throws: PostgresError.self) {
                try Connection(config: ConnectionConfig(connectionString: bad), logger: Logger(label: "t"))
            }
            #expect(error?.code == .invalidConnectionString, "\(bad)")
            #expect(error?.description.contains("topsecret") == false, "\(bad): \(error?.description ?? "")")
        }
    }

    @Test("a malformed string is refused before libpq sees it, with libpq's reason stripped of everything it quotes")
    func malformedStringsAreRefusedQuotingNothing() throws {
        let shapes = [
            "postgresql://u:Kq7Zx/Wv9Ty@127.0.0.1:1/db", "postgresql://u:Kq7Zx@Wv9Ty@127.0.0.1:1/db",
            "postgresql://u:Kq7ZxWv9Ty", "host=127.0.0.1 password=Kq7Zx Wv9Ty", "host=127.0.0.1 password='Kq7ZxWv9Ty",
            "postgresql://u:Kq7Zx%ZZWv9Ty@127.0.0.1:1/db", "host=127.0.0.1 port=Kq7ZxWv9Ty",
            "host=127.0.0.1 connect_timeout=Kq7Zx",
        ]
        for shape in shapes {
            let error = #expect(throws: PostgresError.self) {
                try Connection(config: ConnectionConfig(connectionString: shape), logger: Logger(label: "t"))
            }
            #expect(error?.code == .invalidConnectionString, "\(shape): \(error?.description ?? "")")
            #expect(error?.isTransient == false)
            let text = (error?.description ?? "") + (error?.hint ?? "")
            for piece in ["Kq7Z", "q7Zx", "Wv9T", "v9Ty"] {
                #expect(!text.contains(piece), "\(shape): \(text)")
            }
        }
        #expect(ConnectionConfig.withoutQuotedText(#"missing "=" after "Wv9Ty" in connection info string"#)
            == #"missing "=" after "…" in connection info string"#)
        #expect(ConnectionConfig.withoutQuotedText(#"unexpected character "x" at position 9 in URI (expected ":" or "/"): "postgres://x""#)
            == #"unexpected character "…" at position 9 in URI (expected ":" or "/"): "…""#)
        // Well-formed strings pass: IPv6, several hosts, '@' and '/' in a query value, encoded characters.
        for good in [
            "postgresql://u:p%2Fw%40d@[::1]:5432/db", "postgresql://u@h1:5432,h2:5433/db?target_session_attrs=read-write",
            "postgresql://u:pw@h/db?sslcert=/home/a@b/c.crt", "postgresql:///db?host=/var/run/postgresql",
            "host=h port=5432,5433 password='a b' dbname=x", "postgresql://h:/db",
        ] {
            #expect(throws: Never.self, "\(good)") { try ConnectionConfig(connectionString: good).validate() }
        }
    }

    @Test("libpq's answers to a set-up that cannot work are final; with several hosts, one that may come up keeps it transient")
    func finalAndTransientConnectionFailures() throws {
        var components = try #require(URLComponents(string: try TestDatabase.adminURL))
        components.path = "/postgres"
        let base = try #require(components.string)
        func failure(_ url: String) -> PostgresError? {
            #expect(throws: PostgresError.self) { try Connection(config: ConnectionConfig(connectionString: url), logger: Logger(label: "t")) }
        }
        // Real libpq against the test server (no SSL, a primary).
        for query in ["sslmode=require", "target_session_attrs=standby", "target_session_attrs=read-only", "sslmode=bogus"] {
            let error = failure(base + (base.contains("?") ? "&" : "?") + query)
            #expect(error?.isTransient == false, "\(query): \(error?.description ?? "no error")")
        }
        // A first host nobody listens on, then the server that is not a standby: the first may come up as one.
        let host = components.host ?? "127.0.0.1"
        let port = components.port ?? 5432
        let user = components.user ?? "postgres"
        let password = components.percentEncodedPassword.map { ":" + $0 } ?? ""
        let twoHosts = "postgresql://\(user)\(password)@127.0.0.1:1,\(host):\(port)/postgres?target_session_attrs=standby"
        let error = failure(twoHosts)
        #expect(error?.message.contains("not in hot standby mode") == true, "\(error?.description ?? "no error")")
        #expect(error?.isTransient == true, "\(error?.description ?? "no error")")
        #expect(PostgresError.attempts(in: "connection to server at \"a\" failed: x\nhint line\nconnection to server at \"b\" failed: y").count == 2)
    }

    @Test("Redactor hides URL passwords it was never given")
    func redactorHidesURLPasswords() {
        let redactor = Redactor(secrets: [])
        #expect(redactor.redact("at postgres://bob:pa55@db:5432/x failed") == "at postgres://bob:********@db:5432/x failed")
        #expect(redactor.redact("postgresql://bob@db/x") == "postgresql://bob@db/x")
        #expect(Redactor(secrets: ["pa55"]).redact("pa55 and pa55") == "******** and ********")
    }
}
