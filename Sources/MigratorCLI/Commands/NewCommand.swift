import ArgumentParser
import FoundationEssentials
import MigrationEngine
import SystemSupport

struct NewCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "new",
        abstract: "Create the next numbered migration file with a header."
    )

    @OptionGroup var global: GlobalOptions

    @Argument(help: "What the migration does, e.g. \"add sites index\"; becomes the file's description.")
    var name: String

    @Flag(name: .customLong("no-transaction"), help: "Run it outside a transaction, one statement at a time (CREATE INDEX CONCURRENTLY).")
    var noTransaction = false

    @Flag(name: .customLong("down"), help: "Also create its reverse, NNNN_name.down.sql, which `migrate --to` below it runs (stored with the migration when it is applied).")
    var down = false

    /// How to check the file, and to excuse a statement, in the header of every new file.
    static let lintLine = "-- Check it with `migrator lint FILE` (migrate lints pending files too); excuse a statement with a "
        + "comment line above it: `-- migrator:lint-ignore rule-id: reason`."

    /// `Add Sites-Index!` becomes `add_sites_index`.
    var slug: String {
        var result = ""
        for scalar in name.lowercased().unicodeScalars {
            if scalar.properties.isAlphabetic || ("0"..."9").contains(scalar) {
                result.unicodeScalars.append(scalar)
            } else if !result.hasSuffix("_") {
                result += "_"
            }
        }
        while result.hasPrefix("_") { result.removeFirst() }
        while result.hasSuffix("_") { result.removeLast() }
        return result
    }

    func validate() throws {
        if slug.isEmpty { throw ValidationError("the name must contain at least one letter or digit; got '\(name)'") }
    }

    func run() throws {
        let folder = global.resolvedMigrations
        let directory = MigrationDirectory(path: folder)
        var entries: [MigrationDirectory.Entry] = []
        if FileManager.default.fileExists(atPath: folder) {
            do {
                entries = try directory.entries()
            } catch {
                throw Output.fail(error, json: false).exitCode
            }
        } else {
            try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        }
        let last = entries.last?.version ?? 0
        guard last < Int64.max else {
            Output.printError("\(folder): error: the newest migration is numbered \(last), the largest version there is; no number is left after it")
            throw ExitStatus.invalidMigrations.exitCode
        }
        let next = last + 1
        // Keep the width the folder already uses, so the files keep sorting by name too.
        let width = max(4, entries.map { $0.fileName.prefix { $0.isNumber }.count }.max() ?? 4)
        let digits = String(next)
        let number = String(repeating: "0", count: max(0, width - digits.count)) + digits
        let fileName = "\(number)_\(slug).sql"
        let path = folder.hasSuffix("/") ? folder + fileName : folder + "/" + fileName
        // The name goes into a comment line: a newline or another control character in it would end the comment and
        // turn the rest into SQL or a directive.
        let title = String(String.UnicodeScalarView(name.unicodeScalars.map { [.control, .lineSeparator, .paragraphSeparator].contains($0.properties.generalCategory) ? " " : $0 }))
        var header = ""
        if noTransaction {
            header += """
                -- migrator:no-transaction
                -- \(number) \(title)
                --
                -- Runs outside a transaction, one statement at a time (for CREATE INDEX CONCURRENTLY and the like).
                -- If a statement fails, the ones before it stay applied and recorded; the next run resumes at it.
                \(Self.lintLine)

                """
        } else {
            header += """
                -- \(number) \(title)
                --
                -- Runs in one transaction together with its history row: all of it is applied, or none of it.
                \(Self.lintLine)

                """
        }
        guard FileManager.default.createFile(atPath: path, contents: Data(header.utf8)) else {
            Output.printError("\(path): error: the file could not be created; check the folder's permissions")
            throw ExitStatus.invalidMigrations.exitCode
        }
        Output.print(path)
        if down {
            let downPath = String(path.dropLast(4)) + ".down.sql"
            let downHeader = (noTransaction ? "-- migrator:no-transaction\n" : "") + """
                -- \(number) \(title): its reverse
                --
                -- Runs when `migrator migrate --to` names a version below \(number). The text stored with the migration
                -- when it is applied is what runs, so edit this file before \(number) is applied, not after.

                """
            guard FileManager.default.createFile(atPath: downPath, contents: Data(downHeader.utf8)) else {
                Output.printError("\(downPath): error: the file could not be created; check the folder's permissions")
                throw ExitStatus.invalidMigrations.exitCode
            }
            Output.print(downPath)
        }
    }
}
