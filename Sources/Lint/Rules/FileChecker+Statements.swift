import MigrationEngine

/// The rules, by statement type. Field names are PostgreSQL's (`parsenodes.h`); where a rule follows the server's
/// behaviour, the comment says which (the lock levels are the documentation's, "Explicit Locking", 13.3.1).
extension FileChecker {
    mutating func checkStatement(_ statement: ParsedStatement) {
        let fields = statement.fields
        if statement.type != "AlterEnumStmt" { checkEnumValueUse(fields) }
        switch statement.type {
        case "CreateStmt": checkCreateTable(fields)
        case "CreateTableAsStmt":
            if let name = fields["into"]?["rel"]?["relname"]?.string { createdTables.insert(name) }
        case "SelectStmt":
            if let name = fields["intoClause"]?["rel"]?["relname"]?.string { createdTables.insert(name) }
            checkSetConfig(fields)
        case "IndexStmt": checkCreateIndex(fields)
        case "DropStmt": checkDrop(fields)
        case "AlterTableStmt": checkAlterTable(fields)
        case "RenameStmt": checkRename(fields)
        case "AlterEnumStmt":
            // `ALTER TYPE … RENAME VALUE` has an oldVal; only ADD VALUE makes a value that cannot be used before its
            // transaction commits ("unsafe use of new value", PostgreSQL 12+).
            if file.transactional, fields["oldVal"] == nil, let value = fields["newVal"]?.string {
                addedEnumValues[value] = file.location(ofUTF8Offset: statement.start).line ?? 1
            }
        case "VacuumStmt": checkVacuum(fields)
        case "ClusterStmt":
            if let table = relationName(fields["relation"]), isNew(table) { break }
            report(.cluster, "CLUSTER rewrites \(describe(fields["relation"], or: "every clustered table")) under an ACCESS EXCLUSIVE lock: reads and writes wait until it is done")
        case "ReindexStmt": checkReindex(fields)
        case "TruncateStmt":
            let tables = fields["relations"]?.array.compactMap { relationName($0.node("RangeVar")) } ?? []
            if fields["behavior"]?.string == "DROP_CASCADE", !tables.allSatisfy(isNew) {
                report(.truncateCascade, "TRUNCATE … CASCADE also empties every table with a foreign key to \(tables.map(quoted).joined(separator: ", ")), and those that reference them, whatever they are")
            }
        case "VariableSetStmt":
            if fields["name"]?.string == "lock_timeout" {
                let kind = fields["kind"]?.string
                lockTimeoutSet = kind == "VAR_SET_VALUE" && !Self.isZero(fields["args"]?.array.first)
            }
        default: break
        }
    }

    // MARK: - Tables

    private mutating func checkCreateTable(_ fields: Node) {
        guard let table = relationName(fields["relation"]) else { return }
        createdTables.insert(table)
        var primaryKeyColumns: Set<String> = []
        for element in fields["tableElts"]?.array ?? [] {
            if let constraint = element.node("Constraint"), constraint["contype"]?.string == "CONSTR_PRIMARY" {
                primaryKeyColumns.formUnion(constraint["keys"]?.names ?? [])
            }
        }
        for element in fields["tableElts"]?.array ?? [] {
            guard let column = element.node("ColumnDef") else { continue }
            checkColumnType(column["typeName"], column: column["colname"]?.string)
            let isKey = constraints(of: column).contains { $0["contype"]?.string == "CONSTR_PRIMARY" }
                || column["colname"]?.string.map(primaryKeyColumns.contains) == true
            if isKey { checkPrimaryKeyType(column["typeName"], column: column["colname"]?.string) }
        }
    }

