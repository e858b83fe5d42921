import FoundationEssentials
import Logging
import Postgres
import SystemSupport

/// Applies the migrations in a folder to one database, then runs the post-migrate hooks, under the advisory lock.
public struct Migrator: Sendable {
    public var connection: ConnectionConfig
    public var options: MigratorOptions
    public var hooks: [any PostMigrateHook]
    public var logger: Logger

    public init(
        connection: ConnectionConfig, options: MigratorOptions, hooks: [any PostMigrateHook] = [], logger: Logger
    ) {
        self.connection = connection
        self.options = options
        self.hooks = hooks
        self.logger = logger
    }

    private var history: HistoryStore { HistoryStore(schema: options.schema) }
    private var lockKey: Int64 { options.schema.lockKey }

    /// The engine's own objects first, then each hook's.
    private var components: [OwnObjectsComponent] { [HistoryStore.component] + hooks.compactMap(\.ownObjects) }

    /// The folder's migrations; none when there is no folder (a sidecar), or for `migrate` an error saying so.
    private func entries(required: Bool) throws(MigrationError) -> [MigrationDirectory.Entry]? {
        guard let path = options.migrationsPath else {
            if required {
                throw MigrationError(
                    code: .invalidMigrationFile,
                    message: "error: no migrations folder was given and ./Migrations does not exist; point --migrations "
                        + "(MIGRATOR_MIGRATIONS) at one, or use update-roles or serve --no-migrate for the role sync alone"
                )
            }
            return nil
        }
        return try MigrationDirectory(path: path).entries()
    }

    /// Connects, with every failure turned into a ``MigrationError`` `.connectionFailed`.
    public func connect() throws(MigrationError) -> Connection {
        do {
            return try Connection(config: connection, logger: logger)
        } catch {
            throw MigrationError(code: .connectionFailed, message: "error: cannot connect to the database: \(error.message)")
        }
    }

    /// Applies what is pending, then the hooks.
    ///
    /// Order: list the files (before connecting, so a misnamed file is reported without a database), connect, set the
    /// session up, take the lock, install or upgrade migrator's own objects, read the history, plan, stop on any
    /// problem before applying anything, apply each migration, run the hooks, release the lock.
    public func migrate() throws(MigrationError) -> MigrateReport {
        let clock = ContinuousClock()
        let start = clock.now
        let entries = try entries(required: true) ?? []
        let connection = try connect()
        let session = try setUpSession(connection, forWriting: !options.dryRun)
        var lockWait = Duration.zero
        if !options.dryRun {
            lockWait = try acquireLock(connection, alreadyTried: session.locked, timeout: options.lockTimeout)
            logger.debug("holding the migration lock", metadata: ["lock.waited_ms": "\(Int(lockWait.milliseconds))"])
        }
        var holdsLock = !options.dryRun
        defer { if holdsLock { AdvisoryLock.release(connection, key: lockKey, logger: logger) } }

        if !options.dryRun {
            try OwnObjects.install(components, on: connection, schema: options.schema, marker: session.ownObjects, logger: logger)
        }
        // A dry run installs nothing, so on a database an earlier release migrated it reads the old table.
        let history = try readHistory(connection, legacyFallback: options.dryRun).records
        let plan = try MigrationPlan.make(
            entries: entries, history: history, migrationsPath: options.migrationsPath ?? "",
            target: options.target, allowOutOfOrder: options.allowOutOfOrder
        )
        if !plan.problems.isEmpty {
            throw MigrationError(
                code: .historyMismatch,
                message: plan.problems.joined(separator: "\n")
                    + "\nnote: nothing was applied; the folder and the history must agree before migrating"
            )
        }

        var applied: [MigrateReport.Applied] = []
        for step in plan.steps {
            if options.dryRun {
                applied.append(report(step, durationMs: 0))
                continue
            }
            if options.stopRequested() {
                throw stopped(before: MigrationStatus.label(step.file.version, step.file.name), applied: applied)
            }
            do {
                applied.append(try apply(step, on: connection))
            } catch var error {
                error.appliedBeforeFailure = applied.map { "\(MigrationStatus.label($0.version, $0.name))" }
                throw error
            }
        }

        let appliedVersions = Set(plan.steps.map(\.file.version))
        let pendingAfter = max(0, plan.statuses.count { ($0.state == .pending || $0.state == .failed) }
            - (options.dryRun ? 0 : appliedVersions.count))
        var hookReports: [HookReport] = []
        for hook in hooks {
            if options.stopRequested(), !options.dryRun {
                throw stopped(before: "the post-migrate hook '\(hook.name)'", applied: applied)
            }
            var hookLogger = logger
            hookLogger[metadataKey: "hook"] = .string(hook.name)
            let context = HookContext(
                connection: connection, schema: options.schema, logger: hookLogger,
                appliedVersions: applied.map(\.version), pendingMigrations: pendingAfter, dryRun: options.dryRun
            )
            do {
                hookReports.append(try hook.run(context))
            } catch {
                var failure = MigrationError(code: .hookFailed, message: "error: post-migrate hook '\(hook.name)' failed: \(error)")
                failure.appliedBeforeFailure = applied.map { MigrationStatus.label($0.version, $0.name) }
                throw failure
            }
        }

        if holdsLock {
            AdvisoryLock.release(connection, key: lockKey, logger: logger)
            holdsLock = false
        }
        return MigrateReport(
            dryRun: options.dryRun, applied: applied, hooks: hookReports, pendingAfter: pendingAfter,
            lockWaitMs: lockWait.milliseconds, durationMs: (clock.now - start).milliseconds,
            roundTrips: connection.roundTrips, database: connection.safeDescription
        )
    }

