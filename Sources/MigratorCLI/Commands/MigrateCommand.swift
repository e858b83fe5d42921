import ArgumentParser
import Lint
import MigrationEngine
import RoleSync
import SystemSupport
#if canImport(Glibc)
import Glibc
#endif

struct MigrateCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "migrate",
        abstract: "Apply pending migrations under the advisory lock, then run the post-migrate hooks."
    )

    @OptionGroup var global: GlobalOptions
    @OptionGroup var runOptions: RunOptions
    @OptionGroup var roles: RolesOptions
    @OptionGroup(title: "Fleets") var fleet: FleetOptions

    @Flag(name: .customLong("force-roles"), help: "Reconcile every project's roles even when the role version is unchanged (env: MIGRATOR_FORCE_ROLES=1).")
    var forceRoles = false

    @Flag(name: .customLong("skip-roles"), help: "Do not run the role sync after the migrations (env: MIGRATOR_SKIP_ROLES=1).")
    var skipRoles = false

    @Option(name: .customLong("to"), help: ArgumentHelp("Apply up to and including this version only; below the newest applied one, reverse the migrations above it with the downs stored when they were applied (0: all).", valueName: "version"))
    var target: Int64?

    @Flag(name: .customLong("dry-run"), help: "Show what would be applied; change nothing and take no lock.")
    var dryRun = false

    @Flag(help: "Print the result as JSON on standard output.")
    var json = false

    @Option(name: .customLong("lint"), help: ArgumentHelp("Lint the pending migrations first: warn (print the findings on standard error, go on), error (also refuse before applying anything, exit 2, when one is an error) or off (env: MIGRATOR_LINT; default warn).", valueName: "mode"))
    var lint: LintMode?

    @Flag(
        name: .customLong("then-exec"),
        help: "After a successful migrate, replace this process with the command after `--` (a container entrypoint: the app gets the signals and its exit code is the container's)."
    )
    var thenExec = false

    @Argument(parsing: .postTerminator, help: ArgumentHelp("The command to exec with --then-exec.", valueName: "command"))
    var command: [String] = []

    func validate() throws {
        if thenExec && command.isEmpty {
            throw ValidationError("--then-exec needs a command after `--`, e.g. migrator migrate --then-exec -- ./app serve")
        }
        if !thenExec && !command.isEmpty {
            throw ValidationError("a command after `--` is only run with --then-exec")
        }
        if thenExec && dryRun { throw ValidationError("--then-exec and --dry-run contradict each other; pass one") }
        if thenExec && fleet.isFleet(global) {
            throw ValidationError("--then-exec runs one app after one database's migrate; a fleet run (--targets, several --database-url) cannot exec an app")
        }
        if let target, target < 0 { throw ValidationError("--to must be a version number, or 0 to reverse every migration; got \(target)") }
        _ = try LintMode.resolve(lint)
        if try resolvedSkipRoles && resolvedForceRoles {
            throw ValidationError("--skip-roles and --force-roles contradict each other; pass one")
        }
    }

    // Options win over variables: an option contradicting a variable wins; two contradicting options, or two
    // contradicting variables, are a usage error (validate()).
    var resolvedSkipRoles: Bool { get throws { try skipRoles || !forceRoles && environmentFlag("MIGRATOR_SKIP_ROLES") == true } }
    var resolvedForceRoles: Bool { get throws { try forceRoles || !skipRoles && environmentFlag("MIGRATOR_FORCE_ROLES") == true } }

    func run() throws {
        let fleetRun = try FleetRun.prepare(command: "migrate", fleet: fleet, global: global, json: json)
        let logger = try global.makeLogger(redacting: fleetRun?.redactor)
        var options = try runOptions.options(migrations: global.resolvedMigrations, schema: global.resolvedSchema)
        options.target = target
        options.dryRun = dryRun
        let gate = LintGate(
            mode: try LintMode.resolve(lint), linter: Linter(migratorLockTimeoutOff: options.ddlLockTimeout == .zero),
            logsAsJSON: try global.resolvedLogFormat == .json, logger: logger
        )
        options.beforeApplying = gate.check
        var hooks: [any PostMigrateHook] = []
        if try !resolvedSkipRoles {
            hooks.append(RoleSyncHook(catalogue: try roles.catalogue(json: json), force: try resolvedForceRoles))
        }
        if let fleetRun {
            try FleetJobs.migrate(
                fleetRun, options: options, hooks: hooks, allowSessionPooler: try global.resolvedAllowSessionPooler,
                json: json, logger: logger
            )
        }
        var migrator = Migrator(connection: global.connectionConfig, options: options, hooks: hooks, logger: logger)
        // The process exits right after, and the server frees a session's advisory lock when the session ends: no
        // unlock statement. Except before --then-exec (the app starts with the lock already free, its connection
        // gone) and through a pooler in session mode (the server session outlives the client's).
        let pooled = try global.resolvedAllowSessionPooler
        migrator.releasesLockByClosing = !thenExec && !pooled
        let report: MigrateReport
        do {
            report = try migrator.migrate()
        } catch {
            throw Output.fail(error, json: json).exitCode
        }
        defer { if thenExec { Self.exec(command) } }
        if json {
            Output.json(report)
            return
        }
        for migration in report.reverted {
            var line = "\(dryRun ? "would reverse" : "reversed") \(MigrationStatus.label(migration.version, migration.name))"
            if !dryRun { line += " (\(Output.milliseconds(migration.durationMs)))" }
            line += ", with the down stored when it was applied"
            if !migration.transactional { line += ", outside a transaction" }
            Output.print(line)
        }
        let verb = dryRun ? "would apply" : "applied"
        for migration in report.applied {
            var line = "\(verb) \(MigrationStatus.label(migration.version, migration.name))"
            if !dryRun { line += " (\(Output.milliseconds(migration.durationMs)))" }
            if let resumed = migration.resumedAtStatement { line += ", resumed at statement \(resumed)" }
            if !migration.transactional { line += ", outside a transaction" }
            Output.print(line)
        }
        for hook in report.hooks { Output.print("hook \(hook.name): \(hook.summary)") }
        let count = report.applied.count
        let noun = count == 1 ? "migration" : "migrations"
        if !report.reverted.isEmpty {
            let reversed = report.reverted.count
            Output.print(dryRun
                ? "dry run: \(reversed) migration\(reversed == 1 ? "" : "s") would be reversed on \(report.database); nothing was changed"
                : "\(reversed) migration\(reversed == 1 ? "" : "s") reversed on \(report.database) in \(Output.milliseconds(report.durationMs)) (\(report.roundTrips) round trips)")
        } else if !report.newerThanFolder.isEmpty {
            Output.print("warning: \(report.database) has migrations newer than this folder (\(report.newerThanFolder.joined(separator: ", "))), "
                + "applied by a newer release; --allow-newer-database: nothing was applied or reverted")
        } else if count == 0 {
            Output.print("nothing to migrate: \(report.database) is up to date (\(Output.milliseconds(report.durationMs)), \(report.roundTrips) round trips)")
        } else if dryRun {
            Output.print("dry run: \(count) \(noun) would be applied to \(report.database); nothing was changed")
        } else {
            var line = "\(count) \(noun) applied to \(report.database) in \(Output.milliseconds(report.durationMs)) (\(report.roundTrips) round trips)"
            if report.pendingAfter > 0 { line += "; \(report.pendingAfter) still pending beyond --to" }
            Output.print(line)
        }
    }
}

