import ArgumentParser
import FoundationEssentials
import Logging
import MigrationEngine
import Postgres
import SystemSupport

/// A command run over a fleet: the targets (checked whole, then this runner's shard), one job each on a session of
/// its own, a line per finished target, a summary, and the exit code.
///
/// Output: a line on standard output per target as it finishes (its label, never its connection string), then the
/// summary; with `--json` one JSON object a line per target, then one with the summary. The exit code is 0 when
/// every target succeeded; else the failed targets' code when they share one, else 7 (``ExitStatus/mixedFailures``).
struct FleetRun {
    var command: String
    var targets: [FleetTarget]
    var runner: FleetRunner
    var json: Bool
    /// Each target's own secrets, in the order of `targets`: a target's lines are redacted with its own only, so the
    /// cost of a line does not grow with the fleet.
    var targetRedactors: [Redactor]
    /// Every target's secrets at once, for the logger, which does not know which target a line is about.
    var redactor: Redactor
    /// The shard taken, for the summary.
    var shard: (index: Int, count: Int)?
    var totalListed: Int

    /// Reads the fleet options, or nil when this is not a fleet run.
    static func prepare(
        command: String, fleet: FleetOptions, global: GlobalOptions, json: Bool
    ) throws -> FleetRun? {
        let isFleet = fleet.isFleet(global)
        try fleet.validate(fleet: isFleet, global: global)
        guard isFleet else { return nil }
        let all = try fleet.allTargets(global, ownSchema: try global.resolvedSchema, json: json)
        let shard = try fleet.resolvedShard
        let mine = shard.map { shard in all.filter { $0.shard(of: shard.count) == shard.index } } ?? all
        // Passwords are refused in a targets file unless allowed; then every output line is redacted with them.
        let redactors = mine.map { ConnectionConfig(connectionString: $0.connectionString).redactor }
        return FleetRun(
            command: command, targets: mine,
            runner: FleetRunner(parallel: try fleet.resolvedParallel, failFast: fleet.failFast, canary: fleet.canary ?? 0),
            json: json, targetRedactors: redactors, redactor: Redactor(combining: redactors), shard: shard,
            totalListed: all.count
        )
    }

    /// One target's connection, as the single-database commands make theirs.
    static func connection(_ target: FleetTarget, global: GlobalOptions) -> ConnectionConfig {
        var config = ConnectionConfig(connectionString: target.connectionString)
        config.allowSessionPooler = (try? global.resolvedAllowSessionPooler) ?? false
        return config
    }

