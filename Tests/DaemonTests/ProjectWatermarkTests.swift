@testable import Daemon
import RoleSync
import Testing

/// The watermark rule of the poll for new projects, with explicit values: what a poll returned (ids, the largest id,
/// the transaction id it took, its snapshot's xmin) and where the next poll starts.
@Suite("ProjectWatermark: the poll's watermark moves only once every transaction that could hold a lower id ended")
struct ProjectWatermarkTests {
    func poll(_ ids: [Int64], max: Int64?, xid: Int64?, xmin: Int64, truncated: Bool = false) -> NewProjectsPoll {
        NewProjectsPoll(ids: ids, truncated: truncated, maxID: max, pollXID: xid, xmin: xmin)
    }

    @Test("a new session starts at the bottom; the first poll's maximum is a candidate, confirmed by a later xmin above its xid")
    func confirmation() {
        var mark = ProjectWatermark()
        #expect(mark.mark == .min && mark.covered == .min && mark.shown == 0)
        #expect(mark.observe(poll([3, 5], max: 5, xid: 100, xmin: 98)) == [3, 5])
        #expect(mark.mark == .min, "a transaction older than the poll (xid 98) may still hold an id below 5")
        #expect(mark.covered == 5 && mark.candidates == [.init(maxID: 5, xid: 100)])
        #expect(mark.skipping == [3, 5], "handed to a sync: not returned again")

        // xid 98 is still running (xmin 98 ≤ 100): nothing moves, however many polls.
        #expect(mark.observe(poll([], max: 5, xid: nil, xmin: 98)).isEmpty)
        #expect(mark.mark == .min)
        // xmin == xid is not enough: the poll's own transaction id is only the bound.
        #expect(mark.observe(poll([], max: 5, xid: nil, xmin: 100)).isEmpty)
        #expect(mark.mark == .min)
        // Every transaction up to 100 ended; this poll scanned from the bottom and saw what they committed (id 4).
        #expect(mark.observe(poll([4], max: 5, xid: nil, xmin: 101)) == [4])
        #expect(mark.mark == 5 && mark.candidates.isEmpty && mark.shown == 5)
        #expect(mark.skipping.isEmpty, "ids at or below the mark are not sent again")
    }

    @Test("the out-of-order commit: an id below one already synced is found while its transaction is older than the candidate")
    func outOfOrderCommit() {
        var mark = ProjectWatermark()
        _ = mark.observe(poll([], max: 10, xid: 200, xmin: 201 - 1))  // nothing new, all synced up to 10
        _ = mark.observe(poll([], max: 10, xid: nil, xmin: 201))
        #expect(mark.mark == 10)
        // Session A took id 11 (xid 300, still open); session B took 12 (xid 301) and committed.
        #expect(mark.observe(poll([12], max: 12, xid: 302, xmin: 300)) == [12])
        #expect(mark.mark == 10)
        // B's project synced; A still open: xmin stays 300.
        #expect(mark.observe(poll([], max: 12, xid: nil, xmin: 300)).isEmpty)
        #expect(mark.mark == 10, "A (xid 300 < 302) may still commit 11")
        // A commits: the next poll, still from 10, returns 11.
        #expect(mark.observe(poll([11], max: 12, xid: nil, xmin: 303)) == [11])
        #expect(mark.mark == 12)
    }

    @Test("a poll that stopped at its limit moves the mark only to the last id it returned")
    func truncatedScan() {
        var mark = ProjectWatermark()
        #expect(mark.observe(poll([1, 2, 3], max: 10_000, xid: 50, xmin: 49, truncated: true)) == [1, 2, 3])
        #expect(mark.mark == .min)
        #expect(mark.observe(poll([4, 5, 6], max: 10_000, xid: nil, xmin: 51, truncated: true)) == [4, 5, 6])
        #expect(mark.mark == 6 && mark.candidates == [.init(maxID: 10_000, xid: 50)], "the rest of the range is still to scan")
        #expect(mark.observe(poll([7, 8, 9], max: 10_000, xid: nil, xmin: 51, truncated: true)) == [7, 8, 9])
        #expect(mark.mark == 9)
        #expect(mark.observe(poll([10], max: 10_000, xid: nil, xmin: 51)) == [10])
        #expect(mark.mark == 10_000 && mark.candidates.isEmpty)
    }