/// Options of the commands that take the lock and apply migrations.
public struct RunOptions: ParsableArguments {
    public init() {}

    @Option(
        name: .customLong("lock-timeout"),
        help: ArgumentHelp("How long to wait for another runner's lock, e.g. 300s, 5m (env: MIGRATOR_LOCK_TIMEOUT; default 5m).", valueName: "duration")
    )
    var lockTimeout: DurationArgument?

    @Option(
        name: .customLong("ddl-lock-timeout"),
        help: ArgumentHelp("lock_timeout for each try of a migration statement; 0 turns it off (env: MIGRATOR_DDL_LOCK_TIMEOUT; default 2s).", valueName: "duration")
    )
    var ddlLockTimeout: DurationArgument?

    @Option(
        name: .customLong("ddl-lock-retries"),
        help: ArgumentHelp("How long to keep trying a migration whose lock was not granted, with backoff; 0 fails at the first refusal (env: MIGRATOR_DDL_LOCK_RETRIES; default 1m).", valueName: "duration")
    )
    var ddlLockRetries: DurationArgument?

    @Option(
        name: .customLong("progress-every"),
        help: ArgumentHelp("Report a statement's progress once it has run this long, and again every as long; 0 turns it off (env: MIGRATOR_PROGRESS_EVERY; default 5s).", valueName: "duration")
    )
    var progressEvery: DurationArgument?

