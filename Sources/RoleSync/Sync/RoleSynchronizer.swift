import FoundationEssentials
import SystemSupport
import Logging
import MigrationEngine
import Postgres

/// Brings every project's role groups, group permissions and object permissions in step with a catalogue, in one
/// transaction, with a fixed number of set-based statements.
///
/// The caller holds the engine's advisory lock (the post-migrate hook, `update-roles`), so two syncs never
/// interleave; the statements still use ON CONFLICT so that a concurrent write by the application cannot fail them.
public struct RoleSynchronizer: Sendable {
    public var catalogue: RoleCatalogue
    /// Where migrator's own objects are (the version rows, the links).
    public var schema: OwnSchema

    public init(catalogue: RoleCatalogue, schema: OwnSchema = .default) {
        self.catalogue = catalogue
        self.schema = schema
    }

    public struct Options: Sendable {
        /// Reconcile fully even when the stored version equals the catalogue's.
        public var force = false
        /// Run every statement, report, and roll back.
        public var dryRun = false
        /// Limit the sync to these projects; the version is then not recorded.
        public var projectIDs: [Int64]?
        /// Do nothing (mode `.superseded`) unless the stored version is this catalogue's: the daemon's syncs of a
        /// few projects, which must never write rows of a catalogue other than the one in force.
        public var onlyIfCurrent = false
        /// Whether a catalogue that was superseded (see ``CatalogueStanding``) may be applied again. The default is
        /// `update-roles`'s (a rollback); the hook and the daemon pass `.neverApply`.
        public var superseded = SupersededPolicy.apply

        public init(force: Bool = false, dryRun: Bool = false, projectIDs: [Int64]? = nil, onlyIfCurrent: Bool = false) {
            self.force = force
            self.dryRun = dryRun
            self.projectIDs = projectIDs
            self.onlyIfCurrent = onlyIfCurrent
        }
    }

    /// The latest `role_version` row.
    public struct StoredVersion: Sendable {
        public var version: String
        public var catalogue: RoleCatalogue?
        /// Read from an earlier release's `public.role_schema_version`, which the next run moves.
        public var legacy = false

        init(version: String, catalogue: RoleCatalogue?, legacy: Bool = false) {
            self.version = version
            self.catalogue = catalogue
            self.legacy = legacy
        }

        /// From a row with `version` and `catalogue` (a stored catalogue of another format reads as nil: the next
        /// sync is then a full one). `prefix` names the columns (`stored_` in the target check's query).
        init(_ row: Row, phase: String, legacy: Bool = false, prefix: String = "") throws(RoleSyncError) {
            do {
                self.init(
                    version: try row.decode(prefix + "version"),
                    catalogue: try row.decodeIfPresent(prefix + "catalogue", as: String.self).flatMap(RoleCatalogue.fromStored),
                    legacy: legacy
                )
            } catch {
                throw RoleSyncError(phase: phase, decoding: error)
            }
        }
    }

    /// Reads the latest stored version (one query); nil when none is recorded, or migrator's objects are not
    /// installed yet. With `legacyFallback`, a database an earlier release synced and no run of this one upgraded
    /// yet is read from its old table (for `status`, which installs nothing).
    public static func storedVersion(
        _ connection: Connection, schema: OwnSchema = .default, legacyFallback: Bool = false
    ) throws(RoleSyncError) -> StoredVersion? {
        let missing = [SQLState.undefinedTable, SQLState.invalidSchemaName]
        let phase = "read the stored role version"
        let table = schema.qualified("role_version")
        let current: Row?
        var readLegacy = false
        do {
            current = try SyncSQL.latestVersion(table).run(on: connection).first
        } catch where missing.contains(error.sqlState ?? "") {
            guard legacyFallback else { return nil }
            current = nil
            readLegacy = true
        } catch {
            throw RoleSyncError(phase: phase, error: error)
        }
        guard readLegacy else { return try current.map { row throws(RoleSyncError) in try StoredVersion(row, phase: phase) } }
        let legacy = "public.role_schema_version"
        let row: Row?
        do {
            row = try SyncSQL.latestVersion(legacy).run(on: connection).first
        } catch where error.sqlState == SQLState.undefinedTable {
            return nil
        } catch {
            throw RoleSyncError(phase: phase, error: error)
        }
        return try row.map { row throws(RoleSyncError) in try StoredVersion(row, phase: phase, legacy: true) }
    }