    @Test("a poll takes a transaction id only above what is covered; candidates confirm oldest first, at most 8 wait")
    func candidates() {
        var mark = ProjectWatermark()
        _ = mark.observe(poll([1], max: 1, xid: 10, xmin: 5))
        #expect(mark.covered == 1)
        // A poll with a maximum at or below the covered one took no transaction id, and adds nothing.
        _ = mark.observe(poll([], max: 1, xid: nil, xmin: 5))
        #expect(mark.candidates.count == 1)
        _ = mark.observe(poll([2], max: 2, xid: 20, xmin: 5))
        _ = mark.observe(poll([3], max: 3, xid: 30, xmin: 5))
        #expect(mark.candidates.map(\.maxID) == [1, 2, 3] && mark.covered == 3)
        // xmin 25: the first two confirm, the third (xid 30) waits.
        _ = mark.observe(poll([], max: 3, xid: nil, xmin: 25))
        #expect(mark.mark == 2 && mark.candidates == [.init(maxID: 3, xid: 30)])
        for step in Int64(4)...20 { _ = mark.observe(poll([step], max: step, xid: step * 10, xmin: 25)) }
        #expect(mark.candidates.count == ProjectWatermark.maxCandidates)
        #expect(mark.candidates.first == .init(maxID: 3, xid: 30) && mark.candidates.last == .init(maxID: 20, xid: 200))
        _ = mark.observe(poll([], max: 20, xid: nil, xmin: 201))
        #expect(mark.mark == 20 && mark.candidates.isEmpty)
    }

    @Test("the largest id below the mark (the newest project deleted, a TRUNCATE … RESTART IDENTITY): start over from the bottom")
    func startOver() {
        var mark = ProjectWatermark()
        _ = mark.observe(poll([7], max: 7, xid: 10, xmin: 9))
        _ = mark.observe(poll([], max: 7, xid: nil, xmin: 11))
        #expect(mark.mark == 7)
        // Truncated, ids restarted: 1 and 2 exist again (the scan from 7 found none of them).
        #expect(mark.observe(poll([], max: 2, xid: nil, xmin: 12)).isEmpty)
        #expect(mark.mark == .min && mark.candidates.isEmpty && mark.skipping.isEmpty)
        #expect(mark.observe(poll([1, 2], max: 2, xid: 13, xmin: 12)) == [1, 2])
        // An empty table while a mark is set starts over too; an empty table at the bottom changes nothing.
        _ = mark.observe(poll([], max: 2, xid: nil, xmin: 14))
        #expect(mark.mark == 2)
        _ = mark.observe(poll([], max: nil, xid: nil, xmin: 14))
        #expect(mark.mark == .min)
        _ = mark.observe(poll([], max: nil, xid: nil, xmin: 14))
        #expect(mark.mark == .min)
    }

    @Test("negative ids are found: the bottom is Int64.min, not 0")
    func negativeIDs() {
        var mark = ProjectWatermark()
        #expect(mark.observe(poll([-40, -3], max: -3, xid: 8, xmin: 7)) == [-40, -3])
        _ = mark.observe(poll([], max: -3, xid: nil, xmin: 9))
        #expect(mark.mark == -3 && mark.shown == -3)
    }

    @Test("an id handed to a sync is not returned again while above the mark, and is dropped once the mark passes it")
    func handed() {
        var mark = ProjectWatermark()
        #expect(mark.observe(poll([5], max: 5, xid: 10, xmin: 9)) == [5])
        // A poll that returned 5 again (it was not excluded, say) does not hand it over twice.
        #expect(mark.observe(poll([5, 6], max: 6, xid: 11, xmin: 9)) == [6])
        #expect(mark.skipping == [5, 6])
        _ = mark.observe(poll([], max: 6, xid: nil, xmin: 10 + 1))
        #expect(mark.mark == 5 && mark.skipping == [6])
        _ = mark.observe(poll([], max: 6, xid: nil, xmin: 12))
        #expect(mark.mark == 6 && mark.skipping.isEmpty)
    }
}
