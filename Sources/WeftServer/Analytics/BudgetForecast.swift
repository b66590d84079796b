import Foundation
import WeftProto
import WeftStore

/// A budget's month so far and its month-end forecast, from the hourly
/// cost rollups: spent (this calendar month in the budget's zone), the
/// daily rate (the last 7 days, or since the first cost when younger),
/// forecast = spent + rate × days left, and an interval from the spread of
/// the last 14 days' daily spend.
struct BudgetForecast: Sendable {
    var month: String
    var monthStart: Date
    var spent: Double
    var dailyRate: Double
    var forecast: Double
    var low: Double
    var high: Double
    var daysLeft: Double
    /// 0 ok, 1 forecast over the limit, 2 spent over it.
    var level: Int

    var status: String { ["ok", "forecast_over", "over"][level] }

    /// The hours a forecast reads: from 14 days back (or the month's start,
    /// if earlier) to now.
    static func window(timeZone: TimeZone, now: Date) -> (from: RollupHour, to: RollupHour, monthStart: Date, next: Date) {
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = timeZone
        let monthStart = calendar.date(from: calendar.dateComponents([.year, .month], from: now)) ?? now
        let next = calendar.date(byAdding: .month, value: 1, to: monthStart) ?? now
        let from = min(monthStart, now.addingTimeInterval(-14 * 86_400))
        return (RollupHour(containing: from), RollupHour(containing: now).next, monthStart, next)
    }

    static func compute(
        limit: Double, timeZone: TimeZone, now: Date, hours: [HourlyTotal]
    ) -> BudgetForecast {
        let (_, _, monthStart, next) = window(timeZone: timeZone, now: now)
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = timeZone
        let parts = calendar.dateComponents([.year, .month], from: monthStart)
        let month = TrendBuilder.key(parts.year ?? 0, parts.month, nil)
        let monthHour = RollupHour(containing: monthStart)
        let nowHour = RollupHour(containing: now)
        var spent = 0.0
        // Cost by hour.
        var byHour: [Int64: Double] = [:]
        for total in hours {
            if total.hour >= monthHour { spent += total.costSum }
            byHour[total.hour.value, default: 0] += total.costSum
        }
        // The daily rate over the last 7 days, or since the first hour with
        // a cost when that is more recent (at least one hour).
        let weekStart = nowHour.value - 7 * 24
        let first = byHour.filter { $0.value > 0 }.keys.min() ?? nowHour.value
        let since = max(weekStart, first)
        let spanHours = Double(max(1, nowHour.value + 1 - since))
        let recent = byHour.filter { $0.key >= since }.values.reduce(0, +)
        let dailyRate = recent / spanHours * 24
        let daysLeft = max(0, next.timeIntervalSince(now) / 86_400)
        let forecast = spent + dailyRate * daysLeft
        // Daily spends of the last 14 whole 24-hour spans (the current,
        // partial one left out), for the spread.
        var daily: [Double] = []
        for day in 0..<14 {
            let end = nowHour.value - Int64(day) * 24
            let start = end - 24
            guard start >= first else { break }
            daily.append(byHour.filter { $0.key >= start && $0.key < end }.values.reduce(0, +))
        }
        var low = forecast
        var high = forecast
        if daily.count >= 2 {
            let mean = daily.reduce(0, +) / Double(daily.count)
            let variance = daily.reduce(0) { $0 + ($1 - mean) * ($1 - mean) } / Double(daily.count - 1)
            let margin = 1.96 * variance.squareRoot() * daysLeft.squareRoot()
            low = max(spent, forecast - margin)
            high = forecast + margin
        }
        let level = spent > limit ? 2 : forecast > limit ? 1 : 0
        return BudgetForecast(
            month: month, monthStart: monthStart, spent: spent, dailyRate: dailyRate, forecast: forecast, low: low, high: high,
            daysLeft: daysLeft, level: level)
    }

    func proto(_ budget: BudgetRecord) -> Weft_V1_Budget {
        var result = Weft_V1_Budget()
        result.scope = budget.scope.rawValue
        result.scopeID = budget.scopeId
        result.monthlyLimitUsd = budget.monthlyLimitUsd
        result.timeZone = budget.timeZone
        result.month = month
        result.spentUsd = spent
        result.forecastUsd = forecast
        result.forecastLowUsd = low
        result.forecastHighUsd = high
        result.dailyRateUsd = dailyRate
        result.status = status
        result.updatedAt = ProtoMapping.timestamp(budget.updatedAt)
        result.explanation = explanation(limit: budget.monthlyLimitUsd)
        return result
    }

    func explanation(limit: Double) -> String {
        func usd(_ value: Double) -> String { String(format: abs(value) >= 1 || value == 0 ? "$%.2f" : "$%.6f", value) }
        return """
            \(usd(spent)) spent in \(month) of \(usd(limit)); at \(usd(dailyRate))/day for the \
            \(String(format: "%.1f", daysLeft)) days left the month ends near \(usd(forecast)) \
            (95 % interval \(usd(low))–\(usd(high)))
            """
    }
}
