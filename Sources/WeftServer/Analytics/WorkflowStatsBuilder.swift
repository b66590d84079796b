import Foundation
import SwiftProtobuf
import WeftProto
import WeftRPC
import WeftStore

/// Turns a workflow's rollup rows into `WorkflowStats`: sums add, maxima
/// take the larger, histograms merge, so every figure is exact except
/// percentiles, which are within `LogHistogram.relativeError`.
/// docs/ANALYTICS.md defines each number.
struct WorkflowStatsBuilder {
    static let listed = 5

    var workflowId: String
    var window: AnalyticsWindow
    var executions: [(key: ExecutionRollupKey, value: ExecutionRollup)]
    var tasks: [(key: TaskRollupKey, value: TaskRollup)]
    var running: Int

    func build() -> Weft_V1_WorkflowStats {
        var stats = Weft_V1_WorkflowStats()
        stats.workflowID = workflowId
        stats.windowStart = ProtoMapping.timestamp(window.from.start)
        stats.windowEnd = ProtoMapping.timestamp(window.to.start)
        stats.durationErrorBound = LogHistogram.relativeError
        var all = ExecutionRollup()
        var byStatus: [ExecutionStatus: Int64] = [:]
        var byTrigger: [TriggerKind: Int64] = [:]
        var byVersion: [Int: [ExecutionStatus: ExecutionRollup]] = [:]
        for (key, value) in executions {
            all.merge(value)
            byStatus[key.status, default: 0] += value.executions
            byTrigger[key.trigger, default: 0] += value.executions
            byVersion[key.version, default: [:]][key.status, default: ExecutionRollup()].merge(value)
        }
        stats.byTrigger = byTrigger.sorted { ($0.value, $1.key.rawValue) > ($1.value, $0.key.rawValue) }.map { trigger, count in
            var entry = Weft_V1_TriggerCount()
            entry.trigger = trigger.rawValue
            entry.executions = count
            return entry
        }
        stats.running = Int64(running)
        stats.finished = all.executions
        stats.totalExecutions = all.executions + Int64(running)
        stats.completed = byStatus[.completed] ?? 0
        stats.failed = byStatus[.failed] ?? 0
        stats.cancelled = byStatus[.cancelled] ?? 0
        stats.timedOut = byStatus[.timedOut] ?? 0
        stats.successRate = Self.ratio(stats.completed, all.executions)
        stats.retryRate = Self.ratio(all.retried, all.executions)
        if all.executions > 0 {
            let durations = Self.percentiles(all.durations, maximum: all.durationMsMax)
            stats.p50Duration = durations.p50
            stats.p95Duration = durations.p95
            stats.p99Duration = durations.p99
            stats.maxDuration = ProtoMapping.duration(ms: all.durationMsMax)
            stats.meanDuration = ProtoMapping.duration(ms: Int64((all.durationMsSum / Double(all.executions)).rounded()))
            let waits = Self.percentiles(all.waits, maximum: nil)
            stats.p50QueueWait = waits.p50
            stats.p95QueueWait = waits.p95
            stats.p99QueueWait = waits.p99
            stats.totalCost = all.costSum
            stats.averageCost = all.costSum / Double(all.executions)
            stats.p95Cost = Self.dollars(all.costs.quantile(0.95, maximum: RollupFold.nanoDollars(all.costMax)))
            stats.maxCost = all.costMax
        }
        if let last = all.lastFinishedAt { stats.lastExecutionAt = ProtoMapping.timestamp(last) }
        stats.tasks = taskStats()
        stats.slowestTasks = stats.tasks.filter { $0.runs > 0 }
            .sorted { (Self.ms($0.p95Duration), $1.taskKey) > (Self.ms($1.p95Duration), $0.taskKey) }
            .prefix(Self.listed).map(\.taskKey)
        stats.mostFailingTasks = stats.tasks.filter { $0.failed > 0 }
            .sorted { ($0.failureRate, $1.taskKey) > ($1.failureRate, $0.taskKey) }
            .prefix(Self.listed).map(\.taskKey)
        stats.versions = byVersion.keys.sorted(by: >).map { version in
            Self.versionStats(version, byVersion[version] ?? [:])
        }
        return stats
    }

