/// How bad a finding is: an error makes `migrator lint` exit 1 and `migrate --lint error` refuse; a warning is
/// printed and nothing else.
public enum LintSeverity: String, Sendable, Codable, Comparable {
    case warning, error

    public static func < (lhs: Self, rhs: Self) -> Bool { lhs == .warning && rhs == .error }
}

/// Every rule, by the id a finding and an excuse name it with. Ids are squawk's where squawk has the same rule
/// (README "Lint"); the others follow its naming.
public enum LintRule: String, CaseIterable, Sendable, Codable {
    case requireConcurrentIndexCreation = "require-concurrent-index-creation"
    case requireConcurrentIndexDeletion = "require-concurrent-index-deletion"
    case concurrentlyInTransaction = "ban-concurrent-index-creation-in-transaction"
    case foreignKeyWithoutNotValid = "adding-foreign-key-constraint"
    case checkWithoutNotValid = "constraint-missing-not-valid"
    case setNotNull = "adding-not-nullable-field"
    case requiredColumn = "adding-required-field"
    case changingColumnType = "changing-column-type"
    case volatileDefault = "adding-field-with-default"
    case primaryKeyWithoutIndex = "adding-serial-primary-key-field"
    case uniqueWithoutIndex = "disallowed-unique-constraint"
    case renamingColumn = "renaming-column"
    case renamingTable = "renaming-table"
    case dropColumn = "ban-drop-column"
    case dropTable = "ban-drop-table"
    case newEnumValueInTransaction = "ban-new-enum-value-use-in-transaction"
    case vacuumFull = "ban-vacuum-full"
    case cluster = "ban-cluster"
    case reindexWithoutConcurrently = "require-concurrent-reindex"
    case truncateCascade = "ban-truncate-cascade"
    case lockTimeout = "require-lock-timeout"
    case intPrimaryKey = "prefer-bigint-over-int"
    case serialPrimaryKey = "prefer-identity"
    case varcharLength = "prefer-text-field"
    case charLength = "ban-char-field"
    case timestampWithoutTimeZone = "prefer-timestamp-tz"
    case excuseWithoutReason = "lint-ignore-without-reason"
    case excuseUnknownRule = "lint-ignore-unknown-rule"

    public var severity: LintSeverity {
        switch self {
        case .intPrimaryKey, .serialPrimaryKey, .varcharLength, .charLength, .timestampWithoutTimeZone: .warning
        default: .error
        }
    }

    /// Whether a `-- migrator:lint-ignore` comment can excuse it (a broken excuse cannot excuse itself).
    var isExcusable: Bool { self != .excuseWithoutReason && self != .excuseUnknownRule }

    /// What to do instead: one line, after the finding.
    public var instead: String {
        switch self {
        case .requireConcurrentIndexCreation:
            "CREATE INDEX CONCURRENTLY, in a file of its own marked `-- migrator:no-transaction` (migrator new --no-transaction)"
        case .requireConcurrentIndexDeletion:
            "DROP INDEX CONCURRENTLY, in a file of its own marked `-- migrator:no-transaction`"
        case .concurrentlyInTransaction:
            "put `-- migrator:no-transaction` in the file's first comment lines, with this statement alone in it (migrator new --no-transaction)"
        case .foreignKeyWithoutNotValid:
            "ADD CONSTRAINT … FOREIGN KEY … NOT VALID here, then ALTER TABLE … VALIDATE CONSTRAINT … in a later migration"
        case .checkWithoutNotValid:
            "ADD CONSTRAINT … CHECK (…) NOT VALID here, then ALTER TABLE … VALIDATE CONSTRAINT … in a later migration"
        case .setNotNull:
            "ADD CONSTRAINT c CHECK (col IS NOT NULL) NOT VALID; VALIDATE CONSTRAINT c in a later migration; then SET NOT NULL (no scan on PostgreSQL 12+) and DROP CONSTRAINT c"
        case .requiredColumn:
            "add the column with a constant DEFAULT, or nullable: backfill it in batches, then make it NOT NULL through a validated CHECK"
        case .changingColumnType:
            "add a column of the new type, write both, backfill in batches, switch the app over, then drop the old column in a later release"
        case .volatileDefault:
            "add the column without a default (or with a constant one), then SET DEFAULT and backfill the existing rows in batches"
        case .primaryKeyWithoutIndex:
            "CREATE UNIQUE INDEX CONCURRENTLY in a `-- migrator:no-transaction` file, then ADD CONSTRAINT … PRIMARY KEY USING INDEX …"
        case .uniqueWithoutIndex:
            "CREATE UNIQUE INDEX CONCURRENTLY in a `-- migrator:no-transaction` file, then ADD CONSTRAINT … UNIQUE USING INDEX …"
        case .renamingColumn:
            "add the new column, write both, backfill, move the app's reads, and drop the old column in a later release"
        case .renamingTable:
            "create the new table (or a view under the new name), move the app over, and drop the old name in a later release"
        case .dropColumn:
            "release an app that no longer reads or writes the column first, then drop it, excused: `-- migrator:lint-ignore ban-drop-column: reason`"
        case .dropTable:
            "release an app that no longer uses the table first, then drop it, excused: `-- migrator:lint-ignore ban-drop-table: reason`"
        case .newEnumValueInTransaction:
            "add the value in a migration of its own (it commits first), and use it in a later one"
        case .vacuumFull:
            "plain VACUUM (no exclusive lock), or rebuild online with pg_repack"
        case .cluster:
            "leave the order to the planner, or rebuild online with pg_repack"
        case .reindexWithoutConcurrently:
            "REINDEX … CONCURRENTLY, in a file marked `-- migrator:no-transaction`"
        case .truncateCascade:
            "TRUNCATE the tables you mean by name (RESTRICT is the default), or DELETE in batches"
        case .lockTimeout:
            "start the file with SET lock_timeout = '2s'; or keep migrator's own (--ddl-lock-timeout above 0)"
        case .intPrimaryKey:
            "bigint (bigint GENERATED ALWAYS AS IDENTITY): an int key runs out at 2,147,483,647 and widening it rewrites the table"
        case .serialPrimaryKey:
            "bigint GENERATED ALWAYS AS IDENTITY: the SQL-standard form, whose sequence belongs to the column"
        case .varcharLength:
            "text, with a CHECK (char_length(col) <= n) if the length matters: a CHECK can change without a rewrite"
        case .charLength:
            "text (char(n) pads with spaces and saves nothing), with a CHECK if the length matters"
        case .timestampWithoutTimeZone:
            "timestamptz: it stores an instant; timestamp without time zone depends on the writer's time zone"
        case .excuseWithoutReason:
            "say why it is safe here: `-- migrator:lint-ignore rule-id: reason`"
        case .excuseUnknownRule:
            "name one of the rule ids that `migrator lint` reports (README \"Lint\")"
        }
    }
}

/// One problem found, at a place in a file.
public struct LintFinding: Sendable, Codable, Equatable {
    public var file: String
    public var line: Int
    public var column: Int
    public var severity: LintSeverity
    /// The rule's id.
    public var rule: String
    public var message: String
    /// What to do instead.
    public var instead: String

    public init(file: String, line: Int, column: Int, rule: LintRule, message: String) {
        self.file = file
        self.line = line
        self.column = column
        self.severity = rule.severity
        self.rule = rule.rawValue
        self.message = message
        self.instead = rule.instead
    }

    /// `file:line:col: error: [rule] message`, then `  instead: …`: what a terminal shows.
    public var text: String {
        "\(file):\(line):\(column): \(severity.rawValue): [\(rule)] \(message)\n  instead: \(instead)"
    }
}
