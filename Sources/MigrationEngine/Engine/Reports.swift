/// What `migrate` did, for the summary and `--json`.
public struct MigrateReport: Sendable, Codable {
    public struct Applied: Sendable, Codable, Equatable {
        public var version: Int64
        public var name: String
        public var file: String
        public var transactional: Bool
        public var statements: Int
        /// Outside a transaction: the statement this run started from, when it resumed an earlier failure (1-based).
        public var resumedAtStatement: Int?
        public var durationMs: Double
    }

    public var dryRun: Bool
    /// Migrations applied by this run; with `--dry-run`, the ones that would be.
    public var applied: [Applied]
    public var hooks: [HookReport]
    /// Migrations still pending after the run (beyond `--to`).
    public var pendingAfter: Int
    /// Applied migrations numbered above every file of the folder (`0012_name`), accepted with
    /// `--allow-newer-database`: nothing was applied.
    public var newerThanFolder: [String] = []
    /// With `--to` below the newest applied migration: the migrations reversed (with `--dry-run`, that would be),
    /// newest first.
    public var reverted: [Applied] = []
    public var lockWaitMs: Double
    public var durationMs: Double
    /// Requests sent to the server in this run.
    public var roundTrips: Int
    public var database: String
}

/// Every migration's state, for `status` and `verify`.
public struct StatusReport: Sendable, Codable {
    public var migrations: [MigrationStatus]
    /// Everything that would stop `migrate` (changed, missing, out of order).
    public var problems: [Diagnostic]
    /// What each post-migrate hook reports (the role version, for the role sync).
    public var hooks: [HookStatus]
    /// What the reader should know that is not a problem (no migrations folder; a layout an earlier release made).
    public var notes: [String] = []
    /// INVALID indexes and constraints not yet validated, anywhere in the database.
    public var hazards: [SchemaHazard] = []
    public var roundTrips: Int
    public var database: String

    public func count(_ state: MigrationStatus.State) -> Int { migrations.count { $0.state == state } }

    /// True when nothing is pending, changed, missing or failed, every hook is up to date, and no index is INVALID
    /// (a constraint not validated yet is said, not counted: adding it `NOT VALID` and validating it in a later
    /// migration is the safe way to add one).
    public var isClean: Bool {
        migrations.allSatisfy { $0.state == .applied || $0.state == .superseded } && problems.isEmpty
            && hooks.allSatisfy(\.upToDate) && !hazards.contains { $0.kind == .invalidIndex }
    }
}
