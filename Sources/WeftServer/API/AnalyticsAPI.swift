import Foundation
import SwiftProtobuf
import WeftProto
import WeftRPC
import WeftStore

/// weft.v1.AnalyticsService: statistics of a workflow, trends over the
/// workflows a caller may see (or an organization, for its admins),
/// insights and predictions, and monthly cost budgets. Everything is read
/// from the rollups (docs/ANALYTICS.md), never from a scan of executions.
struct AnalyticsAPI: RPCService {
    static let name = "weft.v1.AnalyticsService"
    /// Trends reach this far back by default.
    static let defaultTrendDays = 400.0
    static let maxTrendYears = 5.0
    static let maxBudgetUsd = 1e9
    /// Recent runs insights look at for anomalies.
    static let recentRuns = 100
    let deps: APIDependencies
    var analytics: any AnalyticsStore { deps.analytics }
    var metrics: AnalyticsMetrics { deps.analyticsMetrics }

    var handlers: [RPCHandler] {
        [
            .unary(service: Self.name, method: "GetWorkflowStats", rest: [.get("/workflows/{workflowId}/stats")]) {
                (request: Weft_V1_GetWorkflowStatsRequest, context) in
                let caller = try Caller(context)
                let (workflow, _) = try await deps.workflow(request.workflowID, caller: caller, needs: .viewer)
                return try await metrics.measure("stats") { try await stats(workflow, request) }
            },
            .unary(service: Self.name, method: "GetExecutionTrends", rest: [.get("/analytics/workflow-executions")]) {
                (request: Weft_V1_GetExecutionTrendsRequest, context) in
                let caller = try Caller(context)
                return try await metrics.measure("trends") { try await trends(request, caller: caller) }
            },
            .unary(service: Self.name, method: "GetWorkflowInsights", rest: [.get("/workflows/{workflowId}/insights")]) {
                (request: Weft_V1_GetWorkflowInsightsRequest, context) in
                let caller = try Caller(context)
                let (workflow, _) = try await deps.workflow(request.workflowID, caller: caller, needs: .viewer)
                return try await metrics.measure("insights") { try await insights(workflow, request) }
            },
            .unary(service: Self.name, method: "PredictExecution", rest: [.get("/executions/{executionId}/prediction")]) {
                (request: Weft_V1_PredictExecutionRequest, context) in
                let caller = try Caller(context)
                return try await metrics.measure("prediction") { try await predict(request, caller: caller) }
            },
            .unary(service: Self.name, method: "SetWorkflowBudget", rest: [.put("/workflows/{workflowId}/budget")]) {
                (request: Weft_V1_SetWorkflowBudgetRequest, context) in
                let caller = try Caller(context)
                let (workflow, _) = try await deps.workflow(request.workflowID, caller: caller, needs: .editor)
                return try await metrics.measure("budget") {
                    try await setBudget(.workflow, workflow.id, orgId: workflow.orgId, request.monthlyLimitUsd, request.timeZone,
                                        caller: caller)
                }
            },
            .unary(service: Self.name, method: "GetWorkflowBudget", rest: [.get("/workflows/{workflowId}/budget")]) {
                (request: Weft_V1_GetWorkflowBudgetRequest, context) in
                let caller = try Caller(context)
                let (workflow, _) = try await deps.workflow(request.workflowID, caller: caller, needs: .viewer)
                return try await metrics.measure("budget") { try await budget(.workflow, workflow.id) }
            },
            .unary(service: Self.name, method: "DeleteWorkflowBudget", rest: [.delete("/workflows/{workflowId}/budget")]) {
                (request: Weft_V1_GetWorkflowBudgetRequest, context) -> Weft_V1_DeleteBudgetResponse in
                let caller = try Caller(context)
                let (workflow, _) = try await deps.workflow(request.workflowID, caller: caller, needs: .editor)
                try await deleteBudget(.workflow, workflow.id)
                return Weft_V1_DeleteBudgetResponse()
            },
            .unary(service: Self.name, method: "SetOrganizationBudget", rest: [.put("/orgs/{orgId}/budget")]) {
                (request: Weft_V1_SetOrganizationBudgetRequest, context) in
                let caller = try Caller(context)
                let (org, _) = try await deps.organization(request.orgID, caller: caller, needs: .admin)
                return try await metrics.measure("budget") {
                    try await setBudget(.organization, org.id, orgId: org.id, request.monthlyLimitUsd, request.timeZone, caller: caller)
                }
            },
            .unary(service: Self.name, method: "GetOrganizationBudget", rest: [.get("/orgs/{orgId}/budget")]) {
                (request: Weft_V1_GetOrganizationBudgetRequest, context) in
                let caller = try Caller(context)
                let (org, _) = try await deps.organization(request.orgID, caller: caller, needs: .member)
                return try await metrics.measure("budget") { try await budget(.organization, org.id) }
            },
            .unary(service: Self.name, method: "DeleteOrganizationBudget", rest: [.delete("/orgs/{orgId}/budget")]) {
                (request: Weft_V1_GetOrganizationBudgetRequest, context) -> Weft_V1_DeleteBudgetResponse in
                let caller = try Caller(context)
                let (org, _) = try await deps.organization(request.orgID, caller: caller, needs: .admin)
                try await deleteBudget(.organization, org.id)
                return Weft_V1_DeleteBudgetResponse()
            },
        ]
    }

