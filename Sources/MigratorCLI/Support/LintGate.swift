import ArgumentParser
import Lint
import Logging
import MigrationEngine

/// `migrate --lint`: what to do with the lint findings of the files a run is about to apply.
enum LintMode: String, ExpressibleByArgument, CaseIterable, Sendable {
    /// Print them on standard error and go on (the default).
    case warn
    /// Print them, and refuse the run before anything is applied when one is an error (exit 2).
    case error
    /// Do not lint.
    case off

    static let env = "MIGRATOR_LINT"

    /// The option, else MIGRATOR_LINT, else warn.
    static func resolve(_ option: LintMode?) throws -> LintMode {
        if let option { return option }
        guard let text = GlobalOptions.environment[env], !text.isEmpty else { return .warn }
        guard let mode = LintMode(rawValue: text.lowercased()) else {
            throw ValidationError("\(env) (for --lint) must be warn, error or off; got '\(text)'")
        }
        return mode
    }
}

/// Lints the pending files inside the run (``MigratorOptions/beforeApplying``: after the plan, before the first
/// migration), so that it costs no query of its own and sees exactly what the run applies.
struct LintGate: Sendable {
    var mode: LintMode
    var linter: Linter
    /// Findings go to standard error: compiler-style text, or log events when the logs are JSON lines (so that
    /// neither `--json` on standard output nor a log collector reading standard error gets lines it cannot read).
    var logsAsJSON: Bool
    var logger: Logger

    func check(_ files: [MigrationFile]) throws(MigrationError) {
        guard mode != .off else { return }
        var errors: [Diagnostic] = []
        for file in files {
            let findings: [LintFinding]
            do {
                findings = try linter.lint(file)
            } catch {
                // PostgreSQL's grammar (libpg_query) may be older than the server's: a file it cannot parse is said
                // to be unlinted, and only --lint error stops for it.
                if mode == .error {
                    errors += error.diagnostics
                } else {
                    emit(warning: "\(error.description): not linted; the run goes on")
                }
                continue
            }
            for finding in findings {
                emit(finding)
                if finding.severity == .error {
                    errors.append(Diagnostic(
                        message: "[\(finding.rule)] \(finding.message)",
                        location: SourceLocation(file: finding.file, line: finding.line, column: finding.column),
                        hint: "instead: \(finding.instead)"
                    ))
                }
            }
        }
        if mode == .error, !errors.isEmpty {
            throw MigrationError(
                code: .invalidMigrationFile, diagnostics: errors,
                notes: [
                    "nothing was applied: --lint error refuses pending migrations with lint errors; fix them, excuse a "
                        + "statement with `-- migrator:lint-ignore rule-id: reason` on the line before it, or run "
                        + "with --lint warn",
                ]
            )
        }
    }

    private func emit(_ finding: LintFinding) {
        if logsAsJSON {
            let metadata: Logger.Metadata = [
                "lint.rule": "\(finding.rule)", "lint.severity": "\(finding.severity.rawValue)",
                "lint.file": "\(finding.file)", "lint.line": "\(finding.line)", "lint.column": "\(finding.column)",
                "lint.message": "\(finding.message)", "lint.instead": "\(finding.instead)",
            ]
            logger.warning("lint finding", metadata: metadata)
        } else {
            Output.printError(finding.text)
        }
    }

    private func emit(warning text: String) {
        if logsAsJSON {
            logger.warning("lint skipped", metadata: ["lint.reason": "\(text)"])
        } else {
            Output.printError("warning: \(text)")
        }
    }
}
