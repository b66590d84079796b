import Foundation

/// Reads the server's `/metrics` before, during (once a second) and after
/// a run: its own view of the load, beside the harness's.
final class ServerWatch: Sendable {
    let client: RPCClient
    let token: String?

    struct Sample: Sendable, Codable {
        var t: Double
        var rssBytes: Double
        var openFiles: Double
        var queueReady: Double
        var executionsInFlight: Double
        var cpuSeconds: Double
    }

    init(client: RPCClient, token: String?) {
        self.client = client
        self.token = token
    }

    /// nil when the server does not answer with metrics (a peer that has
    /// none, or a scrape token that is missing).
    func scrape() async -> MetricsSnapshot? {
        var headers = [("user-agent", "weft-loadtest")]
        if let token { headers.append(("authorization", "Bearer \(token)")) }
        let wire = WireRequest(method: "GET", path: "/metrics", headers: headers, body: [], isGRPC: false, wantsBody: true)
        guard let response = try? await client.send(wire), response.httpStatus == 200 else { return nil }
        return MetricsSnapshot(text: String(decoding: response.body, as: UTF8.self))
    }

    static func sample(_ snapshot: MetricsSnapshot, since start: Date) -> Sample {
        Sample(
            t: snapshot.takenAt.timeIntervalSince(start),
            rssBytes: snapshot.sum("process_resident_memory_bytes"),
            openFiles: snapshot.sum("process_open_fds"),
            queueReady: snapshot.sum("weft_queue_depth", ["state": "ready"]),
            executionsInFlight: snapshot.sum("weft_executions_in_flight"),
            cpuSeconds: snapshot.sum("process_cpu_seconds_total"))
    }
}