    private mutating func checkAlterTable(_ fields: Node) {
        guard fields["objtype"]?.string == "OBJECT_TABLE", let table = relationName(fields["relation"]) else { return }
        let new = isNew(table)
        for command in fields["cmds"]?.array ?? [] {
            guard let command = command.node("AlterTableCmd") else { continue }
            let name = command["name"]?.string
            switch command["subtype"]?.string {
            case "AT_AddColumn":
                if let column = command["def"]?.node("ColumnDef") { checkAddColumn(column, table: table, new: new) }
            case "AT_AlterColumnType":
                let typeName = command["def"]?.node("ColumnDef")?["typeName"]
                checkColumnType(typeName, column: name)
                if !new { checkTypeChange(command, table: table, column: name ?? "?") }
            case "AT_AddConstraint":
                if let constraint = command["def"]?.node("Constraint") { checkAddConstraint(constraint, table: table, new: new) }
            case "AT_ValidateConstraint":
                guard let name else { break }
                if file.transactional, let added = notValidConstraints[table]?[name] {
                    report(.checkWithoutNotValid, "\(quoted(name)) is validated in the same transaction that added it NOT VALID: the ADD's ACCESS EXCLUSIVE lock on \(quoted(table)) is held through the whole validation scan")
                    if let column = added { notNullChecked.insert(table + "." + column) }
                } else if let added = notValidConstraints[table]?[name], let column = added {
                    notNullChecked.insert(table + "." + column)
                }
                validatedTables.insert(table)
            case "AT_SetNotNull":
                guard !new, let name else { break }
                if !notNullChecked.contains(table + "." + name) && !validatedTables.contains(table) {
                    report(.setNotNull, "SET NOT NULL on \(quoted(table)).\(quoted(name)) scans the whole table under an ACCESS EXCLUSIVE lock: reads and writes wait until it is done (no validated CHECK (\(name) IS NOT NULL) precedes it in this file)")
                }
            case "AT_DropColumn":
                if !new, let name {
                    report(.dropColumn, "dropping \(quoted(table)).\(quoted(name)) breaks every running app server that still reads or writes it")
                }
            default: break
            }
        }
    }

    private mutating func checkAddColumn(_ column: Node, table: String, new: Bool) {
        let name = column["colname"]?.string ?? "?"
        let typeName = column["typeName"]
        checkColumnType(typeName, column: name)
        let constraints = constraints(of: column)
        let kinds = Set(constraints.compactMap { $0["contype"]?.string })
        if kinds.contains("CONSTR_PRIMARY") { checkPrimaryKeyType(typeName, column: name) }
        guard !new else { return }
        let type = Self.typeName(typeName)
        let serial = Self.serialTypes.contains(type)
        let defaultExpression = constraints.first { $0["contype"]?.string == "CONSTR_DEFAULT" }?["raw_expr"]
        let at = column["location"]?.int
        if let defaultExpression, let function = Self.volatileFunction(in: defaultExpression) {
            report(.volatileDefault, "the default of \(quoted(table)).\(quoted(name)) calls \(function)(), which is volatile or not known to be stable: every existing row gets its own value, so the table is rewritten under an ACCESS EXCLUSIVE lock", at: at)
        } else if serial {
            report(.volatileDefault, "a \(type) column's default is nextval(), which is volatile: adding \(quoted(name)) rewrites \(quoted(table)) under an ACCESS EXCLUSIVE lock", at: at)
        } else if kinds.contains("CONSTR_IDENTITY") || kinds.contains("CONSTR_GENERATED") {
            report(.volatileDefault, "an identity or stored generated column is filled in for every existing row: adding \(quoted(name)) rewrites \(quoted(table)) under an ACCESS EXCLUSIVE lock", at: at)
        } else if kinds.contains("CONSTR_NOTNULL"), defaultExpression == nil {
            report(.requiredColumn, "adding \(quoted(table)).\(quoted(name)) NOT NULL without a DEFAULT fails as soon as the table has a row", at: at)
        }
        if kinds.contains("CONSTR_FOREIGN") {
            let referenced = constraints.first { $0["contype"]?.string == "CONSTR_FOREIGN" }?["pktable"]
            report(.foreignKeyWithoutNotValid, "the REFERENCES clause of \(quoted(table)).\(quoted(name)) is validated at once, under SHARE ROW EXCLUSIVE locks on \(quoted(table)) and \(describe(referenced, or: "the referenced table")): writes to both wait (a column's REFERENCES cannot be NOT VALID)", at: at)
        }
        if kinds.contains("CONSTR_PRIMARY") {
            report(.primaryKeyWithoutIndex, "a PRIMARY KEY column builds its index on \(quoted(table)) under an ACCESS EXCLUSIVE lock", at: at)
        } else if kinds.contains("CONSTR_UNIQUE") {
            report(.uniqueWithoutIndex, "a UNIQUE column builds its index on \(quoted(table)) under an ACCESS EXCLUSIVE lock", at: at)
        }
    }

