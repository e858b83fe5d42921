import Dispatch
import FoundationEssentials
#if canImport(Glibc)
import Glibc
#endif
import CoreMetrics
import Logging
import MigrationEngine
import Postgres
import RoleSync
import SystemSupport

/// The daemon's database side: waits for the database, migrates, then keeps projects' roles in step from
/// notifications and periodic reconciles, reconnecting when the connection breaks.
///
/// libpq blocks, so the worker runs on its own thread; everything but `state` is confined to that thread. It stops
/// between transactions when `state.isStopping` becomes true, so a sync in progress always commits or rolls back
/// and the lock is released before the process exits.
final class ProjectSyncWorker: @unchecked Sendable {
    static let channel = "migrator_projects"

    let configuration: DaemonConfiguration
    let state: DaemonState
    let metrics: DaemonMetrics
    let logger: Logger
    /// The sync's per-phase lines are for a sync run by hand; the daemon logs one line per sync unless debugging.
    private let syncLogger: Logger

    private var session: MigrationSession?
    private var connection: Connection? { session?.connection }
    /// Whether a session was ever open: a new one after that is a reconnect.
    private var hadSession = false
    private var countedTrips = 0
    /// Projects notified and not yet synced.
    private var pending = Set<Int64>()
    private var nextBatchAttempt: ContinuousClock.Instant?
    private var nextReconcile: ContinuousClock.Instant
    private var lockBusyReported = false
    /// The last reconcile's counts of groups whose name another group has or is too long: warned about when they
    /// change.
    private var blockedGroups = 0
    private var tooLongGroups = 0
    private var lastReadiness = ""
    private let clock = ContinuousClock()

    init(configuration: DaemonConfiguration, state: DaemonState, metrics: DaemonMetrics, logger: Logger) {
        self.configuration = configuration
        self.state = state
        self.metrics = metrics
        self.logger = logger
        var quiet = logger
        if quiet.logLevel > .debug { quiet.logLevel = .warning }
        syncLogger = quiet
        nextReconcile = clock.now
    }

    private var migrator: Migrator {
        Migrator(
            connection: configuration.connection, options: migratorOptions,
            hooks: [RoleSyncHook(catalogue: configuration.catalogue, force: configuration.forceRoles)], logger: logger
        )
    }

    /// A stop request also ends a wait for another runner's lock, and a start-up migrate between two migrations.
    private var migratorOptions: MigratorOptions {
        var options = configuration.migrator
        let state = state
        options.stopRequested = { state.isStopping }
        return options
    }

    private var synchronizer: RoleSynchronizer {
        RoleSynchronizer(catalogue: configuration.catalogue, schema: configuration.migrator.schema)
    }

