import MigrationEngine
import Postgres

/// What an error means to the worker, decided in one place (``classify(_:during:connected:)``) for every catch
/// site, so that "reconnect or report" is not decided differently in three places.
enum ErrorClass: Equatable, Sendable {
    /// The connection is gone: drop the session, reconnect with backoff, reconcile on the new one.
    case reconnect
    /// A statement failed and the session is fine: log it, count it, and let the next reconcile retry.
    case report
    /// A stop was requested (SIGTERM while waiting for another runner's lock): nothing was started; stop.
    case stop
    /// A batch or a reconcile's sync found another runner holding the lock past its wait: try again shortly,
    /// reported once. Never a readiness problem: the other runner is doing its legitimate work.
    case lockBusy
    /// The start-up failed (the database never became reachable, a migration failed): the daemon ends with it.
    case fail

    /// The part of its work the worker was doing when the error came.
    enum Work: Sendable {
        /// Waiting for the database, the start-up migrate.
        case startUp
        /// Opening a session: connect, set up, LISTEN.
        case connecting
        /// Waiting for notifications on an open session.
        case listening
        case reconcile
        /// Polling for new projects (one read-only statement).
        case poll
        /// Syncing a batch of notified projects.
        case batch
    }

    /// - Parameters:
    ///   - connected: whether the worker's session is still connected after the error. The connection's own state
    ///     is the test of a lost connection: an error from deep inside a sync may wrap the server's message in
    ///     another error, but a broken socket always shows there.
    static func classify(_ error: any Error, during work: Work, connected: Bool) -> ErrorClass {
        let code = (error as? MigrationError)?.code
        if code == .stopped { return .stop }
        switch work {
        case .startUp: return .fail
        // No session yet: whatever failed, the next attempt starts from a new connection.
        case .connecting: return .reconnect
        case .listening, .reconcile, .poll, .batch: break
        }
        guard connected else { return .reconnect }
        if work == .batch || work == .reconcile, code == .lockTimeout { return .lockBusy }
        // A row lock of the app's held past the session's lock_timeout (or a deadlock the server broke): the sync
        // was rolled back whole; like a busy migration lock it is tried again shortly, not a readiness problem.
        if work == .batch || work == .reconcile,
           let server = (error as? any HookServerFailure)?.rolledBackServerError,
           [SQLState.lockNotAvailable, SQLState.deadlockDetected].contains(server.sqlState ?? "") {
            return .lockBusy
        }
        return .report
    }
}
