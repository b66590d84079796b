public import Foundation
import Synchronization

/// Wakes whoever waits for work on a queue (in-process workers, long-polling
/// external workers) as soon as an item is committed, instead of polling the
/// store. A waiter first reads the queue's generation, then looks for work,
/// then waits only if the generation is unchanged, so a notify between the
/// look and the wait is never lost. Waits always end by a timeout as well:
/// the store stays the truth (items made ready by time, another process).
///
/// Delayed wake-ups (`notify(_:at:)`) go through one `WakeTimer`, whose
/// loop the engine runs.
public final class WorkSignal: Sendable {
    private struct Waiter {
        let id: UInt64
        let continuation: CheckedContinuation<Void, Never>
    }

    private struct State {
        var generations: [String: UInt64] = [:]
        var waiters: [String: [Waiter]] = [:]
        var nextId: UInt64 = 0
        /// Waits whose timeout or cancel came before they registered.
        var ended: Set<UInt64> = []
    }

    private let state = Mutex(State())
    private let timer = WakeTimer()

    public init() {}

    /// The delayed wake-ups' loop (run by the engine until `finishTimer`).
    func runTimer() async {
        await timer.run { queues in
            for queue in queues { notify(queue) }
        }
    }

    func finishTimer() { timer.finish() }

    /// Waiters of `queue` now.
    func waiting(_ queue: String) -> Int { state.withLock { $0.waiters[queue]?.count ?? 0 } }

    /// Wake-ups scheduled and not yet due.
    var scheduledWakeUps: Int { timer.pending }

    public func generation(_ queue: String) -> UInt64 {
        state.withLock { $0.generations[queue, default: 0] }
    }

    /// Wakes every waiter of `queue`.
    public func notify(_ queue: String) {
        let woken = state.withLock { state -> [Waiter] in
            state.generations[queue, default: 0] &+= 1
            return state.waiters.removeValue(forKey: queue) ?? []
        }
        for waiter in woken { waiter.continuation.resume() }
    }

    /// Wakes the waiters of `queue` at `date` (a delayed item becomes ready).
    public func notify(_ queue: String, at date: Date) {
        guard date.timeIntervalSinceNow > 0 else { return notify(queue) }
        timer.schedule(queue, at: date)
    }

    /// Returns when `queue` is notified after `generation` was read, or after
    /// `timeout`, or at once if it already was, or when the task is cancelled.
    public func wait(_ queue: String, since generation: UInt64, timeout: Duration) async {
        let id = state.withLock { state -> UInt64 in
            state.nextId &+= 1
            return state.nextId
        }
        await withTaskGroup(of: Void.self) { group in
            group.addTask {
                try? await Task.sleep(for: timeout)
            }
            group.addTask {
                await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                    let now = self.state.withLock { state -> Bool in
                        if state.ended.remove(id) != nil || state.generations[queue, default: 0] != generation { return true }
                        state.waiters[queue, default: []].append(Waiter(id: id, continuation: continuation))
                        return false
                    }
                    if now { continuation.resume() }
                }
            }
            await group.next()
            group.cancelAll()
            resume(queue, id: id)
        }
        // Forget an early end that found nothing to resume.
        state.withLock { _ = $0.ended.remove(id) }
    }

    private func resume(_ queue: String, id: UInt64) {
        let waiter = state.withLock { state -> Waiter? in
            guard var list = state.waiters[queue], let index = list.firstIndex(where: { $0.id == id }) else {
                state.ended.insert(id)
                return nil
            }
            let waiter = list.remove(at: index)
            state.waiters[queue] = list.isEmpty ? nil : list
            return waiter
        }
        waiter?.continuation.resume()
    }
}
