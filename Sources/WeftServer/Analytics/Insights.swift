import Foundation
import WeftProto
import WeftStore

/// The seed's "predictive analytics", as plain statistics over a workflow's
/// rollups: every insight carries the numbers it rests on and a stated
/// confidence (docs/ANALYTICS.md gives each formula).
struct Insights {
    /// Fewest samples an insight is drawn from.
    static let minimumSample: Int64 = 10
    /// A retry setting aims at this chance of a run failing every attempt.
    static let targetGiveUp = 0.001
    static let maxSuggestedAttempts = 10
    /// A run is anomalous at this many standard deviations, and above the
    /// history's p99.
    static let anomalyScore = 3.0
    /// One-sided 99 % for a drop in success rate.
    static let dropZ = -2.326

    var executions: [(key: ExecutionRollupKey, value: ExecutionRollup)]
    var tasks: [(key: TaskRollupKey, value: TaskRollup)]

    // MARK: Prediction

    /// Completed runs of the newest version with enough of them, else of all versions.
    func completedHistory() -> (rollup: ExecutionRollup, version: Int?) {
        var byVersion: [Int: ExecutionRollup] = [:]
        var all = ExecutionRollup()
        for (key, value) in executions where key.status == .completed {
            byVersion[key.version, default: ExecutionRollup()].merge(value)
            all.merge(value)
        }
        if let newest = byVersion.keys.max(), let rollup = byVersion[newest], rollup.executions >= Self.minimumSample {
            return (rollup, newest)
        }
        return (all, nil)
    }

    /// Distribution-free: for n exchangeable runs, the next one falls
    /// between the j-th and k-th smallest with probability (k − j)/(n + 1).
    static func interval(_ histogram: LogHistogram, maximum: Int64?) -> (low: Int64, high: Int64, confidence: Double)? {
        let n = histogram.total
        guard n >= 2 else { return nil }
        let j = max(1, Int64((0.1 * Double(n + 1)).rounded(.down)))
        let k = min(n, Int64((0.9 * Double(n + 1)).rounded(.up)))
        guard let low = histogram.value(atRank: j, maximum: maximum),
            let high = histogram.value(atRank: k, maximum: maximum)
        else { return nil }
        return (low, high, Double(k - j) / Double(n + 1))
    }

    func nextRun() -> Weft_V1_DurationPrediction {
        let (history, version) = completedHistory()
        var prediction = Weft_V1_DurationPrediction()
        prediction.sampleSize = history.executions
        let of = version.map { "version \($0)" } ?? "all versions"
        guard history.executions >= 2,
            let median = history.durations.quantile(0.5, maximum: history.durationMsMax),
            let interval = Self.interval(history.durations, maximum: history.durationMsMax)
        else {
            prediction.explanation = "not enough completed runs to predict from (\(history.executions); 2 or more needed)"
            return prediction
        }
        let n = Double(history.executions)
        let mean = history.durationMsSum / n
        let variance = max(0, history.durationMsSquares / n - mean * mean) * n / (n - 1)
        prediction.predicted = ProtoMapping.duration(ms: median)
        prediction.low = ProtoMapping.duration(ms: interval.low)
        prediction.high = ProtoMapping.duration(ms: interval.high)
        prediction.confidence = interval.confidence
        prediction.mean = ProtoMapping.duration(ms: Int64(mean.rounded()))
        prediction.standardDeviation = ProtoMapping.duration(ms: Int64(variance.squareRoot().rounded()))
        prediction.explanation = """
            median of \(history.executions) completed runs (\(of)); the interval is the 10th to 90th percentile \
            of those runs, which holds the next run with probability \(Self.percent(interval.confidence)) \
            if runs are alike (order statistics, no distribution assumed)
            """
        return prediction
    }

    // MARK: Bottleneck

