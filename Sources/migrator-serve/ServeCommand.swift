import ArgumentParser
import Daemon
import Metrics
import MigrationEngine
import MigratorCLI
import Prometheus
import RoleSync
import SystemSupport

/// `migrator serve`, the binary `migrator-serve`: `migrator` execs it for `serve` (see `CommandLineTool`), so that
/// only the daemon loads its HTTP server, SwiftNIO and full Foundation.
@main
struct ServeCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "migrator serve",
        abstract: "Run as a daemon: wait for the database, migrate, then keep every project's roles in step.",
        discussion: """
            New projects are found by polling the project table past an id watermark every --poll-interval (no \
            trigger fires on INSERT), renamed and deleted ones from the NOTIFYs of migrator's triggers; they are \
            synced in bounded batches. A reconcile on start, after a reconnect and every --reconcile-interval catches anything missed. HTTP: \
            /healthz, /readyz (503 with the reason when not ready), /metrics (Prometheus text). SIGTERM or SIGINT: \
            the transaction in progress finishes, the lock is released, exit 0. A failed start-up exits with the \
            migrate exit codes.
            """
    )

    @OptionGroup var global: GlobalOptions
    @OptionGroup var runOptions: RunOptions
    @OptionGroup var roles: RolesOptions

    @Flag(name: .customLong("no-migrate"), help: "Do not migrate on start; only watch and sync (env: MIGRATOR_NO_MIGRATE=1).")
    var noMigrate = false

    @Flag(name: .customLong("force-roles"), help: "On the start-up migrate, reconcile every project's roles even when the role version is unchanged (env: MIGRATOR_FORCE_ROLES=1).")
    var forceRoles = false

    @Option(
        name: .customLong("reconcile-interval"),
        help: ArgumentHelp("How often every project is compared with the catalogue, e.g. 60s, 5m (env: MIGRATOR_RECONCILE_INTERVAL; default 60s).", valueName: "duration")
    )
    var reconcileInterval: DurationArgument?

    @Option(
        name: .customLong("poll-interval"),
        help: ArgumentHelp("How often the project table is polled for new projects, e.g. 500ms, 2s (env: MIGRATOR_POLL_INTERVAL; default 500ms).", valueName: "duration")
    )
    var pollInterval: DurationArgument?

    @Option(
        name: .customLong("wait-timeout"),
        help: ArgumentHelp("How long to wait for the database on start; only connection errors are retried (env: MIGRATOR_WAIT_TIMEOUT; default 60s).", valueName: "duration")
    )
    var waitTimeout: DurationArgument?

    @Option(
        name: .customLong("http-address"),
        help: ArgumentHelp("host:port for /healthz, /readyz and /metrics; port 0 picks a free one (env: MIGRATOR_HTTP_ADDRESS; default 0.0.0.0:8080).", valueName: "address")
    )
    var httpAddress: String?

    @Option(
        name: .customLong("sync-batch-size"),
        help: ArgumentHelp("At most this many new, notified or drifted projects per sync transaction; the lock is free between two (env: MIGRATOR_SYNC_BATCH_SIZE; default \(DaemonConfiguration.defaultSyncBatchSize)).", valueName: "n")
    )
    var syncBatchSize: Int?

    @Option(
        name: .customLong("sync-time-budget"),
        help: ArgumentHelp("A sync transaction that took longer makes the next one smaller, to fit (env: MIGRATOR_SYNC_TIME_BUDGET; default 2s).", valueName: "duration")
    )
    var syncTimeBudget: DurationArgument?

    static let syncTimeBudgetSetting = DurationSetting(
        option: "--sync-time-budget", env: "MIGRATOR_SYNC_TIME_BUDGET", defaultValue: DaemonConfiguration.defaultSyncTimeBudget
    )

    /// The batch bounds: the option, else the variable, else the default.
    private func syncBounds() throws -> (size: Int, budget: Duration) {
        var size = DaemonConfiguration.defaultSyncBatchSize
        if let syncBatchSize {
            size = syncBatchSize
        } else if let text = GlobalOptions.environment["MIGRATOR_SYNC_BATCH_SIZE"] {
            guard let parsed = Int(text) else {
                throw ValidationError("MIGRATOR_SYNC_BATCH_SIZE (for --sync-batch-size) has an invalid value '\(text)'; give a number of projects")
            }
            size = parsed
        }
        guard size >= 1 else { throw ValidationError("--sync-batch-size (MIGRATOR_SYNC_BATCH_SIZE) must be at least 1") }
        let budget = try Self.syncTimeBudgetSetting.resolved(syncTimeBudget)
        guard budget >= .milliseconds(10) else {
            throw ValidationError("--sync-time-budget (MIGRATOR_SYNC_TIME_BUDGET) must be at least 10ms")
        }
        return (size, budget)
    }

    func validate() throws {
        if try resolvedNoMigrate && resolvedForceRoles {
            throw ValidationError("--force-roles applies to the start-up migrate, which --no-migrate turns off; pass one")
        }
    }

    // Options win over variables (see MigrateCommand).
    var resolvedNoMigrate: Bool { get throws { try noMigrate || !forceRoles && environmentFlag("MIGRATOR_NO_MIGRATE") == true } }
    var resolvedForceRoles: Bool { get throws { try forceRoles || !noMigrate && environmentFlag("MIGRATOR_FORCE_ROLES") == true } }

    private func daemonSettings() throws -> (reconcile: Duration, poll: Duration, wait: Duration, address: HTTPAddress) {
        let reconcile = try Self.reconcileSetting.resolved(reconcileInterval)
        guard reconcile >= .milliseconds(100) else {
            throw ValidationError("--reconcile-interval (MIGRATOR_RECONCILE_INTERVAL) must be at least 100ms")
        }
        let poll = try Self.pollSetting.resolved(pollInterval)
        guard poll >= .milliseconds(10) else {
            throw ValidationError("--poll-interval (MIGRATOR_POLL_INTERVAL) must be at least 10ms")
        }
        let wait = try DurationSetting.serveWaitTimeout.resolved(waitTimeout)
        let address = try HTTPAddressOption.resolve(httpAddress)
        return (reconcile, poll, wait, address)
    }

    func run() async throws {
        let logger = try global.makeLogger()
        let settings = try daemonSettings()
        let bounds = try syncBounds()
        var configuration = DaemonConfiguration(
            connection: global.connectionConfig,
            // A sidecar (--no-migrate) needs no folder; it still compares one that is there with the history.
            migrator: try runOptions.options(
                migrations: try resolvedNoMigrate ? global.optionalMigrations : global.resolvedMigrations,
                schema: global.resolvedSchema
            ),
            catalogue: try roles.catalogue(json: false)
        )
        configuration.migrate = try !resolvedNoMigrate
        configuration.forceRoles = try resolvedForceRoles
        configuration.reconcileInterval = settings.reconcile
        configuration.pollInterval = settings.poll
        configuration.waitTimeout = settings.wait
        configuration.httpAddress = settings.address
        configuration.syncBatchSize = bounds.size
        configuration.syncTimeBudget = bounds.budget
        // The process's one metrics system; /metrics exports this registry.
        let registry = PrometheusCollectorRegistry()
        MetricsSystem.bootstrap(PrometheusMetricsFactory(registry: registry))
        do {
            try await Daemon.run(configuration, registry: registry, logger: logger)
        } catch let error as MigrationError {
            throw Output.fail(error, json: false).exitCode
        } catch {
            Output.printError("error: the daemon stopped: \(error)")
            throw ExitStatus.migrationFailed.exitCode
        }
    }
}

extension ServeCommand {
    static func main() async {
        await CommandLineTool.run(ServeCommand.self)
    }

    static let reconcileSetting = DurationSetting(
        option: "--reconcile-interval", env: "MIGRATOR_RECONCILE_INTERVAL",
        defaultValue: DaemonConfiguration.defaultReconcileInterval
    )

    static let pollSetting = DurationSetting(
        option: "--poll-interval", env: "MIGRATOR_POLL_INTERVAL", defaultValue: DaemonConfiguration.defaultPollInterval
    )
}