    @Option(
        name: .customLong("statement-timeout"),
        help: ArgumentHelp("statement_timeout for migrations; without it none applies, whatever the server sets (env: MIGRATOR_STATEMENT_TIMEOUT).", valueName: "duration")
    )
    var statementTimeout: DurationArgument?

    @Flag(
        name: .customLong("allow-newer-database"),
        help: "Start on a database migrated by a newer release (applied migrations numbered above every file): apply nothing, revert nothing, warn and exit 0 (env: MIGRATOR_ALLOW_NEWER_DATABASE=1)."
    )
    var allowNewerDatabase = false

    @Flag(
        name: .customLong("allow-out-of-order"),
        help: "Apply pending migrations numbered below the newest applied one instead of refusing (env: MIGRATOR_ALLOW_OUT_OF_ORDER=1)."
    )
    var allowOutOfOrder = false

    public func options(migrations: String?, schema: OwnSchema) throws -> MigratorOptions {
        let lock = try DurationSetting.lockTimeout.resolved(lockTimeout)
        let ddl = try DurationSetting.ddlLockTimeout.resolved(ddlLockTimeout)
        let statement = try DurationSetting.statementTimeout.resolve(statementTimeout)
        let retries = try DurationSetting.ddlLockRetries.resolved(ddlLockRetries)
        let progress = try DurationSetting.progressEvery.resolved(progressEvery)
        // The server takes these in milliseconds up to 2^31-1 (about 24.8 days).
        let serverMaximum = Duration.milliseconds(Int64(Int32.max))
        for (setting, value) in [(DurationSetting.ddlLockTimeout, ddl), (DurationSetting.statementTimeout, statement)] {
            if let value, value > serverMaximum {
                throw ValidationError("\(setting.option) (\(setting.env)) is longer than PostgreSQL allows (2147483647ms, about 24.8 days)")
            }
        }
        let outOfOrder = try allowOutOfOrder || environmentFlag("MIGRATOR_ALLOW_OUT_OF_ORDER") == true
        var options = MigratorOptions(
            migrationsPath: migrations,
            lockTimeout: lock,
            ddlLockTimeout: ddl,
            ddlLockRetryBudget: retries,
            progressEvery: progress,
            statementTimeout: statement,
            allowOutOfOrder: outOfOrder
        )
        options.schema = schema
        options.allowNewerDatabase = try allowNewerDatabase || environmentFlag("MIGRATOR_ALLOW_NEWER_DATABASE") == true
        return options
    }
}

extension MigrateCommand {
    /// Replaces the process with `command` (searched in PATH). Only returns on failure, which exits 127 as a shell
    /// does for a command it cannot run.
    static func exec(_ command: [String]) -> Never {
        var arguments: [UnsafeMutablePointer<CChar>?] = command.map { strdup($0) }
        arguments.append(nil)
        execvp(command[0], &arguments)
        let reason = String(cString: strerror(errno))
        writeStandardError("error: --then-exec could not run '\(command[0])': \(reason)\n")
        Glibc.exit(127)
    }
}
