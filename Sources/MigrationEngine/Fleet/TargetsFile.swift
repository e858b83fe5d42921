import Postgres

/// The targets of a fleet run, read and checked whole before anything connects.
///
/// The plain form: one target a line, a `postgresql://` URL or a libpq `key=value` string; `schema=NAME` after it
/// (or among the pairs) names a tenant schema. Blank lines and lines starting with `#` are skipped. A password in the
/// file is refused unless the user allows it (passwords belong in the environment or `.pgpass`), and the refusal
/// quotes nothing of the line. The same target (host, port, database, schema) listed twice is refused, naming both
/// lines: a run migrates each target once, and two lines for one target are more likely a mistake than a wish.
public enum TargetsFile {
    /// Every problem of the file at once, each at `FILE:LINE:COLUMN`; `lineText` is never set (it may hold a password).
    public static func parse(
        _ text: String, file: String, allowPasswords: Bool, ownSchema: OwnSchema, environment: [String: String]
    ) throws(MigrationError) -> [FleetTarget] {
        var targets: [FleetTarget] = []
        var problems: [Diagnostic] = []
        var firstLine: [String: Int] = [:]
        var lineNumber = 0
        for rawLine in text.split(separator: "\n", omittingEmptySubsequences: false) {
            lineNumber += 1
            var line = Substring(rawLine)
            if line.last == "\r" { line = line.dropLast() }
            let tokens = tokenize(line)
            guard let first = tokens.first, !first.text.hasPrefix("#") else { continue }
            func problem(_ column: Int, _ message: String, hint: String) {
                problems.append(Diagnostic(
                    message: message, location: SourceLocation(file: file, line: lineNumber, column: column), hint: hint
                ))
            }
            switch parseLine(tokens, allowPasswords: allowPasswords) {
            case .failure(let failure):
                problem(failure.column, failure.message, hint: failure.hint)
            case .success(let (connection, schema)):
                let target = FleetTarget(
                    connectionString: connection, schema: schema, origin: "\(file):\(lineNumber)", environment: environment
                )
                if let schema, (try? target.ownSchema(base: ownSchema)) == nil {
                    problem(
                        first.column,
                        "the tenant schema '\(schema)' is too long for its own schema '\(schema)_\(ownSchema.name)' (PostgreSQL keeps \(SQLIdentifier.maxBytes) bytes)",
                        hint: "shorten the tenant's name, or --schema (MIGRATOR_SCHEMA), the suffix"
                    )
                    continue
                }
                if let earlier = firstLine[target.identity] {
                    problem(
                        first.column,
                        "this line names the same target as line \(earlier) (\(target.identity)): \(file):\(earlier) and \(file):\(lineNumber)",
                        hint: "remove one of the two lines; a run migrates each target once"
                    )
                    continue
                }
                firstLine[target.identity] = lineNumber
                targets.append(target)
            }
        }
        if !problems.isEmpty {
            throw MigrationError(code: .invalidInput, diagnostics: problems, notes: ["nothing was run: the targets file must be valid as a whole"])
        }
        if targets.isEmpty {
            throw MigrationError(
                code: .invalidInput, message: "the targets file lists no target", location: SourceLocation(file: file),
                hint: "one connection a line: postgresql://user@host/db, or host=… dbname=…; add schema=NAME for a tenant schema"
            )
        }
        return targets
    }

    /// The targets given as several `--database-url`s, checked the same way (no line, so `--database-url #N`).
    public static func fromURLs(_ urls: [String], environment: [String: String]) throws(MigrationError) -> [FleetTarget] {
        var targets: [FleetTarget] = []
        var problems: [Diagnostic] = []
        var first: [String: Int] = [:]
        for (index, url) in urls.enumerated() {
            let origin = "--database-url #\(index + 1)"
            // A password in --database-url is the user's choice already; the file's rule is for files.
            switch parseLine(tokenize(Substring(url)), allowPasswords: true) {
            case .failure(let failure):
                problems.append(Diagnostic(message: "\(origin): " + failure.message, hint: failure.hint))
            case .success(let (connection, schema)):
                let target = FleetTarget(connectionString: connection, schema: schema, origin: origin, environment: environment)
                if let earlier = first[target.identity] {
                    problems.append(Diagnostic(
                        message: "\(origin) names the same target as --database-url #\(earlier) (\(target.identity))",
                        hint: "give each target once"
                    ))
                    continue
                }
                first[target.identity] = index + 1
                targets.append(target)
            }
        }
        if !problems.isEmpty {
            throw MigrationError(code: .invalidInput, diagnostics: problems, notes: ["nothing was run"])
        }
        return targets
    }