    func bottleneck() -> Weft_V1_Bottleneck? {
        var finished = ExecutionRollup()
        for (_, value) in executions { finished.merge(value) }
        guard finished.executions > 0 else { return nil }
        var merged: [String: TaskRollup] = [:]
        for (key, value) in tasks { merged[key.taskKey, default: TaskRollup()].merge(value) }
        guard let (key, rollup) = merged.filter({ $0.value.criticalRuns > 0 })
            .max(by: { ($0.value.criticalMsSum, $1.key) < ($1.value.criticalMsSum, $0.key) })
        else { return nil }
        let n = Double(finished.executions)
        let contribution = rollup.criticalMsSum / n
        let meanDuration = finished.durationMsSum / n
        var result = Weft_V1_Bottleneck()
        result.taskKey = key
        result.meanContribution = ProtoMapping.duration(ms: Int64(contribution.rounded()))
        result.shareOfDuration = meanDuration > 0 ? min(1, contribution / meanDuration) : 0
        result.onCriticalPath = Double(rollup.criticalRuns) / n
        result.sampleSize = finished.executions
        result.explanation = """
            on the critical path of \(Self.percent(result.onCriticalPath)) of \(finished.executions) executions, \
            adding \(Self.seconds(contribution)) on average (its wait and run) of a mean duration of \
            \(Self.seconds(meanDuration)): \(Self.percent(result.shareOfDuration)) of it
            """
        return result
    }

    // MARK: Flaky tasks

    func flakyTasks() -> [Weft_V1_FlakyTask] {
        var merged: [String: TaskRollup] = [:]
        for (key, value) in tasks { merged[key.taskKey, default: TaskRollup()].merge(value, cappedErrors: false) }
        return merged.filter { $0.value.flaky >= 2 }.map { key, rollup in
            var task = Weft_V1_FlakyTask()
            task.taskKey = key
            task.runs = rollup.runs
            task.flakyRuns = rollup.flaky
            task.flakyRate = WorkflowStatsBuilder.ratio(rollup.flaky, rollup.runs)
            task.confidence = Self.wilsonLower(successes: rollup.flaky, trials: rollup.runs)
            // The most frequent messages; the rest as one count.
            let ranked = rollup.errors.filter { $0.key != TaskRollup.otherErrors }.sorted { ($0.value, $1.key) > ($1.value, $0.key) }
            var kept = Array(ranked.prefix(TaskRollup.maxErrors))
            let rest = ranked.dropFirst(TaskRollup.maxErrors).reduce(0) { $0 + $1.value } + (rollup.errors[TaskRollup.otherErrors] ?? 0)
            if rest > 0 { kept.append((key: TaskRollup.otherErrors, value: rest)) }
            task.errors = kept.map { message, count in
                var error = Weft_V1_ErrorCount()
                error.message = message
                error.count = count
                return error
            }
            task.explanation = """
                \(rollup.flaky) of \(rollup.runs) runs completed only after a retry \
                (\(Self.percent(task.flakyRate)); with 95 % confidence at least \(Self.percent(task.confidence)))
                """
            return task
        }.sorted { ($0.flakyRate, $1.taskKey) > ($1.flakyRate, $0.taskKey) }
    }

    /// The lower end of the 95 % Wilson score interval of a proportion.
    static func wilsonLower(successes: Int64, trials: Int64) -> Double {
        guard trials > 0 else { return 0 }
        let z = 1.96
        let n = Double(trials)
        let p = Double(successes) / n
        let centre = p + z * z / (2 * n)
        let margin = z * (p * (1 - p) / n + z * z / (4 * n * n)).squareRoot()
        return max(0, (centre - margin) / (1 + z * z / n))
    }

    // MARK: Suggestions