    private mutating func checkAddConstraint(_ constraint: Node, table: String, new: Bool) {
        let name = constraint["conname"]?.string
        let notValid = constraint["skip_validation"]?.isTrue == true
        let at = constraint["location"]?.int
        let label = name.map { "constraint \(quoted($0))" }
        switch constraint["contype"]?.string {
        case "CONSTR_FOREIGN":
            if notValid, let name { notValidConstraints[table, default: [:]][name] = .some(nil) }
            if !new && !notValid {
                report(.foreignKeyWithoutNotValid, "adding \(label ?? "a foreign key") validates every row of \(quoted(table)) under SHARE ROW EXCLUSIVE locks on it and on \(describe(constraint["pktable"], or: "the referenced table")): writes to both wait", at: at)
            }
        case "CONSTR_CHECK":
            let column = Self.notNullColumn(constraint["raw_expr"])
            if notValid {
                if let name { notValidConstraints[table, default: [:]][name] = column }
            } else if let column {
                notNullChecked.insert(table + "." + column)
            }
            if !new && !notValid {
                report(.checkWithoutNotValid, "adding \(label ?? "a CHECK constraint") scans every row of \(quoted(table)) under an ACCESS EXCLUSIVE lock: reads and writes wait until it is done", at: at)
            }
        case "CONSTR_PRIMARY":
            if !new && constraint["indexname"] == nil {
                report(.primaryKeyWithoutIndex, "ADD PRIMARY KEY builds its index on \(quoted(table)) under an ACCESS EXCLUSIVE lock: reads and writes wait until it is done", at: at)
            }
        case "CONSTR_UNIQUE":
            if !new && constraint["indexname"] == nil {
                report(.uniqueWithoutIndex, "ADD \(label.map { $0 + " " } ?? "")UNIQUE builds its index on \(quoted(table)) under an ACCESS EXCLUSIVE lock: reads and writes wait until it is done", at: at)
            }
        default: break
        }
    }

    /// `ALTER COLUMN … TYPE`. The old type is not in the file, so the rule cannot tell every change that keeps the
    /// table (PostgreSQL skips the rewrite when the types are binary-coercible: `varchar(n)` to a longer `varchar`
    /// or to `text`); those targets are a warning, and a `USING` clause or any other type an error.
    private mutating func checkTypeChange(_ command: Node, table: String, column: String) {
        let definition = command["def"]?.node("ColumnDef")
        let typeName = definition?["typeName"]
        let type = Self.typeName(typeName)
        let at = definition?["location"]?.int
        if definition?["raw_default"] == nil, ["text", "varchar", "citext"].contains(type) {
            var finding = "changing the type of \(quoted(table)).\(quoted(column)) to \(type) rewrites the table and its indexes under an ACCESS EXCLUSIVE lock, unless the old type is text or a shorter varchar"
            finding += " (then excuse it: `-- migrator:lint-ignore changing-column-type: reason`)"
            report(.changingColumnType, finding, at: at, severity: .warning)
        } else {
            report(.changingColumnType, "changing the type of \(quoted(table)).\(quoted(column)) to \(type) rewrites the table and its indexes under an ACCESS EXCLUSIVE lock: reads and writes wait until it is done", at: at)
        }
    }

