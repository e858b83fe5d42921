import CoreMetrics
import Metrics

/// The daemon's metrics, through swift-metrics (exported in Prometheus text by ``HTTPEndpoints``). Made through the
/// factory they are given, not the global `MetricsSystem`, so that each daemon (and each test) has its own registry.
struct DaemonMetrics: Sendable {
    let factory: any MetricsFactory
    let migrationsApplied: Gauge
    let migrationsPending: Gauge
    /// Applied migrations numbered above every file of this release's folder (`--allow-newer-database`).
    let migrationsNewerThanFolder: Gauge
    let notificationsReceived: Counter
    let projectsSynced: Counter
    let rowsWritten: Counter
    let reconnects: Counter
    let reconciles: Counter
    let driftedProjects: Counter
    /// Role groups whose name another group has (left as they are), as the last reconcile counted them.
    let blockedGroups: Gauge
    /// Role groups left out because their name is longer than auth_group.name holds, as the last reconcile counted.
    let tooLongGroups: Gauge
    /// 1 while the stored role version is a newer catalogue's than this daemon's (it does not sync).
    let catalogueSuperseded: Gauge
    /// Times the daemon paused between two batches so that a runner waiting for the lock got it.
    let lockYields: Counter
    let databaseQueries: Counter
    /// Polls for new projects run, and the new projects they found.
    let polls: Counter
    let projectsPolled: Counter
    /// The poll's watermark: every project with an id at or below it was seen (0 before the first).
    let watermark: Gauge
    /// Projects the daemon holds to sync (found by a poll, a notification or a reconcile), not yet synced.
    let projectsWaiting: Gauge
    let lastSuccessfulSync: Gauge
    let ready: Gauge

    init(factory: any MetricsFactory) {
        self.factory = factory
        migrationsApplied = Gauge(label: "migrator_migrations_applied", factory: factory)
        migrationsPending = Gauge(label: "migrator_migrations_pending", factory: factory)
        migrationsNewerThanFolder = Gauge(label: "migrator_migrations_newer_than_folder", factory: factory)
        notificationsReceived = Counter(label: "migrator_notifications_received_total", factory: factory)
        projectsSynced = Counter(label: "migrator_projects_synced_total", factory: factory)
        rowsWritten = Counter(label: "migrator_role_rows_written_total", factory: factory)
        reconnects = Counter(label: "migrator_reconnects_total", factory: factory)
        reconciles = Counter(label: "migrator_reconciles_total", factory: factory)
        driftedProjects = Counter(label: "migrator_reconcile_drifted_projects_total", factory: factory)
        blockedGroups = Gauge(label: "migrator_role_groups_name_taken", factory: factory)
        tooLongGroups = Gauge(label: "migrator_role_groups_name_too_long", factory: factory)
        catalogueSuperseded = Gauge(label: "migrator_role_catalogue_superseded", factory: factory)
        lockYields = Counter(label: "migrator_lock_yields_total", factory: factory)
        databaseQueries = Counter(label: "migrator_database_queries_total", factory: factory)
        polls = Counter(label: "migrator_project_polls_total", factory: factory)
        projectsPolled = Counter(label: "migrator_projects_polled_total", factory: factory)
        watermark = Gauge(label: "migrator_project_watermark", factory: factory)
        projectsWaiting = Gauge(label: "migrator_projects_waiting", factory: factory)
        lastSuccessfulSync = Gauge(label: "migrator_last_successful_sync_timestamp_seconds", factory: factory)
        ready = Gauge(label: "migrator_ready", factory: factory)
    }

    /// `trigger` is poll, notify or reconcile; `result` ok, error or superseded.
    func syncCompleted(trigger: String, result: String) {
        Counter(label: "migrator_role_syncs_total", dimensions: [("trigger", trigger), ("result", result)], factory: factory)
            .increment()
    }

    func syncDuration(trigger: String) -> Metrics.Timer {
        Metrics.Timer(label: "migrator_role_sync_duration_seconds", dimensions: [("trigger", trigger)], factory: factory)
    }
}
