import Foundation
import GRDB
import Testing
import WeftStore
import WeftTestSupport
@testable import WeftSQLite

/// `ExecutionTransition.foldingIntoCreates`: a unit that creates an
/// execution and moves it on is written as one insert per row, and the rows
/// (and the rollups) come out as the separate writes leave them.
@Suite("folded creates")
struct FoldedCreateTests {
    /// Creates, starts, runs both tasks (one fails for good, continued),
    /// charges cost, ends: what an execution of instant tasks commits in
    /// its first unit.
    static func unit(_ record: ExecutionRecord, at: Date) -> [ExecutionTransition] {
        let id = record.executionId
        let (a, b) = (record.tasks[0].taskKey, record.tasks[1].taskKey)
        var cost = ExecutionCost()
        cost.taskAttempts = 2
        cost.attemptsDollars = 0.25
        return [
            .create(record),
            .execution(id: id, status: .running, at: at),
            .task(executionId: id, taskKey: a, status: .queued, attempt: 1, at: at),
            .task(executionId: id, taskKey: a, status: .running, attempt: 1, at: at, cost: 0.1),
            .task(executionId: id, taskKey: a, status: .completed, attempt: 1, at: at, output: .object(["n": .number(1)])),
            .task(executionId: id, taskKey: b, status: .running, attempt: 1, at: at),
            .task(executionId: id, taskKey: b, status: .failed, attempt: 1, at: at, error: "boom"),
            .cost(executionId: id, cost),
            .taskCost(executionId: id, taskKey: b, dollars: 0.15),
            .execution(id: id, status: .failed, at: at, output: .string("out"), error: "task b failed"),
        ]
    }

    @Test("the fold leaves one create holding every change, and names what it finished")
    func fold() {
        let workflow = Records.workflow(owner: "usr_1", taskNames: ["a", "b"])
        let record = Records.execution(of: workflow)
        let at = Date.nowMillis
        let unit = Self.unit(record, at: at) + [.enqueue(QueueItem(
            queue: "builtin", executionId: "exe_other", taskKey: "x", attempt: 1, priority: 0, readyAt: at))]
        let (folded, finished) = ExecutionTransition.foldingIntoCreates(unit)
        #expect(finished == [record.executionId])
        #expect(folded.count == 2)
        guard case .create(let row)? = folded.first else {
            Issue.record("no create first: \(folded)")
            return
        }
        #expect(row.status == .failed && row.startedAt == at && row.completedAt == at)
        #expect(row.output == .string("out") && row.error == "task b failed")
        #expect(row.costBreakdown.taskAttempts == 2)
        #expect(row.tasks.map(\.status) == [.completed, .failed])
        #expect(row.tasks[0].output == .object(["n": .number(1)]) && row.tasks[1].error == "boom")
        #expect(abs(row.tasks[0].cost - 0.1) < 1e-12 && abs(row.tasks[1].cost - 0.15) < 1e-12)
        // A unit with no create is left alone; a change to an unknown task is kept (it fails when applied).
        let plain = Array(unit.dropFirst())
        #expect(ExecutionTransition.foldingIntoCreates(plain).transitions == plain)
        let unknown = ExecutionTransition.task(executionId: record.executionId, taskKey: "zz", status: .running, attempt: 1, at: at)
        #expect(ExecutionTransition.foldingIntoCreates([.create(record), unknown]).transitions == [.create(record), unknown])
    }

    @Test("rows and rollups are the same whether the unit is folded or written change by change")
    func sameRows() async throws {
        let temp = try TempSQLiteStore()
        defer { temp.cleanup() }
        let user = try await temp.user()
        let workflow = try await temp.store.createWorkflow(
            temp.workflow(owner: user.id, taskNames: ["a", "b"]), actor: user.id)
        let at = Date.nowMillis
        let folded = Records.execution(of: workflow, at: at)
        let stepwise = Records.execution(of: workflow, at: at)
        // Folded: one unit. Step by step: the create alone, then the rest.
        try await temp.store.apply(Self.unit(folded, at: at))
        let rest = Self.unit(stepwise, at: at)
        try await temp.store.apply([rest[0]])
        for change in rest.dropFirst() { try await temp.store.apply([change]) }
        func columns(_ id: String) async throws -> [String] {
            try await temp.store.pool.read { db in
                let execution = try Row.fetchOne(
                    db, sql: "SELECT * FROM workflow_executions WHERE execution_id = ?", arguments: [id])!
                let tasks = try Row.fetchAll(
                    db, sql: "SELECT * FROM task_executions WHERE execution_id = ? ORDER BY task_key", arguments: [id])
                return ([execution] + tasks).map { row in
                    row.columnNames.filter { !["execution_id", "task_execution_id"].contains($0) }
                        .map { "\($0)=\(row[$0] as DatabaseValue)" }.joined(separator: " ")
                }
            }
        }
        let one = try await columns(folded.executionId)
        let other = try await columns(stepwise.executionId)
        #expect(one == other)
        #expect(one[0].contains("status=\"Failed\""))
        // Both were folded into the rollups once: two failed executions, their cost twice.
        let (executions, cost) = try await temp.store.pool.read { db in
            let row = try Row.fetchOne(
                db, sql: "SELECT SUM(executions) AS n, SUM(cost_sum) AS cost FROM rollup_executions WHERE status = 'Failed'")!
            return (row["n"] as Int? ?? 0, row["cost"] as Double? ?? 0)
        }
        #expect(executions == 2)
        #expect(abs(cost - 0.5) < 1e-9, "\(cost)")
    }
}
