import Postgres

/// Something in the database a failed or half-finished migration leaves, which `status` and `verify` report: an
/// INVALID index (a `CREATE INDEX CONCURRENTLY` that failed: the server keeps it up to date on every write and never
/// uses it) or a constraint added `NOT VALID` and not validated yet (new rows are checked, existing ones are not).
public struct SchemaHazard: Sendable, Codable, Equatable {
    public enum Kind: String, Sendable, Codable {
        case invalidIndex = "invalid-index"
        case unvalidatedConstraint = "unvalidated-constraint"
    }

    public var kind: Kind
    /// The index (schema-qualified) or the constraint, quoted as SQL needs it.
    public var name: String
    /// Its table, schema-qualified and quoted.
    public var table: String
    /// The constraint's definition (`FOREIGN KEY (a) REFERENCES b(id) NOT VALID`); nil for an index.
    public var definition: String?

    /// What it is and what to do, in one sentence.
    public var message: String {
        switch kind {
        case .invalidIndex:
            "index \(name) on \(table) is INVALID (a concurrent build or reindex that failed): it slows every write "
                + "and is never used; drop it with DROP INDEX CONCURRENTLY \(name) and build it again"
        case .unvalidatedConstraint:
            "constraint \(name) on \(table) is NOT VALID: new rows are checked, existing ones are not; validate it "
                + "with ALTER TABLE \(table) VALIDATE CONSTRAINT \(name) (it takes no lock that blocks writes)"
        }
    }

    /// Every hazard of the current database, in one round trip. An index being built right now by another session
    /// is INVALID until it finishes, and is left out.
    static let sql = """
        SELECT 'invalid-index' AS kind, format('%I.%I', n.nspname, c.relname) AS name,
               format('%I.%I', tn.nspname, t.relname) AS table_name, NULL::text AS definition
        FROM pg_index i
        JOIN pg_class c ON c.oid = i.indexrelid
        JOIN pg_namespace n ON n.oid = c.relnamespace
        JOIN pg_class t ON t.oid = i.indrelid
        JOIN pg_namespace tn ON tn.oid = t.relnamespace
        WHERE NOT i.indisvalid
          AND NOT EXISTS (SELECT 1 FROM pg_stat_progress_create_index p
                          WHERE p.index_relid = i.indexrelid
                            AND p.datid = (SELECT oid FROM pg_database WHERE datname = current_database()))
        UNION ALL
        SELECT 'unvalidated-constraint', quote_ident(co.conname), format('%I.%I', n.nspname, t.relname),
               pg_get_constraintdef(co.oid)
        FROM pg_constraint co
        JOIN pg_class t ON t.oid = co.conrelid
        JOIN pg_namespace n ON n.oid = t.relnamespace
        WHERE NOT co.convalidated AND co.contype IN ('c', 'f')
        ORDER BY 1, 3, 2
        """

    static func read(_ connection: Connection) throws(PostgresError) -> [SchemaHazard] {
        var hazards: [SchemaHazard] = []
        for row in try connection.query(sql).rows {
            do throws(RowDecodingError) {
                let kind: String = try row.decode("kind")
                hazards.append(SchemaHazard(
                    kind: kind == "invalid-index" ? .invalidIndex : .unvalidatedConstraint,
                    name: try row.decode("name"), table: try row.decode("table_name"),
                    definition: try row.decodeIfPresent("definition")
                ))
            } catch {
                throw PostgresError(code: .clientError, message: error.description)
            }
        }
        return hazards
    }
}
