import Foundation
import Testing
@testable import WeftEngine
import WeftStore
import WeftTestSupport

/// The commit planner without a store, clock or actor: effects in, writes
/// and after-commit actions out.
@Suite("commit planner")
struct CommitPlannerTests {
    let at = Date(timeIntervalSince1970: 1_800_000_000)
    let rates = CostRates()

    func state(_ tasks: [TaskRecord], owner: String = "usr_1") -> ExecutionState {
        let workflow = Records.workflow(owner: owner, tasks: tasks)
        let record = Records.execution(of: workflow, at: at)
        return ExecutionState(
            machine: ExecutionStateMachine(tasks: workflow.tasks), version: workflow.tasks, record: record,
            workflowName: "w", ownerId: owner, orgId: "org_1")
    }

    @Test("a new execution: its row, its start, its first items and a start line, as one unit")
    func start() {
        var execution = state([Records.task("a"), Records.task("b", dependsOn: ["a"])])
        let effects = execution.machine.start(at: at)
        let record = Records.execution(of: Records.workflow(owner: "usr_1", tasks: [Records.task("a")]), at: at)
        let plan = CommitPlanner(costRates: rates).plan(
            .init(executionId: "exe_1", at: at, effects: effects, start: (record, create: true)), state: execution)
        guard case .create = plan.transitions.first else { Issue.record("no create first: \(plan.transitions)"); return }
        #expect(plan.transitions.contains(.execution(id: "exe_1", status: .running, at: at)))
        #expect(plan.transitions.contains(.task(executionId: "exe_1", taskKey: "a", status: .queued, attempt: 1, at: at)))
        #expect(plan.isStart && plan.finished == nil)
        #expect(plan.lines.map(\.message) == ["execution started (workflow version 1, trigger api)"])
        // The built-in item may go straight to a worker; nothing to wake yet.
        #expect(plan.dispatchable.count == 1 && plan.wake.isEmpty)
        if case .enqueue(let item) = plan.transitions[plan.dispatchable[0]] {
            #expect(item.queue == EngineQueues.builtin && item.taskKey == "a" && item.attempt == 1 && item.readyAt == at)
        } else {
            Issue.record("dispatchable index does not point at an enqueue")
        }
    }

    @Test("external items wake their owner's queue; timers become timer items; retries delayed task items")
    func queues() {
        let retry = Records.retry(maxAttempts: 2, backoffMs: 500)
        var execution = state([
            Records.task("ext", .external, config: .object(["queue": .string("mail")])),
            Records.task("slow", .http, retry: retry, timeoutMs: 250),
        ])
        var effects = execution.machine.start(at: at)
        effects += execution.machine.taskStarted("slow", attempt: 1, at: at)
        effects += execution.machine.taskFailed("slow", attempt: 1, error: .init(kind: "http_5xx", message: "503"), at: at)
        let plan = CommitPlanner(costRates: rates).plan(.init(executionId: "exe_1", at: at, effects: effects), state: execution)
        #expect(plan.wake == [EngineQueues.external(owner: "org_1", name: "mail")])
        let items = plan.transitions.compactMap { if case .enqueue(let item) = $0 { item } else { nil } }
        let timer = items.first { $0.queue == EngineQueues.timers }
        #expect(timer.flatMap(TimerItem.init) == .attemptTimeout(task: "slow", attempt: 1))
        #expect(timer?.readyAt == at.addingTimeInterval(0.25))
        let delayed = items.first { $0.taskKey == "slow" && $0.attempt == 2 }
        #expect(delayed?.readyAt == at.addingTimeInterval(0.5) && delayed?.queue == EngineQueues.builtin)
        #expect(plan.later.contains { $0.queue == EngineQueues.builtin && $0.at == at.addingTimeInterval(0.5) })
        #expect(plan.retried == [.http])
        // The retried attempt's start was charged; the failure line logged.
        #expect(plan.cost.taskAttempts == 1)
        #expect(plan.lines.contains { $0.message == "task slow attempt 1 failed (http_5xx): 503; retrying" && $0.level == .warning })
    }

    @Test("a stop charges the attempt's time and is reported; a finish ends the unit with the execution's status")
    func stopAndFinish() {
        var execution = state([Records.task("a", .http)])
        _ = execution.machine.start(at: at)
        _ = execution.machine.taskStarted("a", attempt: 1, at: at)
        execution.startedAt["a"] = at
        let later = at.addingTimeInterval(2)
        let effects = execution.machine.cancel(reason: "enough", at: later)
        let held = Lease(id: 7, item: QueueItem(queue: "builtin", executionId: "exe_1", taskKey: "a", attempt: 1, readyAt: at),
                         token: "lse_x", expiresAt: later, deliveries: 1)
        let plan = CommitPlanner(costRates: rates).plan(
            .init(executionId: "exe_1", at: later, effects: effects, lease: .complete(held)), state: execution)
        #expect(plan.stopped == [AttemptID(executionId: "exe_1", taskKey: "a", attempt: 1)])
        #expect(plan.cost.workerSeconds == 2)
        #expect(plan.finished?.status == .cancelled && plan.finished?.error == "enough")
        #expect(plan.transitions.last == .completeLease(id: 7, token: "lse_x"))
        #expect(plan.transitions.contains(.cost(executionId: "exe_1", plan.cost)))
        #expect(plan.transitions.contains(.execution(id: "exe_1", status: .cancelled, at: later, error: "enough")))
    }

    @Test("an instant runner's lines follow its started line; watchers get every task change")
    func instantLines() {
        var execution = state([Records.task("a", .log)])
        var effects = execution.machine.start(at: at)
        effects += execution.machine.taskStarted("a", attempt: 1, at: at)
        effects += execution.machine.taskSucceeded("a", attempt: 1, output: .emptyObject, at: at)
        let line = LogRecord(executionId: "exe_1", taskId: nil, level: .info, message: "hello", createdAt: at)
        let plan = CommitPlanner(costRates: rates).plan(
            .init(executionId: "exe_1", at: at, effects: effects, taskLines: ["a": [line]]), state: execution)
        #expect(plan.lines.map(\.message) == ["task a started (attempt 1)", "hello", "task a completed (attempt 1)"])
        let statuses = plan.updates.compactMap { update -> TaskStatus? in
            if case .state(_, let task?, _, _) = update { task.status } else { nil }
        }
        #expect(statuses == [.queued, .running, .completed])
        #expect(plan.finished?.status == .completed)
    }
}

@Suite("timer items")
struct TimerItemTests {
    @Test("every state-machine timer but a retry round-trips through its queue item, keys as the store has them")
    func roundTrip() throws {
        let due = Date(timeIntervalSince1970: 1_800_000_000)
        let cases: [(ExecutionStateMachine.Timer, String, Int)] = [
            (.attemptTimeout(task: "fetch", attempt: 3), "~attempt:fetch", 3),
            (.taskTimeout(task: "fetch"), "~task:fetch", 0),
            (.executionTimeout, "~execution", 0),
        ]
        for (timer, key, attempt) in cases {
            let item = try #require(TimerItem(timer)).queueItem(executionId: "exe_1", due: due)
            #expect(item.queue == EngineQueues.timers && item.taskKey == key && item.attempt == attempt && item.readyAt == due)
            #expect(TimerItem(item)?.timer == timer)
        }
        #expect(TimerItem(ExecutionStateMachine.Timer.retry(task: "fetch", attempt: 2)) == nil)
        #expect(TimerItem(QueueItem(queue: "builtin", executionId: "e", taskKey: "fetch", attempt: 1, readyAt: due)) == nil)
    }
}
