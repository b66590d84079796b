import Foundation
import Prometheus
import Synchronization
import WeftObservability

/// Analytics metrics (docs/METRICS.md): how long queries take, and each
/// budget's limit, month-to-date spend and forecast. Budget gauges are
/// labelled by the workflow's or organization's name (never an id); a
/// deleted budget's gauges are removed.
final class AnalyticsMetrics: Sendable {
    static let queries = ["stats", "trends", "insights", "prediction", "budget"]

    private let metrics: WeftMetrics
    private let durations: [String: DurationHistogram]
    /// "scope|id" -> its three gauges.
    private let gauges = Mutex<[String: [Prometheus.Gauge]]>([:])
    private let alerts = Mutex<[String: Prometheus.Counter]>([:])

    static let buckets: [Duration] = [
        .microseconds(250), .microseconds(500), .milliseconds(1), .milliseconds(2), .milliseconds(5), .milliseconds(10),
        .milliseconds(25), .milliseconds(50), .milliseconds(100), .milliseconds(250), .milliseconds(500), .seconds(1),
        .seconds(5), .seconds(60),
    ]

    init(metrics: WeftMetrics) {
        self.metrics = metrics
        var durations: [String: DurationHistogram] = [:]
        for query in Self.queries {
            durations[query] = metrics.durationHistogram(
                MetricNames.analyticsQueryDuration,
                help: "Time to answer an analytics call from the rollups, by query (stats, trends, insights, prediction, budget).",
                labels: [("query", query)], buckets: Self.buckets)
        }
        self.durations = durations
    }

    func measure<T>(_ query: String, _ body: () async throws -> T) async throws -> T {
        let start = ContinuousClock.now
        defer {
            durations[query]?.recordNanoseconds(Int64((ContinuousClock.now - start) / .nanoseconds(1)))
        }
        return try await body()
    }

    func budget(scope: String, id: String, name: String, limit: Double, spent: Double, forecast: Double) {
        let set = gauges.withLock { gauges in
            if let known = gauges[scope + "|" + id] { return known }
            let labels = [("scope", scope), ("name", name)]
            let made = [
                metrics.gauge(MetricNames.budgetLimit, help: "Monthly cost budgets in US dollars, by scope (workflow, organization) and name.", labels: labels),
                metrics.gauge(MetricNames.budgetSpend, help: "Cost so far this month of each budget's workflow or organization, in US dollars.", labels: labels),
                metrics.gauge(MetricNames.budgetForecast, help: "Forecast month-end cost of each budget's workflow or organization, in US dollars.", labels: labels),
            ]
            gauges[scope + "|" + id] = made
            return made
        }
        set[0].set(limit)
        set[1].set(spent)
        set[2].set(forecast)
    }

    /// Drops the gauges of budgets that are gone. Two budgets whose
    /// workflows share a name share a series, so after a removal every
    /// budget's gauges are made (registered) again on its next check.
    func budgets(known: [(String, String)]) {
        let keep = Set(known.map { $0.0 + "|" + $0.1 })
        let gone = gauges.withLock { gauges in
            let gone = gauges.filter { !keep.contains($0.key) }
            if !gone.isEmpty { gauges = [:] }
            return gone.values.flatMap { $0 }
        }
        for gauge in gone { metrics.registry.unregisterGauge(gauge) }
    }

    func budgetAlerted(scope: String, level: String) {
        alerts.withLock { alerts in
            let key = scope + "|" + level
            if alerts[key] == nil {
                alerts[key] = metrics.counter(
                    MetricNames.budgetAlerts, help: "Budget alerts sent, by scope and level (forecast_over, over).",
                    labels: [("scope", scope), ("level", level)])
            }
            return alerts[key]!
        }.increment()
    }
}