    private func acquireLock(
        _ connection: Connection, alreadyTried: Bool, timeout: Duration
    ) throws(MigrationError) -> Duration {
        try AdvisoryLock.acquire(
            connection, key: lockKey, alreadyTried: alreadyTried, timeout: timeout,
            reportEvery: options.lockReportInterval, logger: logger, stopRequested: options.stopRequested
        )
    }

    private func stopped(before next: String, applied: [MigrateReport.Applied]) -> MigrationError {
        var error = MigrationError(
            code: .stopped,
            message: "stopped on request before \(next); \(applied.count) migration(s) applied by this run stay "
                + "applied, the rest runs next time"
        )
        error.appliedBeforeFailure = applied.map { MigrationStatus.label($0.version, $0.name) }
        return error
    }

    /// Every migration's state, read without taking the lock (it only reads, and installs nothing).
    public func status() throws(MigrationError) -> StatusReport {
        let connection = try connect()
        var report = try status(on: connection)
        for hook in hooks {
            do {
                if let status = try hook.status(connection, schema: options.schema) { report.hooks.append(status) }
            } catch {
                report.hooks.append(HookStatus(name: hook.name, upToDate: false, summary: "cannot be read: \(error)"))
            }
        }
        report.roundTrips = connection.roundTrips
        return report
    }

    /// Runs `body` on a connection that holds the migration lock, with migrator's own objects installed, for work
    /// that must not interleave with a migrate run (`update-roles`). The lock is released afterwards, whatever
    /// happens.
    public func withLock<T>(_ body: (Connection) throws -> T) throws -> T {
        let connection = try connect()
        let session = try setUpSession(connection, forWriting: true)
        _ = try acquireLock(connection, alreadyTried: session.locked, timeout: options.lockTimeout)
        defer { AdvisoryLock.release(connection, key: lockKey, logger: logger) }
        try OwnObjects.install(components, on: connection, schema: options.schema, marker: session.ownObjects, logger: logger)
        return try body(connection)
    }

