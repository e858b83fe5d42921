import Logging
import Postgres

/// The engine's own table, `<schema>.history`: one row per applied (or part-applied) migration.
///
/// Every statement names it schema-qualified, so a migration that changes `search_path` cannot make the engine lose
/// it half way through a run. Releases before the own schema kept it as `public.migrator_history`; the first step of
/// the engine's component moves it (see ``component``).
public struct HistoryStore: Sendable {
    /// Where earlier releases kept the history.
    public static let legacyTable = "public.migrator_history"

    public let schema: OwnSchema

    public init(schema: OwnSchema) {
        self.schema = schema
    }

    public var table: String { schema.qualified("history") }

    static func createSQL(_ table: String) -> String {
        """
        CREATE TABLE IF NOT EXISTS \(table) (
            version bigint PRIMARY KEY CHECK (version > 0),
            name text NOT NULL,
            checksum text NOT NULL,
            transactional boolean NOT NULL,
            state text NOT NULL CHECK (state IN ('applied', 'failed')),
            applied_at timestamptz NOT NULL DEFAULT now(),
            applied_by text NOT NULL DEFAULT current_user,
            duration_ms double precision NOT NULL DEFAULT 0,
            statements_done integer,
            statement_checksums text[],
            failed_statement integer,
            error text,
            superseded text
        )
        """
    }

    /// The engine's part of migrator's own objects. Step 1 creates the history table, or moves an earlier release's
    /// `public.migrator_history` into the schema with every row (a table moved by ALTER … SET SCHEMA keeps its
    /// rows, indexes and privileges).
    public static let component = OwnObjectsComponent(name: "engine", steps: [
        .init(version: 1, summary: "migration history") { connection, schema, logger in
            let history = HistoryStore(schema: schema)
            try OwnObjects.adoptLegacyTable(connection, from: "migrator_history", to: "history", schema: schema, logger: logger)
            try connection.query(createSQL(history.table))
            try connection.query("ALTER TABLE \(history.table) ADD COLUMN IF NOT EXISTS superseded text")
        },
    ])

    func selectSQL(_ table: String, superseded: Bool) -> String {
        """
        SELECT version, name, checksum, transactional, state,
               to_char(applied_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"') AS applied_at,
               applied_by, duration_ms, statements_done, statement_checksums, failed_statement, error,
               \(superseded ? "superseded" : "NULL::text AS superseded")
        FROM \(table) ORDER BY version
        """
    }

    /// Where the rows were read from.
    public enum Location: Sendable, Equatable {
        case current
        /// An earlier release's `public.migrator_history`, not upgraded yet (read-only callers only).
        case legacy
    }

    /// Reads every row. Returns nil when there is no history yet (a database never migrated). With
    /// `legacyFallback`, a database that an earlier release migrated and no run of this one has upgraded yet is read
    /// from its old table.
    /// - Throws: a malformed row as a ``PostgresError`` that names the table and column.
    func read(_ connection: Connection, legacyFallback: Bool) throws(PostgresError) -> (records: [HistoryRecord], location: Location)? {
        do {
            return (try decode(connection.query(selectSQL(table, superseded: true)), table: table), .current)
        } catch where error.sqlState == SQLState.undefinedTable || error.sqlState == SQLState.invalidSchemaName {
            guard legacyFallback else { return nil }
        }
        do {
            return (try decode(connection.query(selectSQL(Self.legacyTable, superseded: false)), table: Self.legacyTable), .legacy)
        } catch where error.sqlState == SQLState.undefinedTable {
            return nil
        }
    }

    private func decode(_ result: QueryResult, table: String) throws(PostgresError) -> [HistoryRecord] {
        var records: [HistoryRecord] = []
        for row in result.from(table).rows {
            do throws(RowDecodingError) {
                guard let state = HistoryRecord.State(rawValue: try row.decode("state", as: String.self)) else {
                    throw RowDecodingError(
                        source: table, column: "state", problem: "holds '\(try row.decode("state", as: String.self))', not applied or failed"
                    )
                }
                records.append(HistoryRecord(
                    version: try row.decode("version"), name: try row.decode("name"), checksum: try row.decode("checksum"),
                    transactional: try row.decode("transactional"), state: state,
                    appliedAt: try row.decode("applied_at"), appliedBy: try row.decode("applied_by"),
                    durationMs: try row.decode("duration_ms"),
                    statementsDone: try row.decodeIfPresent("statements_done"),
                    statementChecksums: try row.decodeIfPresent("statement_checksums", as: [String?].self)?.compactMap { $0 },
                    failedStatement: try row.decodeIfPresent("failed_statement"),
                    error: try row.decodeIfPresent("error"),
                    superseded: try row.decodeIfPresent("superseded")
                ))
            } catch {
                let version = ((try? row.text("version")) ?? nil) ?? "NULL"
                throw PostgresError(
                    code: .clientError,
                    message: "\(error) (the row of version \(version)); fix or delete that row by hand"
                )
            }
        }
        return records
    }

