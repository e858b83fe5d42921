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

    /// How long to wait for the database on start (only connection errors are retried).
    public var waitTimeout: Duration = defaultWaitTimeout
    /// How often the reconciler compares every project's roles with the catalogue.
    public var reconcileInterval: Duration = defaultReconcileInterval
    /// Notifications that arrive within this gap of the previous one join its batch…
    public var batchGap: Duration = .milliseconds(20)
    /// …until the batch is this old, so that a steady stream still gets synced promptly.
    public var batchMaxDelay: Duration = .milliseconds(200)
    /// How long a batch waits for the lock held by another runner before the daemon tries again later.
    public var batchLockWait: Duration = .seconds(2)
    /// Where the HTTP endpoints listen.
    public var httpAddress: HTTPAddress = HTTPAddress(host: "0.0.0.0", port: 8080)

    public init(connection: ConnectionConfig, migrator: MigratorOptions, catalogue: RoleCatalogue) {
        self.connection = connection
        self.migrator = migrator
        self.catalogue = catalogue
    }
}
