import Foundation
import Testing
import WeftStore

@Suite("execution store")
struct ExecutionStoreTests {
    func setUp() async throws -> (TempStore, WorkflowRecord) {
        let temp = try TempStore()
        let user = try await temp.user()
        let workflow = try await temp.store.createWorkflow(temp.workflow(owner: user.id, taskNames: ["a", "b"]), actor: user.id)
        return (temp, workflow)
    }

    func execution(_ workflow: WorkflowRecord, key: String? = nil, at: Date = .nowMillis) -> ExecutionRecord {
        let id = IDGenerator.make(IDGenerator.execution, now: at)
        return ExecutionRecord(
            executionId: id, workflowId: workflow.id, workflowVersion: workflow.version, status: "Pending",
            input: .object(["n": .number(1)]), idempotencyKey: key, createdAt: at,
            tasks: workflow.tasks.map {
                TaskExecutionRecord(
                    taskExecutionId: IDGenerator.make(IDGenerator.taskExecution), taskId: $0.id, taskKey: $0.key, status: "Pending")
            })
    }

    @Test("create, idempotency key, transitions with timestamps, get and list")
    func lifecycle() async throws {
        let (temp, workflow) = try await setUp()
        defer { temp.cleanup() }
        let store = temp.store
        let (first, created) = try await store.createExecution(execution(workflow, key: "order-1"))
        #expect(created && first.tasks.map(\.taskKey) == ["k0", "k1"])
        let (again, createdAgain) = try await store.createExecution(execution(workflow, key: "order-1"))
        #expect(!createdAgain && again.executionId == first.executionId)
        let t = Date.nowMillis
        try await store.apply([
            .execution(id: first.executionId, status: "Running", at: t),
            .task(executionId: first.executionId, taskKey: "k0", status: "Running", attempt: 1, at: t),
            .task(executionId: first.executionId, taskKey: "k0", status: "Completed", attempt: 1, at: t.addingTimeInterval(1),
                  output: .object(["ok": .bool(true)])),
            .task(executionId: first.executionId, taskKey: "k1", status: "Skipped", attempt: 0, at: t.addingTimeInterval(1)),
            .execution(id: first.executionId, status: "Completed", at: t.addingTimeInterval(2)),
        ])
        let done = try #require(try await store.execution(id: first.executionId))
        #expect(done.status == "Completed" && done.isFinished)
        #expect(abs((done.startedAt ?? .distantPast).timeIntervalSince(t)) < 0.001)
        #expect(abs((done.completedAt ?? .distantPast).timeIntervalSince(t.addingTimeInterval(2))) < 0.001)
        #expect(done.tasks[0].status == "Completed" && done.tasks[0].output == .object(["ok": .bool(true)]))
        #expect(done.tasks[0].startedAt != nil && done.tasks[1].status == "Skipped")
        // An unknown task fails the whole batch, which changes nothing.
        await #expect(throws: StoreError.self) {
            try await store.apply([
                .execution(id: first.executionId, status: "Failed", at: t),
                .task(executionId: first.executionId, taskKey: "zzz", status: "Running", attempt: 1, at: t),
            ])
        }
        #expect(try await store.execution(id: first.executionId)?.status == "Completed")

        let second = try await store.createExecution(execution(workflow, at: t.addingTimeInterval(5))).execution
        let page = try await store.listExecutions(ExecutionQuery(workflowId: workflow.id, limit: 1))
        #expect(page.items.map(\.executionId) == [second.executionId])
        let rest = try await store.listExecutions(ExecutionQuery(workflowId: workflow.id, limit: 1, cursor: page.nextCursor))
        #expect(rest.items.map(\.executionId) == [first.executionId] && rest.nextCursor == nil)
        let completed = try await store.listExecutions(ExecutionQuery(workflowId: workflow.id, limit: 10, status: "Completed"))
        #expect(completed.items.map(\.executionId) == [first.executionId])
        #expect(try await store.unfinishedExecutions().map(\.executionId) == [second.executionId])
    }

    @Test("group commit writes concurrent submissions in few transactions, each caller told its own outcome")
    func groupCommit() async throws {
        let (temp, workflow) = try await setUp()
        defer { temp.cleanup() }
        var executions: [ExecutionRecord] = []
        for _ in 0..<100 { executions.append(try await temp.store.createExecution(execution(workflow)).execution) }
        let committer = GroupCommitter(store: temp.store)
        let ids = executions.map(\.executionId)
        let outcomes = await withTaskGroup(of: Bool.self) { group in
            for id in ids {
                group.addTask {
                    (try? await committer.submit([.execution(id: id, status: "Running", at: .nowMillis)])) != nil
                }
            }
            group.addTask {
                (try? await committer.submit([.execution(id: "exe_missing", status: "Running", at: .nowMillis)])) != nil
            }
            return await group.reduce(into: [Bool]()) { $0.append($1) }
        }
        #expect(outcomes.filter { $0 }.count == 100)
        #expect(outcomes.filter { !$0 }.count == 1)
        let batches = await committer.batches
        #expect(batches < 100, "expected batching, got \(batches) transactions")
        #expect(await committer.transitionsWritten == 100)
        #expect(try await temp.store.unfinishedExecutions().allSatisfy { $0.status == "Running" })
    }
}

@Suite("execution cost and trace context")
struct ExecutionCostStoreTests {
    @Test("cost transitions add up in the row; the trace context is stored with the execution")
    func accrual() async throws {
        let temp = try TempStore()
        defer { temp.cleanup() }
        let user = try await temp.user()
        let workflow = try await temp.store.createWorkflow(temp.workflow(owner: user.id, taskNames: ["a"]), actor: user.id)
        let traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
        let record = ExecutionRecord(
            executionId: IDGenerator.make(IDGenerator.execution), workflowId: workflow.id, workflowVersion: 1,
            status: "Pending", input: .emptyObject, createdAt: .nowMillis,
            tasks: workflow.tasks.map {
                TaskExecutionRecord(taskExecutionId: IDGenerator.make(IDGenerator.taskExecution), taskId: $0.id, taskKey: $0.key, status: "Pending")
            },
            traceParent: traceparent, traceState: "vendor=1")
        try await temp.store.apply([.create(record)])
        let first = ExecutionCost(taskAttempts: 1, attemptsDollars: 0.001)
        let second = ExecutionCost(workerSeconds: 2, computeDollars: 0.5, requests: 3, requestsDollars: 0.03, egressBytes: 4096, egressDollars: 0.002)
        try await temp.store.apply([.cost(executionId: record.executionId, first)])
        try await temp.store.apply([.cost(executionId: record.executionId, second)])
        let stored = try #require(try await temp.store.execution(id: record.executionId))
        #expect(stored.costBreakdown == first + second)
        #expect(abs(stored.cost - (0.001 + 0.5 + 0.03 + 0.002)) < 1e-12)
        #expect(stored.traceParent == traceparent && stored.traceState == "vendor=1")
        // An unknown execution is an error (the group's savepoint rolls back).
        await #expect(throws: StoreError.self) { try await temp.store.apply([.cost(executionId: "exe_missing", first)]) }
    }
}
