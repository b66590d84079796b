public import Prometheus
import Synchronization

/// A latency histogram that records without a lock, for the series every
/// RPC records into (gRPC handling time, the latency SLI, HTTP routes).
///
/// swift-prometheus's `DurationHistogram` takes a lock per observation and
/// walks all of its buckets comparing `Duration`s (128-bit, out of line):
/// about 90 ns of a 2.8 µs health check. Here an observation is one bucket
/// found by comparing integers and two relaxed atomic adds (its bucket and
/// the sum); the cumulative counts are added up when `/metrics` renders.
///
/// The exposition is byte for byte that of swift-prometheus's histogram
/// (same `le` spelling from `Duration.bucketRepresentation`, same sum
/// format), so nothing downstream can tell them apart. `+Inf` and `_count`
/// come from one read of the buckets, so they always agree and the buckets
/// are always cumulative; the sum is read apart from them and may include
/// an observation the buckets do not show yet (or the reverse) while calls
/// are recorded during a render.
public final class AtomicDurationHistogram: @unchecked Sendable {
    let name: String
    let labels: [(String, String)]
    /// `name="value",…`, escaped, or empty without labels.
    let renderedLabels: [UInt8]
    /// Upper bounds in nanoseconds, ascending.
    private let bounds: [Int64]
    /// The `le` text of each bound.
    private let boundText: [[UInt8]]
    /// Observations per bucket (not cumulative); the last counts those past
    /// every bound. Allocated once, never resized (the `@unchecked Sendable`
    /// is for this pointer: only its atomics are ever touched).
    private let counts: UnsafeMutablePointer<Atomic<Int>>
    private let sumNanoseconds = Atomic<Int64>(0)
    private static let infinity = Array("+Inf".utf8)

    init(name: String, labels: [(String, String)], buckets: [Duration]) {
        self.name = name
        self.labels = labels
        let sorted = buckets.sorted()
        bounds = sorted.map(Self.nanoseconds)
        boundText = sorted.map { Array($0.bucketRepresentation.utf8) }
        var rendered: [UInt8] = []
        for (i, (key, value)) in labels.enumerated() {
            if i > 0 { rendered.append(UInt8(ascii: ",")) }
            rendered.append(contentsOf: key.utf8)
            rendered.append(contentsOf: "=\"".utf8)
            for byte in value.utf8 {
                switch byte {
                case UInt8(ascii: "\\"): rendered.append(contentsOf: "\\\\".utf8)
                case UInt8(ascii: "\""): rendered.append(contentsOf: "\\\"".utf8)
                case UInt8(ascii: "\n"): rendered.append(contentsOf: "\\n".utf8)
                default: rendered.append(byte)
                }
            }
            rendered.append(UInt8(ascii: "\""))
        }
        renderedLabels = rendered
        counts = .allocate(capacity: sorted.count + 1)
        for i in 0...sorted.count { (counts + i).initialize(to: Atomic(0)) }
    }

    deinit {
        counts.deinitialize(count: bounds.count + 1)
        counts.deallocate()
    }

    /// Records one observation (negative values count as 0).
    @inline(__always)
    public func recordNanoseconds(_ nanoseconds: Int64) {
        let value = max(0, nanoseconds)
        // The first bound at or above the value, as Prometheus's `le`.
        var index = 0
        let n = bounds.count
        while index < n, bounds[index] < value { index += 1 }
        counts[index].wrappingAdd(1, ordering: .relaxed)
        sumNanoseconds.wrappingAdd(value, ordering: .relaxed)
    }

    public func record(_ duration: Duration) { recordNanoseconds(Self.nanoseconds(duration)) }

    /// Observations so far (the `_count`).
    public var count: Int {
        var total = 0
        for i in 0...bounds.count { total += counts[i].load(ordering: .relaxed) }
        return total
    }

    private static func nanoseconds(_ duration: Duration) -> Int64 {
        let (seconds, attoseconds) = duration.components
        let (scaled, overflow) = seconds.multipliedReportingOverflow(by: 1_000_000_000)
        if overflow { return seconds < 0 ? 0 : Int64.max }
        return scaled.addingReportingOverflow(attoseconds / 1_000_000_000).partialValue
    }

    /// The series' lines, as swift-prometheus writes a histogram's.
    func emit(into buffer: inout [UInt8]) {
        var cumulative = 0
        for i in 0..<bounds.count {
            cumulative += counts[i].load(ordering: .relaxed)
            line(&buffer, suffix: "_bucket", le: boundText[i], value: cumulative)
        }
        cumulative += counts[bounds.count].load(ordering: .relaxed)
        line(&buffer, suffix: "_bucket", le: Self.infinity, value: cumulative)
        let sum = Duration.nanoseconds(sumNanoseconds.load(ordering: .relaxed)).bucketRepresentation
        buffer.append(contentsOf: name.utf8)
        buffer.append(contentsOf: "_sum".utf8)
        labelSet(&buffer, le: nil)
        buffer.append(contentsOf: sum.utf8)
        buffer.append(UInt8(ascii: "\n"))
        line(&buffer, suffix: "_count", le: nil, value: cumulative)
    }

    private func line(_ buffer: inout [UInt8], suffix: String, le: [UInt8]?, value: Int) {
        buffer.append(contentsOf: name.utf8)
        buffer.append(contentsOf: suffix.utf8)
        labelSet(&buffer, le: le)
        buffer.append(contentsOf: String(value).utf8)
        buffer.append(UInt8(ascii: "\n"))
    }

    /// `{labels[,le="…"]} ` (or a single space with neither).
    private func labelSet(_ buffer: inout [UInt8], le: [UInt8]?) {
        guard le != nil || !renderedLabels.isEmpty else { return buffer.append(UInt8(ascii: " ")) }
        buffer.append(UInt8(ascii: "{"))
        buffer.append(contentsOf: renderedLabels)
        if let le {
            if !renderedLabels.isEmpty { buffer.append(UInt8(ascii: ",")) }
            buffer.append(contentsOf: "le=\"".utf8)
            buffer.append(contentsOf: le)
            buffer.append(UInt8(ascii: "\""))
        }
        buffer.append(contentsOf: "} ".utf8)
    }
}

/// The histograms of one name, rendered together under one HELP and TYPE.
final class AtomicHistogramFamily: Sendable {
    let name: String
    let help: String
    let buckets: [Duration]
    let series = Mutex<[AtomicDurationHistogram]>([])

    init(name: String, help: String, buckets: [Duration]) {
        self.name = name
        self.help = help
        self.buckets = buckets
    }

    /// The series with these labels (one per label set, as the registry does).
    func histogram(labels: [(String, String)]) -> AtomicDurationHistogram {
        series.withLock { series in
            if let found = series.first(where: { $0.labels.elementsEqual(labels, by: { $0 == $1 }) }) { return found }
            let made = AtomicDurationHistogram(name: name, labels: labels, buckets: buckets)
            series.append(made)
            return made
        }
    }

    func emit(into buffer: inout [UInt8]) {
        let series = self.series.withLock { $0 }
        guard !series.isEmpty else { return }
        buffer.append(contentsOf: "# HELP \(name) ".utf8)
        for byte in help.utf8 {
            if byte == UInt8(ascii: "\\") { buffer.append(contentsOf: "\\\\".utf8) } else { buffer.append(byte) }
        }
        buffer.append(contentsOf: "\n# TYPE \(name) histogram\n".utf8)
        for histogram in series { histogram.emit(into: &buffer) }
    }
}