    private mutating func checkRename(_ fields: Node) {
        guard let table = relationName(fields["relation"]) else { return }
        switch fields["renameType"]?.string {
        case "OBJECT_COLUMN":
            if !isNew(table), let column = fields["subname"]?.string {
                report(.renamingColumn, "renaming \(quoted(table)).\(quoted(column)) breaks every running app server that still uses the old name")
            }
        case "OBJECT_TABLE":
            if isNew(table) {
                if let newName = fields["newname"]?.string { createdTables.insert(newName) }
            } else {
                report(.renamingTable, "renaming \(quoted(table)) breaks every running app server that still uses the old name")
            }
        default: break
        }
    }

    private mutating func checkDrop(_ fields: Node) {
        let names = fields["objects"]?.array.compactMap { $0.node("List")?["items"]?.names.last } ?? []
        switch fields["removeType"]?.string {
        case "OBJECT_TABLE":
            let existing = names.filter { !isNew($0) }
            if !existing.isEmpty {
                report(.dropTable, "dropping \(existing.map(quoted).joined(separator: ", ")) breaks every running app server that still uses it, and loses its rows for good")
            }
        case "OBJECT_INDEX":
            let concurrent = fields["concurrent"]?.isTrue == true
            if concurrent {
                if file.transactional {
                    report(.concurrentlyInTransaction, "DROP INDEX CONCURRENTLY cannot run inside a transaction block, and this file runs in one: the migration fails")
                }
            } else if !names.allSatisfy(createdIndexes.contains) {
                report(.requireConcurrentIndexDeletion, "DROP INDEX without CONCURRENTLY takes an ACCESS EXCLUSIVE lock on its table: reads and writes wait behind it")
            }
        default: break
        }
    }

    // MARK: - Indexes and maintenance

    private mutating func checkCreateIndex(_ fields: Node) {
        let concurrent = fields["concurrent"]?.isTrue == true
        if let name = fields["idxname"]?.string { createdIndexes.insert(name) }
        guard let table = relationName(fields["relation"]) else { return }
        if concurrent {
            if file.transactional {
                report(.concurrentlyInTransaction, "CREATE INDEX CONCURRENTLY cannot run inside a transaction block, and this file runs in one: the migration fails")
            }
        } else if !isNew(table) {
            report(.requireConcurrentIndexCreation, "CREATE INDEX on \(quoted(table)) without CONCURRENTLY blocks every write to it (a SHARE lock) until the index is built")
        }
    }

    private mutating func checkReindex(_ fields: Node) {
        let concurrent = (fields["params"]?.array ?? []).contains { $0.node("DefElem")?["defname"]?.string == "concurrently" && !Self.isFalse($0.node("DefElem")?["arg"]) }
        if let target = relationName(fields["relation"]), isNew(target) || createdIndexes.contains(target) { return }
        if concurrent {
            if file.transactional {
                report(.concurrentlyInTransaction, "REINDEX CONCURRENTLY cannot run inside a transaction block, and this file runs in one: the migration fails")
            }
        } else {
            report(.reindexWithoutConcurrently, "REINDEX without CONCURRENTLY blocks writes to the table, and reads that use the index, until it is done")
        }
    }

    private mutating func checkVacuum(_ fields: Node) {
        let full = (fields["options"]?.array ?? []).contains { $0.node("DefElem")?["defname"]?.string == "full" && !Self.isFalse($0.node("DefElem")?["arg"]) }
        guard fields["is_vacuumcmd"]?.isTrue == true, full else { return }
        let tables = fields["rels"]?.array.compactMap { relationName($0.node("VacuumRelation")?["relation"]) } ?? []
        if !tables.isEmpty && tables.allSatisfy(isNew) { return }
        report(.vacuumFull, "VACUUM FULL rewrites \(tables.isEmpty ? "every table" : tables.map(quoted).joined(separator: ", ")) under an ACCESS EXCLUSIVE lock: reads and writes wait until it is done")
    }

