import Foundation
import Logging
import MigratorTestSupport
import Postgres
import Testing

/// Databases of a fleet test, made from one template of the test's own (cheaper than each from template1 with
/// its own catalogue writes), dropped together afterwards.
struct FleetDatabases {
    var names: [String]
    var template: String

    static func with<T>(_ count: Int, _ label: String = #function, _ body: (FleetDatabases) throws -> T) throws -> T {
        let admin = try TestDatabase.adminConnection()
        let slug = String(label.lowercased().unicodeScalars.filter { ("a"..."z").contains($0) }.prefix(12).map(Character.init))
        let tag = UUID().uuidString.prefix(6).lowercased()
        let template = "mt_fleet_\(slug)_\(tag)_tpl"
        // Database names cannot be parameters; these are made of [a-z0-9_] only.
        try admin.query("CREATE DATABASE \(template)")
        var names: [String] = []
        defer {
            for name in names + [template] { _ = try? admin.query("DROP DATABASE IF EXISTS \(name) WITH (FORCE)") }
        }
        for index in 0..<count {
            let name = "mt_fleet_\(slug)_\(tag)_\(index)"
            try admin.query("CREATE DATABASE \(name) TEMPLATE \(template)")
            names.append(name)
        }
        return try body(FleetDatabases(names: names, template: template))
    }

    /// `postgresql://user@host:port/NAME`: no password (PGPASSWORD gives it, see ``FleetTests/environment``).
    func url(_ index: Int) throws -> String {
        let server = try Server.components
        return "postgresql://\(server.user ?? "postgres")@\(server.host ?? "127.0.0.1"):\(server.port ?? 5432)/\(names[index])"
    }

    func connect(_ index: Int) throws -> Connection {
        var components = try Server.components
        components.path = "/" + names[index]
        return try Connection(config: ConnectionConfig(connectionString: components.string), logger: .init(label: "test"))
    }

    /// The label migrator shows a target by.
    func label(_ index: Int) throws -> String {
        let server = try Server.components
        return "\(server.user ?? "postgres")@\(server.host ?? "127.0.0.1"):\(server.port ?? 5432)/\(names[index])"
    }

    func targetsFile(_ indices: some Sequence<Int>, extra: String = "") throws -> String {
        let path = NSTemporaryDirectory() + "targets-\(UUID().uuidString).txt"
        var text = "# fleet test targets\n\n"
        for index in indices { text += try url(index) + "\n" }
        text += extra
        try text.write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }
}

/// One JSON line of `--json` over a fleet.
struct FleetLineJSON: Decodable {
    var target: String?
    var state: String?
    var exitCode: Int32?
    var summary: String?
}

/// The last line of `--json` over a fleet.
struct FleetSummaryJSON: Decodable {
    struct Counts: Decodable {
        var targets: Int
        var applied: Int
        var upToDate: Int
        var failed: Int
        var skipped: Int
        /// `status` only: targets with migrations to apply.
        var pending: Int?
    }

    struct Failed: Decodable {
        var target: String
        var exitCode: Int32
    }

    var summary: Counts
    var ok: Bool
    var exitCode: Int32
    var canaryStopped: Bool
    var failedTargets: [Failed]
}

@Suite("migrator end to end: fleets", .serialized)
struct FleetTests {
    /// The server's password from the environment, never from the targets file.
    static var environment: [String: String] {
        ["PGPASSWORD": TestDatabase.password ?? ""]
    }

    static let folder: [(String, String)] = [
        ("0001_widgets.sql", "CREATE TABLE widgets (id bigint PRIMARY KEY, name text NOT NULL);\n"),
        ("0002_widget_color.sql", "ALTER TABLE widgets ADD COLUMN color text;\n"),
    ]

    static func lines(_ stdout: String) throws -> (targets: [FleetLineJSON], summary: FleetSummaryJSON) {
        let lines = stdout.split(separator: "\n").map(String.init)
        guard let last = lines.last else { throw TestSetupError("no output") }
        return (try lines.dropLast().map { try decode(FleetLineJSON.self, $0) }, try decode(FleetSummaryJSON.self, last))
    }

    static func history(_ connection: Connection, schema: String = "migrator") throws -> [Int64] {
        guard try connection.tableExists("\(schema).history") else { return [] }
        return try connection.query("SELECT version FROM \(schema).history ORDER BY version").rows.compactMap { $0["version"].flatMap { Int64($0) } }
    }

