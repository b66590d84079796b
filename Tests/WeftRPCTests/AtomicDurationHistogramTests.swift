import Prometheus
import Testing
import WeftObservability

/// The lock-free latency histogram must be indistinguishable on /metrics
/// from swift-prometheus's `DurationHistogram` given the same observations.
@Suite("Atomic duration histogram")
struct AtomicDurationHistogramTests {
    /// Observations on bounds, between them, past the last, zero and negative.
    static let observations: [Int64] = [
        0, -5, 1, 49_999, 50_000, 50_001, 99_999, 100_000, 730_000, 2_500_000, 2_500_001, 59_999_999_999,
        60_000_000_000, 61_000_000_000, 3_600_000_000_000,
    ]

    func text(_ metrics: WeftMetrics) -> String { String(decoding: metrics.exposition(), as: UTF8.self) }

    @Test("same text as swift-prometheus's histogram, with labels and without")
    func sameExposition() {
        for labels in [[("grpc_service", "a.B"), ("grpc_method", "C \"quoted\" \\ back")], []] {
            let library = WeftMetrics()
            let ours = WeftMetrics()
            let expected = library.durationHistogram("weft_test_seconds", help: "A test \\ histogram.", labels: labels)
            let histogram = ours.atomicDurationHistogram("weft_test_seconds", help: "A test \\ histogram.", labels: labels)
            for value in Self.observations {
                expected.recordNanoseconds(max(0, value))
                histogram.recordNanoseconds(value)
            }
            #expect(text(ours) == text(library))
            #expect(histogram.count == Self.observations.count)
        }
    }

    @Test("one series per label set; families keep their HELP once; buckets are cumulative")
    func seriesAndFamilies() {
        let metrics = WeftMetrics()
        let a = metrics.atomicDurationHistogram("weft_x_seconds", help: "X.", labels: [("k", "a")], buckets: [.milliseconds(1), .seconds(1)])
        let again = metrics.atomicDurationHistogram("weft_x_seconds", help: "X.", labels: [("k", "a")])
        let b = metrics.atomicDurationHistogram("weft_x_seconds", help: "X.", labels: [("k", "b")])
        #expect(a === again)
        #expect(a !== b)
        a.record(.microseconds(10))
        a.record(.milliseconds(500))
        b.record(.seconds(2))
        let lines = text(metrics).split(separator: "\n").filter { $0.contains("weft_x_seconds") }
        #expect(lines == [
            "# HELP weft_x_seconds X.",
            "# TYPE weft_x_seconds histogram",
            #"weft_x_seconds_bucket{k="a",le="0.001"} 1"#,
            #"weft_x_seconds_bucket{k="a",le="1.0"} 2"#,
            #"weft_x_seconds_bucket{k="a",le="+Inf"} 2"#,
            #"weft_x_seconds_sum{k="a"} 0.50001"#,
            #"weft_x_seconds_count{k="a"} 2"#,
            #"weft_x_seconds_bucket{k="b",le="0.001"} 0"#,
            #"weft_x_seconds_bucket{k="b",le="1.0"} 0"#,
            #"weft_x_seconds_bucket{k="b",le="+Inf"} 1"#,
            #"weft_x_seconds_sum{k="b"} 2.0"#,
            #"weft_x_seconds_count{k="b"} 1"#,
        ])
    }

    @Test("concurrent records are all counted")
    func concurrent() async {
        let metrics = WeftMetrics()
        let histogram = metrics.atomicDurationHistogram("weft_c_seconds", help: "C.")
        await withTaskGroup(of: Void.self) { group in
            for task in 0..<8 {
                group.addTask {
                    for i in 0..<10_000 { histogram.recordNanoseconds(Int64(task * 1_000 + i) * 1_000) }
                }
            }
        }
        #expect(histogram.count == 80_000)
        #expect(text(metrics).contains("weft_c_seconds_count 80000\n"))
    }
}
