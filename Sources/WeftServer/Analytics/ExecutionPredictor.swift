import Foundation
import WeftProto
import WeftStore

/// When an execution will finish, from completed runs of its workflow
/// (its version's when there are enough) that took longer than it has run
/// so far: the conditional distribution "given it has run this long".
struct ExecutionPredictor {
    var execution: ExecutionRecord
    /// Completed-run rollups of the workflow.
    var history: [(key: ExecutionRollupKey, value: ExecutionRollup)]
    var deadline: Date?
    var now: Date

    func predict() -> Weft_V1_ExecutionPrediction {
        var result = Weft_V1_ExecutionPrediction()
        result.executionID = execution.executionId
        result.status = execution.status.rawValue
        result.startedAt = ProtoMapping.timestamp(execution.createdAt)
        if let deadline { result.deadline = ProtoMapping.timestamp(deadline) }
        if execution.isFinished, let end = execution.completedAt {
            let elapsed = RollupFold.milliseconds(end.timeIntervalSince(execution.createdAt))
            result.elapsed = ProtoMapping.duration(ms: elapsed)
            result.predictedFinish = ProtoMapping.timestamp(end)
            result.finishLow = result.predictedFinish
            result.finishHigh = result.predictedFinish
            result.confidence = 1
            result.deadlineMissRisk = deadline.map { end > $0 ? 1 : 0 } ?? 0
            result.explanation = "the execution has finished (\(execution.status.rawValue))"
            return result
        }
        let elapsed = RollupFold.milliseconds(now.timeIntervalSince(execution.createdAt))
        result.elapsed = ProtoMapping.duration(ms: elapsed)
        var own = ExecutionRollup()
        var all = ExecutionRollup()
        for (key, value) in history {
            all.merge(value)
            if key.version == execution.workflowVersion { own.merge(value) }
        }
        let (runs, of) = own.executions >= Insights.minimumSample
            ? (own, "version \(execution.workflowVersion)") : (all, "all versions")
        let tail = runs.durations.tail(above: elapsed)
        result.sampleSize = tail.total
        guard tail.total >= 2, let median = tail.quantile(0.5, maximum: runs.durationMsMax),
            let interval = Insights.interval(tail, maximum: runs.durationMsMax)
        else {
            result.explanation = """
                \(tail.total) of \(runs.executions) completed runs (\(of), last 30 days) ran longer than this one has \
                (\(Insights.seconds(Double(elapsed)))): too few to predict from, and no deadline risk is given
                """
            return result
        }
        let start = execution.createdAt
        result.predictedFinish = ProtoMapping.timestamp(start.addingTimeInterval(Double(median) / 1000))
        result.finishLow = ProtoMapping.timestamp(start.addingTimeInterval(Double(interval.low) / 1000))
        result.finishHigh = ProtoMapping.timestamp(start.addingTimeInterval(Double(interval.high) / 1000))
        result.confidence = interval.confidence
        var risk = ""
        if let deadline {
            let allowed = RollupFold.milliseconds(deadline.timeIntervalSince(start))
            result.deadlineMissRisk = Double(tail.count(above: allowed)) / Double(tail.total)
            risk = "; \(tail.count(above: allowed)) of them took longer than the deadline allows, the risk of missing it"
        }
        result.explanation = """
            from the \(tail.total) completed runs (\(of), last 30 days) that ran longer than this one has \
            (\(Insights.seconds(Double(elapsed)))): their median and 10th to 90th percentile\(risk)
            """
        return result
    }
}
