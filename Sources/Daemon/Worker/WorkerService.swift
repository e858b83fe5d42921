import Dispatch
import Logging
import MigrationEngine
import ServiceLifecycle

/// The worker as a ServiceLifecycle service: a graceful shutdown or a cancellation asks it to stop, and it returns
/// once its transaction is over.
///
/// The worker itself is made on, and never leaves, a serial queue of its own: libpq blocks, and a blocked thread of
/// Swift's cooperative pool would stall every task.
struct WorkerService: Service {
    let configuration: DaemonConfiguration
    let state: DaemonState
    let metrics: DaemonMetrics
    let logger: Logger

    func run() async throws {
        let state = state
        let logger = logger
        try await withGracefulShutdownHandler {
            try await withTaskCancellationHandler {
                try await runOnOwnQueue()
            } onCancel: {
                state.requestStop()
            }
        } onGracefulShutdown: {
            logger.info("shutdown requested; finishing the transaction in progress")
            state.requestStop()
        }
    }

    private func runOnOwnQueue() async throws {
        let queue = DispatchQueue(label: "migrator.worker")
        let (configuration, state, metrics, logger) = (configuration, state, metrics, logger)
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
            queue.async {
                let worker = ProjectSyncWorker(
                    configuration: configuration, state: state, metrics: metrics, logger: logger, queue: queue
                )
                do throws(MigrationError) {
                    try worker.run()
                    continuation.resume()
                } catch {
                    continuation.resume(throwing: error)
                }
            }
        }
    }
}

/// swift-service-lifecycle logs a service that threw by its description: a name, not every field of the
/// configuration.
extension WorkerService: CustomStringConvertible {
    var description: String { "WorkerService" }
}
