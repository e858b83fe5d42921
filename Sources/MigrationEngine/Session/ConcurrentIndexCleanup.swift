import Logging
import Postgres

/// What a failed `CREATE INDEX CONCURRENTLY` or `REINDEX … CONCURRENTLY` leaves: an INVALID index, which the server
/// keeps updating on every write and never uses, and which makes the same statement fail with "already exists" when
/// it runs again (or, with `IF NOT EXISTS`, pass over it silently).
///
/// Only an index this statement made is dropped: the INVALID indexes are listed before the statement runs, and after
/// a failure only one that was not there before counts, is not being built by another session, and (when the
/// statement names its index without quotes) has that name.
struct ConcurrentIndexCleanup {
    struct Index: Equatable {
        var oid: Int64
        /// Schema-qualified, each part quoted by the server's `format('%I.%I')`.
        var name: String
        var relationName: String
    }

    /// The index name the statement gives, folded as the server folds an unquoted name; nil when it gives none or
    /// quotes it (then any new INVALID index counts).
    let indexName: String?

    /// Nil for a statement that cannot leave an INVALID index.
    init?(_ statement: SQLStatement) {
        let words = statement.leadingWords(8)
        var rest = words[...]
        if rest.first == "CREATE" {
            rest = rest.dropFirst()
            if rest.first == "UNIQUE" { rest = rest.dropFirst() }
            guard rest.first == "INDEX" else { return nil }
            rest = rest.dropFirst()
            guard rest.first == "CONCURRENTLY" else { return nil }
            rest = rest.dropFirst()
            if Array(rest.prefix(3)) == ["IF", "NOT", "EXISTS"] { rest = rest.dropFirst(3) }
            indexName = rest.first.flatMap { $0 == "ON" ? nil : $0.lowercased() }
        } else if rest.first == "REINDEX", words.contains("CONCURRENTLY") {
            // REINDEX CONCURRENTLY makes its new indexes as `<name>_ccnew`.
            indexName = nil
        } else {
            return nil
        }
    }

    static let invalidSQL = """
        SELECT i.indexrelid::bigint AS oid, format('%I.%I', n.nspname, c.relname) AS name, c.relname
        FROM pg_index i
        JOIN pg_class c ON c.oid = i.indexrelid
        JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE NOT i.indisvalid
          AND NOT EXISTS (SELECT 1 FROM pg_stat_progress_create_index p
                          WHERE p.index_relid = i.indexrelid AND p.pid <> pg_backend_pid()
                            AND p.datid = (SELECT oid FROM pg_database WHERE datname = current_database()))
        """

    func invalidIndexes(on connection: Connection) throws(PostgresError) -> [Index] {
        let rows = try connection.query(Self.invalidSQL)
        var indexes: [Index] = []
        for row in rows.rows {
            do throws(RowDecodingError) {
                indexes.append(Index(oid: try row.decode("oid"), name: try row.decode("name"), relationName: try row.decode("relname")))
            } catch {
                throw PostgresError(code: .clientError, message: error.description)
            }
        }
        return indexes
    }

    /// The INVALID indexes that are there now and were not `before`, that this statement made.
    func leftBehind(on connection: Connection, before: [Index]) throws(PostgresError) -> [Index] {
        let old = Set(before.map(\.oid))
        return try invalidIndexes(on: connection).filter { index in
            guard !old.contains(index.oid) else { return false }
            guard let indexName else { return true }
            return index.relationName == indexName
        }
    }

    func drop(_ indexes: [Index], on connection: Connection, logger: Logger) throws(PostgresError) {
        for index in indexes {
            logger.info("dropping the INVALID index a failed concurrent index build left", metadata: ["db.index": "\(index.name)"])
            // DDL takes no parameters; the name is the server's own quoting of what its catalogue holds.
            try connection.execute(script: "DROP INDEX CONCURRENTLY IF EXISTS \(index.name)")
        }
    }
}