    @Test("200 databases: one with a conflicting table fails and is named, the other 199 are migrated; then all 200, and --json per target")
    func twoHundredDatabases() throws {
        try FleetDatabases.with(200) { fleet in
            let folder = try E2E.folder(Self.folder)
            let broken = 137
            try fleet.connect(broken).query("CREATE TABLE widgets (other integer)")
            let targets = try fleet.targetsFile(0..<200)
            let first = try E2E.run(E2E.migrate(folder, "--targets", targets, "--parallel", "8"), environment: Self.environment, limit: 300)
            #expect(first.exitCode == 1, first.transcript)
            #expect(first.stdout.contains("migrate: 200 targets: 199 applied, 0 up to date, 1 failed, 0 skipped"), first.transcript)
            #expect(first.stdout.contains("failed: \(try fleet.label(broken)) (exit 1)"), first.transcript)
            #expect(first.stdout.split(separator: "\n").count { $0.hasPrefix("applied ") } == 199, first.transcript)
            #expect(first.stderr.contains("\(try fleet.label(broken)): \(folder.path)/0001_widgets.sql:1:14: error: relation \"widgets\" already exists"), first.transcript)
            for index in 0..<200 {
                let connection = try fleet.connect(index)
                #expect(try Self.history(connection) == (index == broken ? [] : [1, 2]), "database \(index)")
            }

            try fleet.connect(broken).query("DROP TABLE widgets")
            let second = try E2E.run(E2E.migrate(folder, "--targets", targets, "--json"), environment: Self.environment, limit: 300)
            #expect(second.exitCode == 0, second.transcript)
            let (lines, summary) = try Self.lines(second.stdout)
            #expect(lines.count == 200)
            #expect(Set(lines.compactMap(\.target)) == Set(try (0..<200).map(fleet.label)))
            #expect(lines.filter { $0.state == "applied" }.map(\.target) == [try fleet.label(broken)])
            #expect(lines.filter { $0.state == "upToDate" }.count == 199)
            #expect(summary.summary.applied == 1 && summary.summary.upToDate == 199 && summary.summary.failed == 0)
            #expect(summary.ok && summary.exitCode == 0)
            for index in 0..<200 {
                #expect(try Self.history(try fleet.connect(index)) == [1, 2], "database \(index)")
            }

            let verify = try E2E.run(["verify", "--migrations", folder.path, "--targets", targets, "--json"], environment: Self.environment, limit: 300)
            // verify also wants the role version current, which these databases (no role tables) never have.
            #expect(verify.exitCode == 3, verify.transcript)
            #expect(try Self.lines(verify.stdout).summary.failedTargets.count == 200)
        }
    }

    @Test("--canary 3: a failing canary stops the run; the rest are reported skipped and untouched")
    func canaryStop() throws {
        try FleetDatabases.with(10) { fleet in
            let folder = try E2E.folder(Self.folder)
            try fleet.connect(1).query("CREATE TABLE widgets (other integer)")
            let targets = try fleet.targetsFile(0..<10)
            let run = try E2E.run(E2E.migrate(folder, "--targets", targets, "--canary", "3", "--parallel", "2"), environment: Self.environment)
            #expect(run.exitCode == 1, run.transcript)
            #expect(run.stdout.contains("migrate: 10 targets: 2 applied, 0 up to date, 1 failed, 7 skipped"), run.transcript)
            #expect(run.stdout.contains("canary: a canary target failed, so the other 7 were skipped"), run.transcript)
            #expect(run.stdout.contains("failed: \(try fleet.label(1)) (exit 1)"), run.transcript)
            for index in 3..<10 {
                #expect(run.stdout.contains("skipped    \(try fleet.label(index))\n"), run.transcript)
                #expect(try Self.history(try fleet.connect(index)) == [], "database \(index) was not to be touched")
            }
            #expect(try Self.history(try fleet.connect(0)) == [1, 2])
            #expect(try Self.history(try fleet.connect(2)) == [1, 2])

            // --fail-fast with one runner at a time: nothing after the failure starts.
            let failFast = try E2E.run(E2E.migrate(folder, "--targets", targets, "--fail-fast", "--parallel", "1"), environment: Self.environment)
            #expect(failFast.exitCode == 1, failFast.transcript)
            #expect(failFast.stdout.contains("0 applied, 1 up to date, 1 failed, 8 skipped"), failFast.transcript)
        }
    }

