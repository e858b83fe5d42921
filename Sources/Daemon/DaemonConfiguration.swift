import MigrationEngine
import Postgres
import RoleSync
import SystemSupport

/// Everything `migrator serve` was told.
public struct DaemonConfiguration: Sendable {
    public var connection: ConnectionConfig
    /// The migrations folder and the runner's timeouts; `lockTimeout` bounds the start-up migrate's wait.
    public var migrator: MigratorOptions
    public var catalogue: RoleCatalogue
    /// Migrate and run the hooks on start.
    public var migrate = true
    /// Reconcile the role sync even when the role version is unchanged, on the start-up migrate.
    public var forceRoles = false
    /// The defaults, declared once (`migrator wait` shares the first, declared with the wait itself).
    public static let defaultWaitTimeout = DatabaseWait.defaultTimeout
    public static let defaultReconcileInterval = Duration.seconds(60)
    public static let defaultPollInterval = Duration.milliseconds(500)
    public static let defaultSyncBatchSize = 1000
    public static let defaultSyncTimeBudget = Duration.seconds(2)

    /// How long to wait for the database on start (only connection errors are retried).
    public var waitTimeout: Duration = defaultWaitTimeout
    /// How often the reconciler compares every project's roles with the catalogue.
    public var reconcileInterval: Duration = defaultReconcileInterval
    /// How often the daemon polls the project table for new projects (no trigger fires on INSERT).
    public var pollInterval: Duration = defaultPollInterval
    /// Notifications that arrive within this gap of the previous one join its batch…
    public var batchGap: Duration = .milliseconds(20)
    /// …until the batch is this old, so that a steady stream still gets synced promptly.
    public var batchMaxDelay: Duration = .milliseconds(200)
    /// How long a batch waits for the lock held by another runner before the daemon tries again later.
    public var batchLockWait: Duration = .seconds(2)
    /// At most this many projects (notified, or found drifted by a reconcile) are synced in one transaction…
    public var syncBatchSize = defaultSyncBatchSize
    /// …and fewer when the last transaction took longer than this: the next one gets what fits. Between two
    /// transactions the lock is free, and a runner seen waiting for it goes first.
    public var syncTimeBudget: Duration = defaultSyncTimeBudget
    /// How long the daemon pauses between two batches for a waiting runner to take the lock: longer than the
    /// longest pause of a runner polling for it (1.5 s).
    public var lockYieldWait: Duration = .seconds(2)
    /// Where the HTTP endpoints listen.
    public var httpAddress: HTTPAddress = HTTPAddress(host: "0.0.0.0", port: 8080)

    public init(connection: ConnectionConfig, migrator: MigratorOptions, catalogue: RoleCatalogue) {
        self.connection = connection
        self.migrator = migrator
        self.catalogue = catalogue
    }
}
