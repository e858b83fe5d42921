import CoreMetrics
import Metrics

/// The daemon's metrics, through swift-metrics (exported in Prometheus text by ``HTTPEndpoints``).
struct DaemonMetrics: Sendable {
    let migrationsApplied = Gauge(label: "migrator_migrations_applied")
    let migrationsPending = Gauge(label: "migrator_migrations_pending")
    let notificationsReceived = Counter(label: "migrator_notifications_received_total")
    let projectsSynced = Counter(label: "migrator_projects_synced_total")
    let rowsWritten = Counter(label: "migrator_role_rows_written_total")
    let reconnects = Counter(label: "migrator_reconnects_total")
    let reconciles = Counter(label: "migrator_reconciles_total")
    let driftedProjects = Counter(label: "migrator_reconcile_drifted_projects_total")
    /// Role groups whose name another group has (left as they are), as the last reconcile counted them.
    let blockedGroups = Gauge(label: "migrator_role_groups_name_taken")
    /// Role groups left out because their name is longer than auth_group.name holds, as the last reconcile counted.
    let tooLongGroups = Gauge(label: "migrator_role_groups_name_too_long")
    let databaseQueries = Counter(label: "migrator_database_queries_total")
    let lastSuccessfulSync = Gauge(label: "migrator_last_successful_sync_timestamp_seconds")
    let ready = Gauge(label: "migrator_ready")

    /// `trigger` is notify or reconcile; `result` ok, error or superseded.
    func syncCompleted(trigger: String, result: String) {
        Counter(label: "migrator_role_syncs_total", dimensions: [("trigger", trigger), ("result", result)]).increment()
    }

    func syncDuration(trigger: String) -> Metrics.Timer {
        Metrics.Timer(label: "migrator_role_sync_duration_seconds", dimensions: [("trigger", trigger)])
    }
}
