import Logging
import MigrationEngine
import Postgres

/// The post-migrate hook: after the migrations, under the engine's lock, sync the roles when their version changed.
public struct RoleSyncHook: PostMigrateHook {
    public let name = "role-sync"
    public var catalogue: RoleCatalogue
    public var force: Bool

    public init(catalogue: RoleCatalogue, force: Bool = false) {
        self.catalogue = catalogue
        self.force = force
    }

    public func run(_ context: HookContext) throws -> HookReport {
        let synchronizer = RoleSynchronizer(catalogue: catalogue)
        if context.dryRun {
            // The migrations were not applied, so the tables the sync needs may not exist yet: only compare versions.
            let stored = (try? RoleSynchronizer.storedVersion(context.connection)) ?? nil
            let current = catalogue.version
            let summary = stored?.version == current && !force
                ? "role catalogue unchanged (version \(current.prefix(12)))"
                : "would sync the roles to version \(current.prefix(12)) (stored: \(stored?.version.prefix(12) ?? "none"))"
            return HookReport(name: name, summary: summary, details: ["version": current])
        }
        if context.pendingMigrations > 0, try !Self.tablesExist(context.connection) {
            // A staged deploy (`--to`) stopped before the migrations that create the role tables.
            return HookReport(
                name: name,
                summary: "skipped: the role tables are created by migrations that are still pending",
                details: ["version": catalogue.version, "mode": "skipped"]
            )
        }
        let report = try synchronizer.sync(context.connection, options: .init(force: force), logger: context.logger)
        let totals = report.totals
        return HookReport(name: name, summary: report.summary, details: [
            "mode": report.mode.rawValue, "version": report.version, "previousVersion": report.previousVersion ?? "",
            "projects": "\(report.projects)", "groupsCreated": "\(totals.groupsCreated)",
            "groupPermissionsAdded": "\(totals.groupPermissionsAdded)", "groupPermissionsRemoved": "\(totals.groupPermissionsRemoved)",
            "objectPermissionsAdded": "\(totals.objectPermissionsAdded)", "objectPermissionsRemoved": "\(totals.objectPermissionsRemoved)",
            "roundTrips": "\(report.roundTrips)", "durationMs": "\(Int(report.durationMs))",
        ])
    }

    static func tablesExist(_ connection: Connection) throws -> Bool {
        try connection.query("SELECT to_regclass('role_schema_version') IS NOT NULL AS present").first?.bool("present") == true
    }

    public func status(_ connection: Connection) throws -> HookStatus? {
        let stored = try RoleSynchronizer.storedVersion(connection)
        let current = catalogue.version
        let upToDate = stored?.version == current
        return HookStatus(
            name: name, upToDate: upToDate,
            summary: upToDate
                ? "role version \(current.prefix(12)) is current"
                : "role version stored: \(stored?.version.prefix(12) ?? "none"), current: \(current.prefix(12)); run migrate or update-roles",
            details: ["stored": stored?.version ?? "", "current": current]
        )
    }
}
