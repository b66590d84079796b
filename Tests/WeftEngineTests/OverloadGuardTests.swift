import Foundation
import Synchronization
import Testing
@testable import WeftEngine

/// A clock the test moves by hand (monotonic nanoseconds).
private final class ManualClock: Sendable {
    private let value = Atomic<UInt64>(1_000_000_000)
    func advance(ms: UInt64) { value.add(ms * 1_000_000, ordering: .relaxed) }
    var now: @Sendable () -> UInt64 { { [self] in self.value.load(ordering: .relaxed) } }
}

@Suite("overload guard (admission control)")
struct OverloadGuardTests {
    private func makeGuard(_ configure: (inout AdmissionLimits) -> Void = { _ in }) -> (OverloadGuard, ManualClock) {
        let clock = ManualClock()
        var limits = AdmissionLimits()
        configure(&limits)
        return (OverloadGuard(limits: limits, now: clock.now), clock)
    }

    @Test("nothing observed: everything is admitted")
    func idle() {
        let (guardian, _) = makeGuard()
        #expect(guardian.check() == nil)
    }

    @Test("a window whose every leased task waited past the target refuses new work, with a retry-after of that wait")
    func standingQueue() throws {
        let (guardian, clock) = makeGuard()
        for _ in 0..<5 {
            guardian.observeTaskWait(2.4)
            clock.advance(ms: 20)
        }
        // Still inside the first window: not judged yet.
        #expect(guardian.check() == nil)
        clock.advance(ms: 30)
        guardian.observeTaskWait(2.0)  // closes the window (shortest 2.4 s > 100 ms)
        let refusal = try #require(guardian.check())
        #expect(refusal.reason == .taskWait)
        #expect(refusal.retryAfter == 3)  // ceil(2.4)
        #expect(refusal.description.contains("2400 ms"))
    }

    @Test("a burst, where some tasks still went straight through, is not a standing queue")
    func burst() {
        let (guardian, clock) = makeGuard()
        guardian.observeTaskWait(0.9)
        guardian.observeTaskWait(0.002)  // one lucky task: the queue is not standing
        guardian.observeTaskWait(0.8)
        clock.advance(ms: 101)
        guardian.observeTaskWait(0.7)
        #expect(guardian.check() == nil)
    }

    @Test("a drained queue admits again at once, whatever the window said")
    func drained() throws {
        let (guardian, clock) = makeGuard()
        guardian.observeTaskWait(1)
        clock.advance(ms: 150)
        guardian.observeTaskWait(1)
        #expect(try #require(guardian.check()).reason == .taskWait)
        guardian.observeTaskWait(0.5, drained: true)
        #expect(guardian.check() == nil)
    }

    @Test("a ready queue that stops being leased from keeps its verdict until it drains; a quiet commit queue clears")
    func stale() throws {
        let (guardian, clock) = makeGuard()
        guardian.observeTaskWait(1)
        clock.advance(ms: 150)
        guardian.observeTaskWait(1)
        #expect(guardian.check()?.reason == .taskWait)
        // No slot freed for seconds (workers busy, or starved of CPU): the backlog stands.
        clock.advance(ms: 5000)
        #expect(guardian.check()?.reason == .taskWait)
        guardian.observeTaskWait(0, drained: true)
        #expect(guardian.check() == nil)

        guardian.observeCommitWait(1)
        clock.advance(ms: 150)
        guardian.observeCommitWait(1)
        #expect(guardian.check()?.reason == .commitWait)
        clock.advance(ms: 1100)
        #expect(guardian.check() == nil)
    }

    @Test("the commit queue is judged the same way")
    func commitQueue() throws {
        let (guardian, clock) = makeGuard { $0.commitWaitTarget = .milliseconds(50) }
        guardian.observeCommitWait(0.2)
        clock.advance(ms: 120)
        guardian.observeCommitWait(0.3)
        let refusal = try #require(guardian.check())
        #expect(refusal.reason == .commitWait)
        #expect(refusal.retryAfter == 1)  // at least a second
    }

    @Test("executions in flight at the cap are refused, naming the flag; one finishing admits again")
    func inFlightCap() throws {
        let (guardian, _) = makeGuard { $0.maxExecutionsInFlight = 3 }
        for _ in 0..<3 { guardian.executionStarted() }
        let refusal = try #require(guardian.check())
        #expect(refusal.reason == .inFlight)
        #expect(refusal.description.contains("--max-executions-in-flight"))
        #expect(refusal.retryAfter >= 1)
        guardian.executionFinished()
        #expect(guardian.check() == nil)
        guardian.executionStarted()
        guardian.executionNotStarted()
        #expect(guardian.executionsInFlight == 2)
        guardian.setInFlight(10)
        #expect(guardian.check()?.reason == .inFlight)
    }

    @Test("retry-after is the time the work in flight needs at the recent completion rate")
    func retryAfterFromCompletionRate() throws {
        let (guardian, clock) = makeGuard()
        for _ in 0..<40 { guardian.executionStarted() }
        guardian.executionFinished()  // starts the rate's clock
        clock.advance(ms: 1000)
        for _ in 0..<20 { guardian.executionFinished() }  // 20 in a second (EWMA from 0: 10/s)
        clock.advance(ms: 1000)
        guardian.executionFinished()  // folds that second in
        guardian.observeTaskWait(0.5)
        clock.advance(ms: 150)
        guardian.observeTaskWait(0.5)
        let refusal = try #require(guardian.check())
        // 18 in flight at ~10/s (a second of 1 since folds in as the clock moves): about 2 s, never under the queue's own wait.
        #expect(refusal.retryAfter >= 2 && refusal.retryAfter <= 4)
    }

    @Test("with every signal off nothing is refused")
    func off() {
        let clock = ManualClock()
        let guardian = OverloadGuard(limits: .off, now: clock.now)
        for _ in 0..<1000 { guardian.executionStarted() }
        guardian.observeTaskWait(100)
        clock.advance(ms: 500)
        guardian.observeTaskWait(100)
        guardian.observeCommitWait(100)
        clock.advance(ms: 500)
        guardian.observeCommitWait(100)
        #expect(guardian.check() == nil)
    }
}
