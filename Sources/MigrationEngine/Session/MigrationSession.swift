import Logging
import Postgres
import SystemSupport

/// One connection to one database, set up for migrator's work: what a `migrate` run holds, what the daemon keeps
/// for its whole life, and what a fleet run holds one of per target.
///
/// The session owns its connection. Its set-up (timeouts, keepalives, the read-only check, a first try for the
/// lock, the marker of migrator's own objects) is one round trip. Work that must not interleave with another
/// runner's goes through ``withLock(timeout:_:)``, which takes the advisory lock (re-entrantly), makes sure
/// migrator's own objects are installed and current, and releases the lock whatever happens.
///
/// Like ``Connection`` it is not `Sendable`: one thread uses it at a time.
public final class MigrationSession {
    /// What the session is for, which decides what its set-up checks.
    public enum Purpose: Sendable {
        /// A run that writes now (`migrate`, `update-roles`): the server must take writes, and the set-up makes a
        /// first try for the lock so that an uncontended run spends no round trip on it.
        case migrate
        /// A long-lived session that writes from time to time under the lock (the daemon): the server must take
        /// writes; the lock is taken only when asked.
        case serve
        /// Reads only (`status`, `verify`, `migrate --dry-run`): nothing is checked, nothing is locked or installed.
        case inspect

        var writes: Bool { self != .inspect }
    }

    public let connection: Connection
    public let options: MigratorOptions
    public let hooks: [any PostMigrateHook]
    public let purpose: Purpose
    public var logger: Logger

    /// What the set-up query's try for the lock got, until the first ``withLock(timeout:_:)`` uses it (nil: no
    /// try was made, or it was used).
    private var setUpLockTry: Bool?
    /// Whether the set-up query found the markers of migrator's own objects at this release's versions (see
    /// ``OwnObjects``).
    private var ownObjectsCurrent = false
    /// How many ``withLock(timeout:_:)`` calls are inside each other: the lock is released when the outermost ends.
    private var lockDepth = 0
    /// Where the session connected, for the second connection that watches the migrations (nil for a session made
    /// on a connection opened elsewhere: it runs without one).
    private(set) var config: ConnectionConfig?
    /// Who blocks the running migration and its progress, while a plan is applied.
    var watcher: StatementWatcher?

    /// Whether this session holds the migration lock now.
    public var holdsLock: Bool { lockDepth > 0 }

    /// For a caller that closes the session right after its one job (a fleet target): the lock is then released by
    /// closing the connection (the server frees a session's advisory locks when it ends) instead of by a statement,
    /// which saves a round trip per target. Until then the session keeps the lock, also between two `withLock`s.
    public var releasesLockByClosing = false
    /// The lock is held though no `withLock` is running (``releasesLockByClosing``).
    private var lockKept = false

    var history: HistoryStore { HistoryStore(schema: options.schema) }
    var lockKey: Int64 { options.schema.lockKey }
    /// The engine's own objects first, then each hook's.
    var components: [OwnObjectsComponent] { Self.components(hooks) }

    /// The engine's own objects and those of `hooks`, in the order they are installed.
    static func components(_ hooks: [any PostMigrateHook]) -> [OwnObjectsComponent] {
        [HistoryStore.component] + hooks.compactMap(\.ownObjects)
    }

    /// Connects and sets the session up.
    /// - Throws: ``MigrationError`` `.connectionFailed` when the database cannot be reached, `.readOnly` when it
    ///   must take writes and does not, `.databaseError` when the set-up fails.
    public convenience init(
        connecting config: ConnectionConfig, options: MigratorOptions, hooks: [any PostMigrateHook] = [],
        purpose: Purpose, logger: Logger
    ) throws(MigrationError) {
        let connection: Connection
        do {
            connection = try Connection(config: config, logger: logger)
        } catch {
            throw MigrationError(code: .connectionFailed, message: "cannot connect to the database: \(error.message)", hint: error.hint)
        }
        try self.init(connection: connection, options: options, hooks: hooks, purpose: purpose, logger: logger)
        self.config = config
    }

