@testable import Daemon
import MigrationEngine
import Postgres
import RoleSync
import Testing

@Suite("ErrorClass.classify: reconnect, report, stop, lock busy or fail")
struct ErrorClassTests {
    struct Case: Sendable, CustomTestStringConvertible {
        var error: any Error & Sendable
        var work: ErrorClass.Work
        var connected: Bool
        var expected: ErrorClass
        var testDescription: String { "\(work), connected \(connected): \(expected)" }
    }

    static let stopped = MigrationError(code: .stopped, message: "stopped on request while waiting for the migration lock")
    static let lockTimeout = MigrationError(code: .lockTimeout, message: "another runner held the lock")
    static let statementFailed = RoleSyncError(
        phase: "create groups", error: PostgresError(code: .queryFailed, message: "duplicate key", sqlState: "23505")
    )
    static let rowLockRefused = RoleSyncError(
        phase: "rename groups", error: PostgresError(code: .queryFailed, message: "canceling statement due to lock timeout", sqlState: "55P03")
    )
    static let deadlock = RoleSyncError(
        phase: "remove permissions", error: PostgresError(code: .queryFailed, message: "deadlock detected", sqlState: "40P01")
    )
    static let lost = PostgresError(code: .connectionLost, message: "server closed the connection unexpectedly")

    static let cases: [Case] = [
        // A stop request wins everywhere, connected or not.
        Case(error: stopped, work: .startUp, connected: false, expected: .stop),
        Case(error: stopped, work: .connecting, connected: false, expected: .stop),
        Case(error: stopped, work: .reconcile, connected: true, expected: .stop),
        Case(error: stopped, work: .batch, connected: true, expected: .stop),
        Case(error: stopped, work: .batch, connected: false, expected: .stop),
        // The start-up's errors end the daemon.
        Case(error: MigrationError(code: .migrationFailed, message: "0009 failed"), work: .startUp, connected: true, expected: .fail),
        Case(error: MigrationError(code: .connectionFailed, message: "refused"), work: .startUp, connected: false, expected: .fail),
        // Opening a session: every failure is retried from a new connection.
        Case(error: MigrationError(code: .connectionFailed, message: "refused"), work: .connecting, connected: false, expected: .reconnect),
        Case(error: statementFailed, work: .connecting, connected: true, expected: .reconnect),
        // On an open session: the connection's state decides.
        Case(error: lost, work: .listening, connected: false, expected: .reconnect),
        Case(error: statementFailed, work: .reconcile, connected: false, expected: .reconnect),
        Case(error: statementFailed, work: .reconcile, connected: true, expected: .report),
        Case(error: statementFailed, work: .batch, connected: true, expected: .report),
        Case(error: PostgresError(code: .queryFailed, message: "x"), work: .listening, connected: true, expected: .report),
        // A busy lock is waited for and retried, by a batch and by a reconcile alike: another runner is not a problem.
        Case(error: lockTimeout, work: .batch, connected: true, expected: .lockBusy),
        Case(error: lockTimeout, work: .reconcile, connected: true, expected: .lockBusy),
        Case(error: lockTimeout, work: .batch, connected: false, expected: .reconnect),
        // An app's row lock held past lock_timeout, or a deadlock: the sync rolled back and is tried again shortly.
        Case(error: rowLockRefused, work: .reconcile, connected: true, expected: .lockBusy),
        Case(error: rowLockRefused, work: .batch, connected: true, expected: .lockBusy),
        Case(error: deadlock, work: .batch, connected: true, expected: .lockBusy),
        Case(error: rowLockRefused, work: .listening, connected: true, expected: .report),
        Case(error: rowLockRefused, work: .batch, connected: false, expected: .reconnect),
    ]

    @Test("each error, by the work it interrupted and the connection's state", arguments: cases)
    func classify(_ item: Case) {
        #expect(ErrorClass.classify(item.error, during: item.work, connected: item.connected) == item.expected)
    }
}
