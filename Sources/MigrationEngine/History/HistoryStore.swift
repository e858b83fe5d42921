import Logging
import Postgres

/// The engine's own table: one row per applied (or part-applied) migration.
///
/// It lives in `public` under a fixed name so that a migration that changes `search_path` cannot make the engine
/// lose it half way through a run.
struct HistoryStore {
    static let table = "public.migrator_history"

    static let createSQL = """
        CREATE TABLE IF NOT EXISTS public.migrator_history (
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
            error text
        )
        """

    static let selectSQL = """
        SELECT version, name, checksum, transactional, state,
               to_char(applied_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"') AS applied_at,
               applied_by, duration_ms, statements_done, statement_checksums, failed_statement, error
        FROM public.migrator_history ORDER BY version
        """

    /// Reads every row. Returns nil when the table does not exist yet (a database never migrated).
    static func read(_ connection: Connection) throws(PostgresError) -> [HistoryRecord]? {
        let result: QueryResult
        do {
            result = try connection.query(selectSQL)
        } catch where error.sqlState == "42P01" {
            return nil
        }
        return result.rows.map { row in
            HistoryRecord(
                version: Int64(row["version"] ?? "0") ?? 0,
                name: row["name"] ?? "",
                checksum: row["checksum"] ?? "",
                transactional: row.bool("transactional") ?? true,
                state: HistoryRecord.State(rawValue: row["state"] ?? "") ?? .failed,
                appliedAt: row["applied_at"] ?? "",
                appliedBy: row["applied_by"] ?? "",
                durationMs: row.double("duration_ms") ?? 0,
                statementsDone: row.int("statements_done"),
                statementChecksums: row.stringArray("statement_checksums")?.compactMap { $0 },
                failedStatement: row.int("failed_statement"),
                error: row["error"]
            )
        }
    }

    static func create(_ connection: Connection) throws(PostgresError) {
        try connection.query(createSQL)
    }

    /// Records a transactional migration inside its own transaction.
    static func recordApplied(_ connection: Connection, file: MigrationFile, durationMs: Double) throws(PostgresError) {
        try connection.query(
            """
            INSERT INTO public.migrator_history (version, name, checksum, transactional, state, duration_ms)
            VALUES ($1, $2, $3, $4, 'applied', $5)
            ON CONFLICT (version) DO UPDATE SET
                name = EXCLUDED.name, checksum = EXCLUDED.checksum, transactional = EXCLUDED.transactional,
                state = 'applied', applied_at = now(), applied_by = current_user, duration_ms = EXCLUDED.duration_ms,
                statements_done = NULL, statement_checksums = NULL, failed_statement = NULL, error = NULL
            """,
            [file.version, file.name, file.checksum, file.transactional, durationMs]
        )
    }

    /// Records how far a migration outside a transaction got. Written before each statement with the error of an
    /// interruption, so a runner killed in the middle leaves a row that says where to resume.
    static func recordProgress(
        _ connection: Connection, file: MigrationFile, done: [String], failedStatement: Int, error: String,
        durationMs: Double
    ) throws(PostgresError) {
        try connection.query(
            """
            INSERT INTO public.migrator_history
                (version, name, checksum, transactional, state, duration_ms, statements_done, statement_checksums,
                 failed_statement, error)
            VALUES ($1, $2, $3, false, 'failed', $4, $5, $6::text[], $7, $8)
            ON CONFLICT (version) DO UPDATE SET
                name = EXCLUDED.name, checksum = EXCLUDED.checksum, transactional = false, state = 'failed',
                applied_at = now(), applied_by = current_user, duration_ms = EXCLUDED.duration_ms,
                statements_done = EXCLUDED.statements_done, statement_checksums = EXCLUDED.statement_checksums,
                failed_statement = EXCLUDED.failed_statement, error = EXCLUDED.error
            """,
            [file.version, file.name, file.checksum, durationMs, done.count, done, failedStatement, error]
        )
    }
}
