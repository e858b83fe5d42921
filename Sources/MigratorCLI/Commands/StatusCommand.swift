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
    @OptionGroup(title: "Fleets") var fleet: FleetOptions

    @Flag(help: "Print the result as JSON on standard output.")
    var json = false

    func run() throws {
        if let fleetRun = try FleetRun.prepare(command: "status", fleet: fleet, global: global, json: json) {
            try roles.fleetStatus(fleetRun, global, verify: false, json: json)
        }
        let report = try roles.readStatus(global, json: json)
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
            if let by = migration.supersededBy { state += " by \(by)" }
            if migration.newerThanFolder == true { state += " (newer than this folder)" }
            if migration.state == .applied, migration.reversible == true { state += " (reversible)" }
            rows.append([
                String(MigrationStatus.label(migration.version, "").dropLast()), migration.name, state,
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
        var states: [MigrationStatus.State] = [.applied, .pending, .changed, .missing, .failed]
        if report.count(.superseded) > 0 { states.append(.superseded) }
        let summary = states.map { "\(report.count($0)) \($0.rawValue)" }.joined(separator: ", ")
        Output.print("\(report.database): \(summary)")
        for hook in report.hooks { Output.print("\(hook.name): \(hook.summary)") }
        for problem in report.problems { Output.print(ErrorText.render(problem).joined(separator: "\n")) }
        for hazard in report.hazards { Output.print("warning: \(hazard.message)") }
        for note in report.notes { Output.print("note: \(note)") }
    }
}
