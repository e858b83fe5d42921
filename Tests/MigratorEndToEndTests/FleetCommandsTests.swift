import Foundation
import MigratorTestSupport
import Postgres
import Testing

/// One target's line of `--json` over a fleet, every field a script reads required (a missing one fails the decode).
struct FleetTargetJSON: Decodable {
    var target: String
    var origin: String
    var state: String
    var exitCode: Int32
    var summary: String
    var durationMs: Double
    var connectMs: Double
}

/// `status`, `verify` and `update-roles` over a fleet (FleetTests covers `migrate`): several databases and tenant
/// schemas, one target failing while the others succeed, `--json` per target.
@Suite("migrator end to end: status, verify and update-roles over a fleet", .serialized)
struct FleetCommandsTests {
    static func parse(_ run: Run) throws -> (targets: [String: FleetTargetJSON], end: FleetSummaryJSON) {
        let lines = run.stdout.split(separator: "\n").map(String.init)
        guard let last = lines.last else { throw TestSetupError("no output") }
        var targets: [String: FleetTargetJSON] = [:]
        for line in lines.dropLast() {
            let target = try decode(FleetTargetJSON.self, line)
            #expect(targets[target.target] == nil, "\(target.target) reported twice")
            targets[target.target] = target
        }
        return (targets, try decode(FleetSummaryJSON.self, last))
    }

    /// A target line for database `index` of `fleet` whose password (in the line, so the run needs
    /// --allow-passwords-in-targets) is wrong: that target fails with exit 4, the password must be printed nowhere.
    static func wrongPasswordLine(_ fleet: FleetDatabases, _ index: Int, password: String) throws -> String {
        let server = try Server.components
        return "postgresql://\(server.user ?? "postgres"):\(password)@\(server.host ?? "127.0.0.1"):\(server.port ?? 5432)/\(fleet.names[index])\n"
    }