    // MARK: Statistics

    func stats(_ workflow: WorkflowRecord, _ request: Weft_V1_GetWorkflowStatsRequest) async throws -> Weft_V1_WorkflowStats {
        let window = try AnalyticsWindow.resolve(
            window: request.window, from: request.hasFrom ? try ProtoMapping.date(request.from, field: "from") : nil,
            to: request.hasTo ? try ProtoMapping.date(request.to, field: "to") : nil, now: Date())
        guard request.version >= 0 else {
            throw RPCError(code: .invalidArgument, message: "version must be 0 (all) or a version number")
        }
        let version = request.version > 0 ? Int(request.version) : nil
        async let rows = analytics.executionRollups(RollupQuery(
            scope: .workflows([workflow.id]), from: window.from, to: window.to, version: version, acrossHours: true))
        async let tasks = analytics.taskRollups(
            workflowId: workflow.id, from: window.from, to: window.to, version: version, acrossHours: true)
        async let running = analytics.unfinishedCount(workflowId: workflow.id)
        return try await WorkflowStatsBuilder(
            workflowId: workflow.id, window: window, executions: rows, tasks: tasks, running: running
        ).build()
    }

    // MARK: Trends

    func trends(_ request: Weft_V1_GetExecutionTrendsRequest, caller: Caller) async throws -> Weft_V1_ExecutionTrends {
        let zoneName = request.timeZone.isEmpty ? "UTC" : request.timeZone
        let zone = try Self.timeZone(zoneName, field: "time_zone")
        let now = Date()
        let until = request.hasUntil ? try ProtoMapping.date(request.until, field: "until") : now
        let since = request.hasSince
            ? try ProtoMapping.date(request.since, field: "since") : until.addingTimeInterval(-Self.defaultTrendDays * 86_400)
        guard since < until else {
            throw RPCError(code: .invalidArgument, message: "since must be before until")
        }
        guard until.timeIntervalSince(since) <= Self.maxTrendYears * 366 * 86_400 else {
            throw RPCError(code: .invalidArgument, message: "trends cover at most \(Int(Self.maxTrendYears)) years")
        }
        var trigger: TriggerKind?
        if !request.trigger.isEmpty {
            guard let parsed = TriggerKind(rawValue: request.trigger) else {
                throw RPCError(
                    code: .invalidArgument,
                    message: "trigger \"\(request.trigger)\" is not one of \(TriggerKind.allCases.map(\.rawValue).joined(separator: ", "))")
            }
            trigger = parsed
        }
        var status: ExecutionStatus?
        if !request.status.isEmpty {
            guard let parsed = ExecutionStatus.allCases.first(where: { $0.rawValue.lowercased() == request.status.lowercased() }),
                parsed.isFinished
            else {
                throw RPCError(
                    code: .invalidArgument,
                    message: "status \"\(request.status)\" is not a final status (Completed, Failed, Cancelled, TimedOut)")
            }
            status = parsed
        }
        var response = Weft_V1_ExecutionTrends()
        let scope: RollupScope
        if !request.workflowID.isEmpty {
            let (workflow, _) = try await deps.workflow(request.workflowID, caller: caller, needs: .viewer)
            if !request.orgID.isEmpty && workflow.orgId != request.orgID {
                throw RPCError(code: .invalidArgument, message: "workflow \(workflow.id) is not in organization \(request.orgID)")
            }
            scope = .workflows([workflow.id])
            response.scope = "workflow:\(workflow.id)"
        } else if !request.orgID.isEmpty {
            let (org, _) = try await deps.organization(request.orgID, caller: caller, needs: .admin)
            scope = .organization(org.id)
            response.scope = "organization:\(org.id)"
            response.workflows = Int64(try await deps.orgs.workflowCount(orgId: org.id))
        } else {
            scope = .visibleTo(userId: caller.userId)
            response.scope = "visible"
        }
        let builder = TrendBuilder(timeZone: zone)
        let days = builder.dayStarts(from: since, to: until)
        // From the hour holding `since` (its day's first hours before it
        // are not asked for); an execution counts in the hour it started,
        // so `until` is widened to the end of its hour.
        let from = RollupHour(containing: since)
        var buckets = days.filter { $0 > from }
        buckets.insert(from, at: 0)
        let totals = try await analytics.hourlyTotals(RollupQuery(
            scope: scope, from: from, to: RollupHour(containing: until.addingTimeInterval(-0.001)).next,
            trigger: trigger, status: status, buckets: buckets))
        switch scope {
        case .organization: break
        case .workflows(let ids): response.workflows = Int64(ids.count)
        case .visibleTo(let userId): response.workflows = Int64(try await analytics.visibleWorkflowCount(userId: userId))
        }
        let (daily, monthly, yearly) = builder.build(days: totals)
        response.daily = daily
        response.monthly = monthly
        response.yearly = yearly
        // As given: Foundation calls UTC "GMT".
        response.timeZone = zoneName
        response.durationErrorBound = LogHistogram.relativeError
        response.hourAligned = builder.offHour(from: since, to: until)
        return response
    }

