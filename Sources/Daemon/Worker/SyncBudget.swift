/// How many projects the daemon syncs in one transaction: at most `maxSize`, and as many as fit in `timeBudget` at
/// the rate the last transaction showed. Every transaction takes the migration lock and releases it at commit, so a
/// burst (a COPY of 10,000 projects) becomes a series of short transactions between which another runner can get the
/// lock, instead of one that holds it for a minute; and a server that writes quickly still gets full batches.
///
/// The time is measured from the lock being held to the commit, so a wait for another runner does not shrink the
/// batches. A value with the clock passed in, so that its tests advance time instead of syncing.
struct SyncBudget<C: Clock<Duration>> {
    let clock: C
    let maxSize: Int
    let timeBudget: Duration
    /// The size of the next transaction.
    private(set) var size: Int
    private var startedAt: C.Instant?

    init(clock: C, maxSize: Int, timeBudget: Duration) {
        precondition(maxSize > 0 && timeBudget > .zero, "a sync batch holds at least one project, in a positive time")
        self.clock = clock
        self.maxSize = maxSize
        self.timeBudget = timeBudget
        size = maxSize
    }

    /// The first ``size`` of `ids`, which are to be synced in order: the next transaction's projects.
    func chunk(_ ids: [Int64]) -> [Int64] { Array(ids.prefix(size)) }

    /// The lock is held and the transaction starts.
    mutating func started() {
        startedAt = clock.now
    }

    /// The transaction of `projects` committed: over the budget, the next one gets as many projects as would have
    /// fit (at least one); well under it (half), after a full batch, it doubles back towards `maxSize`.
    mutating func finished(projects: Int) {
        guard let startedAt else { return }
        self.startedAt = nil
        let took = startedAt.duration(to: clock.now)
        guard projects > 0 else { return }
        if took > timeBudget {
            let fitting = Int((Double(projects) * (timeBudget / took)).rounded(.down))
            size = max(1, min(size, fitting))
        } else if took * 2 <= timeBudget, projects >= size {
            size = min(maxSize, size * 2)
        }
    }

    /// The transaction failed or was not started: nothing learnt.
    mutating func abandoned() {
        startedAt = nil
    }
}