    /// Opens a long-lived session for a caller that works repeatedly under the lock (the daemon): set up like a
    /// runner's session (timeouts, keepalives, read-only check) but without taking the lock.
    public func openSession() throws(MigrationError) -> Connection {
        let connection = try connect()
        _ = try setUpSession(connection, forWriting: true, tryLock: false)
        return connection
    }

    /// Makes sure migrator's own objects are installed and current on an existing session: one query when they are;
    /// otherwise the lock is taken (waiting at most `timeout`), they are installed, and it is released.
    public func ensureOwnObjects(on connection: Connection, timeout: Duration) throws {
        let installed = try OwnObjects.installedVersions(connection, schema: options.schema)
        guard components.contains(where: { installed[$0.name, default: 0] < $0.newest }) else { return }
        try withLock(on: connection, timeout: timeout) { _ in }
    }

    /// Runs `body` holding the migration lock on an existing session, waiting at most `timeout` for it, with
    /// migrator's own objects installed.
    /// - Throws: ``MigrationError`` `.lockTimeout` when another runner kept it longer, or what `body` throws.
    public func withLock<T>(on connection: Connection, timeout: Duration, _ body: (Connection) throws -> T) throws -> T {
        let gotIt = try connection.query(AdvisoryLock.tryLockSQL, [lockKey]).first?.bool("locked") == true
        _ = try acquireLock(connection, alreadyTried: gotIt, timeout: timeout)
        defer { AdvisoryLock.release(connection, key: lockKey, logger: logger) }
        try OwnObjects.install(components, on: connection, schema: options.schema, logger: logger)
        return try body(connection)
    }

    /// Every migration's state, read on an existing session (no hooks): what the daemon checks on each reconcile.
    /// Without a migrations folder the history is listed as recorded, with a note that no file was compared.
    public func status(on connection: Connection) throws(MigrationError) -> StatusReport {
        let entries = try entries(required: false)
        let (history, location) = try readHistory(connection, legacyFallback: true)
        var notes: [String] = []
        if location == .legacy {
            notes.append(
                "note: the history is in \(HistoryStore.legacyTable), where an earlier release kept it; the next "
                    + "migrate, update-roles or serve moves it into schema \(options.schema.name)"
            )
        }
        guard let entries else {
            notes.append("note: no migrations folder: the history is shown as recorded, and no file was compared")
            let statuses = history.map { record in
                MigrationStatus(
                    version: record.version, name: record.name,
                    state: record.superseded != nil ? .superseded : record.state == .failed ? .failed : .applied,
                    transactional: record.transactional, appliedAt: record.appliedAt, appliedBy: record.appliedBy,
                    durationMs: record.durationMs, recordedChecksum: record.checksum,
                    failedStatement: record.failedStatement, error: record.error, supersededBy: record.superseded
                )
            }
            return StatusReport(
                migrations: statuses, problems: [], hooks: [], notes: notes, roundTrips: connection.roundTrips,
                database: connection.safeDescription
            )
        }
        let plan = try MigrationPlan.make(
            entries: entries, history: history, migrationsPath: options.migrationsPath ?? "",
            target: nil, allowOutOfOrder: options.allowOutOfOrder
        )
        return StatusReport(
            migrations: plan.statuses, problems: plan.problems, hooks: [], notes: notes,
            roundTrips: connection.roundTrips, database: connection.safeDescription
        )
    }

    // MARK: - Steps

