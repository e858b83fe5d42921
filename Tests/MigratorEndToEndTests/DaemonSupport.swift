import Foundation
import MigratorTestSupport
import Postgres
import SystemSupport
import Testing

/// A running `migrator serve`, started from the built binary with its HTTP server on a free port.
final class DaemonProcess: @unchecked Sendable {
    let process: Process
    /// Kept alive as long as the daemon: the folder is removed when released.
    let folder: MigrationFolder
    private let lock = NSLock()
    private var stderrText = ""
    private var stdoutText = ""
    private(set) var port = 0

    /// Starts `migrator serve --migrations FOLDER --http-address 127.0.0.1:0 ARGS` and waits until its HTTP
    /// server listens (the port is read from its log).
    /// With `sidecar`, no `--migrations` is given and the daemon runs in `folder` (empty, so there is no
    /// ./Migrations either): `serve --no-migrate` next to an app that owns the schema.
    init(
        _ folder: MigrationFolder, database: TestDatabase, _ arguments: [String] = [], environment: [String: String] = [:],
        sidecar: Bool = false
    ) throws {
        self.folder = folder
        var env = environment
        if env["DATABASE_URL"] == nil { env["DATABASE_URL"] = database.url }
        let started = try MigratorProcess.start(
            ["serve"] + (sidecar ? [] : ["--migrations", folder.path]) + ["--http-address", "127.0.0.1:0"] + arguments,
            environment: env, currentDirectory: sidecar ? folder.path : nil
        )
        process = started.0
        started.1.fileHandleForReading.readabilityHandler = { [weak self] handle in
            let data = handle.availableData
            if data.isEmpty { handle.readabilityHandler = nil; return }
            self?.append(data, toStderr: false)
        }
        started.2.fileHandleForReading.readabilityHandler = { [weak self] handle in
            let data = handle.availableData
            if data.isEmpty { handle.readabilityHandler = nil; return }
            self?.append(data, toStderr: true)
        }
        let found = Self.wait(timeout: 20) { [self] in
            if let port = Self.port(in: stderr) { self.port = port }
            return port != 0 || !process.isRunning
        }
        guard found, port != 0 else {
            if process.isRunning { process.terminate() }
            throw TestSetupError("serve did not report its HTTP port:\n\(E2E.masked(stderr))")
        }
    }

    deinit {
        if process.isRunning { kill(process.processIdentifier, SIGKILL) }
    }

    private func append(_ data: Data, toStderr: Bool) {
        lock.lock()
        defer { lock.unlock() }
        if toStderr { stderrText += String(decoding: data, as: UTF8.self) } else { stdoutText += String(decoding: data, as: UTF8.self) }
    }

    var stderr: String { lock.lock(); defer { lock.unlock() }; return stderrText }
    var stdout: String { lock.lock(); defer { lock.unlock() }; return stdoutText }

    var transcript: Comment { Comment(rawValue: E2E.masked("--- serve stderr\n\(stderr)--- stdout\n\(stdout)")) }

    static func port(in log: String) -> Int? {
        guard let range = log.range(of: "http.port") else { return nil }
        let digits = log[range.upperBound...].drop { !$0.isNumber }.prefix { $0.isNumber }
        return Int(digits)
    }

    func get(_ path: String) throws -> HTTPProbe.Answer {
        try HTTPProbe.get(host: "127.0.0.1", port: port, path: path, timeout: 5)
    }

    /// True once /readyz answers 200.
    func waitUntilReady(timeout: Double = 20) -> Bool {
        Self.wait(timeout: timeout) { (try? self.get("/readyz").status) == 200 }
    }

    /// The current metrics, checked to be valid Prometheus text.
    func metrics(sourceLocation: SourceLocation = #_sourceLocation) throws -> PrometheusText {
        let answer = try get("/metrics")
        #expect(answer.status == 200, sourceLocation: sourceLocation)
        return try PrometheusText(parsing: answer.body)
    }

    /// Sends a signal and waits for the exit; returns the exit code and how long it took.
    func stop(_ signal: Int32 = SIGTERM, limit: Double = 15) -> (code: Int32, seconds: Double) {
        kill(process.processIdentifier, signal)
        return waitForExit(limit: limit)
    }

    /// Waits for the exit (a signal was sent already); returns the exit code (-1: killed at `limit`) and how long the
    /// wait took.
    func waitForExit(limit: Double = 15) -> (code: Int32, seconds: Double) {
        let start = ContinuousClock.now
        let exited = Self.wait(timeout: limit) { !self.process.isRunning }
        if !exited { kill(process.processIdentifier, SIGKILL) }
        process.waitUntilExit()
        // Let the pipes drain.
        _ = Self.wait(timeout: 2) { false }
        let elapsed = ContinuousClock.now - start
        let run = Run(result: MigratorProcess.Result(exitCode: process.terminationStatus, stdout: stdout, stderr: stderr), seconds: 0)
        E2E.expectNoSecrets(in: run)
        return (exited ? process.terminationStatus : -1, Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18)
    }