    static func timeZone(_ name: String, field: String) throws -> TimeZone {
        guard name.utf8.count <= 64, let zone = TimeZone(identifier: name) else {
            throw RPCError(
                code: .invalidArgument,
                message: "\(field) \"\(name.prefix(64))\" is not an IANA time zone (like UTC, Europe/Berlin, America/New_York)")
        }
        return zone
    }

    // MARK: Insights and predictions

    func insights(_ workflow: WorkflowRecord, _ request: Weft_V1_GetWorkflowInsightsRequest) async throws
        -> Weft_V1_WorkflowInsights
    {
        guard request.window.isEmpty || request.window == "week" || request.window == "month" else {
            throw RPCError(code: .invalidArgument, message: "window \"\(request.window)\" is not week or month")
        }
        let now = Date()
        let window = try AnalyticsWindow.resolve(window: request.window, from: nil, to: nil, now: now, defaultWindow: "month")
        async let rows = analytics.executionRollups(
            RollupQuery(scope: .workflows([workflow.id]), from: window.from, to: window.to, acrossHours: true))
        async let tasks = analytics.taskRollups(
            workflowId: workflow.id, from: window.from, to: window.to, version: nil, acrossHours: true)
        async let recentPage = deps.executions.listExecutions(
            ExecutionQuery(workflowId: workflow.id, limit: Self.recentRuns, startedAfter: window.from.start))
        let insights = Insights(executions: try await rows, tasks: try await tasks)
        var response = Weft_V1_WorkflowInsights()
        response.workflowID = workflow.id
        response.generatedAt = ProtoMapping.timestamp(now)
        response.windowStart = ProtoMapping.timestamp(window.from.start)
        response.windowEnd = ProtoMapping.timestamp(window.to.start)
        response.nextRun = insights.nextRun()
        if let bottleneck = insights.bottleneck() { response.bottleneck = bottleneck }
        response.flakyTasks = insights.flakyTasks()
        response.suggestions = insights.suggestions(definition: workflow.tasks)
        response.anomalies = insights.anomalies(recent: try await recentPage.items)
        if let budget = try await analytics.budget(scope: .workflow, id: workflow.id) {
            response.budget = try await budgetStatus(budget)
        }
        return response
    }

