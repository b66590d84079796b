#if canImport(Glibc)
import Glibc
#endif
/// The text exposition in the OpenMetrics format (`application/openmetrics-text;
/// version=1.0.0`), made from the Prometheus text format 0.0.4 that the
/// metrics library writes, with exemplars on the buckets of one histogram.
///
/// The two formats differ where Weft's output is concerned only in that a
/// counter family is named without its `_total` (its samples keep it), HELP
/// escapes a double quote, the exposition ends with `# EOF`, and a sample
/// may carry an exemplar: `name{…,le="0.25"} 42 # {trace_id="…"} 0.1834 1.7e9`
/// (on the buckets of the histograms given, each series' bucket found by
/// its position).
/// Every counter Weft exports ends in `_total` (a test checks it).
public enum OpenMetricsText {
    public static let contentType = "application/openmetrics-text; version=1.0.0; charset=utf-8"

    /// Whether an `Accept` header asks for OpenMetrics (Prometheus sends it first).
    public static func isAccepted(_ accept: String?) -> Bool {
        guard let accept else { return false }
        return accept.contains("application/openmetrics-text")
    }

    /// A histogram whose buckets carry exemplars: its series are keyed in
    /// `book` by the values of `seriesLabels` joined with "|".
    public struct Exemplars: Sendable {
        public var histogram: String
        public var seriesLabels: [String]
        public var book: ExemplarBook

        public init(histogram: String, seriesLabels: [String], book: ExemplarBook) {
            self.histogram = histogram
            self.seriesLabels = seriesLabels
            self.book = book
        }
    }

    /// A histogram's bucket-line prefix, its series labels and its book's contents.
    public typealias Snapshot = (prefix: [UInt8], labels: [String], slots: [String: [ExemplarBook.Exemplar?]])

    /// The books' contents, read before the text is rendered: an exemplar's
    /// observation is recorded in its histogram before its book, so every
    /// exemplar written is counted in the buckets written.
    public static func snapshot(_ families: [Exemplars]) -> [Snapshot] {
        families.map { (prefix: Array(($0.histogram + "_bucket{").utf8), labels: $0.seriesLabels, slots: $0.book.snapshot()) }
            .filter { !$0.slots.isEmpty }
    }

    /// `text` (format 0.0.4) as OpenMetrics, the buckets of each histogram of
    /// `exemplars` with the exemplars of its book.
    public static func convert(_ text: [UInt8], exemplars families: [Exemplars]) -> [UInt8] {
        convert(text, snapshot: snapshot(families))
    }

