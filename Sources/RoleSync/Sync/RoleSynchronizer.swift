import FoundationEssentials
import SystemSupport
import Logging
import Postgres

/// Brings every project's role groups, group permissions and object permissions in step with a catalogue, in one
/// transaction, with a fixed number of set-based statements.
///
/// The caller holds the engine's advisory lock (the post-migrate hook, `update-roles`), so two syncs never
/// interleave; the statements still use ON CONFLICT so that a concurrent write by the application cannot fail them.
public struct RoleSynchronizer: Sendable {
    public var catalogue: RoleCatalogue

    public init(catalogue: RoleCatalogue) {
        self.catalogue = catalogue
    }

    public struct Options: Sendable {
        /// Reconcile fully even when the stored version equals the catalogue's.
        public var force = false
        /// Run every statement, report, and roll back.
        public var dryRun = false
        /// Limit the sync to these projects; the version is then not recorded.
        public var projectIDs: [Int64]?
        /// Do nothing (mode `.superseded`) unless the stored version is this catalogue's: a daemon whose catalogue
        /// is older or newer than the one the last deploy recorded must not rewrite that deploy's rows.
        public var onlyIfCurrent = false

        public init(force: Bool = false, dryRun: Bool = false, projectIDs: [Int64]? = nil, onlyIfCurrent: Bool = false) {
            self.force = force
            self.dryRun = dryRun
            self.projectIDs = projectIDs
            self.onlyIfCurrent = onlyIfCurrent
        }
    }

    /// The latest `role_schema_version` row.
    public struct StoredVersion: Sendable {
        public var version: String
        public var catalogue: RoleCatalogue?
    }

    /// Reads the latest stored version (one query).
    /// - Throws: ``RoleSyncError`` when the table is missing (the database was not migrated with our Migrations/).
    public static func storedVersion(_ connection: Connection) throws(RoleSyncError) -> StoredVersion? {
        do {
            guard let row = try connection.query(SyncSQL.latestVersion).first, let version = row["version"] else { return nil }
            return StoredVersion(version: version, catalogue: row["catalogue"].flatMap(RoleCatalogue.fromStored))
        } catch {
            throw RoleSyncError(phase: "read the stored role version", error: error)
        }
    }

    /// What a reconcile found: the projects whose role rows differ from the catalogue.
    public struct Drift: Sendable, Equatable {
        /// Projects lacking a group, with a group under an old name, or whose groups lack a permission of their
        /// role or carry one it does not grant (for the group or on the project).
        public var projectIDs: [Int64]
        /// Some of the catalogue's permissions do not exist: only a full sync can create them.
        public var permissionsMissing: Bool
        /// Groups that cannot have their name because another group has it; not in `projectIDs`, since no sync can
        /// change that (see ``RoleSyncReport/BlockedGroup``).
        public var blockedGroups: Int

        public init(projectIDs: [Int64], permissionsMissing: Bool, blockedGroups: Int) {
            self.projectIDs = projectIDs
            self.permissionsMissing = permissionsMissing
            self.blockedGroups = blockedGroups
        }
    }

    /// Finds the projects whose role rows differ from the catalogue, in one read-only statement whatever their
    /// number. Meant for a session prepared with ``prepareSession(_:)``.
    public func drift(_ connection: Connection) throws(RoleSyncError) -> Drift {
        let pairs = catalogue.roles.flatMap { role in role.permissions.map { (role.name, $0) } }
        do {
            let row = try connection.query(SyncSQL.drift, [
                catalogue.roles.map(\.name), pairs.map(\.0), pairs.map(\.1), Set(pairs.map(\.1)).count,
            ]).first
            let ids = (row?["projects"]).map(SyncSQL.parseBigintArray) ?? []
            return Drift(
                projectIDs: ids, permissionsMissing: row?.bool("permissions_missing") ?? false,
                blockedGroups: row?.int("blocked_groups") ?? 0
            )
        } catch {
            throw RoleSyncError(phase: "look for projects whose roles differ", error: error)
        }
    }

    /// Session settings that keep the sync's and the drift query's plans linear (see ``SyncSQL``), for a session
    /// that runs them repeatedly. A sync sets them for its own transaction anyway.
    public static func prepareSession(_ connection: Connection) throws(PostgresError) {
        try connection.query(SyncSQL.sessionSettings)
    }

