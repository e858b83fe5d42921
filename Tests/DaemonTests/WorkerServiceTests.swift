@testable import Daemon
import InMemoryLogging
import Logging
import MigrationEngine
import MigratorTestSupport
import Postgres
import Prometheus
import RoleSync
import ServiceLifecycle
import ServiceLifecycleTestKit
import Testing

/// The worker as a service against a real server, shut down through ServiceLifecycleTestKit. Interleavings are
/// forced: the sync is held inside its transaction by a lock the test owns, and released only after the stop was
/// requested.
@Suite("WorkerService: graceful shutdown")
struct WorkerServiceTests {
    /// Each project gets 5 groups, 82 group permissions and 82 object permissions from the reference catalogue.
    static let complete = [5, 82, 82]
    /// The key of the lock the test holds to keep the daemon's sync inside its transaction (not migrator's own key).
    static let gateKey: Int64 = 4_242_424

    struct Running {
        let service: WorkerService
        let state: DaemonState
        let logs: InMemoryLogHandler
        let folder: MigrationFolder
    }

    static func service(_ db: TestDatabase) throws -> Running {
        let folder = try MigrationFolder.shipped()
        var configuration = DaemonConfiguration(
            connection: ConnectionConfig(connectionString: db.url),
            migrator: MigratorOptions(migrationsPath: folder.path), catalogue: .reference
        )
        configuration.reconcileInterval = .seconds(3600)
        let logs = InMemoryLogHandler()
        let state = DaemonState()
        let service = WorkerService(
            configuration: configuration, state: state,
            metrics: DaemonMetrics(factory: PrometheusMetricsFactory(registry: PrometheusCollectorRegistry())),
            logger: Logger(label: "daemon-test", factory: { _ in logs })
        )
        return Running(service: service, state: state, logs: logs, folder: folder)
    }

    @Test("asked to stop when idle, the service returns, and leaves no connection and no lock")
    func stopsWhenIdle() async throws {
        try await TestDatabase.with { db in
            let daemon = try Self.service(db)
            try await testGracefulShutdown { trigger in
                try await withThrowingTaskGroup(of: Void.self) { group in
                    group.addTask { try await daemon.service.run() }
                    try await eventually("ready", daemon) { daemon.state.readiness.ready }
                    trigger.triggerGracefulShutdown()
                    #expect(daemon.state.isStopping)
                    try await group.next()
                }
            }
            #expect(daemon.state.phase == .stopping)
            let messages = daemon.logs.entries.map(\.message.description)
            let requested = messages.firstIndex(of: "shutdown requested; finishing the transaction in progress")
            let stopped = messages.firstIndex(of: "stopping: no transaction in progress, lock released")
            #expect(requested != nil && stopped != nil && requested! < stopped!, "\(messages)")
            let connection = try db.connect()
            try await eventually("the daemon's connections closed", daemon) { try Self.leftovers(connection) == [0, 0] }
        }
    }

    @Test("a stop requested in the middle of a sync: the transaction commits whole, then the service returns")
    func stopsBetweenTransactions() async throws {
        try await TestDatabase.with { db in
            let daemon = try Self.service(db)
            let connection = try db.connect()
            try await testGracefulShutdown { trigger in
                try await withThrowingTaskGroup(of: Void.self) { group in
                    group.addTask { try await daemon.service.run() }
                    try await eventually("ready", daemon) { daemon.state.readiness.ready }
                    // The daemon's group inserts wait for the test's lock, inside the sync's transaction.
                    try connection.query("SELECT pg_advisory_lock($1::bigint)", [Self.gateKey])
                    try connection.execute(script: """
                        CREATE FUNCTION wait_for_test() RETURNS trigger LANGUAGE plpgsql AS $$
                        BEGIN PERFORM pg_advisory_xact_lock_shared(\(Self.gateKey)); RETURN NULL; END $$;
                        CREATE TRIGGER wait_for_test AFTER INSERT ON auth_group FOR EACH STATEMENT EXECUTE FUNCTION wait_for_test();
                        """)
                    let id = try Self.insertProject(connection, "stopped mid-sync")
                    try await eventually("the sync waits inside its transaction", daemon) {
                        try Self.count(connection, """
                            SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()
                              AND wait_event_type = 'Lock' AND wait_event = 'advisory' AND pid <> pg_backend_pid()
                            """) == 1
                    }
                    trigger.triggerGracefulShutdown()
                    #expect(daemon.state.isStopping)
                    #expect(try Self.roleRows(connection, id) == [0, 0, 0], "nothing is committed while the sync waits")
                    try connection.query("SELECT pg_advisory_unlock($1::bigint)", [Self.gateKey])
                    try await group.next()
                    #expect(try Self.roleRows(connection, id) == Self.complete, "the sync in progress was finished, not cut short")
                }
            }
            let messages = daemon.logs.entries.map(\.message.description)
            #expect(messages.filter { $0 == "synced projects" }.count == 1, "\(messages)")
            // The stop came while the sync waited; the loop noticed it only after the sync's commit.
            let synced = messages.firstIndex(of: "synced projects")
            let stopped = messages.firstIndex(of: "stopping: no transaction in progress, lock released")
            #expect(synced != nil && stopped != nil && synced! < stopped!, "\(messages)")
            try await eventually("the daemon's connections closed", daemon) { try Self.leftovers(connection) == [0, 0] }
        }
    }

