public import Foundation
public import WeftStore

/// A durable timer of the state machine as a queue item on the timers
/// queue, and back. The item's task key carries which timer it is; this is
/// the one place that knows the encoding ("~attempt:<task>", "~task:<task>",
/// "~execution"), which the store has always held. Stores know only that
/// items on `QueueItem.timersQueue` are timers (both stores tell timer items
/// from task items by their queue).
///
/// Retry backoffs are not timers here: a retry is the task's own queue item
/// with a later `readyAt`.
public enum TimerItem: Sendable, Hashable {
    case attemptTimeout(task: String, attempt: Int)
    case taskTimeout(task: String)
    case executionTimeout

    /// The queue item of a state-machine timer (nil for a retry).
    public init?(_ timer: ExecutionStateMachine.Timer) {
        switch timer {
        case .retry: return nil
        case .attemptTimeout(let task, let attempt): self = .attemptTimeout(task: task, attempt: attempt)
        case .taskTimeout(let task): self = .taskTimeout(task: task)
        case .executionTimeout: self = .executionTimeout
        }
    }

    /// The timer a timers-queue item holds; nil for anything else.
    public init?(_ item: QueueItem) {
        let key = item.taskKey
        if key == Self.executionKey {
            self = .executionTimeout
        } else if key.hasPrefix(Self.attemptPrefix) {
            self = .attemptTimeout(task: String(key.dropFirst(Self.attemptPrefix.count)), attempt: item.attempt)
        } else if key.hasPrefix(Self.taskPrefix) {
            self = .taskTimeout(task: String(key.dropFirst(Self.taskPrefix.count)))
        } else {
            return nil
        }
    }

    static let attemptPrefix = "~attempt:"
    static let taskPrefix = "~task:"
    static let executionKey = "~execution"

    /// The state-machine timer to fire.
    public var timer: ExecutionStateMachine.Timer {
        switch self {
        case .attemptTimeout(let task, let attempt): .attemptTimeout(task: task, attempt: attempt)
        case .taskTimeout(let task): .taskTimeout(task: task)
        case .executionTimeout: .executionTimeout
        }
    }

    /// The timers-queue item that fires at `due`.
    public func queueItem(executionId: String, due: Date) -> QueueItem {
        switch self {
        case .attemptTimeout(let task, let attempt):
            QueueItem(queue: EngineQueues.timers, executionId: executionId, taskKey: Self.attemptPrefix + task, attempt: attempt, readyAt: due)
        case .taskTimeout(let task):
            QueueItem(queue: EngineQueues.timers, executionId: executionId, taskKey: Self.taskPrefix + task, attempt: 0, readyAt: due)
        case .executionTimeout:
            QueueItem(queue: EngineQueues.timers, executionId: executionId, taskKey: Self.executionKey, attempt: 0, readyAt: due)
        }
    }
}
