import Foundation
import Testing
@testable import WeftServer

/// The patterns the OpenAPI document states are exactly what the server
/// checks: generated from the same bounds, verified here value by value.
@Suite("schema patterns")
struct SchemaPatternTests {
    func matches(_ pattern: String, _ text: String) -> Bool {
        let regex = try! NSRegularExpression(pattern: pattern)
        return regex.firstMatch(in: text, range: NSRange(text.startIndex..., in: text)) != nil
    }

    @Test("integer ranges match every number inside and none outside, without leading zeros",
          arguments: [(0, 9), (0, 86_399), (1, 3599), (7, 7), (10, 99), (95, 105), (1000, 3600), (0, 31_622_399)])
    func integers(_ low: Int, _ high: Int) {
        let pattern = "^(?:" + SchemaPatterns.integers(low, high).joined(separator: "|") + ")$"
        var samples = Set([low, high, low + 1, high - 1, high + 1, (low + high) / 2])
        if low > 0 { samples.insert(low - 1) }
        for n in stride(from: 0, through: min(high + 20, 4000), by: 1) { samples.insert(n) }
        for n in samples where n >= 0 {
            #expect(matches(pattern, String(n)) == (low...high).contains(n), "\(n) in \(low)...\(high): \(pattern)")
        }
        #expect(!matches(pattern, "0\(max(low, 1))"), "no leading zeros")
    }

    @Test("duration patterns follow the server's millisecond check")
    func durations() {
        let wait = SchemaPatterns.duration(APILimits.pollWait)
        for (text, ok) in [("0s", true), ("60s", true), ("60.000s", true), ("59.999999999s", true), ("60.5s", false),
                           ("61s", false), ("-1s", false), ("1.5s", true), ("P1D", false), ("1s ", false)] {
            #expect(matches(wait, text) == ok, "\(text)")
        }
        let timeout = SchemaPatterns.duration(APILimits.executionTimeout)
        for (text, ok) in [("0s", false), ("0.0001s", false), ("0.001s", true), ("0.5s", true), ("31622400s", true),
                           ("31622400.1s", false), ("31622401s", false)] {
            #expect(matches(timeout, text) == ok, "\(text)")
            // What the pattern allows, the server's check takes.
            if ok, let seconds = Double(text.dropLast()) {
                #expect(APILimits.executionTimeout.contains(Int64((seconds * 1000).rounded(.down))), "\(text)")
            }
        }
        let lease = SchemaPatterns.duration(APILimits.leaseDuration)
        #expect(!matches(lease, "0.999s") && matches(lease, "1s") && matches(lease, "3600s") && !matches(lease, "3600.5s"))
    }

    @Test("error messages state duration ranges from the limits the server checks")
    func rangeWords() {
        #expect(APILimits.leaseDuration.text == "from 1s to 1h")
        #expect(APILimits.pollWait.text == "from 0 to 60s")
        #expect(APILimits.executionTimeout.text == "more than 0 and at most 366 days")
        #expect(DurationRange.words(1500) == "1500ms")
    }

    @Test("timestamps with any offset become the same instant in UTC, fraction kept")
    func utc() {
        #expect(RFC3339UTC.convert("2000-01-01T00:06:04-14:11") == "2000-01-01T14:17:04Z")
        #expect(RFC3339UTC.convert("2466-09-21T15:15:31.6+14:22") == "2466-09-21T00:53:31.6Z")
        #expect(RFC3339UTC.convert("2026-12-31T23:30:00.123456789-23:59") == "2027-01-01T23:29:00.123456789Z")
        #expect(RFC3339UTC.convert("2026-01-01T00:00:00Z") == nil, "already UTC: nothing to rewrite")
        #expect(RFC3339UTC.convert("0001-01-01T00:00:00+00:01") == nil, "out of the Timestamp range")
        #expect(RFC3339UTC.convert("not a timestamp, really!!") == nil)
    }
}
