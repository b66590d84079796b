public import Foundation

public struct WorkflowRecord: Sendable, Hashable {
    public var id: String
    public var ownerId: String
    /// The organization it belongs to ("" for records made before there
    /// were organizations, in tests).
    public var orgId: String = ""
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

    /// What a rollback writes (every store alike): the snapshot's name,
    /// description and tasks, the tasks re-homed to this workflow and
    /// stamped `now`.
    public mutating func restore(_ snapshot: WorkflowVersionRecord, at now: Date) {
        name = snapshot.name
        description = snapshot.description
        updatedAt = now
        tasks = snapshot.tasks.map { task in
            var task = task
            task.workflowId = id
            task.updatedAt = now
            return task
        }
    }
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

    public init(
        id: String, workflowId: String, version: Int, name: String, description: String, tasks: [TaskRecord],
        label: String, createdBy: String, createdAt: Date
    ) {
        self.id = id
        self.workflowId = workflowId
        self.version = version
        self.name = name
        self.description = description
        self.tasks = tasks
        self.label = label
        self.createdBy = createdBy
        self.createdAt = createdAt
    }
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

    public init(workflow: WorkflowRecord, score: Double, snippet: String) {
        self.workflow = workflow
        self.score = score
        self.snippet = snippet
    }
}
