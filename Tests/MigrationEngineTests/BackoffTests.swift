import MigrationEngine
import Testing

@Suite("Backoff")
struct BackoffTests {
    @Test("delays grow by the factor up to the cap, and reset starts over")
    func growth() {
        var backoff = Backoff.databaseWait
        let delays = (0..<6).map { _ in backoff.next() }
        #expect(delays == [.milliseconds(250), .milliseconds(500), .seconds(1), .seconds(2), .seconds(2), .seconds(2)])
        backoff.reset()
        #expect(backoff.next() == .milliseconds(250))
        var reconnect = Backoff.reconnect
        #expect((0..<7).map { _ in reconnect.next() }.last == .seconds(5))
    }

    @Test("jitter spreads each delay within ± the fraction, around a base that grows by 1.5 to 1 s")
    func jitter() {
        var low = Backoff.lockPoll
        var high = Backoff.lockPoll
        var drawn: [ClosedRange<Double>] = []
        let lows = (0..<10).map { _ in low.next { range in drawn.append(range); return range.lowerBound } }
        let highs = (0..<10).map { _ in high.next { $0.upperBound } }
        #expect(drawn.allSatisfy { $0 == 0.5...1.5 })
        #expect(lows.first == .milliseconds(25) && highs.first == .milliseconds(75))
        #expect(lows[1] == .milliseconds(37.5) && highs[1] == .milliseconds(112.5))
        #expect(lows.last == .milliseconds(500) && highs.last == .milliseconds(1500))
        #expect(low.current == .seconds(1))
    }
}
