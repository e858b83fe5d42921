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

    public var ownObjects: OwnObjectsComponent? { RoleObjects.component }

    /// The check of a sync with nothing to do (``RoleSynchronizer/sync(_:options:logger:)`` runs it first unless
    /// forced).
    public func sendAhead(_ connection: Connection, schema: OwnSchema) {
        guard !force else { return }
        RoleTargetResolver.quickStatement(catalogue.target, schema: schema).sendAhead(on: connection)
    }

    public func run(_ context: HookContext) throws -> HookReport {
        let synchronizer = RoleSynchronizer(catalogue: catalogue, schema: context.schema)
        if context.dryRun {
            // The migrations were not applied, so the tables the sync needs may not exist yet: only compare versions.
            let stored = (try? RoleSynchronizer.storedVersion(context.connection, schema: context.schema, legacyFallback: true)) ?? nil
            let current = catalogue.version
            let standing = try? CatalogueStanding.read(
                context.connection, version: current, latest: stored?.version, schema: context.schema.qualified("role_version")
            )
            if case .superseded(let newer)? = standing {
                return HookReport(name: name, summary: "would skip: this role catalogue (\(current.prefix(12))) was superseded by \(newer.prefix(12))", details: [
                    "version": current, "mode": "superseded", "supersededBy": newer,
                ])
            }
            let summary = stored?.version == current && !force
                ? "role catalogue unchanged (version \(current.prefix(12)))"
                : "would sync the roles to version \(current.prefix(12)) (stored: \(stored?.version.prefix(12) ?? "none"))"
            return HookReport(name: name, summary: summary, details: ["version": current])
        }
        if context.pendingMigrations > 0, try !Self.targetExists(synchronizer, context.connection) {
            // A staged deploy (`--to`) stopped before the migrations that create the app's tables.
            return HookReport(
                name: name,
                summary: "skipped: the tables the role sync needs are created by migrations that are still pending",
                details: ["version": catalogue.version, "mode": "skipped"]
            )
        }
        // A deploy step: a superseded catalogue is never applied again, forced or not (CatalogueStanding).
        var options = RoleSynchronizer.Options(force: force)
        options.superseded = .neverApply
        let report = try synchronizer.sync(context.connection, options: options, logger: context.logger)
        let totals = report.totals
        return HookReport(name: name, summary: report.summary, details: [
            "mode": report.mode.rawValue, "version": report.version, "previousVersion": report.previousVersion ?? "",
            "supersededBy": report.supersededBy ?? "",
            "projects": "\(report.projects)", "groupsCreated": "\(totals.groupsCreated)",
            "groupPermissionsAdded": "\(totals.groupPermissionsAdded)", "groupPermissionsRemoved": "\(totals.groupPermissionsRemoved)",
            "objectPermissionsAdded": "\(totals.objectPermissionsAdded)", "objectPermissionsRemoved": "\(totals.objectPermissionsRemoved)",
            "groupsNameTaken": "\(report.blockedGroupsTotal)", "groupsNameTooLong": "\(report.tooLongGroupsTotal)",
            "roundTrips": "\(report.roundTrips)", "durationMs": "\(Int(report.durationMs))",
        ])
    }

    /// False when the target's tables are not there (yet); other failures are thrown.
    static func targetExists(_ synchronizer: RoleSynchronizer, _ connection: Connection) throws(RoleSyncError) -> Bool {
        let result: Result<ResolvedTarget, RoleSyncError>
        do throws(RoleSyncError) {
            result = .success(try synchronizer.resolveTarget(connection))
        } catch {
            result = .failure(error)
        }
        switch result {
        case .success: return true
        case .failure(let error) where error.input: return false
        case .failure(let error): throw error
        }
    }

    /// The stored version against this catalogue's, and what the last recorded sync had to leave out. Reads only
    /// (a database an earlier release synced is read in its old layout).
    public func status(_ connection: Connection, schema: OwnSchema) throws -> HookStatus? {
        let stored = try RoleSynchronizer.storedVersion(connection, schema: schema, legacyFallback: true)
        let current = catalogue.version
        let upToDate = stored?.version == current
        var summary = upToDate
            ? "role version \(current.prefix(12)) is current"
            : "role version stored: \(stored?.version.prefix(12) ?? "none"), current: \(current.prefix(12)); run migrate or update-roles"
        var details = ["stored": stored?.version ?? "", "current": current]
        if stored?.legacy == true {
            summary += " (read from public.role_schema_version, where an earlier release kept it; the next run moves it into schema \(schema.name))"
        }
        // An earlier release's layout has no record of groups left out.
        if upToDate, stored?.legacy != true, let leftOut = try RoleSynchronizer.leftOutAtLastSync(connection, schema: schema),
           leftOut.taken + leftOut.tooLong > 0 {
            var parts: [String] = []
            if leftOut.tooLong > 0 { parts.append("\(leftOut.tooLong) role groups with a name too long for auth_group.name") }
            if leftOut.taken > 0 { parts.append("\(leftOut.taken) role groups whose name another group has") }
            summary += "; the last sync left out \(parts.joined(separator: " and ")) (`migrator update-roles` lists them)"
            details["groupsNameTooLong"] = "\(leftOut.tooLong)"
            details["groupsNameTaken"] = "\(leftOut.taken)"
        }
        return HookStatus(name: name, upToDate: upToDate, summary: summary, details: details)
    }
}
