import ArgumentParser
import Postgres
import SystemSupport
#if canImport(Glibc)
import Glibc
#endif

/// The command line: each subcommand parses its options, calls the engine and prints the result.
@main
struct MigratorCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "migrator",
        abstract: "Applies numbered SQL migrations to PostgreSQL, safely, from many replicas at once.",
        discussion: """
            Connection: --database-url, else DATABASE_URL, else libpq's PG* variables and defaults \
            (.pgpass, PGSERVICE, sslmode and multi-host strings work as in psql).

            Exit codes: 0 success or nothing to do; 1 a migration or hook failed; 2 the migration files are \
            invalid or disagree with the history; 3 verify found problems; 4 cannot connect; 5 gave up waiting \
            for the lock; 6 the server is read-only; 64 usage error; 127 the --then-exec command could not be started.
            """,
        subcommands: [
            MigrateCommand.self, StatusCommand.self, VerifyCommand.self, NewCommand.self, WaitCommand.self,
            UpdateRolesCommand.self, ServeCommand.self, ProbeCommand.self,
        ]
    )

    /// ArgumentParser's own `main`, except that every message passes through the redactor: a usage error quotes the
    /// argument it did not expect, which may be a connection URL with a password.
    static func main() async {
        do {
            var command = try parseAsRoot()
            if var asyncCommand = command as? any AsyncParsableCommand {
                try await asyncCommand.run()
            } else {
                try command.run()
            }
        } catch {
            let code = exitCode(for: error)
            let redactor = ConnectionConfig(connectionString: GlobalOptions.environment["DATABASE_URL"]).redactor
            let message = redactor.redact(fullMessage(for: error))
            if !message.isEmpty {
                if code == .success {
                    writeStandardOutput(message + "\n")
                } else {
                    writeStandardError(message + "\n")
                }
            }
            Glibc.exit(code.rawValue)
        }
    }
}
