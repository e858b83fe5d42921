import ArgumentParser
import FoundationEssentials
import MigrationEngine
import Postgres
import RoleSync
import SystemSupport

struct UpdateRolesCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "update-roles",
        abstract: "Bring every project's role groups and permissions in step with the role catalogue, under the lock.",
        discussion: """
            By default a full reconcile (--force); --no-force syncs only when the stored role version differs. \
            With --project-id, --project-ids or --project-ids-from the sync is limited to those projects (an id given \
            twice counts once) and does not record the role version.
            """
    )

    @OptionGroup var global: GlobalOptions
    @OptionGroup var roles: RolesOptions
    @OptionGroup(title: "Fleets") var fleet: FleetOptions

    @Option(name: .customLong("project-id"), help: ArgumentHelp("Sync only this project (repeatable).", valueName: "id"))
    var projectIDs: [Int64] = []

    @Option(
        name: .customLong("project-ids"),
        help: ArgumentHelp("Sync only these projects: ids separated by commas or white space (repeatable).", valueName: "list")
    )
    var projectIDLists: [String] = []

    @Option(
        name: .customLong("project-ids-from"),
        help: ArgumentHelp("Sync only the projects listed in this file (ids separated by commas, white space or lines; - for standard input).", valueName: "file")
    )
    var projectIDFile: String?

    @Flag(name: .customLong("dry-run"), help: "Run the same statements, print what would change per role, and roll back.")
    var dryRun = false

    @Flag(inversion: .prefixedNo, help: "Reconcile even when the role version is unchanged (default on; env: MIGRATOR_FORCE_ROLES).")
    var force: Bool?

    @Option(
        name: .customLong("lock-timeout"),
        help: ArgumentHelp("How long to wait for another runner's lock (env: MIGRATOR_LOCK_TIMEOUT; default 5m).", valueName: "duration")
    )
    var lockTimeout: DurationArgument?

    @Flag(help: "Print the result as JSON on standard output.")
    var json = false

    func validate() throws {
        if let bad = projectIDs.first(where: { $0 <= 0 }) { throw ValidationError("--project-id must be a positive id; got \(bad)") }
        for list in projectIDLists {
            do throws(ProjectIDList.Problem) {
                _ = try ProjectIDList.parse(Array(list.utf8))
            } catch {
                throw ValidationError("--project-ids: \(error.message)")
            }
            if list.utf8.allSatisfy({ $0 == UInt8(ascii: ",") || $0 == 0x20 || $0 == 0x09 || $0 == 0x0A || $0 == 0x0D }) {
                throw ValidationError("--project-ids names no project; give ids separated by commas, e.g. --project-ids 1,2,3")
            }
        }
        _ = try environmentFlag("MIGRATOR_FORCE_ROLES")
    }

    /// Every project named by the three options, each once in order of first mention; nil when none was given (every
    /// project). A bad file exits 2 naming its line and column.
    func selectedProjects() throws -> [Int64]? {
        guard !projectIDs.isEmpty || !projectIDLists.isEmpty || projectIDFile != nil else { return nil }
        var ids: [Int64] = []
        var seen = Set<Int64>()
        func add(_ more: [Int64]) {
            for id in more where seen.insert(id).inserted { ids.append(id) }
        }
        add(projectIDs)
        for list in projectIDLists {
            // Checked by validate().
            add((try? ProjectIDList.parse(Array(list.utf8))) ?? [])
        }
        if let projectIDFile {
            do throws(MigrationError) {
                let listed = try ProjectIDList.load(path: projectIDFile)
                guard !listed.isEmpty else {
                    throw MigrationError(
                        code: .invalidInput,
                        message: "the file of project ids names no project; to sync every project, leave out --project-ids-from",
                        location: SourceLocation(file: projectIDFile == "-" ? "standard input" : projectIDFile)
                    )
                }
                add(listed)
            } catch {
                throw Output.fail(error, json: json).exitCode
            }
        }
        return ids
    }

    func run() throws {
        let fleetRun = try FleetRun.prepare(command: "update-roles", fleet: fleet, global: global, json: json)
        let logger = try global.makeLogger(redacting: fleetRun?.redactor)
        let catalogue = try roles.catalogue(json: json)
        let forced = try force ?? environmentFlag("MIGRATOR_FORCE_ROLES") ?? true
        // The role sync needs no migrations folder: migrator's own objects ship inside the binary.
        var options = MigratorOptions(migrationsPath: nil)
        options.schema = try global.resolvedSchema
        options.lockTimeout = try DurationSetting.lockTimeout.resolved(lockTimeout)
        // The hook is not run here; it is named so that the lock-holding session installs its own objects.
        let migrator = Migrator(
            connection: global.connectionConfig, options: options, hooks: [RoleSyncHook(catalogue: catalogue)], logger: logger
        )
        let synchronizer = RoleSynchronizer(catalogue: catalogue, schema: options.schema)
        let selected = try selectedProjects()
        let syncOptions = RoleSynchronizer.Options(force: forced, dryRun: dryRun, projectIDs: selected)
        if let fleetRun {
            try FleetJobs.updateRoles(
                fleetRun, options: options, catalogue: catalogue, syncOptions: syncOptions,
                allowSessionPooler: try global.resolvedAllowSessionPooler, logger: logger
            )
        }
        let report: RoleSyncReport
        do {
            report = try migrator.withLock { connection in
                try synchronizer.sync(connection, options: syncOptions, logger: logger)
            }
        } catch let error as MigrationError {
            throw Output.fail(error, json: json).exitCode
        } catch let error as RoleSyncError where error.input {
            throw Output.fail(MigrationError(code: .invalidInput, message: "\(error)"), json: json).exitCode
        } catch {
            throw Output.fail(MigrationError(code: .hookFailed, message: "\(error)"), json: json).exitCode
        }
        if json {
            Output.json(report)
            return
        }
        RoleTable.print(report)
    }
}

/// The per-role table `update-roles` prints.
enum RoleTable {
    static func print(_ report: RoleSyncReport) {
        Output.print(report.summary)
        guard report.mode != .unchanged else { return }
        var rows = [["ROLE", "GROUPS CREATED", "ADOPTED", "RENAMED", "GROUP PERMS +", "GROUP PERMS -", "OBJECT PERMS +", "OBJECT PERMS -"]]
        for (role, changes) in report.roles.sorted(by: { $0.key < $1.key }) where !changes.isEmpty {
            rows.append([
                role, "\(changes.groupsCreated)", "\(changes.groupsAdopted)", "\(changes.groupsRenamed)",
                "\(changes.groupPermissionsAdded)", "\(changes.groupPermissionsRemoved)",
                "\(changes.objectPermissionsAdded)", "\(changes.objectPermissionsRemoved)",
            ])
        }
        guard rows.count > 1 else {
            Output.print(report.dryRun ? "nothing would change" : "nothing changed")
            return
        }
        let widths = rows[0].indices.map { column in rows.map { $0[column].count }.max() ?? 0 }
        for row in rows {
            Output.print(row.enumerated().map { index, cell in
                index == 0 ? cell.padded(to: widths[index])
                    : String(repeating: " ", count: widths[index] - cell.count) + cell
            }.joined(separator: "  "))
        }
        if report.dryRun { Output.print("dry run: rolled back; nothing was changed") }
    }
}
