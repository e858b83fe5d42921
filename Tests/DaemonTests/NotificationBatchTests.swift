@testable import Daemon
import Testing

@Suite("NotificationBatch: ids, gathering deadlines, the retry after a busy lock")
struct NotificationBatchTests {
    let clock = TestClock()

    func batch() -> NotificationBatch<TestClock> {
        NotificationBatch(clock: clock, gap: .milliseconds(20), maxDelay: .milliseconds(200))
    }

    @Test("payloads that are ids are collected once each, in order; the others are handed back to reconcile")
    func ids() {
        var batch = batch()
        #expect(batch.isEmpty && !batch.isDue)
        let accepted = batch.add(["7", " 3\n", "7", "-12"])
        #expect(accepted.isEmpty)
        let rejected = batch.add(["not an id", "", "4x", "99999999999999999999"])
        #expect(rejected == ["not an id", "", "4x", "99999999999999999999"])
        #expect(batch.ids == [-12, 3, 7])
        #expect(batch.isDue)
    }

    @Test("gathering waits at most the gap, and stops once the batch is the maximum delay old")
    func gathering() {
        var batch = batch()
        #expect(batch.gatheringWait == nil, "not gathering yet")
        batch.startGathering()
        _ = batch.add(["1"])
        #expect(batch.gatheringWait == .milliseconds(20))
        clock.advance(by: .milliseconds(150))
        #expect(batch.gatheringWait == .milliseconds(20))
        clock.advance(by: .milliseconds(40))
        #expect(batch.gatheringWait == .milliseconds(10), "only what is left of the 200 ms")
        clock.advance(by: .milliseconds(10))
        #expect(batch.gatheringWait == nil)
        batch.stopGathering()
        batch.startGathering()
        #expect(batch.gatheringWait == .milliseconds(20), "a new batch starts its own window")
        batch.stopGathering()
        #expect(batch.gatheringWait == nil)
    }

    @Test("a busy lock: reported once, retried after the delay, and a new notification makes the batch due at once")
    func lockBusy() {
        var batch = batch()
        _ = batch.add(["1", "2"])
        let first = batch.lockBusy()
        #expect(first, "the first busy lock is reported")
        #expect(!batch.isDue)
        #expect(batch.wait(atMost: .milliseconds(250)) == .milliseconds(250))
        clock.advance(by: .milliseconds(400))
        #expect(batch.wait(atMost: .milliseconds(250)) == .milliseconds(100))
        #expect(!batch.isDue)
        clock.advance(by: .milliseconds(100))
        #expect(batch.isDue)
        #expect(batch.wait(atMost: .milliseconds(250)) == .zero)

        let again = batch.lockBusy()
        #expect(!again, "the same wait is not reported again")
        #expect(!batch.isDue)
        _ = batch.add(["3"])
        #expect(batch.isDue, "new notifications try again at once")
        let stillWaiting = batch.lockBusy()
        #expect(!stillWaiting)

        let taken = batch.ids
        _ = batch.add(["4"])  // arrived while the sync ran
        batch.synced(taken)
        #expect(batch.ids == [4])
        #expect(batch.isDue)
        let afterSync = batch.lockBusy()
        #expect(afterSync, "after a batch got the lock, the next busy lock is reported again")
    }

    @Test("discard drops what is pending and the retry time")
    func discard() {
        var batch = batch()
        _ = batch.add(["1"])
        _ = batch.lockBusy()
        batch.discard()
        #expect(batch.isEmpty && !batch.isDue && batch.retryAt == nil)
        #expect(batch.wait(atMost: .milliseconds(250)) == .milliseconds(250))
    }

    @Test("polled projects join the batch like notified ones; a sync of them counts as poll, unless a notification named one")
    func polled() {
        var batch = self.batch()
        batch.addPolled([5, 3])
        #expect(batch.hasPolled && batch.isDue && batch.ids == [3, 5])
        #expect(batch.trigger([3, 5]) == "poll")
        batch.addDrifted([9])
        #expect(batch.trigger([3, 5, 9]) == "poll" && batch.trigger([9]) == "reconcile")
        _ = batch.add(["5"])
        #expect(batch.trigger([3, 5]) == "notify", "renamed meanwhile: the notification counts")
        // An id already pending keeps what it came from.
        batch.addPolled([9])
        #expect(batch.trigger([9]) == "reconcile")
        // A batch waiting for a busy lock keeps waiting when the poll adds to it.
        let first = batch.lockBusy()
        #expect(first)
        batch.addPolled([11])
        #expect(!batch.isDue)
        batch.synced([3, 5, 9, 11])
        #expect(!batch.hasPolled && batch.isEmpty)
        batch.addPolled([12])
        batch.discard()
        #expect(!batch.hasPolled)
    }
}

@Suite("ReconcileSchedule: due at once, every interval, at once again after a reconnect or a bad payload")
struct ReconcileScheduleTests {
    let clock = TestClock()

    @Test("due on a new schedule; started, it is due again an interval later")
    func interval() {
        var schedule = ReconcileSchedule(clock: clock, interval: .seconds(60))
        #expect(schedule.isDue && schedule.timeUntilDue == .zero)
        schedule.start()
        #expect(!schedule.isDue && schedule.timeUntilDue == .seconds(60))
        clock.advance(by: .seconds(59))
        #expect(!schedule.isDue && schedule.timeUntilDue == .seconds(1))
        clock.advance(by: .seconds(1))
        #expect(schedule.isDue)
        clock.advance(by: .seconds(5))
        #expect(schedule.timeUntilDue == .zero, "late is still due, never negative")
    }

    @Test("scheduled before it runs: a reconcile that fails is tried again at the interval, not at once")
    func failingReconcile() {
        var schedule = ReconcileSchedule(clock: clock, interval: .seconds(10))
        schedule.start()
        // … the reconcile fails here; nothing else touches the schedule.
        #expect(!schedule.isDue)
        clock.advance(by: .seconds(10))
        #expect(schedule.isDue)
    }

    @Test("a reconnect or a payload without an id makes it due at the next turn")
    func dueNow() {
        var schedule = ReconcileSchedule(clock: clock, interval: .seconds(60))
        schedule.start()
        clock.advance(by: .seconds(3))
        schedule.dueNow()
        #expect(schedule.isDue)
        schedule.start()
        #expect(schedule.timeUntilDue == .seconds(60))
    }
}
