import SystemSupport

/// The projects notified (renamed or deleted), found by the poll for new projects, or found drifted by a reconcile,
/// and not yet synced, and when to sync them: notifications
/// that arrive within `gap` of the last wait join one batch until it is `maxDelay` old; a batch that found the lock
/// busy waits `lockRetryDelay` before the next try and keeps growing meanwhile. The worker syncs them a bounded
/// chunk at a time (``SyncBudget``), lowest id first; what is left stays due.
///
/// A value with the clock passed in, so that its tests advance time instead of sleeping.
struct NotificationBatch<C: Clock<Duration>> {
    let clock: C
    let gap: Duration
    let maxDelay: Duration
    var lockRetryDelay = Duration.milliseconds(500)

    /// Notified, not yet synced.
    private(set) var projectIDs = Set<Int64>()
    /// Those of them a reconcile found out of step (and no notification named since): the reconcile is complete once
    /// they are synced.
    private(set) var drifted = Set<Int64>()
    /// Those of them the poll for new projects found (and no notification named since).
    private(set) var polled = Set<Int64>()
    /// When the first notification of the batch being gathered arrived.
    private var gatheringSince: C.Instant?
    /// Not before then (the lock was busy); nil: at once.
    private(set) var retryAt: C.Instant?
    /// Whether "the batch waits" was logged since the last batch that got the lock.
    private var lockBusyReported = false

    init(clock: C, gap: Duration, maxDelay: Duration) {
        self.clock = clock
        self.gap = gap
        self.maxDelay = maxDelay
    }

    var isEmpty: Bool { projectIDs.isEmpty }

    /// The ids to sync now, in order.
    var ids: [Int64] { projectIDs.sorted() }

    /// Adds the payloads that are project ids; returns those that are not (the caller reconciles instead, since it
    /// cannot tell which project they meant). New notifications make the batch due at once, even after a busy lock.
    mutating func add(_ payloads: [String]) -> [String] {
        var rejected: [String] = []
        for payload in payloads {
            if let id = Int64(payload.trimmingWhitespace()) {
                projectIDs.insert(id)
                drifted.remove(id)
                polled.remove(id)
            } else {
                rejected.append(payload)
            }
        }
        retryAt = nil
        return rejected
    }

    /// Projects a reconcile found out of step: synced like notified ones, in chunks, retried on a busy lock.
    mutating func addDrifted(_ ids: [Int64]) {
        for id in ids where projectIDs.insert(id).inserted { drifted.insert(id) }
    }

    /// New projects the poll found: synced like notified ones (a batch waiting for a busy lock keeps waiting). An id
    /// already pending keeps what it came from.
    mutating func addPolled(_ ids: [Int64]) {
        for id in ids where projectIDs.insert(id).inserted { polled.insert(id) }
    }

    /// Whether some of the poll's projects are still to sync (the next poll waits for them).
    var hasPolled: Bool { !polled.isEmpty }

    /// What a sync of `ids` is counted as: `reconcile` when a reconcile found them all, `poll` when the poll (or a
    /// reconcile) found them all, `notify` when a notification named one of them.
    func trigger(_ ids: [Int64]) -> String {
        if allDrifted(ids) { return "reconcile" }
        if ids.allSatisfy({ drifted.contains($0) || polled.contains($0) }) { return "poll" }
        return "notify"
    }

    /// Whether some of a reconcile's projects are still to sync.
    var hasDrift: Bool { !drifted.isEmpty }

    /// Whether every one of `ids` came from a reconcile (the sync is counted as the reconcile's).
    func allDrifted(_ ids: [Int64]) -> Bool { ids.allSatisfy(drifted.contains) }

    /// The first notifications of a batch arrived: gathering runs until a gap or the maximum delay.
    mutating func startGathering() {
        gatheringSince = clock.now
    }

    /// How long to wait for more notifications to join this batch; nil once it is `maxDelay` old (or not gathering).
    var gatheringWait: Duration? {
        guard let gatheringSince else { return nil }
        let elapsed = gatheringSince.duration(to: clock.now)
        guard elapsed < maxDelay else { return nil }
        return min(gap, maxDelay - elapsed)
    }

    /// A wait for more came back empty (a gap), or the batch is about to be synced.
    mutating func stopGathering() {
        gatheringSince = nil
    }

    /// Whether there is something to sync and no busy lock to wait for.
    var isDue: Bool {
        guard !projectIDs.isEmpty else { return false }
        return retryAt.map { clock.now >= $0 } ?? true
    }

    /// `limit`, or less when a batch waiting for the lock is due to try again before it; zero when the rest of a batch
    /// is due now (a burst synced chunk by chunk does not pause between chunks).
    func wait(atMost limit: Duration) -> Duration {
        guard !projectIDs.isEmpty else { return limit }
        guard let retryAt else { return .zero }
        return min(limit, max(.zero, clock.now.duration(to: retryAt)))
    }

    /// These ids were synced (notifications that arrived meanwhile stay).
    mutating func synced(_ ids: [Int64]) {
        projectIDs.subtract(ids)
        drifted.subtract(ids)
        polled.subtract(ids)
        retryAt = nil
        lockBusyReported = false
    }

    /// Another runner held the lock: try again shortly. Returns true the first time since a batch last got the lock,
    /// so that a long wait is reported once.
    mutating func lockBusy() -> Bool {
        retryAt = clock.now.advanced(by: lockRetryDelay)
        defer { lockBusyReported = true }
        return !lockBusyReported
    }

    /// Drops what is pending: the sync failed (the next reconcile finds these projects), or the daemon does not sync
    /// now (the reconcile that clears the problem finds them).
    mutating func discard() {
        projectIDs.removeAll()
        drifted.removeAll()
        polled.removeAll()
        retryAt = nil
    }
}
