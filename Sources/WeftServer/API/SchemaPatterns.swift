/// Regular expressions (ECMA 262, as OpenAPI uses) for the formats the
/// server parses itself, generated from the same bounds the server checks,
/// so a value a pattern allows is a value the server takes.
enum SchemaPatterns {
    /// A proto3 JSON Duration: seconds with up to nine fractional digits and
    /// an `s` ("1.5s", "-3s").
    static let duration = #"^-?[0-9]+(\.[0-9]{1,9})?s$"#

    /// An RFC 3339 timestamp as the proto3 JSON mapping takes it: upper-case
    /// `T` and `Z`, up to nine fractional digits, any offset.
    /// Years 0002 to 9998: with any offset the instant stays within the
    /// range a Timestamp holds (0001-01-01 to 9999-12-31 UTC).
    static let timestamp =
        #"^(000[2-9]|00[1-9][0-9]|0[1-9][0-9]{2}|[1-8][0-9]{3}|9[0-8][0-9]{2}|99[0-8][0-9]|999[0-8])-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])T([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\.[0-9]{1,9})?(Z|[+-]([01][0-9]|2[0-3]):[0-5][0-9])$"#

    /// Durations from `range` (whole seconds): the server reads milliseconds,
    /// so an exclusive lower bound of 0 needs a non-zero millisecond.
    static func duration(_ range: DurationRange) -> String {
        let minSeconds = Int(range.minMs / 1000)
        let maxSeconds = Int(range.maxMs / 1000)
        precondition(range.minMs % 1000 == 0 && range.maxMs % 1000 == 0 && minSeconds < maxSeconds)
        let fraction = #"(?:\.[0-9]{1,9})?"#
        let zeroFraction = #"(?:\.0{1,9})?"#
        var alternatives: [String] = []
        var low = minSeconds
        if range.minExclusive {
            if minSeconds == 0 {
                // At least one millisecond: a non-zero digit among the first three.
                alternatives.append(#"0\.(?:[1-9][0-9]{0,8}|0[1-9][0-9]{0,7}|00[1-9][0-9]{0,6})"#)
            }
            low = minSeconds + 1
        }
        if low <= maxSeconds - 1 {
            alternatives.append("(?:" + integers(low, maxSeconds - 1).joined(separator: "|") + ")" + fraction)
        }
        alternatives.append("\(maxSeconds)" + zeroFraction)
        return "^(?:" + alternatives.joined(separator: "|") + ")s$"
    }

    /// Patterns matching exactly the decimal integers from `min` to `max`
    /// (no sign, no leading zeros), as alternatives.
    static func integers(_ min: Int, _ max: Int) -> [String] {
        precondition(min >= 0 && min <= max)
        var patterns: [String] = []
        // One digit count at a time: a pattern never spans numbers of
        // different lengths (which would need leading zeros).
        var low = min
        while low <= max {
            let digits = String(low).count
            let high = Swift.min(max, pow10(digits) - 1)
            var start = low
            while start <= high {
                // The widest block [start, end] of the form: fixed leading
                // digits, one digit range, then k free digits (k < digits,
                // so the leading digit stays fixed and non-zero).
                var k = 0
                while k + 1 < digits, start % pow10(k + 1) == 0, start + pow10(k + 1) - 1 <= high { k += 1 }
                let step = pow10(k)
                let base = start / step
                let first = base % 10
                var last = first
                while last < 9, (base - first + last + 2) * step - 1 <= high { last += 1 }
                let prefix = base / 10 == 0 ? "" : String(base / 10)
                var pattern = prefix + (first == last ? "\(first)" : "[\(first)-\(last)]")
                if k > 0 { pattern += k == 1 ? "[0-9]" : "[0-9]{\(k)}" }
                patterns.append(pattern)
                start = (base - first + last + 1) * step
            }
            low = high + 1
        }
        return patterns
    }

    private static func pow10(_ n: Int) -> Int {
        var value = 1
        for _ in 0..<n { value *= 10 }
        return value
    }
}

/// The bounds the server puts on a Duration field, in milliseconds (what it
/// reads: `ProtoMapping.milliseconds`).
struct DurationRange: Sendable {
    var minMs: Int64
    var maxMs: Int64
    /// The lower bound itself is refused ("more than 0").
    var minExclusive = false

    func contains(_ ms: Int64) -> Bool {
        (minExclusive ? ms > minMs : ms >= minMs) && ms <= maxMs
    }

    /// The range in words, for error messages: "from 1s to 1h", "more than
    /// 0 and at most 366 days".
    var text: String {
        minExclusive
            ? "more than \(Self.words(minMs)) and at most \(Self.words(maxMs))"
            : "from \(Self.words(minMs)) to \(Self.words(maxMs))"
    }

    static func words(_ ms: Int64) -> String {
        switch ms {
        case 0: "0"
        case let ms where ms % 86_400_000 == 0: "\(ms / 86_400_000) days"
        case let ms where ms % 3_600_000 == 0: "\(ms / 3_600_000)h"
        case let ms where ms % 1000 == 0: "\(ms / 1000)s"
        default: "\(ms)ms"
        }
    }
}