    @Test("--shard 0/2 and --shard 1/2, run at once, cover every target exactly once; --shard-count takes JOB_COMPLETION_INDEX")
    func shards() throws {
        try FleetDatabases.with(40) { fleet in
            let folder = try E2E.folder(Self.folder)
            let targets = try fleet.targetsFile(0..<40)
            let runners = try (0..<2).map { shard in
                try E2E.start(E2E.migrate(folder, "--targets", targets, "--shard", "\(shard)/2", "--json"), environment: Self.environment)
            }
            let runs = runners.map { E2E.finish($0, limit: 120) }
            var applied: [[String]] = []
            for run in runs {
                #expect(run.exitCode == 0, run.transcript)
                let (lines, summary) = try Self.lines(run.stdout)
                #expect(lines.allSatisfy { $0.state == "applied" }, run.transcript)
                #expect(summary.summary.targets == lines.count)
                applied.append(lines.compactMap(\.target))
            }
            #expect(!applied[0].isEmpty && !applied[1].isEmpty, "a 2-way split of 40 targets left one shard empty")
            #expect(Set(applied[0]).isDisjoint(with: applied[1]), "a target fell in both shards")
            #expect((applied[0] + applied[1]).sorted() == (try (0..<40).map(fleet.label)).sorted())
            for index in 0..<40 { #expect(try Self.history(try fleet.connect(index)) == [1, 2]) }

            // The Kubernetes form picks the same share.
            var environment = Self.environment
            environment["JOB_COMPLETION_INDEX"] = "1"
            let indexed = try E2E.run(E2E.migrate(folder, "--targets", targets, "--shard-count", "2", "--json"), environment: environment)
            #expect(indexed.exitCode == 0, indexed.transcript)
            let (lines, _) = try Self.lines(indexed.stdout)
            #expect(Set(lines.compactMap(\.target)) == Set(applied[1]))
            #expect(lines.allSatisfy { $0.state == "upToDate" })

            let noIndex = try E2E.run(E2E.migrate(folder, "--targets", targets, "--shard-count", "2"), environment: Self.environment)
            #expect(noIndex.exitCode == 64 && noIndex.stderr.contains("JOB_COMPLETION_INDEX"), noIndex.transcript)
        }
    }

    @Test("the same target listed twice is refused naming both lines, before anything runs")
    func sameTargetTwiceInFile() throws {
        try FleetDatabases.with(2) { fleet in
            let folder = try E2E.folder(Self.folder)
            let server = try Server.components
            // The same database written as key=value on line 5 (the URL form is on line 3).
            let again = "host=\(server.host ?? "127.0.0.1") port=\(server.port ?? 5432) dbname=\(fleet.names[0]) user=\(server.user ?? "postgres")\n"
            let targets = try fleet.targetsFile(0..<2, extra: again)
            let run = try E2E.run(E2E.migrate(folder, "--targets", targets), environment: Self.environment)
            #expect(run.exitCode == 2, run.transcript)
            #expect(run.stderr.contains("\(targets):5:1: error: this line names the same target as line 3"), run.transcript)
            #expect(run.stderr.contains("\(targets):3 and \(targets):5"), run.transcript)
            #expect(run.stderr.contains("hint: remove one of the two lines"), run.transcript)
            #expect(try Self.history(try fleet.connect(0)) == [] && Self.history(try fleet.connect(1)) == [], "nothing runs before the file is valid")
        }
    }

    @Test("two runners given the same targets while a test session holds one target's lock: exactly one applies it")
    func twoRunnersSameTarget() throws {
        try FleetDatabases.with(3) { fleet in
            let folder = try E2E.folder(Self.folder)
            let targets = try fleet.targetsFile(0..<3)
            let holder = try fleet.connect(0)
            try holder.query("SELECT pg_advisory_lock($1)", [E2E.lockKey])
            let runners = try (0..<2).map { _ in
                try E2E.start(E2E.migrate(folder, "--targets", targets, "--parallel", "3", "--json"), environment: Self.environment)
            }
            // Both runners have a session on database 0, set up or about to be: neither can take its lock while the
            // test holds it.
            let deadline = Date().addingTimeInterval(60)
            while try holder.count("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND application_name = 'migrator'") < 2,
                  Date() < deadline {
                Thread.sleep(forTimeInterval: 0.02)
            }
            #expect(try Self.history(holder) == [], "a runner applied while the test held the target's lock")
            try holder.query("SELECT pg_advisory_unlock($1)", [E2E.lockKey])
            let runs = runners.map { E2E.finish($0, limit: 120) }
            var states: [String: [String]] = [:]
            for run in runs {
                #expect(run.exitCode == 0, run.transcript)
                for line in try Self.lines(run.stdout).targets { states[line.target ?? "", default: []].append(line.state ?? "") }
            }
            for index in 0..<3 {
                #expect(states[try fleet.label(index)]?.sorted() == ["applied", "upToDate"], "database \(index): \(states)")
                let connection = try fleet.connect(index)
                #expect(try connection.count("SELECT count(*) FROM migrator.history") == 2)
            }
        }
    }

    @Test("schema per tenant: 50 schemas in one database, each with its tables, its own history and lock")
    func fiftyTenantSchemas() throws {
        try FleetDatabases.with(1) { fleet in
            let folder = try E2E.folder(Self.folder)
            let connection = try fleet.connect(0)
            let tenants = (0..<50).map { String(format: "tenant_%02d", $0) }
            for tenant in tenants { try connection.query("CREATE SCHEMA \(tenant)") }
            let path = NSTemporaryDirectory() + "tenants-\(UUID().uuidString).txt"
            try tenants.map { "\(try fleet.url(0)) schema=\($0)" }.joined(separator: "\n").write(toFile: path, atomically: true, encoding: .utf8)
            let run = try E2E.run(E2E.migrate(folder, "--targets", path, "--json"), environment: Self.environment, limit: 120)
            #expect(run.exitCode == 0, run.transcript)
            let (lines, summary) = try Self.lines(run.stdout)
            #expect(summary.summary.applied == 50, run.transcript)
            #expect(Set(lines.compactMap(\.target)) == Set(try tenants.map { try fleet.label(0) + "#" + $0 }))
            for tenant in tenants {
                #expect(try connection.tableExists("\(tenant).widgets"), "\(tenant)")
                #expect(try Self.history(connection, schema: "\(tenant)_migrator") == [1, 2], "\(tenant)")
            }
            #expect(try !connection.tableExists("public.widgets"), "a tenant's migration went to public")
            #expect(try !connection.tableExists("migrator.history"), "the database-wide history was used for a tenant")
            let keys = try connection.count("SELECT count(DISTINCT nspname) FROM pg_namespace WHERE nspname LIKE 'tenant\\_%\\_migrator'")
            #expect(keys == 50)

            let again = try E2E.run(E2E.migrate(folder, "--targets", path), environment: Self.environment, limit: 120)
            #expect(again.exitCode == 0 && again.stdout.contains("0 applied, 50 up to date"), again.transcript)

            // A tenant listed whose schema does not exist is refused, not migrated into public.
            try "\(try fleet.url(0)) schema=tenant_missing\n".write(toFile: path, atomically: true, encoding: .utf8)
            let missing = try E2E.run(E2E.migrate(folder, "--targets", path), environment: Self.environment)
            #expect(missing.exitCode == 2, missing.transcript)
            #expect(missing.stderr.contains("the tenant schema \"tenant_missing\" does not exist"), missing.transcript)
            #expect(try !connection.tableExists("public.widgets"))
        }
    }

    @Test("a wrong password (from .pgpass) fails that target with exit 4, a conflicting table another with 1: exit 7, no password piece anywhere")
    func wrongPasswordAndMixedFailures() throws {
        try FleetDatabases.with(3) { fleet in
            let folder = try E2E.folder(Self.folder)
            let admin = try TestDatabase.adminConnection()
            let role = "mt_fleet_role_" + UUID().uuidString.prefix(6).lowercased()
            let rightPassword = "right-" + UUID().uuidString
            let wrongPassword = "wrong-" + UUID().uuidString
            // The role name is [a-z0-9_], the password [a-z0-9-]: the test's own constants.
            try admin.query("CREATE ROLE \(role) LOGIN PASSWORD '\(rightPassword)'")
            defer { _ = try? admin.query("DROP ROLE IF EXISTS \(role)") }
            let server = try Server.components
            let passfile = NSTemporaryDirectory() + "pgpass-\(UUID().uuidString)"
            try "*:*:*:\(role):\(wrongPassword)\n".write(toFile: passfile, atomically: true, encoding: .utf8)
            try FileManager.default.setAttributes([.posixPermissions: 0o600], ofItemAtPath: passfile)
            try fleet.connect(2).query("CREATE TABLE widgets (other integer)")
            let line0 = "host=\(server.host ?? "127.0.0.1") port=\(server.port ?? 5432) dbname=\(fleet.names[0]) user=\(role)\n"
            let targets = try fleet.targetsFile(1..<3, extra: line0)
            var environment = Self.environment
            environment["PGPASSFILE"] = passfile
            let secrets = [wrongPassword, rightPassword, String(wrongPassword.suffix(12)), String(rightPassword.suffix(12))]
            for json in [false, true] {
                let run = try E2E.run(E2E.migrate(folder, "--targets", targets) + (json ? ["--json"] : []), environment: environment, secrets: secrets)
                #expect(run.exitCode == 7, run.transcript)
                if json {
                    let (lines, summary) = try Self.lines(run.stdout)
                    #expect(Dictionary(uniqueKeysWithValues: summary.failedTargets.map { ($0.target, $0.exitCode) })
                        == ["\(role)@\(server.host ?? "127.0.0.1"):\(server.port ?? 5432)/\(fleet.names[0])": 4, try fleet.label(2): 1])
                    #expect(lines.count == 3)
                } else {
                    #expect(run.stdout.contains("exit 7: the targets failed with different codes (1, 4)"), run.transcript)
                    #expect(run.stdout.contains("password authentication failed"), run.transcript)
                }
            }

            // The same wrong password written in the file: refused without --allow-passwords-in-targets, quoting none of it.
            let url = "postgresql://\(role):\(wrongPassword)@\(server.host ?? "127.0.0.1"):\(server.port ?? 5432)/\(fleet.names[0])\n"
            // Line 3 is database 2, which the conflicting table has kept unmigrated so far.
            let withPassword = try fleet.targetsFile(2..<3, extra: url)
            let refused = try E2E.run(E2E.migrate(folder, "--targets", withPassword), environment: Self.environment, secrets: secrets)
            #expect(refused.exitCode == 2, refused.transcript)
            #expect(refused.stderr.contains("\(withPassword):4:1: error: this target holds a password"), refused.transcript)
            #expect(try Self.history(try fleet.connect(2)) == [], "nothing runs before the file is valid")
            #expect(!refused.stdout.contains("password authentication failed"), "a target was connected to")
            let allowed = try E2E.run(
                E2E.migrate(folder, "--targets", withPassword, "--allow-passwords-in-targets", "--json"), environment: Self.environment, secrets: secrets
            )
            #expect(allowed.exitCode == 7, allowed.transcript)
            let (_, allowedSummary) = try Self.lines(allowed.stdout)
            #expect(allowedSummary.failedTargets.map(\.exitCode).sorted() == [1, 4], allowed.transcript)
        }
    }

