import ArgumentParser

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
            for the lock; 6 the server is read-only; 64 usage error.
            """,
        subcommands: [
            MigrateCommand.self, StatusCommand.self, VerifyCommand.self, NewCommand.self, WaitCommand.self,
            UpdateRolesCommand.self,
        ]
    )
}
