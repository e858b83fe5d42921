import ArgumentParser
import MigrationEngine
import Postgres

/// What the hand changes of the history share: the connection and folder, a reason for the audit row, `--json`.
struct HandChangeOptions: ParsableArguments {
    @Option(help: ArgumentHelp("Why, kept in the audit row (migrator.history_audit) with who and when.", valueName: "text"))
    var reason: String?

    @Flag(help: "Print the result as JSON on standard output.")
    var json = false

    struct Result: Encodable {
        var ok = true
        var changes: [MigrationSession.HandChange]
        var database: String
    }

    /// Runs `body` on a session holding the lock, then prints each change.
    func run(_ global: GlobalOptions, _ body: (MigrationSession) throws(MigrationError) -> [MigrationSession.HandChange]) throws {
        let logger = try global.makeLogger()
        var options = MigratorOptions(migrationsPath: global.optionalMigrations)
        options.schema = try global.resolvedSchema
        let migrator = Migrator(connection: global.connectionConfig, options: options, logger: logger)
        let changes: [MigrationSession.HandChange]
        let database: String
        do {
            let session = try migrator.session(.migrate)
            changes = try body(session)
            database = session.connection.safeDescription
        } catch {
            throw Output.fail(error, json: json).exitCode
        }
        if json {
            Output.json(Result(changes: changes, database: database))
            return
        }
        for change in changes {
            let label = MigrationStatus.label(change.version, change.name)
            switch change.action {
            case "accept-checksum":
                Output.print("accepted the changed checksum of \(label): \(change.oldChecksum ?? "?") -> \(change.newChecksum ?? "?")")
            case "clear-failed":
                Output.print("cleared the failed record of \(label): the next migrate runs it from its first statement")
            case "baseline":
                Output.print("recorded \(label) as applied (baseline, not run): \(change.newChecksum ?? "?")")
            case "mark-applied":
                Output.print("marked \(label) applied (not run): \(change.newChecksum ?? "?")")
            default:
                Output.print("marked \(label) pending (its history row is deleted, nothing is reversed): the next migrate runs it")
            }
        }
        if changes.isEmpty { Output.print("nothing to change on \(database)") }
    }
}

struct BaselineCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "baseline",
        abstract: "Record the migrations up to a version as applied without running them, for a database whose schema existed before migrator."
    )

    @OptionGroup var global: GlobalOptions
    @OptionGroup var change: HandChangeOptions

    @Option(name: .customLong("to"), help: ArgumentHelp("The newest version the existing schema already has.", valueName: "version"))
    var target: Int64

    @Flag(name: .customLong("allow-existing-history"), help: "On a database with history already, record only the versions up to --to that are not in it.")
    var allowExistingHistory = false

    func validate() throws {
        if target <= 0 { throw ValidationError("--to must be a positive version number; got \(target)") }
    }

    func run() throws {
        try change.run(global) { session throws(MigrationError) in
            try session.baseline(to: target, allowExistingHistory: allowExistingHistory, reason: change.reason)
        }
    }
}

struct RepairCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "repair",
        abstract: "Accept the checksum of an applied file changed on purpose, or clear a failed migration so it runs again from the start."
    )

    @OptionGroup var global: GlobalOptions
    @OptionGroup var change: HandChangeOptions

    @Argument(help: ArgumentHelp("The versions to repair.", valueName: "version"))
    var versions: [Int64] = []

    @Flag(help: "Repair every changed and failed migration.")
    var all = false

    func validate() throws {
        if versions.isEmpty == !all { throw ValidationError("name the versions to repair, or pass --all (not both)") }
    }

    func run() throws {
        try change.run(global) { session throws(MigrationError) in
            try session.repair(versions: all ? nil : versions, reason: change.reason)
        }
    }
}

struct MarkAppliedCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "mark-applied",
        abstract: "Record one migration of the folder as applied without running it (a hand-fix; audited)."
    )

    @OptionGroup var global: GlobalOptions
    @OptionGroup var change: HandChangeOptions

    @Argument(help: ArgumentHelp("The version.", valueName: "version"))
    var version: Int64

    func run() throws {
        try change.run(global) { session throws(MigrationError) in [try session.markApplied(version, reason: change.reason)] }
    }
}

struct MarkPendingCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "mark-pending",
        abstract: "Delete one migration's history row without reversing anything, so the next migrate runs it (a hand-fix; audited)."
    )

    @OptionGroup var global: GlobalOptions
    @OptionGroup var change: HandChangeOptions

    @Argument(help: ArgumentHelp("The version.", valueName: "version"))
    var version: Int64

    func run() throws {
        try change.run(global) { session throws(MigrationError) in [try session.markPending(version, reason: change.reason)] }
    }
}
