import ArgumentParser
import Lint
import Logging
import MigrationEngine

struct LintCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "lint",
        abstract: "Check migrations for statements that lock the app out, rewrite a table or fail, before they run.",
        discussion: """
            Without FILEs: the pending migrations (this needs the database, to know which are pending); with --all: \
            every file of the migrations folder, and no database. Each statement is parsed by PostgreSQL's own \
            grammar (libpg_query). Excuse one with a comment on the line(s) before it: \
            -- migrator:lint-ignore rule-id: why it is safe here

            Exit codes: 0 no error finding (warnings may be printed); 1 at least one error finding; 2 a file cannot \
            be read or parsed; 4 cannot connect (pending migrations only); 64 usage error.
            """
    )

    @OptionGroup var global: GlobalOptions

    @Flag(name: .customLong("all"), help: "Lint every file of the migrations folder, applied or not; needs no database.")
    var all = false

    @Option(
        name: .customLong("ddl-lock-timeout"),
        help: ArgumentHelp("The lock_timeout migrate will run with; at 0 (off) every file must set its own (env: MIGRATOR_DDL_LOCK_TIMEOUT; default: migrate's default).", valueName: "duration")
    )
    var ddlLockTimeout: DurationArgument?

    @Flag(help: "Print the findings as JSON on standard output.")
    var json = false

    @Argument(help: ArgumentHelp("SQL files to lint (any name); they need no database.", valueName: "file"))
    var files: [String] = []

    func validate() throws {
        if all && !files.isEmpty { throw ValidationError("--all lints the whole folder; pass it or FILEs, not both") }
    }

    func run() throws {
        let linter = Linter(migratorLockTimeoutOff: try DurationSetting.ddlLockTimeout.resolved(ddlLockTimeout) == .zero)
        var findings: [LintFinding] = []
        var problems: [Diagnostic] = []
        var linted: [String] = []
        let sources: [Source]
        do {
            sources = try fileSources()
        } catch {
            throw Output.fail(error, json: json).exitCode
        }
        for source in sources {
            do {
                let file = try source.load()
                findings += try linter.lint(file)
                linted.append(file.displayPath)
            } catch {
                problems += error.diagnostics
            }
        }
        let errors = findings.count { $0.severity == .error }
        let status: ExitStatus = !problems.isEmpty ? .invalidMigrations : errors > 0 ? .lintErrors : .success
        if json {
            Output.json(LintReport(status: status, files: linted, findings: findings, problems: problems))
        } else {
            for finding in findings { Output.print(finding.text) }
            let warnings = findings.count - errors
            Output.print("\(errors) \(errors == 1 ? "error" : "errors"), \(warnings) \(warnings == 1 ? "warning" : "warnings") in \(linted.count) \(linted.count == 1 ? "file" : "files")")
        }
        // The files that could be read were linted and their findings printed; what stopped the others goes to
        // standard error, compiler-style (and, with --json, into the document's `problems`).
        if !problems.isEmpty {
            Output.printError(ErrorText.render(MigrationError(code: .invalidMigrationFile, diagnostics: problems)))
        }
        if status != .success { throw status.exitCode }
    }

    /// A file to lint, read when its turn comes (so that one unreadable file does not hide the others' findings).
    enum Source {
        case path(String)
        case entry(MigrationDirectory.Entry)

        func load() throws(MigrationError) -> MigrationFile {
            switch self {
            case .path(let path): try MigrationFile.read(path: path)
            case .entry(let entry): try entry.load()
            }
        }
    }

    private func fileSources() throws(MigrationError) -> [Source] {
        if !files.isEmpty { return files.map(Source.path) }
        let folder = global.resolvedMigrations
        if all { return try MigrationDirectory(path: folder).entries().map(Source.entry) }
        let logger: Logger
        do { logger = try global.makeLogger() } catch { throw MigrationError(code: .invalidInput, message: "\(error)") }
        var options = MigratorOptions(migrationsPath: folder)
        options.schema = (try? global.resolvedSchema) ?? .default  // checked by GlobalOptions.validate()
        let report = try Migrator(connection: global.connectionConfig, options: options, logger: logger).status()
        return report.migrations.filter { $0.state == .pending || $0.state == .failed }.compactMap(\.file).map(Source.path)
    }
}

/// `lint --json`: every finding, the files linted, and the files that could not be (`problems`, in the form of
/// `status --json`'s).
struct LintReport: Encodable {
    var ok: Bool
    var exitCode: Int32
    var files: [String]
    var errors: Int
    var warnings: Int
    var findings: [LintFinding]
    var problems: [Diagnostic]

    init(status: ExitStatus, files: [String], findings: [LintFinding], problems: [Diagnostic]) {
        self.problems = problems
        ok = status == .success
        exitCode = status.rawValue
        self.files = files
        errors = findings.count { $0.severity == .error }
        warnings = findings.count - errors
        self.findings = findings
    }
}
