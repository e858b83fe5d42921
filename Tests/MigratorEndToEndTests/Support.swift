import Foundation
import MigratorTestSupport
import Postgres
import Testing

struct Run {
    var result: MigratorProcess.Result
    var seconds: Double

    var exitCode: Int32 { result.exitCode }
    var stdout: String { result.stdout }
    var stderr: String { result.stderr }
    var output: String { result.output }

    /// The server's password is masked so that a failing test does not put it in the test log.
    var transcript: Comment {
        Comment(rawValue: E2E.masked("exit \(exitCode) after \(String(format: "%.1f", seconds)) s\n--- stdout\n\(stdout)--- stderr\n\(stderr)"))
    }
}

enum E2E {
    /// The key of migrator's advisory lock ("migrator" in ASCII), for tests that hold it themselves.
    static let lockKey: Int64 = 0x6D69_6772_6174_6F72

    /// Kills the run after `limit` seconds so that a hang fails one test instead of stalling the suite; every run is
    /// checked for passwords because no output of migrator may ever carry one.
    @discardableResult
    static func run(
        _ arguments: [String], database: TestDatabase? = nil, environment: [String: String] = [:],
        secrets: [String] = [], limit: Double = 60, currentDirectory: String? = nil, standardInput: String? = nil,
        sourceLocation: SourceLocation = #_sourceLocation
    ) throws -> Run {
        try finish(
            start(arguments, database: database, environment: environment, currentDirectory: currentDirectory, standardInput: standardInput),
            secrets: secrets, limit: limit, sourceLocation: sourceLocation
        )
    }

    struct Started {
        var process: (Process, Pipe, Pipe)
        var startedAt: ContinuousClock.Instant
    }

    static func start(
        _ arguments: [String], database: TestDatabase? = nil, environment: [String: String] = [:],
        currentDirectory: String? = nil, standardInput: String? = nil
    ) throws -> Started {
        var env = environment
        if let database, env["DATABASE_URL"] == nil { env["DATABASE_URL"] = database.url }
        let startedAt = ContinuousClock.now
        return Started(
            process: try MigratorProcess.start(arguments, environment: env, currentDirectory: currentDirectory, standardInput: standardInput),
            startedAt: startedAt
        )
    }

    static func finish(
        _ started: Started, secrets: [String] = [], limit: Double = 60, sourceLocation: SourceLocation = #_sourceLocation
    ) -> Run {
        let process = started.process.0
        let watchdog = DispatchWorkItem { if process.isRunning { process.terminate() } }
        DispatchQueue.global().asyncAfter(deadline: .now() + limit, execute: watchdog)
        let result = MigratorProcess.finish(started.process)
        watchdog.cancel()
        let elapsed = ContinuousClock.now - started.startedAt
        let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
        let run = Run(result: result, seconds: seconds)
        #expect(seconds < limit, "migrator was still running after \(limit) s and was killed", sourceLocation: sourceLocation)
        expectNoSecrets(in: run, extra: secrets, sourceLocation: sourceLocation)
        return run
    }

    /// What `update-roles` says when it runs before the app's tables exist (the migrate that makes them is still
    /// running): the table it needs, and nothing was changed.
    static func namesMissingAppTable(_ run: Run) -> Bool {
        (run.stderr.contains("there is no auth_group table")
            || run.stderr.contains("the project table 'main_project' does not exist"))
            && run.stderr.contains("nothing was changed")
    }

    /// Percent-encoded too, because that is how a password sits in a URL that might be echoed. The output is not
    /// part of the expectation, so a failure shows where the password was without printing it again.
    static func expectNoSecrets(in run: Run, extra: [String] = [], sourceLocation: SourceLocation = #_sourceLocation) {
        let secrets = extra + (TestDatabase.password.map { [$0] } ?? [])
        for secret in secrets where !secret.isEmpty {
            for form in forms(of: secret) {
                for (stream, text) in [("stdout", run.stdout), ("stderr", run.stderr)] {
                    let leaked = text.contains(form)
                    #expect(
                        !leaked,
                        "a password appears in \(stream):\n\(masked(text.replacingOccurrences(of: form, with: "<PASSWORD>")))",
                        sourceLocation: sourceLocation
                    )
                }
            }
        }
    }

    static func forms(of secret: String) -> Set<String> {
        Set([secret, secret.addingPercentEncoding(withAllowedCharacters: .alphanumerics) ?? secret])
    }

    static func masked(_ text: String) -> String {
        guard let password = TestDatabase.password, !password.isEmpty else { return text }
        return forms(of: password).reduce(text) { $0.replacingOccurrences(of: $1, with: "<SERVER PASSWORD>") }
    }

    static func args(_ command: String, _ folder: MigrationFolder, _ arguments: String...) -> [String] {
        [command, "--migrations", folder.path] + arguments
    }

    /// `migrate` on a folder of a test's own migrations. Those do not create the tables the post-migrate role sync
    /// reads, so it is skipped; the tests on the shipped migrations run it.
    static func migrate(_ folder: MigrationFolder, _ arguments: String...) -> [String] {
        ["migrate", "--migrations", folder.path, "--skip-roles"] + arguments
    }

    static func shipped(plus files: [(String, String)]) throws -> MigrationFolder {
        let folder = try MigrationFolder.shipped()
        for (name, content) in files { try folder.write(name, content) }
        return folder
    }

    /// `verify` also wants the role version current, which a folder without the role tables never has, so the
    /// migrations' part of it is read from `status --json`.
    static func expectAllApplied(
        _ folder: MigrationFolder, database: TestDatabase, versions: [Int64], sourceLocation: SourceLocation = #_sourceLocation
    ) throws {
        let run = try run(args("status", folder, "--json"), database: database, sourceLocation: sourceLocation)
        #expect(run.exitCode == 0, run.transcript, sourceLocation: sourceLocation)
        let report = try decode(StatusJSON.self, run.stdout)
        #expect(report.migrations.map(\.version) == versions, sourceLocation: sourceLocation)
        #expect(report.migrations.allSatisfy { $0.state == "applied" }, run.transcript, sourceLocation: sourceLocation)
        #expect(report.problems.isEmpty, run.transcript, sourceLocation: sourceLocation)
    }

    static func folder(_ files: [(String, String)]) throws -> MigrationFolder {
        let folder = try MigrationFolder()
        for (name, content) in files { try folder.write(name, content) }
        return folder
    }
}

