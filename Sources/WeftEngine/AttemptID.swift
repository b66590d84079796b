public import WeftStore

/// One attempt of one task of one execution: the key of everything the
/// engine tracks per attempt (a running in-process job, its lease, the span
/// of an external attempt).
public struct AttemptID: Hashable, Sendable, CustomStringConvertible {
    public let executionId: String
    public let taskKey: String
    public let attempt: Int

    public init(executionId: String, taskKey: String, attempt: Int) {
        self.executionId = executionId
        self.taskKey = taskKey
        self.attempt = attempt
    }

    /// The attempt a queue item stands for.
    public init(_ item: QueueItem) {
        self.init(executionId: item.executionId, taskKey: item.taskKey, attempt: item.attempt)
    }

    public var description: String { "\(executionId)/\(taskKey)#\(attempt)" }
}
