import ArgumentParser
import Logging
import MigrationEngine
import Postgres
import RoleSync
import SystemSupport

/// Each fleet command's job on one target. A target is a session of its own, set up as the single-database command
/// sets up its one: a tenant's session has `search_path` "tenant", public and keeps migrator's objects (history,
/// lock key) in `<tenant>_<schema>`.
enum FleetJobs {
    static func targetOptions(_ base: MigratorOptions, _ target: FleetTarget) throws(MigrationError) -> MigratorOptions {
        var options = base
        options.schema = try target.ownSchema(base: base.schema)
        options.searchPath = target.schema
        return options
    }

    static func session(
        _ target: FleetTarget, options: MigratorOptions, hooks: [any PostMigrateHook], purpose: MigrationSession.Purpose,
        allowSessionPooler: Bool, logger: Logger
    ) throws(MigrationError) -> (MigrationSession, connectMs: Double) {
        var config = ConnectionConfig(connectionString: target.connectionString)
        config.allowSessionPooler = allowSessionPooler
        let clock = ContinuousClock()
        let start = clock.now
        let session = try MigrationSession(connecting: config, options: options, hooks: hooks, purpose: purpose, logger: logger)
        return (session, (clock.now - start).milliseconds)
    }

    static func migrate(
        _ fleet: FleetRun, options: MigratorOptions, hooks: [any PostMigrateHook], allowSessionPooler: Bool, json: Bool,
        logger: Logger
    ) throws -> Never {
        let entries: [MigrationDirectory.Entry]
        do {
            entries = try MigrationSession.entries(options, required: true) ?? []
        } catch {
            throw Output.fail(error, json: json).exitCode
        }
        try fleet.run(logger: logger) { target, logger throws(MigrationError) in
            let options = try targetOptions(options, target)
            let (session, connectMs) = try session(
                target, options: options, hooks: hooks, purpose: options.dryRun ? .inspect : .migrate,
                allowSessionPooler: allowSessionPooler, logger: logger
            )
            // The session ends right after: closing it frees the lock, one round trip fewer per target.
            session.releasesLockByClosing = true
            let report = try session.migrate(entries: entries)
            let hookNotes = report.hooks.filter { !$0.summary.isEmpty && (!report.applied.isEmpty || !report.reverted.isEmpty) }
                .map { "; \($0.name): \($0.summary)" }.joined()
            let verb = options.dryRun ? "would be" : ""
            func count(_ n: Int, _ what: String) -> String { "\(n) migration\(n == 1 ? "" : "s") \(verb.isEmpty ? "" : verb + " ")\(what)" }
            if !report.reverted.isEmpty {
                return FleetOutcome(state: .applied, exitCode: 0, summary: count(report.reverted.count, "reversed") + hookNotes, connectMs: connectMs)
            }
            if !report.applied.isEmpty {
                var summary = count(report.applied.count, "applied")
                if report.pendingAfter > 0 { summary += "; \(report.pendingAfter) still pending beyond --to" }
                return FleetOutcome(state: .applied, exitCode: 0, summary: summary + hookNotes, connectMs: connectMs)
            }
            if !report.newerThanFolder.isEmpty {
                return FleetOutcome(
                    state: .upToDate, exitCode: 0,
                    summary: "has migrations newer than this folder (\(report.newerThanFolder.joined(separator: ", "))); --allow-newer-database: nothing applied",
                    connectMs: connectMs
                )
            }
            return FleetOutcome(state: .upToDate, exitCode: 0, summary: "up to date (\(report.roundTrips) round trips)", connectMs: connectMs)
        }
    }

    /// `status` (and `verify`, with `verify` true): each target read, none locked.
    static func status(
        _ fleet: FleetRun, options: MigratorOptions, hooks: [any PostMigrateHook], allowSessionPooler: Bool, verify: Bool,
        logger: Logger
    ) throws -> Never {
        try fleet.run(logger: logger) { target, logger throws(MigrationError) in
            let options = try targetOptions(options, target)
            let (session, connectMs) = try session(
                target, options: options, hooks: hooks, purpose: .inspect, allowSessionPooler: allowSessionPooler, logger: logger
            )
            var report = try session.status()
            report.hooks = session.hookStatuses()
            let states: [MigrationStatus.State] = [.applied, .pending, .changed, .missing, .failed]
            let invalid = report.hazards.count { $0.kind == .invalidIndex }
            var summary = states.map { "\(report.count($0)) \($0.rawValue)" }.joined(separator: ", ")
            if invalid > 0 { summary += ", \(invalid) INVALID index\(invalid == 1 ? "" : "es")" }
            for hook in report.hooks where !hook.upToDate { summary += "; \(hook.name): \(hook.summary)" }
            if report.isClean { return FleetOutcome(state: .upToDate, exitCode: 0, summary: summary, connectMs: connectMs) }
            if verify { return FleetOutcome(state: .failed, exitCode: ExitStatus.verifyFailed.rawValue, summary: "verify failed: " + summary, connectMs: connectMs) }
            return FleetOutcome(state: .pending, exitCode: 0, summary: summary, connectMs: connectMs)
        }
    }

    /// Whether a sync left the target as it was: the version unchanged (`--no-force`), or a reconcile (`--force`, the
    /// default) of a target already at this catalogue's version that found no row to change. Such a target is "up to
    /// date" in the fleet's summary, as a `migrate` with nothing to apply is; "applied" is for targets that changed.
    static func changedNothing(_ report: RoleSyncReport) -> Bool {
        if report.mode == .unchanged { return true }
        guard report.mode != .superseded, report.previousVersion == report.version else { return false }
        return report.roles.values.allSatisfy(\.isEmpty) && report.permissionsCreated + report.permissionsRenamed == 0
            && report.groupsOfDeletedProjectsRemoved == 0
    }

    static func updateRoles(
        _ fleet: FleetRun, options: MigratorOptions, catalogue: RoleCatalogue, syncOptions: RoleSynchronizer.Options,
        allowSessionPooler: Bool, logger: Logger
    ) throws -> Never {
        try fleet.run(logger: logger) { target, logger throws(MigrationError) in
            let options = try targetOptions(options, target)
            let (session, connectMs) = try session(
                target, options: options, hooks: [RoleSyncHook(catalogue: catalogue)], purpose: .migrate,
                allowSessionPooler: allowSessionPooler, logger: logger
            )
            session.releasesLockByClosing = true
            let synchronizer = RoleSynchronizer(catalogue: catalogue, schema: options.schema)
            let report: RoleSyncReport
            do {
                report = try session.withLock { try synchronizer.sync(session.connection, options: syncOptions, logger: logger) }
            } catch let error as MigrationError {
                throw error
            } catch let error as RoleSyncError where error.input {
                throw MigrationError(code: .invalidInput, message: "\(error)")
            } catch {
                throw MigrationError(code: .hookFailed, message: "\(error)")
            }
            return FleetOutcome(state: changedNothing(report) ? .upToDate : .applied, exitCode: 0, summary: report.summary, connectMs: connectMs)
        }
    }
}
