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

    /// `<schema>.history_statements`: one row per statement of a migration outside a transaction that ran while the
    /// migration has not finished (its checksum, by 1-based position), so that recording progress writes one small
    /// row per statement instead of rewriting an array that grows with every statement. The history row keeps the
    /// count (`statements_done`); the rows go when the migration is recorded applied (or its history row is deleted).
    public var statementsTable: String { schema.qualified("history_statements") }

    /// `<schema>.history_audit`: one row per hand change of the history (`baseline`, `repair`, `mark-applied`,
    /// `mark-pending`): who, when, what, and why.
    public var auditTable: String { schema.qualified("history_audit") }

    /// What a row whose statements are in ``statementsTable`` holds in `statement_checksums`, instead of NULL: a release
    /// of engine step 1 reads only the array, and would take NULL for "no statement ran" and run them again; this one
    /// element matches no statement's checksum, so such a release refuses to resume (statement 1 "has changed") and
    /// runs nothing. Constant, so writing it costs the same whatever the number of statements.
    static let statementsElsewhere = "see history_statements (migrator engine step 2)"

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
        // Step 1 kept the checksums of the statements done in the history row's array, rewritten whole before every
        // statement: quadratic in the file's length. A migration that failed part way under step 1 keeps its
        // checksums: they move into the table, so the next run resumes it as before.
        .init(version: 2, summary: "per-statement progress of migrations outside a transaction") { connection, schema, _ in
            let history = HistoryStore(schema: schema)
            try connection.query(
                """
                CREATE TABLE IF NOT EXISTS \(history.statementsTable) (
                    version bigint NOT NULL REFERENCES \(history.table) (version) ON DELETE CASCADE,
                    statement integer NOT NULL CHECK (statement > 0),
                    checksum text NOT NULL,
                    PRIMARY KEY (version, statement)
                )
                """
            )
            try connection.query(
                """
                INSERT INTO \(history.statementsTable) (version, statement, checksum)
                SELECT h.version, c.statement, c.checksum
                FROM \(history.table) h, unnest(h.statement_checksums) WITH ORDINALITY AS c(checksum, statement)
                WHERE h.statement_checksums IS NOT NULL AND c.checksum IS NOT NULL
                ON CONFLICT (version, statement) DO NOTHING
                """
            )
            try connection.query(
                """
                UPDATE \(history.table) SET statement_checksums = CASE WHEN state = 'failed' THEN ARRAY[$1::text] END
                WHERE statement_checksums IS NOT NULL
                """,
                [HistoryStore.statementsElsewhere]
            )
        },
        // The reverse of a migration is kept with it when it is applied (its text, checksum and whether it runs in a
        // transaction), so that what runs on the way back is what was reviewed with that release; a row says how it
        // came to be (a run, a baseline, a hand mark); hand changes are audited.
        .init(version: 3, summary: "down migrations kept at apply time, baselines, the audit of hand changes") { connection, schema, _ in
            let history = HistoryStore(schema: schema)
            try connection.query(
                """
                ALTER TABLE \(history.table)
                    ADD COLUMN IF NOT EXISTS kind text NOT NULL DEFAULT 'migration'
                        CHECK (kind IN ('migration', 'baseline', 'marked')),
                    ADD COLUMN IF NOT EXISTS down_sql text,
                    ADD COLUMN IF NOT EXISTS down_checksum text,
                    ADD COLUMN IF NOT EXISTS down_transactional boolean,
                    ADD COLUMN IF NOT EXISTS irreversible boolean NOT NULL DEFAULT false
                """
            )
            try connection.query(
                """
                CREATE TABLE IF NOT EXISTS \(history.auditTable) (
                    id bigserial PRIMARY KEY,
                    at timestamptz NOT NULL DEFAULT now(),
                    by text NOT NULL DEFAULT current_user,
                    action text NOT NULL,
                    version bigint,
                    name text,
                    old_checksum text,
                    new_checksum text,
                    reason text
                )
                """
            )
        },
    ])

    /// The columns each layout has: an earlier release's table has no `superseded`; one of engine steps 1-2 (read
    /// without upgrading: status, a dry run) none of step 3's.
    enum Layout { case legacy, step2, current }

    /// Unordered: the rows are sorted by version here (``decode(_:table:)``). An ORDER BY has the planner of a new
    /// server process open the primary key's index to weigh it, which cost about 0.4 ms of every no-op run (`psql -c`
    /// on a new server process, 12 runs each: 1.28 ms against 1.71 ms), for a table of a few hundred rows at most.
    func selectSQL(_ table: String, layout: Layout) -> String {
        """
        SELECT version, name, checksum, transactional, state,
               to_char(applied_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"') AS applied_at,
               applied_by, duration_ms, statements_done, statement_checksums, failed_statement, error,
               \(layout == .legacy ? "NULL::text AS superseded" : "superseded"),
               \(layout == .current ? "kind, down_sql, down_checksum, down_transactional, irreversible"
                   : "'migration' AS kind, NULL::text AS down_sql, NULL::text AS down_checksum, NULL::boolean AS down_transactional, false AS irreversible")
        FROM \(table)
        """
    }

    /// The current layout's columns with their types, in the order of ``selectSQL(_:layout:)``.
    static let copyColumns: [(name: String, type: BinaryCopy.FieldType)] = [
        ("version", .int8), ("name", .text), ("checksum", .text), ("transactional", .bool), ("state", .text),
        ("applied_at", .timestamptzUTC), ("applied_by", .text), ("duration_ms", .float8), ("statements_done", .int4),
        ("statement_checksums", .textArray), ("failed_statement", .int4), ("error", .text), ("superseded", .text),
        ("kind", .text), ("down_sql", .text), ("down_checksum", .text), ("down_transactional", .bool),
        ("irreversible", .bool),
    ]

    /// The current layout's rows through `COPY … TO STDOUT (FORMAT binary)`, which the server runs without planning:
    /// a new server process does not open the table's indexes and statistics for it as a SELECT's planner does
    /// (about 65 fewer buffer reads of the catalogue, and `to_char`'s lookups, on every run's first read; see README
    /// "Fleets"). The same rows and text as ``selectSQL(_:layout:)`` with `.current`; when a column's bytes do not fit
    /// its type (a table altered by hand), that SELECT is run instead, and decides.
    func copySQL(_ table: String) -> String {
        "COPY \(table) (\(Self.copyColumns.map(\.name).joined(separator: ", "))) TO STDOUT (FORMAT binary)"
    }

    private func copy(_ connection: Connection) throws(PostgresError) -> QueryResult {
        let data = try connection.copyOut(copySQL(table))
        guard let values = try? BinaryCopy.textRows(data, types: Self.copyColumns.map(\.type)) else {
            return try connection.query(selectSQL(table, layout: .current))
        }
        let columns = Self.copyColumns.map(\.name)
        return QueryResult(
            columns: columns, rows: values.map { Row(columns: columns, values: $0) },
            commandTag: "COPY \(values.count)", affectedRows: values.count
        )
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
            let result: QueryResult
            do {
                result = try copy(connection)
            } catch where error.sqlState == SQLState.undefinedColumn {
                result = try connection.query(selectSQL(table, layout: .step2))
            }
            let records = try decode(result, table: table)
            return (try withStatementChecksums(records, connection), .current)
        } catch where error.sqlState == SQLState.undefinedTable || error.sqlState == SQLState.invalidSchemaName {
            guard legacyFallback else { return nil }
        }
        do {
            return (try decode(connection.query(selectSQL(Self.legacyTable, layout: .legacy)), table: Self.legacyTable), .legacy)
        } catch where error.sqlState == SQLState.undefinedTable {
            return nil
        }
    }

    /// Fills in, for each migration that stopped part way with its checksums in ``statementsTable`` (engine step 2
    /// and later), the checksums of the statements done, in order: one more query, only when there is such a row (a
    /// row of step 1 carries them in its array). A count that disagrees with the rows is refused, never guessed.
    private func withStatementChecksums(_ records: [HistoryRecord], _ connection: Connection) throws(PostgresError) -> [HistoryRecord] {
        let due = records.filter { $0.state == .failed && $0.statementChecksums == nil && ($0.statementsDone ?? 0) > 0 }
        guard !due.isEmpty else { return records }
        let result: QueryResult
        do {
            result = try connection.query(
                """
                SELECT version, array_agg(checksum ORDER BY statement) AS checksums, max(statement) AS last
                FROM \(statementsTable) WHERE version = ANY($1::bigint[]) GROUP BY version
                """,
                [due.map(\.version)]
            )
        } catch where error.sqlState == SQLState.undefinedTable {
            // Step 1's table only, read without upgrading (status, a dry run): its rows carry their arrays.
            return records
        }
        var checksums: [Int64: [String]] = [:]
        for row in result.from(statementsTable).rows {
            let (version, list, last) = try decoded { () throws -> (Int64, [String], Int) in
                (try row.decode("version"), try row.decode("checksums", as: [String?].self).compactMap { $0 }, try row.decode("last"))
            }
            guard last == list.count else {
                throw PostgresError(
                    code: .clientError,
                    message: "\(statementsTable) lacks statements of version \(version) (it holds \(list.count), the last "
                        + "numbered \(last)); fix or delete those rows and the history row by hand"
                )
            }
            checksums[version] = list
        }
        var filled = records
        for (position, record) in records.enumerated() where due.contains(where: { $0.version == record.version }) {
            let list = checksums[record.version] ?? []
            let done = record.statementsDone ?? 0
            guard list.count >= done else {
                throw PostgresError(
                    code: .clientError,
                    message: "the history row of version \(record.version) records \(done) statements done, "
                        + "but \(statementsTable) holds \(list.count) of them; fix or delete those rows by hand"
                )
            }
            filled[position].statementChecksums = Array(list.prefix(done))
        }
        return filled
    }

    /// ``decode(_:table:)`` of this store's table, for tests that compare the two ways of reading it.
    func decodeForTests(_ result: QueryResult) throws(PostgresError) -> [HistoryRecord] {
        try decode(result, table: table)
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
                    statementChecksums: try row.decodeIfPresent("statement_checksums", as: [String?].self)
                        .map { $0.compactMap { $0 } }.flatMap { $0 == [Self.statementsElsewhere] ? nil : $0 },
                    failedStatement: try row.decodeIfPresent("failed_statement"),
                    error: try row.decodeIfPresent("error"),
                    superseded: try row.decodeIfPresent("superseded"),
                    kind: try row.decode("kind"),
                    down: try row.decodeIfPresent("down_sql", as: String.self).map { sql throws(RowDecodingError) in
                        HistoryRecord.Down(sql: sql, checksum: try row.decode("down_checksum"), transactional: try row.decode("down_transactional"))
                    },
                    irreversible: try row.decode("irreversible")
                ))
            } catch {
                let version = ((try? row.text("version")) ?? nil) ?? "NULL"
                throw PostgresError(
                    code: .clientError,
                    message: "\(error) (the row of version \(version)); fix or delete that row by hand"
                )
            }
        }
        return records.sorted { $0.version < $1.version }
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
    func recordApplied(
        _ connection: Connection, file: MigrationFile, down: MigrationFile? = nil, durationMs: Double, lockKey: Int64
    ) throws(PostgresError) -> Bool {
        let (high, low) = Self.lockKeyParts(lockKey)
        // The progress rows of a migration outside a transaction go with the same statement (for one in a
        // transaction there are none: an index probe).
        return try connection.query(
            """
            WITH recorded AS (
                INSERT INTO \(table) (version, name, checksum, transactional, state, duration_ms, kind, down_sql,
                                       down_checksum, down_transactional, irreversible)
                SELECT $1, $2, $3, $4, 'applied', $5, 'migration', $8, $9, $10, $11 WHERE \(Self.lockHeld(high: 6, low: 7))
                ON CONFLICT (version) DO UPDATE SET
                    name = EXCLUDED.name, checksum = EXCLUDED.checksum, transactional = EXCLUDED.transactional,
                    state = 'applied', applied_at = now(), applied_by = current_user, duration_ms = EXCLUDED.duration_ms,
                    statements_done = NULL, statement_checksums = NULL, failed_statement = NULL, error = NULL,
                    superseded = NULL, kind = 'migration', down_sql = EXCLUDED.down_sql,
                    down_checksum = EXCLUDED.down_checksum, down_transactional = EXCLUDED.down_transactional,
                    irreversible = EXCLUDED.irreversible
                RETURNING version
            ), cleared AS (
                DELETE FROM \(statementsTable) s USING recorded r WHERE s.version = r.version
            )
            SELECT count(*) AS recorded FROM recorded
            """,
            [file.version, file.name, file.checksum, file.transactional, durationMs, high, low,
             down?.content, down?.checksum, down?.transactional, file.irreversible]
        ).recordedOne(table)
    }

    /// Records how far a migration outside a transaction got, if this session still holds the lock. Written before
    /// each statement with the error of an interruption, so a runner killed in the middle leaves a row that says
    /// where to resume: `done` statements completed, `completed` the checksum of the last of them when it is not
    /// recorded yet (statement number `done`). One statement of constant size whatever `done` is: the history row's
    /// count and at most one row of ``statementsTable``.
    /// - Returns: false when the session no longer holds the lock (nothing was written).
    func recordProgress(
        _ connection: Connection, file: MigrationFile, done: Int, completed: String?, failedStatement: Int, error: String,
        durationMs: Double, lockKey: Int64
    ) throws(PostgresError) -> Bool {
        let (high, low) = Self.lockKeyParts(lockKey)
        return try connection.query(
            """
            WITH recorded AS (
                INSERT INTO \(table)
                    (version, name, checksum, transactional, state, duration_ms, statements_done, statement_checksums,
                     failed_statement, error)
                SELECT $1, $2, $3, false, 'failed', $4, $5, ARRAY[$11::text], $6, $7 WHERE \(Self.lockHeld(high: 8, low: 9))
                ON CONFLICT (version) DO UPDATE SET
                    name = EXCLUDED.name, checksum = EXCLUDED.checksum, transactional = false, state = 'failed',
                    applied_at = now(), applied_by = current_user, duration_ms = EXCLUDED.duration_ms,
                    statements_done = EXCLUDED.statements_done, statement_checksums = EXCLUDED.statement_checksums,
                    failed_statement = EXCLUDED.failed_statement, error = EXCLUDED.error
                RETURNING version
            ), statement AS (
                INSERT INTO \(statementsTable) (version, statement, checksum)
                SELECT r.version, $5, $10::text FROM recorded r WHERE $10::text IS NOT NULL
                ON CONFLICT (version, statement) DO UPDATE SET checksum = EXCLUDED.checksum
            )
            SELECT count(*) AS recorded FROM recorded
            """,
            [file.version, file.name, file.checksum, durationMs, done, failedStatement, error, high, low, completed, Self.statementsElsewhere]
        ).recordedOne(table)
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

extension HistoryStore {
    /// Deletes the history row of a migration that was reversed, in the down's transaction, if this session still
    /// holds the lock. - Returns: false when it does not (nothing was deleted).
    func recordReverted(_ connection: Connection, version: Int64, lockKey: Int64) throws(PostgresError) -> Bool {
        let (high, low) = Self.lockKeyParts(lockKey)
        return try connection.query(
            """
            WITH recorded AS (
                DELETE FROM \(table) WHERE version = $1 AND \(Self.lockHeld(high: 2, low: 3)) RETURNING version
            )
            SELECT count(*) AS recorded FROM recorded
            """,
            [version, high, low]
        ).recordedOne(table)
    }
}

extension QueryResult {
    /// Whether the history statement's `recorded` count (the history rows it wrote) is 1.
    fileprivate func recordedOne(_ table: String) throws(PostgresError) -> Bool {
        guard let row = from(table).first else { return false }
        return try decoded { try row.decode("recorded", as: Int.self) } == 1
    }
}
