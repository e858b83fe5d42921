import Synchronization

/// What the worker knows and the HTTP endpoints report. The worker writes it; `/readyz` and `/metrics` read it.
public final class DaemonState: Sendable {
    public enum Phase: String, Sendable {
        case starting, waitingForDatabase = "waiting for the database", migrating, running, stopping
    }

    struct Snapshot: Sendable {
        var phase: Phase = .starting
        var databaseReachable = false
        /// Nil until the first status read.
        var pendingMigrations: Int?
        var historyProblems: [String] = []
        /// Nil while the stored role version matches; otherwise why the daemon does not sync.
        var roleVersionProblem: String?
        /// The newer role version recorded after this daemon's catalogue: it does not sync, and says so, but that is
        /// how a rolling deploy goes (an older release meeting a newer one), not a problem an operator must act on.
        var supersededBy: String?
        var lastError: String?
        /// Why the last reconcile failed, while the session itself is fine (a statement failed).
        var reconcileProblem: String?
        /// Something an operator should know that does not make the daemon unready (role groups left out because
        /// their names cannot be had); `/readyz` adds it to its answer.
        var rolesNotice: String?
        /// Whether a reconcile has completed on the current session: until then a project made while the daemon was
        /// away (or while it reconnected) may still be out of step, so the daemon is not ready.
        var reconciled = false
        /// Applied migrations newer than this release's folder, accepted with `--allow-newer-database`.
        var newerThanFolder: [String] = []
        /// What the start-up migrate's running statement is doing, once it has run long enough to be reported.
        var migrationActivity: String?
    }

    private let snapshot = Mutex(Snapshot())
    /// Set by a SIGTERM/SIGINT: the worker finishes its transaction and stops.
    private let stopRequested = Atomic<Bool>(false)

    public init() {}

    func update(_ change: (inout Snapshot) -> Void) {
        snapshot.withLock { change(&$0) }
    }

    var current: Snapshot { snapshot.withLock { $0 } }

    public var phase: Phase { current.phase }

    /// What `/readyz` adds to a ready answer, if anything.
    public var notice: String? {
        let state = current
        let superseded = state.supersededBy.map {
            "this daemon's role catalogue was superseded by \($0.prefix(12)), synced after it by a newer release; "
                + "not syncing (`migrator update-roles` with this catalogue rolls back to it)"
        }
        let newer = state.newerThanFolder.isEmpty ? nil
            : "the database has migrations newer than this release (\(state.newerThanFolder.joined(separator: ", "))); "
                + "--allow-newer-database: nothing was applied or reverted"
        let notices = [newer, superseded, state.rolesNotice].compactMap { $0 }
        return notices.isEmpty ? nil : notices.joined(separator: "\nnote: ")
    }

    public func requestStop() { stopRequested.store(true, ordering: .relaxed) }
    public var isStopping: Bool { stopRequested.load(ordering: .relaxed) }

    /// Ready means: the database answers, nothing is pending, the history agrees with the folder, and the stored
    /// role version is this daemon's or a newer one (then ``notice`` says so). Otherwise the first reason that
    /// applies. Another runner holding the lock is never a reason: the daemon's syncs wait and retry.
    public var readiness: (ready: Bool, reason: String) {
        let state = current
        switch state.phase {
        case .starting: return (false, "starting")
        case .waitingForDatabase: return (false, "waiting for the database" + (state.lastError.map { ": \($0)" } ?? ""))
        case .migrating: return (false, "applying migrations" + (state.migrationActivity.map { ": \($0)" } ?? ""))
        case .stopping: return (false, "shutting down")
        case .running: break
        }
        if !state.databaseReachable {
            return (false, "database unreachable" + (state.lastError.map { ": \($0)" } ?? ""))
        }
        if let problem = state.historyProblems.first { return (false, "migration history disagrees with the folder: \(problem)") }
        guard let pending = state.pendingMigrations else { return (false, "migration status not read yet") }
        if pending > 0 { return (false, "\(pending) migration\(pending == 1 ? "" : "s") pending") }
        if let problem = state.roleVersionProblem { return (false, problem) }
        if let problem = state.reconcileProblem { return (false, problem) }
        if !state.reconciled { return (false, "the first reconcile is running") }
        return (true, "ready")
    }
}