    @Test("asked to stop while it waits for the database, the service returns without an error")
    func stopsWhileWaitingForTheDatabase() async throws {
        var configuration = DaemonConfiguration(
            connection: ConnectionConfig(connectionString: "postgresql://nobody@127.0.0.1:1/none?connect_timeout=1"),
            migrator: MigratorOptions(migrationsPath: nil), catalogue: .reference
        )
        configuration.waitTimeout = .seconds(3600)
        let logs = InMemoryLogHandler()
        let state = DaemonState()
        let service = WorkerService(
            configuration: configuration, state: state,
            metrics: DaemonMetrics(factory: PrometheusMetricsFactory(registry: PrometheusCollectorRegistry())),
            logger: Logger(label: "daemon-test", factory: { _ in logs })
        )
        try await testGracefulShutdown { trigger in
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask { try await service.run() }
                try await eventually("a failed attempt") {
                    logs.entries.contains { $0.message.description == "database not reachable yet; retrying" }
                }
                #expect(state.readiness.reason.hasPrefix("waiting for the database"))
                trigger.triggerGracefulShutdown()
                try await group.next()
            }
        }
        #expect(state.phase == .stopping)
        #expect(!logs.entries.contains { $0.message.description == "watching projects" })
    }

    // MARK: - Helpers

    static func count(_ connection: Connection, _ sql: String, _ parameters: [(any PostgresBindable)?] = []) throws -> Int {
        Int(try connection.query(sql, parameters).first?[0] ?? "") ?? -1
    }

    static func insertProject(_ connection: Connection, _ name: String) throws -> Int64 {
        Int64(try connection.query("INSERT INTO main_project (name, description) VALUES ($1, '') RETURNING id", [name]).first?[0] ?? "") ?? -1
    }

    /// (groups linked, group permissions, object permissions on the project) for one project.
    static func roleRows(_ connection: Connection, _ project: Int64) throws -> [Int] {
        try [
            "SELECT count(*) FROM migrator.project_role_group WHERE project_id = $1",
            "SELECT count(*) FROM auth_group_permissions x JOIN migrator.project_role_group l ON l.group_id = x.group_id WHERE l.project_id = $1",
            "SELECT count(*) FROM guardian_groupobjectpermission x JOIN migrator.project_role_group l ON l.group_id = x.group_id WHERE l.project_id = $1 AND x.object_pk = $1::text",
        ].map { try count(connection, $0, [project]) }
    }

    /// (other sessions on this database, advisory locks held in it).
    static func leftovers(_ connection: Connection) throws -> [Int] {
        [
            try count(connection, "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"),
            try count(connection, "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"),
        ]
    }
}

/// Waits for a condition the test cannot be told of directly (the daemon's progress, seen in the database or its
/// state); the limit only bounds a failure, nothing is assumed to have happened after a delay. It counts the looks,
/// 20 ms apart, not the time since the start: the whole suite runs at once, and synchronous tests that wait on a
/// process can keep Swift concurrency's few threads (one per core) from resuming this loop for a while; a deadline
/// in time would then fail a test whose condition held all along.
func eventually(
    _ what: String, _ daemon: WorkerServiceTests.Running? = nil, limit: Duration = .seconds(30),
    sourceLocation: Testing.SourceLocation = #_sourceLocation, _ condition: () throws -> Bool
) async throws {
    let pause = Duration.milliseconds(20)
    for _ in 0..<Int(limit / pause) {
        if try condition() { return }
        try await Task.sleep(for: pause)
    }
    if try condition() { return }
    let log = daemon.map { $0.logs.entries.map { "\($0.level) \($0.message) \($0.metadata)" }.joined(separator: "\n") } ?? ""
    Issue.record("never happened: \(what)\n\(log)", sourceLocation: sourceLocation)
    throw CancellationError()
}
