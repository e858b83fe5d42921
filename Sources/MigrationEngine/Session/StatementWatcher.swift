import Dispatch
import Logging
import Postgres
import Synchronization
import SystemSupport

/// Watches the migration statement that runs on the session's connection, from a second connection of its own on a
/// thread of its own (the session's thread is inside libpq until the statement ends): who blocks it while it waits
/// for a lock (`pg_blocking_pids`), and, once it has run ``MigratorOptions/progressEvery``, its progress from
/// PostgreSQL's progress views, logged and handed to ``MigratorOptions/activity`` every as long.
///
/// It is opened when a run has something to apply, and closed when the run ends. When it cannot connect, the
/// migrations run as they would without it (a warning says what is missing).
final class StatementWatcher: Sendable {
    private struct Watch: Sendable {
        var pid: Int32
        var label: String
        var started: ContinuousClock.Instant
        var logger: Logger
        var generation: Int
    }

    private struct State: Sendable {
        var watch: Watch?
        var generation = 0
        var sighting = LockSighting()
        var stopped = false
        var connected = false
    }

    private let state = Mutex(State())
    private let wakeUp = DispatchSemaphore(value: 0)
    private let finished = DispatchSemaphore(value: 0)
    /// How often the watched statement is looked at.
    private let tick: Duration
    private let progressEvery: Duration
    private let activity: @Sendable (String?) -> Void

    init(config: ConnectionConfig, options: MigratorOptions, logger: Logger) {
        // Often enough to see a blocker within any lock timeout worth setting, rarely enough to cost nothing.
        let lockTimeout = options.ddlLockTimeout
        tick = lockTimeout > .zero && lockTimeout / 5 < .milliseconds(200)
            ? max(lockTimeout / 5, .milliseconds(10)) : .milliseconds(200)
        progressEvery = options.progressEvery
        activity = options.activity
        var named = config
        named.applicationName = config.applicationName + " (watcher)"
        let watcherConfig = named
        let queue = DispatchQueue(label: "migrator.statement-watcher")
        queue.async { [self] in
            defer { finished.signal() }
            let connection: Connection
            do throws(PostgresError) {
                connection = try Connection(config: watcherConfig, logger: logger)
                // Its own queries must never wait: a catalogue lock taken by the migration would hold them.
                try connection.query("SELECT set_config('lock_timeout', '500', false), set_config('statement_timeout', '5000', false)")
            } catch {
                logger.warning("could not open the second connection that watches migrations; who blocks a migration and its progress will not be reported", metadata: ["db.error": "\(error.message)"])
                return
            }
            state.withLock { $0.connected = true }
            run(on: connection)
        }
    }

    /// Stops the thread and closes its connection.
    func close() {
        state.withLock { $0.stopped = true; $0.watch = nil }
        wakeUp.signal()
        finished.wait()
        activity(nil)
    }

    /// Watches the server process `pid` from now until ``end()``.
    func begin(pid: Int32, label: String, logger: Logger) {
        state.withLock {
            $0.generation += 1
            $0.watch = Watch(pid: pid, label: label, started: ContinuousClock().now, logger: logger, generation: $0.generation)
            $0.sighting = LockSighting()
        }
        wakeUp.signal()
    }

    /// Stops watching; what the lock wait saw since ``begin(pid:label:logger:)``.
    @discardableResult
    func end() -> LockSighting {
        let sighting = state.withLock { state -> LockSighting in
            state.watch = nil
            return state.sighting
        }
        activity(nil)
        return sighting
    }

    private func run(on connection: Connection) {
        let clock = ContinuousClock()
        var lastProgress: (generation: Int, at: ContinuousClock.Instant)?
        let blockersSQL = LockBlocker.sql
        let progressSQL = StatementProgress.sql(serverVersion: connection.serverVersion)
        while true {
            let (watch, stopped) = state.withLock { ($0.watch, $0.stopped) }
            if stopped { return }
            if let watch {
                do {
                    let rows = try connection.query(blockersSQL, [watch.pid])
                    var blockers: [LockBlocker] = []
                    for row in rows.rows { if let blocker = try? LockBlocker(row: row, redactor: connection.redactor) { blockers.append(blocker) } }
                    let waitingFor = rows.first.flatMap { (try? $0.text("waiting_for")) ?? nil }
                    if !blockers.isEmpty {
                        state.withLock {
                            if $0.generation == watch.generation { $0.sighting = LockSighting(blockers: blockers, waitingFor: waitingFor) }
                        }
                    }
                    let now = clock.now
                    let due = lastProgress.map { $0.generation != watch.generation || now - $0.at >= progressEvery } ?? true
                    if progressEvery > .zero, now - watch.started >= progressEvery, due {
                        lastProgress = (watch.generation, now)
                        let progress = try connection.query(progressSQL, [watch.pid]).first.flatMap { try? StatementProgress(row: $0) }
                        report(progress, watch: watch, elapsed: now - watch.started, blockers: blockers, waitingFor: waitingFor)
                    }
                } catch {
                    if !connection.isConnected {
                        watch.logger.warning("the connection that watches migrations was lost; their progress is no longer reported", metadata: ["db.error": "\(error.message)"])
                        return
                    }
                }
            }
            let nanoseconds = UInt64(max(0, tick.seconds) * 1e9)
            _ = wakeUp.wait(timeout: .now() + .nanoseconds(Int(nanoseconds)))
        }
    }

