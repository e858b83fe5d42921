import Postgres
import SystemSupport

/// The session's set-up, in one round trip: the client encoding (UTF-8, what migrator's files and strings are, on a
/// database of any encoding), its timeouts and keepalives, whether the server takes writes, a first
/// try for the lock, and the marker of migrator's own objects.
///
/// The server-side keepalives let the server notice a runner whose machine vanished and free its lock within about
/// 25 s (libpq's own keepalives cover the other direction). `client_connection_check_interval` (PostgreSQL 14 and
/// later; left out on older servers) makes the server check the socket every second while a statement runs: without
/// it, a runner killed during a long statement keeps its lock, and its transaction open, until that statement ends.
struct SessionSetUp {
    /// Whether the first try got the lock (only a `.migrate` session tries).
    var locked: Bool?
    /// Whether every marker of migrator's own objects the caller asked for exists (see ``OwnObjects``): a run with
    /// nothing to install spends no round trip on them.
    var ownObjectsCurrent = false

    /// The settings migrator relies on, declared once for the set-up and for ``restoreScript(options:serverVersion:)``.
    /// Their values are text this binary made (numbers it formatted), so they are written as literals.
    /// `client_connection_check_interval` exists from PostgreSQL 14; the server's version is known from the
    /// connection, so no query of `pg_settings` (which builds every setting's row) is needed to find out.
    static func settings(options: MigratorOptions, serverVersion: Int) -> [(name: String, value: String)] {
        var settings = [
            ("client_encoding", "UTF8"),
            ("lock_timeout", milliseconds(options.ddlLockTimeout)),
            ("statement_timeout", options.statementTimeout.map(milliseconds) ?? "0"),
            ("idle_in_transaction_session_timeout", "0"),
            ("tcp_keepalives_idle", "10"),
            ("tcp_keepalives_interval", "5"),
            ("tcp_keepalives_count", "3"),
        ]
        // A database's or role's idle_session_timeout (PostgreSQL 14 and later) would end serve's listening session
        // and a runner waiting for the lock between its tries; transaction_timeout (17 and later) a long migration.
        if serverVersion >= 140000 {
            settings.append(("client_connection_check_interval", "1s"))
            settings.append(("idle_session_timeout", "0"))
        }
        if serverVersion >= 170000 { settings.append(("transaction_timeout", "0")) }
        // A tenant's schema first, then public (where extensions usually live). The name passed SQLIdentifier's
        // check (letters, digits, underscores), so quoting it makes a literal that needs no escaping.
        if let schema = options.searchPath { settings.append(("search_path", SQLIdentifier.quote(schema) + ", public")) }
        return settings
    }

    /// `set_config(...)` of every setting, as select-list items.
    static func setConfig(options: MigratorOptions, serverVersion: Int) -> String {
        settings(options: options, serverVersion: serverVersion)
            .map { "set_config('\($0.name)', '\($0.value)', false) AS \($0.name)" }
            .joined(separator: ",\n       ")
    }

    /// The set-up, in one statement. `$3` is the server process libpq was told of at connection; a pooler (PgBouncer)
    /// tells the client a key of its own, so when `pg_backend_pid()` differs the session is a pooler's, and unless
    /// the user accepts one in session mode (`$4`) nothing is set and no lock taken: in transaction mode a setting or
    /// a session lock would stay on a server connection other clients of the pool get next.
    /// `$6` onwards: the markers of migrator's own objects (``OwnObjects/markerSignatures(_:schema:)``), each
    /// checked through the server's catalogue cache.
    static func sql(options: MigratorOptions, serverVersion: Int, markers: Int) -> String {
        let settings = settings(options: options, serverVersion: serverVersion)
            .map { "CASE WHEN ours THEN set_config('\($0.name)', '\($0.value)', false) END AS \($0.name)" }
            .joined(separator: ",\n       ")
        return """
        WITH session AS (SELECT pg_backend_pid() AS server_pid, pg_backend_pid() = $3::integer OR $4::boolean AS ours)
        SELECT \(settings),
               server_pid,
               pg_is_in_recovery() AS in_recovery,
               current_setting('transaction_read_only') AS read_only,
               CASE WHEN ours AND $1::boolean AND NOT pg_is_in_recovery()
                    THEN pg_try_advisory_lock($2::bigint) ELSE false END AS locked,
               \(ownObjectsCurrentSQL(markers: markers)),
               $5::text IS NULL OR to_regnamespace($5::text) IS NOT NULL AS search_schema_exists
        FROM session
        """
    }

    private static func ownObjectsCurrentSQL(markers: Int) -> String {
        guard markers > 0 else { return "true AS own_objects_current" }
        return (0..<markers).map { "to_regprocedure($\(6 + $0)::text) IS NOT NULL" }.joined(separator: " AND ")
            + " AS own_objects_current"
    }

