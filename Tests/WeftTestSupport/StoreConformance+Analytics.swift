import Foundation
import Testing
import WeftStore

extension StoreConformance {
    /// 2027-01-10 12:00:00 UTC: an hour boundary, so rows land in one hour.
    static let hour0 = Date(timeIntervalSince1970: 1_799_582_400)

    /// A workflow a, b (after a), c, and its owner.
    static func diamond(_ store: StoreFixture) async throws -> WorkflowRecord {
        let user = try await store.user()
        return try await store.workflows.createWorkflow(
            Records.workflow(owner: user.id, tasks: [
                Records.task("a"), Records.task("b", dependsOn: ["a"]), Records.task("c"),
            ]), actor: user.id)
    }

    /// Runs one execution of `diamond` with known times (seconds after
    /// `start`) and costs; `final` ends it.
    static func runKnown(
        _ store: StoreFixture, _ workflow: WorkflowRecord, start: Date, final: ExecutionStatus = .completed,
        trigger: TriggerKind = .api
    ) async throws -> String {
        let execution = Records.execution(of: workflow, trigger: trigger, at: start)
        let id = execution.executionId
        func at(_ seconds: Double) -> Date { start.addingTimeInterval(seconds) }
        try await store.executions.apply([
            .create(execution),
            .execution(id: id, status: .running, at: at(0)),
            .task(executionId: id, taskKey: "a", status: .running, attempt: 1, at: at(1), cost: 0.01),
            .task(executionId: id, taskKey: "c", status: .running, attempt: 1, at: at(1.5), cost: 0.005),
        ])
        try await store.executions.apply([
            .task(executionId: id, taskKey: "a", status: .retrying, attempt: 1, at: at(2), error: "boom"),
            .task(executionId: id, taskKey: "c", status: .completed, attempt: 1, at: at(2)),
            .task(executionId: id, taskKey: "a", status: .running, attempt: 2, at: at(2.5), cost: 0.01),
        ])
        try await store.executions.apply([
            .task(executionId: id, taskKey: "a", status: .completed, attempt: 2, at: at(4), cost: 0.01),
            .task(executionId: id, taskKey: "b", status: .running, attempt: 1, at: at(5), cost: 0.01),
        ])
        try await store.executions.apply([
            .task(executionId: id, taskKey: "b", status: final == .completed ? .completed : .failed, attempt: 1, at: at(7),
                  error: final == .completed ? nil : "bad gateway", cost: 0.02),
            .execution(id: id, status: final, at: at(8)),
            .cost(executionId: id, ExecutionCost(attemptsDollars: 0.065)),
        ])
        return id
    }

    static func rollups(_ store: StoreFixture, _ scope: RollupScope) async throws -> [ExecutionRollupKey: ExecutionRollup] {
        Dictionary(
            try await store.analytics.executionRollups(
                RollupQuery(scope: scope, from: RollupHour(containing: hour0), to: RollupHour(containing: hour0).next.next)
            ).map { ($0.key, $0.value) }, uniquingKeysWith: { a, _ in a })
    }

    static func taskRollups(_ store: StoreFixture, _ workflowId: String) async throws -> [String: TaskRollup] {
        let hour = RollupHour(containing: hour0)
        return Dictionary(
            try await store.analytics.taskRollups(workflowId: workflowId, from: hour, to: hour.next, version: nil, acrossHours: false)
                .map { ($0.key.taskKey, $0.value) }, uniquingKeysWith: { a, _ in a })
    }