    func suggestions(definition: [TaskRecord]) -> [Weft_V1_TaskSuggestion] {
        var merged: [String: TaskRollup] = [:]
        for (key, value) in tasks { merged[key.taskKey, default: TaskRollup()].merge(value) }
        return definition.compactMap { task -> Weft_V1_TaskSuggestion? in
            guard let rollup = merged[task.key], rollup.runs >= Self.minimumSample,
                let p99 = rollup.durations.quantile(0.99, maximum: rollup.durationMsMax)
            else { return nil }
            var suggestion = Weft_V1_TaskSuggestion()
            suggestion.taskKey = task.key
            suggestion.sampleSize = rollup.runs
            suggestion.observedP99 = ProtoMapping.duration(ms: p99)
            suggestion.observedMax = ProtoMapping.duration(ms: rollup.durationMsMax)
            if let current = task.timeoutMs { suggestion.currentTimeout = ProtoMapping.duration(ms: current) }
            // 1.5 × p99, whole seconds up: room for the slow tail without
            // waiting minutes for a hung attempt.
            let suggested = max(1000, Int64((Double(p99) * 1.5 / 1000).rounded(.up)) * 1000)
            suggestion.suggestedTimeout = ProtoMapping.duration(ms: suggested)
            let current = task.retry?.maxAttempts ?? 1
            suggestion.currentMaxAttempts = Int32(clamping: current)
            let completed = rollup.runs - rollup.failed
            let failedAttempts = max(0, rollup.attempts - completed)
            let q = rollup.attempts > 0 ? Double(failedAttempts) / Double(rollup.attempts) : 0
            suggestion.attemptFailureRate = q
            var retryNote: String
            if q == 0 {
                suggestion.suggestedMaxAttempts = Int32(clamping: current)
                retryNote = "no attempt failed in \(rollup.attempts) attempts: nothing to change"
            } else if q >= 0.5 {
                suggestion.suggestedMaxAttempts = Int32(clamping: current)
                retryNote = "\(Self.percent(q)) of attempts fail: more retries would not fix it; the task needs fixing"
            } else {
                // Smallest n with q^n <= target, if attempts fail independently.
                let n = Int((log(Self.targetGiveUp) / log(q)).rounded(.up))
                suggestion.suggestedMaxAttempts = Int32(min(Self.maxSuggestedAttempts, max(1, n)))
                retryNote = """
                    \(Self.percent(q)) of attempts fail; with \(suggestion.suggestedMaxAttempts) attempts a run fails \
                    all of them with probability \(String(format: "%.2g", pow(q, Double(suggestion.suggestedMaxAttempts)))) \
                    if failures are independent
                    """
            }
            suggestion.explanation = """
                timeout \(Self.seconds(Double(suggested))) = 1.5 × the p99 of \(rollup.runs) runs \
                (\(Self.seconds(Double(p99))), first start to end, retries included)\
                \(task.timeoutMs.map { $0 < p99 ? "; the current \(Self.seconds(Double($0))) is below the p99" : "" } ?? "; the task has no timeout now"); \
                \(retryNote)
                """
            return suggestion
        }
    }

    // MARK: Anomalies

    /// Recent runs far from the history, and a drop in success rate from
    /// one version to the next.
    func anomalies(recent: [ExecutionRecord]) -> [Weft_V1_Anomaly] {
        var result: [Weft_V1_Anomaly] = []
        var completed = ExecutionRollup()
        var all = ExecutionRollup()
        for (key, value) in executions {
            all.merge(value)
            if key.status == .completed { completed.merge(value) }
        }
        if completed.executions >= Self.minimumSample,
            let p99 = completed.durations.quantile(0.99, maximum: completed.durationMsMax)
        {
            let n = Double(completed.executions)
            let mean = completed.durationMsSum / n
            let sd = (max(0, completed.durationMsSquares / n - mean * mean) * n / (n - 1)).squareRoot()
            for execution in recent where execution.status == .completed {
                guard let end = execution.completedAt else { continue }
                let ms = RollupFold.milliseconds(end.timeIntervalSince(execution.createdAt))
                let z = sd > 0 ? (Double(ms) - mean) / sd : 0
                guard ms > p99, z >= Self.anomalyScore else { continue }
                var anomaly = Weft_V1_Anomaly()
                anomaly.kind = "slow_run"
                anomaly.executionID = execution.executionId
                anomaly.version = Int32(clamping: execution.workflowVersion)
                anomaly.observed = Double(ms) / 1000
                anomaly.expected = mean / 1000
                anomaly.score = z
                anomaly.confidence = 1 - Double(completed.durations.count(above: ms)) / n
                anomaly.at = ProtoMapping.timestamp(end)
                anomaly.explanation = """
                    took \(Self.seconds(Double(ms))): \(String(format: "%.1f", z)) standard deviations above the mean \
                    \(Self.seconds(mean)) of \(completed.executions) completed runs, and above their p99 \(Self.seconds(Double(p99)))
                    """
                result.append(anomaly)
            }
        }
        if all.executions >= Self.minimumSample, let p99 = all.costs.quantile(0.99, maximum: RollupFold.nanoDollars(all.costMax)),
            let median = all.costs.quantile(0.5), median > 0
        {
            for execution in recent where execution.isFinished {
                let nano = RollupFold.nanoDollars(execution.cost)
                guard nano > p99, Double(nano) >= 2 * Double(median) else { continue }
                var anomaly = Weft_V1_Anomaly()
                anomaly.kind = "costly_run"
                anomaly.executionID = execution.executionId
                anomaly.version = Int32(clamping: execution.workflowVersion)
                anomaly.observed = execution.cost
                anomaly.expected = Double(median) / 1e9
                anomaly.score = Double(nano) / Double(median)
                anomaly.confidence = 1 - Double(all.costs.count(above: nano)) / Double(all.executions)
                if let end = execution.completedAt { anomaly.at = ProtoMapping.timestamp(end) }
                anomaly.explanation = """
                    cost $\(String(format: "%.6f", execution.cost)): \(String(format: "%.1f", anomaly.score))× the median \
                    $\(String(format: "%.6f", Double(median) / 1e9)) of \(all.executions) runs, above their p99
                    """
                result.append(anomaly)
            }
        }
        if let drop = successRateDrop() { result.append(drop) }
        return result
    }

