import MigrationEngine

/// Checks migration files for statements that lock an app out, rewrite a table, or fail at run time, before they run.
///
/// Each file is parsed by PostgreSQL's own grammar (libpg_query); the rules read the parse tree, never the text.
/// A file is read as one unit, in order, the way it runs: a table created earlier in it is new (nobody uses it yet,
/// so the lock rules say nothing about it), a constraint added `NOT VALID` earlier is known, and so is whether
/// `SET lock_timeout` came before a statement.
public struct Linter: Sendable {
    /// True when migrator sets no `lock_timeout` of its own (`--ddl-lock-timeout 0`): a file then needs its own.
    public var migratorLockTimeoutOff: Bool

    public init(migratorLockTimeoutOff: Bool = false) {
        self.migratorLockTimeoutOff = migratorLockTimeoutOff
    }

    /// The findings of one file, in the order of its statements.
    /// - Throws: ``MigrationError`` `.invalidMigrationFile` at the place the parser stopped, when the file is not
    ///   valid SQL for the parser's grammar.
    public func lint(_ file: MigrationFile) throws(MigrationError) -> [LintFinding] {
        let statements: [ParsedStatement]
        do {
            statements = try PostgresParser.parse(file.content)
        } catch {
            throw MigrationError(
                code: .invalidMigrationFile,
                message: "cannot be linted: \(error.message)",
                location: error.position > 0 ? file.location(ofOffset: error.position - 1) : SourceLocation(file: file.displayPath),
                hint: "the linter reads PostgreSQL \(PostgresParser.grammarVersion)'s grammar (libpg_query): fix the SQL; "
                    + "syntax only a newer release knows cannot be linted (migrate --lint warn goes on, saying so)"
            )
        }
        var checker = FileChecker(file: file, lockTimeoutOff: migratorLockTimeoutOff)
        for statement in statements { checker.check(statement) }
        return checker.findings
    }
}
