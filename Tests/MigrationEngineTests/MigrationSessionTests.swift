import Logging
@testable import MigrationEngine
import MigratorTestSupport
import Postgres
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
            // 1 set-up (with the lock's first try and the own objects' marker), 1 history read, 1 unlock.
            #expect(report.roundTrips == 3)
        }
    }
}
