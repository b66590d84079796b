import Foundation
public import Logging

/// A swift-log handler that writes one line per record to stderr, as plain text
/// or as JSON (one object per line). Writes are unbuffered `write(2)` calls of
/// whole lines, so lines from different threads never interleave.
///
/// JSON lines have `timestamp` (RFC 3339, UTC, milliseconds), `level`,
/// `label` (the logger), `message`, then the metadata as fields; the metadata
/// provider adds `trace_id`, `span_id` and `trace_flags` to every line
/// logged inside a span. Nothing here knows which values are secret: callers
/// never put tokens, passwords or credentials in messages or metadata.
public struct WeftLogHandler: LogHandler {
    public enum Format: String, Sendable, CaseIterable {
        case text
        case json
    }

    public var logLevel: Logger.Level
    public var metadata: Logger.Metadata = [:]
    public var metadataProvider: Logger.MetadataProvider?
    private let label: String
    private let format: Format

    public init(label: String, format: Format, level: Logger.Level, metadataProvider: Logger.MetadataProvider? = nil) {
        self.label = label
        self.format = format
        self.logLevel = level
        self.metadataProvider = metadataProvider
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    public func log(event: LogEvent) {
        var merged = self.metadata
        if let provided = metadataProvider?.get(), !provided.isEmpty { merged.merge(provided) { $1 } }
        if let extra = event.metadata { merged.merge(extra) { $1 } }
        let timestamp = Self.timestamp()
        var line: String
        switch format {
        case .text:
            line = "\(timestamp) \(event.level) \(label): \(event.message)"
            for (key, value) in merged.sorted(by: { $0.key < $1.key }) {
                line += " \(key)=\(value)"
            }
        case .json:
            line = "{\"timestamp\":\"\(timestamp)\",\"level\":\"\(event.level)\",\"label\":"
            JSONText.appendQuoted(label, to: &line)
            line += ",\"message\":"
            JSONText.appendQuoted("\(event.message)", to: &line)
            for (key, value) in merged.sorted(by: { $0.key < $1.key })
            where !["timestamp", "level", "label", "message"].contains(key) {
                line += ","
                JSONText.appendQuoted(key, to: &line)
                line += ":"
                Self.appendJSON(value, to: &line)
            }
            line += "}"
        }
        line += "\n"
        var bytes = Array(line.utf8)
        bytes.withUnsafeMutableBytes { raw in
            var offset = 0
            while offset < raw.count {
                let n = write(2, raw.baseAddress! + offset, raw.count - offset)
                if n <= 0 { break }
                offset += n
            }
        }
    }

    private static func appendJSON(_ value: Logger.MetadataValue, to line: inout String) {
        switch value {
        case .string(let s): JSONText.appendQuoted(s, to: &line)
        case .stringConvertible(let c): JSONText.appendQuoted("\(c)", to: &line)
        case .array(let items):
            line += "["
            for (index, item) in items.enumerated() {
                if index > 0 { line += "," }
                appendJSON(item, to: &line)
            }
            line += "]"
        case .dictionary(let entries):
            line += "{"
            for (index, (key, item)) in entries.sorted(by: { $0.key < $1.key }).enumerated() {
                if index > 0 { line += "," }
                JSONText.appendQuoted(key, to: &line)
                line += ":"
                appendJSON(item, to: &line)
            }
            line += "}"
        }
    }

    private static func timestamp() -> String {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        var tm = tm()
        var seconds = ts.tv_sec
        gmtime_r(&seconds, &tm)
        return String(
            format: "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ",
            tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
            Int(ts.tv_nsec / 1_000_000))
    }
}

/// JSON string literals, written by hand where a JSON encoder would cost more
/// than the line (log lines, REST error bodies).
public enum JSONText {
    /// Appends `text` as a JSON string literal (RFC 8259 escapes; every other
    /// character as is, in UTF-8).
    public static func appendQuoted(_ text: String, to out: inout String) {
        out += "\""
        for scalar in text.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            case _ where scalar.value < 0x20:
                out += "\\u00" + String(scalar.value >> 4, radix: 16) + String(scalar.value & 0xF, radix: 16)
            default: out.unicodeScalars.append(scalar)
            }
        }
        out += "\""
    }

    public static func quoted(_ text: String) -> String {
        var out = ""
        appendQuoted(text, to: &out)
        return out
    }
}
