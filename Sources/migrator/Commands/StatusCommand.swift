import ArgumentParser
import FoundationEssentials
import MigrationEngine
import RoleSync
import SystemSupport

struct StatusCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "status",
        abstract: "Show every migration: applied, pending, changed, missing or failed."
    )

    @OptionGroup var global: GlobalOptions
    @OptionGroup var roles: RolesOptions

    @Flag(help: "Print the result as JSON on standard output.")
    var json = false

    func run() throws {
        let logger = try global.makeLogger()
        let migrator = Migrator(
            connection: global.connectionConfig, options: MigratorOptions(migrationsPath: global.resolvedMigrations),
            hooks: [RoleSyncHook(catalogue: try roles.catalogue(json: json))], logger: logger
        )
        let report: StatusReport
        do {
            report = try migrator.status()
        } catch {
            throw Output.fail(error, json: json).exitCode
        }
        if json {
            Output.json(report)
        } else {
            StatusTable.print(report)
        }
    }
}

enum StatusTable {
    static func print(_ report: StatusReport) {
        var rows = [["VERSION", "NAME", "STATE", "APPLIED AT", "DURATION"]]
        for migration in report.migrations {
            var state = migration.state.rawValue
            if migration.outOfOrder == true { state += " (out of order)" }
            if migration.state == .failed, let statement = migration.failedStatement { state += " at statement \(statement)" }
            rows.append([
                String(MigrationSummary.label(migration.version, "").dropLast()), migration.name, state,
                migration.appliedAt ?? "-", migration.durationMs.map(Output.milliseconds) ?? "-",
            ])
        }
        let widths = (0..<5).map { column in rows.map { $0[column].count }.max() ?? 0 }
        for row in rows {
            let padded = row.enumerated().map { index, cell in
                index == row.count - 1 ? cell : cell.padded(to: widths[index])
            }
            Output.print(padded.joined(separator: "  "))
        }
        let summary = [MigrationStatus.State.applied, .pending, .changed, .missing, .failed]
            .map { "\(report.count($0)) \($0.rawValue)" }
            .joined(separator: ", ")
        Output.print("\(report.database): \(summary)")
        for hook in report.hooks { Output.print("\(hook.name): \(hook.summary)") }
        for problem in report.problems { Output.print(problem) }
    }
}