    /// `convert` with the books read beforehand (`snapshot`).
    public static func convert(
        _ text: [UInt8], snapshot books: [Snapshot]
    ) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(text.count + text.count / 64 + 64)
        // The buckets of a series come in order (ascending bounds, +Inf
        // last), so a line's bucket is its position within its series.
        var series: (prefix: [UInt8], slots: [ExemplarBook.Exemplar?]?) = ([], nil)
        var bucket = 0
        text.withUnsafeBufferPointer { input in
            guard let base = input.baseAddress else { return }
            let count = input.count
            // Lines that stay as they are are copied in runs, not one by one:
            // only HELP/TYPE lines and the histogram's buckets change.
            var runStart = 0
            var pendingHelp: Range<Int>?
            var start = 0
            func flushRun(to end: Int) {
                if end > runStart { out.append(contentsOf: UnsafeBufferPointer(start: base + runStart, count: end - runStart)) }
            }
            while start < count {
                let end: Int
                if let newline = memchr(base + start, 0x0A, count - start) {
                    end = base.distance(to: newline.assumingMemoryBound(to: UInt8.self))
                } else {
                    end = count
                }
                let next = end < count ? end + 1 : end
                let lineStart = start
                let line = UnsafeBufferPointer(start: base + start, count: end - start)
                start = next
                if line.first == 0x23 {  // "#"
                    flushRun(to: lineStart)
                    if line.starts(with: helpPrefix) {
                        if let held = pendingHelp { writeHelp(input, held, counter: false, into: &out) }
                        pendingHelp = lineStart..<end
                    } else if line.starts(with: typePrefix) {
                        writeType(line, pendingHelp: pendingHelp, input: input, into: &out)
                        pendingHelp = nil
                    } else if line.starts(with: unitPrefix) {
                        out.append(contentsOf: line)
                        out.append(0x0A)
                    }
                    // Any other comment is left out: OpenMetrics allows none.
                    runStart = next
                    continue
                }
                if let held = pendingHelp {
                    // A HELP without its TYPE (the library writes none).
                    flushRun(to: lineStart)
                    writeHelp(input, held, counter: false, into: &out)
                    pendingHelp = nil
                    runStart = lineStart
                }
                if line.isEmpty {
                    // OpenMetrics has no blank lines.
                    flushRun(to: lineStart)
                    runStart = next
                    continue
                }
                if !books.isEmpty, let family = books.first(where: { Self.begins(line, with: $0.prefix) }),
                    let le = leOffset(line)
                {
                    let prefix = UnsafeBufferPointer(rebasing: line[..<le])
                    if prefix.count == series.prefix.count && Self.begins(prefix, with: series.prefix) {
                        bucket += 1
                    } else {
                        series = (Array(prefix), seriesKey(prefix, labels: family.labels).flatMap { family.slots[$0] })
                        bucket = 0
                    }
                    if let slots = series.slots, bucket < slots.count, let exemplar = slots[bucket] {
                        flushRun(to: end)
                        out += Array(" # {trace_id=\"\(exemplar.traceId)\"} \(exemplar.value) \(format(exemplar.timestamp))\n".utf8)
                        runStart = next
                    }
                }
            }
            flushRun(to: count)
            if count > 0, input[count - 1] != 0x0A, runStart < count { out.append(0x0A) }
            if let held = pendingHelp { writeHelp(input, held, counter: false, into: &out) }
        }
        out += Array("# EOF\n".utf8)
        return out
    }

    private static let helpPrefix = Array("# HELP ".utf8)
    private static let unitPrefix = Array("# UNIT ".utf8)
    private static let typePrefix = Array("# TYPE ".utf8)

    /// A TYPE line (and the HELP before it), a counter's family named without `_total`.
    private static func writeType(
        _ line: UnsafeBufferPointer<UInt8>, pendingHelp: Range<Int>?, input: UnsafeBufferPointer<UInt8>,
        into out: inout [UInt8]
    ) {
        let rest = line[typePrefix.count...]
        let space = rest.firstIndex(of: 0x20) ?? rest.endIndex
        let name = rest[rest.startIndex..<space]
        let kind = rest[space...].dropFirst()
        let counter = kind.elementsEqual("counter".utf8) && name.count > 6 && name.suffix(6).elementsEqual("_total".utf8)
        if let held = pendingHelp { writeHelp(input, held, counter: counter, into: &out) }
        out += typePrefix
        out += counter ? name.dropLast(6) : name
        out.append(0x20)
        out += kind
        out.append(0x0A)
    }

    /// A HELP line, its family renamed like its TYPE's and `"` escaped.
    private static func writeHelp(
        _ input: UnsafeBufferPointer<UInt8>, _ range: Range<Int>, counter: Bool, into out: inout [UInt8]
    ) {
        let rest = input[range].dropFirst(helpPrefix.count)
        let space = rest.firstIndex(of: 0x20) ?? rest.endIndex
        let name = rest[rest.startIndex..<space]
        out += helpPrefix
        out += counter ? name.dropLast(6) : name
        for byte in rest[space...] {
            if byte == UInt8(ascii: "\"") { out.append(UInt8(ascii: "\\")) }
            out.append(byte)
        }
        out.append(0x0A)
    }

    /// Whether `line` begins with `prefix` (a plain byte compare: this runs
    /// for every sample line of the exposition).
    private static func begins(_ line: UnsafeBufferPointer<UInt8>, with prefix: [UInt8]) -> Bool {
        guard !prefix.isEmpty else { return true }
        guard line.count >= prefix.count, let base = line.baseAddress else { return false }
        return prefix.withUnsafeBufferPointer { memcmp(base, $0.baseAddress!, prefix.count) } == 0
    }

    /// Where `le="` begins in a bucket line (after `{` or `,`).
    private static func leOffset(_ line: UnsafeBufferPointer<UInt8>) -> Int? {
        var index = line.count - 4
        while index > 0 {
            if line[index] == UInt8(ascii: "l"), line[index + 1] == UInt8(ascii: "e"), line[index + 2] == UInt8(ascii: "="),
                line[index + 3] == UInt8(ascii: "\""),
                line[index - 1] == UInt8(ascii: ",") || line[index - 1] == UInt8(ascii: "{")
            {
                return index
            }
            index -= 1
        }
        return nil
    }

    /// The book's key of a series: its `labels`' values joined with "|".
    private static func seriesKey(_ prefix: UnsafeBufferPointer<UInt8>, labels: [String]) -> String? {
        let text = String(decoding: prefix, as: UTF8.self)
        var key: [String] = []
        for label in labels {
            guard let value = value(of: label, in: text) else { return nil }
            key.append(value)
        }
        return key.joined(separator: "|")
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