    func taskStats() -> [Weft_V1_TaskStats] {
        var merged: [String: TaskRollup] = [:]
        for (key, value) in tasks { merged[key.taskKey, default: TaskRollup()].merge(value) }
        let totalCost = merged.values.reduce(0) { $0 + $1.costSum }
        return merged.keys.sorted().map { key in
            let rollup = merged[key]!
            var task = Weft_V1_TaskStats()
            task.taskKey = key
            task.runs = rollup.runs
            task.failed = rollup.failed
            task.failureRate = Self.ratio(rollup.failed, rollup.runs)
            task.retried = rollup.retried
            task.flaky = rollup.flaky
            task.attempts = rollup.attempts
            if rollup.runs > 0 {
                let durations = Self.percentiles(rollup.durations, maximum: rollup.durationMsMax)
                task.p50Duration = durations.p50
                task.p95Duration = durations.p95
                task.p99Duration = durations.p99
                task.maxDuration = ProtoMapping.duration(ms: rollup.durationMsMax)
            }
            task.cost = rollup.costSum
            task.costShare = totalCost > 0 ? rollup.costSum / totalCost : 0
            task.criticalPathRuns = rollup.criticalRuns
            if rollup.criticalRuns > 0 {
                task.meanCriticalContribution = ProtoMapping.duration(
                    ms: Int64((rollup.criticalMsSum / Double(rollup.criticalRuns)).rounded()))
            }
            return task
        }
    }

    static func versionStats(_ version: Int, _ byStatus: [ExecutionStatus: ExecutionRollup]) -> Weft_V1_VersionStats {
        var all = ExecutionRollup()
        for value in byStatus.values { all.merge(value) }
        var stats = Weft_V1_VersionStats()
        stats.version = Int32(clamping: version)
        stats.finished = all.executions
        stats.completed = byStatus[.completed]?.executions ?? 0
        stats.failed = byStatus[.failed]?.executions ?? 0
        stats.successRate = ratio(stats.completed, all.executions)
        if all.executions > 0 {
            let durations = percentiles(all.durations, maximum: all.durationMsMax)
            stats.p50Duration = durations.p50
            stats.p95Duration = durations.p95
            stats.averageCost = all.costSum / Double(all.executions)
        }
        if let first = all.firstCreatedAt { stats.firstStarted = ProtoMapping.timestamp(first) }
        if let last = all.lastFinishedAt { stats.lastFinished = ProtoMapping.timestamp(last) }
        return stats
    }

    static func ratio(_ part: Int64, _ whole: Int64) -> Double { whole > 0 ? Double(part) / Double(whole) : 0 }

    static func percentiles(_ histogram: LogHistogram, maximum: Int64?)
        -> (p50: Google_Protobuf_Duration, p95: Google_Protobuf_Duration, p99: Google_Protobuf_Duration)
    {
        func at(_ p: Double) -> Google_Protobuf_Duration {
            ProtoMapping.duration(ms: histogram.quantile(p, maximum: maximum) ?? 0)
        }
        return (at(0.5), at(0.95), at(0.99))
    }

    static func dollars(_ nano: Int64?) -> Double { Double(nano ?? 0) / 1e9 }

    static func ms(_ duration: Google_Protobuf_Duration) -> Int64 {
        duration.seconds * 1000 + Int64(duration.nanos / 1_000_000)
    }
}

/// The hours a statistic covers: [from, to).
struct AnalyticsWindow: Sendable, Hashable {
    var from: RollupHour
    var to: RollupHour

    static let presets: [String: TimeInterval] = [
        "hour": 3600, "day": 86_400, "week": 7 * 86_400, "month": 30 * 86_400,
    ]

    /// From a request's `window` or explicit bounds, widened to whole hours
    /// (the rollups' grain): the hour holding `from` to the end of the hour
    /// holding the instant just before `to`.
    static func resolve(window: String, from: Date?, to: Date?, now: Date, defaultWindow: String = "week") throws
        -> AnalyticsWindow
    {
        let end = to ?? now
        let start: Date
        if let from {
            start = from
        } else {
            let name = window.isEmpty ? defaultWindow : window
            guard let length = presets[name] else {
                throw RPCError(code: .invalidArgument, message: "window \"\(window)\" is not a window; use hour, day, week or month, or give from and to")
            }
            start = end.addingTimeInterval(-length)
        }
        guard start < end else {
            throw RPCError(code: .invalidArgument, message: "the window is empty: from must be before to")
        }
        guard end.timeIntervalSince(start) <= 5 * 366 * 86_400 else {
            throw RPCError(code: .invalidArgument, message: "a window is at most 5 years long")
        }
        return AnalyticsWindow(
            from: RollupHour(containing: start), to: RollupHour(containing: end.addingTimeInterval(-0.001)).next)
    }
}