    /// Whether this session still holds the migration lock whose key is `$high`/`$low`: the condition of every
    /// history write, so that a migration that released it (`pg_advisory_unlock_all()`, `DISCARD ALL`) cannot be
    /// recorded as if it ran alone.
    static func lockHeld(high: Int, low: Int) -> String {
        """
        EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid() AND granted
                AND objsubid = 1 AND classid = $\(high)::bigint::oid AND objid = $\(low)::bigint::oid)
        """
    }

    static func lockKeyParts(_ key: Int64) -> (high: Int64, low: Int64) {
        ((key >> 32) & 0xFFFF_FFFF, key & 0xFFFF_FFFF)
    }

    /// Records a transactional migration inside its own transaction, if this session still holds the lock.
    /// - Returns: false when it does not (nothing was written).
    func recordApplied(_ connection: Connection, file: MigrationFile, durationMs: Double, lockKey: Int64) throws(PostgresError) -> Bool {
        let (high, low) = Self.lockKeyParts(lockKey)
        return try connection.query(
            """
            INSERT INTO \(table) (version, name, checksum, transactional, state, duration_ms)
            SELECT $1, $2, $3, $4, 'applied', $5 WHERE \(Self.lockHeld(high: 6, low: 7))
            ON CONFLICT (version) DO UPDATE SET
                name = EXCLUDED.name, checksum = EXCLUDED.checksum, transactional = EXCLUDED.transactional,
                state = 'applied', applied_at = now(), applied_by = current_user, duration_ms = EXCLUDED.duration_ms,
                statements_done = NULL, statement_checksums = NULL, failed_statement = NULL, error = NULL,
                superseded = NULL
            """,
            [file.version, file.name, file.checksum, file.transactional, durationMs, high, low]
        ).affectedRows == 1
    }

    /// Records how far a migration outside a transaction got, if this session still holds the lock. Written before
    /// each statement with the error of an interruption, so a runner killed in the middle leaves a row that says
    /// where to resume.
    /// - Returns: false when the session no longer holds the lock (nothing was written).
    func recordProgress(
        _ connection: Connection, file: MigrationFile, done: [String], failedStatement: Int, error: String,
        durationMs: Double, lockKey: Int64
    ) throws(PostgresError) -> Bool {
        let (high, low) = Self.lockKeyParts(lockKey)
        return try connection.query(
            """
            INSERT INTO \(table)
                (version, name, checksum, transactional, state, duration_ms, statements_done, statement_checksums,
                 failed_statement, error)
            SELECT $1, $2, $3, false, 'failed', $4, $5, $6::text[], $7, $8 WHERE \(Self.lockHeld(high: 9, low: 10))
            ON CONFLICT (version) DO UPDATE SET
                name = EXCLUDED.name, checksum = EXCLUDED.checksum, transactional = false, state = 'failed',
                applied_at = now(), applied_by = current_user, duration_ms = EXCLUDED.duration_ms,
                statements_done = EXCLUDED.statements_done, statement_checksums = EXCLUDED.statement_checksums,
                failed_statement = EXCLUDED.failed_statement, error = EXCLUDED.error
            """,
            [file.version, file.name, file.checksum, durationMs, done.count, done, failedStatement, error, high, low]
        ).affectedRows == 1
    }

    /// Marks applied rows as superseded by migrator's own objects: a migration that an earlier release shipped and
    /// whose work an own-objects component took over. Only a row with exactly the given checksum is marked (a user's
    /// own migration that happens to have the same number is left alone); a superseded row needs no file any more,
    /// and still verifies against one that is there. Runs inside a component step.
    /// - Returns: how many rows were marked.
    @discardableResult
    public func supersede(
        _ connection: Connection, migrations: [(version: Int64, checksums: [String])], by note: String
    ) throws(PostgresError) -> Int {
        var marked = 0
        for migration in migrations {
            marked += try connection.query(
                """
                UPDATE \(table) SET superseded = $3
                WHERE version = $1 AND state = 'applied' AND checksum = ANY($2::text[]) AND superseded IS NULL
                """,
                [migration.version, migration.checksums, note]
            ).affectedRows
        }
        return marked
    }
}
