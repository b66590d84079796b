import Foundation
import Testing
import WeftStore

extension StoreConformance {
    /// A stored workflow of tasks k0 and k1, and its owner.
    static func twoTaskWorkflow(_ store: StoreFixture) async throws -> WorkflowRecord {
        let user = try await store.user()
        return try await store.workflow(owner: user.id, taskNames: ["a", "b"])
    }

    static let executions: [Case] = [
        Case(name: "executions: create, idempotency key, transitions with timestamps, get and list") { store in
            let workflow = try await twoTaskWorkflow(store)
            let executions = store.executions
            let (first, created) = try await executions.createExecution(Records.execution(of: workflow, idempotencyKey: "order-1"))
            #expect(created && first.tasks.map(\.taskKey) == ["k0", "k1"])
            let (again, createdAgain) = try await executions.createExecution(
                Records.execution(of: workflow, idempotencyKey: "order-1"))
            #expect(!createdAgain && again.executionId == first.executionId)
            let t = Date.nowMillis
            try await executions.apply([
                .execution(id: first.executionId, status: .running, at: t),
                .task(executionId: first.executionId, taskKey: "k0", status: .running, attempt: 1, at: t),
                .task(executionId: first.executionId, taskKey: "k0", status: .completed, attempt: 1, at: t.addingTimeInterval(1),
                      output: .object(["ok": .bool(true)])),
                .task(executionId: first.executionId, taskKey: "k1", status: .skipped, attempt: 0, at: t.addingTimeInterval(1)),
                .execution(id: first.executionId, status: .completed, at: t.addingTimeInterval(2)),
            ])
            let done = try #require(try await executions.execution(id: first.executionId))
            #expect(done.status == .completed && done.isFinished)
            #expect(abs((done.startedAt ?? .distantPast).timeIntervalSince(t)) < 0.001)
            #expect(abs((done.completedAt ?? .distantPast).timeIntervalSince(t.addingTimeInterval(2))) < 0.001)
            #expect(done.tasks[0].status == .completed && done.tasks[0].output == .object(["ok": .bool(true)]))
            #expect(done.tasks[0].startedAt != nil && done.tasks[1].status == .skipped)
            // An unknown task fails the whole unit, which changes nothing.
            await #expect(throws: StoreError.self) {
                try await executions.apply([
                    .execution(id: first.executionId, status: .failed, at: t),
                    .task(executionId: first.executionId, taskKey: "zzz", status: .running, attempt: 1, at: t),
                ])
            }
            #expect(try await executions.execution(id: first.executionId)?.status == .completed)

            let second = try await executions.createExecution(
                Records.execution(of: workflow, at: t.addingTimeInterval(5))).execution
            let page = try await executions.listExecutions(ExecutionQuery(workflowId: workflow.id, limit: 1))
            #expect(page.items.map(\.executionId) == [second.executionId])
            let rest = try await executions.listExecutions(
                ExecutionQuery(workflowId: workflow.id, limit: 1, cursor: page.nextCursor))
            #expect(rest.items.map(\.executionId) == [first.executionId] && rest.nextCursor == nil)
            let completed = try await executions.listExecutions(
                ExecutionQuery(workflowId: workflow.id, limit: 10, status: .completed))
            #expect(completed.items.map(\.executionId) == [first.executionId])
            #expect(try await executions.unfinishedExecutions().map(\.executionId) == [second.executionId])
            #expect(try await executions.unfinishedCount() == 1)
        },
        Case(name: "a task's first start is kept across retries; a terminal state sets its completion") { store in
            let workflow = try await twoTaskWorkflow(store)
            let execution = try await store.executions.createExecution(Records.execution(of: workflow)).execution
            let id = execution.executionId
            let t = Date.nowMillis
            try await store.executions.apply([
                .execution(id: id, status: .running, at: t),
                .task(executionId: id, taskKey: "k0", status: .running, attempt: 1, at: t),
                .task(executionId: id, taskKey: "k0", status: .retrying, attempt: 1, at: t.addingTimeInterval(1), error: "boom"),
                .task(executionId: id, taskKey: "k0", status: .running, attempt: 2, at: t.addingTimeInterval(2)),
            ])
            let running = try #require(try await store.executions.execution(id: id)?.tasks[0])
            #expect(running.attempt == 2 && running.status == .running && running.error == "boom")
            #expect(abs((running.startedAt ?? .distantPast).timeIntervalSince(t)) < 0.001)
            #expect(running.completedAt == nil)
            try await store.executions.apply([
                .task(executionId: id, taskKey: "k0", status: .failed, attempt: 2, at: t.addingTimeInterval(3), error: "again"),
                .execution(id: id, status: .failed, at: t.addingTimeInterval(3), error: "task k0 failed"),
            ])
            let failed = try #require(try await store.executions.execution(id: id))
            #expect(failed.tasks[0].error == "again" && failed.tasks[0].completedAt != nil)
            #expect(failed.error == "task k0 failed" && failed.isFinished)
        },
        Case(name: "group commit: each unit of applyEach commits or fails alone") { store in
            let workflow = try await twoTaskWorkflow(store)
            let a = try await store.executions.createExecution(Records.execution(of: workflow)).execution
            let b = try await store.executions.createExecution(Records.execution(of: workflow)).execution
            let at = Date.nowMillis
            let outcomes = try await store.executions.applyEach([
                [.execution(id: a.executionId, status: .running, at: at), .enqueue(item("k0", execution: a.executionId))],
                // Fails: its first write must be rolled back with it.
                [.execution(id: b.executionId, status: .running, at: at), .execution(id: "exe_missing", status: .running, at: at)],
                [.cost(executionId: b.executionId, ExecutionCost(taskAttempts: 1, attemptsDollars: 0.5))],
                [.completeLease(id: 1, token: "no-such-token")],
            ])
            #expect(outcomes.count == 4)
            #expect(outcomes[0] == nil && outcomes[2] == nil)
            if case .notFound = outcomes[1] {} else { Issue.record("expected notFound, got \(String(describing: outcomes[1]))") }
            if case .conflict = outcomes[3] {} else { Issue.record("expected conflict, got \(String(describing: outcomes[3]))") }
            #expect(try await store.executions.execution(id: a.executionId)?.status == .running)
            let stillPending = try #require(try await store.executions.execution(id: b.executionId))
            #expect(stillPending.status == .pending && stillPending.costBreakdown.taskAttempts == 1)
            #expect(try await store.queue.depth(queue: "default", now: t0) == (ready: 1, delayed: 0, leased: 0))
        },
        Case(name: "the .create transition refuses a used idempotency key; createExecution answers with the first") { store in
            let workflow = try await twoTaskWorkflow(store)
            let first = Records.execution(of: workflow, idempotencyKey: "k")
            try await store.executions.apply([.create(first)])
            await #expect(throws: StoreError.self) {
                try await store.executions.apply([.create(Records.execution(of: workflow, idempotencyKey: "k"))])
            }
            let (found, created) = try await store.executions.createExecution(Records.execution(of: workflow, idempotencyKey: "k"))
            #expect(!created && found.executionId == first.executionId)
            // The same key on another workflow is another execution.
            let other = try await twoTaskWorkflow(store)
            #expect(try await store.executions.createExecution(Records.execution(of: other, idempotencyKey: "k")).created)
        },
        Case(name: "cost transitions add up; the trace context is stored with the execution") { store in
            let workflow = try await twoTaskWorkflow(store)
            let traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
            let record = Records.execution(of: workflow, traceParent: traceparent, traceState: "vendor=1")
            try await store.executions.apply([.create(record)])
            let first = ExecutionCost(taskAttempts: 1, attemptsDollars: 0.001)
            let second = ExecutionCost(
                workerSeconds: 2, computeDollars: 0.5, requests: 3, requestsDollars: 0.03, egressBytes: 4096, egressDollars: 0.002)
            try await store.executions.apply([.cost(executionId: record.executionId, first)])
            try await store.executions.apply([.cost(executionId: record.executionId, second)])
            let stored = try #require(try await store.executions.execution(id: record.executionId))
            #expect(stored.costBreakdown == first + second)
            #expect(abs(stored.cost - (0.001 + 0.5 + 0.03 + 0.002)) < 1e-12)
            #expect(stored.traceParent == traceparent && stored.traceState == "vendor=1")
            // An unknown execution is an error (its unit rolls back).
            await #expect(throws: StoreError.self) {
                try await store.executions.apply([.cost(executionId: "exe_missing", first)])
            }
        },
        Case(name: "stalled executions: unfinished with no task item (timers alone do not move them)") { store in
            let workflow = try await twoTaskWorkflow(store)
            let queued = try await store.executions.createExecution(Records.execution(of: workflow)).execution
            let timerOnly = try await store.executions.createExecution(Records.execution(of: workflow)).execution
            let nothing = try await store.executions.createExecution(Records.execution(of: workflow)).execution
            let finished = try await store.executions.createExecution(Records.execution(of: workflow)).execution
            try await store.executions.apply([
                .enqueue(item("k0", queue: "builtin", execution: queued.executionId)),
                .enqueue(item("~execution", queue: QueueItem.timersQueue, attempt: 0, execution: timerOnly.executionId)),
                .execution(id: finished.executionId, status: .completed, at: .nowMillis),
            ])
            let stalled = try await store.executions.stalledExecutions().map(\.executionId)
            #expect(stalled == [timerOnly.executionId, nothing.executionId].sorted())
        },
    ]
}
