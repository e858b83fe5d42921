import Postgres

/// Hand changes of the history, each under the lock and in one transaction with its audit rows (who, when, what,
/// why): `baseline` for a database whose schema existed before migrator, `repair` for an applied file changed on
/// purpose or a migration outside a transaction that failed, `mark-applied` / `mark-pending` for the rare hand-fix.
extension MigrationSession {
    /// One change, as `--json` and the summary show it.
    public struct HandChange: Sendable, Codable, Equatable {
        public var action: String
        public var version: Int64
        public var name: String
        public var oldChecksum: String?
        public var newChecksum: String?
    }

    /// Records every migration of the folder up to `version` as applied without running it (`kind` baseline, with
    /// its checksum). Refused on a database that has history already, unless `allowExistingHistory`; then only the
    /// versions not in it are recorded.
    public func baseline(to version: Int64, allowExistingHistory: Bool, reason: String?) throws(MigrationError) -> [HandChange] {
        try withMigrationLock { () throws(MigrationError) in
            let entries = try entries(required: true) ?? []
            let records = try readHistory(legacyFallback: false).records
            if !records.isEmpty, !allowExistingHistory {
                throw MigrationError(
                    code: .historyMismatch,
                    message: "the database has a migration history already (\(records.count) row\(records.count == 1 ? "" : "s"), "
                        + "newest \(records.map(\.version).max() ?? 0)); baseline is for a database whose schema existed before migrator",
                    hint: "pass --allow-existing-history to record only the versions up to \(version) that are not in it"
                )
            }
            let recorded = Set(records.map(\.version))
            let due = entries.filter { $0.version <= version && !recorded.contains($0.version) }
            guard entries.contains(where: { $0.version == version }) || due.contains(where: { $0.version <= version }) else {
                throw MigrationError(code: .invalidInput, message: "no migration file numbered \(version) or below in the folder; nothing to baseline")
            }
            var files: [MigrationFile] = []
            for entry in due { files.append(try entry.load()) }
            let changes = files.map { HandChange(action: "baseline", version: $0.version, name: $0.name, oldChecksum: nil, newChecksum: $0.checksum) }
            try handTransaction(changes, reason: reason) { () throws(PostgresError) in
                for file in files {
                    try connection.query(
                        """
                        INSERT INTO \(history.table) (version, name, checksum, transactional, state, kind, irreversible)
                        VALUES ($1, $2, $3, $4, 'applied', 'baseline', $5)
                        """,
                        [file.version, file.name, file.checksum, file.transactional, file.irreversible]
                    )
                }
            }
            return changes
        }
    }

    /// Accepts the current checksum of applied files changed on purpose, and clears the record of migrations
    /// outside a transaction that failed part way (so that they run again from their first statement). `versions`
    /// nil: every such migration.
    public func repair(versions: [Int64]?, reason: String?) throws(MigrationError) -> [HandChange] {
        try withMigrationLock { () throws(MigrationError) in
            let entries = try entries(required: true) ?? []
            let plan = try plan(entries: entries, target: nil)
            let statuses = Dictionary(plan.statuses.map { ($0.version, $0) }, uniquingKeysWith: { first, _ in first })
            var changes: [HandChange] = []
            let wanted = versions ?? plan.statuses.filter { $0.state == .changed || $0.state == .failed }.map(\.version)
            var problems: [Diagnostic] = []
            for version in wanted {
                guard let status = statuses[version] else {
                    problems.append(Diagnostic(message: "version \(version) is neither in the folder nor in the history"))
                    continue
                }
                let label = MigrationStatus.label(version, status.name)
                switch status.state {
                case .changed where status.supersededBy == nil:
                    changes.append(HandChange(action: "accept-checksum", version: version, name: status.name, oldChecksum: status.recordedChecksum, newChecksum: status.checksum))
                case .failed:
                    changes.append(HandChange(action: "clear-failed", version: version, name: status.name, oldChecksum: status.recordedChecksum, newChecksum: nil))
                default:
                    problems.append(Diagnostic(
                        message: "\(label) is \(status.state.rawValue): repair accepts a changed checksum or clears a failed migration",
                        location: status.file.map { SourceLocation(file: $0) }
                    ))
                }
            }
            if !problems.isEmpty {
                throw MigrationError(code: .historyMismatch, diagnostics: problems, notes: ["nothing was repaired"])
            }
            try handTransaction(changes, reason: reason) { () throws(PostgresError) in
                for change in changes {
                    if change.action == "accept-checksum" {
                        try connection.query("UPDATE \(history.table) SET checksum = $2 WHERE version = $1", [change.version, change.newChecksum])
                    } else {
                        try connection.query("DELETE FROM \(history.table) WHERE version = $1 AND state = 'failed'", [change.version])
                    }
                }
            }
            return changes
        }
    }

