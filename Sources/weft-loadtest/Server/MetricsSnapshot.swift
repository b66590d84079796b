import Foundation

/// One scrape of the server's `/metrics` (Prometheus text format), parsed
/// into series: `name{label="value",…}` -> value.
struct MetricsSnapshot: Sendable {
    struct Series: Sendable {
        let name: String
        let labels: [String: String]
        let value: Double
    }

    var series: [Series] = []
    var takenAt = Date()

    init(text: String, takenAt: Date = Date()) {
        self.takenAt = takenAt
        for line in text.split(separator: "\n", omittingEmptySubsequences: true) where !line.hasPrefix("#") {
            if let parsed = Self.parse(line) { series.append(parsed) }
        }
    }

    init() {}

    private static func parse(_ line: Substring) -> Series? {
        var name: Substring
        var labels: [String: String] = [:]
        var rest: Substring
        if let brace = line.firstIndex(of: "{") {
            name = line[..<brace]
            guard let close = line.lastIndex(of: "}") else { return nil }
            var body = line[line.index(after: brace)..<close]
            while let eq = body.firstIndex(of: "=") {
                let key = body[..<eq].trimmingCharacters(in: CharacterSet(charactersIn: ", "))
                var index = body.index(after: eq)
                guard index < body.endIndex, body[index] == "\"" else { break }
                index = body.index(after: index)
                var value = ""
                while index < body.endIndex, body[index] != "\"" {
                    if body[index] == "\\", body.index(after: index) < body.endIndex {
                        index = body.index(after: index)
                        value.append(body[index] == "n" ? "\n" : body[index])
                    } else {
                        value.append(body[index])
                    }
                    index = body.index(after: index)
                }
                labels[key] = value
                body = index < body.endIndex ? body[body.index(after: index)...] : ""
            }
            rest = line[line.index(after: close)...]
        } else {
            guard let space = line.firstIndex(of: " ") else { return nil }
            name = line[..<space]
            rest = line[space...]
        }
        name = name.drop { $0 == " " }
        let fields = rest.split(separator: " ")
        guard let first = fields.first else { return nil }
        let value: Double? =
            switch first {
            case "+Inf": .infinity
            case "-Inf": -.infinity
            case "NaN": .nan
            default: Double(first)
            }
        guard let value else { return nil }
        return Series(name: String(name), labels: labels, value: value)
    }

    /// The sum of every series of `name` whose labels include `match`.
    func sum(_ name: String, _ match: [String: String] = [:]) -> Double {
        var total = 0.0
        for s in series where s.name == name && match.allSatisfy({ s.labels[$0.key] == $0.value }) { total += s.value }
        return total
    }

    /// Cumulative buckets of histogram `name` (summed over other labels):
    /// upper bound -> count.
    func buckets(_ name: String, _ match: [String: String] = [:]) -> [(Double, Double)] {
        var byBound: [Double: Double] = [:]
        for s in series where s.name == name + "_bucket" && match.allSatisfy({ s.labels[$0.key] == $0.value }) {
            guard let le = s.labels["le"], let bound = le == "+Inf" ? .infinity : Double(le) else { continue }
            byBound[bound, default: 0] += s.value
        }
        return byBound.sorted { $0.key < $1.key }
    }
}

/// The change between two scrapes, and what the server says about a run.
struct MetricsDelta: Sendable {
    let before: MetricsSnapshot
    let after: MetricsSnapshot

    var seconds: Double { after.takenAt.timeIntervalSince(before.takenAt) }

    func counter(_ name: String, _ match: [String: String] = [:]) -> Double {
        max(0, after.sum(name, match) - before.sum(name, match))
    }

    /// A quantile of a histogram's change over the run, interpolated
    /// linearly within its bucket as PromQL's histogram_quantile does.
    func quantile(_ q: Double, of name: String, _ match: [String: String] = [:]) -> Double? {
        let old = Dictionary(before.buckets(name, match), uniquingKeysWith: +)
        let buckets = after.buckets(name, match).map { ($0.0, $0.1 - (old[$0.0] ?? 0)) }
        guard let total = buckets.last?.1, total > 0 else { return nil }
        let rank = q * total
        var previousBound = 0.0
        var previousCount = 0.0
        for (bound, count) in buckets {
            if count >= rank {
                if bound == .infinity { return previousBound }
                let inBucket = count - previousCount
                guard inBucket > 0 else { return bound }
                return previousBound + (bound - previousBound) * (rank - previousCount) / inBucket
            }
            previousBound = bound
            previousCount = count
        }
        return previousBound
    }

    /// The bounds of the bucket a quantile falls in: the resolution of the
    /// server's figure (nil: no data).
    func quantileBucket(_ q: Double, of name: String, _ match: [String: String] = [:]) -> (Double, Double)? {
        let old = Dictionary(before.buckets(name, match), uniquingKeysWith: +)
        let buckets = after.buckets(name, match).map { ($0.0, $0.1 - (old[$0.0] ?? 0)) }
        guard let total = buckets.last?.1, total > 0 else { return nil }
        var previousBound = 0.0
        for (bound, count) in buckets {
            if count >= q * total { return (previousBound, bound) }
            previousBound = bound
        }
        return nil
    }

    func histogramCount(_ name: String, _ match: [String: String] = [:]) -> Double { counter(name + "_count", match) }
    func histogramSum(_ name: String, _ match: [String: String] = [:]) -> Double { counter(name + "_sum", match) }
}
