import FoundationEssentials
#if canImport(Glibc)
import Glibc
#endif
import Logging
import Postgres
import SystemSupport

/// The session advisory lock that serialises runners on one database.
///
/// It is taken by polling `pg_try_advisory_lock` with single autocommit statements: a waiter never sits inside a
/// transaction or holds a snapshot, so a `CREATE INDEX CONCURRENTLY` running in the holder's migration (which waits
/// for every older snapshot to end) cannot deadlock on a waiter.
enum AdvisoryLock {
    // The key comes from ``OwnSchema/lockKey``. pg_locks shows it as classid = high 32 bits, objid = low 32 bits.

    static let tryLockSQL = "SELECT pg_try_advisory_lock($1::bigint) AS locked"

    static let holderSQL = """
        SELECT a.pid, coalesce(nullif(a.application_name, ''), '?') AS application_name,
               coalesce(a.usename::text, '?') AS usename,
               to_char(a.backend_start AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"') AS connected_since,
               extract(epoch FROM now() - coalesce(a.xact_start, a.backend_start))::bigint AS busy_s,
               a.state
        FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
        WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1
          AND l.classid = $1::bigint::oid AND l.objid = $2::bigint::oid
          AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
        LIMIT 1
        """

    /// Who holds the lock, as a sentence, or nil when nobody does (or it cannot be seen).
    static func holder(_ connection: Connection, key: Int64) -> String? {
        let high = (key >> 32) & 0xFFFF_FFFF
        let low = key & 0xFFFF_FFFF
        guard let row = try? connection.query(holderSQL, [high, low]).first else { return nil }
        func field(_ name: String) -> String { ((try? row.text(name)) ?? nil) ?? "?" }
        return "pid \(field("pid")) (application_name \(field("application_name")), "
            + "user \(field("usename")), connected since \(field("connected_since")), "
            + "\(field("state")) for \(field("busy_s")) s)"
    }

    /// Polls until the lock is held or the deadline passes; returns how long it waited.
    /// - Parameter alreadyTried: the result of a first attempt made in the session set-up query.
    static func acquire(
        _ connection: Connection, key: Int64, alreadyTried firstAttempt: Bool, timeout: Duration, reportEvery: Duration,
        logger: Logger, stopRequested: @Sendable () -> Bool = { false }
    ) throws(MigrationError) -> Duration {
        let clock = ContinuousClock()
        let start = clock.now
        if firstAttempt { return .zero }
        var lastReport = start
        var backoff = Backoff.lockPoll
        var reported = false
        while true {
            let elapsed = clock.now - start
            if stopRequested() {
                throw MigrationError(
                    code: .stopped, message: "stopped on request while waiting for the migration lock (\(format(elapsed)))"
                )
            }
            if elapsed >= timeout {
                let holder = holder(connection, key: key) ?? "another session (it could not be identified)"
                throw MigrationError(
                    code: .lockTimeout,
                    message: "gave up waiting for the migration lock after \(format(elapsed)); it is held by " + holder,
                    hint: "wait for that run to finish, or raise --lock-timeout (MIGRATOR_LOCK_TIMEOUT)"
                )
            }
            if !reported || clock.now - lastReport >= reportEvery {
                var metadata: Logger.Metadata = ["lock.waited_s": "\(Int(elapsed.seconds))"]
                if let holder = holder(connection, key: key) { metadata["lock.holder"] = .string(holder) }
                logger.info("waiting for the migration lock", metadata: metadata)
                lastReport = clock.now
                reported = true
            }
            // Jitter spreads many waiting replicas apart (see Backoff.lockPoll).
            let sleepMs = min(backoff.next().milliseconds, (timeout - elapsed).milliseconds)
            usleep(UInt32(max(1, sleepMs) * 1000))
            if try tryLock(connection, key: key) { return clock.now - start }
        }
    }

    /// One try for the lock.
    static func tryLock(_ connection: Connection, key: Int64) throws(MigrationError) -> Bool {
        do {
            return try connection.query(tryLockSQL, [key]).from("pg_try_advisory_lock").first?.decode("locked", as: Bool.self) == true
        } catch let error as PostgresError {
            throw MigrationError(
                code: error.code == .connectionLost ? .connectionFailed : .databaseError,
                message: "the connection failed while waiting for the migration lock: \(error)"
            )
        } catch {
            throw MigrationError(code: .databaseError, message: "could not try for the migration lock: \(error)")
        }
    }

    static func release(_ connection: Connection, key: Int64, logger: Logger) {
        do {
            try connection.query("SELECT pg_advisory_unlock($1::bigint)", [key])
        } catch {
            // The server frees a session lock when the connection closes, which follows right after.
            logger.debug("could not release the migration lock explicitly", metadata: ["db.error": "\(error.message)"])
        }
    }

    static func format(_ duration: Duration) -> String {
        TextFormat.fixed(duration.seconds, 1) + " s"
    }
}
