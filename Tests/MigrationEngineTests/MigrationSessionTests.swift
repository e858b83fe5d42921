import Foundation
import Logging
@testable import MigrationEngine
import MigratorTestSupport
import Postgres
import Synchronization
import Testing

/// The session type the CLI, the daemon and a fleet run hold: its set-up, its lock, and many at once.
@Suite("Migration session")
struct MigrationSessionTests {
    static func session(
        _ database: TestDatabase, _ folder: MigrationFolder?, purpose: MigrationSession.Purpose,
        configure: (inout MigratorOptions) -> Void = { _ in }
    ) throws -> MigrationSession {
        var options = MigratorOptions(migrationsPath: folder?.path, lockTimeout: .seconds(20))
        configure(&options)
        return try MigrationSession(
            connecting: ConnectionConfig(connectionString: database.url), options: options, purpose: purpose,
            logger: Logger(label: "test")
        )
    }

    /// Whether any session holds migrator's advisory lock on the database, seen from another connection.
    static func lockHeld(_ observer: Connection) throws -> Bool {
        try observer.query("SELECT count(*) > 0 AS held FROM pg_locks WHERE locktype = 'advisory' AND granted AND database = (SELECT oid FROM pg_database WHERE datname = current_database())")
            .first?.decode("held", as: Bool.self) == true
    }

