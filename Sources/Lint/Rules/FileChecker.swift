import MigrationEngine

/// What one file has done so far, statement by statement, and what it found.
struct FileChecker {
    let file: MigrationFile
    let lockTimeoutOff: Bool
    private(set) var findings: [LintFinding] = []

    /// Tables and indexes created by this file: the lock rules say nothing about them.
    var createdTables: Set<String> = []
    var createdIndexes: Set<String> = []
    /// Constraints added `NOT VALID` in this file, by table, with the column a `CHECK (col IS NOT NULL)` names.
    var notValidConstraints: [String: [String: String?]] = [:]
    /// Tables on which this file validated a constraint, and `table.column`s a validated `IS NOT NULL` check covers.
    var validatedTables: Set<String> = []
    var notNullChecked: Set<String> = []
    /// Enum values added in this (transactional) file, with the line that adds them.
    var addedEnumValues: [String: Int] = [:]
    /// Whether a `SET lock_timeout` to something other than 0 came before, and whether the rule has spoken.
    var lockTimeoutSet = false
    var lockTimeoutReported = false

    /// The statement being checked, and its findings before excuses are applied.
    private var current: ParsedStatement?
    private var pending: [LintFinding] = []

    init(file: MigrationFile, lockTimeoutOff: Bool) {
        self.file = file
        self.lockTimeoutOff = lockTimeoutOff
    }

    mutating func check(_ statement: ParsedStatement) {
        current = statement
        pending = []
        let excuses = readExcuses(statement)
        checkLockTimeout(statement)
        checkStatement(statement)
        for finding in pending {
            if let rule = LintRule(rawValue: finding.rule), rule.isExcusable, excuses.contains(rule) { continue }
            findings.append(finding)
        }
        current = nil
    }

    /// Records a finding at `offset` (a byte offset of the file; the statement's start when nil).
    /// A rule whose finding is only sometimes a hazard gives a `severity` below its own.
    mutating func report(_ rule: LintRule, _ message: String, at offset: Int? = nil, severity: LintSeverity? = nil) {
        let location = file.location(ofUTF8Offset: offset ?? current?.start ?? 0)
        var finding = LintFinding(
            file: file.displayPath, line: location.line ?? 1, column: location.column ?? 1, rule: rule, message: message
        )
        if let severity { finding.severity = severity }
        pending.append(finding)
    }

    /// The rules the statement's `-- migrator:lint-ignore` comments excuse; a broken excuse is reported itself.
    private mutating func readExcuses(_ statement: ParsedStatement) -> Set<LintRule> {
        var excused: Set<LintRule> = []
        for (text, offset) in statement.leadingComments {
            let comment = text.drop { $0 == "-" }.trimmingPrefix(while: \.isWhitespace)
            guard MigrationFile.isLintIgnore(comment) else { continue }
            let rest = comment.dropFirst(MigrationFile.lintIgnoreDirective.count)
            let colon = rest.firstIndex(of: ":")
            let ids = (colon.map { rest[..<$0] } ?? rest).split { $0 == "," || $0.isWhitespace }
            let reason = colon.map { rest[rest.index(after: $0)...] }?.trimmingPrefix(while: \.isWhitespace) ?? ""
            if ids.isEmpty {
                report(.excuseUnknownRule, "this excuse names no rule", at: offset)
                continue
            }
            for id in ids {
                guard let rule = LintRule(rawValue: String(id).lowercased()) else {
                    report(.excuseUnknownRule, "'\(id)' is not a rule of migrator lint; nothing is excused", at: offset)
                    continue
                }
                excused.insert(rule)
            }
            if reason.allSatisfy(\.isWhitespace) {
                report(.excuseWithoutReason, "this excuse gives no reason; say why the statement is safe after a ':'", at: offset)
            }
        }
        return excused
    }
}

extension Substring {
    func trimmingPrefix(while predicate: (Character) -> Bool) -> Substring {
        drop(while: predicate)
    }
}