    /// Syncs when the stored version differs (or when forced, or for a set of projects); otherwise reads one row and
    /// returns `.unchanged`.
    public func sync(_ connection: Connection, options: Options = Options(), logger: Logger) throws(RoleSyncError) -> RoleSyncReport {
        let clock = ContinuousClock()
        let start = clock.now
        let startTrips = connection.roundTrips
        let version = catalogue.version
        let stored = try Self.storedVersion(connection)
        var report = RoleSyncReport(
            mode: .full, dryRun: options.dryRun, version: version, previousVersion: stored?.version,
            recordedVersion: false, projects: 0
        )
        if options.onlyIfCurrent, stored?.version != version {
            report.mode = .superseded
            report.roundTrips = connection.roundTrips - startTrips
            report.durationMs = (clock.now - start).milliseconds
            return report
        }
        if options.projectIDs == nil, !options.force, stored?.version == version {
            report.mode = .unchanged
            report.roundTrips = connection.roundTrips - startTrips
            report.durationMs = (clock.now - start).milliseconds
            return report
        }
        var diff: CatalogueDiff?
        if options.projectIDs != nil {
            report.mode = .projects
        } else if !options.force, let old = stored?.catalogue {
            report.mode = .incremental
            diff = CatalogueDiff(from: old, to: catalogue)
        }
        logger.info("role sync started", metadata: [
            "roles.version": "\(version)", "roles.previous_version": "\(stored?.version ?? "none")", "roles.mode": "\(report.mode.rawValue)",
        ])

        var phases: [RoleSyncReport.Phase] = []
        do throws(RoleSyncError) {
            try run("begin", connection, logger, &phases) { try connection.query("BEGIN").affectedRows }
            try apply(connection, diff: diff, options: options, logger: logger, phases: &phases, report: &report)
            report.durationMs = (clock.now - start).milliseconds
            if options.projectIDs == nil && !options.dryRun {
                let totals = report.totals
                try run("record version", connection, logger, &phases) {
                    try connection.query(SyncSQL.recordVersion, [
                        version, catalogue.canonicalJSON, totals.groupsCreated, totals.groupsRenamed,
                        totals.groupPermissionsAdded + totals.objectPermissionsAdded,
                        totals.groupPermissionsRemoved + totals.objectPermissionsRemoved,
                        report.durationMs, options.force,
                    ]).affectedRows
                }
                report.recordedVersion = true
            }
            try run(options.dryRun ? "roll back (dry run)" : "commit", connection, logger, &phases) {
                try connection.query(options.dryRun ? "ROLLBACK" : "COMMIT").affectedRows
            }
        } catch {
            if connection.isConnected, connection.transactionStatus != .idle { _ = try? connection.query("ROLLBACK") }
            throw error
        }
        report.phases = phases
        report.durationMs = (clock.now - start).milliseconds
        report.roundTrips = connection.roundTrips - startTrips
        for blocked in report.blockedGroups {
            logger.warning("a role group's name is taken by another group; rename or delete that group, then sync again", metadata: [
                "roles.project_id": "\(blocked.projectID)", "roles.role": "\(blocked.role)",
                "roles.group": "\(blocked.currentName ?? "(not created)")", "roles.wanted_name": "\(blocked.wantedName)",
            ])
        }
        logger.info("role sync finished", metadata: [
            "roles.version": "\(version)", "roles.duration_ms": "\(Int(report.durationMs))",
            "roles.rows_written": "\(report.totals.rowsWritten)", "roles.dry_run": "\(options.dryRun)",
        ])
        return report
    }

