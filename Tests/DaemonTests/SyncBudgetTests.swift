@testable import Daemon
import Testing

@Suite("SyncBudget: bounded chunks of a burst, sized to the time budget")
struct SyncBudgetTests {
    let clock = TestClock()

    func budget(max: Int = 1000, seconds: Int64 = 2) -> SyncBudget<TestClock> {
        SyncBudget(clock: clock, maxSize: max, timeBudget: .seconds(seconds))
    }

    @Test("a burst is split into chunks of at most the batch size, lowest ids first, with nothing lost or repeated")
    func chunks() {
        var budget = budget(max: 400)
        var pending = Array(Int64(1)...10_000)
        var chunks: [[Int64]] = []
        while !pending.isEmpty {
            let chunk = budget.chunk(pending)
            budget.started()
            clock.advance(by: .milliseconds(300))
            budget.finished(projects: chunk.count)
            chunks.append(chunk)
            pending.removeFirst(chunk.count)
        }
        #expect(chunks.count == 25)
        #expect(chunks.allSatisfy { $0.count <= 400 })
        #expect(chunks.flatMap { $0 } == Array(Int64(1)...10_000))
        #expect(budget.chunk([1, 2, 3]) == [1, 2, 3], "a short batch is one chunk")
    }

    @Test("a transaction over the budget makes the next one as large as would have fit; never below one project")
    func shrinks() {
        var budget = budget()
        budget.started()
        clock.advance(by: .seconds(6))  // 1000 projects in 6 s: 2 s hold about 333
        budget.finished(projects: 1000)
        #expect(budget.size == 333)
        budget.started()
        clock.advance(by: .seconds(700))
        budget.finished(projects: 333)
        #expect(budget.size == 1, "however slow the server, one project per transaction still makes progress")
    }

    @Test("well under the budget, a full chunk doubles the next one back up to the batch size; a short one does not")
    func grows() {
        var budget = budget()
        budget.started()
        clock.advance(by: .seconds(8))
        budget.finished(projects: 1000)
        #expect(budget.size == 250)
        budget.started()
        clock.advance(by: .milliseconds(1500))  // under the budget but not under half: stays
        budget.finished(projects: 250)
        #expect(budget.size == 250)
        budget.started()
        clock.advance(by: .milliseconds(100))
        budget.finished(projects: 20)  // a few notified projects say nothing about a full chunk
        #expect(budget.size == 250)
        for expected in [500, 1000, 1000] {
            budget.started()
            clock.advance(by: .milliseconds(200))
            budget.finished(projects: budget.size)
            #expect(budget.size == expected)
        }
    }

    @Test("time spent waiting for the lock or in a failed transaction teaches nothing")
    func abandoned() {
        var budget = budget()
        clock.advance(by: .seconds(30))  // waiting for another runner's lock: not started yet
        budget.started()
        clock.advance(by: .milliseconds(500))
        budget.finished(projects: 1000)
        #expect(budget.size == 1000)
        budget.started()
        clock.advance(by: .seconds(60))
        budget.abandoned()
        budget.finished(projects: 1000)
        #expect(budget.size == 1000)
    }
}

@Suite("NotificationBatch: a reconcile's drifted projects and chunked syncing")
struct NotificationBatchDriftTests {
    let clock = TestClock()

    @Test("drifted projects join the batch; notified ones are not counted as drift; the rest of a chunked batch is due at once")
    func drift() {
        var batch = NotificationBatch(clock: clock, gap: .milliseconds(20), maxDelay: .milliseconds(200))
        _ = batch.add(["5"])
        batch.addDrifted([5, 6, 7, 8])
        #expect(batch.ids == [5, 6, 7, 8] && batch.hasDrift)
        #expect(!batch.allDrifted([5, 6]) && batch.allDrifted([6, 7]))
        _ = batch.add(["7"])
        #expect(!batch.allDrifted([6, 7]), "a project notified since is the notification's")
        batch.synced([5, 6])
        #expect(batch.isDue && batch.hasDrift)
        #expect(batch.wait(atMost: .milliseconds(250)) == .zero, "no pause between two chunks of a burst")
        batch.synced([7, 8])
        #expect(batch.isEmpty && !batch.hasDrift)
        #expect(batch.wait(atMost: .milliseconds(250)) == .milliseconds(250))
        batch.addDrifted([9])
        batch.discard()
        #expect(!batch.hasDrift)
    }
}

@Suite("ReconcileSchedule: a reconcile that found the lock busy")
struct ReconcileScheduleLockTests {
    let clock = TestClock()

    @Test("is due again after the retry delay, not an interval later; never later than already due")
    func retry() {
        var schedule = ReconcileSchedule(clock: clock, interval: .seconds(60))
        schedule.start()
        schedule.due(after: .milliseconds(500))
        #expect(schedule.timeUntilDue == .milliseconds(500))
        schedule.dueNow()
        schedule.due(after: .seconds(5))
        #expect(schedule.isDue)
    }
}
