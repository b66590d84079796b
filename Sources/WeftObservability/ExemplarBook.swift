public import Foundation
import Synchronization

/// The latest sampled trace that landed in each bucket of a latency
/// histogram (the exemplars of OpenMetrics): a slow bucket of
/// `weft_request_duration_seconds` in Grafana links to a request's trace.
/// Kept per series (its label values joined with "|", e.g.
/// `http|read`) and bucket; only requests whose span is sampled leave one,
/// so an exemplar names a trace that was sent to the tracing backend.
public final class ExemplarBook: Sendable {
    public struct Exemplar: Sendable, Equatable {
        public var traceId: String
        /// The observed value, seconds.
        public var value: Double
        /// Unix seconds.
        public var timestamp: Double
    }

    /// Upper bounds in seconds, ascending; +Inf is the bucket after them.
    private let bounds: [Double]
    private let slots = Mutex<[String: [Exemplar?]]>([:])

    public init(bounds: [Duration]) {
        self.bounds = bounds.map(\.inSeconds)
    }

    /// Keeps the trace of an observation of `seconds` in `series`.
    public func record(series: String, seconds: Double, traceId: String, at: Double = Date().timeIntervalSince1970) {
        let bucket = bounds.firstIndex { seconds <= $0 } ?? bounds.count
        let exemplar = Exemplar(traceId: traceId, value: seconds, timestamp: at)
        let size = bounds.count + 1
        slots.withLock { slots in
            if slots[series] == nil { slots[series] = Array(repeating: nil, count: size) }
            slots[series]![bucket] = exemplar
        }
    }

    /// The exemplar of the bucket whose upper bound is `le` (`+Inf` for the last).
    public func exemplar(series: String, le: Double) -> Exemplar? {
        let bucket: Int
        if le.isInfinite {
            bucket = bounds.count
        } else if let index = bounds.firstIndex(where: { abs($0 - le) <= 1e-9 * max(1, le) }) {
            bucket = index
        } else {
            return nil
        }
        return slots.withLock { $0[series]?[bucket] }
    }

    public var isEmpty: Bool { slots.withLock { $0.isEmpty } }

    /// Every series' exemplars by bucket (ascending bounds, then +Inf), at once.
    public func snapshot() -> [String: [Exemplar?]] { slots.withLock { $0 } }
}
