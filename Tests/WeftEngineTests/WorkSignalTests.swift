import Foundation
import Testing
@testable import WeftEngine

@Suite("work signal")
struct WorkSignalTests {
    @Test("a wait ends when the queue is notified, or at once if it was since the generation was read")
    func notify() async {
        let signal = WorkSignal()
        let before = signal.generation("q")
        signal.notify("q")
        await signal.wait("q", since: before, timeout: .seconds(60))  // returns at once
        let generation = signal.generation("q")
        #expect(generation == before + 1)
        await withTaskGroup(of: Void.self) { group in
            group.addTask { await signal.wait("q", since: generation, timeout: .seconds(60)) }
            while signal.waiting("q") == 0 { await Task.yield() }
            signal.notify("q")
        }
        #expect(signal.waiting("q") == 0)
        // Another queue's notify does not end a wait; the timeout does, with
        // the generation unchanged (nobody notified).
        let quiet = signal.generation("q")
        signal.notify("other")
        await signal.wait("q", since: quiet, timeout: .milliseconds(20))
        #expect(signal.generation("q") == quiet && signal.waiting("q") == 0)
    }

    @Test("cancelling the waiting task ends its wait and leaves no waiter behind")
    func cancel() async {
        let signal = WorkSignal()
        let waiter = Task { await signal.wait("q", since: signal.generation("q"), timeout: .seconds(3600)) }
        while signal.waiting("q") == 0 { await Task.yield() }
        waiter.cancel()
        await waiter.value
        #expect(signal.waiting("q") == 0)
    }

    @Test("delayed wake-ups come from one timer loop, each ends its wait, and the loop stops on finish")
    func delayed() async {
        let signal = WorkSignal()
        await withTaskGroup(of: Void.self) { group in
            group.addTask { await signal.runTimer() }
            let late = signal.generation("late")
            let soon = signal.generation("soon")
            signal.notify("late", at: Date().addingTimeInterval(0.2))
            signal.notify("soon", at: Date().addingTimeInterval(0.01))
            #expect(signal.scheduledWakeUps == 2)
            // Each wait ends by the wake-up, long before its timeout.
            await signal.wait("soon", since: soon, timeout: .seconds(60))
            #expect(signal.generation("soon") == soon + 1)
            await signal.wait("late", since: late, timeout: .seconds(60))
            #expect(signal.generation("late") == late + 1)
            #expect(signal.scheduledWakeUps == 0)
            signal.finishTimer()
        }
    }

    @Test("the timer's heap gives entries back earliest first, whatever the order they came in")
    func heapOrder() {
        var heap = MinHeap<Int>()
        var generator = SystemRandomNumberGenerator()
        let values = (0..<500).map { _ in Int.random(in: 0..<100, using: &generator) }
        for value in values { heap.insert(value) }
        #expect(heap.count == 500 && heap.min == values.min())
        var out: [Int] = []
        while let next = heap.removeMin() { out.append(next) }
        #expect(out == values.sorted() && heap.count == 0 && heap.min == nil)
    }
}
