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

/// The daemon's database side: waits for the database, migrates, then keeps projects' roles in step: new projects
/// from polling the project table past a watermark (``ProjectWatermark``; no trigger fires on INSERT), renames and
/// deletes from notifications, anything missed from periodic reconciles; it reconnects when the connection breaks.
///
/// libpq blocks, so the worker lives on its own serial queue (``WorkerService`` creates it there), off Swift's
/// cooperative pool; it is not `Sendable`, and its entry points check the queue. Only `state` is shared. It stops
/// between transactions when `state.isStopping` becomes true, so a sync in progress always commits or rolls back and
/// the lock is released before the process exits.
final class ProjectSyncWorker {
    static let channel = "migrator_projects"

    /// Where the loop is. The published ``DaemonState/Phase`` says the same to `/readyz`, with the start-up's steps.
    enum Phase {
        /// No session: the next turn opens one (after the first, that is a reconnect).
        case connecting
        /// A session is open and listening.
        case running(MigrationSession)
        /// Asked to stop; no transaction is in progress.
        case stopping
    }

    let configuration: DaemonConfiguration
    let state: DaemonState
    let metrics: DaemonMetrics
    let logger: Logger
    /// The sync's per-phase lines are for a sync run by hand; the daemon logs one line per sync unless debugging.
    private let syncLogger: Logger
    /// The queue the worker was made on and must run on.
    private let queue: DispatchQueue
    private let clock = ContinuousClock()

    private var phase = Phase.connecting
    private var batch: NotificationBatch<ContinuousClock>
    private var schedule: ReconcileSchedule<ContinuousClock>
    private var budget: SyncBudget<ContinuousClock>
    /// When the next poll for new projects is due.
    private var pollSchedule: ReconcileSchedule<ContinuousClock>
    /// Where the poll starts, and when that moves.
    private var watermark = ProjectWatermark()
    /// The project table as the last reconcile checked it: the poll runs only once a reconcile found this
    /// catalogue in force on the current session.
    private var target: ResolvedTarget?
    /// The last poll stopped at its limit: the next one runs as soon as its projects are synced.
    private var pollTruncated = false
    /// A reconcile handed its drifted projects to the batch: it is complete once they are synced.
    private var reconcileAwaitingBatch = false
    /// Whether "the reconcile waits for the lock" was logged since a reconcile last got it.
    private var reconcileLockBusyReported = false
    /// Whether a session was ever open: a new one after that is a reconnect.
    private var hadSession = false
    /// The session's round trips already added to `migrator_database_queries_total`.
    private var countedTrips = 0
    /// The last reconcile's counts of groups left out: warned about when they change.
    private var leftOut = LeftOutGroups()
    private var lastReadiness = ""

    private struct LeftOutGroups {
        /// Whose name another group has.
        var nameTaken = 0
        /// Whose name is too long for auth_group.name.
        var tooLong = 0
    }

    init(
        configuration: DaemonConfiguration, state: DaemonState, metrics: DaemonMetrics, logger: Logger,
        queue: DispatchQueue
    ) {
        dispatchPrecondition(condition: .onQueue(queue))
        self.configuration = configuration
        self.state = state
        self.metrics = metrics
        self.logger = logger
        self.queue = queue
        var quiet = logger
        if quiet.logLevel > .debug { quiet.logLevel = .warning }
        syncLogger = quiet
        batch = NotificationBatch(clock: clock, gap: configuration.batchGap, maxDelay: configuration.batchMaxDelay)
        schedule = ReconcileSchedule(clock: clock, interval: configuration.reconcileInterval)
        budget = SyncBudget(clock: clock, maxSize: configuration.syncBatchSize, timeBudget: configuration.syncTimeBudget)
        pollSchedule = ReconcileSchedule(clock: clock, interval: configuration.pollInterval)
        metrics.watermark.record(0)
        metrics.projectsWaiting.record(0)
    }

    private var session: MigrationSession? {
        if case .running(let session) = phase { session } else { nil }
    }

    private var connection: Connection? { session?.connection }