    /// Sets up a session on an open connection.
    public init(
        connection: Connection, options: MigratorOptions, hooks: [any PostMigrateHook] = [], purpose: Purpose,
        logger: Logger
    ) throws(MigrationError) {
        self.connection = connection
        self.options = options
        self.hooks = hooks
        self.purpose = purpose
        self.logger = logger
        let facts = try SessionSetUp.run(
            on: connection, options: options, purpose: purpose,
            markers: OwnObjects.markerSignatures(Self.components(hooks), schema: options.schema)
        )
        setUpLockTry = facts.locked
        ownObjectsCurrent = facts.ownObjectsCurrent
    }

    deinit {
        if lockDepth > 0 { AdvisoryLock.release(connection, key: lockKey, logger: logger) }
    }

    // MARK: - The lock

    /// Runs `body` holding the migration lock, waiting at most `timeout` (default: the options' lock timeout) for
    /// another runner to release it, with migrator's own objects installed and current. Inside another
    /// `withLock` it just runs `body`.
    /// - Throws: ``MigrationError`` `.lockTimeout` when another runner kept the lock longer, `.stopped` when
    ///   ``MigratorOptions/stopRequested`` asked to stop meanwhile, or what `body` throws.
    @discardableResult
    public func withLock<T>(timeout: Duration? = nil, _ body: () throws -> T) throws -> T {
        try enterLock(timeout: timeout)
        defer { leaveLock() }
        return try body()
    }

    /// ``withLock(timeout:_:)`` for the engine's own work, whose errors are all ``MigrationError``s.
    func withMigrationLock<T>(_ body: () throws(MigrationError) -> T) throws(MigrationError) -> T {
        try enterLock(timeout: nil)
        defer { leaveLock() }
        return try body()
    }

    private func enterLock(timeout: Duration?) throws(MigrationError) {
        if lockDepth == 0, !lockKept { try acquireLock(timeout: timeout ?? options.lockTimeout) }
        lockDepth += 1
        guard lockDepth == 1 else { return }
        do {
            try installOwnObjects()
        } catch {
            leaveLock()
            throw error
        }
    }

    private func leaveLock() {
        lockDepth -= 1
        guard lockDepth == 0 else { return }
        if releasesLockByClosing {
            lockKept = true
        } else {
            AdvisoryLock.release(connection, key: lockKey, logger: logger)
        }
    }

    /// How long the last wait for the lock took.
    public private(set) var lastLockWait = Duration.zero

    private func acquireLock(timeout: Duration) throws(MigrationError) {
        precondition(purpose.writes, "a session set up to inspect does not take the lock")
        let firstTry: Bool
        if let setUpLockTry {
            firstTry = setUpLockTry
            self.setUpLockTry = nil
        } else {
            firstTry = try AdvisoryLock.tryLock(connection, key: lockKey)
        }
        lastLockWait = try AdvisoryLock.acquire(
            connection, key: lockKey, alreadyTried: firstTry, timeout: timeout,
            reportEvery: options.lockReportInterval, logger: logger, stopRequested: options.stopRequested
        )
        logger.debug("holding the migration lock", metadata: ["lock.waited_ms": "\(Int(lastLockWait.milliseconds))"])
    }

    /// Installs or upgrades migrator's own objects, under the lock. The marker read at set-up spares the round
    /// trip when they are current; it is used once, since on a long-lived session another release may have changed
    /// them since (later calls cost one query).
    private func installOwnObjects() throws(MigrationError) {
        let current = ownObjectsCurrent
        ownObjectsCurrent = false
        try OwnObjects.install(components, on: connection, schema: options.schema, markersPresent: current, logger: logger)
    }

    /// Makes sure migrator's own objects are installed and current: one query when they are; otherwise the lock is
    /// taken (waiting at most `timeout`), they are installed, and it is released. For a long-lived session, whose
    /// set-up marker may be old.
    public func ensureOwnObjects(timeout: Duration? = nil) throws {
        let installed = try OwnObjects.installedVersions(connection, schema: options.schema)
        guard components.contains(where: { installed[$0.name, default: 0] < $0.newest }) else { return }
        try withLock(timeout: timeout) {}
    }

    // MARK: - Reading

    /// The folder's migrations; none when there is no folder (a sidecar), or for `migrate` an error saying so.
    func entries(required: Bool) throws(MigrationError) -> [MigrationDirectory.Entry]? {
        try Self.entries(options, required: required)
    }

