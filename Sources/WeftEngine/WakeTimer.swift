import Foundation
import Synchronization

/// Wakes the waiters of a queue when its delayed items become ready
/// (retry backoffs, delays, timers): one heap of due times and one loop
/// (`run()`), instead of a sleeping task per delayed item. The store stays
/// the truth: a wake-up only makes a waiter look sooner than its poll
/// interval would.
final class WakeTimer: Sendable {
    private struct Entry: Comparable {
        let due: ContinuousClock.Instant
        let queue: String
        static func < (lhs: Entry, rhs: Entry) -> Bool { lhs.due < rhs.due }
        static func == (lhs: Entry, rhs: Entry) -> Bool { lhs.due == rhs.due && lhs.queue == rhs.queue }
    }

    private struct State {
        var heap = MinHeap<Entry>()
        var sleeper: CheckedContinuation<Void, Never>?
        /// Set to end the loop's current wait (an earlier entry, or finish).
        var interrupt = false
        var finishing = false
    }

    private let state = Mutex(State())

    init() {}

    /// Fires `queue` at `date` (a wall-clock time, as items' `readyAt`).
    func schedule(_ queue: String, at date: Date) {
        let due = ContinuousClock.now + .milliseconds(Int64((date.timeIntervalSinceNow * 1000).rounded(.up)))
        let sleeper = state.withLock { state -> CheckedContinuation<Void, Never>? in
            let earlier = state.heap.min.map { due < $0.due } ?? true
            state.heap.insert(Entry(due: due, queue: queue))
            guard earlier else { return nil }
            state.interrupt = true
            defer { state.sleeper = nil }
            return state.sleeper
        }
        sleeper?.resume()
    }

    var pending: Int { state.withLock { $0.heap.count } }

    func finish() {
        let sleeper = state.withLock { state -> CheckedContinuation<Void, Never>? in
            state.finishing = true
            state.interrupt = true
            defer { state.sleeper = nil }
            return state.sleeper
        }
        sleeper?.resume()
    }

    /// Fires due entries (`fire` gets their queues), sleeps until the next
    /// one (or an earlier insert), until `finish()`.
    func run(fire: (Set<String>) -> Void) async {
        while true {
            let now = ContinuousClock.now
            let (due, next, done) = state.withLock { state -> (Set<String>, ContinuousClock.Instant?, Bool) in
                var due: Set<String> = []
                while let head = state.heap.min, head.due <= now {
                    due.insert(head.queue)
                    state.heap.removeMin()
                }
                state.interrupt = false
                return (due, state.heap.min?.due, state.finishing)
            }
            if !due.isEmpty { fire(due) }
            if done { return }
            await sleep(until: next)
        }
    }

    /// Sleeps until `deadline` (forever when nil) or an interrupt.
    private func sleep(until deadline: ContinuousClock.Instant?) async {
        await withTaskGroup(of: Void.self) { group in
            if let deadline {
                group.addTask {
                    try? await Task.sleep(until: deadline, clock: .continuous)
                }
            }
            group.addTask {
                await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                    let now = self.state.withLock { state -> Bool in
                        if state.interrupt { return true }
                        state.sleeper = continuation
                        return false
                    }
                    if now { continuation.resume() }
                }
            }
            await group.next()
            // Whichever ended first, end the other: cancel the sleep, and
            // resume the continuation (setting `interrupt` first, in case it
            // has not registered yet).
            group.cancelAll()
            let sleeper = state.withLock { state -> CheckedContinuation<Void, Never>? in
                state.interrupt = true
                defer { state.sleeper = nil }
                return state.sleeper
            }
            sleeper?.resume()
        }
    }
}

/// A binary min-heap.
struct MinHeap<Element: Comparable> {
    private var items: [Element] = []

    var count: Int { items.count }
    var min: Element? { items.first }

    mutating func insert(_ element: Element) {
        items.append(element)
        var child = items.count - 1
        while child > 0 {
            let parent = (child - 1) / 2
            guard items[child] < items[parent] else { break }
            items.swapAt(child, parent)
            child = parent
        }
    }

    @discardableResult
    mutating func removeMin() -> Element? {
        guard !items.isEmpty else { return nil }
        items.swapAt(0, items.count - 1)
        let min = items.removeLast()
        var parent = 0
        while true {
            let left = 2 * parent + 1
            let right = left + 1
            var smallest = parent
            if left < items.count, items[left] < items[smallest] { smallest = left }
            if right < items.count, items[right] < items[smallest] { smallest = right }
            if smallest == parent { break }
            items.swapAt(parent, smallest)
            parent = smallest
        }
        return min
    }
}
