import Logging
import Postgres
import SystemSupport

/// Reversing an applied migration with the down stored in its history row when it was applied: what was reviewed
/// with that release, whatever the down file in the folder says now (edited, or deleted).
extension MigrationSession {
    func revert(_ reversal: MigrationPlan.Reversal) throws(MigrationError) -> MigrateReport.Applied {
        let clock = ContinuousClock()
        let start = clock.now
        let record = reversal.record
        let label = MigrationStatus.label(record.version, record.name)
        var stepLogger = logger
        stepLogger[metadataKey: "migration.version"] = "\(record.version)"
        stepLogger[metadataKey: "migration.down"] = "true"
        let previousLogger = connection.logger
        connection.logger = stepLogger
        defer { connection.logger = previousLogger }
        stepLogger.info("reversing migration", metadata: ["migration.name": "\(record.name)"])
        // The stored text, located as its own file so that an error points into what ran.
        let down = try MigrationFile(
            version: record.version, name: record.name, fileName: "\(label).down.sql",
            displayPath: "\(label).down.sql (as stored in \(options.schema.name).history)",
            bytes: Array(reversal.down.sql.utf8)
        )
        let statements = try MigrationPlan.statements(of: down, standardConformingStrings: connection.parameterStatus("standard_conforming_strings") != "off")
        if down.transactional {
            do throws(PostgresError) {
                try connection.execute(script: restoreScript + ";\nBEGIN")
                watcher?.begin(pid: connection.backendPID, label: down.label, logger: stepLogger)
                try connection.execute(script: down.content + "\n;" + restoreScript)
                watcher?.end()
                guard connection.transactionStatus == .inTransaction else {
                    throw PostgresError(code: .clientError, message: "the down migration ended its transaction itself; remove BEGIN/COMMIT from it")
                }
                guard try own({ () throws(PostgresError) in try history.recordReverted(connection, version: record.version, lockKey: lockKey) }) else {
                    throw lostLock(during: down)
                }
                try connection.query("COMMIT")
            } catch {
                watcher?.end()
                if connection.isConnected, connection.transactionStatus != .idle { _ = try? connection.query("ROLLBACK") }
                let failed = error.completedStatements.flatMap { $0 < statements.count ? statements[$0] : nil }
                throw failure(error, file: down, statementOffset: 0, statement: failed)
                    .adding(note: "the down of \(label) was rolled back; \(label) stays applied")
            }
        } else {
            do throws(PostgresError) {
                try connection.execute(script: restoreScript)
            } catch {
                throw failure(error, file: down, statementOffset: 0, statement: nil)
            }
            for (index, statement) in statements.enumerated() {
                var notes: [String] = []
                do throws(PostgresError) {
                    try executeRetryingLocks(statement, number: index + 1, of: down, notes: &notes)
                    guard connection.transactionStatus == .idle else {
                        _ = try? connection.query("ROLLBACK")
                        throw PostgresError(code: .clientError, message: "the statement left a transaction open; a down outside a transaction runs each statement on its own")
                    }
                } catch {
                    var failure = failure(error, file: down, statementOffset: statement.offset, statement: statement)
                    for note in notes { failure = failure.adding(note: note) }
                    throw failure.adding(
                        note: "the down of \(label) runs outside a transaction: statements 1-\(index) of it ran and stay; "
                            + "\(label) stays applied in the history; fix the cause and run migrate --to again: the down "
                            + "runs again from its first statement (write it with IF EXISTS so that it can)"
                    )
                }
            }
            do throws(PostgresError) {
                guard try own({ () throws(PostgresError) in try history.recordReverted(connection, version: record.version, lockKey: lockKey) }) else {
                    throw lostLock(during: down, after: statements.count)
                }
            } catch {
                throw failure(error, file: down, statementOffset: 0, statement: nil)
            }
        }
        let durationMs = (clock.now - start).milliseconds
        stepLogger.info("reversed migration", metadata: ["migration.duration_ms": "\(Int(durationMs))"])
        return MigrateReport.Applied(
            version: record.version, name: record.name, file: down.displayPath, transactional: down.transactional,
            statements: statements.count, resumedAtStatement: nil, durationMs: durationMs
        )
    }
}