    public static func entries(_ options: MigratorOptions, required: Bool) throws(MigrationError) -> [MigrationDirectory.Entry]? {
        guard let path = options.migrationsPath else {
            if required {
                throw MigrationError(
                    code: .invalidMigrationFile,
                    message: "no migrations folder was given and ./Migrations does not exist",
                    hint: "point --migrations (MIGRATOR_MIGRATIONS) at one, or use update-roles or serve --no-migrate "
                        + "for the role sync alone"
                )
            }
            return nil
        }
        return try MigrationDirectory(path: path).entries()
    }

    func readHistory(legacyFallback: Bool) throws(MigrationError) -> (records: [HistoryRecord], location: HistoryStore.Location) {
        do {
            return try history.read(connection, legacyFallback: legacyFallback) ?? ([], .current)
        } catch {
            throw MigrationError(
                code: error.code == .connectionLost ? .connectionFailed : .databaseError,
                message: "could not read the migration history (\(history.table)): \(error)"
            )
        }
    }

    /// The plan for `entries` (listed beforehand, so that a misnamed file is reported before connecting): what is
    /// pending, in order, and every problem that stops a run. Outside the lock (a dry run) an earlier release's
    /// history table is read where it is; under the lock it has been moved already.
    func plan(entries: [MigrationDirectory.Entry], target: Int64?) throws(MigrationError) -> MigrationPlan {
        try plan(entries: entries, history: readHistory(legacyFallback: !holdsLock).records, target: target)
    }

    /// The one place a plan is made from the folder and the history.
    private func plan(
        entries: [MigrationDirectory.Entry], history: [HistoryRecord], target: Int64?
    ) throws(MigrationError) -> MigrationPlan {
        try MigrationPlan.make(
            entries: entries, history: history, migrationsPath: options.migrationsPath ?? "",
            target: target, allowOutOfOrder: options.allowOutOfOrder, allowNewerDatabase: options.allowNewerDatabase,
            // As the server will read the files: libpq knows the setting from the connection, no query needed.
            standardConformingStrings: connection.parameterStatus("standard_conforming_strings") != "off"
        )
    }

    /// Every migration's state (hooks not included: see ``hookStatuses()``). Without a migrations folder the
    /// history is listed as recorded, with a note that no file was compared.
    public func status() throws(MigrationError) -> StatusReport {
        let entries = try entries(required: false)
        let (history, location) = try readHistory(legacyFallback: true)
        var notes: [String] = []
        if location == .legacy {
            notes.append(
                "the history is in \(HistoryStore.legacyTable), where an earlier release kept it; the next "
                    + "migrate, update-roles or serve moves it into schema \(options.schema.name)"
            )
        }
        let hazards = readHazards(&notes)
        guard let entries else {
            notes.append("no migrations folder: the history is shown as recorded, and no file was compared")
            return StatusReport(
                migrations: history.map(MigrationStatus.init(recorded:)), problems: [], hooks: [], notes: notes,
                hazards: hazards, roundTrips: connection.roundTrips, database: connection.safeDescription
            )
        }
        let plan = try plan(entries: entries, history: history, target: nil)
        return StatusReport(
            migrations: plan.statuses, problems: plan.problems, hooks: [], notes: notes, hazards: hazards,
            roundTrips: connection.roundTrips, database: connection.safeDescription
        )
    }

    /// The database's INVALID indexes and constraints not validated yet; when they cannot be read, a note says so.
    private func readHazards(_ notes: inout [String]) -> [SchemaHazard] {
        do {
            return try SchemaHazard.read(connection)
        } catch {
            notes.append("INVALID indexes and unvalidated constraints could not be read: \(error.message)")
            return []
        }
    }

    /// Each hook's state; a hook whose state cannot be read says so instead of failing the whole status.
    public func hookStatuses() -> [HookStatus] {
        hooks.compactMap { hook in
            do {
                return try hook.status(connection, schema: options.schema)
            } catch {
                return HookStatus(name: hook.name, upToDate: false, summary: "cannot be read: \(error)")
            }
        }
    }

    // MARK: - Running