    struct Token {
        var text: String
        /// 1-based, in characters.
        var column: Int
    }

    struct LineProblem: Error {
        var column: Int
        var message: String
        var hint: String
    }

    /// Splits a line at white space outside single quotes (libpq's quoting of key=value strings: `'…'`, `\'`, `\\`).
    static func tokenize(_ line: Substring) -> [Token] {
        var tokens: [Token] = []
        var current = ""
        var start = 0
        var column = 0
        var quoted = false
        var escaped = false
        for character in line {
            column += 1
            if escaped {
                current.append(character)
                escaped = false
                continue
            }
            if character == " " || character == "\t", !quoted {
                if !current.isEmpty { tokens.append(Token(text: current, column: start)) }
                current = ""
                continue
            }
            if current.isEmpty { start = column }
            if character == "\\" { escaped = true }
            if character == "'" { quoted.toggle() }
            current.append(character)
        }
        if !current.isEmpty { tokens.append(Token(text: current, column: start)) }
        return tokens
    }

    static let connectionHint = "one connection a line: postgresql://user@host:port/db [schema=NAME], or key=value pairs "
        + "(host=… port=… dbname=… user=… [schema=NAME]); leave passwords to PGPASSWORD or ~/.pgpass"

    static func parseLine(_ tokens: [Token], allowPasswords: Bool) -> Result<(String, String?), LineProblem> {
        var schema: String?
        var rest: [Token] = []
        for token in tokens {
            guard token.text.hasPrefix("schema=") else {
                rest.append(token)
                continue
            }
            let name = String(token.text.dropFirst("schema=".count))
            if schema != nil {
                return .failure(LineProblem(column: token.column, message: "schema= is given twice", hint: "give one tenant schema a line"))
            }
            if let problem = SQLIdentifier.problem(name, what: "schema") {
                return .failure(LineProblem(column: token.column + 7, message: "schema=: \(problem)", hint: "a tenant schema is written as schema=tenant_42"))
            }
            let lowered = name.lowercased()
            if lowered == "information_schema" || lowered.hasPrefix("pg_") {
                return .failure(LineProblem(column: token.column + 7, message: "schema=\(name) is a system schema, not a tenant's", hint: "name the tenant's own schema"))
            }
            schema = name
        }
        guard let first = rest.first else {
            return .failure(LineProblem(column: tokens.first?.column ?? 1, message: "schema= without a connection", hint: connectionHint))
        }
        let isURL = first.text.hasPrefix("postgresql://") || first.text.hasPrefix("postgres://")
        if isURL, rest.count > 1 {
            return .failure(LineProblem(
                column: rest[1].column, message: "a URL target takes nothing after it but schema=NAME",
                hint: "put connection options in the URL's query (?sslmode=require), or write the target as key=value pairs"
            ))
        }
        let connection = rest.map(\.text).joined(separator: " ")
        do {
            try ConnectionConfig(connectionString: connection).validate()
        } catch {
            return .failure(LineProblem(column: first.column, message: error.message, hint: error.hint ?? connectionHint))
        }
        guard let options = ConnectionConfig.options(of: connection) else {
            return .failure(LineProblem(column: first.column, message: "libpq could not parse this connection", hint: connectionHint))
        }
        if !allowPasswords, let password = options["password"], !password.isEmpty {
            // The column of the pair that holds it (or of the URL); nothing of the value is quoted.
            let column = isURL ? first.column : (rest.first { $0.text.hasPrefix("password") }?.column ?? first.column)
            return .failure(LineProblem(
                column: column, message: "this target holds a password; a targets file may not (it is read by every runner and lands in logs and repositories)",
                hint: "remove it and set PGPASSWORD or use ~/.pgpass (or PGPASSFILE); --allow-passwords-in-targets accepts it"
            ))
        }
        return .success((connection, schema))
    }
}
