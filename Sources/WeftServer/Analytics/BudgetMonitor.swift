import Foundation
import Logging
import ServiceLifecycle
import Tracing
import WeftEngine
import WeftObservability
import WeftStore

/// Checks every budget each `interval`: sets its gauges (limit, spend,
/// forecast) and, the first time in a month its forecast or its spend
/// crosses the limit, notifies. A workflow's budget goes through its
/// subscriptions (events budget.forecast_exceeded, budget.exceeded); an
/// organization's to its admins in-app. The outbox row is written before
/// the alert is marked sent, with a delivery id fixed by the budget as last
/// set (its `updatedAt`), the month and the level, so a crash in between
/// repeats nothing and a new limit alerts again.
struct BudgetMonitor: Service {
    let analytics: any AnalyticsStore
    let workflows: any WorkflowStore
    let orgs: any OrganizationStore
    let notifications: NotificationServices
    let metrics: AnalyticsMetrics
    let interval: Duration
    let logger: Logger
    var now: @Sendable () -> Date = { Date() }

    func run() async throws {
        try? await cancelWhenGracefulShutdown {
            while !Task.isCancelled {
                await checkAll()
                try await Task.sleep(for: interval)
            }
        }
    }

    func checkAll() async {
        do {
            let budgets = try await analytics.budgets()
            metrics.budgets(known: budgets.map { ($0.scope.rawValue, $0.scopeId) })
            for budget in budgets {
                do {
                    try await check(budget)
                } catch {
                    logger.warning("budget check of \(budget.scope.rawValue) \(budget.scopeId) failed: \(error)")
                }
            }
        } catch {
            logger.error("budget checks failed: \(error)")
        }
    }

    func check(_ budget: BudgetRecord) async throws {
        // A budget whose workflow was deleted goes with it.
        if budget.scope == .workflow, try await workflows.workflow(id: budget.scopeId, includeDeleted: false) == nil {
            _ = try await analytics.deleteBudget(scope: .workflow, id: budget.scopeId)
            logger.info("budget of deleted workflow \(budget.scopeId) removed")
            return
        }
        // A head-sampled trace of its own (a background check has no request).
        let span = WeftTracing.start("budget.check")
        defer { span?.end() }
        span?.attributes["weft.budget.scope"] = budget.scope.rawValue
        do {
            let at = now()
            let forecast = try await Self.forecast(budget, analytics: analytics, now: at)
            let name = try await displayName(budget)
            metrics.budget(scope: budget.scope.rawValue, id: budget.scopeId, name: name, limit: budget.monthlyLimitUsd,
                           spent: forecast.spent, forecast: forecast.forecast)
            span?.attributes["weft.budget.status"] = forecast.status
            guard forecast.level > 0,
                budget.alertedMonth != forecast.month || budget.alertLevel < forecast.level
            else { return }
            try await notify(budget, forecast, name: name, at: at)
            _ = try await analytics.markBudgetAlerted(
                scope: budget.scope, id: budget.scopeId, month: forecast.month, level: forecast.level, updatedAt: budget.updatedAt)
            metrics.budgetAlerted(scope: budget.scope.rawValue, level: forecast.status)
            logger.notice("budget \(budget.scope.rawValue) \(budget.scopeId): \(forecast.status) (\(forecast.explanation(limit: budget.monthlyLimitUsd)))")
        } catch {
            span?.recordError(error)
            throw error
        }
    }

    static func forecast(_ budget: BudgetRecord, analytics: any AnalyticsStore, now: Date) async throws -> BudgetForecast {
        let zone = TimeZone(identifier: budget.timeZone) ?? TimeZone(secondsFromGMT: 0)!
        let window = BudgetForecast.window(timeZone: zone, now: now)
        let scope: RollupScope = budget.scope == .workflow ? .workflows([budget.scopeId]) : .organization(budget.scopeId)
        let hours = try await analytics.hourlyTotals(RollupQuery(scope: scope, from: window.from, to: window.to))
        return BudgetForecast.compute(limit: budget.monthlyLimitUsd, timeZone: zone, now: now, hours: hours)
    }

    func displayName(_ budget: BudgetRecord) async throws -> String {
        switch budget.scope {
        case .workflow: try await workflows.workflow(id: budget.scopeId, includeDeleted: true)?.name ?? budget.scopeId
        case .organization: try await orgs.organization(id: budget.scopeId)?.name ?? budget.scopeId
        }
    }

    func notify(_ budget: BudgetRecord, _ forecast: BudgetForecast, name: String, at: Date) async throws {
        let event: NotificationEvent = forecast.level == 2 ? .budgetExceeded : .budgetForecastExceeded
        let explanation = forecast.explanation(limit: budget.monthlyLimitUsd)
        switch budget.scope {
        case .workflow:
            var facts = EventFacts(
                event: event, workflowId: budget.scopeId, workflowName: name, orgId: budget.orgId, executionId: "", at: at,
                status: forecast.status, trigger: "budget")
            facts.reason = explanation
            // Fixes the delivery id to (budget as last set, month, level): a
            // new limit alerts again in the same month.
            facts.scheduleId = "budget:\(Int64((budget.updatedAt.timeIntervalSince1970 * 1000).rounded()))"
            facts.scheduledAt = forecast.monthStart
            let entries = notifications.index.entries(for: facts)
            guard !entries.isEmpty else { return }
            try await notifications.store.enqueueOutbox(entries)
            notifications.index.committed(entries)
        case .organization:
            for (membership, _) in try await orgs.members(orgId: budget.scopeId) where membership.role == .admin {
                let record = NotificationRecord(
                    id: IDGenerator.make("ntf", now: at), userId: membership.userId, workflowId: "", executionId: "",
                    event: event.rawValue,
                    title: event == .budgetExceeded
                        ? "\(name): monthly cost budget exceeded" : "\(name): month-end cost forecast over budget",
                    body: explanation, link: "", deliveryId: "budget:\(budget.scopeId):\(Int64((budget.updatedAt.timeIntervalSince1970 * 1000).rounded())):\(forecast.month):\(forecast.level):\(membership.userId)",
                    createdAt: at)
                if try await notifications.store.insertNotification(record) { notifications.feed.publish(record) }
            }
        }
    }
}
