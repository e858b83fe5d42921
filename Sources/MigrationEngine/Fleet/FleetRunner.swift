import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// What became of one target: the small record a fleet run keeps of each (memory grows by this much a target, not
/// by its report or log).
public struct FleetOutcome: Sendable {
    public enum State: String, Sendable, Codable {
        /// Work was done (migrations applied, roles synced).
        case applied
        /// Nothing to do, or (status, verify) read and found clean.
        case upToDate
        /// `status`: read, and something is pending, changed, missing or failed (not a failure of the run).
        case pending
        case failed
        /// Not run: a canary failed, or `--fail-fast` stopped the run first.
        case skipped
    }

    public var state: State
    /// The command's exit code for this target alone (0 unless failed).
    public var exitCode: Int32
    /// One line: what happened (`2 migrations applied in 31 ms`), or the error's summary.
    public var summary: String
    public var durationMs: Double
    /// Time until the session was set up (connection and set-up query), part of ``durationMs``.
    public var connectMs: Double

    public init(state: State, exitCode: Int32, summary: String, durationMs: Double = 0, connectMs: Double = 0) {
        self.state = state
        self.exitCode = exitCode
        self.summary = summary
        self.durationMs = durationMs
        self.connectMs = connectMs
    }
}

/// Runs one job on each target, at most `parallel` at a time, each on a thread of its own (libpq blocks), each
/// target on a session of its own. A failure stops nothing unless `failFast`; with `canary` K the first K targets
/// run first, and if one of them fails the rest are skipped.
public struct FleetRunner: Sendable {
    public var parallel: Int
    public var failFast: Bool
    public var canary: Int

    public init(parallel: Int, failFast: Bool = false, canary: Int = 0) {
        precondition(parallel > 0)
        self.parallel = parallel
        self.failFast = failFast
        self.canary = canary
    }

    /// Counts per state, and the targets that failed (by index), which is all a run keeps.
    public struct Summary: Sendable {
        public var counts: [FleetOutcome.State: Int] = [:]
        public var failed: [(index: Int, exitCode: Int32)] = []
        /// Whether the canaries failed, so that the rest was skipped.
        public var canaryStopped = false
        public var connectMs = 0.0
        public var durationMs = 0.0

        public func count(_ state: FleetOutcome.State) -> Int { counts[state, default: 0] }
    }

    /// - Parameters:
    ///   - count: how many targets; `work(i)` runs the job on target `i`.
    ///   - finished: called with each outcome as it comes (skipped ones too), one call at a time, in finishing order.
    public func run(
        count: Int, work: @escaping @Sendable (Int) -> FleetOutcome,
        finished: @escaping @Sendable (Int, FleetOutcome) -> Void
    ) -> Summary {
        let state = Box()
        let report: @Sendable (Int, FleetOutcome) -> Void = { index, outcome in
            state.mutex.withLock { shared in
                shared.summary.counts[outcome.state, default: 0] += 1
                shared.summary.connectMs += outcome.connectMs
                shared.summary.durationMs += outcome.durationMs
                if outcome.state == .failed {
                    shared.summary.failed.append((index, outcome.exitCode))
                    if failFast { shared.stopped = true }
                }
                finished(index, outcome)
            }
        }
        let canaries = min(canary, count)
        runPhase(0..<canaries, state: state, work: work, report: report)
        if canaries > 0, state.mutex.withLock({ !$0.summary.failed.isEmpty }) {
            state.mutex.withLock { $0.summary.canaryStopped = true; $0.stopped = true }
        }
        runPhase(canaries..<count, state: state, work: work, report: report)
        return state.mutex.withLock { $0.summary }
    }

    /// The run's shared state, shared by reference between the threads.
    private final class Box: Sendable {
        let mutex = Mutex(Shared())
    }

    private struct Shared: Sendable {
        var next = 0
        var stopped = false
        var summary = Summary()
    }

    private func runPhase(
        _ range: Range<Int>, state: Box, work: @escaping @Sendable (Int) -> FleetOutcome,
        report: @escaping @Sendable (Int, FleetOutcome) -> Void
    ) {
        guard !range.isEmpty else { return }
        state.mutex.withLock { $0.next = range.lowerBound }
        let upper = range.upperBound
        let loop: @Sendable () -> Void = {
            while true {
                let taken = state.mutex.withLock { shared -> (index: Int, skip: Bool)? in
                    guard shared.next < upper else { return nil }
                    defer { shared.next += 1 }
                    return (shared.next, shared.stopped)
                }
                guard let taken else { return }
                if taken.skip {
                    report(taken.index, FleetOutcome(state: .skipped, exitCode: 0, summary: "skipped"))
                } else {
                    report(taken.index, work(taken.index))
                }
            }
        }
        Threads.run(min(parallel, range.count), loop)
    }
}

/// Plain threads for blocking work (libpq), joined before returning: no cooperative pool is started for a CLI run.
enum Threads {
    private final class Body: Sendable {
        let run: @Sendable () -> Void
        init(_ run: @escaping @Sendable () -> Void) { self.run = run }
    }

    static func run(_ count: Int, _ body: @escaping @Sendable () -> Void) {
        if count <= 1 {
            body()
            return
        }
        var threads: [pthread_t] = []
        for _ in 0..<count {
            let box = Unmanaged.passRetained(Body(body)).toOpaque()
            var thread = pthread_t()
            let created = pthread_create(&thread, nil, { raw in
                guard let raw else { return nil }
                Unmanaged<Body>.fromOpaque(raw).takeRetainedValue().run()
                return nil
            }, box)
            if created == 0 {
                threads.append(thread)
            } else {
                // No thread to be had: this one does the work (the others, if any, share it).
                Unmanaged<Body>.fromOpaque(box).release()
                body()
            }
        }
        for thread in threads { pthread_join(thread, nil) }
    }
}
