/// When the next reconcile is due: at once on a new session and after a notification without a project id, then
/// every `interval`. ``start()`` is called before the reconcile runs, so that a failing one is retried at the
/// interval, not in a loop.
///
/// A value with the clock passed in, so that its tests advance time instead of sleeping.
struct ReconcileSchedule<C: Clock<Duration>> {
    let clock: C
    let interval: Duration
    private(set) var nextDue: C.Instant

    /// Due at once.
    init(clock: C, interval: Duration) {
        self.clock = clock
        self.interval = interval
        nextDue = clock.now
    }

    var isDue: Bool { clock.now >= nextDue }

    /// How long until it is due (zero when it is).
    var timeUntilDue: Duration { max(.zero, clock.now.duration(to: nextDue)) }

    /// A reconcile starts now: the next one is due an interval from now, whatever this one's outcome.
    mutating func start() {
        nextDue = clock.now.advanced(by: interval)
    }

    /// The reconcile's sync found the lock busy: try again after `delay` (instead of a whole interval later).
    mutating func due(after delay: Duration) {
        nextDue = min(nextDue, clock.now.advanced(by: delay))
    }

    /// Something may have been missed (a new session, a payload that names no project): reconcile at the next turn.
    mutating func dueNow() {
        nextDue = clock.now
    }
}