    /// Runs `job` on each target and exits as documented; `job` returns the target's outcome, and throws only a
    /// ``MigrationError`` that becomes a failed outcome with its exit code.
    func run(logger: Logger, _ job: @escaping @Sendable (FleetTarget, Logger) throws(MigrationError) -> FleetOutcome) throws -> Never {
        let clock = ContinuousClock()
        let start = clock.now
        let targets = self.targets
        let redactors = targetRedactors
        let json = self.json
        let command = self.command
        if targets.isEmpty {
            let note = shard.map { "shard \($0.index)/\($0.count) holds none of the \(totalListed) targets" } ?? "no targets"
            if json { Self.printJSON(["summary": ["targets": 0], "ok": true, "exitCode": 0, "note": note] as [String: any Sendable]) }
            else { Output.print("\(command): \(note); nothing to do") }
            CommandLineTool.exitAfterOutput(0)
        }
        let summary = runner.run(count: targets.count, work: { index in
            let target = targets[index]
            let redactor = redactors[index]
            var targetLogger = logger
            targetLogger[metadataKey: "target"] = .string(target.label)
            let began = clock.now
            do throws(MigrationError) {
                var outcome = try job(target, targetLogger)
                outcome.durationMs = (clock.now - began).milliseconds
                return outcome
            } catch {
                let status = ExitStatus(error.code)
                // The whole error, compiler-style, on standard error; its first line on the target's line.
                writeStandardError(redactor.redact(ErrorText.render(error).split(separator: "\n").map { "\(target.label): \($0)" }.joined(separator: "\n")) + "\n")
                return FleetOutcome(
                    state: .failed, exitCode: status.rawValue,
                    summary: String(error.diagnostics[0].summary.split(separator: "\n", maxSplits: 1).first ?? ""),
                    durationMs: (clock.now - began).milliseconds
                )
            }
        }, finished: { index, outcome in
            let target = targets[index]
            let redactor = redactors[index]
            if json {
                Self.printJSON([
                    "target": target.label, "origin": target.origin, "state": outcome.state.rawValue,
                    "exitCode": Int(outcome.exitCode), "summary": redactor.redact(outcome.summary),
                    "durationMs": (outcome.durationMs * 10).rounded() / 10, "connectMs": (outcome.connectMs * 10).rounded() / 10,
                ] as [String: any Sendable])
            } else {
                let state = outcome.state == .upToDate ? "up to date" : outcome.state.rawValue
                var line = state.padded(to: 10) + " " + target.label
                if outcome.state != .skipped {
                    line += ": " + (outcome.state == .failed ? "exit \(outcome.exitCode): " : "") + redactor.redact(outcome.summary)
                    line += " (" + Output.milliseconds(outcome.durationMs) + ")"
                }
                Output.print(line)
            }
        })
        let codes = Set(summary.failed.map(\.exitCode))
        let exitCode: Int32 = codes.isEmpty ? 0 : codes.count == 1 ? codes.first! : ExitStatus.mixedFailures.rawValue
        let failedTargets = summary.failed.sorted { $0.index < $1.index }
        let seconds = TextFormat.fixed((clock.now - start).milliseconds / 1000, 2)
        if json {
            var object: [String: any Sendable] = [
                "targets": targets.count, "applied": summary.count(.applied), "upToDate": summary.count(.upToDate),
                "failed": summary.count(.failed), "skipped": summary.count(.skipped), "seconds": Double(seconds) ?? 0,
            ]
            if summary.count(.pending) > 0 { object["pending"] = summary.count(.pending) }
            if let shard { object["shard"] = "\(shard.index)/\(shard.count)"; object["listed"] = totalListed }
            Self.printJSON([
                "summary": object, "ok": exitCode == 0, "exitCode": Int(exitCode), "canaryStopped": summary.canaryStopped,
                "failedTargets": failedTargets.map { ["target": targets[$0.index].label, "exitCode": Int($0.exitCode)] as [String: any Sendable] },
            ] as [String: any Sendable])
        } else {
            var parts = ["\(summary.count(.applied)) \(command == "migrate" || command == "update-roles" ? "applied" : "read")"]
            if command == "migrate" || command == "update-roles" {
                parts = ["\(summary.count(.applied)) applied", "\(summary.count(.upToDate)) up to date"]
            } else {
                parts = ["\(summary.count(.upToDate)) up to date"]
                if command == "status" { parts.append("\(summary.count(.pending)) not up to date") }
            }
            parts += ["\(summary.count(.failed)) failed", "\(summary.count(.skipped)) skipped"]
            var line = "\(command): \(targets.count) target\(targets.count == 1 ? "" : "s")"
            if let shard { line += " (shard \(shard.index)/\(shard.count) of \(totalListed))" }
            line += ": " + parts.joined(separator: ", ") + " in \(seconds) s"
            Output.print(line)
            if summary.canaryStopped {
                Output.print("canary: a canary target failed, so the other \(summary.count(.skipped)) were skipped")
            }
            if !failedTargets.isEmpty {
                Output.print("failed: " + failedTargets.map { "\(targets[$0.index].label) (exit \($0.exitCode))" }.joined(separator: ", "))
                if codes.count > 1 {
                    Output.print("exit \(ExitStatus.mixedFailures.rawValue): the targets failed with different codes (\(codes.sorted().map(String.init).joined(separator: ", ")))")
                }
            }
        }
        CommandLineTool.exitAfterOutput(exitCode)
    }

    /// One JSON object on one line (a stream a script reads line by line).
    static func printJSON(_ object: [String: any Sendable]) {
        Output.print(jsonText(object))
    }

    static func jsonText(_ value: any Sendable) -> String {
        switch value {
        case let text as String: return quote(text)
        case let flag as Bool: return flag ? "true" : "false"
        case let number as Int: return String(number)
        case let number as Int32: return String(number)
        case let number as Double: return number.isFinite ? String(number) : "null"
        case let array as [[String: any Sendable]]: return "[" + array.map(jsonText).joined(separator: ",") + "]"
        case let object as [String: any Sendable]:
            return "{" + object.keys.sorted().map { quote($0) + ":" + jsonText(object[$0]!) }.joined(separator: ",") + "}"
        default: return "null"
        }
    }

    static func quote(_ text: String) -> String { TextFormat.jsonQuoted(text) }
}
