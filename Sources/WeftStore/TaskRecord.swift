public import Foundation

public struct RetryPolicyRecord: Sendable, Hashable, Codable {
    public var maxAttempts: Int
    public var initialBackoffMs: Int64
    public var maxBackoffMs: Int64
    public var backoffMultiplier: Double
    public var jitter: Double
    public var retryableErrors: [String]
    /// Bounds the whole task, all attempts and backoffs included.
    public var totalTimeoutMs: Int64?
    /// A task that fails for good lets the execution go on.
    public var continueOnFailure: Bool?

    public init(
        maxAttempts: Int, initialBackoffMs: Int64, maxBackoffMs: Int64, backoffMultiplier: Double, jitter: Double,
        retryableErrors: [String], totalTimeoutMs: Int64? = nil, continueOnFailure: Bool? = nil
    ) {
        self.totalTimeoutMs = totalTimeoutMs
        self.continueOnFailure = continueOnFailure
        self.maxAttempts = maxAttempts
        self.initialBackoffMs = initialBackoffMs
        self.maxBackoffMs = maxBackoffMs
        self.backoffMultiplier = backoffMultiplier
        self.jitter = jitter
        self.retryableErrors = retryableErrors
    }
}

public struct TaskRecord: Sendable, Hashable {
    public var id: String
    public var workflowId: String
    /// Reference name inside the workflow (dependencies and expressions use it).
    public var key: String
    public var name: String
    public var description: String
    /// The task type: the seed's `action`.
    public var action: TaskType
    public var config: JSONValue
    public var dependsOn: [String]
    public var retry: RetryPolicyRecord?
    public var timeoutMs: Int64?
    public var createdAt: Date
    public var updatedAt: Date

    public init(
        id: String, workflowId: String, key: String, name: String, description: String, action: TaskType,
        config: JSONValue = .emptyObject, dependsOn: [String] = [], retry: RetryPolicyRecord? = nil,
        timeoutMs: Int64? = nil, createdAt: Date, updatedAt: Date
    ) {
        self.id = id
        self.workflowId = workflowId
        self.key = key
        self.name = name
        self.description = description
        self.action = action
        self.config = config
        self.dependsOn = dependsOn
        self.retry = retry
        self.timeoutMs = timeoutMs
        self.createdAt = createdAt
        self.updatedAt = updatedAt
    }
}