    func predict(_ request: Weft_V1_PredictExecutionRequest, caller: Caller) async throws -> Weft_V1_ExecutionPrediction {
        guard !request.executionID.isEmpty else { throw APIError.required("execution_id") }
        guard let execution = try await deps.executions.execution(id: request.executionID) else {
            throw RPCError(code: .notFound, message: "execution \(request.executionID) not found")
        }
        do {
            _ = try await deps.workflow(execution.workflowId, caller: caller, needs: .viewer)
        } catch let error as RPCError where error.code == .notFound {
            throw RPCError(code: .notFound, message: "execution \(request.executionID) not found")
        }
        let deadline = request.hasDeadline ? try ProtoMapping.date(request.deadline, field: "deadline") : nil
        let now = Date()
        let window = try AnalyticsWindow.resolve(window: "month", from: nil, to: nil, now: now)
        let rows = try await analytics.executionRollups(RollupQuery(
            scope: .workflows([execution.workflowId]), from: window.from, to: window.to, status: .completed,
            durationsOnly: true, acrossHours: true))
        return ExecutionPredictor(execution: execution, history: rows, deadline: deadline, now: now).predict()
    }

    // MARK: Budgets

    func setBudget(
        _ scope: BudgetScope, _ id: String, orgId: String, _ limit: Double, _ timeZone: String, caller: Caller
    ) async throws -> Weft_V1_Budget {
        guard limit.isFinite, limit > 0, limit <= Self.maxBudgetUsd else {
            throw RPCError(
                code: .invalidArgument, message: "monthly_limit_usd must be more than 0 and at most \(Int(Self.maxBudgetUsd))")
        }
        let zoneName = timeZone.isEmpty ? "UTC" : timeZone
        _ = try Self.timeZone(zoneName, field: "time_zone")
        let stored = try await analytics.putBudget(BudgetRecord(
            scope: scope, scopeId: id, orgId: orgId, monthlyLimitUsd: limit, timeZone: zoneName, createdBy: caller.userId,
            updatedAt: Date.nowMillis))
        return try await budgetStatus(stored)
    }

    func budget(_ scope: BudgetScope, _ id: String) async throws -> Weft_V1_Budget {
        guard let budget = try await analytics.budget(scope: scope, id: id) else {
            throw RPCError(code: .notFound, message: "\(scope.rawValue) \(id) has no budget")
        }
        return try await budgetStatus(budget)
    }

    func deleteBudget(_ scope: BudgetScope, _ id: String) async throws {
        guard try await analytics.deleteBudget(scope: scope, id: id) else {
            throw RPCError(code: .notFound, message: "\(scope.rawValue) \(id) has no budget")
        }
        metrics.budgets(known: try await analytics.budgets().map { ($0.scope.rawValue, $0.scopeId) })
    }

    func budgetStatus(_ budget: BudgetRecord) async throws -> Weft_V1_Budget {
        try await BudgetMonitor.forecast(budget, analytics: analytics, now: Date()).proto(budget)
    }
}