    // MARK: - Transactions and settings

    /// `ALTER TYPE … ADD VALUE 'v'` then `'v'` in a later statement of the same transaction: PostgreSQL refuses the
    /// use until the value's transaction commits.
    private mutating func checkEnumValueUse(_ fields: Node) {
        guard !addedEnumValues.isEmpty else { return }
        var uses: [(String, Int?)] = []
        fields.walk { node in
            if let constant = node.node("A_Const"), let value = constant["sval"]?["sval"]?.string, addedEnumValues[value] != nil {
                uses.append((value, constant["location"]?.int))
            }
        }
        for (value, at) in uses {
            report(.newEnumValueInTransaction, "'\(value)' was added to its enum at line \(addedEnumValues[value]!) in this transaction, and cannot be used before that commits: the migration fails (unsafe use of new value)", at: at)
        }
    }

    /// `SELECT set_config('lock_timeout', '2s', …)` counts as `SET lock_timeout`.
    private mutating func checkSetConfig(_ fields: Node) {
        fields.walk { node in
            guard let call = node.node("FuncCall"), call["funcname"]?.names.last == "set_config" else { return }
            let arguments = call["args"]?.array ?? []
            guard arguments.count >= 2, arguments[0].node("A_Const")?["sval"]?["sval"]?.string == "lock_timeout" else { return }
            lockTimeoutSet = !Self.isZero(arguments[1])
        }
    }

    /// With migrator's own `lock_timeout` off, the first statement that takes a lock on an existing table before the
    /// file sets one: it would wait without limit, and every query of the app behind it.
    mutating func checkLockTimeout(_ statement: ParsedStatement) {
        guard lockTimeoutOff, !lockTimeoutSet, !lockTimeoutReported else { return }
        let fields = statement.fields
        let targets: [String]
        switch statement.type {
        case "AlterTableStmt", "IndexStmt", "RenameStmt", "ClusterStmt", "ReindexStmt", "CreateTrigStmt":
            targets = [relationName(fields["relation"]) ?? "?"]
        case "TruncateStmt", "LockStmt":
            targets = fields["relations"]?.array.map { relationName($0.node("RangeVar")) ?? "?" } ?? ["?"]
        case "VacuumStmt":
            targets = fields["rels"]?.array.map { relationName($0.node("VacuumRelation")?["relation"]) ?? "?" } ?? ["?"]
        case "DropStmt":
            let names = fields["objects"]?.array.compactMap { $0.node("List")?["items"]?.names.last } ?? []
            targets = names.filter { !createdIndexes.contains($0) }
        default:
            return
        }
        guard !targets.allSatisfy(isNew) else { return }
        lockTimeoutReported = true
        report(.lockTimeout, "this statement waits for its lock without limit, and the app's queries queue behind it: migrator's own lock_timeout is off (--ddl-lock-timeout 0) and the file sets none before it")
    }

    // MARK: - Types

    private mutating func checkColumnType(_ typeName: Node?, column: String?) {
        guard let typeName else { return }
        let type = Self.typeName(typeName)
        let at = typeName["location"]?.int
        let name = column.map(quoted) ?? "the column"
        switch type {
        case "varchar" where !(typeName["typmods"]?.array ?? []).isEmpty:
            report(.varcharLength, "\(name) is varchar(n): making it longer later is free, but shorter or checked needs an ACCESS EXCLUSIVE rewrite", at: at)
        case "bpchar":
            report(.charLength, "\(name) is char(n), which pads its values with spaces", at: at)
        case "timestamp":
            report(.timestampWithoutTimeZone, "\(name) is timestamp without time zone", at: at)
        default: break
        }
    }