    /// Applies what is pending, then the hooks: the whole of a `migrate` run on this session.
    ///
    /// Order: list the files (before anything touches the database, so a misnamed file is reported first), take
    /// the lock and install migrator's own objects (not for a dry run), read the history, plan, stop on any problem
    /// before applying anything, apply each migration, run the hooks, release the lock.
    public func migrate() throws(MigrationError) -> MigrateReport {
        try migrate(entries: entries(required: true) ?? [])
    }

    /// ``migrate()`` with the folder listed by the caller (once for a whole fleet).
    public func migrate(entries: [MigrationDirectory.Entry]) throws(MigrationError) -> MigrateReport {
        let clock = ContinuousClock()
        let start = clock.now
        let run = { () throws(MigrationError) -> RunResult in
            let history = try self.readHistory(legacyFallback: !self.holdsLock).records
            // The first hook's check of a run with nothing to apply goes to the server now, and is answered while
            // the files are read and compared with the history (it is dropped if anything runs first).
            if !self.options.dryRun { self.hooks.first?.sendAhead(self.connection, schema: self.options.schema) }
            let plan = try self.plan(entries: entries, history: history, target: self.options.target)
            if !plan.problems.isEmpty {
                throw MigrationError(
                    code: .historyMismatch, diagnostics: plan.problems,
                    notes: ["nothing was applied; the folder and the history must agree before migrating"]
                )
            }
            if !plan.newerThanFolder.isEmpty {
                self.logger.warning("the database has migrations newer than this folder; applying nothing, reverting nothing", metadata: [
                    "migrate.newer_versions": "\(plan.newerThanFolder.joined(separator: ","))",
                ])
            }
            try self.options.beforeApplying(plan.steps.map(\.file))
            let reversing = !plan.reversals.isEmpty
            let done = try self.options.dryRun
                ? (reversing ? plan.reversals.map(Self.report) : plan.steps.map { Self.report($0, durationMs: 0) })
                : self.apply(plan)
            let applied = reversing ? [] : done
            let pendingAfter = reversing
                ? plan.pendingCount + (self.options.dryRun ? 0 : done.count)
                : max(0, plan.pendingCount - (self.options.dryRun ? 0 : applied.count))
            // The role hook runs after a down as after an up (the migrations it depends on may be gone now).
            let hooks = try self.runHooks(applied: done, pendingAfter: pendingAfter)
            return RunResult(
                applied: applied, reverted: reversing ? done : [], hooks: hooks, pendingAfter: pendingAfter,
                newerThanFolder: plan.newerThanFolder
            )
        }
        lastLockWait = .zero
        let result = try options.dryRun ? run() : withMigrationLock(run)
        return MigrateReport(
            dryRun: options.dryRun, applied: result.applied, hooks: result.hooks, pendingAfter: result.pendingAfter,
            newerThanFolder: result.newerThanFolder, reverted: result.reverted,
            lockWaitMs: lastLockWait.milliseconds, durationMs: (clock.now - start).milliseconds,
            roundTrips: connection.roundTrips, database: connection.safeDescription
        )
    }

    private struct RunResult {
        var applied: [MigrateReport.Applied]
        var reverted: [MigrateReport.Applied]
        var hooks: [HookReport]
        var pendingAfter: Int
        var newerThanFolder: [String]
    }

    /// Applies the plan's steps in order, under the lock, stopping between two migrations when asked to.
    /// - Throws: ``MigrationError`` naming the migration that failed and those applied before it.
    func apply(_ plan: MigrationPlan) throws(MigrationError) -> [MigrateReport.Applied] {
        precondition(holdsLock, "migrations are applied under the lock")
        var applied: [MigrateReport.Applied] = []
        if !plan.steps.isEmpty || !plan.reversals.isEmpty, let config {
            watcher = StatementWatcher(config: config, options: options, logger: logger)
        }
        defer {
            watcher?.close()
            watcher = nil
        }
        for reversal in plan.reversals {
            let label = MigrationStatus.label(reversal.record.version, reversal.record.name)
            if options.stopRequested() { throw stopped(before: "reversing \(label)", applied: applied) }
            do {
                applied.append(try revert(reversal))
            } catch var error {
                error.appliedBeforeFailure = applied.map { MigrationStatus.label($0.version, $0.name) + " (reversed)" }
                throw error
            }
        }
        for step in plan.steps {
            if options.stopRequested() {
                throw stopped(before: MigrationStatus.label(step.file.version, step.file.name), applied: applied)
            }
            do {
                applied.append(try apply(step))
            } catch var error {
                error.appliedBeforeFailure = applied.map { MigrationStatus.label($0.version, $0.name) }
                throw error
            }
        }
        return applied
    }