    /// Records a migration of the folder as applied without running it (`kind` marked).
    public func markApplied(_ version: Int64, reason: String?) throws(MigrationError) -> HandChange {
        try withMigrationLock { () throws(MigrationError) in
            let entries = try entries(required: true) ?? []
            guard let entry = entries.first(where: { $0.version == version }) else {
                throw MigrationError(code: .invalidInput, message: "no migration file numbered \(version) in the folder")
            }
            let records = try readHistory(legacyFallback: false).records
            if let record = records.first(where: { $0.version == version }) {
                throw MigrationError(
                    code: .historyMismatch,
                    message: "\(MigrationStatus.label(version, record.name)) is in the history already (\(record.state.rawValue))",
                    hint: record.state == .failed ? "clear it with migrator repair, or let migrate resume it" : nil
                )
            }
            let file = try entry.load()
            let change = HandChange(action: "mark-applied", version: version, name: file.name, oldChecksum: nil, newChecksum: file.checksum)
            try handTransaction([change], reason: reason) { () throws(PostgresError) in
                try connection.query(
                    """
                    INSERT INTO \(history.table) (version, name, checksum, transactional, state, kind, irreversible)
                    VALUES ($1, $2, $3, $4, 'applied', 'marked', $5)
                    """,
                    [file.version, file.name, file.checksum, file.transactional, file.irreversible]
                )
            }
            return change
        }
    }

    /// Deletes a migration's history row without reversing anything: the next migrate runs it again.
    public func markPending(_ version: Int64, reason: String?) throws(MigrationError) -> HandChange {
        try withMigrationLock { () throws(MigrationError) in
            let records = try readHistory(legacyFallback: false).records
            guard let record = records.first(where: { $0.version == version }) else {
                throw MigrationError(code: .invalidInput, message: "version \(version) is not in the history; nothing to mark pending")
            }
            let change = HandChange(action: "mark-pending", version: version, name: record.name, oldChecksum: record.checksum, newChecksum: nil)
            try handTransaction([change], reason: reason) { () throws(PostgresError) in
                try connection.query("DELETE FROM \(history.table) WHERE version = $1", [version])
            }
            return change
        }
    }

    /// Runs `body` and writes an audit row per change, in one transaction.
    private func handTransaction(_ changes: [HandChange], reason: String?, _ body: () throws(PostgresError) -> Void) throws(MigrationError) {
        guard !changes.isEmpty else { return }
        do throws(PostgresError) {
            try connection.query("BEGIN")
            try body()
            for change in changes {
                try connection.query(
                    """
                    INSERT INTO \(history.auditTable) (action, version, name, old_checksum, new_checksum, reason)
                    VALUES ($1, $2, $3, $4, $5, $6)
                    """,
                    [change.action, change.version, change.name, change.oldChecksum, change.newChecksum, reason]
                )
            }
            try connection.query("COMMIT")
        } catch {
            if connection.isConnected, connection.transactionStatus != .idle { _ = try? connection.query("ROLLBACK") }
            throw MigrationError(
                code: error.code == .connectionLost ? .connectionFailed : .databaseError,
                message: "could not change the history (\(history.table)): \(error.message); nothing was changed"
            )
        }
    }
}