    @Test("withLock is re-entrant, releases the lock when the outermost call ends, and releases it when the body throws")
    func lockIsReentrantAndReleased() throws {
        try TestDatabase.with { database in
            let observer = try database.connect()
            let session = try Self.session(database, nil, purpose: .serve)
            #expect(!session.holdsLock)
            try session.withLock {
                #expect(session.holdsLock)
                try session.withLock { let held = try Self.lockHeld(observer); #expect(held) }
                // Still held after the inner call ended.
                #expect(session.holdsLock)
                #expect(try Self.lockHeld(observer))
            }
            #expect(!session.holdsLock)
            #expect(try !Self.lockHeld(observer))

            struct Boom: Error {}
            #expect(throws: Boom.self) { try session.withLock { throw Boom() } }
            #expect(!session.holdsLock)
            #expect(try !Self.lockHeld(observer))
            // The session is still usable, and its own objects were installed by the first withLock.
            #expect(try observer.query("SELECT to_regclass('migrator.history') IS NOT NULL AS there").first?.decode("there", as: Bool.self) == true)
        }
    }

    @Test("a session waits for another session's lock at most its timeout, and says who holds it")
    func lockTimeoutNamesHolder() throws {
        try TestDatabase.with { database in
            let holder = try Self.session(database, nil, purpose: .serve)
            let waiter = try Self.session(database, nil, purpose: .serve)
            try holder.withLock {
                let error = #expect(throws: MigrationError.self) {
                    try waiter.withLock(timeout: .milliseconds(300)) {}
                }
                #expect(error?.code == .lockTimeout)
                #expect(error?.message.contains("pid \(holder.connection.backendPID)") == true, "\(String(describing: error))")
                #expect(error?.diagnostics.first?.hint?.contains("--lock-timeout") == true)
            }
            // Released: the waiter gets it at once now.
            try waiter.withLock { #expect(waiter.holdsLock) }
        }
    }

    @Test("a session set up to migrate refuses a read-only session; one set up to inspect reads it")
    func purposeDecidesTheChecks() throws {
        try TestDatabase.with { database in
            let folder = try MigrationFolder()
            try folder.write("0001_a.sql", "CREATE TABLE a (id int);")
            _ = try Self.session(database, folder, purpose: .migrate).migrate()
            let admin = try database.connect()
            try admin.query("ALTER DATABASE \(database.name) SET default_transaction_read_only = on")
            let refused = #expect(throws: MigrationError.self) { try Self.session(database, folder, purpose: .migrate) }
            #expect(refused?.code == .readOnly)
            #expect(refused?.diagnostics.first?.hint?.contains("default_transaction_read_only") == true)
            #expect(throws: MigrationError.self) { try Self.session(database, folder, purpose: .serve) }
            let status = try Self.session(database, folder, purpose: .inspect).status()
            #expect(status.migrations.map(\.state) == [.applied])
            try admin.query("ALTER DATABASE \(database.name) RESET default_transaction_read_only")
        }
    }

    @Test("one session migrates, reports status and stays usable; many sessions on many databases run side by side")
    func manySessions() throws {
        let folder = try MigrationFolder()
        try folder.write("0001_a.sql", "CREATE TABLE a (id int);")
        try folder.write("0002_b.sql", "INSERT INTO a VALUES (1);")
        try TestDatabase.with("fleet_one") { one in
            try TestDatabase.with("fleet_two") { two in
                let sessions = try [one, two].map { try Self.session($0, folder, purpose: .migrate) }
                // Both open at once, each with its own lock and history.
                let reports = try sessions.map { try $0.migrate() }
                #expect(reports.map { $0.applied.map(\.version) } == [[1, 2], [1, 2]])
                for session in sessions {
                    #expect(!session.holdsLock)
                    #expect(try session.status().migrations.map(\.state) == [.applied, .applied])
                    // A second run on the same session has nothing to do.
                    #expect(try session.migrate().applied.isEmpty)
                }
                #expect(try one.connect().query("SELECT count(*) AS n FROM a").first?.decode("n", as: Int.self) == 1)
            }
        }
    }

    @Test("a no-op migrate on a fresh session costs the same round trips as before: set-up, history, release")
    func noOpRoundTrips() throws {
        try TestDatabase.with { database in
            let folder = try MigrationFolder()
            try folder.write("0001_a.sql", "CREATE TABLE a (id int);")
            _ = try Self.session(database, folder, purpose: .migrate).migrate()
            let session = try Self.session(database, folder, purpose: .migrate)
            let report = try session.migrate()
            #expect(report.applied.isEmpty)
            // 1 set-up (with the lock's first try and the own objects' markers), 1 history read, 1 unlock.
            #expect(report.roundTrips == 3)
        }
    }

    /// The set-up checks one marker function per component at this release's version (see `OwnObjects`); the
    /// components table is read only when one is missing.
    @Test("own objects' markers: an earlier release's installation gets them back once; a newer release's satisfy this one")
    func ownObjectsMarkers() throws {
        try TestDatabase.with { database in
            let folder = try MigrationFolder()
            try folder.write("0001_a.sql", "CREATE TABLE a (id int);")
            _ = try Self.session(database, folder, purpose: .migrate).migrate()
            let connection = try database.connect()
            let markers = """
                SELECT string_agg(proname, ', ' ORDER BY proname) AS m FROM pg_proc
                WHERE pronamespace = 'migrator'::regnamespace AND proname LIKE 'installed: %'
                """
            let all = "installed: engine 1, installed: engine 2, installed: engine 3"
            #expect(try connection.query(markers).first?["m"] == all)

            // An earlier release recorded the versions in the schema's comment only: one run reads the components
            // table and puts the markers back (2 round trips more), the next is a plain no-op again.
            _ = try connection.execute(script: #"""
                DROP FUNCTION migrator."installed: engine 1"(), migrator."installed: engine 2"(), migrator."installed: engine 3"();
                COMMENT ON SCHEMA migrator IS 'migrator own objects: engine 3'
                """#)
            #expect(try Self.session(database, folder, purpose: .migrate).migrate().roundTrips == 3 + 2)
            #expect(try connection.query(markers).first?["m"] == all)
            #expect(try connection.query("SELECT obj_description('migrator'::regnamespace, 'pg_namespace') AS c").first?["c"] == "migrator own objects: engine 3")
            #expect(try Self.session(database, folder, purpose: .migrate).migrate().roundTrips == 3)

            // A newer release installed engine 4 (keeping the markers of 1 to 3): this release installs nothing.
            _ = try connection.execute(script: #"""
                UPDATE migrator.components SET version = 4 WHERE component = 'engine';
                CREATE FUNCTION migrator."installed: engine 4"() RETURNS void LANGUAGE sql AS ''
                """#)
            let report = try Self.session(database, folder, purpose: .migrate).migrate()
            #expect(report.applied.isEmpty && report.roundTrips == 3)
            #expect(try connection.query("SELECT version FROM migrator.components WHERE component = 'engine'").first?.int("version") == 4)

            // A marker dropped by hand with nothing else changed: put back, nothing installed again.
            _ = try connection.execute(script: #"DROP FUNCTION migrator."installed: engine 3"()"#)
            #expect(try Self.session(database, folder, purpose: .migrate).migrate().roundTrips == 3 + 2)
            #expect(try connection.query(markers).first?["m"] == all + ", installed: engine 4")
        }
    }
}

/// Each migration and the hook start from the session the set-up made; a migration that drops the lock is stopped.
@Suite("Session state between migrations")
struct SessionStateTests {
    static func migrator(_ database: TestDatabase, _ folder: MigrationFolder, hooks: [any PostMigrateHook] = []) -> Migrator {
        Migrator(
            connection: ConnectionConfig(connectionString: database.url),
            options: MigratorOptions(migrationsPath: folder.path, lockTimeout: .seconds(20), statementTimeout: .seconds(30)),
            hooks: hooks, logger: Logger(label: "test")
        )
    }

    /// Records the session the hook runs in.
    final class Seen: Sendable {
        let values = Mutex<[String: String]>([:])
    }

    struct SessionProbe: PostMigrateHook {
        let name = "probe"
        let box = Seen()
        func run(_ context: HookContext) throws -> HookReport {
            let row = try #require(try context.connection.query(
                "SELECT current_user AS who, current_setting('search_path') AS path, current_setting('statement_timeout') AS timeout, current_setting('default_transaction_isolation') AS isolation"
            ).first)
            box.values.withLock { $0 = ["who": row["who"] ?? "", "path": row["path"] ?? "", "timeout": row["timeout"] ?? "", "isolation": row["isolation"] ?? ""] }
            return HookReport(name: name, summary: "probed")
        }
    }

    @Test("SET ROLE, search_path, statement_timeout and session characteristics in one file do not reach later files or the hook")
    func settingsDoNotLeak() throws {
        try TestDatabase.with { database in
            let admin = try database.connect()
            let owner = try #require(try admin.query("SELECT current_user AS u").first?["u"])
            try admin.query("DROP ROLE IF EXISTS \(database.name)_other")
            try admin.query("CREATE ROLE \(database.name)_other")
            defer { _ = try? admin.query("DROP OWNED BY \(database.name)_other; DROP ROLE IF EXISTS \(database.name)_other") }
            let folder = try MigrationFolder()
            try folder.write("0001_set.sql", """
                CREATE SCHEMA elsewhere;
                GRANT ALL ON SCHEMA elsewhere, public TO \(database.name)_other;
                SET search_path = elsewhere;
                SET statement_timeout = '1ms';
                SET SESSION CHARACTERISTICS AS TRANSACTION ISOLATION LEVEL SERIALIZABLE;
                SET ROLE \(database.name)_other;
                """)
            try folder.write("0002_later.sql", "CREATE TABLE later (id int); SELECT pg_sleep(0.05);")
            try folder.write("0003_outside.sql", "-- migrator:no-transaction\nCREATE TABLE outside (id int);\n")
            let probe = SessionProbe()
            _ = try Self.migrator(database, folder, hooks: [probe]).migrate()
            // In public, by the session's own role, with the run's statement_timeout (the 1ms one would have cancelled the sleep).
            #expect(try admin.query("SELECT to_regclass('public.later') IS NOT NULL AND to_regclass('elsewhere.later') IS NULL AS ok").first?["ok"] == "t")
            #expect(try admin.query("SELECT to_regclass('public.outside') IS NOT NULL AS ok").first?["ok"] == "t")
            #expect(try admin.query("SELECT tableowner FROM pg_tables WHERE tablename = 'later'").first?["tableowner"] == owner)
            #expect(try admin.query("SELECT string_agg(DISTINCT applied_by, ',') AS who FROM migrator.history").first?["who"] == owner)
            let seen = probe.box.values.withLock { $0 }
            #expect(seen["who"] == owner)
            #expect(seen["path"] == "\"$user\", public")
            #expect(seen["timeout"] == "30s")
            #expect(seen["isolation"] == "read committed")
        }
    }

    @Test("a database's statement_timeout of 1 ms and idle_session_timeout of 300 ms break neither the set-up nor a session left idle")
    func lowServerTimeoutsDoNotBreakTheSession() throws {
        try TestDatabase.with { database in
            let admin = try TestDatabase.adminConnection()
            // Database settings apply to every new session on it: what a DBA's `ALTER DATABASE … SET` does.
            try admin.query("ALTER DATABASE \(database.name) SET statement_timeout = '1ms'")
            try admin.query("ALTER DATABASE \(database.name) SET idle_session_timeout = '300ms'")
            let folder = try MigrationFolder.shipped()
            for purpose in [MigrationSession.Purpose.migrate, .serve, .inspect] {
                // The set-up itself runs under the 1 ms timeout (on a fresh backend it takes about that long).
                let session = try MigrationSessionTests.session(database, folder, purpose: purpose)
                let settings = try #require(try session.connection.query(
                    "SELECT current_setting('statement_timeout') AS st, current_setting('idle_session_timeout') AS idle"
                ).first)
                #expect(try settings.decode("st", as: String.self) == "0", "\(purpose)")
                #expect(try settings.decode("idle", as: String.self) == "0", "\(purpose)")
                if purpose == .migrate {
                    let report = try session.migrate()
                    #expect(report.applied.count == 5)
                }
                // Idle three times longer than the database allows: the server would have ended the session
                // (a listening daemon, a runner between two tries for the lock). The wait is the condition tested.
                Thread.sleep(forTimeInterval: 1.0)
                #expect(session.connection.isConnected)
                let status = try session.status()
                #expect(status.migrations.count == 5, "\(purpose)")
            }
        }
    }

    @Test("a transactional file that committed part of itself is not reported as rolled back: the server is asked")
    func partCommittedIsSaid() throws {
        try TestDatabase.with { database in
            let folder = try MigrationFolder()
            let content = "CREATE TABLE before_commit (id int);\nCOMMIT;\nSELECT * FROM no_such_table;\n"
            try folder.write("0001_hidden.sql", content)
            let session = try MigrationSessionTests.session(database, folder, purpose: .migrate)
            let file = try MigrationFile(
                version: 1, name: "hidden", fileName: "0001_hidden.sql", displayPath: folder.path + "/0001_hidden.sql",
                bytes: Array(content.utf8)
            )
            // The step as if the reader had missed the COMMIT (the check that refuses it is bypassed on purpose):
            // what the message says must come from the server, not from what migrator believed it sent.
            let step = MigrationPlan.Step(file: file, statements: [], resumeFrom: 0, previous: nil)
            let error = #expect(throws: MigrationError.self) {
                try session.withMigrationLock { () throws(MigrationError) in _ = try session.apply(step) }
            }
            let notes = (error?.notes ?? []).joined(separator: "\n")
            #expect(notes.contains("COMMITTED") && !notes.contains("nothing of it remains"), "\(notes)")
            let observer = try database.connect()
            func count(_ sql: String) throws -> Int { try observer.query(sql).first?.decode("n", as: Int.self) ?? -1 }
            #expect(try count("SELECT count(*) AS n FROM pg_tables WHERE tablename = 'before_commit'") == 1)
            #expect(try count("SELECT count(*) AS n FROM migrator.history") == 0)

            // The usual failure: rolled back, and the server agrees.
            try FileManager.default.removeItem(atPath: folder.path + "/0001_hidden.sql")
            try folder.write("0002_plain.sql", "CREATE TABLE plain (id int);\nSELECT * FROM no_such_table;\n")
            let plain = #expect(throws: MigrationError.self) { try session.migrate() }
            #expect((plain?.notes ?? []).contains { $0.contains("was rolled back; nothing of it remains") }, "\(plain?.notes ?? [])")
        }
    }

    @Test("a transactional migration that releases the lock is rolled back and recorded nowhere")
    func unlockInTransaction() throws {
        try TestDatabase.with { database in
            let folder = try MigrationFolder()
            try folder.write("0001_a.sql", "CREATE TABLE a (id int);\nSELECT pg_advisory_unlock_all();\n")
            let error = #expect(throws: MigrationError.self) { try Self.migrator(database, folder).migrate() }
            #expect(error?.code == .migrationFailed)
            #expect(error?.message.contains("released migrator's advisory lock") == true, "\(String(describing: error))")
            #expect(error?.notes.contains { $0.contains("rolled back") } == true)
            let admin = try database.connect()
            #expect(try admin.query("SELECT to_regclass('a') IS NULL AS gone").first?["gone"] == "t")
            #expect(try admin.query("SELECT count(*) AS n FROM migrator.history").first?["n"] == "0")
        }
    }

    @Test("DISCARD ALL outside a transaction stops the run before the next statement, which does not run")
    func discardOutsideTransaction() throws {
        try TestDatabase.with { database in
            let folder = try MigrationFolder()
            try folder.write("0001_a.sql", "-- migrator:no-transaction\nCREATE TABLE a (id int);\nDISCARD ALL;\nCREATE TABLE b (id int);\n")
            let error = #expect(throws: MigrationError.self) { try Self.migrator(database, folder).migrate() }
            #expect(error?.code == .migrationFailed)
            #expect(error?.message.contains("released migrator's advisory lock (after statement 2)") == true, "\(String(describing: error))")
            #expect(error?.reports(at: "0001_a.sql:3:1", "released") == true, "\(String(describing: error))")
            let admin = try database.connect()
            #expect(try admin.query("SELECT to_regclass('a') IS NOT NULL AND to_regclass('b') IS NULL AS ok").first?["ok"] == "t")
            // The history says statement 2 was the one in progress: the record of its end needed the lock.
            let row = try #require(try admin.query("SELECT state, statements_done, failed_statement FROM migrator.history").first)
            #expect(row["state"] == "failed" && row["statements_done"] == "1" && row["failed_statement"] == "2")
        }
    }

    @Test("when migrator's own history write fails, the error says so and points at no line of the file")
    func historyWriteFails() throws {
        try TestDatabase.with { database in
            let folder = try MigrationFolder()
            try folder.write("0001_a.sql", "CREATE TABLE a (id int);")
            _ = try Self.migrator(database, folder).migrate()
            try folder.write("0002_b.sql", "\n\n\nALTER TABLE migrator.history ADD CONSTRAINT never CHECK (version < 2) NOT VALID;")
            let error = #expect(throws: MigrationError.self) { try Self.migrator(database, folder).migrate() }
            #expect(error?.message.hasPrefix(#"could not record the migration in "migrator"."history": new row"#) == true, "\(String(describing: error))")
            #expect(error?.diagnostics.first?.location?.line == nil, "\(String(describing: error))")
            #expect(error?.notes.contains { $0.contains("rolled back") } == true)
        }
    }

    @Test("on a LATIN1 database text from a migration arrives as written (the session's encoding is UTF-8)")
    func latin1Database() throws {
        let admin = try TestDatabase.adminConnection(nil)
        let name = "mt_latin1_" + String(UInt32.random(in: 0...UInt32.max))
        try admin.query("CREATE DATABASE \(name) ENCODING 'LATIN1' LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0")
        defer { _ = try? admin.query("DROP DATABASE IF EXISTS \(name)") }
        var components = try #require(URLComponents(string: try TestDatabase.adminURL))
        components.path = "/" + name
        let url = try #require(components.string)
        let folder = try MigrationFolder()
        try folder.write("0001_text.sql", "CREATE TABLE t (s text); INSERT INTO t VALUES ('grüße');")
        _ = try Migrator(
            connection: ConnectionConfig(connectionString: url), options: MigratorOptions(migrationsPath: folder.path),
            logger: Logger(label: "test")
        ).migrate()
        let check = try Connection(config: ConnectionConfig(connectionString: url), logger: Logger(label: "test"))
        try check.query("SET client_encoding = 'UTF8'")
        #expect(try check.query("SELECT s, length(s) AS n FROM t").first.map { [$0["s"], $0["n"]] } == ["grüße", "5"])
    }
}
