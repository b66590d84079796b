import Prometheus
import Synchronization
public import WeftObservability

/// Handshakes, by result and (for failures) a small fixed set of reasons.
public final class TLSMetrics: Sendable {
    private let metrics: WeftMetrics
    private let succeeded: Prometheus.Counter
    private let failures = Mutex<[String: Prometheus.Counter]>([:])

    public init(metrics: WeftMetrics) {
        self.metrics = metrics
        succeeded = metrics.counter(
            MetricNames.tlsHandshakes, help: Self.help, labels: [("result", "ok"), ("reason", "none")])
    }

    private static let help = "TLS handshakes on the server's listener, by result and failure reason."

    func handshakeSucceeded() { succeeded.increment() }

    func handshakeFailed(reason: String) {
        let counter = failures.withLock { counters in
            if let counter = counters[reason] { return counter }
            let counter = metrics.counter(
                MetricNames.tlsHandshakes, help: Self.help, labels: [("result", "failed"), ("reason", reason)])
            counters[reason] = counter
            return counter
        }
        counter.increment()
    }

    /// OpenSSL's reason text mapped to a bounded label set.
    static func reasonLabel(_ reason: String) -> String {
        let text = reason.lowercased()
        // The client refused us (e.g. it does not trust our certificate).
        if text.contains("alert") { return "client_alert" }
        if text.contains("wrong version number") || text.contains("http request") { return "not_tls" }
        if text.contains("unsupported protocol") || text.contains("version") { return "protocol_version" }
        if text.contains("no shared cipher") || text.contains("no suitable") { return "no_shared_cipher" }
        if text.contains("peer did not return a certificate") { return "client_certificate_missing" }
        if text.contains("certificate verify failed") || text.contains("certificate") { return "client_certificate_invalid" }
        if text.contains("alpn") { return "alpn" }
        if text.contains("wrong version number") || text.contains("http request") { return "not_tls" }
        return "other"
    }
}