extension E2E {
    /// A login role of the test's own that may use `db` and its public schema, with `settings` applied to it
    /// (`ALTER ROLE … SET name = value`), for `body(role, password, url)`; dropped with what it owns afterwards.
    static func withRole<T>(
        _ db: TestDatabase, _ connection: Connection, settings: [(String, String)] = [],
        _ body: (_ role: String, _ password: String, _ url: String) throws -> T
    ) throws -> T {
        let role = "mt_role_" + UUID().uuidString.prefix(8).lowercased()
        let password = "pw-" + UUID().uuidString
        // A role name cannot be a parameter; this one is made of [a-z0-9_] only, and the password of [a-z0-9-].
        try connection.query("CREATE ROLE \(role) LOGIN PASSWORD '\(password)'")
        defer { _ = try? connection.query("DROP OWNED BY \(role)"); _ = try? connection.query("DROP ROLE \(role)") }
        // Setting names and values are the test's own constants.
        for (name, value) in settings {
            try connection.query("ALTER ROLE \(role) SET \(name) = '\(value)'")
        }
        try connection.query("GRANT ALL ON DATABASE \(db.name) TO \(role)")
        try connection.query("GRANT ALL ON SCHEMA public TO \(role)")
        return try body(role, password, try Server.url(user: role, password: password, database: db.name))
    }
}

extension Connection {
    func scalar(_ sql: String, _ parameters: [(any PostgresBindable)?] = []) throws -> String? {
        try query(sql, parameters).first?[0]
    }

    func count(_ sql: String, _ parameters: [(any PostgresBindable)?] = []) throws -> Int {
        Int(try scalar(sql, parameters) ?? "") ?? -1
    }

    func tableExists(_ name: String) throws -> Bool {
        try scalar("SELECT to_regclass($1) IS NOT NULL", [name]) == "t"
    }

    func historyVersions() throws -> [Int64] {
        guard try tableExists("migrator.history") else { return [] }
        return try query("SELECT version FROM migrator.history ORDER BY version").rows.compactMap { $0["version"].flatMap { Int64($0) } }
    }

    func waitForAdvisoryLockHolder(timeout: Double = 15) throws -> Bool {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            let held = try count(
                """
                SELECT count(*) FROM pg_locks
                WHERE locktype = 'advisory' AND granted AND pid <> pg_backend_pid()
                  AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
                """
            )
            if held > 0 { return true }
            Thread.sleep(forTimeInterval: 0.05)
        }
        return false
    }
}

struct MigrateJSON: Decodable {
    struct Applied: Decodable {
        var version: Int64
        var name: String
        var transactional: Bool
        var resumedAtStatement: Int?
        var statements: Int?
    }

    var applied: [Applied]
    var roundTrips: Int
    var dryRun: Bool
    var pendingAfter: Int
}

struct StatusJSON: Decodable {
    struct Migration: Decodable {
        var version: Int64
        var name: String
        var state: String
        var file: String?
        var checksum: String?
        var failedStatement: Int?
    }

    var migrations: [Migration]
    var problems: [ProblemJSON]
}

/// A problem as `--json` gives it.
struct ProblemJSON: Decodable {
    struct Location: Decodable {
        var file: String
        var line: Int?
        var column: Int?
    }

    var message: String
    var location: Location?
    var hint: String?
    var notes: [String]
}

struct FailureJSON: Decodable {
    struct Body: Decodable {
        struct Server: Decodable {
            var sqlState: String?
            var message: String
        }

        var code: String
        var message: String
        var diagnostics: [ProblemJSON]
        var notes: [String]
        var appliedBeforeFailure: [String]
        var server: Server?
        var text: String
    }

    var ok: Bool
    var exitCode: Int32
    var error: Body
}

func decode<T: Decodable>(_ type: T.Type, _ text: String) throws -> T {
    try JSONDecoder().decode(type, from: Data(text.utf8))
}

enum Server {
    static var components: URLComponents {
        get throws {
            guard let components = URLComponents(string: try TestDatabase.adminURL) else {
                throw TestSetupError("MIGRATOR_TEST_DATABASE_URL is not a URL")
            }
            return components
        }
    }

    static func url(user: String, password: String, database: String, port: Int? = nil) throws -> String {
        let admin = try components
        let encoded = password.addingPercentEncoding(withAllowedCharacters: .alphanumerics) ?? password
        return "postgresql://\(user):\(encoded)@\(admin.host ?? "127.0.0.1"):\(port ?? admin.port ?? 5432)/\(database)"
    }

    static var adminUser: String {
        get throws { try components.user ?? "postgres" }
    }
}
