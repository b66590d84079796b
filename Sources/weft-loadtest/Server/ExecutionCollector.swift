import Foundation
import SwiftProtobuf
import WeftProto

/// End-to-end figures of the executions a run started, from the server's
/// stored timestamps (createdAt -> completedAt, millisecond precision): the
/// harness waits until none of the run's workflows has an unfinished
/// execution, then reads them all with ListExecutions.
struct ExecutionCollector {
    let client: RPCClient

    struct Result: Sendable {
        var total = 0
        var byStatus: [String: Int] = [:]
        /// Still Pending/Running when the drain timeout passed.
        var unfinished = 0
        var latency = makeLatencyHistogram()
        /// Completions per second over the window [first createdAt + warm-up,
        /// last createdAt], and completions / creations in it.
        var completedPerSecond = 0.0
        var completionRatio = 0.0
        var windowSeconds = 0.0
        var drainSeconds = 0.0
        /// Fire lag of scheduled executions (createdAt - scheduledAt).
        var scheduleLag = makeLatencyHistogram()
    }

    func collect(workflows: [(tenant: Int, id: String)], tenants: [Tenant], warmup: Double, drainTimeout: Double) async throws -> Result {
        var result = Result()
        let started = Date()
        // Drain: until no execution of these workflows is unfinished.
        var unfinished = 0
        repeat {
            unfinished = 0
            for (tenant, id) in workflows {
                for status in [Weft_V1_Execution.Status.pending, .running] {
                    var request = Weft_V1_ListExecutionsRequest()
                    request.workflowID = id
                    request.pageSize = 1
                    request.status = status
                    let page = try await client.call(
                        "/weft.v1.ExecutionService/ListExecutions", request, as: Weft_V1_ListExecutionsResponse.self,
                        credential: .some(tenants[tenant].credential))
                    unfinished += page.executions.count
                }
            }
            if unfinished == 0 || Date().timeIntervalSince(started) > drainTimeout { break }
            try await Task.sleep(for: .milliseconds(500))
        } while true
        result.drainSeconds = Date().timeIntervalSince(started)
        var created: [Double] = []
        var completed: [Double] = []
        for (tenant, id) in workflows {
            var token = ""
            repeat {
                var request = Weft_V1_ListExecutionsRequest()
                request.workflowID = id
                request.pageSize = 1000
                request.pageToken = token
                let page = try await client.call(
                    "/weft.v1.ExecutionService/ListExecutions", request, as: Weft_V1_ListExecutionsResponse.self,
                    credential: .some(tenants[tenant].credential))
                for execution in page.executions {
                    result.total += 1
                    let status = Self.statusName(execution.status)
                    result.byStatus[status, default: 0] += 1
                    if execution.status == .pending || execution.status == .running { result.unfinished += 1 }
                    let createdAt = execution.createdAt.timeIntervalSince1970
                    created.append(createdAt)
                    if execution.hasScheduledTime {
                        let lag = createdAt - execution.scheduledTime.timeIntervalSince1970
                        _ = result.scheduleLag.record(UInt64(max(1, lag * 1e6)))
                    }
                    if execution.status == .completed, execution.hasCompletedAt {
                        let completedAt = execution.completedAt.timeIntervalSince1970
                        completed.append(completedAt)
                        _ = result.latency.record(UInt64(max(1, (completedAt - createdAt) * 1e6)))
                    }
                }
                token = page.nextPageToken
            } while !token.isEmpty
        }
        if let first = created.min(), let last = created.max() {
            let from = first + warmup
            result.windowSeconds = max(0, last - from)
            if result.windowSeconds > 0 {
                // Completions trail arrivals by the typical latency: the
                // completion window is the arrival window shifted by the
                // median, so a run that keeps pace reads ~1, not (n-1)/n.
                let shift = result.latency.totalCount > 0 ? Double(result.latency.valueAtPercentile(50)) / 1e6 : 0
                let done = completed.filter { $0 >= from + shift && $0 <= last + shift }.count
                let arrived = created.filter { $0 >= from && $0 <= last }.count
                result.completedPerSecond = Double(done) / result.windowSeconds
                result.completionRatio = arrived > 0 ? Double(done) / Double(arrived) : 0
            }
        }
        return result
    }

    static func statusName(_ status: Weft_V1_Execution.Status) -> String {
        switch status {
        case .pending: "Pending"
        case .running: "Running"
        case .completed: "Completed"
        case .failed: "Failed"
        case .cancelled: "Cancelled"
        case .timedOut: "TimedOut"
        default: "Unknown"
        }
    }
}
