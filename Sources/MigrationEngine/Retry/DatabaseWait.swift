import Logging
import Postgres

/// Waiting until the database accepts connections, for `migrator wait` and `serve`'s start: only errors that waiting
/// can cure (the server is starting, unreachable, refusing for now) are retried, with ``Backoff/databaseWait``, until
/// the deadline; a wrong password or an unknown database fails at once.
public struct DatabaseWait {
    /// How long `wait` and `serve`'s start wait when not told (`--timeout`, `--wait-timeout`, MIGRATOR_WAIT_TIMEOUT).
    public static let defaultTimeout = Duration.seconds(60)

    public var connection: ConnectionConfig
    public var timeout: Duration
    public var backoff = Backoff.databaseWait
    public var logger: Logger
    /// Asked before each attempt: true ends the wait (`serve` stopping).
    public var stopRequested: () -> Bool = { false }
    /// Sleeps between attempts; `serve` passes one that wakes early on a stop request.
    public var sleep: (Duration) -> Void
    /// Told of every failed attempt (`serve` shows the last error on `/readyz`).
    public var onFailure: (PostgresError) -> Void = { _ in }

    public init(connection: ConnectionConfig, timeout: Duration, logger: Logger, sleep: @escaping (Duration) -> Void) {
        self.connection = connection
        self.timeout = timeout
        self.logger = logger
        self.sleep = sleep
    }

    /// The first connection the database accepted, and after how many attempts; nil when asked to stop meanwhile.
    /// - Throws: ``MigrationError`` `.connectionFailed` for an error waiting will not cure, or at the deadline.
    public func run() throws(MigrationError) -> (connection: Connection, attempts: Int)? {
        let clock = ContinuousClock()
        let start = clock.now
        var backoff = backoff
        var attempt = 0
        while !stopRequested() {
            attempt += 1
            do {
                let opened = try Connection(config: connection, logger: logger)
                logger.info("database reachable", metadata: ["db": "\(opened.safeDescription)", "wait.attempts": "\(attempt)"])
                return (opened, attempt)
            } catch {
                onFailure(error)
                guard error.isTransient else {
                    throw MigrationError(
                        code: .connectionFailed,
                        message: "cannot connect to the database, and waiting will not help: \(error.message)",
                        hint: error.hint
                    )
                }
                let elapsed = clock.now - start
                guard elapsed < timeout else {
                    throw MigrationError(
                        code: .connectionFailed,
                        message: "the database did not accept connections within \(timeout.components.seconds) s: \(error.message)"
                    )
                }
                logger.info("database not reachable yet; retrying", metadata: ["db.error": "\(error.message)", "wait.attempts": "\(attempt)"])
                let delay = backoff.next()
                sleep(min(delay, timeout - elapsed))
            }
        }
        return nil
    }
}
