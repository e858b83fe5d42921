import MigrationEngine
import MigratorTestSupport
import Postgres
import RoleSync
import Testing

/// The daemon's poll for new projects, as one statement against a real server (the watermark rule is the daemon's,
/// `ProjectWatermarkTests`).
extension RoleSyncTests {
    @Test("the poll returns unlinked projects above the watermark, lowest first, up to its limit, and takes a transaction id only for a new largest id")
    func newProjectsPoll() throws {
        try TestDatabase.with { database in
            let connection = try Self.migrated(database)
            let synced = try Self.addProjects(connection, ["synced"])
            _ = try Self.sync(connection)
            let fresh = try Self.addProjects(connection, ["a", "b", "c"])
            let synchronizer = RoleSynchronizer(catalogue: .reference)
            let target = try synchronizer.resolveTarget(connection)

            // In a transaction of the test's own, so that the transaction id the poll takes, if any, can be read after.
            func poll(after mark: Int64, covered: Int64, skipping: [Int64] = [], limit: Int = 10) throws -> (NewProjectsPoll, String?) {
                try connection.query("BEGIN")
                defer { _ = try? connection.query("ROLLBACK") }
                let found = try synchronizer.pollNewProjects(
                    connection, target: target, after: mark, covered: covered, skipping: skipping, limit: limit
                )
                let assigned = try connection.query("SELECT txid_current_if_assigned()::text AS xid").first?["xid"]
                return (found, assigned)
            }

            let (first, firstXID) = try poll(after: .min, covered: .min)
            #expect(first.ids == fresh, "the synced project has its groups linked: left out")
            #expect(first.maxID == fresh.last && !first.truncated)
            #expect(first.pollXID != nil && firstXID == first.pollXID.map(String.init), "a new largest id: one transaction id, the poll's")
            #expect(first.xmin <= first.pollXID ?? 0)

            let (idle, idleXID) = try poll(after: .min, covered: fresh.last ?? 0)
            #expect(idle.ids == fresh && idle.pollXID == nil && idleXID == nil, "nothing new past what is covered: no transaction id")

            let (limited, _) = try poll(after: synced[0], covered: fresh.last ?? 0, skipping: [fresh[0]], limit: 1)
            #expect(limited.ids == [fresh[1]] && limited.truncated, "skipping what was handed over; stopped at the limit")
            let (above, _) = try poll(after: fresh[1], covered: fresh.last ?? 0)
            #expect(above.ids == [fresh[2]])
        }
    }
}
