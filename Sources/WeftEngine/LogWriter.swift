public import Foundation
public import WeftStore
import Synchronization
import Tracing

/// Appends execution log entries in batches: callers hand entries over and
/// go on (no await); one writer task stores whatever has gathered in one
/// transaction, then tells the feed (with the sequence numbers the store
/// assigned). Logs are not part of the execution's durable state: a crash
/// can lose the last few milliseconds of lines, never a state change.
public final class LogWriter: Sendable {
    private struct State {
        var pending: [LogRecord] = []
        /// Executions whose final line is in `pending`.
        var completing: [String] = []
        var writing = false
        /// Entries appended and entries handled (stored or failed) so far.
        var appended = 0
        var handled = 0
        var flushWaiters: [(target: Int, waiter: CheckedContinuation<Void, Never>)] = []
        var failures = 0
    }

    private let store: any LogStore
    private let feed: ExecutionFeed
    private let state = Mutex(State())
    private let maxBatch = 2000

    public init(store: any LogStore, feed: ExecutionFeed) {
        self.store = store
        self.feed = feed
    }

    /// Batches that could not be stored (their lines are lost).
    public var failures: Int { state.withLock { $0.failures } }

    /// Queues entries for writing. `final`: the execution's log ends with them.
    public func append(_ entries: [LogRecord], final executionId: String? = nil) {
        guard !entries.isEmpty || executionId != nil else { return }
        let start = state.withLock { state -> Bool in
            state.pending.append(contentsOf: entries)
            state.appended += entries.count
            if let executionId { state.completing.append(executionId) }
            guard !state.writing else { return false }
            state.writing = true
            return true
        }
        // The writer's own task, never part of the trace of whoever logged first.
        if start { InstrumentationContext.withValue(nil) { Task { await self.drain() } } }
    }

    /// Returns once everything appended before the call is stored.
    public func flush() async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let done = state.withLock { state -> Bool in
                guard state.handled < state.appended else { return true }
                state.flushWaiters.append((state.appended, continuation))
                return false
            }
            if done { continuation.resume() }
        }
    }

    private func drain() async {
        while true {
            let (batch, ended) = state.withLock { state -> ([LogRecord], [String]) in
                let batch = Array(state.pending.prefix(maxBatch))
                state.pending.removeFirst(batch.count)
                var ended: [String] = []
                if state.pending.isEmpty {
                    ended = state.completing
                    state.completing.removeAll()
                }
                if batch.isEmpty && ended.isEmpty { state.writing = false }
                return (batch, ended)
            }
            if batch.isEmpty && ended.isEmpty { return }
            var stored: [LogRecord] = []
            if !batch.isEmpty {
                do {
                    stored = try await store.append(batch)
                } catch {
                    state.withLock { $0.failures += 1 }
                }
            }
            var byExecution: [String: [LogRecord]] = [:]
            for entry in stored { byExecution[entry.executionId, default: []].append(entry) }
            for (executionId, entries) in byExecution { feed.publish(executionId, .logs(entries)) }
            for executionId in ended { feed.publish(executionId, .logsComplete) }
            let done = state.withLock { state -> [CheckedContinuation<Void, Never>] in
                state.handled += batch.count
                let handled = state.handled
                let done = state.flushWaiters.filter { $0.target <= handled }.map(\.waiter)
                state.flushWaiters.removeAll { $0.target <= handled }
                return done
            }
            for waiter in done { waiter.resume() }
        }
    }
}