    /// Sets the session's timeouts, checks that the server takes writes, and makes a first try for the lock, all in
    /// one round trip. The server-side keepalives let the server notice a runner whose machine vanished and free its
    /// lock within about 25 s (libpq's own keepalives cover the other direction). `client_connection_check_interval`
    /// (PostgreSQL 14 and later; skipped on older servers) makes the server check the socket every second while a
    /// statement runs: without it, a runner killed during a long statement keeps its lock, and its transaction
    /// open, until that statement ends. Returns whether that first try got the lock, and the marker of migrator's own
    /// objects (``OwnObjects``), so that a run with nothing to install spends no round trip on them.
    private func setUpSession(
        _ connection: Connection, forWriting: Bool, tryLock: Bool = true
    ) throws(MigrationError) -> (locked: Bool, ownObjects: String?) {
        let statementTimeout = options.statementTimeoutMs.map { "\($0)ms" } ?? "0"
        let row: Row?
        do {
            row = try connection.query(
                """
                SELECT set_config('lock_timeout', $1, false) AS lock_timeout,
                       set_config('statement_timeout', $2, false) AS statement_timeout,
                       set_config('idle_in_transaction_session_timeout', '0', false) AS idle_timeout,
                       set_config('tcp_keepalives_idle', '10', false) AS keepalives_idle,
                       set_config('tcp_keepalives_interval', '5', false) AS keepalives_interval,
                       set_config('tcp_keepalives_count', '3', false) AS keepalives_count,
                       (SELECT set_config(name, '1s', false) FROM pg_settings
                        WHERE name = 'client_connection_check_interval') AS connection_check,
                       pg_is_in_recovery() AS in_recovery,
                       current_setting('transaction_read_only') AS read_only,
                       CASE WHEN $3::boolean AND NOT pg_is_in_recovery()
                            THEN pg_try_advisory_lock($4::bigint) ELSE false END AS locked,
                       obj_description(to_regnamespace($5::text), 'pg_namespace') AS own_objects
                """,
                ["\(options.ddlLockTimeoutMs)ms", statementTimeout, forWriting && tryLock, lockKey, options.schema.name]
            ).first
        } catch {
            throw MigrationError(code: .databaseError, message: "error: could not set up the session: \(error)")
        }
        guard let row else { return (false, nil) }
        if forWriting, row.bool("in_recovery") == true {
            throw MigrationError(
                code: .readOnly,
                message: "error: \(connection.safeDescription) is a read-only standby (in recovery), so it cannot be "
                    + "migrated\nhint: point DATABASE_URL at the primary; with several hosts, add "
                    + "target_session_attrs=read-write"
            )
        }
        if forWriting, row["read_only"] == "on" {
            throw MigrationError(
                code: .readOnly,
                message: "error: the session on \(connection.safeDescription) is read-only "
                    + "(default_transaction_read_only is on for the server, the database or the role), so it "
                    + "cannot be migrated\nhint: connect as a role that may write, or turn default_transaction_read_only off for it"
            )
        }
        return (row.bool("locked") == true, row["own_objects"])
    }

    private func readHistory(
        _ connection: Connection, legacyFallback: Bool
    ) throws(MigrationError) -> (records: [HistoryRecord], location: HistoryStore.Location) {
        do {
            return try history.read(connection, legacyFallback: legacyFallback) ?? ([], .current)
        } catch {
            throw MigrationError(
                code: error.code == .connectionLost ? .connectionFailed : .databaseError,
                message: "error: could not read the migration history (\(history.table)): \(error)"
            )
        }
    }

    private func report(_ step: MigrationPlan.Step, durationMs: Double) -> MigrateReport.Applied {
        MigrateReport.Applied(
            version: step.file.version, name: step.file.name, file: step.file.displayPath,
            transactional: step.file.transactional, statements: step.statements.count,
            resumedAtStatement: step.resumeFrom > 0 ? step.resumeFrom + 1 : nil, durationMs: durationMs
        )
    }