    /// The log lines (text format) whose message is `message`, with the time the daemon stamped on each, in order.
    func logLines(_ message: String) -> [LogLine] {
        stderr.split(separator: "\n").compactMap { LogLine($0) }.filter { line in
            // The message itself, not a longer one that starts alike: what follows it are key=value fields.
            line.message == message
                || (line.message.hasPrefix(message + " ") && line.message.dropFirst(message.count + 1).prefix { $0 != " " }.contains("="))
        }
    }

    /// One line of the daemon's text log: `TIMESTAMP LEVEL MESSAGE key=value…`.
    struct LogLine {
        var time: Date
        var text: String
        /// The line after the timestamp and the level.
        var message: Substring

        init?(_ line: Substring) {
            let parts = line.split(separator: " ", maxSplits: 2)
            guard parts.count == 3,
                  let time = try? Date.ISO8601FormatStyle(includingFractionalSeconds: true).parse(String(parts[0])) else { return nil }
            self.time = time
            text = String(line)
            message = parts[2]
        }

        /// The value of `key=` on the line, unquoted.
        func value(_ key: String) -> String? {
            guard let range = text.range(of: " " + key + "=") else { return nil }
            return String(text[range.upperBound...].prefix { !$0.isWhitespace }).trimmingCharacters(in: CharacterSet(charactersIn: "\""))
        }
    }

    /// Polls `condition` every 20 ms until it holds or `timeout` seconds pass.
    @discardableResult
    static func wait(timeout: Double, _ condition: () throws -> Bool) rethrows -> Bool {
        let deadline = ContinuousClock.now + .milliseconds(Int(timeout * 1000))
        while ContinuousClock.now < deadline {
            if try condition() { return true }
            usleep(20_000)
        }
        return try condition()
    }

    /// Seconds until `condition` held, or nil if it did not within `timeout`.
    static func timeUntil(timeout: Double, _ condition: () throws -> Bool) rethrows -> Double? {
        let start = ContinuousClock.now
        guard try wait(timeout: timeout, condition) else { return nil }
        let elapsed = ContinuousClock.now - start
        return Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
    }
}

/// Prometheus text exposition format 0.0.4, parsed strictly enough that a malformed line fails the test.
struct PrometheusText {
    /// "name{labels}" (labels as written) → value.
    var samples: [String: Double] = [:]
    var types: [String: String] = [:]

    struct Malformed: Error, CustomStringConvertible { var description: String }

    init(parsing text: String) throws {
        guard text.hasSuffix("\n") else { throw Malformed(description: "the exposition does not end with a newline") }
        for line in text.split(separator: "\n", omittingEmptySubsequences: false).dropLast() {
            if line.isEmpty { continue }
            if line.hasPrefix("#") {
                let parts = line.split(separator: " ", maxSplits: 3)
                if parts.count >= 2, parts[1] == "TYPE" {
                    guard parts.count == 4, Self.isName(parts[2]),
                          ["counter", "gauge", "histogram", "summary", "untyped"].contains(parts[3]) else {
                        throw Malformed(description: "bad TYPE line: \(line)")
                    }
                    guard types[String(parts[2])] == nil else { throw Malformed(description: "TYPE given twice: \(line)") }
                    types[String(parts[2])] = String(parts[3])
                } else if parts.count >= 2, parts[1] == "HELP" {
                    guard parts.count >= 3, Self.isName(parts[2]) else { throw Malformed(description: "bad HELP line: \(line)") }
                }
                continue
            }
            // name{labels} value [timestamp]
            let nameEnd = line.firstIndex { $0 == "{" || $0 == " " } ?? line.endIndex
            let name = line[..<nameEnd]
            guard Self.isName(name) else { throw Malformed(description: "bad metric name: \(line)") }
            var rest = line[nameEnd...]
            var key = String(name)
            if rest.hasPrefix("{") {
                guard let close = rest.firstIndex(of: "}") else { throw Malformed(description: "unclosed labels: \(line)") }
                let labels = rest[rest.index(after: rest.startIndex)..<close]
                for pair in labels.split(separator: ",") where !pair.isEmpty {
                    let kv = pair.split(separator: "=", maxSplits: 1)
                    guard kv.count == 2, Self.isName(kv[0]), kv[1].hasPrefix("\""), kv[1].hasSuffix("\""), kv[1].count >= 2 else {
                        throw Malformed(description: "bad label '\(pair)': \(line)")
                    }
                }
                key += "{\(labels)}"
                rest = rest[rest.index(after: close)...]
            }
            let fields = rest.split(separator: " ")
            guard (1...2).contains(fields.count), let value = Self.value(fields[0]) else {
                throw Malformed(description: "bad sample value: \(line)")
            }
            let family = ["_bucket", "_sum", "_count"].first { name.hasSuffix($0) && types[String(name.dropLast($0.count))] == "histogram" }
                .map { String(name.dropLast($0.count)) } ?? String(name)
            guard types[family] != nil else { throw Malformed(description: "sample without a TYPE line before it: \(line)") }
            samples[key] = value
        }
    }

