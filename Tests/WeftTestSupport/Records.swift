public import Foundation
public import WeftStore

/// Builders of store records for tests: one place that knows every field,
/// so a test states only what it is about.
public enum Records {
    /// A task definition. `name` defaults to `key`.
    public static func task(
        _ key: String, _ action: TaskType = .noop, name: String? = nil, id: String? = nil, workflowId: String = "wf_test",
        dependsOn: [String] = [], config: JSONValue = .emptyObject, retry: RetryPolicyRecord? = nil,
        timeoutMs: Int64? = nil, at: Date = .nowMillis
    ) -> TaskRecord {
        TaskRecord(
            id: id ?? IDGenerator.make(IDGenerator.task, now: at), workflowId: workflowId, key: key, name: name ?? key,
            description: "", action: action, config: config, dependsOn: dependsOn, retry: retry, timeoutMs: timeoutMs,
            createdAt: at, updatedAt: at)
    }

    /// A new account.
    public static func user(email: String? = nil, name: String = "User", at: Date = .nowMillis) -> UserRecord {
        let id = IDGenerator.make(IDGenerator.user, now: at)
        return UserRecord(
            id: id, email: email ?? "\(id.lowercased())@example.com", name: name, passwordHash: "x", createdAt: at,
            updatedAt: at)
    }

    /// A workflow (version 1) owned by `owner` with these tasks (their
    /// `workflowId` set to the workflow's).
    public static func workflow(
        owner: String, name: String = "Flow", description: String = "", tasks: [TaskRecord], at: Date = .nowMillis
    ) -> WorkflowRecord {
        let id = IDGenerator.make(IDGenerator.workflow, now: at)
        var tasks = tasks
        for index in tasks.indices { tasks[index].workflowId = id }
        return WorkflowRecord(
            id: id, ownerId: owner, name: name, description: description, version: 1, createdAt: at, updatedAt: at,
            tasks: tasks)
    }

    /// A workflow of `noop` tasks named `taskNames` (keys k0, k1, ...).
    public static func workflow(owner: String, name: String = "Flow", description: String = "", taskNames: [String])
        -> WorkflowRecord
    {
        workflow(
            owner: owner, name: name, description: description,
            tasks: taskNames.enumerated().map { index, name in task("k\(index)", name: name) })
    }

    /// A Pending execution of `workflow`'s current version, with a Pending
    /// row per task.
    public static func execution(
        of workflow: WorkflowRecord, input: JSONValue = .emptyObject, idempotencyKey: String? = nil,
        trigger: TriggerKind = .api, at: Date = .nowMillis, traceParent: String? = nil, traceState: String? = nil
    ) -> ExecutionRecord {
        ExecutionRecord(
            executionId: IDGenerator.make(IDGenerator.execution, now: at), workflowId: workflow.id,
            workflowVersion: workflow.version, status: .pending, input: input, idempotencyKey: idempotencyKey,
            trigger: trigger, createdAt: at,
            tasks: workflow.tasks.map {
                TaskExecutionRecord(
                    taskExecutionId: IDGenerator.make(IDGenerator.taskExecution, now: at), taskId: $0.id, taskKey: $0.key,
                    status: .pending)
            },
            traceParent: traceParent, traceState: traceState)
    }

    /// A retry policy with no jitter and a fixed backoff (deterministic tests).
    public static func retry(
        maxAttempts: Int, backoffMs: Int64 = 1, maxBackoffMs: Int64 = 0, multiplier: Double = 1,
        retryable: [String] = [], totalTimeoutMs: Int64? = nil, continueOnFailure: Bool? = nil
    ) -> RetryPolicyRecord {
        RetryPolicyRecord(
            maxAttempts: maxAttempts, initialBackoffMs: backoffMs, maxBackoffMs: maxBackoffMs,
            backoffMultiplier: multiplier, jitter: 0, retryableErrors: retryable, totalTimeoutMs: totalTimeoutMs,
            continueOnFailure: continueOnFailure)
    }
}
