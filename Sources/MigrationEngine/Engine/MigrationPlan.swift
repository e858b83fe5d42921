import Crypto
import Postgres
import SystemSupport

/// What the folder and the history say together: the state of every migration, the problems that stop a run, and
/// the migrations a run would apply, in order.
struct MigrationPlan {
    struct Step {
        var file: MigrationFile
        /// Statements to run one by one, for a migration outside a transaction.
        var statements: [SQLStatement]
        /// Outside a transaction: statements already done by an earlier run that failed part way.
        var resumeFrom: Int
        var previous: HistoryRecord?
        /// Its reverse, stored in the history row when it is applied.
        var down: MigrationFile?
    }

    /// An applied migration a `--to` below it reverses, with the down stored when it was applied.
    struct Reversal {
        var record: HistoryRecord
        var down: HistoryRecord.Down
    }

    var statuses: [MigrationStatus] = []
    var problems: [Diagnostic] = []
    var steps: [Step] = []
    /// Applied migrations numbered above every file of the folder (`0012_name`), when the folder is older than the
    /// database; with ``MigratorOptions/allowNewerDatabase`` they are no problem, and nothing is applied.
    var newerThanFolder: [String] = []
    /// With a `--to` below the newest applied migration: what to reverse, newest first (and ``steps`` is empty).
    var reversals: [Reversal] = []

    /// Migrations not applied yet: pending, or failed part way.
    var pendingCount: Int { statuses.count { $0.state == .pending || $0.state == .failed } }

