import Hummingbird
import Logging
import MigrationEngine
import NIOCore
import Prometheus
import ServiceLifecycle
import SystemSupport
import UnixSignals

/// `migrator serve`: the HTTP endpoints and the worker in one ServiceLifecycle group. SIGTERM or SIGINT stops the
/// worker between transactions, then the HTTP server.
public enum Daemon {
    /// Runs until a signal stops it (returns) or the start-up fails (throws the ``MigrationError`` that ended it).
    /// - Parameters:
    ///   - registry: where the daemon's metrics are kept and what `/metrics` exports. The executable makes it, and
    ///     bootstraps `MetricsSystem` with it once; the daemon's own metrics are made through it directly.
    public static func run(
        _ configuration: DaemonConfiguration, registry: PrometheusCollectorRegistry, logger: Logger
    ) async throws {
        let state = DaemonState()
        let metrics = DaemonMetrics(factory: PrometheusMetricsFactory(registry: registry))

        var httpLogger = logger
        // Hummingbird logs each request at debug; keep those out unless asked for.
        if httpLogger.logLevel > .debug { httpLogger.logLevel = .warning }
        let address = configuration.httpAddress
        let app = Application(
            router: HTTPEndpoints.router(state: state, registry: registry),
            configuration: ApplicationConfiguration(address: .hostname(address.host, port: address.port)),
            onServerRunning: { channel in
                logger.info("http listening", metadata: [
                    "http.host": "\(address.host)", "http.port": "\(channel.localAddress?.port ?? address.port)",
                    "http.endpoints": "/healthz /readyz /metrics",
                ])
            },
            logger: httpLogger
        )
        // Shut down in reverse order: the worker first (it finishes its transaction), then the HTTP server.
        let group = ServiceGroup(configuration: ServiceGroupConfiguration(
            services: [
                .init(service: app, successTerminationBehavior: .gracefullyShutdownGroup, failureTerminationBehavior: .gracefullyShutdownGroup),
                .init(
                    service: WorkerService(configuration: configuration, state: state, metrics: metrics, logger: logger),
                    successTerminationBehavior: .gracefullyShutdownGroup,
                    failureTerminationBehavior: .gracefullyShutdownGroup
                ),
            ],
            gracefulShutdownSignals: [.sigterm, .sigint],
            logger: httpLogger
        ))
        try await group.run()
        logger.info("stopped")
    }
}
