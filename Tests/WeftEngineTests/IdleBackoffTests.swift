import Testing

@testable import WeftEngine

@Suite("Idle backoff")
struct IdleBackoffTests {
    @Test("base for `patience` empty looks, then doubling up to the cap; a reset starts over")
    func schedule() {
        var backoff = IdleBackoff(base: .milliseconds(250), cap: .seconds(1), patience: 3)
        let waits = (0..<7).map { _ in backoff.nextWait() }
        #expect(waits == [.milliseconds(250), .milliseconds(250), .milliseconds(250),
                          .milliseconds(500), .seconds(1), .seconds(1), .seconds(1)])
        backoff.reset()
        #expect(backoff.nextWait() == .milliseconds(250))
    }

    @Test("a cap below the base is the base; a long idle never overflows")
    func bounds() {
        var backoff = IdleBackoff(base: .milliseconds(200), cap: .milliseconds(100), patience: 0)
        #expect(backoff.nextWait() == .milliseconds(200))
        var long = IdleBackoff(base: .milliseconds(200), cap: .milliseconds(800), patience: 0)
        for _ in 0..<10_000 { _ = long.nextWait() }
        #expect(long.nextWait() == .milliseconds(800))
    }
}
