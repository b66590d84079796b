import Testing
import WeftObservability

@Suite("W3C trace context")
struct TraceContextTests {
    static let valid = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"

    @Test("traceparent validation follows W3C Trace Context")
    func validation() {
        #expect(WeftTracing.isValidTraceparent(Self.valid))
        #expect(WeftTracing.isValidTraceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00"))
        // A later version may append fields after a dash.
        #expect(WeftTracing.isValidTraceparent("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra"))
        let invalid = [
            "", "garbage", "00-xyz-bad",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",  // version ff is forbidden
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",  // all-zero trace id
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",  // all-zero parent id
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",  // upper case
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",  // short trace id
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-1",  // short flags
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-x",  // version 00 has no more fields
            "00_4bf92f3577b34da6a3ce929d0e0e4736_00f067aa0ba902b7_01",
            "0g-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01x",  // later version: fields need a dash
        ]
        for value in invalid { #expect(!WeftTracing.isValidTraceparent(value), "\(value)") }
    }

    @Test("the trace id of a traceparent")
    func traceId() {
        #expect(WeftTracing.traceId(ofTraceparent: Self.valid) == "4bf92f3577b34da6a3ce929d0e0e4736")
        #expect(WeftTracing.traceId(ofTraceparent: "00-bad") == nil)
        #expect(WeftTracing.traceId(ofTraceparent: nil) == nil)
    }

    @Test("only the two trace headers are taken from a header list")
    func headers() {
        let headers = TraceHeaders(headers: [
            (name: "authorization", value: "Bearer secret"), (name: "traceparent", value: Self.valid),
            (name: "tracestate", value: "a=1"),
        ])
        #expect(headers.traceparent == Self.valid && headers.tracestate == "a=1")
        #expect(!headers.description.contains("secret"))
        #expect(headers.pairs.map(\.0) == ["traceparent", "tracestate"])
    }
}
