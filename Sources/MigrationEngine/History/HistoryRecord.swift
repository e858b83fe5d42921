import FoundationEssentials

/// One row of the engine's history table.
public struct HistoryRecord: Sendable, Codable, Equatable {
    public enum State: String, Sendable, Codable {
        case applied
        /// A migration outside a transaction that stopped part way (an error, or the runner was killed).
        case failed
    }

    public var version: Int64
    public var name: String
    public var checksum: String
    public var transactional: Bool
    public var state: State
    public var appliedAt: String
    public var appliedBy: String
    public var durationMs: Double
    /// Outside a transaction: how many statements completed, and each one's checksum, so a rerun can resume.
    public var statementsDone: Int?
    public var statementChecksums: [String]?
    /// 1-based index of the statement that failed or was interrupted.
    public var failedStatement: Int?
    public var error: String?
    /// Set when migrator's own objects took over what this migration did (a migration an earlier release shipped):
    /// the row needs no file any more. Says by what.
    public var superseded: String?
    /// How the row came to be: `migration` (applied by a run), `baseline` (recorded by `baseline` without running),
    /// `marked` (by `mark-applied`).
    public var kind: String = "migration"

    /// The reverse of the migration as it was when the migration was applied.
    public struct Down: Sendable, Codable, Equatable {
        public var sql: String
        public var checksum: String
        public var transactional: Bool
    }

    public var down: Down?
    /// The file said `-- migrator:irreversible`.
    public var irreversible: Bool = false
}
