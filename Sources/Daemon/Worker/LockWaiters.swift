import Postgres

/// Whether another runner waits for the migration lock, and whether one took it: how the daemon lets a deploy go
/// first between two of its batches.
///
/// Waiters poll `pg_try_advisory_lock` with autocommit statements and sleep in between (at most 1.5 s, see
/// `Backoff.lockPoll`), so they are not in `pg_locks`; what shows them is `pg_stat_activity`: an idle session of this
/// database whose last statement was that poll. The daemon's own transactions are short, but it releases the lock
/// only for an instant between two of them, which a poller would hardly ever hit: seeing a waiter, it pauses until
/// the waiter holds the lock (or a poll interval and a margin have passed). Another user's sessions show their
/// statements only to a member of `pg_read_all_stats`; without it a waiter is not seen and gets the lock when the
/// burst is over (each transaction is still bounded).
enum LockWaiters {
    static let sql = """
        SELECT EXISTS (
                   SELECT 1 FROM pg_stat_activity
                   WHERE datname = current_database() AND pid <> pg_backend_pid() AND state = 'idle'
                     AND query LIKE 'SELECT pg_try_advisory_lock(%'
               ) AS waiting,
               EXISTS (
                   SELECT 1 FROM pg_locks
                   WHERE locktype = 'advisory' AND granted AND objsubid = 1 AND pid <> pg_backend_pid()
                     AND classid = $1::bigint::oid AND objid = $2::bigint::oid
                     AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
               ) AS taken
        """

    struct Seen: Equatable {
        /// A session polls for a lock.
        var waiting: Bool
        /// Another session holds the migration lock.
        var taken: Bool
    }

    static func look(_ connection: Connection, key: Int64) throws -> Seen {
        let high = (key >> 32) & 0xFFFF_FFFF
        let low = key & 0xFFFF_FFFF
        let row = try connection.query(sql, [high, low]).from("pg_stat_activity").first
        return Seen(waiting: try row?.decode("waiting") ?? false, taken: try row?.decode("taken") ?? false)
    }
}
