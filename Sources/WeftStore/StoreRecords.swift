public import Foundation

/// The records the store keeps. Plain values, independent of protobuf and of
/// the backend, so the engine and the handlers never see SQL rows.

public struct UserRecord: Sendable, Hashable {
    public var id: String
    public var email: String
    public var name: String
    /// `scrypt$N$r$p$salt$hash` (see PasswordHasher); never leaves the server.
    public var passwordHash: String
    public var createdAt: Date
    public var updatedAt: Date

    public init(id: String, email: String, name: String, passwordHash: String, createdAt: Date, updatedAt: Date) {
        self.id = id
        self.email = email
        self.name = name
        self.passwordHash = passwordHash
        self.createdAt = createdAt
        self.updatedAt = updatedAt
    }
}

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
    /// The task type ("http", "noop", ...): the seed's `action`.
    public var action: String
    public var config: JSONValue
    public var dependsOn: [String]
    public var retry: RetryPolicyRecord?
    public var timeoutMs: Int64?
    public var createdAt: Date
    public var updatedAt: Date

    public init(
        id: String, workflowId: String, key: String, name: String, description: String, action: String,
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

public struct WorkflowRecord: Sendable, Hashable {
    public var id: String
    public var ownerId: String
    public var name: String
    public var description: String
    /// 1 on create, +1 on every change; the optimistic-concurrency revision.
    public var version: Int
    public var createdAt: Date
    public var updatedAt: Date
    public var deletedAt: Date?
    /// In definition order.
    public var tasks: [TaskRecord]
    /// The role of the user a listing or search was made for (not stored).
    public var callerRole: WorkflowRole?

    public init(
        id: String, ownerId: String, name: String, description: String, version: Int, createdAt: Date,
        updatedAt: Date, deletedAt: Date? = nil, tasks: [TaskRecord]
    ) {
        self.id = id
        self.ownerId = ownerId
        self.name = name
        self.description = description
        self.version = version
        self.createdAt = createdAt
        self.updatedAt = updatedAt
        self.deletedAt = deletedAt
        self.tasks = tasks
    }

    /// The opaque revision tag clients send back (`etag`, HTTP `If-Match`).
    public var etag: String { "\(version)" }
}

/// A stored snapshot of a workflow definition.
public struct WorkflowVersionRecord: Sendable, Hashable {
    public var id: String
    public var workflowId: String
    public var version: Int
    public var name: String
    public var description: String
    public var tasks: [TaskRecord]
    public var label: String
    public var createdBy: String
    public var createdAt: Date
}

/// A user's role on a workflow, weakest first.
public enum WorkflowRole: String, Sendable, Comparable, CaseIterable {
    case viewer
    case editor
    case owner

    private var rank: Int {
        switch self {
        case .viewer: return 0
        case .editor: return 1
        case .owner: return 2
        }
    }

    public static func < (lhs: WorkflowRole, rhs: WorkflowRole) -> Bool { lhs.rank < rhs.rank }
}

public struct CollaboratorRecord: Sendable, Hashable {
    public var workflowId: String
    public var userId: String
    public var role: WorkflowRole
    public var addedAt: Date

    public init(workflowId: String, userId: String, role: WorkflowRole, addedAt: Date) {
        self.workflowId = workflowId
        self.userId = userId
        self.role = role
        self.addedAt = addedAt
    }
}

/// One page of a keyset- or offset-paginated listing.
public struct Page<Item: Sendable>: Sendable {
    public var items: [Item]
    /// Where the next page starts; nil on the last page. Opaque to clients
    /// (the API layer wraps it in a page token).
    public var nextCursor: String?

    public init(items: [Item], nextCursor: String?) {
        self.items = items
        self.nextCursor = nextCursor
    }
}

public struct WorkflowQuery: Sendable, Hashable {
    /// Only workflows this user owns or collaborates on.
    public var visibleTo: String
    public var limit: Int
    /// From a previous page's `nextCursor`.
    public var cursor: String?
    public var namePrefix: String?
    public var ownerId: String?
    public var createdAfter: Date?
    public var createdBefore: Date?
    public var includeTasks: Bool

    public init(
        visibleTo: String, limit: Int, cursor: String? = nil, namePrefix: String? = nil, ownerId: String? = nil,
        createdAfter: Date? = nil, createdBefore: Date? = nil, includeTasks: Bool = true
    ) {
        self.visibleTo = visibleTo
        self.limit = limit
        self.cursor = cursor
        self.namePrefix = namePrefix
        self.ownerId = ownerId
        self.createdAfter = createdAfter
        self.createdBefore = createdBefore
        self.includeTasks = includeTasks
    }
}

public struct SearchHit: Sendable {
    /// Without tasks.
    public var workflow: WorkflowRecord
    /// Higher is better.
    public var score: Double
    public var snippet: String
}

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


extension Date {
    /// Now, truncated to the millisecond: the precision the store keeps, so
    /// a timestamp reads back exactly as it was first returned.
    public static var nowMillis: Date {
        Date(timeIntervalSince1970: (Date().timeIntervalSince1970 * 1000).rounded(.down) / 1000)
    }
}
