import Foundation
import WeftProto
import WeftStore

/// Buckets hourly rollup rows into the caller's calendar days, months and
/// years. An hour goes to the local day holding its first instant; in a
/// zone whose offset is whole hours that is exact, across DST changes too
/// (a day is 23 or 25 hours long then). The store sums rows straight into
/// days (`dayStarts`); days merge into months, months into years.
struct TrendBuilder {
    let timeZone: TimeZone

    /// One period's sums.
    struct Bucket {
        var start: Date
        var byStatus: [ExecutionStatus: Int64] = [:]
        var executions: Int64 = 0
        var cost: Double = 0
        var durations = LogHistogram()
        var durationMax: Int64 = 0

        mutating func add(_ hour: HourlyTotal) {
            for (status, count) in hour.byStatus { byStatus[status, default: 0] += count }
            executions += hour.executions
            cost += hour.costSum
            durations.merge(hour.durations)
            durationMax = max(durationMax, hour.durationMsMax)
        }

        mutating func add(_ other: Bucket) {
            for (status, count) in other.byStatus { byStatus[status, default: 0] += count }
            executions += other.executions
            cost += other.cost
            durations.merge(other.durations)
            durationMax = max(durationMax, other.durationMax)
        }
    }

    /// True when some offset of the zone in [from, to] is not whole hours.
    func offHour(from: Date, to: Date) -> Bool {
        var probe = from
        while probe <= to {
            if timeZone.secondsFromGMT(for: probe) % 3600 != 0 { return true }
            guard let next = timeZone.nextDaylightSavingTimeTransition(after: probe) else { break }
            probe = next
        }
        return timeZone.secondsFromGMT(for: to) % 3600 != 0
    }

    /// The first rollup hour of each local day from the one holding `from`
    /// to the one holding `to`: the hour holding local midnight when the
    /// offset is whole hours, else the first whole hour after it.
    func dayStarts(from: Date, to: Date) -> [RollupHour] {
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = timeZone
        var starts: [RollupHour] = []
        var day = calendar.startOfDay(for: from)
        while day <= to {
            let hour = RollupHour(Int64((day.timeIntervalSince1970 / 3600).rounded(.up)))
            if starts.last != hour { starts.append(hour) }
            // The next local midnight (or the day's first instant where
            // midnight does not exist, a DST change at 00:00): from the middle
            // of the next day back to its start, never "this time tomorrow".
            let next = calendar.startOfDay(for: day.addingTimeInterval(36 * 3600))
            guard next > day else { break }
            day = next
        }
        return starts
    }

    /// Daily totals (as `hourlyTotals` sums them into `dayStarts`) into
    /// days, months and years.
    func build(days totals: [HourlyTotal]) -> (
        daily: [Weft_V1_TrendPoint], monthly: [Weft_V1_TrendPoint], yearly: [Weft_V1_TrendPoint]
    ) {
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = timeZone
        var days: [(key: String, bucket: Bucket)] = []
        for total in totals.sorted(by: { $0.hour < $1.hour }) {
            let start = calendar.startOfDay(for: total.hour.start)
            let parts = calendar.dateComponents([.year, .month, .day], from: start)
            let dayKey = Self.key(parts.year ?? 0, parts.month, parts.day)
            if days.last?.key != dayKey { days.append((dayKey, Bucket(start: start))) }
            days[days.count - 1].bucket.add(total)
        }
        var months: [(key: String, bucket: Bucket)] = []
        var years: [(key: String, bucket: Bucket)] = []
        for (dayKey, bucket) in days {
            let monthKey = String(dayKey.prefix(7))
            let yearKey = String(dayKey.prefix(4))
            if months.last?.key != monthKey {
                let start = calendar.date(from: calendar.dateComponents([.year, .month], from: bucket.start)) ?? bucket.start
                months.append((monthKey, Bucket(start: start)))
            }
            months[months.count - 1].bucket.add(bucket)
            if years.last?.key != yearKey {
                let start = calendar.date(from: calendar.dateComponents([.year], from: bucket.start)) ?? bucket.start
                years.append((yearKey, Bucket(start: start)))
            }
            years[years.count - 1].bucket.add(bucket)
        }
        return (days.map(Self.point), months.map(Self.point), years.map(Self.point))
    }

    static func key(_ year: Int, _ month: Int?, _ day: Int?) -> String {
        var text = String(format: "%04d", year)
        if let month { text += String(format: "-%02d", month) }
        if let day { text += String(format: "-%02d", day) }
        return text
    }

    static func point(_ entry: (key: String, bucket: Bucket)) -> Weft_V1_TrendPoint {
        let bucket = entry.bucket
        var point = Weft_V1_TrendPoint()
        point.period = entry.key
        point.start = ProtoMapping.timestamp(bucket.start)
        point.started = bucket.executions
        point.completed = bucket.byStatus[.completed] ?? 0
        point.failed = bucket.byStatus[.failed] ?? 0
        point.cancelled = bucket.byStatus[.cancelled] ?? 0
        point.timedOut = bucket.byStatus[.timedOut] ?? 0
        point.cost = bucket.cost
        point.successRate = WorkflowStatsBuilder.ratio(point.completed, bucket.executions)
        if bucket.executions > 0 {
            let durations = WorkflowStatsBuilder.percentiles(bucket.durations, maximum: bucket.durationMax)
            point.p50Duration = durations.p50
            point.p95Duration = durations.p95
            point.p99Duration = durations.p99
        }
        return point
    }
}