    private func report(
        _ progress: StatementProgress?, watch: Watch, elapsed: Duration, blockers: [LockBlocker], waitingFor: String?
    ) {
        var metadata: Logger.Metadata = ["statement.elapsed_s": "\(Int(elapsed.seconds))"]
        var text = "\(watch.label) running for \(Int(elapsed.seconds)) s"
        if let progress {
            text += ": " + progress.description
            metadata["progress.command"] = "\(progress.command)"
            metadata["progress.phase"] = "\(progress.phase)"
            if let percent = progress.percent { metadata["progress.percent"] = "\(TextFormat.fixed(percent, 1))" }
            if let done = progress.done { metadata["progress.done"] = "\(done.count) \(done.unit)" }
            if let total = progress.total { metadata["progress.total"] = "\(total.count) \(total.unit)" }
        } else if !blockers.isEmpty {
            text += ": " + LockBlocker.sentence(blockers, waitingFor: waitingFor)
            metadata["lock.blockers"] = "\(blockers.map(\.description).joined(separator: "; "))"
        } else {
            text += " (PostgreSQL reports no progress for this kind of statement)"
        }
        metadata["statement.progress"] = "\(text)"
        watch.logger.info("statement progress", metadata: metadata)
        activity(text)
    }
}

/// One row of PostgreSQL's progress views for a server process: what the command is, its phase, and how far it is.
struct StatementProgress: Sendable, Equatable, CustomStringConvertible {
    var command: String
    var phase: String
    var done: (count: Int64, unit: String)?
    var total: (count: Int64, unit: String)?

    static func == (lhs: Self, rhs: Self) -> Bool {
        lhs.command == rhs.command && lhs.phase == rhs.phase && lhs.done?.count == rhs.done?.count
            && lhs.total?.count == rhs.total?.count
    }

    var percent: Double? {
        guard let done, let total, total.count > 0 else { return nil }
        return min(100, Double(done.count) * 100 / Double(total.count))
    }

    /// `CREATE INDEX, building index: scanning table, 45.1% (1200 of 2661 blocks)`
    var description: String {
        var text = "\(command), \(phase)"
        if let done, let total, total.count > 0, let percent {
            text += ", \(TextFormat.fixed(percent, 1))% (\(done.count) of \(total.count) \(done.unit))"
        } else if let done {
            text += ", \(done.count) \(done.unit) done"
        }
        return text
    }

    init(row: Row) throws(RowDecodingError) {
        command = try row.decode("command")
        phase = try row.decode("phase")
        let blocksTotal: Int64? = try row.decodeIfPresent("blocks_total")
        let blocksDone: Int64? = try row.decodeIfPresent("blocks_done")
        let tuplesTotal: Int64? = try row.decodeIfPresent("tuples_total")
        let tuplesDone: Int64? = try row.decodeIfPresent("tuples_done")
        let bytesTotal: Int64? = try row.decodeIfPresent("bytes_total")
        let bytesDone: Int64? = try row.decodeIfPresent("bytes_done")
        // Blocks where the phase counts them, else tuples, else bytes (COPY).
        if let blocksTotal, blocksTotal > 0, let blocksDone {
            done = (blocksDone, "blocks")
            total = (blocksTotal, "blocks")
        } else if let tuplesTotal, tuplesTotal > 0, let tuplesDone {
            done = (tuplesDone, "tuples")
            total = (tuplesTotal, "tuples")
        } else if let bytesTotal, bytesTotal > 0, let bytesDone {
            done = (bytesDone, "bytes")
            total = (bytesTotal, "bytes")
        } else if let tuplesDone, tuplesDone > 0 {
            done = (tuplesDone, "tuples")
        } else if let bytesDone, bytesDone > 0 {
            done = (bytesDone, "bytes")
        }
    }

    /// Every progress view the server has, for the process `$1`, in one shape.
    static func sql(serverVersion: Int) -> String {
        var parts = [
            """
            SELECT command, phase, blocks_done, blocks_total, tuples_done, tuples_total, NULL::bigint AS bytes_done,
                   NULL::bigint AS bytes_total
            FROM pg_stat_progress_create_index WHERE pid = $1::integer
            """,
            """
            SELECT command, phase, heap_blks_scanned, heap_blks_total, heap_tuples_written, NULL, NULL, NULL
            FROM pg_stat_progress_cluster WHERE pid = $1::integer
            """,
            """
            SELECT 'VACUUM', phase, heap_blks_scanned, heap_blks_total, NULL, NULL, NULL, NULL
            FROM pg_stat_progress_vacuum WHERE pid = $1::integer
            """,
        ]
        if serverVersion >= 130000 {
            parts.append(
                """
                SELECT 'ANALYZE', phase, sample_blks_scanned, sample_blks_total, NULL, NULL, NULL, NULL
                FROM pg_stat_progress_analyze WHERE pid = $1::integer
                """
            )
        }
        if serverVersion >= 140000 {
            parts.append(
                """
                SELECT command, type, NULL, NULL, tuples_processed, NULL, bytes_processed, bytes_total
                FROM pg_stat_progress_copy WHERE pid = $1::integer
                """
            )
        }
        return parts.joined(separator: "\nUNION ALL\n") + "\nLIMIT 1"
    }
}