    static func write(_ lines: [String]) throws -> String {
        let path = NSTemporaryDirectory() + "targets-\(UUID().uuidString).txt"
        try lines.map { $0.hasSuffix("\n") ? $0 : $0 + "\n" }.joined().write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    @Test("status --targets: databases and tenant schemas migrated, part way and not at all, read only; a target failing (exit 4) is named, no password printed; --json per target")
    func status() throws {
        try FleetDatabases.with(5) { fleet in
            let full = try E2E.folder(FleetTests.folder)
            let first = try E2E.folder(Array(FleetTests.folder.prefix(1)))
            let tenantDatabase = try fleet.connect(0)
            for tenant in ["tenant_a", "tenant_b"] { try tenantDatabase.query("CREATE SCHEMA \(tenant)") }
            // 0 and 1 fully migrated, 2 to version 1, 3 untouched; tenant_a migrated, tenant_b untouched.
            let setUp = try Self.write([try fleet.url(0), try fleet.url(1), "\(try fleet.url(0)) schema=tenant_a"])
            #expect(try E2E.run(E2E.migrate(full, "--targets", setUp), environment: FleetTests.environment).exitCode == 0)
            #expect(try E2E.run(E2E.migrate(first, "--database-url", try fleet.url(2)), environment: FleetTests.environment).exitCode == 0)

            let wrong = "wrong-" + UUID().uuidString
            let targets = try Self.write([
                try fleet.url(0), try fleet.url(1), try fleet.url(2), try fleet.url(3), try Self.wrongPasswordLine(fleet, 4, password: wrong),
                "\(try fleet.url(0)) schema=tenant_a", "\(try fleet.url(0)) schema=tenant_b",
            ])
            let base = ["status", "--migrations", full.path, "--targets", targets, "--allow-passwords-in-targets"]
            let secrets = [wrong, String(wrong.suffix(12))]
            let human = try E2E.run(base, environment: FleetTests.environment, secrets: secrets)
            #expect(human.exitCode == 4, human.transcript)
            #expect(human.stdout.contains("status: 7 targets: 0 up to date, 6 not up to date, 1 failed, 0 skipped"), human.transcript)
            #expect(human.stdout.contains("failed: \(try fleet.label(4)) (exit 4)"), human.transcript)
            #expect(human.stdout.contains("failed     \(try fleet.label(4)): exit 4: "), human.transcript)
            #expect(human.stderr.contains("\(try fleet.label(4)): ") && human.stderr.contains("password authentication failed"), human.transcript)
            #expect(human.stdout.contains("pending    \(try fleet.label(2)): 1 applied, 1 pending"), human.transcript)

            let run = try E2E.run(base + ["--json"], environment: FleetTests.environment, secrets: secrets)
            #expect(run.exitCode == 4, run.transcript)
            let (lines, end) = try Self.parse(run)
            let tenantA = try fleet.label(0) + "#tenant_a"
            let tenantB = try fleet.label(0) + "#tenant_b"
            #expect(Set(lines.keys) == Set(try (0..<5).map(fleet.label) + [tenantA, tenantB]), run.transcript)
            // This folder makes no role tables, and status also reads the role version (none stored here): every
            // target it can read is "pending"; its migrations' part is in its summary.
            #expect(lines.mapValues(\.state) == [
                try fleet.label(0): "pending", try fleet.label(1): "pending", try fleet.label(2): "pending",
                try fleet.label(3): "pending", try fleet.label(4): "failed", tenantA: "pending", tenantB: "pending",
            ], run.transcript)
            #expect(lines[try fleet.label(0)]?.summary.hasPrefix("2 applied, 0 pending") == true, run.transcript)
            #expect(lines[tenantA]?.summary.hasPrefix("2 applied, 0 pending") == true, run.transcript)
            #expect(lines[tenantA]?.summary.contains("role version stored: none") == true, run.transcript)
            #expect(lines[try fleet.label(4)]?.exitCode == 4)
            #expect(lines.filter { $0.key != (try? fleet.label(4)) }.allSatisfy { $0.value.exitCode == 0 })
            #expect(lines[try fleet.label(2)]?.summary.hasPrefix("1 applied, 1 pending") == true, run.transcript)
            #expect(lines[try fleet.label(3)]?.summary.hasPrefix("0 applied, 2 pending") == true, run.transcript)
            #expect(lines[tenantB]?.summary.hasPrefix("0 applied, 2 pending") == true, run.transcript)
            #expect(lines[try fleet.label(4)]?.summary.contains("password authentication failed") == true, run.transcript)
            #expect(lines[try fleet.label(4)]?.origin == "\(targets):5")
            #expect(lines[tenantB]?.origin == "\(targets):7")
            #expect(end.summary.targets == 7 && end.summary.upToDate == 0 && end.summary.pending == 6 && end.summary.failed == 1, run.transcript)
            #expect(!end.ok && end.exitCode == 4)
            #expect(end.failedTargets.map(\.target) == [try fleet.label(4)] && end.failedTargets.map(\.exitCode) == [4])

            // status only reads: nothing was applied by it anywhere.
            #expect(try FleetTests.history(try fleet.connect(2)) == [1])
            #expect(try FleetTests.history(try fleet.connect(3)) == [])
            #expect(try !tenantDatabase.tableExists("tenant_b.widgets"))

            // A missing tenant schema beside the wrong password: exit 2 and 4, so 7.
            let mixed = try Self.write([try fleet.url(0), try Self.wrongPasswordLine(fleet, 4, password: wrong), "\(try fleet.url(0)) schema=tenant_missing"])
            let both = try E2E.run(["status", "--migrations", full.path, "--targets", mixed, "--allow-passwords-in-targets", "--json"], environment: FleetTests.environment, secrets: secrets)
            #expect(both.exitCode == 7, both.transcript)
            let (_, bothEnd) = try Self.parse(both)
            #expect(Dictionary(uniqueKeysWithValues: bothEnd.failedTargets.map { ($0.target, $0.exitCode) })
                == [try fleet.label(4): 4, try fleet.label(0) + "#tenant_missing": 2], both.transcript)
            #expect(both.stderr.contains("the tenant schema \"tenant_missing\" does not exist"), both.transcript)
        }
    }

    @Test("verify --targets: databases and tenant schemas in order pass; one with a changed history row fails (exit 3, named), beside a wrong password exit 7; --json per target")
    func verify() throws {
        try FleetDatabases.with(4) { fleet in
            // The shipped migrations with the role sync: verify also wants the role version current.
            let folder = try MigrationFolder.shipped()
            let tenantDatabase = try fleet.connect(3)
            for tenant in ["tenant_a", "tenant_b"] { try tenantDatabase.query("CREATE SCHEMA \(tenant)") }
            let lines = [
                try fleet.url(0), try fleet.url(1), try fleet.url(2),
                "\(try fleet.url(3)) schema=tenant_a", "\(try fleet.url(3)) schema=tenant_b",
            ]
            let targets = try Self.write(lines)
            let migrated = try E2E.run(["migrate", "--migrations", folder.path, "--targets", targets], environment: FleetTests.environment, limit: 120)
            #expect(migrated.exitCode == 0, migrated.transcript)
            #expect(try tenantDatabase.tableExists("tenant_b.auth_group") && tenantDatabase.tableExists("tenant_b_migrator.history"))

            let clean = try E2E.run(["verify", "--migrations", folder.path, "--targets", targets, "--json"], environment: FleetTests.environment)
            #expect(clean.exitCode == 0, clean.transcript)
            let (cleanLines, cleanEnd) = try Self.parse(clean)
            #expect(cleanLines.count == 5 && cleanLines.values.allSatisfy { $0.state == "upToDate" && $0.exitCode == 0 }, clean.transcript)
            #expect(cleanEnd.ok && cleanEnd.exitCode == 0 && cleanEnd.summary.upToDate == 5)

            // Drift in database 1 and in tenant_b: a history row whose checksum is not the file's.
            try fleet.connect(1).query("UPDATE migrator.history SET checksum = $1 WHERE version = $2", ["0000", 3])
            try tenantDatabase.query("UPDATE tenant_b_migrator.history SET checksum = $1 WHERE version = $2", ["0000", 2])
            let tenantB = try fleet.label(3) + "#tenant_b"
            let drifted = try E2E.run(["verify", "--migrations", folder.path, "--targets", targets], environment: FleetTests.environment)
            #expect(drifted.exitCode == 3, drifted.transcript)
            #expect(drifted.stdout.contains("verify: 5 targets: 3 up to date, 2 failed, 0 skipped"), drifted.transcript)
            #expect(drifted.stdout.contains("failed: \(try fleet.label(1)) (exit 3), \(tenantB) (exit 3)"), drifted.transcript)
            #expect(drifted.stdout.contains("failed     \(try fleet.label(1)): exit 3: verify failed: "), drifted.transcript)
            #expect(drifted.stdout.contains("up to date \(try fleet.label(0)): "), drifted.transcript)

            let wrong = "wrong-" + UUID().uuidString
            // Database 2 by a wrong password instead of the right one (the same target twice is refused).
            let mixedLines = [try fleet.url(0), try fleet.url(1), try Self.wrongPasswordLine(fleet, 2, password: wrong)] + lines.suffix(2)
            let mixed = try Self.write(mixedLines)
            let secrets = [wrong, String(wrong.suffix(12))]
            let run = try E2E.run(
                ["verify", "--migrations", folder.path, "--targets", mixed, "--allow-passwords-in-targets", "--json"], environment: FleetTests.environment, secrets: secrets
            )
            #expect(run.exitCode == 7, run.transcript)
            let (targetLines, end) = try Self.parse(run)
            #expect(targetLines.mapValues(\.state) == [
                try fleet.label(0): "upToDate", try fleet.label(1): "failed", try fleet.label(2): "failed",
                try fleet.label(3) + "#tenant_a": "upToDate", tenantB: "failed",
            ], run.transcript)
            #expect(try targetLines[try fleet.label(1)]?.exitCode == 3 && targetLines[tenantB]?.exitCode == 3 && targetLines[try fleet.label(2)]?.exitCode == 4)
            #expect(targetLines[try fleet.label(1)]?.summary.contains("1 changed") == true, run.transcript)
            #expect(Dictionary(uniqueKeysWithValues: end.failedTargets.map { ($0.target, $0.exitCode) })
                == [try fleet.label(1): 3, try fleet.label(2): 4, tenantB: 3], run.transcript)
            #expect(!end.ok && end.exitCode == 7 && end.summary.failed == 3 && end.summary.upToDate == 2)
            let human = try E2E.run(
                ["verify", "--migrations", folder.path, "--targets", mixed, "--allow-passwords-in-targets"], environment: FleetTests.environment, secrets: secrets
            )
            #expect(human.exitCode == 7, human.transcript)
            #expect(human.stdout.contains("exit 7: the targets failed with different codes (3, 4)"), human.transcript)
            #expect(human.stderr.contains("\(try fleet.label(2)): ") && human.stderr.contains("password authentication failed"), human.transcript)
        }
    }

    @Test("update-roles --targets: databases and tenant schemas synced, each its own groups; a target without the app's tables fails (exit 2, named), beside a wrong password exit 7; --json per target")
    func updateRoles() throws {
        try FleetDatabases.with(4) { fleet in
            let folder = try MigrationFolder.shipped()
            let tenantDatabase = try fleet.connect(2)
            for tenant in ["tenant_a", "tenant_b"] { try tenantDatabase.query("CREATE SCHEMA \(tenant)") }
            let synced = [try fleet.url(0), try fleet.url(1), "\(try fleet.url(2)) schema=tenant_a", "\(try fleet.url(2)) schema=tenant_b"]
            let setUp = try Self.write(synced)
            let migrated = try E2E.run(E2E.migrate(folder, "--targets", setUp), environment: FleetTests.environment, limit: 120)
            #expect(migrated.exitCode == 0, migrated.transcript)
            // Different projects in each, so each target's groups are its own: 2, 3, 1 and 4 projects.
            let projects = [0: 2, 1: 3]
            for (index, count) in projects {
                try fleet.connect(index).query("INSERT INTO main_project (name) SELECT 'p' || i FROM generate_series(1, $1::int) AS i", [count])
            }
            try tenantDatabase.query("INSERT INTO tenant_a.main_project (name) SELECT 'p' || i FROM generate_series(1, $1::int) AS i", [1])
            try tenantDatabase.query("INSERT INTO tenant_b.main_project (name) SELECT 'p' || i FROM generate_series(1, $1::int) AS i", [4])

            // Database 3 has none of the app's tables: the sync refuses it and changes nothing.
            let targets = try Self.write(synced + [try fleet.url(3)])
            let tenantA = try fleet.label(2) + "#tenant_a"
            let tenantB = try fleet.label(2) + "#tenant_b"
            let first = try E2E.run(["update-roles", "--migrations", folder.path, "--targets", targets], environment: FleetTests.environment, limit: 120)
            #expect(first.exitCode == 2, first.transcript)
            #expect(first.stdout.contains("update-roles: 5 targets: 4 applied, 0 up to date, 1 failed, 0 skipped"), first.transcript)
            #expect(first.stdout.contains("failed: \(try fleet.label(3)) (exit 2)"), first.transcript)
            #expect(first.stderr.contains("\(try fleet.label(3)): ") && first.stderr.contains("there is no auth_group table"), first.transcript)
            #expect(first.stdout.contains("applied    \(try fleet.label(1)): synced 3 projects"), first.transcript)
            #expect(first.stdout.contains("applied    \(tenantB): synced 4 projects"), first.transcript)

            // Each target's groups are its own projects' (the catalogue's roles times the projects of that target).
            let perProject = try fleet.connect(0).count("SELECT count(*) FROM migrator.project_role_group") / 2
            #expect(perProject > 0)
            #expect(try fleet.connect(1).count("SELECT count(*) FROM migrator.project_role_group") == 3 * perProject)
            #expect(try tenantDatabase.count("SELECT count(*) FROM tenant_a_migrator.project_role_group") == 1 * perProject)
            #expect(try tenantDatabase.count("SELECT count(*) FROM tenant_b_migrator.project_role_group") == 4 * perProject)
            #expect(try tenantDatabase.count(
                "SELECT count(*) FROM tenant_b.auth_group g JOIN tenant_b_migrator.project_role_group l ON l.group_id = g.id"
            ) == 4 * perProject)
            #expect(try !tenantDatabase.tableExists("migrator.project_role_group"), "a tenant's sync used the database-wide schema")
            // The refused target: no app table made for it (migrator's own objects are its session's set-up, as for
            // one database), and no link row.
            #expect(try !fleet.connect(3).tableExists("public.auth_group"))
            #expect(try fleet.connect(3).count("SELECT count(*) FROM migrator.project_role_group") == 0)

            // --no-force: the role version is current everywhere it was synced.
            let again = try E2E.run(["update-roles", "--migrations", folder.path, "--targets", targets, "--no-force", "--json"], environment: FleetTests.environment, limit: 120)
            #expect(again.exitCode == 2, again.transcript)
            let (lines, end) = try Self.parse(again)
            #expect(lines.mapValues(\.state) == [
                try fleet.label(0): "upToDate", try fleet.label(1): "upToDate", tenantA: "upToDate", tenantB: "upToDate",
                try fleet.label(3): "failed",
            ], again.transcript)
            #expect(try lines[try fleet.label(3)]?.exitCode == 2 && lines[try fleet.label(3)]?.origin == "\(targets):5")
            #expect(lines[tenantA]?.summary.contains("role catalogue unchanged") == true, again.transcript)
            #expect(!end.ok && end.exitCode == 2 && end.summary.upToDate == 4 && end.summary.failed == 1)
            #expect(end.failedTargets.map(\.target) == [try fleet.label(3)])

            // The default --force reconciles, finds nothing to change on a target at this version: up to date there
            // too; a project added to one target makes that one applied.
            try fleet.connect(1).query("INSERT INTO main_project (name) VALUES ($1)", ["added"])
            let forced = try E2E.run(["update-roles", "--migrations", folder.path, "--targets", targets, "--json"], environment: FleetTests.environment, limit: 120)
            #expect(forced.exitCode == 2, forced.transcript)
            let (forcedLines, forcedEnd) = try Self.parse(forced)
            #expect(forcedLines.mapValues(\.state) == [
                try fleet.label(0): "upToDate", try fleet.label(1): "applied", tenantA: "upToDate", tenantB: "upToDate",
                try fleet.label(3): "failed",
            ], forced.transcript)
            #expect(forcedEnd.summary.applied == 1 && forcedEnd.summary.upToDate == 3)
            #expect(try fleet.connect(1).count("SELECT count(*) FROM migrator.project_role_group") == 4 * perProject)

            // A wrong password beside it: 2 and 4, so 7; the right targets still synced.
            let wrong = "wrong-" + UUID().uuidString
            let mixed = try Self.write([try fleet.url(0), try fleet.url(3), try Self.wrongPasswordLine(fleet, 1, password: wrong)])
            let secrets = [wrong, String(wrong.suffix(12))]
            let run = try E2E.run(
                ["update-roles", "--migrations", folder.path, "--targets", mixed, "--allow-passwords-in-targets", "--json"], environment: FleetTests.environment,
                secrets: secrets, limit: 120
            )
            #expect(run.exitCode == 7, run.transcript)
            let (mixedLines, mixedEnd) = try Self.parse(run)
            #expect(try mixedLines[try fleet.label(0)]?.state == "upToDate" && mixedLines[try fleet.label(0)]?.exitCode == 0, run.transcript)
            #expect(Dictionary(uniqueKeysWithValues: mixedEnd.failedTargets.map { ($0.target, $0.exitCode) })
                == [try fleet.label(3): 2, try fleet.label(1): 4], run.transcript)
            #expect(mixedLines[try fleet.label(1)]?.summary.contains("password authentication failed") == true, run.transcript)
        }
    }
}