    static func run(
        on connection: Connection, options: MigratorOptions, purpose: MigrationSession.Purpose, markers: [String]
    ) throws(MigrationError) -> SessionSetUp {
        let tryLock = purpose == .migrate
        let row: Row
        let inRecovery: Bool
        let readOnly: Bool
        var facts = SessionSetUp()
        do {
            let result = try runCancellable(on: connection) { () throws(PostgresError) -> QueryResult in
                try connection.query(sql(options: options, serverVersion: connection.serverVersion, markers: markers.count), [
                    tryLock, options.schema.lockKey, connection.backendPID,
                    connection.allowsSessionPooler, options.searchPath,
                ] + markers.map { $0 as any PostgresBindable })
            }.from("the session set-up")
            guard let first = result.first else {
                throw MigrationError(code: .databaseError, message: "could not set up the session: the server returned no row")
            }
            row = first
            let serverPID = try row.decode("server_pid", as: Int32.self)
            if serverPID != connection.backendPID, !connection.allowsSessionPooler {
                throw MigrationError(
                    code: .connectionFailed,
                    message: "\(connection.safeDescription) goes through a connection pooler (the server process that "
                        + "answers is not the one the connection was opened with): migrator needs a session of its own "
                        + "for its lock, its settings and LISTEN, which a pooler in transaction mode shares between "
                        + "clients; nothing was changed",
                    hint: "give migrator a direct connection to the server in MIGRATOR_DIRECT_URL (or --database-url), and "
                        + "keep the pooled DATABASE_URL for the app; with a pooler in session mode, "
                        + "--allow-session-pooler (MIGRATOR_ALLOW_SESSION_POOLER=1)"
                )
            }
            inRecovery = try row.decode("in_recovery", as: Bool.self)
            readOnly = try row.decode("read_only", as: Bool.self)
            facts.locked = tryLock ? try row.decode("locked", as: Bool.self) : nil
            facts.ownObjectsCurrent = try row.decode("own_objects_current", as: Bool.self)
            if let schema = options.searchPath, try !row.decode("search_schema_exists", as: Bool.self) {
                // Without it the migrations would create their tables in public, the next schema on the path.
                throw MigrationError(
                    code: .invalidInput,
                    message: "the tenant schema \(SQLIdentifier.quote(schema)) does not exist on \(connection.safeDescription); nothing was changed",
                    hint: "create the tenant's schema first (CREATE SCHEMA), or correct schema= in the targets file"
                )
            }
        } catch let error as MigrationError {
            throw error
        } catch {
            throw MigrationError(code: .databaseError, message: "could not set up the session: \(error)")
        }
        guard purpose.writes else { return facts }
        if inRecovery {
            throw MigrationError(
                code: .readOnly,
                message: "\(connection.safeDescription) is a read-only standby (in recovery), so it cannot be migrated",
                hint: "point DATABASE_URL at the primary; with several hosts, add target_session_attrs=read-write"
            )
        }
        if readOnly {
            throw MigrationError(
                code: .readOnly,
                message: "the session on \(connection.safeDescription) is read-only "
                    + "(default_transaction_read_only is on for the server, the database or the role), so it "
                    + "cannot be migrated",
                hint: "connect as a role that may write, or turn default_transaction_read_only off for it"
            )
        }
        return facts
    }

    /// Runs the set-up; when a database's or role's `statement_timeout` is so low that the set-up itself is
    /// cancelled (it is what turns that timeout off for migrator's session), turns it off on its own first, with
    /// the cheapest statement there is, and runs the set-up again. Costs nothing when no such setting exists.
    static func runCancellable(on connection: Connection, _ setUp: () throws(PostgresError) -> QueryResult) throws(PostgresError) -> QueryResult {
        do {
            return try setUp()
        } catch where error.sqlState == SQLState.queryCanceled {
            var attempts = 0
            while true {
                attempts += 1
                do {
                    try connection.execute(script: "SET statement_timeout = 0")
                    break
                } catch where error.sqlState == SQLState.queryCanceled && attempts < 5 {
                    continue
                }
            }
            return try setUp()
        }
    }

    /// Puts the session back as the set-up left it, before each migration and each hook: a migration's `SET ROLE`,
    /// `SET SESSION AUTHORIZATION`, `SET search_path`, `SET statement_timeout`, `SET client_encoding` or
    /// `SET SESSION CHARACTERISTICS` must not change what later files and the role sync do. `RESET ALL` restores
    /// every setting to the session's default (the server's, the database's and the role's settings, the connection's
    /// start-up parameters; it leaves the role and the session authorization, reset on their own), then the
    /// set-up's own settings are applied again.
    ///
    /// One simple-query script (one round trip, no parameters): the same settings as the set-up's.
    ///
    /// The server times each statement of a script with the `statement_timeout` in force when it starts. A
    /// migration may have set a tiny one, and `RESET ALL` brings back the database's or role's (1 ms cancels the
    /// settings' SELECT on a fresh backend): so the statement after each of those is the cheapest there is, a `SET`
    /// that turns the timeout off, before anything that takes longer runs.
    static func restoreScript(options: MigratorOptions, serverVersion: Int) -> String {
        "SET statement_timeout = 0; RESET SESSION AUTHORIZATION; RESET ROLE; RESET ALL; SET statement_timeout = 0;\nSELECT "
            + setConfig(options: options, serverVersion: serverVersion)
    }

    /// A duration as a setting's value: whole milliseconds, `0` for none.
    static func milliseconds(_ duration: Duration) -> String {
        // A positive duration under a millisecond is 1ms, not 0 (which the server reads as "no timeout").
        guard duration > .zero else { return "0ms" }
        return "\(max(1, Int(duration.milliseconds.rounded())))ms"
    }
}