    static let analytics: [Case] = [
        Case(name: "analytics: a final transition folds the execution into its hour's rollups in the same unit") { store in
            let workflow = try await diamond(store)
            let first = try await runKnown(store, workflow, start: hour0)
            let failed = try await runKnown(store, workflow, start: hour0.addingTimeInterval(60), final: .failed, trigger: .schedule)
            let rows = try await rollups(store, .workflows([workflow.id]))
            let hour = RollupHour(containing: hour0)
            let done = try #require(rows[ExecutionRollupKey(
                workflowId: workflow.id, version: 1, hour: hour, trigger: .api, status: .completed)])
            #expect(done.executions == 1 && done.durationMsMax == 8000 && done.durationMsSum == 8000)
            #expect(done.durations.quantile(0.5) == Int64(8032))  // 8000's bucket [8000, 8064): its midpoint
            #expect(abs(done.costSum - 0.065) < 1e-12 && done.retried == 1 && done.attempts == 4)
            // Critical path b <- a: a waited 1 s from creation, b 1 s after a ended.
            // 2000 ms falls in [2000, 2016): reported as its midpoint.
            #expect(done.waits.quantile(1) == 2008 && done.waits.total == 1)
            #expect(done.firstCreatedAt == hour0 && done.lastFinishedAt == hour0.addingTimeInterval(8))
            let bad = try #require(rows[ExecutionRollupKey(
                workflowId: workflow.id, version: 1, hour: hour, trigger: .schedule, status: .failed)])
            #expect(bad.executions == 1 && bad.durationMsMax == 8000)
            #expect(rows.count == 2)

            let tasks = try await taskRollups(store, workflow.id)
            let a = try #require(tasks["a"])
            #expect(a.runs == 2 && a.failed == 0 && a.retried == 2 && a.flaky == 2 && a.attempts == 4)
            #expect(a.durationMsMax == 3000 && a.durationMsSum == 6000 && a.criticalRuns == 2 && a.criticalMsSum == 8000)
            #expect(abs(a.costSum - 0.06) < 1e-12 && a.errors == ["boom": 2])
            let b = try #require(tasks["b"])
            #expect(b.runs == 2 && b.failed == 1 && b.flaky == 0 && b.criticalRuns == 2 && b.criticalMsSum == 6000)
            #expect(b.errors == ["bad gateway": 1] && abs(b.costSum - 0.06) < 1e-12)
            let c = try #require(tasks["c"])
            #expect(c.runs == 2 && c.criticalRuns == 0 && c.durationMsMax == 500 && c.durations.quantile(1) == 502)

            // The organization's rollup sums its workflows.
            let org = try await rollups(store, .organization(workflow.orgId))
            #expect(org.values.reduce(0) { $0 + $1.executions } == 2)

            // Cost charged after the end goes into the sums (not the histogram).
            try await store.executions.apply([.cost(executionId: first, ExecutionCost(egressDollars: 0.001))])
            try await store.executions.apply([.taskCost(executionId: failed, taskKey: "b", dollars: 0.002)])
            let later = try await rollups(store, .workflows([workflow.id]))
            let doneKey = ExecutionRollupKey(workflowId: workflow.id, version: 1, hour: hour, trigger: .api, status: .completed)
            #expect(abs((later[doneKey]?.costSum ?? 0) - 0.066) < 1e-12)
            #expect(later[doneKey]?.costs == done.costs)
            #expect(abs((try await taskRollups(store, workflow.id)["b"]?.costSum ?? 0) - 0.062) < 1e-12)
            #expect(later.values.reduce(0) { $0 + $1.executions } == 2)
        },
        Case(name: "analytics: a unit that fails folds nothing; a second final transition folds nothing more") { store in
            let workflow = try await diamond(store)
            let execution = Records.execution(of: workflow, at: hour0)
            try await store.executions.apply([.create(execution)])
            let results = try await store.executions.applyEach([
                [.execution(id: execution.executionId, status: .completed, at: hour0.addingTimeInterval(1)),
                 .task(executionId: execution.executionId, taskKey: "nope", status: .running, attempt: 1, at: hour0)],
            ])
            #expect(results.count == 1 && results[0] != nil)
            #expect(try await rollups(store, .workflows([workflow.id])).isEmpty)
            try await store.executions.apply([.execution(id: execution.executionId, status: .completed, at: hour0.addingTimeInterval(1))])
            try await store.executions.apply([.execution(id: execution.executionId, status: .completed, at: hour0.addingTimeInterval(2))])
            #expect(try await rollups(store, .workflows([workflow.id])).values.map(\.executions) == [1])
        },
        Case(name: "analytics: a rebuild from the executions gives the rollups kept live") { store in
            let workflow = try await diamond(store)
            for index in 0..<5 {
                _ = try await runKnown(
                    store, workflow, start: hour0.addingTimeInterval(Double(index) * 30), final: index == 3 ? .failed : .completed)
            }
            let live = try await rollups(store, .workflows([workflow.id]))
            let liveTasks = try await taskRollups(store, workflow.id)
            let liveOrg = try await rollups(store, .organization(workflow.orgId))
            #expect(try await store.analytics.rebuildRollups() == 5)
            #expect(try await rollups(store, .workflows([workflow.id])) == live)
            #expect(try await taskRollups(store, workflow.id) == liveTasks)
            #expect(try await rollups(store, .organization(workflow.orgId)) == liveOrg)
        },
        Case(name: "analytics: scopes, filters and windows select rows") { store in
            let workflow = try await diamond(store)
            let other = try await diamond(store)
            _ = try await runKnown(store, workflow, start: hour0)
            _ = try await runKnown(store, workflow, start: hour0.addingTimeInterval(3600), final: .failed)
            _ = try await runKnown(store, other, start: hour0)
            let hour = RollupHour(containing: hour0)
            func count(_ query: RollupQuery) async throws -> Int64 {
                try await store.analytics.executionRollups(query).reduce(0) { $0 + $1.value.executions }
            }
            #expect(try await count(RollupQuery(scope: .visibleTo(userId: workflow.ownerId), from: hour, to: hour.next.next)) == 2)
            #expect(try await count(RollupQuery(scope: .workflows([workflow.id]), from: hour, to: hour.next)) == 1)
            #expect(try await count(RollupQuery(scope: .workflows([workflow.id]), from: hour, to: hour.next.next, status: .failed)) == 1)
            #expect(try await count(RollupQuery(scope: .workflows([workflow.id, other.id]), from: hour, to: hour.next.next, trigger: .api)) == 3)
            #expect(try await count(RollupQuery(scope: .workflows([workflow.id]), from: hour, to: hour.next, version: 2)) == 0)
            // Hourly totals are the rows summed per hour, in every scope.
            for scope in [RollupScope.visibleTo(userId: workflow.ownerId), .workflows([workflow.id, other.id]), .organization(workflow.orgId)] {
                let query = RollupQuery(scope: scope, from: hour, to: hour.next.next, durationsOnly: true)
                let totals = try await store.analytics.hourlyTotals(query)
                #expect(totals == HourlyTotal.of(try await store.analytics.executionRollups(query)))
                #expect(totals.map(\.hour) == [hour, hour.next])
            }
            #expect(try await store.analytics.visibleWorkflowCount(userId: workflow.ownerId) == 1)
            // Summed across hours: the rows of each key merged.
            let perHour = try await store.analytics.executionRollups(RollupQuery(scope: .workflows([workflow.id]), from: hour, to: hour.next.next))
            let across = try await store.analytics.executionRollups(
                RollupQuery(scope: .workflows([workflow.id]), from: hour, to: hour.next.next, acrossHours: true))
            var expected: [ExecutionRollupKey: ExecutionRollup] = [:]
            for (key, value) in perHour {
                var key = key
                key.hour = hour
                expected[key, default: ExecutionRollup()].merge(value)
            }
            #expect(Dictionary(across.map { ($0.key, $0.value) }, uniquingKeysWith: { a, _ in a }) == expected)
            let tasksAcross = try await store.analytics.taskRollups(
                workflowId: workflow.id, from: hour, to: hour.next.next, version: nil, acrossHours: true)
            #expect(tasksAcross.count == 3 && tasksAcross.first { $0.key.taskKey == "a" }?.value.runs == 2)
            #expect(try await store.analytics.unfinishedCount(workflowId: workflow.id) == 0)
            try await store.executions.apply([.create(Records.execution(of: workflow, at: hour0))])
            #expect(try await store.analytics.unfinishedCount(workflowId: workflow.id) == 1)
        },
        Case(name: "analytics: retention deletes old finished executions and keeps their rollups") { store in
            let workflow = try await diamond(store)
            let old = try await runKnown(store, workflow, start: hour0)
            let running = Records.execution(of: workflow, at: hour0)
            try await store.executions.apply([.create(running)])
            let before = try await rollups(store, .workflows([workflow.id]))
            #expect(try await store.analytics.purgeExecutions(finishedBefore: hour0.addingTimeInterval(60), limit: 10) == 1)
            #expect(try await store.executions.execution(id: old) == nil)
            #expect(try await store.executions.execution(id: running.executionId) != nil)
            #expect(try await rollups(store, .workflows([workflow.id])) == before)
            #expect(try await store.analytics.purgeExecutions(finishedBefore: hour0.addingTimeInterval(60), limit: 10) == 0)
        },
        Case(name: "analytics: budgets are put, read, alerted once per level and month, and deleted") { store in
            let analytics = store.analytics
            let budget = BudgetRecord(
                scope: .workflow, scopeId: "wf_1", orgId: "org_1", monthlyLimitUsd: 10, timeZone: "Europe/Berlin",
                createdBy: "usr_1", updatedAt: hour0)
            _ = try await analytics.putBudget(budget)
            #expect(try await analytics.markBudgetAlerted(scope: .workflow, id: "wf_1", month: "2027-01", level: 1, updatedAt: hour0))
            #expect(!(try await analytics.markBudgetAlerted(scope: .workflow, id: "wf_1", month: "2027-01", level: 1, updatedAt: hour0)))
            #expect(try await analytics.markBudgetAlerted(scope: .workflow, id: "wf_1", month: "2027-01", level: 2, updatedAt: hour0))
            #expect(!(try await analytics.markBudgetAlerted(scope: .workflow, id: "wf_1", month: "2027-01", level: 1, updatedAt: hour0)))
            #expect(try await analytics.markBudgetAlerted(scope: .workflow, id: "wf_1", month: "2027-02", level: 1, updatedAt: hour0))
            // An alert about the budget as it was before a change is not recorded.
            #expect(!(try await analytics.markBudgetAlerted(
                scope: .workflow, id: "wf_1", month: "2027-03", level: 1, updatedAt: hour0.addingTimeInterval(1))))
            // The same limit again keeps what was sent; a new limit starts over.
            #expect(try await analytics.putBudget(budget).alertLevel == 1)
            var raised = budget
            raised.monthlyLimitUsd = 20
            #expect(try await analytics.putBudget(raised).alertLevel == 0)
            let stored = try #require(try await analytics.budget(scope: .workflow, id: "wf_1"))
            #expect(stored.monthlyLimitUsd == 20 && stored.timeZone == "Europe/Berlin" && stored.orgId == "org_1")
            #expect(try await analytics.budget(scope: .organization, id: "wf_1") == nil)
            #expect(try await analytics.budgets().count == 1)
            #expect(try await analytics.deleteBudget(scope: .workflow, id: "wf_1"))
            #expect(!(try await analytics.deleteBudget(scope: .workflow, id: "wf_1")))
        },
    ]
}
