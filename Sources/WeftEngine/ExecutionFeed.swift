public import Foundation
public import WeftStore
import Synchronization

/// What watchers of one execution hear, after it is durable.
public enum ExecutionUpdate: Sendable {
    /// A committed state change: the execution's status after it and, for a
    /// task change, the task's new state.
    case state(status: ExecutionStatus, task: TaskExecutionRecord?, message: String, at: Date)
    /// Log entries as stored (with their sequence numbers).
    case logs([LogRecord])
    /// The execution ended (sent after its final state is committed).
    case finished(status: ExecutionStatus)
    /// Every log entry of the execution up to its end is stored.
    case logsComplete
}

/// Fans out committed updates of executions to their watchers
/// (WatchExecution, TailLogs). Publishing to an execution nobody watches
/// costs one dictionary lookup under a lock.
public final class ExecutionFeed: Sendable {
    private struct State {
        var subscribers: [String: [UInt64: AsyncStream<ExecutionUpdate>.Continuation]] = [:]
        var nextId: UInt64 = 0
    }

    private let state = Mutex(State())

    public init() {}

    /// Updates of one execution from now on; the stream ends when the
    /// subscriber stops iterating or `cancel` is called. Buffers at most
    /// 10,000 updates for a slow reader (then the oldest are dropped; watchers
    /// re-read the store when they see a gap in sequence numbers).
    public func subscribe(_ executionId: String) -> (AsyncStream<ExecutionUpdate>, cancel: @Sendable () -> Void) {
        let (stream, continuation) = AsyncStream<ExecutionUpdate>.makeStream(bufferingPolicy: .bufferingNewest(10_000))
        let id = state.withLock { state -> UInt64 in
            state.nextId &+= 1
            state.subscribers[executionId, default: [:]][state.nextId] = continuation
            return state.nextId
        }
        let cancel: @Sendable () -> Void = { [weak self] in
            self?.state.withLock { state in
                state.subscribers[executionId]?[id] = nil
                if state.subscribers[executionId]?.isEmpty == true { state.subscribers[executionId] = nil }
            }
            continuation.finish()
        }
        continuation.onTermination = { _ in cancel() }
        return (stream, cancel)
    }

    public func hasSubscribers(_ executionId: String) -> Bool {
        state.withLock { $0.subscribers[executionId] != nil }
    }

    public func publish(_ executionId: String, _ update: ExecutionUpdate) {
        guard let targets = state.withLock({ $0.subscribers[executionId].map { Array($0.values) } }) else { return }
        for continuation in targets { continuation.yield(update) }
    }

    /// Number of open subscriptions (for tests and metrics).
    public var subscriptionCount: Int {
        state.withLock { $0.subscribers.values.reduce(0) { $0 + $1.count } }
    }
}
