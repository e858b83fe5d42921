/// The delays of a retry loop: `initial`, then each one `factor` times the last, never above `maximum`, each spread
/// by ± `jitter` (a fraction) so that many replicas retrying together drift apart. One value type for every loop:
/// the lock poll, the wait for the database, the daemon's reconnect.
public struct Backoff: Sendable, Equatable {
    public let initial: Duration
    public let factor: Double
    public let maximum: Duration
    public let jitter: Double
    /// The delay the next call to ``next(random:)`` is based on.
    public private(set) var current: Duration

    public init(initial: Duration, factor: Double = 2, maximum: Duration, jitter: Double = 0) {
        precondition(initial > .zero && factor >= 1 && maximum >= initial && (0...1).contains(jitter), "a backoff grows from a positive delay")
        self.initial = initial
        self.factor = factor
        self.maximum = maximum
        self.jitter = jitter
        current = initial
    }

    /// `wait` and `serve` waiting for the database: 0.25 s doubling to 2 s.
    public static let databaseWait = Backoff(initial: .milliseconds(250), maximum: .seconds(2))
    /// `serve` reconnecting after a lost connection: 0.25 s doubling to 5 s.
    public static let reconnect = Backoff(initial: .milliseconds(250), maximum: .seconds(5))
    /// Polling for another runner's advisory lock: 50 ms growing by half to 1 s, ± 50 %; the cap keeps a freed lock
    /// from sitting idle for long.
    public static let lockPoll = Backoff(initial: .milliseconds(50), factor: 1.5, maximum: .seconds(1), jitter: 0.5)

    /// The delay to wait now; the one after it grows. `random` draws from the range it is given (tests pass a fixed one).
    public mutating func next(random: (ClosedRange<Double>) -> Double = { Double.random(in: $0) }) -> Duration {
        let base = current
        let grown = base * factor
        current = grown > maximum ? maximum : grown
        guard jitter > 0 else { return base }
        return base * random((1 - jitter)...(1 + jitter))
    }

    /// Back to the first delay (after a success).
    public mutating func reset() {
        current = initial
    }
}