    private mutating func checkPrimaryKeyType(_ typeName: Node?, column: String?) {
        let type = Self.typeName(typeName)
        let at = typeName?["location"]?.int
        let name = column.map(quoted) ?? "the primary key"
        if Self.smallIntegerTypes.contains(type) {
            report(.intPrimaryKey, "the primary key \(name) is \(type), a 32-bit (or smaller) integer", at: at)
        }
        if Self.serialTypes.contains(type) {
            report(.serialPrimaryKey, "the primary key \(name) is \(type), whose sequence is a separate object with its own owner and grants", at: at)
        }
    }

    static let serialTypes: Set<String> = ["serial", "serial4", "bigserial", "serial8", "smallserial", "serial2"]
    static let smallIntegerTypes: Set<String> = ["int4", "int2", "int", "integer", "smallint", "serial", "serial4", "smallserial", "serial2"]

    /// Functions a default may call without a rewrite: stable ones, evaluated once for the whole `ADD COLUMN`
    /// (PostgreSQL 11+ stores that value instead of writing it into every row). Anything else may be volatile.
    static let stableFunctions: Set<String> = [
        "now", "transaction_timestamp", "statement_timestamp", "current_setting", "current_database",
        "current_schema", "current_user", "session_user", "to_timestamp", "to_date", "make_interval", "lower", "upper",
        "jsonb_build_object", "json_build_object", "jsonb_build_array", "array_fill",
    ]

    /// The first function `expression` calls that is not known to be stable.
    static func volatileFunction(in expression: Node) -> String? {
        var found: String?
        expression.walk { node in
            guard found == nil, let call = node.node("FuncCall"), let name = call["funcname"]?.names.last else { return }
            if !stableFunctions.contains(name) { found = name }
        }
        return found
    }

    /// `col IS NOT NULL`: the column a CHECK makes SET NOT NULL safe for.
    static func notNullColumn(_ expression: Node?) -> String? {
        guard let test = expression?.node("NullTest"), test["nulltesttype"]?.string == "IS_NOT_NULL" else { return nil }
        let fields = test["arg"]?.node("ColumnRef")?["fields"]?.names ?? []
        return fields.count == 1 ? fields[0] : nil
    }

    /// The type's own name, without `pg_catalog.` (`int4`, `varchar`, `timestamptz`, `serial`).
    static func typeName(_ typeName: Node?) -> String {
        typeName?["names"]?.names.last ?? "?"
    }

    /// A setting's value of 0 (`0`, `'0'`, `'0ms'`): off.
    static func isZero(_ value: Node?) -> Bool {
        guard let constant = value?.node("A_Const") ?? value?.node("TypeCast")?["arg"]?.node("A_Const") else { return false }
        if let text = constant["sval"]?["sval"]?.string {
            let digits = text.trimmingPrefix(while: \.isWhitespace).prefix { $0.isNumber || $0 == "." }
            return Double(digits) == 0
        }
        if let integer = constant["ival"] { return (integer["ival"]?.int ?? 0) == 0 }
        return false
    }

    /// An option's argument that turns it off: `VACUUM (FULL false)`.
    static func isFalse(_ argument: Node?) -> Bool {
        guard let argument else { return false }
        let text = argument.node("String")?["sval"]?.string?.lowercased() ?? argument.node("Integer")?["ival"]?.int.map(String.init)
        return ["false", "off", "0", "no"].contains(text ?? (argument.node("Integer") != nil ? "0" : ""))
    }

    // MARK: - Helpers

    func isNew(_ table: String) -> Bool { createdTables.contains(table) }

    func relationName(_ rangeVar: Node?) -> String? { rangeVar?["relname"]?.string }

    func describe(_ rangeVar: Node?, or fallback: String) -> String {
        relationName(rangeVar).map(quoted) ?? fallback
    }

    func constraints(of column: Node) -> [Node] {
        column["constraints"]?.array.compactMap { $0.node("Constraint") } ?? []
    }
}

/// An identifier as the message shows it.
func quoted(_ name: String) -> String { "\"\(name)\"" }
