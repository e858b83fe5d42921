/// How a run behaves. The command line fills this in; tests build it directly.
public struct MigratorOptions: Sendable {
    /// The migrations folder, as the user wrote it (paths in messages are shown the same way). Nil: there is none
    /// (a sidecar on a database whose schema another tool owns); `status` then lists the history without comparing
    /// files, and `migrate` refuses.
    public var migrationsPath: String?
    /// Where migrator keeps its own objects.
    public var schema: OwnSchema = .default
    /// Apply up to and including this version only.
    public var target: Int64?
    /// Plan and report, change nothing.
    public var dryRun: Bool
    /// How long to wait for another runner's lock before giving up.
    public var lockTimeout: Duration
    /// `lock_timeout` for the migrations' statements (zero turns it off): a migration that waits behind an
    /// application's long transaction fails instead of queueing every other query behind itself.
    public var ddlLockTimeout: Duration
    /// How long a migration whose lock was not granted within ``ddlLockTimeout`` (SQLSTATE 55P03, or a deadlock) is
    /// retried, with backoff, counted from its first try: a transactional file whole, after its rollback; outside a
    /// transaction the statement alone. Zero: the first refusal fails the run.
    public var ddlLockRetryBudget: Duration
    /// A statement that has run this long gets its progress reported (from PostgreSQL's progress views, through a
    /// second connection), and again every time as long; zero turns the reports off. Who blocks it is watched in
    /// any case.
    public var progressEvery: Duration
    /// Told what the running statement is doing each time its progress is reported, and nil when it ends (the
    /// daemon puts it in `/readyz`'s reason during its start-up migrate).
    public var activity: @Sendable (String?) -> Void = { _ in }
    /// `statement_timeout`; nil runs with none, whatever the server or role sets.
    public var statementTimeout: Duration?
    /// Apply pending migrations numbered below the newest applied one instead of refusing.
    public var allowOutOfOrder: Bool
    /// Start on a database that has migrations newer than the folder (numbered above every file: a rolled-back
    /// release): nothing is applied or reverted, the run warns and succeeds.
    public var allowNewerDatabase = false
    /// A tenant's schema (schema-per-tenant fleets): the session's `search_path` is this schema, then `public`, so
    /// that the migrations create and alter the tenant's tables. Checked as an identifier (``SQLIdentifier``) and
    /// spliced quoted; nil leaves the server's `search_path` alone.
    public var searchPath: String?
    /// How often to say who holds the lock while waiting.
    public var lockReportInterval: Duration
    /// Asked while waiting for the lock and before each migration and hook: once it returns true the run ends with
    /// ``MigrationError/Code/stopped``, cutting nothing short (the daemon sets it to its SIGTERM flag).
    public var stopRequested: @Sendable () -> Bool = { false }
    /// Called with the files a run is about to apply (a dry run: would apply), after the plan and before the first of
    /// them (`migrate --lint` checks them here). Throwing ends the run with nothing applied.
    public var beforeApplying: @Sendable ([MigrationFile]) throws(MigrationError) -> Void = { _ in }

    /// The defaults, declared once (the CLI's options and the README name the same values).
    public static let defaultLockTimeout = Duration.seconds(300)
    public static let defaultDDLLockTimeout = Duration.seconds(2)
    public static let defaultDDLLockRetryBudget = Duration.seconds(60)
    public static let defaultProgressEvery = Duration.seconds(5)

    public init(
        migrationsPath: String? = "./Migrations",
        target: Int64? = nil,
        dryRun: Bool = false,
        lockTimeout: Duration = defaultLockTimeout,
        ddlLockTimeout: Duration = defaultDDLLockTimeout,
        ddlLockRetryBudget: Duration = defaultDDLLockRetryBudget,
        progressEvery: Duration = defaultProgressEvery,
        statementTimeout: Duration? = nil,
        allowOutOfOrder: Bool = false,
        lockReportInterval: Duration = .seconds(5)
    ) {
        self.migrationsPath = migrationsPath
        self.target = target
        self.dryRun = dryRun
        self.lockTimeout = lockTimeout
        self.ddlLockTimeout = ddlLockTimeout
        self.ddlLockRetryBudget = ddlLockRetryBudget
        self.progressEvery = progressEvery
        self.statementTimeout = statementTimeout
        self.allowOutOfOrder = allowOutOfOrder
        self.lockReportInterval = lockReportInterval
    }
}