    @Test("--database-url given several times is a fleet run; fleet options without a fleet are a usage error")
    func severalDatabaseURLs() throws {
        try FleetDatabases.with(2) { fleet in
            let folder = try E2E.folder(Self.folder)
            let run = try E2E.run(E2E.migrate(folder, "--database-url", try fleet.url(0), "--database-url", try fleet.url(1)), environment: Self.environment)
            #expect(run.exitCode == 0, run.transcript)
            #expect(run.stdout.contains("migrate: 2 targets: 2 applied, 0 up to date, 0 failed, 0 skipped"), run.transcript)
            let status = try E2E.run(["status", "--migrations", folder.path, "--database-url", try fleet.url(0), "--database-url", try fleet.url(1)], environment: Self.environment)
            #expect(status.exitCode == 0 && status.stdout.contains("2 applied, 0 pending"), status.transcript)
            let lone = try E2E.run(E2E.migrate(folder, "--database-url", try fleet.url(0), "--parallel", "2"), environment: Self.environment)
            #expect(lone.exitCode == 64 && lone.stderr.contains("--parallel is for a fleet run"), lone.transcript)

            // MIGRATOR_TARGETS is a variable: one --database-url, an option, wins over it (a single-database run).
            let targets = try fleet.targetsFile(0..<2)
            var environment = Self.environment
            environment["MIGRATOR_TARGETS"] = targets
            let single = try E2E.run(E2E.migrate(folder, "--database-url", try fleet.url(0)), environment: environment)
            #expect(single.exitCode == 0 && single.stdout.contains("nothing to migrate"), single.transcript)
            let both = try E2E.run(E2E.migrate(folder, "--targets", targets, "--database-url", try fleet.url(0)), environment: Self.environment)
            #expect(both.exitCode == 64 && both.stderr.contains("--targets and --database-url contradict each other"), both.transcript)
            let exec = try E2E.run(E2E.migrate(folder, "--targets", targets, "--then-exec", "--", "true"), environment: Self.environment)
            #expect(exec.exitCode == 64 && exec.stderr.contains("a fleet run"), exec.transcript)
        }
    }
}
