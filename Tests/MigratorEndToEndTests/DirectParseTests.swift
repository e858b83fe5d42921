import ArgumentParser
import Testing
@testable import MigratorCLI

/// `migrator` parses the subcommand a line names as a root of its own (``CommandLineTool/parseDirectly(_:)``, for the
/// start-up time of every deploy step) and falls back to the whole tree for anything else. A user relies on both giving
/// the same command with the same options, and on every help text, usage error and exit code being the whole tree's.
@Suite("parsing a subcommand directly")
struct DirectParseTests {
    /// Lines the full tree accepts: the direct parse must give the same command with the same values.
    static let accepted: [[String]] = [
        ["migrate"],
        ["migrate", "--database-url", "postgresql://app@db/app", "--json"],
        ["migrate", "--to", "3", "--dry-run", "--skip-roles", "--lint", "error"],
        ["migrate", "--migrations", "db/migrations", "--schema", "deploy", "--lock-timeout", "90s", "--force-roles"],
        ["migrate", "--then-exec", "--", "./app", "serve", "--port", "8000"],
        ["migrate", "--targets", "fleet.txt", "--parallel", "8", "--canary", "2", "--shard", "1/4", "--fail-fast"],
        ["status", "--json"],
        ["verify"],
        ["update-roles", "--force", "--project-ids", "1,2,3", "--dry-run"],
        ["lint", "Migrations/0001_django_content_types.sql", "--json"],
        ["wait", "--timeout", "30s"],
        ["new", "add_users"],
        ["probe", "/healthz", "--timeout", "2s"],
        ["baseline", "--to", "4", "--reason", "adopted"],
        ["repair", "4", "--json"],
    ]

    /// Lines only the full tree answers (help, a usage error, a failed validation): the direct parse must give up, so
    /// that the message and the exit code are the full tree's.
    static let refused: [[String]] = [
        ["migrate", "--help"],
        ["migrate", "-h"],
        ["migrate", "help"],
        ["migrate", "--version"],
        ["migrate", "--no-such-option"],
        ["migrate", "--to"],
        ["migrate", "--then-exec"],
        ["migrate", "--dry-run", "--then-exec", "--", "./app"],
        ["migrate", "--to", "-1"],
        ["status", "--help"],
        ["lint", "--all", "Migrations/0001_django_content_types.sql"],
        ["update-roles", "--project-id", "x"],
        ["help", "migrate"],
        ["--help"],
        ["--version"],
        [],
        ["no-such-command"],
    ]

    @Test("a line the full tree accepts gives the same command and values", arguments: accepted)
    func sameCommand(arguments: [String]) throws {
        let full = try MigratorCommand.parseAsRoot(arguments)
        let direct = try #require(CommandLineTool.parseDirectly(arguments), "the direct parse gave up on \(arguments)")
        #expect(type(of: direct) == type(of: full))
        #expect(Self.dumped(direct) == Self.dumped(full), "\(arguments)")
    }

    @Test("help, version, a usage error or a failed validation is left to the full tree", arguments: refused)
    func leftToTheFullTree(arguments: [String]) {
        let full = Result { try MigratorCommand.parseAsRoot(arguments) }
        // Each of these lines is one the full tree does not run as one of its subcommands: it prints help or an
        // error instead (`--help` parses into ArgumentParser's help command; `migrator` alone into the root, which
        // only prints the help).
        if case .success(let command) = full {
            let parsed = type(of: command)
            #expect(!MigratorCommand.configuration.subcommands.contains { $0 == parsed }, "\(arguments) parsed as \(parsed)")
        }
        #expect(CommandLineTool.parseDirectly(arguments) == nil, "\(arguments)")
    }

    /// Every stored property, the option values inside the property wrappers included.
    static func dumped(_ command: any ParsableCommand) -> String {
        var text = ""
        dump(command, to: &text)
        return text
    }
}