    /// The start-up migrate runs the same hook as `migrate`: a superseded catalogue is never applied (see
    /// ``CatalogueStanding``).
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
        // What a long migration statement is doing (its progress, who blocks it) is `/readyz`'s reason meanwhile.
        options.activity = { text in state.update { $0.migrationActivity = text } }
        return options
    }

    private var synchronizer: RoleSynchronizer {
        RoleSynchronizer(catalogue: configuration.catalogue, schema: configuration.migrator.schema)
    }

    // MARK: - The loop

    /// Runs until asked to stop; throws what ends the daemon with an error (the database never became reachable, a
    /// migration failed).
    func run() throws(MigrationError) {
        dispatchPrecondition(condition: .onQueue(queue))
        defer {
            state.update { $0.phase = .stopping }
            phase = .stopping
            publishReadiness()
        }
        guard try startUp() else { return }
        state.update { $0.phase = .running }
        logger.info("watching projects", metadata: [
            "daemon.channel": "\(Self.channel)",
            "daemon.reconcile_interval_s": "\(TextFormat.fixed(configuration.reconcileInterval.seconds, 1))",
            "daemon.poll_interval_ms": "\(Int(configuration.pollInterval.milliseconds))",
        ])
        var backoff = Backoff.reconnect
        while true {
            if state.isStopping { phase = .stopping }
            switch phase {
            case .connecting:
                do {
                    phase = .running(try openSession())
                } catch {
                    if handle(error, during: .connecting) == .reconnect { reconnect(after: error, backoff: &backoff) }
                }
            case .running:
                do {
                    // The session is not held here: a reconnect drops it before its backoff sleep.
                    try turn()
                    backoff.reset()
                } catch {
                    // `perform` passes on what `classify` calls a lost connection; waiting for notifications comes
                    // here directly.
                    if handle(error, during: .listening) == .reconnect { reconnect(after: error, backoff: &backoff) }
                }
            case .stopping:
                logger.info("stopping: no transaction in progress, lock released")
                return
            }
        }
    }

    /// One turn on an open session: reconcile when due, poll for new projects when due, sync what is due, wait for
    /// notifications and sync what they name. Each part ends the turn early on a stop request or a reported error.
    private func turn() throws {
        dispatchPrecondition(condition: .onQueue(queue))
        guard let session else { return }
        defer { countTrips() }
        if schedule.isDue {
            // Scheduled before it runs, so that a failing reconcile is retried at the interval, not in a loop.
            schedule.start()
            guard try perform(.reconcile, {
                if try reconcile(session) { markReconciled() } else { reconcileAwaitingBatch = true }
            }) else { return }
        }
        if pollIsDue {
            guard try perform(.poll, { try poll(session) }) else { return }
        }
        if batch.isDue {
            guard try perform(.batch, { try syncBatch(session) }) else { return }
        }
        let received = try session.connection.waitForNotifications(
            timeout: batch.wait(atMost: min(.milliseconds(250), schedule.timeUntilDue, timeUntilPoll))
        )
        guard !received.isEmpty else { return }
        // Gather what arrives close together into one batch.
        batch.startGathering()
        collect(received)
        while let wait = batch.gatheringWait {
            let more = try session.connection.waitForNotifications(timeout: wait)
            if more.isEmpty { break }
            collect(more)
        }
        batch.stopGathering()
        guard !state.isStopping, batch.isDue else { return }
        _ = try perform(.batch, { try syncBatch(session) })
    }

    /// Runs one part of a turn. Returns whether the turn goes on; rethrows only an error `classify` says needs a new
    /// connection (the loop reconnects).
    private func perform(_ work: ErrorClass.Work, _ body: () throws -> Void) throws -> Bool {
        do {
            try body()
        } catch {
            if handle(error, during: work) == .reconnect { throw error }
            return false
        }
        return !state.isStopping
    }

    /// What the worker does about an error, by the class `classify` gives it: every catch site in the loop comes
    /// here. A lost connection is left to the loop, which alone owns the session (``reconnect(after:backoff:)``).
    private func handle(_ error: any Error, during work: ErrorClass.Work) -> ErrorClass {
        countTrips()
        let kind = ErrorClass.classify(error, during: work, connected: connection?.isConnected ?? false)
        switch kind {
        case .stop:
            phase = .stopping  // SIGTERM while waiting for another runner's lock: nothing was started.
        case .lockBusy where work == .reconcile:
            // Not a readiness problem: the other runner's work is legitimate. The reconcile runs again shortly.
            schedule.due(after: batch.lockRetryDelay)
            if !reconcileLockBusyReported {
                reconcileLockBusyReported = true
                logger.info("another runner holds the migration lock; the reconcile waits")
            }
        case .lockBusy:
            budget.abandoned()
            if batch.lockBusy() {
                logger.info("another runner holds the migration lock; the batch waits", metadata: [
                    "daemon.projects": "\(batch.projectIDs.count)",
                ])
            }
        case .report where work == .poll:
            // The project table may have changed under us (an app migration): polls resume once a reconcile, due at
            // once, has checked it again; a failing reconcile says so on /readyz.
            target = nil
            schedule.dueNow()
            logger.error("the poll for new projects failed; reconciling", metadata: ["db.error": "\(error)"])
        case .report where work == .reconcile:
            state.update { $0.reconcileProblem = "the last reconcile failed: \(Self.shortMessage(error))" }
            publishReadiness()
            metrics.syncCompleted(trigger: "reconcile", result: "error")
            logger.error("reconcile failed; retrying at the next interval", metadata: ["db.error": "\(error)"])
        case .report:
            budget.abandoned()
            logger.error("role sync failed; the next reconcile retries", metadata: ["db.error": "\(error)"])
            if batch.hasDrift || reconcileAwaitingBatch {
                // The reconcile's projects could not be synced: as for a failed reconcile.
                reconcileAwaitingBatch = false
                state.update { $0.reconcileProblem = "the last reconcile failed: \(Self.shortMessage(error))" }
                publishReadiness()
            }
            metrics.syncCompleted(trigger: batch.isEmpty ? "notify" : batch.trigger(budget.chunk(batch.ids)), result: "error")
            batch.discard()
            metrics.projectsWaiting.record(0)
        case .reconnect, .fail:
            // `.fail` is the start-up's, which throws it; in the loop a session that cannot go on is replaced.
            return .reconnect
        }
        return kind
    }

    /// The connection is gone: drop the session, say so on `/readyz`, and wait a backoff step before connecting again.
    private func reconnect(after error: any Error, backoff: inout Backoff) {
        phase = .connecting
        state.update {
            $0.databaseReachable = false
            $0.lastError = Self.shortMessage(error)
        }
        publishReadiness()
        let delay = backoff.next()
        logger.warning("lost the database connection; reconnecting", metadata: [
            "db.error": "\(Self.shortMessage(error))", "daemon.retry_in_ms": "\(Int(delay.milliseconds))",
        ])
        sleep(delay)
    }

    /// A reconcile completed (whatever it found): the daemon may be ready again.
    private func markReconciled() {
        guard state.current.reconcileProblem != nil || !state.current.reconciled else { return }
        state.update {
            $0.reconcileProblem = nil
            $0.reconciled = true
        }
        publishReadiness()
    }

    private func collect(_ notifications: [PostgresNotification]) {
        metrics.notificationsReceived.increment(by: notifications.count)
        let rejected = batch.add(notifications.map(\.payload))
        for payload in rejected {
            logger.warning("ignored a notification without a project id; reconciling instead", metadata: [
                "daemon.channel": "\(Self.channel)", "daemon.payload": "\(payload.prefix(80))",
            ])
            schedule.dueNow()
        }
    }

    /// A new session: set up, listening, and due for a reconcile (a notification may have been missed while there
    /// was none).
    private func openSession() throws -> MigrationSession {
        dispatchPrecondition(condition: .onQueue(queue))
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
        hadSession = true
        countedTrips = 0
        countTrips(fresh.connection)
        state.update {
            $0.databaseReachable = true
            $0.lastError = nil
            $0.reconciled = false
        }
        reconcileAwaitingBatch = false
        schedule.dueNow()
        // The first poll on a session scans from the bottom: whatever was created meanwhile is found.
        watermark.reset()
        target = nil
        pollTruncated = false
        pollSchedule.dueNow()
        return fresh
    }

    // MARK: - Start-up

    /// Waits for the database and runs the start-up migrate. Returns false when asked to stop meanwhile.
    private func startUp() throws(MigrationError) -> Bool {
        guard try waitForDatabase() else { return false }
        guard configuration.migrate, !state.isStopping else { return true }
        state.update { $0.phase = .migrating }
        publishReadiness()
        let report: MigrateReport
        do {
            report = try migrator.migrate()
        } catch {
            guard ErrorClass.classify(error, during: .startUp, connected: false) == .stop else { throw error }
            logger.info("stopped during the start-up migrate; nothing was cut short", metadata: [
                "daemon.reason": "\(error.message)",
            ])
            return false
        }
        metrics.databaseQueries.increment(by: report.roundTrips)
        logger.info("migrate finished", metadata: [
            "migrate.applied": "\(report.applied.count)", "migrate.duration_ms": "\(Int(report.durationMs))",
            "migrate.hooks": "\(report.hooks.map { "\($0.name): \($0.summary)" }.joined(separator: "; "))",
        ])
        return true
    }

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

    // MARK: - Reconcile

    /// Re-reads the migration status and the stored role version, then syncs the projects whose rows differ. Returns
    /// false when it handed drifted projects to the batch, which syncs them in bounded chunks: the reconcile is
    /// complete once they are synced.
    private func reconcile(_ session: MigrationSession) throws -> Bool {
        let connection = session.connection
        metrics.reconciles.increment()
        let status = try session.status()
        let pendingMigrations = status.count(.pending) + status.count(.failed)
        metrics.migrationsApplied.record(status.count(.applied))
        metrics.migrationsPending.record(pendingMigrations)
        let newer = status.migrations.filter { $0.newerThanFolder == true && $0.state == .missing }
            .map { MigrationStatus.label($0.version, $0.name) }
        metrics.migrationsNewerThanFolder.record(newer.count)
        state.update {
            $0.pendingMigrations = pendingMigrations
            $0.historyProblems = status.problems.map(\.summary)
            $0.newerThanFolder = newer
        }
        guard pendingMigrations == 0, status.problems.isEmpty else {
            publishReadiness()
            return true
        }
        // One query checks the project table (it may have changed under us: an app migration) and reads the stored
        // version; the triggers are put back only once the version is this daemon's.
        let checked = try synchronizer.resolveTarget(connection)
        // Where this catalogue stands against the stored versions: the rolling-deploy rule, decided in RoleSync.
        switch try synchronizer.standing(connection, latest: checked.stored?.version) {
        case .current:
            setSuperseded(by: nil)
            setRoleVersionProblem(nil)
        case .superseded(let newer):
            // An older release meeting a newer catalogue: it stays out of the way, says so, and is still ready.
            setSuperseded(by: newer)
            setRoleVersionProblem(nil)
            batch.discard()
            return true
        case .noVersion, .new:
            // Nothing recorded (a sidecar attached with --no-migrate to a database no sync ran on), or a catalogue
            // never synced here, which is newer than everything stored: the sync the hook would run, under the same
            // rule (it decides again under the lock).
            setSuperseded(by: nil)
            logger.info("the role version recorded is not this catalogue's, which was never synced here; syncing it", metadata: [
                "roles.version": "\(configuration.catalogue.version)", "roles.stored_version": "\(checked.stored?.version ?? "none")",
            ])
            // Not ready until it has committed: the app's projects lack their groups before.
            state.update { $0.roleVersionProblem = "running the first role sync of this catalogue" }
            publishReadiness()
            try sync(nil, trigger: "reconcile", session, catchUp: true)
            // Reconcile again at once: now with this version recorded, it counts what the sync had to leave out.
            schedule.dueNow()
            return true
        }
        let resolved = try synchronizer.installTriggersIfNeeded(connection, checked, dryRun: false, logger: syncLogger)
        target = resolved
        let driftStart = clock.now
        // In chunks of projects, one statement each: an app's ALTER TABLE waits for one chunk at most.
        var chunks = 0
        var longest = Duration.zero
        let found = try synchronizer.drift(connection, target: resolved) { chunk in
            chunks = chunk.number
            longest = max(longest, chunk.duration)
            return !state.isStopping
        }
        guard let drift = found else {
            // Asked to stop between two chunks: the rest is not read, nothing is synced.
            logger.info("stopping: the reconcile's drift query ends between two chunks", metadata: ["daemon.drift_chunks": "\(chunks)"])
            return false
        }
        logger.debug("reconcile: drift query done", metadata: [
            "daemon.drift_ms": "\(TextFormat.fixed((clock.now - driftStart).milliseconds, 1))",
            "daemon.drift_chunks": "\(chunks)",
            "daemon.drift_longest_chunk_ms": "\(TextFormat.fixed(longest.milliseconds, 1))",
            "daemon.projects": "\(drift.projectIDs.count)",
        ])
        metrics.blockedGroups.record(drift.blockedGroups)
        metrics.tooLongGroups.record(drift.tooLongGroups)
        if drift.tooLongGroups != leftOut.tooLong {
            if drift.tooLongGroups > 0 {
                logger.warning("role groups whose name is too long for auth_group.name are left out; `migrator update-roles` lists them", metadata: [
                    "daemon.groups": "\(drift.tooLongGroups)",
                ])
            }
            leftOut.tooLong = drift.tooLongGroups
        }
        let notice = [
            drift.tooLongGroups > 0 ? "\(drift.tooLongGroups) role groups left out: their names are too long for auth_group.name" : nil,
            drift.blockedGroups > 0 ? "\(drift.blockedGroups) role groups keep their old name or are not created: another group has the name" : nil,
        ].compactMap { $0 }.joined(separator: "; ")
        state.update { $0.rolesNotice = notice.isEmpty ? nil : notice + " (`migrator update-roles` lists them)" }
        if drift.blockedGroups != leftOut.nameTaken {
            if drift.blockedGroups > 0 {
                logger.warning("role groups whose name another group has are left as they are; `migrator update-roles` lists them", metadata: [
                    "daemon.groups": "\(drift.blockedGroups)",
                ])
            }
            leftOut.nameTaken = drift.blockedGroups
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
            // Synced by the batch, a bounded chunk per transaction, like notified projects.
            batch.addDrifted(drift.projectIDs)
            publishReadiness()
            return false
        }
        publishReadiness()
        return true
    }

    private func setSuperseded(by newer: String?) {
        let previous = state.current.supersededBy
        guard newer != previous else { return }
        state.update { $0.supersededBy = newer }
        metrics.catalogueSuperseded.record(newer == nil ? 0 : 1)
        if let newer {
            logger.info("this daemon's role catalogue was superseded by a newer one; not syncing", metadata: [
                "roles.version": "\(configuration.catalogue.version)", "roles.superseded_by": "\(newer)",
            ])
        } else {
            logger.info("this daemon's role catalogue is current again; syncing resumes")
        }
        publishReadiness()
    }

    private func setRoleVersionProblem(_ problem: String?) {
        let previous = state.current.roleVersionProblem
        state.update { $0.roleVersionProblem = problem }
        if let problem, problem != previous { logger.warning("role sync paused", metadata: ["daemon.reason": "\(problem)"]) }
        if problem == nil, previous != nil { logger.info("role version is current again; syncing resumes") }
        publishReadiness()
    }

    // MARK: - Poll

    /// Whether the daemon syncs now: its catalogue is in force and the migrations agree with the history.
    private var syncAllowed: Bool {
        let current = state.current
        return current.roleVersionProblem == nil && current.supersededBy == nil && current.pendingMigrations == 0
            && current.historyProblems.isEmpty
    }

    /// A poll is due every interval, and at once after one that stopped at its limit; never while the last poll's
    /// projects are still to sync (a batch waiting for the lock does not grow), nor before a reconcile found this
    /// catalogue in force.
    private var pollIsDue: Bool {
        guard target != nil, syncAllowed, !batch.hasPolled else { return false }
        return pollTruncated || pollSchedule.isDue
    }

    /// How long the wait for notifications may last before a poll is due.
    private var timeUntilPoll: Duration {
        guard target != nil, syncAllowed, !batch.hasPolled else { return .milliseconds(250) }
        return pollTruncated ? .zero : pollSchedule.timeUntilDue
    }

    /// One poll (``NewProjectsPoll``): its new projects join the batch, synced in bounded chunks like notified ones.
    private func poll(_ session: MigrationSession) throws {
        guard let target else { return }
        pollSchedule.start()
        pollTruncated = false
        metrics.polls.increment()
        let found = try synchronizer.pollNewProjects(
            session.connection, target: target, after: watermark.mark, covered: watermark.covered,
            skipping: watermark.skipping, limit: configuration.syncBatchSize
        )
        let fresh = watermark.observe(found)
        pollTruncated = found.truncated
        metrics.watermark.record(watermark.shown)
        guard !fresh.isEmpty else { return }
        metrics.projectsPolled.increment(by: fresh.count)
        batch.addPolled(fresh)
        metrics.projectsWaiting.record(batch.projectIDs.count)
        logger.debug("found new projects", metadata: [
            "daemon.projects": "\(fresh.count)", "daemon.watermark": "\(watermark.shown)",
            "daemon.more": "\(found.truncated)",
        ])
    }

    // MARK: - Sync

    /// Syncs the next chunk of the batch (``SyncBudget``) in one transaction; what is left stays due. A busy lock or a
    /// stop request comes out as an error for `classify`. Between two chunks, a runner waiting for the lock goes
    /// first (``yieldToWaiter(_:)``).
    private func syncBatch(_ session: MigrationSession) throws {
        guard syncAllowed else {
            // Not ours to sync now; the reconcile that clears the problem finds these projects.
            batch.discard()
            return
        }
        let ids = budget.chunk(batch.ids)
        let trigger = batch.trigger(ids)
        guard try sync(ids, trigger: trigger, session) else { return }
        batch.synced(ids)
        metrics.projectsWaiting.record(batch.projectIDs.count)
        // More to sync: in the batch, or in the table past the last poll's limit.
        if !batch.isEmpty || pollTruncated {
            try yieldToWaiter(session)
        } else if reconcileAwaitingBatch {
            reconcileAwaitingBatch = false
            markReconciled()
        }
    }

    /// The lock was just released and more projects are to sync: if another runner polls for the lock, pause until it
    /// has it (at most `lockYieldWait`), so that a deploy waiting behind a burst gets the lock within one batch.
    private func yieldToWaiter(_ session: MigrationSession) throws {
        let key = configuration.migrator.schema.lockKey
        guard try LockWaiters.look(session.connection, key: key).waiting else { return }
        metrics.lockYields.increment()
        logger.info("another runner waits for the migration lock; letting it go first", metadata: [
            "daemon.projects_left": "\(batch.projectIDs.count)",
        ])
        let deadline = clock.now + configuration.lockYieldWait
        while !state.isStopping, clock.now < deadline {
            sleep(.milliseconds(50))
            let seen = try LockWaiters.look(session.connection, key: key)
            if seen.taken || !seen.waiting { return }
        }
    }

    /// One transaction under the lock for these projects (nil: every project, recording the version). With
    /// `catchUp`, the sync the hook would run (this catalogue was never synced here, or nothing is recorded); otherwise
    /// only while this catalogue is the one in force. Returns false when it was not (nothing was done).
    @discardableResult
    private func sync(_ ids: [Int64]?, trigger: String, _ session: MigrationSession, catchUp: Bool = false) throws -> Bool {
        let start = clock.now
        var options = RoleSynchronizer.Options(force: ids == nil && !catchUp, projectIDs: ids, onlyIfCurrent: !catchUp)
        options.superseded = .neverApply
        // The batches' lock waits are reported once by the worker, not on every attempt.
        let logger = session.logger
        session.logger = syncLogger
        defer { session.logger = logger }
        let report = try session.withLock(timeout: configuration.batchLockWait) {
            if ids != nil { budget.started() }
            return try synchronizer.sync(session.connection, options: options, logger: syncLogger)
        }
        if let ids { budget.finished(projects: ids.count) }
        reconcileLockBusyReported = false
        let elapsed = clock.now - start
        metrics.syncDuration(trigger: trigger).recordNanoseconds(Int64(elapsed.seconds * 1e9))
        if report.mode == .superseded {
            // The stored version changed since the reconcile read it: the next reconcile decides what that means.
            metrics.syncCompleted(trigger: trigger, result: "superseded")
            batch.discard()
            reconcileAwaitingBatch = false
            schedule.dueNow()
            if catchUp { setRoleVersionProblem(nil) }
            return false
        }
        if catchUp { setRoleVersionProblem(nil) }
        metrics.syncCompleted(trigger: trigger, result: "ok")
        metrics.projectsSynced.increment(by: ids?.count ?? report.projects)
        metrics.rowsWritten.increment(by: report.totals.rowsWritten)
        metrics.lastSuccessfulSync.record(Date().timeIntervalSince1970)
        logger.info("synced projects", metadata: [
            "daemon.trigger": "\(trigger)", "daemon.projects": "\(ids?.count ?? report.projects)",
            "roles.rows_written": "\(report.totals.rowsWritten)",
            "roles.duration_ms": "\(TextFormat.fixed(elapsed.milliseconds, 1))",
        ])
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

    private func countTrips(_ connection: Connection? = nil) {
        guard let connection = connection ?? self.connection else { return }
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
            logger.info("not ready", metadata: ["daemon.reason": "\(reason)"])
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
