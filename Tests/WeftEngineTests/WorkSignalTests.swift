import Foundation
import Testing
import WeftEngine

@Suite("work signal")
struct WorkSignalTests {
    @Test("a notify wakes a waiter; one between the look and the wait is not lost; waits end by timeout")
    func wakeups() async {
        let signal = WorkSignal()
        // A notify after the generation was read: the wait returns at once.
        let generation = signal.generation("q")
        signal.notify("q")
        let early = ContinuousClock.now
        await signal.wait("q", since: generation, timeout: .seconds(30))
        #expect(ContinuousClock.now - early < .seconds(5))

        // A waiter is woken by a later notify, long before its timeout.
        let waiting = Task {
            let start = ContinuousClock.now
            await signal.wait("q", since: signal.generation("q"), timeout: .seconds(30))
            return ContinuousClock.now - start
        }
        try? await Task.sleep(for: .milliseconds(50))
        signal.notify("other")  // another queue does not wake it
        signal.notify("q")
        #expect(await waiting.value < .seconds(5))

        // Nobody notifies: the timeout ends the wait.
        let start = ContinuousClock.now
        await signal.wait("q", since: signal.generation("q"), timeout: .milliseconds(50))
        let waited = ContinuousClock.now - start
        #expect(waited >= .milliseconds(40) && waited < .seconds(5))

        // Cancelling the waiting task ends the wait.
        let cancelled = Task { await signal.wait("q", since: signal.generation("q"), timeout: .seconds(30)) }
        try? await Task.sleep(for: .milliseconds(20))
        let before = ContinuousClock.now
        cancelled.cancel()
        await cancelled.value
        #expect(ContinuousClock.now - before < .seconds(5))
    }
}