    private func apply(_ step: MigrationPlan.Step, on connection: Connection) throws(MigrationError) -> MigrateReport.Applied {
        let clock = ContinuousClock()
        let start = clock.now
        let file = step.file
        var stepLogger = logger
        stepLogger[metadataKey: "migration.version"] = "\(file.version)"
        stepLogger[metadataKey: "migration.file"] = .string(file.displayPath)
        let previousLogger = connection.logger
        connection.logger = stepLogger
        defer { connection.logger = previousLogger }
        stepLogger.info(
            step.resumeFrom > 0 ? "resuming migration" : "applying migration",
            metadata: step.resumeFrom > 0 ? ["migration.statement": "\(step.resumeFrom + 1)"] : [:]
        )
        if file.transactional {
            try applyInTransaction(file, statements: step.statements, on: connection)
            // The history row commits with the migration, so the duration is measured before the commit.
        } else {
            try applyStatementByStatement(step, on: connection, start: start)
        }
        let durationMs = (clock.now - start).milliseconds
        stepLogger.info("applied migration", metadata: ["migration.duration_ms": "\(Int(durationMs))"])
        return report(step, durationMs: durationMs)
    }

    /// The file and its history row in one transaction: both commit or neither does.
    private func applyInTransaction(
        _ file: MigrationFile, statements: [SQLStatement], on connection: Connection
    ) throws(MigrationError) {
        let clock = ContinuousClock()
        let start = clock.now
        do throws(PostgresError) {
            try connection.query("BEGIN")
            try connection.execute(script: file.content)
            guard connection.transactionStatus == .inTransaction else {
                throw PostgresError(
                    code: .clientError,
                    message: "the migration ended its transaction itself; remove BEGIN/COMMIT from it"
                )
            }
            try history.recordApplied(connection, file: file, durationMs: (clock.now - start).milliseconds)
            try connection.query("COMMIT")
        } catch {
            if connection.isConnected, connection.transactionStatus != .idle {
                _ = try? connection.query("ROLLBACK")
            }
            // Without a position, the number of statements that completed names the one that failed.
            let failed = error.completedStatements.flatMap { $0 < statements.count ? statements[$0] : nil }
            throw failure(error, file: file, statementOffset: 0, statement: failed)
                .adding(note: "note: \(file.label) was rolled back; nothing of it remains")
        }
    }

    /// One statement at a time, outside a transaction, recording progress before each so that a failure or a kill
    /// can be resumed where it stopped.
    private func applyStatementByStatement(
        _ step: MigrationPlan.Step, on connection: Connection, start: ContinuousClock.Instant
    ) throws(MigrationError) {
        let file = step.file
        let clock = ContinuousClock()
        var done = Array(step.previous?.statementChecksums ?? [])
        for index in step.resumeFrom..<step.statements.count {
            let statement = step.statements[index]
            do throws(PostgresError) {
                try history.recordProgress(
                    connection, file: file, done: done, failedStatement: index + 1,
                    error: "interrupted: the run stopped before statement \(index + 1) finished",
                    durationMs: (clock.now - start).milliseconds
                )
                try connection.execute(script: statement.text)
                guard connection.transactionStatus == .idle else {
                    _ = try? connection.query("ROLLBACK")
                    throw PostgresError(
                        code: .clientError,
                        message: "the statement left a transaction open; a migration outside a transaction runs each "
                            + "statement on its own"
                    )
                }
                done.append(MigrationPlan.statementChecksum(statement))
            } catch {
                var failure = failure(error, file: file, statementOffset: statement.offset, statement: statement)
                if error.sqlState == "42P07", statement.leadingWords(4).contains("CONCURRENTLY") {
                    failure = failure.adding(
                        note: "hint: a CREATE INDEX CONCURRENTLY that failed leaves an invalid index behind; drop it "
                            + "(DROP INDEX CONCURRENTLY) or use IF NOT EXISTS before rerunning"
                    )
                }
                if connection.isConnected {
                    _ = try? history.recordProgress(
                        connection, file: file, done: done, failedStatement: index + 1,
                        error: String(failure.message.prefix(4000)), durationMs: (clock.now - start).milliseconds
                    )
                }
                throw failure.adding(
                    note: "note: \(file.label) runs outside a transaction: statements 1-\(index) are applied and "
                        + "recorded (\(done.count) of \(step.statements.count)); fix statement \(index + 1) and run "
                        + "migrate again to resume there"
                )
            }
        }
        do {
            try history.recordApplied(connection, file: file, durationMs: (clock.now - start).milliseconds)
        } catch {
            throw failure(error, file: file, statementOffset: 0, statement: nil)
        }
    }

