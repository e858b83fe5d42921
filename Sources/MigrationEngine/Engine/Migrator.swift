import Logging
import Postgres

/// The CLI's entry to the engine: each call opens a ``MigrationSession`` on one database, does one job, and closes
/// it. Callers that keep a session (the daemon, a fleet run) use ``MigrationSession`` directly.
public struct Migrator: Sendable {
    public var connection: ConnectionConfig
    public var options: MigratorOptions
    public var hooks: [any PostMigrateHook]
    public var logger: Logger
    /// For a process that exits right after ``migrate()``: the lock is released by closing the session (see
    /// ``MigrationSession/releasesLockByClosing``), one round trip fewer. Off by default: a caller that goes on
    /// working (the daemon's start-up migrate, then its own session) must find the lock free at once.
    public var releasesLockByClosing = false

    public init(
        connection: ConnectionConfig, options: MigratorOptions, hooks: [any PostMigrateHook] = [], logger: Logger
    ) {
        self.connection = connection
        self.options = options
        self.hooks = hooks
        self.logger = logger
    }

    /// A new session on the database.
    public func session(_ purpose: MigrationSession.Purpose) throws(MigrationError) -> MigrationSession {
        try MigrationSession(connecting: connection, options: options, hooks: hooks, purpose: purpose, logger: logger)
    }

    /// Applies what is pending, then the hooks (see ``MigrationSession/migrate()``). The files are listed before
    /// connecting, so that a misnamed file is reported without a database.
    public func migrate() throws(MigrationError) -> MigrateReport {
        let entries = try MigrationSession.entries(options, required: true) ?? []
        let session = try session(options.dryRun ? .inspect : .migrate)
        session.releasesLockByClosing = releasesLockByClosing
        return try session.migrate(entries: entries)
    }

    /// Every migration's state and each hook's, read without taking the lock (it only reads, and installs
    /// nothing).
    public func status() throws(MigrationError) -> StatusReport {
        let session = try session(.inspect)
        var report = try session.status()
        report.hooks = session.hookStatuses()
        report.roundTrips = session.connection.roundTrips
        return report
    }

    /// Runs `body` on a session that holds the migration lock, with migrator's own objects installed, for work
    /// that must not interleave with a migrate run (`update-roles`). The lock is released afterwards, whatever
    /// happens.
    public func withLock<T>(_ body: (Connection) throws -> T) throws -> T {
        let session = try session(.migrate)
        return try session.withLock { try body(session.connection) }
    }
}

extension MigrationStatus {
    /// `0007_add_index`: the version padded to four digits, as files are usually named.
    public static func label(_ version: Int64, _ name: String) -> String {
        let digits = String(version)
        return String(repeating: "0", count: max(0, 4 - digits.count)) + digits + "_" + name
    }
}
