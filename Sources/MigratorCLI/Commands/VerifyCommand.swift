import ArgumentParser
import MigrationEngine
import RoleSync

struct VerifyCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "verify",
        abstract: "Exit 0 only when every migration is applied and unchanged, no index is INVALID, and the role version is current (a CI gate); 3 otherwise."
    )

    @OptionGroup var global: GlobalOptions
    @OptionGroup var roles: RolesOptions
    @OptionGroup(title: "Fleets") var fleet: FleetOptions

    @Flag(help: "Print the result as JSON on standard output.")
    var json = false

    func run() throws {
        if let fleetRun = try FleetRun.prepare(command: "verify", fleet: fleet, global: global, json: json) {
            try roles.fleetStatus(fleetRun, global, verify: true, json: json)
        }
        let report = try roles.readStatus(global, json: json)
        if json { Output.json(report) }
        guard report.isClean else {
            if !json {
                for migration in report.migrations where migration.state != .applied && migration.state != .superseded {
                    let where_ = migration.file ?? "(file gone)"
                    Output.printError("\(where_): \(migration.state.rawValue): \(MigrationStatus.label(migration.version, migration.name))")
                }
                for problem in report.problems { Output.printError(ErrorText.render(problem).joined(separator: "\n")) }
                for hook in report.hooks where !hook.upToDate { Output.printError("\(hook.name): \(hook.summary)") }
                for hazard in report.hazards { Output.printError("\(hazard.kind == .invalidIndex ? "error" : "warning"): \(hazard.message)") }
                let invalid = report.hazards.count { $0.kind == .invalidIndex }
                Output.printError("verify failed: \(report.count(.pending)) pending, \(report.count(.changed)) changed, \(report.count(.missing)) missing, \(report.count(.failed)) failed"
                    + (invalid > 0 ? ", \(invalid) INVALID index\(invalid == 1 ? "" : "es")" : ""))
            }
            throw ExitStatus.verifyFailed.exitCode
        }
        if !json {
            for hazard in report.hazards { Output.print("warning: \(hazard.message)") }
            for note in report.notes { Output.print("note: \(note)") }
            // A hook can be current and still have something to say (role groups it had to leave out).
            for hook in report.hooks where hook.details.keys.contains(where: { $0.hasPrefix("groupsName") }) {
                Output.print("\(hook.name): \(hook.summary)")
            }
            let superseded = report.count(.superseded)
            let applied = report.migrations.count - superseded
            Output.print("verified: all \(applied) migrations are applied and unchanged"
                + (superseded > 0 ? " (\(superseded) more superseded by migrator's own schema)" : "")
                + ", and the role version is current, on \(report.database)")
        }
    }
}
