public import Foundation

/// One entry of an execution's log (the log store).
public struct LogRecord: Sendable, Hashable {
    public enum Level: Int, Sendable, Comparable {
        case info = 1
        case warning = 2
        case error = 3
        public static func < (lhs: Level, rhs: Level) -> Bool { lhs.rawValue < rhs.rawValue }
    }

    public var executionId: String
    /// 1, 2, 3, ... per execution, assigned by the log store.
    public var sequence: Int64
    public var taskId: String?
    public var level: Level
    public var message: String
    public var createdAt: Date

    public init(
        executionId: String, sequence: Int64 = 0, taskId: String?, level: Level, message: String, createdAt: Date
    ) {
        self.executionId = executionId
        self.sequence = sequence
        self.taskId = taskId
        self.level = level
        self.message = message
        self.createdAt = createdAt
    }
}

public struct LogQuery: Sendable, Hashable {
    public var executionId: String
    public var afterSequence: Int64
    public var limit: Int
    public var taskId: String?
    public var minLevel: LogRecord.Level?

    public init(executionId: String, afterSequence: Int64 = 0, limit: Int, taskId: String? = nil, minLevel: LogRecord.Level? = nil) {
        self.executionId = executionId
        self.afterSequence = afterSequence
        self.limit = limit
        self.taskId = taskId
        self.minLevel = minLevel
    }
}