    /// Compares the folder with the history.
    ///
    /// Applied files are read and checksummed, never parsed; only files that would be applied are split. Every
    /// problem is collected so that one run lists all of them.
    /// - Throws: ``MigrationError`` `.invalidMigrationFile` when a file cannot be read or split.
    static func make(
        entries: [MigrationDirectory.Entry], history: [HistoryRecord], migrationsPath: String,
        target: Int64?, allowOutOfOrder: Bool, allowNewerDatabase: Bool = false, standardConformingStrings: Bool = true
    ) throws(MigrationError) -> MigrationPlan {
        var plan = MigrationPlan()
        let records = Dictionary(history.map { ($0.version, $0) }, uniquingKeysWith: { first, _ in first })
        let newestApplied = history.filter { $0.state == .applied }.map(\.version).max() ?? 0
        var fileErrors: [Diagnostic] = []
        var byVersion: [Int64: MigrationStatus] = [:]

        for entry in entries {
            let record = records[entry.version]
            let file: MigrationFile
            do {
                let bytes = try entry.readBytes()
                // The common case of a no-op run: an applied file whose bytes still match needs no decoding.
                if let record, record.state == .applied, MigrationFile.checksum(ofFileBytes: bytes) == record.checksum {
                    byVersion[entry.version] = MigrationStatus(
                        version: entry.version, name: entry.name, state: .applied, file: entry.displayPath,
                        transactional: record.transactional, appliedAt: record.appliedAt, appliedBy: record.appliedBy,
                        durationMs: record.durationMs, checksum: record.checksum, recordedChecksum: record.checksum
                    )
                    continue
                }
                file = try entry.load(bytes: bytes)
            } catch {
                fileErrors += error.diagnostics
                continue
            }
            var status = MigrationStatus(
                version: entry.version, name: entry.name, state: .pending, file: entry.displayPath,
                transactional: file.transactional, checksum: file.checksum
            )
            if let record {
                status.appliedAt = record.appliedAt
                status.appliedBy = record.appliedBy
                status.durationMs = record.durationMs
                status.recordedChecksum = record.checksum
            }
            switch record?.state {
            case .applied?:
                if record!.checksum == file.checksum {
                    status.state = .applied
                } else if let superseded = record!.superseded {
                    status.state = .changed
                    plan.problems.append(Diagnostic(
                        message: "version \(entry.version) is taken by '\(record!.name)', a migration of an earlier "
                            + "migrator release that \(superseded) took over; give this migration a number above "
                            + "\(newestApplied)",
                        location: SourceLocation(file: entry.displayPath)
                    ))
                } else {
                    status.state = .changed
                    plan.problems.append(Diagnostic(
                        message: "migration \(entry.version) was changed after it was applied "
                            + "(history has \(record!.checksum.prefix(19))…, the file has \(file.checksum.prefix(19))…); "
                            + "restore the file as it was applied and put the change in a new migration",
                        location: SourceLocation(file: entry.displayPath)
                    ))
                }
            case .failed?:
                status.state = .failed
                status.failedStatement = record!.failedStatement
                status.error = record!.error
                if target.map({ entry.version <= $0 }) ?? true {
                    do {
                        var step = try resumeStep(file: file, record: record!, standardConformingStrings: standardConformingStrings)
                        step.down = try entry.loadDown()
                        plan.steps.append(step)
                    } catch {
                        if error.code == .invalidMigrationFile { fileErrors += error.diagnostics } else {
                            plan.problems += error.diagnostics
                        }
                    }
                }
            case nil:
                if entry.version < newestApplied {
                    status.outOfOrder = true
                    if !allowOutOfOrder {
                        plan.problems.append(Diagnostic(
                            message: "pending migration \(entry.version) is numbered below the newest applied "
                                + "migration \(newestApplied); give it a number above \(newestApplied), or pass "
                                + "--allow-out-of-order to apply it anyway",
                            location: SourceLocation(file: entry.displayPath)
                        ))
                    }
                }
                if target.map({ entry.version <= $0 }) ?? true {
                    do {
                        plan.steps.append(
                            Step(
                                file: file, statements: try statements(of: file, standardConformingStrings: standardConformingStrings),
                                resumeFrom: 0, previous: nil, down: try entry.loadDown()
                            )
                        )
                    } catch {
                        fileErrors += error.diagnostics
                    }
                }
            }
            byVersion[entry.version] = status
        }
        let newestFile = entries.map(\.version).max() ?? 0
        var newer: [HistoryRecord] = []
        for record in history where byVersion[record.version] == nil {
            let label = MigrationStatus.label(record.version, record.name)
            if let superseded = record.superseded {
                byVersion[record.version] = MigrationStatus(
                    version: record.version, name: record.name, state: .superseded, transactional: record.transactional,
                    appliedAt: record.appliedAt, appliedBy: record.appliedBy, durationMs: record.durationMs,
                    recordedChecksum: record.checksum, supersededBy: superseded
                )
                continue
            }
            byVersion[record.version] = MigrationStatus(
                version: record.version, name: record.name, state: .missing, transactional: record.transactional,
                appliedAt: record.appliedAt, appliedBy: record.appliedBy, durationMs: record.durationMs,
                recordedChecksum: record.checksum, failedStatement: record.failedStatement, error: record.error,
                newerThanFolder: record.version > newestFile ? true : nil
            )
            if record.version > newestFile {
                newer.append(record)
                continue
            }
            plan.problems.append(Diagnostic(
                message: "migration \(label) is in the history but its file is gone from this folder; "
                    + "restore \(label).sql (the history has checksum \(record.checksum.prefix(19))…)",
                location: SourceLocation(file: migrationsPath)
            ))
        }
        plan.newerThanFolder = newer.sorted { $0.version < $1.version }.map { MigrationStatus.label($0.version, $0.name) }
        if !newer.isEmpty {
            if allowNewerDatabase {
                // A rolled-back release: what the newer one applied stays, and nothing of this folder is applied over
                // it (a pending file of this folder may be one the newer release replaced or renumbered).
                plan.steps = []
            } else {
                plan.problems.append(Diagnostic(
                    message: "the database has \(newer.count) applied migration\(newer.count == 1 ? "" : "s") newer than "
                        + "every file of this folder (\(plan.newerThanFolder.joined(separator: ", "))): a newer release "
                        + "migrated it, or \(newer.count == 1 ? "its file was" : "their files were") deleted; run that "
                        + "release or restore the files, or pass --allow-newer-database (MIGRATOR_ALLOW_NEWER_DATABASE=1) "
                        + "to start this one without applying or reverting anything",
                    location: SourceLocation(file: migrationsPath)
                ))
            }
        }
        if !fileErrors.isEmpty {
            throw MigrationError(code: .invalidMigrationFile, diagnostics: fileErrors)
        }
        for record in history where byVersion[record.version] != nil {
            byVersion[record.version]?.reversible = record.state == .applied && record.down != nil && !record.irreversible
        }
        if let target, target < newestApplied {
            plan.steps = []
            for record in history.sorted(by: { $0.version > $1.version }) where record.version > target {
                let label = MigrationStatus.label(record.version, record.name)
                let place = SourceLocation(file: byVersion[record.version]?.file ?? migrationsPath)
                if record.superseded != nil {
                    plan.problems.append(Diagnostic(message: "\(label) is superseded by migrator's own objects and cannot be reversed; choose a --to at or above \(record.version)", location: place))
                } else if record.state == .failed {
                    plan.problems.append(Diagnostic(message: "\(label) failed part way; finish it (migrate) or clear it (migrator repair) before reversing past it", location: place))
                } else if record.irreversible {
                    plan.problems.append(Diagnostic(message: "\(label) is marked irreversible (-- \(MigrationFile.irreversibleDirective)); choose a --to at or above \(record.version)", location: place))
                } else if let down = record.down {
                    plan.reversals.append(Reversal(record: record, down: down))
                } else {
                    plan.problems.append(Diagnostic(
                        message: "\(label) has no down migration: it was \(record.kind == "migration" ? "applied without \(label).down.sql beside it" : "recorded by \(record.kind == "baseline" ? "baseline" : "mark-applied"), not run"); "
                            + "choose a --to at or above \(record.version), or reverse it by hand in a new migration",
                        location: place
                    ))
                }
            }
        }
        plan.statuses = byVersion.values.sorted { $0.version < $1.version }
        plan.steps.sort { $0.file.version < $1.file.version }
        return plan
    }