    /// Runs the worker on its own thread until it stops; throws what ends the daemon with an error (the database
    /// never became reachable, a migration failed).
    func runDetached() async throws {
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
            DispatchQueue(label: "migrator.worker").async {
                do throws(MigrationError) {
                    try self.run()
                    continuation.resume()
                } catch {
                    continuation.resume(throwing: error)
                }
            }
        }
    }

    func run() throws(MigrationError) {
        defer { state.update { $0.phase = .stopping }; session = nil; publishReadiness() }
        guard try waitForDatabase() else { return }
        if configuration.migrate, !state.isStopping {
            state.update { $0.phase = .migrating }
            publishReadiness()
            let report: MigrateReport
            do {
                report = try migrator.migrate()
            } catch where error.code == .stopped {
                logger.info("stopped during the start-up migrate; nothing was cut short", metadata: [
                    "reason": "\(error.message)",
                ])
                return
            }
            metrics.databaseQueries.increment(by: report.roundTrips)
            logger.info("migrate finished", metadata: [
                "migrate.applied": "\(report.applied.count)", "migrate.duration_ms": "\(Int(report.durationMs))",
                "migrate.hooks": "\(report.hooks.map { "\($0.name): \($0.summary)" }.joined(separator: "; "))",
            ])
        }
        state.update { $0.phase = .running }
        logger.info("watching projects", metadata: [
            "daemon.channel": "\(Self.channel)",
            "daemon.reconcile_interval_s": "\(TextFormat.fixed(configuration.reconcileInterval.seconds, 1))",
        ])
        var backoff = Backoff.reconnect
        while !state.isStopping {
            do {
                try step()
                backoff.reset()
            } catch {
                countTrips()
                if let connection, connection.isConnected {
                    // A statement failed but the session is fine: report it; the next reconcile retries.
                    logger.error("role sync failed; the next reconcile retries", metadata: ["error": "\(error)"])
                    metrics.syncCompleted(trigger: "notify", result: "error")
                    pending.removeAll()
                    continue
                }
                session = nil
                state.update {
                    $0.databaseReachable = false
                    $0.lastError = Self.shortMessage(error)
                }
                publishReadiness()
                let delay = backoff.next()
                logger.warning("lost the database connection; reconnecting", metadata: [
                    "db.error": "\(Self.shortMessage(error))", "retry_in_ms": "\(Int(delay.milliseconds))",
                ])
                sleep(delay)
            }
        }
        logger.info("stopping: no transaction in progress, lock released")
    }

    /// One turn of the loop: connect if needed, reconcile when due, sync what is pending, wait for notifications.
    private func step() throws {
        let session = try openSession()
        let connection = session.connection
        defer { countTrips() }
        if clock.now >= nextReconcile {
            // Scheduled before it runs, so that a failing reconcile is retried at the interval, not in a loop.
            nextReconcile = clock.now + configuration.reconcileInterval
            do {
                try reconcile(session)
                if state.current.reconcileProblem != nil || !state.current.reconciled {
                    state.update {
                        $0.reconcileProblem = nil
                        $0.reconciled = true
                    }
                    publishReadiness()
                }
            } catch let error as MigrationError where error.code == .stopped {
                return  // SIGTERM while waiting for another runner's lock: nothing was started.
            } catch {
                if connection.isConnected {
                    state.update { $0.reconcileProblem = "the last reconcile failed: \(Self.shortMessage(error))" }
                    publishReadiness()
                    metrics.syncCompleted(trigger: "reconcile", result: "error")
                    logger.error("reconcile failed; retrying at the next interval", metadata: ["error": "\(error)"])
                    return
                }
                throw error
            }
        }
        if !pending.isEmpty, nextBatchAttempt.map({ clock.now >= $0 }) ?? true {
            try syncPending(session)
        }
        var wait = min(Duration.milliseconds(250), max(.zero, nextReconcile - clock.now))
        if !pending.isEmpty, let retry = nextBatchAttempt { wait = min(wait, max(.zero, retry - clock.now)) }
        let received = try connection.waitForNotifications(timeout: wait)
        guard !received.isEmpty else { return }
        // Gather what arrives close together into one batch.
        let batchStart = clock.now
        collect(received)
        while clock.now - batchStart < configuration.batchMaxDelay {
            let remaining = configuration.batchMaxDelay - (clock.now - batchStart)
            let more = try connection.waitForNotifications(timeout: min(configuration.batchGap, remaining))
            if more.isEmpty { break }
            collect(more)
        }
        if !state.isStopping { try syncPending(session) }
    }

    private func collect(_ notifications: [PostgresNotification]) {
        metrics.notificationsReceived.increment(by: notifications.count)
        for notification in notifications {
            if let id = Int64(notification.payload.trimmingWhitespace()) {
                pending.insert(id)
            } else {
                logger.warning("ignored a notification without a project id; reconciling instead", metadata: [
                    "daemon.channel": "\(notification.channel)", "daemon.payload": "\(notification.payload.prefix(80))",
                ])
                nextReconcile = clock.now
            }
        }
        nextBatchAttempt = nil
    }

    /// The open session, or a new one: set up, listening, and due for a reconcile (a notification may have been
    /// missed while there was none).
    private func openSession() throws -> MigrationSession {
        if let session { return session }
        let fresh = try MigrationSession(
            connecting: configuration.connection, options: migratorOptions, hooks: migrator.hooks, purpose: .serve,
            logger: logger
        )
        // A sidecar (serve --no-migrate) on a database no migrator ran on yet installs migrator's objects here.
        try fresh.ensureOwnObjects(timeout: configuration.migrator.lockTimeout)
        try RoleSynchronizer.prepareSession(fresh.connection)
        try fresh.connection.listen(Self.channel)
        if hadSession {
            metrics.reconnects.increment()
            logger.info("reconnected to the database; listening again", metadata: ["db": "\(fresh.connection.safeDescription)"])
        }
        session = fresh
        hadSession = true
        countedTrips = 0
        countTrips()
        state.update {
            $0.databaseReachable = true
            $0.lastError = nil
            $0.reconciled = false
        }
        nextReconcile = clock.now
        return fresh
    }

    // MARK: - Reconcile

    /// Re-reads the migration status and the stored role version, then syncs the projects whose rows differ.
    private func reconcile(_ session: MigrationSession) throws {
        let connection = session.connection
        metrics.reconciles.increment()
        let status = try session.status()
        let pendingMigrations = status.count(.pending) + status.count(.failed)
        metrics.migrationsApplied.record(status.count(.applied))
        metrics.migrationsPending.record(pendingMigrations)
        state.update {
            $0.pendingMigrations = pendingMigrations
            $0.historyProblems = status.problems.map(\.summary)
        }
        guard pendingMigrations == 0, status.problems.isEmpty else {
            publishReadiness()
            return
        }
        // One query checks the project table (it may have changed under us: an app migration) and reads the stored
        // version; the triggers are put back only once the version is this daemon's.
        let checked = try synchronizer.resolveTarget(connection)
        let stored = checked.stored
        let ours = configuration.catalogue.version
        if stored == nil, !configuration.migrate {
            // A sidecar attached to a database no sync ran on: there is no other catalogue to overwrite, so the first
            // full sync is this daemon's (with --no-migrate nothing else would ever make it).
            logger.info("no role version is recorded yet; running the first full sync")
            // Not ready until it has committed: the app's projects have no groups before.
            state.update { $0.roleVersionProblem = "running the first role sync" }
            publishReadiness()
            try sync(nil, trigger: "reconcile", session, firstSync: true)
            // Reconcile again at once: now with a version recorded, it counts what the sync had to leave out.
            nextReconcile = clock.now
            return
        }
        guard stored?.version == ours else {
            setRoleVersionProblem(stored: stored?.version)
            return
        }
        setRoleVersionProblem(nil)
        let resolved = try synchronizer.installTriggersIfNeeded(connection, checked, dryRun: false, logger: syncLogger)
        let drift = try synchronizer.drift(connection, target: resolved)
        metrics.blockedGroups.record(drift.blockedGroups)
        metrics.tooLongGroups.record(drift.tooLongGroups)
        if drift.tooLongGroups != tooLongGroups {
            if drift.tooLongGroups > 0 {
                logger.warning("role groups whose name is too long for auth_group.name are left out; `migrator update-roles` lists them", metadata: [
                    "daemon.groups": "\(drift.tooLongGroups)",
                ])
            }
            tooLongGroups = drift.tooLongGroups
        }
        let notice = [
            drift.tooLongGroups > 0 ? "\(drift.tooLongGroups) role groups left out: their names are too long for auth_group.name" : nil,
            drift.blockedGroups > 0 ? "\(drift.blockedGroups) role groups keep their old name or are not created: another group has the name" : nil,
        ].compactMap { $0 }.joined(separator: "; ")
        state.update { $0.rolesNotice = notice.isEmpty ? nil : notice + " (`migrator update-roles` lists them)" }
        if drift.blockedGroups != blockedGroups {
            if drift.blockedGroups > 0 {
                logger.warning("role groups whose name another group has are left as they are; `migrator update-roles` lists them", metadata: [
                    "daemon.groups": "\(drift.blockedGroups)",
                ])
            }
            blockedGroups = drift.blockedGroups
        }
        if drift.permissionsMissing || drift.orphanedLinks > 0 {
            if drift.permissionsMissing {
                logger.warning("some of the catalogue's permissions are missing; running a full sync")
            } else {
                logger.info("groups of deleted projects are still linked; running a full sync", metadata: [
                    "daemon.links": "\(drift.orphanedLinks)",
                ])
            }
            try sync(nil, trigger: "reconcile", session)
        } else if !drift.projectIDs.isEmpty {
            metrics.driftedProjects.increment(by: drift.projectIDs.count)
            logger.info("reconcile found projects whose roles differ", metadata: [
                "daemon.projects": "\(drift.projectIDs.count)",
                "daemon.sample": "\(drift.projectIDs.prefix(10).map(String.init).joined(separator: ","))",
            ])
            try sync(drift.projectIDs, trigger: "reconcile", session)
        }
        publishReadiness()
    }

    private func setRoleVersionProblem(stored: String?) {
        let ours = configuration.catalogue.version
        let problem = stored.map {
            "the stored role version \($0.prefix(12)) is not this daemon's \(ours.prefix(12)) (another deploy migrated "
                + "with a different catalogue); not syncing"
        } ?? "no role version is recorded; run `migrator migrate` (or update-roles) with this catalogue; not syncing"
        setRoleVersionProblem(problem)
    }

    private func setRoleVersionProblem(_ problem: String?) {
        let previous = state.current.roleVersionProblem
        state.update { $0.roleVersionProblem = problem }
        if let problem, problem != previous { logger.warning("role sync paused", metadata: ["reason": "\(problem)"]) }
        if problem == nil, previous != nil { logger.info("role version is current again; syncing resumes") }
        publishReadiness()
    }

    // MARK: - Sync

    private func syncPending(_ session: MigrationSession) throws {
        let current = state.current
        guard current.roleVersionProblem == nil, current.pendingMigrations == 0, current.historyProblems.isEmpty else {
            // Not ours to sync now; the reconcile that clears the problem finds these projects.
            pending.removeAll()
            return
        }
        let ids = pending.sorted()
        do {
            try sync(ids, trigger: "notify", session)
            pending.subtract(ids)
            nextBatchAttempt = nil
            lockBusyReported = false
        } catch let error as MigrationError where error.code == .lockTimeout {
            if !lockBusyReported {
                logger.info("another runner holds the migration lock; the batch waits", metadata: ["daemon.projects": "\(ids.count)"])
                lockBusyReported = true
            }
            nextBatchAttempt = clock.now + .milliseconds(500)
        } catch let error as MigrationError where error.code == .stopped {
            return  // SIGTERM while waiting for another runner's lock: the batch was not started.
        }
    }

    /// One transaction under the lock for these projects (nil: every project, recording the version).
    private func sync(_ ids: [Int64]?, trigger: String, _ session: MigrationSession, firstSync: Bool = false) throws {
        let start = clock.now
        var options = RoleSynchronizer.Options(force: ids == nil, projectIDs: ids, onlyIfCurrent: !firstSync)
        options.onlyIfNoVersion = firstSync
        // The batches' lock waits are reported once by the worker, not on every attempt.
        let logger = session.logger
        session.logger = syncLogger
        defer { session.logger = logger }
        let report = try session.withLock(timeout: configuration.batchLockWait) {
            try synchronizer.sync(session.connection, options: options, logger: syncLogger)
        }
        let elapsed = clock.now - start
        metrics.syncDuration(trigger: trigger).recordNanoseconds(Int64(elapsed.seconds * 1e9))
        if report.mode == .superseded {
            metrics.syncCompleted(trigger: trigger, result: "superseded")
            setRoleVersionProblem(stored: report.previousVersion)
            return
        }
        metrics.syncCompleted(trigger: trigger, result: "ok")
        metrics.projectsSynced.increment(by: ids?.count ?? report.projects)
        metrics.rowsWritten.increment(by: report.totals.rowsWritten)
        metrics.lastSuccessfulSync.record(Date().timeIntervalSince1970)
        logger.info("synced projects", metadata: [
            "daemon.trigger": "\(trigger)", "daemon.projects": "\(ids?.count ?? report.projects)",
            "roles.rows_written": "\(report.totals.rowsWritten)",
            "roles.duration_ms": "\(TextFormat.fixed(elapsed.milliseconds, 1))",
        ])
    }

    // MARK: - Start-up

    /// Waits until the database accepts connections, retrying only connection errors, with backoff, until the
    /// deadline. Returns false when asked to stop meanwhile.
    private func waitForDatabase() throws(MigrationError) -> Bool {
        state.update { $0.phase = .waitingForDatabase }
        publishReadiness()
        var wait = DatabaseWait(
            connection: configuration.connection, timeout: configuration.waitTimeout, logger: logger, sleep: sleep
        )
        let state = state
        wait.stopRequested = { state.isStopping }
        wait.onFailure = { error in state.update { $0.lastError = error.message } }
        guard try wait.run() != nil else { return false }
        state.update {
            $0.databaseReachable = true
            $0.lastError = nil
        }
        return true
    }

    // MARK: - Helpers

    /// Sleeps in short steps so that a stop request is honoured promptly.
    private func sleep(_ duration: Duration) {
        let end = clock.now + duration
        while !state.isStopping, clock.now < end {
            let step = min(Duration.milliseconds(50), end - clock.now)
            usleep(UInt32(max(1, step.milliseconds * 1000)))
        }
    }

    private func countTrips() {
        guard let connection else { return }
        let trips = connection.roundTrips
        if trips > countedTrips { metrics.databaseQueries.increment(by: trips - countedTrips) }
        countedTrips = trips
    }

    private func publishReadiness() {
        let (ready, reason) = state.readiness
        metrics.ready.record(ready ? 1 : 0)
        guard reason != lastReadiness else { return }
        lastReadiness = reason
        if ready {
            logger.info("ready")
        } else {
            logger.info("not ready", metadata: ["reason": "\(reason)"])
        }
    }

    static func shortMessage(_ error: any Error) -> String {
        switch error {
        case let error as PostgresError: error.message
        case let error as MigrationError: error.message
        case let error as RoleSyncError: error.error.message
        default: "\(error)"
        }
    }
}
