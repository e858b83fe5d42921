import Foundation
import MigratorTestSupport
import Postgres
import Testing

/// A finished `migrator` run with how long it took.
struct Run {
    var result: MigratorProcess.Result
    var seconds: Double

    var exitCode: Int32 { result.exitCode }
    var stdout: String { result.stdout }
    var stderr: String { result.stderr }
    var output: String { result.output }

    /// For `#expect` messages: everything the run printed.
    var transcript: Comment {
        Comment(rawValue: "exit \(exitCode) after \(String(format: "%.1f", seconds)) s\n--- stdout\n\(stdout)--- stderr\n\(stderr)")
    }
}

enum E2E {
    /// Runs `migrator` with `arguments`, killing it after `limit` seconds so that a hang fails the test instead of
    /// the whole suite, and checks that nothing it printed holds the server's password or any of `secrets`.
    @discardableResult
    static func run(
        _ arguments: [String], database: TestDatabase? = nil, environment: [String: String] = [:],
        secrets: [String] = [], limit: Double = 60, sourceLocation: SourceLocation = #_sourceLocation
    ) throws -> Run {
        try finish(start(arguments, database: database, environment: environment), secrets: secrets, limit: limit, sourceLocation: sourceLocation)
    }

    struct Started {
        var process: (Process, Pipe, Pipe)
        var startedAt: ContinuousClock.Instant
    }

    static func start(_ arguments: [String], database: TestDatabase? = nil, environment: [String: String] = [:]) throws -> Started {
        var env = environment
        if let database, env["DATABASE_URL"] == nil { env["DATABASE_URL"] = database.url }
        let startedAt = ContinuousClock.now
        return Started(process: try MigratorProcess.start(arguments, environment: env), startedAt: startedAt)
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

    /// The server password and every extra secret, raw and percent-encoded, must not appear in what a run printed.
    static func expectNoSecrets(in run: Run, extra: [String] = [], sourceLocation: SourceLocation = #_sourceLocation) {
        var secrets = extra
        if let password = TestDatabase.password { secrets.append(password) }
        for secret in secrets where !secret.isEmpty {
            let forms = Set([secret, secret.addingPercentEncoding(withAllowedCharacters: .alphanumerics) ?? secret])
            for form in forms {
                #expect(!run.output.contains(form), "a password appears in the output", sourceLocation: sourceLocation)
            }
        }
    }

    /// `--migrations <folder>` plus `arguments`, as most runs need.
    static func args(_ command: String, _ folder: MigrationFolder, _ arguments: String...) -> [String] {
        [command, "--migrations", folder.path] + arguments
    }

    /// A folder holding `files` (name → content).
    static func folder(_ files: [(String, String)]) throws -> MigrationFolder {
        let folder = try MigrationFolder()
        for (name, content) in files { try folder.write(name, content) }
        return folder
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

    /// Versions in the history, in order; empty when the table does not exist.
    func historyVersions() throws -> [Int64] {
        guard try tableExists("public.migrator_history") else { return [] }
        return try query("SELECT version FROM public.migrator_history ORDER BY version").rows.compactMap { $0["version"].flatMap { Int64($0) } }
    }

    /// Polls until a session other than this one holds an advisory lock in this database.
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

/// The JSON documents the CLI prints, decoded as a script would read them.
struct MigrateJSON: Decodable {
    struct Applied: Decodable {
        var version: Int64
        var name: String
        var transactional: Bool
        var resumedAtStatement: Int?
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
    var problems: [String]
}

/// What `--json` prints when a run fails.
struct FailureJSON: Decodable {
    struct Body: Decodable {
        struct Server: Decodable {
            var sqlState: String?
            var message: String
        }

        var code: String
        var message: String
        var appliedBeforeFailure: [String]
        var server: Server?
    }

    var ok: Bool
    var exitCode: Int32
    var error: Body
}

func decode<T: Decodable>(_ type: T.Type, _ text: String) throws -> T {
    try JSONDecoder().decode(type, from: Data(text.utf8))
}

/// The server's host and port, from the admin URL, to build URLs with other credentials.
enum Server {
    static var components: URLComponents {
        get throws {
            guard let components = URLComponents(string: try TestDatabase.adminURL) else {
                throw TestSetupError("MIGRATOR_TEST_DATABASE_URL is not a URL")
            }
            return components
        }
    }

    /// `postgresql://user:password@host:port/database` with the password percent-encoded as a user must write it.
    static func url(user: String, password: String, database: String, port: Int? = nil) throws -> String {
        let admin = try components
        let encoded = password.addingPercentEncoding(withAllowedCharacters: .alphanumerics) ?? password
        return "postgresql://\(user):\(encoded)@\(admin.host ?? "127.0.0.1"):\(port ?? admin.port ?? 5432)/\(database)"
    }

    static var adminUser: String {
        get throws { try components.user ?? "postgres" }
    }
}