    /// The newest version against the one before it, by a two-proportion
    /// z-test (one-sided, 99 %).
    func successRateDrop() -> Weft_V1_Anomaly? {
        var finished: [Int: Int64] = [:]
        var completed: [Int: Int64] = [:]
        var lastSeen: [Int: Date] = [:]
        for (key, value) in executions {
            finished[key.version, default: 0] += value.executions
            if key.status == .completed { completed[key.version, default: 0] += value.executions }
            if let last = value.lastFinishedAt { lastSeen[key.version] = max(lastSeen[key.version] ?? last, last) }
        }
        let versions = finished.keys.sorted()
        guard versions.count >= 2 else { return nil }
        let new = versions[versions.count - 1]
        let old = versions[versions.count - 2]
        let n1 = Double(finished[old] ?? 0)
        let n2 = Double(finished[new] ?? 0)
        guard n1 >= Double(Self.minimumSample), n2 >= Double(Self.minimumSample) else { return nil }
        let p1 = Double(completed[old] ?? 0) / n1
        let p2 = Double(completed[new] ?? 0) / n2
        let pooled = (p1 * n1 + p2 * n2) / (n1 + n2)
        let se = (pooled * (1 - pooled) * (1 / n1 + 1 / n2)).squareRoot()
        guard se > 0 else { return nil }
        let z = (p2 - p1) / se
        guard z <= Self.dropZ else { return nil }
        var anomaly = Weft_V1_Anomaly()
        anomaly.kind = "success_rate_drop"
        anomaly.version = Int32(clamping: new)
        anomaly.observed = p2
        anomaly.expected = p1
        anomaly.score = z
        anomaly.confidence = Self.normalCDF(-z)
        if let at = lastSeen[new] { anomaly.at = ProtoMapping.timestamp(at) }
        anomaly.explanation = """
            version \(new) succeeded in \(Self.percent(p2)) of \(Int(n2)) runs against \(Self.percent(p1)) of \(Int(n1)) \
            for version \(old): z = \(String(format: "%.2f", z)), a drop this large by chance has probability \
            \(String(format: "%.2g", 1 - anomaly.confidence))
            """
        return anomaly
    }

    static func normalCDF(_ x: Double) -> Double { 0.5 * erfc(-x / 2.0.squareRoot()) }

    static func percent(_ ratio: Double) -> String {
        let value = ratio * 100
        return value == value.rounded() ? "\(Int(value)) %" : String(format: "%.1f %%", value)
    }

    static func seconds(_ ms: Double) -> String {
        ms < 1000 ? "\(Int(ms.rounded())) ms" : String(format: "%.2f s", ms / 1000)
    }
}
