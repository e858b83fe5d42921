import Logging
import Postgres
import SystemSupport

/// Running one migration: in a transaction with its history row, or outside one statement by statement with its
/// progress recorded, and a server error turned into a problem located in the file.
extension MigrationSession {
    func apply(_ step: MigrationPlan.Step) throws(MigrationError) -> MigrateReport.Applied {
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
            try applyInTransaction(file, statements: step.statements, down: step.down)
            // The history row commits with the migration, so the duration is measured before the commit.
        } else {
            try applyStatementByStatement(step, start: start)
        }
        let durationMs = (clock.now - start).milliseconds
        stepLogger.info("applied migration", metadata: ["migration.duration_ms": "\(Int(durationMs))"])
        return Self.report(step, durationMs: durationMs)
    }

    /// The file and its history row in one transaction: both commit or neither does. A lock not granted within the
    /// lock timeout rolls the whole back and tries again, with backoff, until the retry budget is spent.
    private func applyInTransaction(_ file: MigrationFile, statements: [SQLStatement], down: MigrationFile?) throws(MigrationError) {
        var retry = LockRetry(budget: options.ddlLockRetryBudget)
        while true {
            let clock = ContinuousClock()
            let start = clock.now
            // The transaction's id, so that after a failure the server can say whether it really ended without a
            // commit before the message claims that nothing of the file remains.
            var transactionID: String?
            do throws(PostgresError) {
                // The session as the set-up left it, whatever an earlier migration changed, then the transaction.
                let begun = try connection.execute(script: restoreScript + ";\nBEGIN;\nSELECT txid_current()::text AS xid")
                transactionID = (try? begun.last?.first?.decodeIfPresent("xid", as: String.self)) ?? nil
                // The history row is written in the session the set-up made whatever the file set (its role, its
                // statement_timeout): the file is split and checked, so nothing of it is left open for the appended
                // statements to fall into.
                watcher?.begin(pid: connection.backendPID, label: file.label, logger: connection.logger)
                try connection.execute(script: file.content + "\n;" + restoreScript)
                watcher?.end()
                guard connection.transactionStatus == .inTransaction else {
                    throw PostgresError(
                        code: .clientError,
                        message: "the migration ended its transaction itself; remove BEGIN/COMMIT from it"
                    )
                }
                guard try own({ () throws(PostgresError) in try history.recordApplied(connection, file: file, down: down, durationMs: (clock.now - start).milliseconds, lockKey: lockKey) }) else {
                    throw lostLock(during: file)
                }
                try connection.query("COMMIT")
                return
            } catch {
                let sighting = watcher?.end() ?? LockSighting()
                if connection.isConnected, connection.transactionStatus != .idle {
                    _ = try? connection.query("ROLLBACK")
                }
                if LockRetry.isLockRefusal(error) { retry.lastSighting = sighting }
                if let delay = retry.delay(after: error, connected: connection.isConnected, stopRequested: options.stopRequested()) {
                    logRefusal(error, file: file, sighting: sighting, retryIn: delay, attempt: retry.attempts)
                    LockRetry.sleep(delay)
                    continue
                }
                // Without a position, the number of statements that completed names the one that failed.
                let failed = error.completedStatements.flatMap { $0 < statements.count ? statements[$0] : nil }
                var failure = failure(error, file: file, statementOffset: 0, statement: failed)
                    .adding(note: outcomeNote(file, transactionID: transactionID))
                if LockRetry.isLockRefusal(error) { failure = failure.adding(note: retry.finalNote(ddlLockTimeout: options.ddlLockTimeout)) }
                throw failure
            }
        }
    }

    /// Says in the log that a lock was not granted, who holds it, and when the next try is.
    private func logRefusal(_ error: PostgresError, file: MigrationFile, sighting: LockSighting, retryIn delay: Duration, attempt: Int) {
        connection.logger.warning("a lock the migration needs was not granted; trying again", metadata: [
            "db.sqlstate": "\(error.sqlState ?? "")",
            "lock.blockers": "\(LockBlocker.sentence(sighting.blockers, waitingFor: sighting.waitingFor))",
            "retry.attempt": "\(attempt)",
            "retry.in_ms": "\(Int(delay.milliseconds))",
        ])
    }

    /// What became of a transactional migration that failed, as the server tells it: a `COMMIT` the server read in
    /// the file (where migrator's reader saw none) commits the statements before it, and a message must not then
    /// say that nothing remains.
    private func outcomeNote(_ file: MigrationFile, transactionID: String?) -> String {
        guard connection.isConnected else {
            return "\(file.label) did not commit: the connection was lost before migrator's COMMIT, so the server rolls "
                + "its transaction back"
        }
        guard let transactionID,
              let status = try? connection.query("SELECT txid_status($1::bigint) AS status", [transactionID]).first?
                  .decodeIfPresent("status", as: String.self)
        else {
            return "\(file.label) was rolled back, but the server could not confirm it: check the database before "
                + "running migrate again"
        }
        if status == "committed" {
            return "\(file.label) ended migrator's transaction itself: the statements before that point are COMMITTED, "
                + "without a history row, and the ones after it were not; undo them by hand or finish the migration "
                + "in a new file, and remove the transaction control"
        }
        return "\(file.label) was rolled back; nothing of it remains"
    }

    /// One statement at a time, outside a transaction, recording progress before each so that a failure or a kill
    /// can be resumed where it stopped.
    private func applyStatementByStatement(_ step: MigrationPlan.Step, start: ContinuousClock.Instant) throws(MigrationError) {
        let file = step.file
        let clock = ContinuousClock()
        var done = Array(step.previous?.statementChecksums ?? [])
        do throws(PostgresError) {
            try connection.execute(script: restoreScript)
        } catch {
            throw failure(error, file: file, statementOffset: 0, statement: nil)
        }
        var lockLost = false
        for index in step.resumeFrom..<step.statements.count {
            let statement = step.statements[index]
            var statementNotes: [String] = []
            do throws(PostgresError) {
                // The statement before this one, once: on a resume the earlier run recorded it already.
                let completed = index > step.resumeFrom ? done.last : nil
                guard try own({ () throws(PostgresError) in
                    try history.recordProgress(
                        connection, file: file, done: done.count, completed: completed, failedStatement: index + 1,
                        error: "interrupted: the run stopped before statement \(index + 1) finished",
                        durationMs: (clock.now - start).milliseconds, lockKey: lockKey
                    )
                }) else {
                    lockLost = true
                    throw lostLock(during: file, after: index)
                }
                try executeRetryingLocks(statement, number: index + 1, of: file, notes: &statementNotes)
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
                if lockLost {
                    // The statement before this one released the lock; this one did not run.
                    let previous = step.statements[max(step.resumeFrom, index - 1)]
                    throw failure(error, file: file, statementOffset: previous.offset, statement: previous).adding(
                        note: "\(file.label) runs outside a transaction: statements 1-\(index) ran, and the history "
                            + "records \(done.count - 1) of them; remove the statement that releases the lock and run "
                            + "migrate again (it resumes at statement \(index))"
                    )
                }
                var failure = failure(error, file: file, statementOffset: statement.offset, statement: statement)
                for note in statementNotes { failure = failure.adding(note: note) }
                if error.sqlState == SQLState.duplicateTable, statement.leadingWords(4).contains("CONCURRENTLY") {
                    failure.diagnostics[0].hint = "a CREATE INDEX CONCURRENTLY that failed leaves an invalid index behind; "
                        + "drop it (DROP INDEX CONCURRENTLY) or use IF NOT EXISTS before rerunning"
                }
                if connection.isConnected {
                    // The statements done are recorded already, by the write before this statement.
                    _ = try? history.recordProgress(
                        connection, file: file, done: done.count, completed: nil, failedStatement: index + 1,
                        error: String(failure.diagnostics[0].summary.prefix(4000)), durationMs: (clock.now - start).milliseconds,
                        lockKey: lockKey
                    )
                }
                throw failure.adding(
                    note: "\(file.label) runs outside a transaction: statements 1-\(index) are applied and "
                        + "recorded (\(done.count) of \(step.statements.count)); fix statement \(index + 1) and run "
                        + "migrate again to resume there"
                )
            }
        }
        do throws(PostgresError) {
            guard try own({ () throws(PostgresError) in try history.recordApplied(connection, file: file, down: step.down, durationMs: (clock.now - start).milliseconds, lockKey: lockKey) }) else {
                throw lostLock(during: file, after: step.statements.count)
            }
        } catch {
            throw failure(error, file: file, statementOffset: 0, statement: nil)
        }
    }

    /// One statement outside a transaction. A lock not granted within the lock timeout is tried again, with backoff,
    /// until the retry budget is spent; before each new try, and when the statement fails for good, what a failed
    /// `CREATE INDEX CONCURRENTLY` or `REINDEX CONCURRENTLY` left (an INVALID index this statement made, never one
    /// that was there before it) is dropped, so that neither the retry nor the next run trips over it.
    func executeRetryingLocks(
        _ statement: SQLStatement, number: Int, of file: MigrationFile, notes: inout [String]
    ) throws(PostgresError) {
        var retry = LockRetry(budget: options.ddlLockRetryBudget)
        let cleanup = ConcurrentIndexCleanup(statement)
        var leftovers: [ConcurrentIndexCleanup.Index] = []
        let label = "\(file.label) statement \(number)"
        while true {
            do throws(PostgresError) {
                if let cleanup, !leftovers.isEmpty {
                    try cleanup.drop(leftovers, on: connection, logger: connection.logger)
                    leftovers = []
                }
                let before = try cleanup.map { (c) throws(PostgresError) in try c.invalidIndexes(on: connection) } ?? []
                watcher?.begin(pid: connection.backendPID, label: label, logger: connection.logger)
                do throws(PostgresError) {
                    try connection.execute(script: statement.text)
                    watcher?.end()
                    return
                } catch {
                    let sighting = watcher?.end() ?? LockSighting()
                    if LockRetry.isLockRefusal(error) { retry.lastSighting = sighting }
                    if let cleanup, connection.isConnected, connection.transactionStatus == .idle {
                        leftovers = (try? cleanup.leftBehind(on: connection, before: before)) ?? []
                    }
                    throw error
                }
            } catch {
                if let delay = retry.delay(after: error, connected: connection.isConnected, stopRequested: options.stopRequested()) {
                    logRefusal(error, file: file, sighting: retry.lastSighting, retryIn: delay, attempt: retry.attempts)
                    LockRetry.sleep(delay)
                    continue
                }
                if LockRetry.isLockRefusal(error) { notes.append(retry.finalNote(ddlLockTimeout: options.ddlLockTimeout)) }
                if let cleanup, !leftovers.isEmpty {
                    let names = leftovers.map(\.name).joined(separator: ", ")
                    do throws(PostgresError) {
                        try cleanup.drop(leftovers, on: connection, logger: connection.logger)
                        notes.append("the INVALID index this statement left behind (\(names)) was dropped; nothing of it remains")
                    } catch let dropError {
                        notes.append(
                            "the INVALID index this statement left behind (\(names)) could not be dropped (\(dropError.message)); "
                                + "drop it with DROP INDEX CONCURRENTLY before running migrate again"
                        )
                    }
                }
                throw error
            }
        }
    }

    /// Runs one of migrator's own history statements: its error is about migrator's table, not the file, so it
    /// carries no position into the file (which would put the caret on a line that is not there).
    func own<T>(_ body: () throws(PostgresError) -> T) throws(PostgresError) -> T {
        do {
            return try body()
        } catch {
            var own = error
            own.position = nil
            own.message = "could not record the migration in \(history.table): \(error.message)"
            throw own
        }
    }

    var restoreScript: String { SessionSetUp.restoreScript(options: options, serverVersion: connection.serverVersion) }

    /// The error for a migration that released the migration lock (`pg_advisory_unlock_all()`, `DISCARD ALL`):
    /// nothing more is recorded or run, since another runner may hold the lock now.
    func lostLock(during file: MigrationFile, after statements: Int? = nil) -> PostgresError {
        let place = statements.map { " (after statement \($0))" } ?? ""
        return PostgresError(
            code: .clientError,
            message: "the migration released migrator's advisory lock\(place) (pg_advisory_unlock_all(), DISCARD ALL or "
                + "pg_advisory_unlock); another runner may hold it now, so nothing more is run or recorded; remove that "
                + "statement from the migration"
        )
    }

    /// Turns a server error into a problem located in the file.
    ///
    /// The server's position wins. Without one (errors found while executing DDL, such as a missing relation, carry
    /// none), the location is the first mention of the object the message quotes inside the failing statement,
    /// else the statement's start.
    func failure(
        _ error: PostgresError, file: MigrationFile, statementOffset: Int, statement: SQLStatement?
    ) -> MigrationError {
        var location = SourceLocation(file: file.displayPath)
        if let position = error.position {
            location = file.location(ofOffset: statementOffset + position - 1)
        } else if let statement {
            location = file.location(ofOffset: statement.offset + (Self.mention(in: statement.text, of: error.message) ?? 0))
        }
        var notes: [String] = []
        if error.code == .connectionLost {
            notes.append("the connection to the server was lost while this migration ran")
        }
        return MigrationError(
            code: .migrationFailed, message: error.message, location: location, notes: notes,
            server: ServerDiagnostics(
                sqlState: error.sqlState, message: error.message, detail: error.detail, hint: error.hint,
                context: error.context, position: error.position
            )
        )
    }
}

extension MigrationSession {
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

