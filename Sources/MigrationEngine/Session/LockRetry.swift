#if canImport(Glibc)
import Glibc
#endif
import Postgres
import SystemSupport

/// A session whose lock a migration statement waited for, as `pg_blocking_pids` and `pg_stat_activity` show it.
public struct LockBlocker: Sendable, Equatable, CustomStringConvertible {
    public var pid: Int32
    public var applicationName: String
    public var user: String
    public var state: String
    /// How long its transaction has been open, and since its current (or last) query started, in whole seconds.
    public var transactionSeconds: Int64?
    public var querySeconds: Int64?
    /// The first line of its current (or last) query, at most 200 characters; withheld when it mentions a password.
    public var query: String

    /// `pid 4242 (application_name app, user app, idle in transaction, transaction open 12 s, query started 11 s ago:
    /// SELECT * FROM a)`
    public var description: String {
        var parts = ["application_name \(applicationName)", "user \(user)", state]
        if let transactionSeconds { parts.append("transaction open \(transactionSeconds) s") }
        if let querySeconds { parts.append("query started \(querySeconds) s ago") }
        return "pid \(pid) (\(parts.joined(separator: ", ")): \(query))"
    }

    /// One round trip: who blocks the server process `$1`, and the locks it waits for.
    static let sql = """
        SELECT a.pid, coalesce(nullif(a.application_name, ''), '?') AS application_name,
               coalesce(a.usename::text, '?') AS usename, coalesce(a.state, '?') AS state,
               extract(epoch FROM now() - a.xact_start)::bigint AS transaction_s,
               extract(epoch FROM now() - a.query_start)::bigint AS query_s,
               left(split_part(btrim(coalesce(a.query, ''), E' \\t\\r\\n'), E'\\n', 1), 200) AS query,
               (SELECT string_agg(DISTINCT l.mode || ' on ' || CASE WHEN l.relation IS NOT NULL
                                                          THEN 'relation ' || l.relation::regclass::text
                                                          ELSE l.locktype END, ', ')
                FROM pg_locks l WHERE l.pid = $1::integer AND NOT l.granted) AS waiting_for
        FROM pg_stat_activity a
        WHERE a.pid = ANY (pg_blocking_pids($1::integer))
        ORDER BY a.xact_start NULLS LAST, a.pid
        """

    init(row: Row, redactor: Redactor) throws(RowDecodingError) {
        pid = try row.decode("pid")
        applicationName = try row.decode("application_name")
        user = try row.decode("usename")
        state = try row.decode("state")
        transactionSeconds = try row.decodeIfPresent("transaction_s")
        querySeconds = try row.decodeIfPresent("query_s")
        let query: String = try row.decode("query")
        // Another session's SQL is shown to name it, never a secret it may carry: a statement that mentions a
        // password (ALTER ROLE … PASSWORD, a connection string given to dblink) is withheld whole.
        self.query = query.lowercased().contains("password") || query.lowercased().contains("secret")
            ? "(query withheld: it mentions a password)"
            : redactor.redact(query.isEmpty ? "(no query yet)" : query)
    }

    /// The blockers as one clause for a message: `blocked by pid 1 (…); pid 2 (…)`.
    static func sentence(_ blockers: [LockBlocker], waitingFor: String?) -> String {
        let what = waitingFor.map { "waiting for \($0), " } ?? ""
        guard !blockers.isEmpty else {
            return what + "blocked by a session that was gone before migrator looked"
        }
        return what + "blocked by " + blockers.map(\.description).joined(separator: "; ")
    }
}

/// What the lock wait of one statement (or transactional file) saw.
struct LockSighting: Sendable, Equatable {
    var blockers: [LockBlocker] = []
    var waitingFor: String?
}

/// The retries of a migration whose lock was not granted: a lock timeout (SQLSTATE 55P03) or a deadlock (40P01)
/// is retried with ``Backoff/ddlLockRetry`` until ``MigratorOptions/ddlLockRetryBudget`` has passed since the first
/// try. Every other error ends the run at once.
struct LockRetry {
    let budget: Duration
    private let clock = ContinuousClock()
    private let start: ContinuousClock.Instant
    private var backoff = Backoff.ddlLockRetry
    /// Tries made so far (the first included).
    private(set) var attempts = 1
    /// The blockers of the last refusal, for the final error.
    var lastSighting = LockSighting()

    init(budget: Duration) {
        self.budget = budget
        start = clock.now
    }

    static func isLockRefusal(_ error: PostgresError) -> Bool {
        error.sqlState == SQLState.lockNotAvailable || error.sqlState == SQLState.deadlockDetected
    }

    static func sleep(_ delay: Duration) {
        let microseconds = max(1, delay.milliseconds * 1000)
        usleep(UInt32(min(microseconds, 60_000_000)))
    }

    var elapsed: Duration { clock.now - start }

    /// The delay before the next try, or nil when `error` is not a lock refusal or the budget is spent.
    mutating func delay(after error: PostgresError, connected: Bool, stopRequested: Bool) -> Duration? {
        guard Self.isLockRefusal(error), connected, !stopRequested, budget > .zero else { return nil }
        let left = budget - elapsed
        guard left > .zero else { return nil }
        let next = backoff.next()
        attempts += 1
        return next < left ? next : left
    }

    /// The note of the error that ends the retries.
    func finalNote(ddlLockTimeout: Duration) -> String {
        let tries = attempts == 1 ? "1 try" : "\(attempts) tries over \(AdvisoryLock.format(elapsed))"
        return "the lock was not granted in \(tries) (each try waits --ddl-lock-timeout, "
            + "\(AdvisoryLock.format(ddlLockTimeout)); tries go on for --ddl-lock-retries, \(AdvisoryLock.format(budget))); "
            + LockBlocker.sentence(lastSighting.blockers, waitingFor: lastSighting.waitingFor)
    }
}

extension Backoff {
    /// Retrying a migration whose lock was not granted: 0.5 s doubling to 8 s, ± 50 %, so that the application's
    /// queries queued behind each try get through between two tries, and replicas retrying together drift apart.
    public static let ddlLockRetry = Backoff(initial: .milliseconds(500), maximum: .seconds(8), jitter: 0.5)
}