    private func apply(
        _ connection: Connection, diff: CatalogueDiff?, options: Options, logger: Logger,
        phases: inout [RoleSyncReport.Phase], report: inout RoleSyncReport
    ) throws(RoleSyncError) {
        let roles = catalogue.roles.map(\.name)
        let projects: [Int64]? = options.projectIDs
        let pairs = catalogue.roles.flatMap { role in role.permissions.map { (role.name, $0) } }
        let everyGroup = diff == nil
        // Added and removed pairs alike: the universe an incremental sync compares.
        let changed = (diff?.addedPairs ?? []) + (diff?.removedPairs ?? [])

        try run("prepare", connection, logger, &phases) { try connection.execute(script: SyncSQL.prepare).count }
        var contentType = 0
        try run("content type", connection, logger, &phases) {
            contentType = try connection.query(SyncSQL.contentType).first?.int("id") ?? 0
            return 0
        }
        try run("permissions", connection, logger, &phases) {
            let row = try connection.query(SyncSQL.permissions, [
                contentType, catalogue.permissions.map(\.codename), catalogue.permissions.map(\.name),
            ]).first
            report.permissionsCreated = row?.int("created") ?? 0
            report.permissionsRenamed = row?.int("renamed") ?? 0
            return report.permissionsCreated + report.permissionsRenamed
        }
        try countByRole("rename groups", connection, logger, &phases, &report, SyncSQL.renameGroups, [projects]) { $0.groupsRenamed += $1.int("n") ?? 0 }
        try countByRole("adopt groups", connection, logger, &phases, &report, SyncSQL.adoptGroups, [roles, projects]) { $0.groupsAdopted += $1.int("n") ?? 0 }
        try countByRole("create groups", connection, logger, &phases, &report, SyncSQL.createGroups, [roles, projects]) { $0.groupsCreated += $1.int("n") ?? 0 }
        let parameters: [(any PostgresBindable)?] = [
            contentType, pairs.map(\.0), pairs.map(\.1), projects, everyGroup, changed.map(\.role), changed.map(\.codename),
        ]
        // A full sync compares by counting per group; an incremental one compares only the changed pairs.
        let groupSQL = everyGroup ? SyncSQL.groupPermissionsFull : SyncSQL.groupPermissions
        let objectSQL = everyGroup ? SyncSQL.objectPermissionsFull : SyncSQL.objectPermissions
        let statementParameters = everyGroup ? Array(parameters.prefix(4)) : parameters
        try countByRole("group permissions", connection, logger, &phases, &report, groupSQL, statementParameters) {
            $0.groupPermissionsAdded += $1.int("added") ?? 0
            $0.groupPermissionsRemoved += $1.int("removed") ?? 0
        }
        try countByRole("object permissions", connection, logger, &phases, &report, objectSQL, statementParameters) {
            $0.objectPermissionsAdded += $1.int("added") ?? 0
            $0.objectPermissionsRemoved += $1.int("removed") ?? 0
        }
        try run("count", connection, logger, &phases) {
            report.projects = try connection.query(SyncSQL.projectCount, [projects]).first?.int("n") ?? 0
            let retired = try connection.query(SyncSQL.retiredRoles, [roles])
            for row in retired.rows { report.retiredRoles[row["role"] ?? "?"] = row.int("n") ?? 0 }
            return 0
        }
    }

    /// Runs a statement that answers one row per role and adds its counts to the report.
    private func countByRole(
        _ phase: String, _ connection: Connection, _ logger: Logger, _ phases: inout [RoleSyncReport.Phase],
        _ report: inout RoleSyncReport, _ sql: String, _ parameters: [(any PostgresBindable)?],
        _ add: (inout RoleSyncReport.RoleChanges, Row) -> Void
    ) throws(RoleSyncError) {
        try run(phase, connection, logger, &phases) {
            var rows = 0
            let result = try connection.query(sql, parameters)
            // Renaming and creating groups also answer rows for groups whose name another group has (`blockedRows`).
            let reportsBlocked = result.columns.contains("wanted")
            for row in result.rows {
                if reportsBlocked, let wanted = row["wanted"], let project = row["project_id"].flatMap({ Int64($0) }) {
                    report.blockedGroups.append(.init(
                        projectID: project, role: row["role"] ?? "?", currentName: row["current_name"], wantedName: wanted
                    ))
                    continue
                }
                var changes = report.roles[row["role"] ?? "?", default: RoleSyncReport.RoleChanges()]
                let before = changes.rowsWritten
                add(&changes, row)
                rows += changes.rowsWritten - before
                report.roles[row["role"] ?? "?"] = changes
            }
            return rows
        }
    }

    /// Times a phase, logs it with the rows it wrote, and names it in the error if it fails.
    private func run(
        _ phase: String, _ connection: Connection, _ logger: Logger, _ phases: inout [RoleSyncReport.Phase],
        _ body: () throws -> Int
    ) throws(RoleSyncError) {
        let clock = ContinuousClock()
        let start = clock.now
        let rows: Int
        do {
            rows = try body()
        } catch let error as PostgresError {
            throw RoleSyncError(phase: phase, error: error)
        } catch {
            throw RoleSyncError(phase: phase, error: PostgresError(code: .clientError, message: "\(error)"))
        }
        let elapsed = (clock.now - start).milliseconds
        phases.append(.init(name: phase, rows: rows, durationMs: elapsed))
        logger.info("role sync phase", metadata: [
            "roles.phase": "\(phase)", "roles.phase_rows": "\(rows)", "roles.phase_ms": "\(TextFormat.fixed(elapsed, 1))",
        ])
    }
}

/// A sync that failed, with the phase it failed in. Its transaction was rolled back: the old version and rows remain.
public struct RoleSyncError: Error, Sendable, CustomStringConvertible {
    public var phase: String
    public var error: PostgresError

    public var description: String {
        var text = "role sync failed while it tried to \(phase): \(error)"
        if error.sqlState == "42P01" {
            text += "\nhint: the role tables are missing; apply the shipped Migrations/ first"
        }
        return text + "\nnote: the sync was rolled back; the stored role version and every row are as they were"
    }
}