    subscript(_ key: String) -> Double? { samples[key] }

    static func isName(_ text: Substring) -> Bool {
        guard let first = text.first, first.isLetter || first == "_" || first == ":" else { return false }
        return text.allSatisfy { ($0.isASCII && ($0.isLetter || $0.isNumber)) || $0 == "_" || $0 == ":" }
    }

    static func value(_ text: Substring) -> Double? {
        switch text {
        case "+Inf": .infinity
        case "-Inf": -.infinity
        case "NaN": .nan
        default: Double(text)
        }
    }
}

extension TestDatabase {
    /// Inserts a project and returns its id.
    func insertProject(_ connection: Connection, _ name: String) throws -> Int64 {
        let row = try connection.query(
            "INSERT INTO main_project (name, description) VALUES ($1, '') RETURNING id", [name]
        ).first
        return Int64(row?["id"] ?? "") ?? -1
    }
}

/// A pause the test controls: a test-only statement trigger on `table` makes the daemon's statement (sessions named
/// `migrator`) wait on advisory lock `key`, which the test holds until it releases it. Nothing waits on a clock: the
/// test sees the daemon waiting there in `pg_locks`.
struct Barrier {
    let key: Int64
    let connection: Connection

    /// Installs the trigger (before the lock is taken: CREATE TRIGGER waits for transactions that wrote to the
    /// table) and holds the lock.
    init(_ connection: Connection, key: Int64 = 0x4241_5252, on table: String, _ events: String) throws {
        self.key = key
        self.connection = connection
        try connection.execute(script: """
            CREATE FUNCTION test_barrier_\(key)() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                IF current_setting('application_name') = 'migrator' THEN PERFORM pg_advisory_xact_lock_shared(\(key)::bigint); END IF;
                RETURN NULL;
            END $$;
            CREATE TRIGGER test_barrier_\(key) AFTER \(events) ON \(table) FOR EACH STATEMENT EXECUTE FUNCTION test_barrier_\(key)();
            """)
        try connection.query("SELECT pg_advisory_lock($1::bigint)", [key])
    }

    /// Holds the lock only: for SQL of the test's own that waits on it (`pg_advisory_xact_lock_shared(key)`).
    init(holding key: Int64, _ connection: Connection) throws {
        self.key = key
        self.connection = connection
        try connection.query("SELECT pg_advisory_lock($1::bigint)", [key])
    }

    /// Whether a session of the daemon's waits on the barrier now.
    func isWaiting() throws -> Bool {
        try connection.count(
            """
            SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
            WHERE l.locktype = 'advisory' AND NOT l.granted AND l.classid = ($1::bigint >> 32)::oid
              AND l.objid = ($1::bigint & 4294967295)::oid AND a.application_name = 'migrator' AND a.datname = current_database()
            """, [key]
        ) == 1
    }

    /// Waits (at most `timeout` seconds, a failure guard) until a session of the daemon's waits on the barrier.
    func reached(timeout: Double = 30) throws -> Bool {
        try DaemonProcess.wait(timeout: timeout) { try isWaiting() }
    }

    func release() throws {
        try connection.query("SELECT pg_advisory_unlock($1::bigint)", [key])
    }
}

extension Connection {
    /// (groups linked, group permissions, object permissions on the project) for one project.
    func roleRows(_ project: Int64) throws -> [Int] {
        let row = try query(
            """
            SELECT (SELECT count(*) FROM migrator.project_role_group WHERE project_id = $1) AS groups,
                   (SELECT count(*) FROM auth_group_permissions x JOIN migrator.project_role_group l ON l.group_id = x.group_id
                     WHERE l.project_id = $1) AS group_permissions,
                   (SELECT count(*) FROM guardian_groupobjectpermission x JOIN migrator.project_role_group l ON l.group_id = x.group_id
                     WHERE l.project_id = $1 AND x.object_pk = $1::text) AS object_permissions
            """, [project]
        ).first
        return ["groups", "group_permissions", "object_permissions"].map { row?.int($0) ?? -1 }
    }
}
