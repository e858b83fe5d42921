import MigrationEngine
import Postgres

/// How `serve` finds new projects without a trigger on INSERT: one read-only statement, run every poll interval,
/// that returns the projects above an id watermark that have no group linked yet, the largest id visible, and what
/// the daemon needs to advance the watermark safely (``ProjectWatermark`` in the daemon decides that).
///
/// The statement is a range scan of the id column's index from the watermark (`id > W … ORDER BY id LIMIT n`), each
/// row probed against the links' primary key by a subquery (not a join, so that the session's `enable_nestloop=off`
/// cannot turn it into a hash over every link), plus `max(id)` (one index probe) and the snapshot's `xmin`. Only
/// when the largest id passed everything already covered does it also take a transaction id (`txid_current()`),
/// which bounds every transaction id handed out before it: once the oldest running transaction is younger than that
/// (`xmin` > it), every transaction that could have taken an id up to that maximum from the sequence has ended. An
/// idle daemon therefore takes no transaction id at all. `txid_*` rather than the `pg_*_xact_id` of PostgreSQL 13,
/// so that older servers work too; both count with the epoch (64 bits).
public struct NewProjectsPoll: Sendable, Equatable {
    /// Projects above the watermark without any linked group (and not in `skipping`), lowest first.
    public var ids: [Int64]
    /// Whether there may be more than `ids` (it holds `limit` ids).
    public var truncated: Bool
    /// The largest project id the statement saw, nil for an empty table.
    public var maxID: Int64?
    /// The transaction id the poll took, when `maxID` was above `covered`.
    public var pollXID: Int64?
    /// The oldest transaction still running when the statement started (its snapshot's xmin).
    public var xmin: Int64

    public init(ids: [Int64], truncated: Bool, maxID: Int64?, pollXID: Int64?, xmin: Int64) {
        self.ids = ids
        self.truncated = truncated
        self.maxID = maxID
        self.pollXID = pollXID
        self.xmin = xmin
    }

    static func statement(
        target: ResolvedTarget, schema: OwnSchema, after watermark: Int64, covered: Int64, skipping: [Int64], limit: Int
    ) -> SyncStatement {
        SyncStatement("look for new projects") { p in
            let table = target.tableSQL
            let id = target.idSQL
            let links = schema.qualified("project_role_group")
            return """
                WITH fresh AS (
                    SELECT p.\(id)::bigint AS id FROM \(table) p
                    WHERE p.\(id) > \(p.bigint(watermark))
                      AND NOT (p.\(id) = ANY (\(p.bigints(skipping))))
                      AND (SELECT 1 FROM \(links) l WHERE l.project_id = p.\(id) LIMIT 1) IS NULL
                    ORDER BY p.\(id)
                    LIMIT \(p.integer(limit))
                ), top AS (
                    SELECT max(\(id))::bigint AS max_id FROM \(table)
                )
                SELECT coalesce((SELECT array_agg(id ORDER BY id) FROM fresh), '{}') AS ids,
                       top.max_id,
                       CASE WHEN top.max_id > \(p.bigint(covered)) THEN txid_current() END AS poll_xid,
                       txid_snapshot_xmin(txid_current_snapshot()) AS xmin
                FROM top
                """
        }
    }
}

extension RoleSynchronizer {
    /// One poll for new projects (see ``NewProjectsPoll``): those with an id above `watermark`, no linked group, and
    /// not in `skipping` (already handed to a sync), at most `limit`; a transaction id is taken only when the largest
    /// id is above `covered`.
    public func pollNewProjects(
        _ connection: Connection, target: ResolvedTarget, after watermark: Int64, covered: Int64, skipping: [Int64],
        limit: Int
    ) throws(RoleSyncError) -> NewProjectsPoll {
        let statement = NewProjectsPoll.statement(
            target: target, schema: schema, after: watermark, covered: covered, skipping: skipping, limit: limit
        )
        let row: Row
        do throws(PostgresError) {
            // A SELECT from a one-row aggregate: always one row.
            row = try statement.one(on: connection)
        } catch {
            throw RoleSyncError(phase: statement.name, error: error)
        }
        do {
            let ids = try row.decode("ids", as: [String?].self).map { text throws(RowDecodingError) in
                guard let text, let id = Int64(text) else {
                    throw RowDecodingError(source: row.source, column: "ids", problem: "holds an element that is not a project id")
                }
                return id
            }
            return NewProjectsPoll(
                ids: ids, truncated: ids.count >= limit, maxID: try row.decodeIfPresent("max_id"),
                pollXID: try row.decodeIfPresent("poll_xid"), xmin: try row.decode("xmin")
            )
        } catch {
            throw RoleSyncError(phase: statement.name, decoding: error)
        }
    }
}