    /// The target checked against the database, with the stored version read in the same query; when migrator's
    /// role objects are not installed yet (a caller that took the lock without naming the hook, such as a library
    /// user), they are installed first. The caller holds the lock, as for a sync.
    private func resolveInstallingObjects(_ connection: Connection, logger: Logger) throws(RoleSyncError) -> ResolvedTarget {
        do {
            return try resolveTarget(connection)
        } catch where !error.input
            && [SQLState.undefinedTable, SQLState.invalidSchemaName, SQLState.undefinedFunction].contains(error.error.sqlState ?? "") {
            try Self.installObjects(connection, schema: schema, logger: logger)
            return try resolveTarget(connection)
        }
    }

    /// Installs (or upgrades) migrator's own objects the sync needs, for a caller that holds the lock and did not
    /// go through the engine (which installs them for its hooks).
    public static func installObjects(_ connection: Connection, schema: OwnSchema = .default, logger: Logger) throws(RoleSyncError) {
        do {
            try OwnObjects.install([HistoryStore.component, RoleObjects.component], on: connection, schema: schema, logger: logger)
        } catch {
            throw RoleSyncError(phase: "install migrator's role objects", error: PostgresError(code: .clientError, message: error.message))
        }
    }

    /// The counts of groups left out at the last sync that recorded a version (see ``RoleSyncReport/BlockedGroup``);
    /// nil when none is recorded. A table that cannot be read or a malformed row is an error.
    public static func leftOutAtLastSync(_ connection: Connection, schema: OwnSchema) throws(RoleSyncError) -> (taken: Int, tooLong: Int)? {
        let phase = "read what the last sync left out"
        let table = schema.qualified("role_version")
        let row: Row?
        do {
            row = try SyncSQL.storedLeftOut(table).run(on: connection).first
        } catch {
            throw RoleSyncError(phase: phase, error: error)
        }
        guard let row else { return nil }
        do {
            return (try row.decode("groups_name_taken"), try row.decode("groups_name_too_long"))
        } catch {
            throw RoleSyncError(phase: phase, decoding: error)
        }
    }

    /// Checks the catalogue's target against the database (one query).
    public func resolveTarget(_ connection: Connection) throws(RoleSyncError) -> ResolvedTarget {
        try RoleTargetResolver.resolve(connection, catalogue.target, schema: schema)
    }

    /// Resolves the target and, unless `dryRun`, puts the project table's triggers in step with it (in a short
    /// transaction of its own, only when they differ).
    public func prepareTarget(_ connection: Connection, dryRun: Bool, logger: Logger) throws(RoleSyncError) -> ResolvedTarget {
        try installTriggersIfNeeded(connection, resolveInstallingObjects(connection, logger: logger), dryRun: dryRun, logger: logger)
    }

    /// Puts the project table's triggers in step with an already resolved target, unless `dryRun`; one short
    /// transaction of its own, only when they differ.
    public func installTriggersIfNeeded(
        _ connection: Connection, _ resolved: ResolvedTarget, dryRun: Bool, logger: Logger
    ) throws(RoleSyncError) -> ResolvedTarget {
        guard !dryRun else { return resolved }
        if !resolved.triggersInStep {
            try RoleTargetResolver.installTriggers(connection, resolved, schema: schema, logger: logger)
        } else if !resolved.recordedInStep {
            // In step, but not as recorded (the first run after the upgrade, a restored dump whose OIDs differ,
            // another search_path): record them, so that the next run's check finds them by their OIDs.
            let statement = RoleTargetResolver.recordTriggers(schema)
            do {
                _ = try statement.run(on: connection)
            } catch {
                throw RoleSyncError(phase: statement.name, error: error)
            }
        }
        return resolved
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
        /// Groups whose name does not fit `auth_group.name`; not in `projectIDs` either.
        public var tooLongGroups: Int
        /// Links whose project is gone (deleted while no trigger was installed): a full sync removes their groups.
        public var orphanedLinks: Int

        public init(projectIDs: [Int64], permissionsMissing: Bool, blockedGroups: Int, tooLongGroups: Int = 0, orphanedLinks: Int = 0) {
            self.projectIDs = projectIDs
            self.permissionsMissing = permissionsMissing
            self.blockedGroups = blockedGroups
            self.tooLongGroups = tooLongGroups
            self.orphanedLinks = orphanedLinks
        }
    }