    /// Runs each hook, in order (with `dryRun` from the options), after the migrations.
    func runHooks(applied: [MigrateReport.Applied], pendingAfter: Int) throws(MigrationError) -> [HookReport] {
        var reports: [HookReport] = []
        var restore = !applied.isEmpty
        for hook in hooks {
            if options.stopRequested(), !options.dryRun {
                throw stopped(before: "the post-migrate hook '\(hook.name)'", applied: applied)
            }
            if restore, !options.dryRun {
                // The hook starts from the session the set-up made, whatever the migrations changed.
                do {
                    try connection.execute(script: restoreScript)
                } catch {
                    throw MigrationError(
                        code: error.code == .connectionLost ? .connectionFailed : .databaseError,
                        message: "could not reset the session before the post-migrate hook '\(hook.name)': \(error)"
                    )
                }
            }
            restore = true
            var hookLogger = logger
            hookLogger[metadataKey: "hook"] = .string(hook.name)
            let context = HookContext(
                connection: connection, schema: options.schema, logger: hookLogger,
                appliedVersions: applied.map(\.version), pendingMigrations: pendingAfter, dryRun: options.dryRun
            )
            var retry = LockRetry(budget: options.ddlLockRetryBudget)
            while true {
                do {
                    reports.append(try hook.run(context))
                    break
                } catch {
                    if let serverError = (error as? any HookServerFailure)?.rolledBackServerError,
                       let delay = retry.delay(after: serverError, connected: connection.isConnected, stopRequested: options.stopRequested()) {
                        hookLogger.warning("a lock the post-migrate hook needs was not granted; trying again", metadata: [
                            "db.sqlstate": "\(serverError.sqlState ?? "")", "retry.attempt": "\(retry.attempts)",
                            "retry.in_ms": "\(Int(delay.milliseconds))",
                        ])
                        LockRetry.sleep(delay)
                        continue
                    }
                    var failure = MigrationError(code: .hookFailed, message: "post-migrate hook '\(hook.name)' failed: \(error)")
                    failure.appliedBeforeFailure = applied.map { MigrationStatus.label($0.version, $0.name) }
                    throw failure
                }
            }
        }
        return reports
    }

    private func stopped(before next: String, applied: [MigrateReport.Applied]) -> MigrationError {
        var error = MigrationError(
            code: .stopped,
            message: "stopped on request before \(next); \(applied.count) migration(s) applied by this run stay "
                + "applied, the rest runs next time"
        )
        error.appliedBeforeFailure = applied.map { MigrationStatus.label($0.version, $0.name) }
        return error
    }

    static func report(_ reversal: MigrationPlan.Reversal) -> MigrateReport.Applied {
        MigrateReport.Applied(
            version: reversal.record.version, name: reversal.record.name,
            file: MigrationStatus.label(reversal.record.version, reversal.record.name) + ".down.sql (stored)",
            transactional: reversal.down.transactional, statements: 0, resumedAtStatement: nil, durationMs: 0
        )
    }

    static func report(_ step: MigrationPlan.Step, durationMs: Double) -> MigrateReport.Applied {
        MigrateReport.Applied(
            version: step.file.version, name: step.file.name, file: step.file.displayPath,
            transactional: step.file.transactional, statements: step.statements.count,
            resumedAtStatement: step.resumeFrom > 0 ? step.resumeFrom + 1 : nil, durationMs: durationMs
        )
    }
}

extension MigrationStatus {
    /// A history row shown as recorded, with no file to compare it with.
    init(recorded record: HistoryRecord) {
        self.init(
            version: record.version, name: record.name,
            state: record.superseded != nil ? .superseded : record.state == .failed ? .failed : .applied,
            transactional: record.transactional, appliedAt: record.appliedAt, appliedBy: record.appliedBy,
            durationMs: record.durationMs, recordedChecksum: record.checksum,
            failedStatement: record.failedStatement, error: record.error, supersededBy: record.superseded
        )
    }
}