    /// Splits a file that is about to run, and refuses transaction control in it before anything runs: in a
    /// transactional file a `COMMIT` would commit half a migration without its history row; outside a transaction a
    /// `BEGIN` would swallow the engine's own progress records.
    static func statements(of file: MigrationFile, standardConformingStrings: Bool = true) throws(MigrationError) -> [SQLStatement] {
        let statements: [SQLStatement]
        do {
            statements = try SQLStatementSplitter.split(file.content, standardConformingStrings: standardConformingStrings)
        } catch {
            throw MigrationError(
                code: .invalidMigrationFile, message: error.description,
                location: file.location(line: error.line, column: error.column)
            )
        }
        if let control = statements.first(where: SQLStatementSplitter.isTransactionControl) {
            let words: String = control.leadingWords(2).joined(separator: " ")
            let directive = MigrationFile.noTransactionDirective
            let place = "'\(words)' controls the transaction"
            throw MigrationError(
                code: .invalidMigrationFile,
                message: file.transactional
                    ? place + ", but this migration already runs in one transaction with its history row"
                    : place + ", but this migration runs outside a transaction, each statement on its own, with its "
                        + "progress recorded between them",
                location: file.location(line: control.line, column: control.column),
                hint: file.transactional
                    ? "remove it, or put '-- \(directive)' in the file's first comment lines to run each statement on "
                        + "its own"
                    : "put the statements that must be atomic in a migration of their own without the directive"
            )
        }
        return statements
    }

    /// Resumes a migration outside a transaction at the statement that failed, if the ones before it are unchanged.
    static func resumeStep(file: MigrationFile, record: HistoryRecord, standardConformingStrings: Bool = true) throws(MigrationError) -> Step {
        guard !file.transactional else {
            throw MigrationError(
                code: .historyMismatch,
                message: "migration \(file.version) failed part way outside a transaction, "
                    + "and the file no longer has '-- \(MigrationFile.noTransactionDirective)'; put the directive "
                    + "back so the remaining statements can run",
                location: SourceLocation(file: file.displayPath)
            )
        }
        let statements = try statements(of: file, standardConformingStrings: standardConformingStrings)
        let done = record.statementChecksums ?? []
        if statements.count < done.count {
            throw MigrationError(
                code: .historyMismatch,
                message: "migration \(file.version) had run \(done.count) statements before "
                    + "it failed, but the file now has only \(statements.count); restore the statements that ran",
                location: SourceLocation(file: file.displayPath)
            )
        }
        for (index, checksum) in done.enumerated() where statementChecksum(statements[index]) != checksum {
            let statement = statements[index]
            throw MigrationError(
                code: .historyMismatch,
                message: "statement \(index + 1) "
                    + "already ran before the migration failed at statement \(done.count + 1), and it has changed "
                    + "since; restore it as it ran (only the failed statement and the ones after it may change)",
                location: file.location(line: statement.line, column: statement.column)
            )
        }
        return Step(file: file, statements: statements, resumeFrom: done.count, previous: record)
    }

    static func statementChecksum(_ statement: SQLStatement) -> String {
        "sha256:" + TextFormat.hex(SHA256.hash(data: Array(statement.text.utf8)))
    }
}