    /// How many projects one chunk of the drift query reads (``drift(_:target:chunkSize:afterChunk:)``): at 10,000
    /// synced projects (a debug build, load 2–3) a chunk of 1,000 took 250–320 ms, one of 2,000 380–630 ms, for about the
    /// same total.
    public static let driftChunkSize = 1_000

    /// Finds the projects whose role rows differ from the catalogue: read-only statements over chunks of at most
    /// ``driftChunkSize`` projects, whatever their number. Meant for a session prepared with ``prepareSession(_:)``.
    public func drift(_ connection: Connection) throws(RoleSyncError) -> Drift {
        // Without an `afterChunk` that stops it, it reads every chunk.
        try drift(connection, target: resolveTarget(connection))!
    }

    /// One chunk of the drift query done (its ids read, then its drift, two statements): the last project id it
    /// read, how long it took, and its number (from 1).
    public struct DriftChunk: Sendable {
        public var number: Int
        public var lastProjectID: Int64?
        public var duration: Duration
    }

    /// ``drift(_:)`` with the target already checked (the daemon checks it once per reconcile). The project table is
    /// read in chunks of `chunkSize` projects by id, each its own statements (their own snapshots, outside any
    /// transaction), so that no statement holds its `ACCESS SHARE` locks longer than one chunk takes: an `ALTER TABLE`
    /// of the app's (and the app's statements queued behind it) waits for one chunk at most, not for a read of every
    /// project.
    /// `afterChunk` runs after each chunk, when the session holds no lock, and says whether to go on: nil when it
    /// said no (a daemon asked to stop does not read the other chunks first). A project created or deleted meanwhile
    /// in a range already read is left to its notification or the next reconcile.
    public func drift(
        _ connection: Connection, target: ResolvedTarget, chunkSize: Int = driftChunkSize,
        afterChunk: (DriftChunk) -> Bool = { _ in true }
    ) throws(RoleSyncError) -> Drift? {
        precondition(chunkSize > 0, "a drift chunk holds at least one project")
        let phase = "look for projects whose roles differ"
        let sql = SyncSQL(schema: schema, target: target, catalogue: catalogue)
        let clock = ContinuousClock()
        var total = Drift(projectIDs: [], permissionsMissing: false, blockedGroups: 0)
        var after: Int64?
        var number = 0
        func ids(_ row: Row, _ column: String) throws(RowDecodingError) -> [Int64] {
            try (row.decodeIfPresent(column, as: [String?].self) ?? []).map { text throws(RowDecodingError) in
                guard let text, let id = Int64(text) else {
                    throw RowDecodingError(source: row.source, column: column, problem: "holds an element that is not a project id")
                }
                return id
            }
        }
        func row(_ statement: SyncStatement) throws(RoleSyncError) -> Row {
            do { return try statement.one(on: connection) } catch { throw RoleSyncError(phase: phase, error: error) }
        }
        func decoded<T>(_ body: () throws(RowDecodingError) -> T) throws(RoleSyncError) -> T {
            do { return try body() } catch { throw RoleSyncError(phase: phase, decoding: error) }
        }
        while true {
            number += 1
            let start = clock.now
            let chunkRow = try row(sql.driftChunk(after: after, size: chunkSize))
            let chunk = try decoded { () throws(RowDecodingError) in try ids(chunkRow, "ids") }
            // A chunk that is not full is the last: the links past its last project are counted with it.
            let last = chunk.count == chunkSize ? chunk.last : nil
            let found = try row(sql.drift(appLabel: target.target.appLabel, model: target.target.model, ids: chunk, after: after, through: last))
            try decoded { () throws(RowDecodingError) in
                total.projectIDs += try ids(found, "projects")
                if try found.decode("permissions_missing", as: Bool.self) { total.permissionsMissing = true }
                total.blockedGroups += try found.decode("groups_name_taken", as: Int.self)
                total.tooLongGroups += try found.decode("groups_name_too_long", as: Int.self)
                total.orphanedLinks += try found.decode("orphaned_links", as: Int.self)
            }
            guard afterChunk(DriftChunk(number: number, lastProjectID: chunk.last ?? after, duration: clock.now - start)) else {
                return nil
            }
            guard let last else { return total }
            after = last
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
        // The common case, every deploy step's: nothing to sync. One cheap query says so (the stored version, the
        // triggers, the links' key); the columns are checked by the full query below when a sync runs.
        if options.projectIDs == nil, !options.force,
           RoleTargetResolver.storedVersionIfInStep(connection, catalogue.target, schema: schema) == version {
            var report = RoleSyncReport(
                mode: .unchanged, dryRun: options.dryRun, version: version, previousVersion: version,
                recordedVersion: false, projects: 0
            )
            report.roundTrips = connection.roundTrips - startTrips
            report.durationMs = (clock.now - start).milliseconds
            return report
        }
        // Also when nothing is to sync: the project table's triggers must be there (a first run after the upgrade
        // from an earlier release, an app migration that rebuilt the table). One query when they are, which also
        // reads the stored version.
        let target = try prepareTarget(connection, dryRun: options.dryRun, logger: logger)
        let stored = target.stored
        var report = RoleSyncReport(
            mode: .full, dryRun: options.dryRun, version: version, previousVersion: stored?.version,
            recordedVersion: false, projects: 0
        )
        // The rolling-deploy rule, decided in one place (CatalogueStanding), under the lock the caller holds.
        let standing = try CatalogueStanding.read(
            connection, version: version, latest: stored?.version, schema: schema.qualified("role_version")
        )
        if case .superseded(let latest) = standing { report.supersededBy = latest }
        if options.onlyIfCurrent && standing != .current
            || standing.decision(policy: options.superseded) == .skip {
            if report.supersededBy != nil {
                logger.info("this role catalogue was superseded by a newer one; its rows are left as they are", metadata: [
                    "roles.version": "\(version)", "roles.superseded_by": "\(stored?.version ?? "none")",
                ])
            }
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
        // The stored catalogue is read only now that a sync runs (a no-op spends neither the transfer nor the decoding
        // on it), and trusted only when it hashes to its own version: one edited by hand makes a full reconcile.
        let storedCatalogue = try stored.flatMap { stored throws(RoleSyncError) in try verifiedStoredCatalogue(connection, stored, logger: logger) }
        var diff: CatalogueDiff?
        if options.projectIDs != nil {
            report.mode = .projects
        } else if !options.force, let old = storedCatalogue, old.target == catalogue.target {
            // A changed target (another name template, content type or table) is a full reconcile.
            report.mode = .incremental
            diff = CatalogueDiff(from: old, to: catalogue)
        }
        if let old = storedCatalogue?.target, old.projectTable != catalogue.target.projectTable {
            try refuseTableChange(connection, from: old, to: target)
        }
        logger.info("role sync started", metadata: [
            "roles.version": "\(version)", "roles.previous_version": "\(stored?.version ?? "none")", "roles.mode": "\(report.mode.rawValue)",
        ])

        var phases: [RoleSyncReport.Phase] = []
        do throws(RoleSyncError) {
            try run("begin", connection, logger, &phases) { try connection.query("BEGIN").affectedRows }
            try apply(connection, target: target, diff: diff, options: options, logger: logger, phases: &phases, report: &report)
            report.durationMs = (clock.now - start).milliseconds
            if options.projectIDs == nil && !options.dryRun {
                let statement = SyncSQL(schema: schema, target: target, catalogue: catalogue).recordVersion(
                    version: version, canonicalJSON: catalogue.canonicalJSON, totals: report.totals,
                    durationMs: report.durationMs, forced: options.force,
                    groupsNameTaken: report.blockedGroupsTotal, groupsNameTooLong: report.tooLongGroupsTotal
                )
                try run(statement.name, connection, logger, &phases) { try statement.run(on: connection).affectedRows }
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
        for blocked in report.tooLongGroups {
            logger.warning("a role group's name is longer than auth_group.name holds; the project's groups are left out until it is renamed", metadata: [
                "roles.project_id": "\(blocked.projectID)", "roles.role": "\(blocked.role)",
                "roles.wanted_name": "\(blocked.wantedName.prefix(60))…", "roles.wanted_length": "\(blocked.wantedName.unicodeScalars.count)",
                "roles.max_length": "\(target.maxGroupName.map(String.init) ?? "none")",
            ])
        }
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

    /// The latest stored catalogue when it is the one of `stored.version` and hashes to it; nil otherwise (none stored,
    /// another format, or edited by hand: logged), which makes the sync a full reconcile.
    private func verifiedStoredCatalogue(
        _ connection: Connection, _ stored: StoredVersion, logger: Logger
    ) throws(RoleSyncError) -> RoleCatalogue? {
        guard let read = try Self.storedVersion(connection, schema: schema), read.version == stored.version,
              let old = read.catalogue
        else { return nil }
        guard old.version == read.version else {
            logger.warning("the stored role catalogue does not hash to its stored version (edited by hand?); running a full reconcile", metadata: [
                "roles.stored_version": "\(read.version)", "roles.stored_catalogue_hash": "\(old.version)",
            ])
            return nil
        }
        return old
    }

    /// Links of another project table cannot be carried over: their project ids mean other rows.
    private func refuseTableChange(_ connection: Connection, from old: RoleTarget, to target: ResolvedTarget) throws(RoleSyncError) {
        let phase = "check the project table"
        let links = schema.qualified("project_role_group")
        let row: Row
        do {
            row = try SyncSQL.linkCount(links).one(on: connection)
        } catch {
            throw RoleSyncError(phase: phase, error: error)
        }
        let count: Int
        do {
            count = try row.decode("n")
        } catch {
            throw RoleSyncError(phase: phase, decoding: error)
        }
        guard count > 0 else { return }
        throw RoleSyncError(
            phase: "check the project table",
            error: PostgresError(
                code: .clientError,
                message: "the \(count) role groups migrator links are groups of projects in '\(old.projectTable)', and "
                    + "the catalogue now names '\(target.target.projectTable)'; their ids would point at other rows. "
                    + "Go back to '\(old.projectTable)', or, to start over on the new table, delete the links "
                    + "(DELETE FROM \(schema.qualified("project_role_group"))): the groups stay, and those whose names "
                    + "match the new projects are adopted"
            ),
            input: true
        )
    }

    private func apply(
        _ connection: Connection, target: ResolvedTarget, diff: CatalogueDiff?, options: Options, logger: Logger,
        phases: inout [RoleSyncReport.Phase], report: inout RoleSyncReport
    ) throws(RoleSyncError) {
        let sql = SyncSQL(schema: schema, target: target, catalogue: catalogue)
        let projects: [Int64]? = options.projectIDs

        try run("prepare", connection, logger, &phases) { try connection.execute(script: SyncSQL.prepare).count }
        var contentType = 0
        let contentTypeStatement = SyncSQL.contentType(appLabel: target.target.appLabel, model: target.target.model)
        try run(contentTypeStatement.name, connection, logger, &phases) {
            // Inserted when missing, so there is always a row.
            contentType = try contentTypeStatement.one(on: connection).decode("id")
            return 0
        }
        let permissions = SyncSQL.permissions(contentType: contentType, catalogue.permissions)
        try run(permissions.name, connection, logger, &phases) {
            let row = try permissions.one(on: connection)
            report.permissionsCreated = try row.decode("created")
            report.permissionsRenamed = try row.decode("renamed")
            return report.permissionsCreated + report.permissionsRenamed
        }
        // An incremental sync (never limited to projects) first looks whether any project lacks a group or any link
        // its project: usually none does (only permissions changed), and adoption, creation and the orphans' removal,
        // each a read of whole tables, are skipped. A full sync runs them all.
        let incremental = diff != nil && projects == nil
        var unlinkedAtStart = 1
        var orphanedAtStart = 1
        if incremental {
            (unlinkedAtStart, orphanedAtStart) = try counts(sql.unlinkedAndOrphanedCounts(), "unlinked", "orphaned", connection, logger, &phases)
        }
        if projects == nil, orphanedAtStart > 0 {
            let orphans = sql.removeOrphans()
            try run(orphans.name, connection, logger, &phases) {
                let removed: Int = try orphans.one(on: connection).decode("n")
                report.groupsOfDeletedProjectsRemoved = removed
                return removed
            }
        }
        // Writes in the lock order of ``DesiredRows/lockCTEs(_:scope:)``: every statement locks the projects, then the
        // groups it writes for, then writes their rows; renames (FOR UPDATE on groups) come last, so the app's
        // foreign-key checks on a renamed group wait from the rename to the commit only.
        let beforeCreate = (report.blockedGroups.count, report.tooLongGroups.count, report.blockedGroupsTotal, report.tooLongGroupsTotal)
        if unlinkedAtStart > 0 {
            try countByRole(sql.adoptGroups(projects: projects), connection, logger, &phases, &report) { changes, row throws(RowDecodingError) in
                changes.groupsAdopted += try row.decode("n")
            }
            try countByRole(sql.createGroups(projects: projects), connection, logger, &phases, &report) { changes, row throws(RowDecodingError) in
                changes.groupsCreated += try row.decode("n")
            }
        }
        let createBlocked = (
            report.blockedGroups.count - beforeCreate.0, report.tooLongGroups.count - beforeCreate.1,
            report.blockedGroupsTotal - beforeCreate.2, report.tooLongGroupsTotal - beforeCreate.3
        )
        // A full sync compares by counting per group; an incremental one compares only the pairs that changed, added
        // and removed alike.
        let changed = diff.map { $0.addedPairs + $0.removedPairs }
        try syncPermissions(sql, contentType: contentType, changed: changed, projects: projects, connection, logger, &phases, &report)
        let renamedBefore = report.totals.groupsRenamed
        // An incremental sync looks first, where the rename statement would read: the rename runs only when a group
        // has another name than its project's (the only groups it renames or reports), and the count below only when
        // some pair may lack a group. Without a rename the look is the last read of the first pass, as that count was.
        var misnamed = 1
        var mayBeUnlinked = 1
        if incremental {
            (misnamed, mayBeUnlinked) = try counts(sql.misnamedAndUnlinkedCounts(), "misnamed", "unlinked", connection, logger, &phases)
        }
        if misnamed > 0 {
            try renameGroups(sql, projects: projects, connection, logger, &phases, &report)
        }
        // Catch-up, only when there is something for it (its INSERT would fire the app's statement triggers): groups
        // for projects created after the first pass read them, and for names a rename just freed. The first pass's
        // blocked groups are reported again by this pass if they still are.
        var unlinkedNow = 0
        if misnamed > 0 || mayBeUnlinked > 0 {
            let unlinked = sql.unlinkedCount(projects: projects)
            try run(unlinked.name, connection, logger, &phases) {
                unlinkedNow = try unlinked.one(on: connection).decode("n")
                return 0
            }
        }
        let namesFreed = report.totals.groupsRenamed > renamedBefore && createBlocked.2 > 0
        guard unlinkedNow > createBlocked.2 + createBlocked.3 || namesFreed else { return try count(sql, projects, connection, logger, &phases, &report) }
        report.blockedGroups.removeSubrange(beforeCreate.0..<(beforeCreate.0 + createBlocked.0))
        report.tooLongGroups.removeSubrange(beforeCreate.1..<(beforeCreate.1 + createBlocked.1))
        report.blockedGroupsTotal -= createBlocked.2
        report.tooLongGroupsTotal -= createBlocked.3
        try run(SyncSQL.forgetFreshGroups.name, connection, logger, &phases) { try SyncSQL.forgetFreshGroups.run(on: connection).affectedRows }
        var caughtUp = 0
        try countByRole(sql.createGroups(projects: projects), connection, logger, &phases, &report) { changes, row throws(RowDecodingError) in
            let created: Int = try row.decode("n")
            caughtUp += created
            changes.groupsCreated += created
        }
        if caughtUp > 0 {
            // Only the groups just created are compared (no pair changed for the others).
            try syncPermissions(sql, contentType: contentType, changed: [], projects: nil, connection, logger, &phases, &report)
        }
        try count(sql, projects, connection, logger, &phases, &report)
    }

    /// The counts of the report, and the projects left out because another transaction held them.
    private func count(
        _ sql: SyncSQL, _ projects: [Int64]?, _ connection: Connection, _ logger: Logger,
        _ phases: inout [RoleSyncReport.Phase], _ report: inout RoleSyncReport
    ) throws(RoleSyncError) {
        try run("count", connection, logger, &phases) {
            report.projects = try sql.projectCount(projects: projects).one(on: connection).decode("n")
            let skipped = try sql.skippedProjects().one(on: connection)
            report.lockedProjects = try skipped.decode("ids", as: [String?].self).compactMap { $0.flatMap { Int64($0) } }
            for row in try sql.retiredRoles(projects: projects).run(on: connection).rows {
                report.retiredRoles[try row.decode("role")] = try row.decode("n")
            }
            return 0
        }
    }

    /// The two counts a one-row look answers, in its own phase.
    private func counts(
        _ look: SyncStatement, _ first: String, _ second: String, _ connection: Connection, _ logger: Logger,
        _ phases: inout [RoleSyncReport.Phase]
    ) throws(RoleSyncError) -> (Int, Int) {
        var answer = (0, 0)
        try run(look.name, connection, logger, &phases) {
            let row = try look.one(on: connection)
            answer = (try row.decode(first), try row.decode(second))
            return 0
        }
        return answer
    }

    /// Both permission tables: the incremental comparison when `changed` is known, the full one otherwise.
    private func syncPermissions(
        _ sql: SyncSQL, contentType: Int, changed: [CatalogueDiff.Pair]?, projects: [Int64]?, _ connection: Connection,
        _ logger: Logger, _ phases: inout [RoleSyncReport.Phase], _ report: inout RoleSyncReport
    ) throws(RoleSyncError) {
        var tables = [PermissionTable.group, .object]
        if changed == nil, projects == nil {
            // A full sync of every project first looks whether there is anything to write, cheaper than the
            // comparison row by row (at 10,000 projects a reconcile with nothing to do spent most of its time there).
            let look = sql.permissionsInStep(contentType: contentType)
            try run(look.name, connection, logger, &phases) {
                let row = try look.one(on: connection)
                if try row.decode("group_in_step", as: Bool.self) { tables.removeAll { $0 == .group } }
                if try row.decode("object_in_step", as: Bool.self) { tables.removeAll { $0 == .object } }
                return 0
            }
        }
        for table in tables {
            // First without ON CONFLICT on the rows of existing groups (it costs each of their index insertions half
            // again as much), in a savepoint; when the application wrote one of the same rows after the statement's
            // snapshot (a unique violation), back to the savepoint and once more guarded, which leaves such rows as
            // the application wrote them.
            var guarded = false
            while true {
                do throws(RoleSyncError) {
                    try run("savepoint", connection, logger, &phases) {
                        try connection.query("SAVEPOINT migrator_permissions").affectedRows
                    }
                    let statement = changed.map { sql.permissionsIncremental(table, contentType: contentType, changed: $0, guarded: guarded) }
                        ?? sql.permissionsFull(table, contentType: contentType, projects: projects, guarded: guarded)
                    var attemptReport = report
                    try countByRole(statement, connection, logger, &phases, &attemptReport) { changes, row throws(RowDecodingError) in
                        let added: Int = try row.decode("added")
                        let removed: Int = try row.decode("removed")
                        switch table {
                        case .group:
                            changes.groupPermissionsAdded += added
                            changes.groupPermissionsRemoved += removed
                        case .object:
                            changes.objectPermissionsAdded += added
                            changes.objectPermissionsRemoved += removed
                        }
                    }
                    report = attemptReport
                    break
                } catch where error.error.sqlState == Self.uniqueViolation && !guarded {
                    guarded = true
                    logger.info(
                        "the application wrote a row the sync writes meanwhile; writing \(table.name) again, leaving such rows as they are",
                        metadata: ["db.sqlstate": "\(Self.uniqueViolation)"]
                    )
                    try run("roll back to savepoint", connection, logger, &phases) {
                        try connection.query("ROLLBACK TO SAVEPOINT migrator_permissions").affectedRows
                    }
                }
            }
        }
    }

    private static let uniqueViolation = "23505"

    /// The rename, in a savepoint: a group the app created after the statement's snapshot may have taken a name it
    /// gives (a unique violation, `ON CONFLICT` being no option for an UPDATE); then it runs again, and its new snapshot
    /// sees that group and reports the name as taken.
    private func renameGroups(
        _ sql: SyncSQL, projects: [Int64]?, _ connection: Connection, _ logger: Logger,
        _ phases: inout [RoleSyncReport.Phase], _ report: inout RoleSyncReport
    ) throws(RoleSyncError) {
        var attempt = 1
        while true {
            do throws(RoleSyncError) {
                try run("savepoint", connection, logger, &phases) { try connection.query("SAVEPOINT migrator_rename").affectedRows }
                var attemptReport = report
                try countByRole(sql.renameGroups(projects: projects), connection, logger, &phases, &attemptReport) { changes, row throws(RowDecodingError) in
                    changes.groupsRenamed += try row.decode("n")
                }
                report = attemptReport
                return
            } catch where error.error.sqlState == Self.uniqueViolation && attempt < 3 {
                attempt += 1
                logger.info("a group took a name the rename gives meanwhile; renaming again", metadata: ["db.sqlstate": "\(Self.uniqueViolation)"])
                try run("roll back to savepoint", connection, logger, &phases) {
                    try connection.query("ROLLBACK TO SAVEPOINT migrator_rename").affectedRows
                }
            }
        }
    }

    /// Runs a statement that answers one row per role and adds its counts to the report.
    private func countByRole(
        _ statement: SyncStatement, _ connection: Connection, _ logger: Logger, _ phases: inout [RoleSyncReport.Phase],
        _ report: inout RoleSyncReport, _ add: (inout RoleSyncReport.RoleChanges, Row) throws(RowDecodingError) -> Void
    ) throws(RoleSyncError) {
        try run(statement.name, connection, logger, &phases) {
            var rows = 0
            let result = try statement.run(on: connection)
            // Renaming and creating groups also answer rows for groups that cannot get their name (`blockedRows`);
            // each row carries the total of its reason, and the two statements' groups are disjoint.
            let reportsBlocked = result.columns.contains("wanted")
            var totals: [String: Int] = [:]
            for row in result.rows {
                let role: String = try row.decode("role")
                if reportsBlocked, let wanted = try row.decodeIfPresent("wanted", as: String.self) {
                    let group = RoleSyncReport.BlockedGroup(
                        projectID: try row.decode("project_id"), role: role,
                        currentName: try row.decodeIfPresent("current_name"), wantedName: wanted
                    )
                    let reason: String = try row.decode("reason")
                    totals[reason] = try row.decode("total")
                    if reason == "too_long" { report.tooLongGroups.append(group) } else { report.blockedGroups.append(group) }
                    continue
                }
                var changes = report.roles[role, default: RoleSyncReport.RoleChanges()]
                let before = changes.rowsWritten
                try add(&changes, row)
                rows += changes.rowsWritten - before
                report.roles[role] = changes
            }
            report.blockedGroupsTotal += totals["taken"] ?? 0
            report.tooLongGroupsTotal += totals["too_long"] ?? 0
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
public struct RoleSyncError: Error, Sendable, CustomStringConvertible, HookServerFailure {
    public var phase: String
    public var error: PostgresError
    /// The configuration is at fault (the target names a table or column that is not there), not the database.
    public var input: Bool

    public init(phase: String, error: PostgresError, input: Bool = false) {
        self.phase = phase
        self.error = error
        self.input = input
    }

    /// A row that could not be read as the sync expects: what it read from and which column are in the message.
    public init(phase: String, decoding error: RowDecodingError) {
        self.init(phase: phase, error: PostgresError(code: .clientError, message: error.description))
    }

    /// Every sync error rolls the whole sync back (the configuration's errors change nothing at all).
    public var rolledBackServerError: PostgresError? { input ? nil : error }

    public var description: String {
        var text = "role sync failed while it tried to \(phase): \(error)"
        if error.sqlState == SQLState.undefinedTable {
            text += "\nhint: a table the sync needs is missing; the app's tables (Django's auth, contenttypes and "
                + "guardian, and the project table) must exist before the role sync runs"
        }
        if input { return text + "\nnote: nothing was changed" }
        return text + "\nnote: the sync was rolled back; the stored role version and every row are as they were"
    }
}
