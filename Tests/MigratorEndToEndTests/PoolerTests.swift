import Foundation
import Logging
import MigratorTestSupport
import Postgres
import Testing

/// migrator behind a real PgBouncer (Debian's package, started for each test). In transaction mode the server
/// connection under a client changes between transactions, so a session advisory lock excludes nobody, a session
/// setting reaches other clients and LISTEN hears nothing: migrator must refuse, change nothing, and say how to
/// give it a direct connection.
@Suite("migrator behind PgBouncer")
struct PoolerTests {
    static func count(_ connection: Connection, _ sql: String) throws -> Int {
        try connection.query(sql).first?.decode("n", as: Int.self) ?? -1
    }

    @Test("transaction mode: migrate (four at once), status, update-roles and serve refuse with the direct-URL hint, and nothing is left on the pool's connections")
    func transactionModeIsRefused() throws {
        let pooler = try PgBouncer(poolMode: .transaction)
        defer { pooler.stop() }
        try TestDatabase.with { db in
            let pooled = pooler.url(database: db.name)
            let folder = try MigrationFolder.shipped()
            // Four deploy steps at once, as in the report: each must refuse, none may apply anything.
            let runs = try (0..<4).map { _ in
                try E2E.start(E2E.args("migrate", folder), environment: ["DATABASE_URL": pooled])
            }.map { E2E.finish($0) }
            for run in runs {
                #expect(run.exitCode == 4, run.transcript)
                #expect(run.stderr.contains("goes through a connection pooler") && run.stderr.contains("nothing was changed"), run.transcript)
                #expect(run.stderr.contains("MIGRATOR_DIRECT_URL"), run.transcript)
            }
            for arguments in [E2E.args("status", folder), ["update-roles"], E2E.args("migrate", folder, "--json")] {
                let run = try E2E.run(arguments, environment: ["DATABASE_URL": pooled])
                #expect(run.exitCode == 4, run.transcript)
                #expect((run.stderr + run.stdout).contains("goes through a connection pooler"), run.transcript)
            }
            let serve = try E2E.run(
                ["serve", "--migrations", folder.path, "--http-address", "127.0.0.1:0", "--wait-timeout", "120s"],
                environment: ["DATABASE_URL": pooled], limit: 60
            )
            #expect(serve.exitCode == 4, serve.transcript)
            #expect(serve.stderr.contains("goes through a connection pooler"), serve.transcript)

            let direct = try db.connect()
            #expect(try Self.count(direct, "SELECT count(*) AS n FROM pg_namespace WHERE nspname = 'migrator'") == 0)
            // On this database: tests running beside this one hold advisory locks on theirs.
            #expect(try Self.count(direct, """
                SELECT count(*) AS n FROM pg_locks WHERE locktype = 'advisory'
                  AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
                """) == 0)
            // The pool's server connections (each client above used one) kept the server's defaults: no setting
            // of migrator's session reached them. Ask through the pooler, on as many connections as it holds.
            let sessions = try (0..<4).map { _ in
                try Connection(config: ConnectionConfig(connectionString: pooled), logger: Logger(label: "test"))
            }
            for session in sessions {
                let row = try #require(try session.query(
                    "SELECT current_setting('lock_timeout') AS lock_timeout, current_setting('client_connection_check_interval') AS check_interval"
                ).first)
                #expect(try row.decode("lock_timeout", as: String.self) == "0")
                #expect(try row.decode("check_interval", as: String.self) == "0")
            }
        }
    }

    @Test("MIGRATOR_DIRECT_URL gives migrator a direct connection while DATABASE_URL stays the app's pooled one; --database-url wins over both")
    func directURLWins() throws {
        let pooler = try PgBouncer(poolMode: .transaction)
        defer { pooler.stop() }
        try TestDatabase.with { db in
            let pooled = pooler.url(database: db.name)
            let folder = try MigrationFolder.shipped()
            let run = try E2E.run(E2E.args("migrate", folder), environment: ["DATABASE_URL": pooled, "MIGRATOR_DIRECT_URL": db.url])
            #expect(run.exitCode == 0, run.transcript)
            #expect(run.stdout.contains("5 migrations applied"), run.transcript)
            let option = try E2E.run(
                E2E.args("status", folder, "--database-url", pooled), environment: ["MIGRATOR_DIRECT_URL": db.url]
            )
            #expect(option.exitCode == 4 && option.stderr.contains("goes through a connection pooler"), option.transcript)
            // An empty MIGRATOR_DIRECT_URL counts as unset.
            let empty = try E2E.run(E2E.args("status", folder), environment: ["DATABASE_URL": db.url, "MIGRATOR_DIRECT_URL": ""])
            #expect(empty.exitCode == 0, empty.transcript)
        }
    }

    @Test("session mode: refused unless --allow-session-pooler (or MIGRATOR_ALLOW_SESSION_POOLER=1), which migrates and syncs")
    func sessionModeWhenAllowed() throws {
        let pooler = try PgBouncer(poolMode: .session)
        defer { pooler.stop() }
        try TestDatabase.with { db in
            let pooled = pooler.url(database: db.name)
            let folder = try MigrationFolder.shipped()
            let refused = try E2E.run(E2E.args("migrate", folder), environment: ["DATABASE_URL": pooled])
            #expect(refused.exitCode == 4 && refused.stderr.contains("--allow-session-pooler"), refused.transcript)
            let allowed = try E2E.run(E2E.args("migrate", folder, "--allow-session-pooler"), environment: ["DATABASE_URL": pooled])
            #expect(allowed.exitCode == 0, allowed.transcript)
            #expect(allowed.stdout.contains("5 migrations applied"), allowed.transcript)
            let fromEnvironment = try E2E.run(
                E2E.args("verify", folder), environment: ["DATABASE_URL": pooled, "MIGRATOR_ALLOW_SESSION_POOLER": "1"]
            )
            #expect(fromEnvironment.exitCode == 0, fromEnvironment.transcript)
            let direct = try db.connect()
            #expect(try Self.count(direct, "SELECT count(*) AS n FROM migrator.role_version") == 1)
        }
    }
}
