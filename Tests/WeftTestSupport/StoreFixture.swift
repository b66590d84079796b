import Foundation
import WeftSQLite
public import WeftStore

/// One store implementation under test: every protocol it implements, a
/// way to reopen it (a restart: what a new process would see), and cleanup.
public struct StoreFixture: Sendable {
    public let name: String
    public let users: any UserStore
    public let workflows: any WorkflowStore
    public let executions: any ExecutionStore
    public let queue: any QueueStore
    public let logs: any LogStore
    public let orgs: any OrganizationStore
    public let schedules: any ScheduleStore
    public let notifications: any NotificationStore
    public let analytics: any AnalyticsStore
    private let remove: @Sendable () -> Void

    public init(
        name: String, users: any UserStore, workflows: any WorkflowStore, executions: any ExecutionStore,
        queue: any QueueStore, logs: any LogStore, orgs: any OrganizationStore, schedules: any ScheduleStore,
        notifications: any NotificationStore, analytics: any AnalyticsStore, remove: @escaping @Sendable () -> Void = {}
    ) {
        self.notifications = notifications
        self.analytics = analytics
        self.orgs = orgs
        self.schedules = schedules
        self.name = name
        self.users = users
        self.workflows = workflows
        self.executions = executions
        self.queue = queue
        self.logs = logs
        self.remove = remove
    }

    public func cleanup() { remove() }

    /// The in-memory store.
    public static func memory() -> StoreFixture {
        let store = MemoryStore()
        return StoreFixture(
            name: "memory", users: store, workflows: store, executions: store, queue: store, logs: store, orgs: store,
            schedules: store, notifications: store, analytics: store)
    }

    /// SQLite files in a temporary directory.
    public static func sqlite() throws -> StoreFixture {
        let temp = try TempSQLiteStore()
        return StoreFixture(
            name: "sqlite", users: temp.store, workflows: temp.store, executions: temp.store, queue: temp.store,
            logs: temp.logs, orgs: temp.store, schedules: temp.store, notifications: temp.store, analytics: temp.store,
            remove: { temp.cleanup() })
    }

    /// Stores a new account.
    @discardableResult
    public func user(_ email: String? = nil) async throws -> UserRecord {
        let user = Records.user(email: email)
        try await users.createUser(user)
        return user
    }

    /// Stores a new workflow of noop tasks.
    public func workflow(owner: String, name: String = "Flow", description: String = "", taskNames: [String] = ["first"])
        async throws -> WorkflowRecord
    {
        try await workflows.createWorkflow(
            Records.workflow(owner: owner, name: name, description: description, taskNames: taskNames), actor: owner)
    }
}