    /// Turns a server error into a compiler-style message pointing into the file.
    ///
    /// The server's position wins. Without one (errors found while executing DDL, such as a missing relation, carry
    /// none), the caret goes to the first mention of the object the message quotes inside the failing statement,
    /// else to the statement's start.
    private func failure(
        _ error: PostgresError, file: MigrationFile, statementOffset: Int, statement: SQLStatement?
    ) -> MigrationError {
        let source = SourceText(file.content)
        var header: String
        var excerpt = ""
        var offset: Int?
        if let position = error.position {
            offset = statementOffset + position - 1
        } else if let statement {
            offset = statement.offset + (Self.mention(in: statement.text, of: error.message) ?? 0)
        }
        if let offset {
            let (line, column) = source.location(ofOffset: offset)
            header = "\(file.displayPath):\(line):\(column): error: "
            excerpt = "\n" + source.excerpt(line: line, column: column)
        } else {
            header = "\(file.displayPath): error: "
        }
        var message = header + error.message
        if let sqlState = error.sqlState { message += " (SQLSTATE \(sqlState))" }
        message += excerpt
        if let detail = error.detail { message += "\ndetail: \(detail)" }
        if let hint = error.hint { message += "\nhint: \(hint)" }
        if let context = error.context { message += "\ncontext: \(context)" }
        if error.code == .connectionLost {
            message += "\nnote: the connection to the server was lost while this migration ran"
        }
        return MigrationError(
            code: .migrationFailed, message: message,
            serverError: SendablePostgresDetails(
                sqlState: error.sqlState, message: error.message, detail: error.detail, hint: error.hint,
                position: error.position
            )
        )
    }
}

extension Migrator {
    /// The scalar offset, inside `text`, of the first whole-word mention of the first name that `message` puts in
    /// double quotes (`relation "sites" does not exist` → the offset of `sites`).
    static func mention(in text: String, of message: String) -> Int? {
        let parts = message.split(separator: "\"", omittingEmptySubsequences: false)
        guard parts.count >= 3 else { return nil }
        let name = Array(parts[1].lowercased().unicodeScalars)
        // A qualified name is quoted whole ("public.sites"); its last part is what the statement is likeliest to say.
        let candidates = [name, Array(name.split(separator: ".").last ?? name[...])]
        let haystack = Array(text.lowercased().unicodeScalars)
        func isWord(_ scalar: Unicode.Scalar) -> Bool {
            scalar.properties.isAlphabetic || ("0"..."9").contains(scalar) || scalar == "_" || scalar == "$"
        }
        for candidate in candidates where !candidate.isEmpty && candidate.count <= haystack.count {
            for start in 0...(haystack.count - candidate.count) where haystack[start] == candidate[0] {
                guard Array(haystack[start..<(start + candidate.count)]) == candidate else { continue }
                let before = start == 0 || !isWord(haystack[start - 1])
                let afterIndex = start + candidate.count
                let after = afterIndex == haystack.count || !isWord(haystack[afterIndex])
                // lowercased() keeps the scalar count for the names PostgreSQL quotes in practice.
                if before && after && haystack.count == text.unicodeScalars.count { return start }
            }
        }
        return nil
    }
}

extension MigrationError {
    func adding(note: String) -> MigrationError {
        var copy = self
        copy.message += "\n" + note
        return copy
    }
}

extension MigrationStatus {
    /// `0007_add_index`: the version padded to four digits, as files are usually named.
    public static func label(_ version: Int64, _ name: String) -> String {
        let digits = String(version)
        return String(repeating: "0", count: max(0, 4 - digits.count)) + digits + "_" + name
    }
}
