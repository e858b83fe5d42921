import CoreMetrics
@testable import Daemon
import Hummingbird
import HummingbirdTesting
import NIOCore
import Prometheus
import Testing

@Suite("HTTP endpoints: /healthz, /readyz and /metrics read the published state")
struct HTTPEndpointsTests {
    struct Readiness: Sendable, CustomTestStringConvertible {
        var name: String
        var change: @Sendable (inout DaemonState.Snapshot) -> Void
        var status: HTTPResponse.Status
        var body: String
        var testDescription: String { name }
    }

    /// Everything a ready daemon has; each case changes one thing from it.
    static func ready(_ state: inout DaemonState.Snapshot) {
        state.phase = .running
        state.databaseReachable = true
        state.pendingMigrations = 0
        state.reconciled = true
    }

    static let readiness: [Readiness] = [
        Readiness(name: "starting", change: { $0.phase = .starting }, status: .serviceUnavailable, body: "not ready: starting\n"),
        Readiness(
            name: "waiting for the database", change: { $0.phase = .waitingForDatabase; $0.lastError = "connection refused" },
            status: .serviceUnavailable, body: "not ready: waiting for the database: connection refused\n"
        ),
        Readiness(name: "migrating", change: { $0.phase = .migrating }, status: .serviceUnavailable, body: "not ready: applying migrations\n"),
        Readiness(
            name: "database unreachable", change: { ready(&$0); $0.databaseReachable = false; $0.lastError = "server closed the connection" },
            status: .serviceUnavailable, body: "not ready: database unreachable: server closed the connection\n"
        ),
        Readiness(
            name: "history disagrees", change: { ready(&$0); $0.historyProblems = ["0003_users.sql changed after it was applied"] },
            status: .serviceUnavailable, body: "not ready: migration history disagrees with the folder: 0003_users.sql changed after it was applied\n"
        ),
        Readiness(
            name: "status not read", change: { ready(&$0); $0.pendingMigrations = nil },
            status: .serviceUnavailable, body: "not ready: migration status not read yet\n"
        ),
        Readiness(name: "one pending", change: { ready(&$0); $0.pendingMigrations = 1 }, status: .serviceUnavailable, body: "not ready: 1 migration pending\n"),
        Readiness(name: "five pending", change: { ready(&$0); $0.pendingMigrations = 5 }, status: .serviceUnavailable, body: "not ready: 5 migrations pending\n"),
        Readiness(
            name: "role version", change: { ready(&$0); $0.roleVersionProblem = "the stored role version abc is not this daemon's" },
            status: .serviceUnavailable, body: "not ready: the stored role version abc is not this daemon's\n"
        ),
        Readiness(
            name: "reconcile failed", change: { ready(&$0); $0.reconcileProblem = "the last reconcile failed: boom" },
            status: .serviceUnavailable, body: "not ready: the last reconcile failed: boom\n"
        ),
        Readiness(
            name: "first reconcile", change: { ready(&$0); $0.reconciled = false },
            status: .serviceUnavailable, body: "not ready: the first reconcile is running\n"
        ),
        Readiness(name: "stopping", change: { ready(&$0); $0.phase = .stopping }, status: .serviceUnavailable, body: "not ready: shutting down\n"),
        Readiness(name: "ready", change: { ready(&$0) }, status: .ok, body: "ready\n"),
        Readiness(
            name: "ready with a notice", change: { ready(&$0); $0.rolesNotice = "2 role groups left out" },
            status: .ok, body: "ready\nnote: 2 role groups left out\n"
        ),
    ]

    @Test("/readyz: 200 ready, or 503 with the first reason that applies", arguments: readiness)
    func readyz(_ item: Readiness) async throws {
        let state = DaemonState()
        state.update(item.change)
        let app = Application(router: HTTPEndpoints.router(state: state, registry: PrometheusCollectorRegistry()))
        try await app.test(.router) { client in
            try await client.execute(uri: "/readyz", method: .get) { response in
                #expect(response.status == item.status)
                #expect(String(buffer: response.body) == item.body)
                #expect(response.headers[.contentType] == "text/plain; charset=utf-8")
            }
        }
    }

    @Test("/healthz: 200 while the process runs, 503 once it shuts down")
    func healthz() async throws {
        let state = DaemonState()
        let app = Application(router: HTTPEndpoints.router(state: state, registry: PrometheusCollectorRegistry()))
        try await app.test(.router) { client in
            for phase in [DaemonState.Phase.starting, .waitingForDatabase, .migrating, .running] {
                state.update { $0.phase = phase }
                try await client.execute(uri: "/healthz", method: .get) { response in
                    #expect(response.status == .ok, "\(phase)")
                    #expect(String(buffer: response.body) == "ok\n")
                }
            }
            state.update { $0.phase = .stopping }
            try await client.execute(uri: "/healthz", method: .get) { response in
                #expect(response.status == .serviceUnavailable)
            }
        }
    }

    @Test("/metrics: the daemon's own registry in Prometheus text, over a real socket")
    func metrics() async throws {
        let registry = PrometheusCollectorRegistry()
        let metrics = DaemonMetrics(factory: PrometheusMetricsFactory(registry: registry))
        metrics.ready.record(1)
        metrics.notificationsReceived.increment(by: 3)
        metrics.syncCompleted(trigger: "notify", result: "ok")
        metrics.syncDuration(trigger: "notify").recordMilliseconds(12)
        // Another daemon's registry (another test's) stays apart: nothing goes through a global metrics system.
        DaemonMetrics(factory: PrometheusMetricsFactory(registry: PrometheusCollectorRegistry())).reconnects.increment(by: 9)

        let app = Application(router: HTTPEndpoints.router(state: DaemonState(), registry: registry))
        try await app.test(.live) { client in
            try await client.execute(uri: "/metrics", method: .get) { response in
                #expect(response.status == .ok)
                #expect(response.headers[.contentType] == "text/plain; version=0.0.4; charset=utf-8")
                let samples = Self.samples(String(buffer: response.body))
                #expect(samples["migrator_ready"] == 1)
                #expect(samples["migrator_notifications_received_total"] == 3)
                #expect(samples[#"migrator_role_syncs_total{trigger="notify",result="ok"}"#] == 1)
                #expect(samples[#"migrator_role_sync_duration_seconds_count{trigger="notify"}"#] == 1)
                #expect(samples["migrator_reconnects_total"] == 0)
            }
        }
    }

    /// "name{labels}" → value, for the sample lines of an exposition.
    static func samples(_ text: String) -> [String: Double] {
        var samples: [String: Double] = [:]
        for line in text.split(separator: "\n") where !line.hasPrefix("#") {
            guard let space = line.lastIndex(of: " "), let value = Double(line[line.index(after: space)...]) else { continue }
            samples[String(line[..<space])] = value
        }
        return samples
    }
}
