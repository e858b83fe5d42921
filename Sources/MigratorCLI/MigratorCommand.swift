import ArgumentParser
import Postgres
import SystemSupport
#if canImport(Glibc)
import Glibc
#endif

/// The command line: each subcommand parses its options, calls the engine and prints the result.
///
/// `serve` lives in a binary of its own, `migrator-serve`, installed beside this one: the daemon's dependencies
/// (Hummingbird, SwiftNIO, full Foundation) are then loaded only by the daemon, and every other command, the no-op
/// deploy step above all, starts without them. `migrator serve …` replaces itself with `migrator-serve …`.
struct MigratorCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "migrator",
        abstract: "Applies numbered SQL migrations to PostgreSQL, safely, from many replicas at once.",
        discussion: """
            Connection: --database-url, else DATABASE_URL, else libpq's PG* variables and defaults \
            (.pgpass, PGSERVICE, sslmode and multi-host strings work as in psql).

            Exit codes: 0 success or nothing to do; 1 a migration or hook failed (lint: an error finding); 2 the \
            migration files are invalid or disagree with the history (migrate --lint error: a lint error); 3 verify found problems; 4 cannot connect; 5 gave up waiting \
            for the lock; 6 the server is read-only; 7 a fleet run's targets failed with different codes; 64 usage error; 74 standard output could not be written; 127 the \
            --then-exec command (or, for serve, migrator-serve) could not be started.
            """,
        subcommands: [
            MigrateCommand.self, StatusCommand.self, VerifyCommand.self, NewCommand.self, LintCommand.self, WaitCommand.self,
            UpdateRolesCommand.self, ServeForwarder.self, ProbeCommand.self, BaselineCommand.self, RepairCommand.self,
            MarkAppliedCommand.self, MarkPendingCommand.self,
        ]
    )
}

/// `serve` as the root command lists it; running it execs `migrator-serve` (see ``MigratorCommand``).
struct ServeForwarder: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "serve",
        abstract: "Run as a daemon: wait for the database, migrate, then keep every project's roles in step."
    )

    @Argument(parsing: .allUnrecognized, help: "The options of `migrator serve --help`.")
    var arguments: [String] = []

    func run() throws {
        ServeForwarder.exec(arguments)
    }

    /// Replaces the process with `migrator-serve ARGUMENTS`, found beside this binary. Only returns on failure,
    /// which exits 127 as a shell does for a command it cannot run.
    static func exec(_ arguments: [String]) -> Never {
        let path = servePath()
        var argv: [UnsafeMutablePointer<CChar>?] = ([path] + arguments).map { strdup($0) }
        argv.append(nil)
        execv(path, &argv)
        let reason = String(cString: strerror(errno))
        writeStandardError(
            "error: `migrator serve` runs \(path), which could not be started: \(reason)\n"
                + "hint: migrator-serve ships beside migrator (scripts/build-release builds both; the image has both)\n"
        )
        Glibc.exit(127)
    }

    /// `migrator-serve` in the folder of the running binary (its real path, through /proc/self/exe).
    static func servePath() -> String {
        var buffer = [CChar](repeating: 0, count: 4096)
        let count = readlink("/proc/self/exe", &buffer, buffer.count - 1)
        let own = count > 0 ? String(decoding: buffer[0..<count].map { UInt8(bitPattern: $0) }, as: UTF8.self) : CommandLine.arguments[0]
        let folder = own.split(separator: "/", omittingEmptySubsequences: false).dropLast().joined(separator: "/")
        return (folder.isEmpty ? "." : folder) + "/migrator-serve"
    }
}

/// The executables' entry points.
public enum CommandLineTool {
    /// `migrator`: `serve` goes straight to `migrator-serve` (its own `--help` included); every other command is
    /// parsed here. Synchronous: no command of this binary is async, and a synchronous main starts no Swift
    /// concurrency threads (measured by scripts/bench-noop: the no-op deploy step pays for every thread it starts).
    public static func main() -> Never {
        let arguments = Array(CommandLine.arguments.dropFirst())
        if arguments.first == "serve" { ServeForwarder.exec(Array(arguments.dropFirst())) }
        do {
            var command = try parseDirectly(arguments) ?? MigratorCommand.parseAsRoot(arguments)
            try command.run()
            exitAfterOutput(0)
        } catch {
            exit(MigratorCommand.self, with: error)
        }
    }

    /// The subcommand `arguments` name, parsed as a root of its own: ArgumentParser then reflects over that one
    /// command's options, not over the whole tree of thirteen (`migrate`'s parse took 3.4 ms of a 29 ms no-op deploy
    /// step; see README "Performance"). Anything but that subcommand with its options — help, `--version`, a usage
    /// error, a failed validation — yields nil and is parsed again from the top, so every message, usage line and
    /// exit code is the full tree's. `DirectParseTests` checks that both parses agree.
    static func parseDirectly(_ arguments: [String]) -> (any ParsableCommand)? {
        guard let name = arguments.first,
              let type = MigratorCommand.configuration.subcommands.first(where: { $0._commandName == name })
        else { return nil }
        // `--help` parses, into ArgumentParser's help command, which would print this command's usage without the
        // `migrator` in front: only the subcommand itself is taken.
        guard let command = try? type.parseAsRoot(Array(arguments.dropFirst())), Swift.type(of: command) == type else {
            return nil
        }
        return command
    }

    /// ArgumentParser's own `main` for an async root (`migrator-serve`), with the same message handling as ``main()``.
    public static func run<Root: ParsableCommand>(_ root: Root.Type) async -> Never {
        do {
            var command = try root.parseAsRoot()
            if var asyncCommand = command as? any AsyncParsableCommand {
                try await asyncCommand.run()
            } else {
                try command.run()
            }
            exitAfterOutput(0)
        } catch {
            exit(root, with: error)
        }
    }

    /// Prints ArgumentParser's message for `error` (help, version, usage error, or a command's own error) and exits
    /// with its code. Every message passes through the redactor: a usage error quotes the argument it did not
    /// expect, which may be a connection URL with a password.
    static func exit<Root: ParsableCommand>(_ root: Root.Type, with error: any Error) -> Never {
        let code = root.exitCode(for: error)
        let redactor = GlobalOptions.environmentRedactor
        let message = redactor.redact(root.fullMessage(for: error))
        if !message.isEmpty {
            if code == .success {
                writeStandardOutput(message + "\n")
            } else {
                writeStandardError(message + "\n")
            }
        }
        exitAfterOutput(code.rawValue)
    }

    /// Exits with `code`, unless standard output could not be written: then with ``ExitStatus/outputFailed``,
    /// saying why, since a script reading the output got less than the command printed.
    static func exitAfterOutput(_ code: Int32) -> Never {
        if code == 0, let failed = StandardOutput.failedWith {
            writeStandardError("error: could not write to standard output: \(String(cString: strerror(failed)))\n")
            Glibc.exit(ExitStatus.outputFailed.rawValue)
        }
        Glibc.exit(code)
    }
}
