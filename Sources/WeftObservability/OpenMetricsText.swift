/// The text exposition in the OpenMetrics format (`application/openmetrics-text;
/// version=1.0.0`), made from the Prometheus text format 0.0.4 that the
/// metrics library writes, with exemplars on the buckets of one histogram.
///
/// The two formats differ where Weft's output is concerned only in that a
/// counter family is named without its `_total` (its samples keep it), HELP
/// escapes a double quote, the exposition ends with `# EOF`, and a sample
/// may carry an exemplar: `name{…,le="0.25"} 42 # {trace_id="…"} 0.1834 1.7e9`.
/// Every counter Weft exports ends in `_total` (a test checks it).
public enum OpenMetricsText {
    public static let contentType = "application/openmetrics-text; version=1.0.0; charset=utf-8"

    /// Whether an `Accept` header asks for OpenMetrics (Prometheus sends it first).
    public static func isAccepted(_ accept: String?) -> Bool {
        guard let accept else { return false }
        return accept.contains("application/openmetrics-text")
    }

    /// `text` (format 0.0.4) as OpenMetrics; the buckets of `histogram`
    /// (e.g. `weft_request_duration_seconds`) get the exemplars of `book`,
    /// keyed by the values of `seriesLabels` joined with "|".
    public static func convert(
        _ text: [UInt8], exemplars book: ExemplarBook, histogram: String, seriesLabels: [String]
    ) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(text.count + text.count / 16 + 64)
        let bucketPrefix = Array((histogram + "_bucket{").utf8)
        let help = Array("# HELP ".utf8)
        let type = Array("# TYPE ".utf8)
        var pendingHelp: ArraySlice<UInt8>?
        var start = text.startIndex
        while start < text.endIndex {
            let end = text[start...].firstIndex(of: UInt8(ascii: "\n")) ?? text.endIndex
            let line = text[start..<end]
            start = end < text.endIndex ? end + 1 : end
            if line.starts(with: help) {
                if let held = pendingHelp { writeHelp(held, counter: false, into: &out) }
                pendingHelp = line
                continue
            }
            if line.starts(with: type) {
                let rest = line.dropFirst(type.count)
                let space = rest.firstIndex(of: UInt8(ascii: " ")) ?? rest.endIndex
                let name = rest[rest.startIndex..<space]
                let kind = rest[space...].dropFirst()
                let counter = kind.elementsEqual("counter".utf8) && name.count > 6
                    && name.suffix(6).elementsEqual("_total".utf8)
                if let held = pendingHelp {
                    writeHelp(held, counter: counter, into: &out)
                    pendingHelp = nil
                }
                out += type
                out += counter ? name.dropLast(6) : name
                out.append(UInt8(ascii: " "))
                out += kind
                out.append(UInt8(ascii: "\n"))
                continue
            }
            if let held = pendingHelp {
                writeHelp(held, counter: false, into: &out)
                pendingHelp = nil
            }
            if line.isEmpty { continue }
            out += line
            if line.starts(with: bucketPrefix), let exemplar = exemplar(of: line, book: book, labels: seriesLabels) {
                out += Array(" # {trace_id=\"\(exemplar.traceId)\"} \(exemplar.value) \(format(exemplar.timestamp))".utf8)
            }
            out.append(UInt8(ascii: "\n"))
        }
        if let held = pendingHelp { writeHelp(held, counter: false, into: &out) }
        out += Array("# EOF\n".utf8)
        return out
    }

    /// A HELP line, its family renamed like its TYPE's and `"` escaped.
    private static func writeHelp(_ line: ArraySlice<UInt8>, counter: Bool, into out: inout [UInt8]) {
        let rest = line.dropFirst(7)
        let space = rest.firstIndex(of: UInt8(ascii: " ")) ?? rest.endIndex
        let name = rest[rest.startIndex..<space]
        out += Array("# HELP ".utf8)
        out += counter ? name.dropLast(6) : name
        for byte in rest[space...] {
            if byte == UInt8(ascii: "\"") { out.append(UInt8(ascii: "\\")) }
            out.append(byte)
        }
        out.append(UInt8(ascii: "\n"))
    }

    private static func exemplar(of line: ArraySlice<UInt8>, book: ExemplarBook, labels: [String]) -> ExemplarBook.Exemplar? {
        guard let close = line.lastIndex(of: UInt8(ascii: "}")) else { return nil }
        let text = String(decoding: line[line.startIndex...close], as: UTF8.self)
        var key: [String] = []
        for label in labels {
            guard let value = value(of: label, in: text) else { return nil }
            key.append(value)
        }
        guard let le = value(of: "le", in: text) else { return nil }
        let bound = le == "+Inf" ? Double.infinity : Double(le)
        guard let bound else { return nil }
        return book.exemplar(series: key.joined(separator: "|"), le: bound)
    }

    /// The value of `name="…"` in a label set (Weft's label values here have no quotes).
    private static func value(of name: String, in labels: String) -> String? {
        for marker in ["{\(name)=\"", ",\(name)=\""] {
            guard let range = labels.range(of: marker) else { continue }
            let rest = labels[range.upperBound...]
            guard let quote = rest.firstIndex(of: "\"") else { return nil }
            return String(rest[..<quote])
        }
        return nil
    }

    private static func format(_ timestamp: Double) -> String {
        let millis = Int64((timestamp * 1000).rounded())
        let fraction = millis % 1000
        return "\(millis / 1000)." + (fraction < 10 ? "00" : fraction < 100 ? "0" : "") + "\(fraction)"
    }
}
