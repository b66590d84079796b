import Foundation
import WeftStore

/// A rendered notification.
struct RenderedMessage: Sendable, Equatable {
    var subject: String
    var text: String
    var html: String
}

/// Message templates: a built-in one per event, which an organization may
/// override. Placeholders are `{{ name }}`; `placeholders` lists them. A
/// value is inserted as it is in the subject and text, HTML-escaped in html.
enum NotificationTemplates {
    static let placeholders: [String] = [
        "event", "workflow.id", "workflow.name", "execution.id", "execution.status", "execution.duration",
        "execution.error", "execution.trigger", "execution.link", "execution.started_at", "task.key", "task.attempt",
        "schedule.id", "schedule.tick", "reason", "count", "at",
    ]
    static let maxPartBytes = 16 * 1024

    /// The built-in template of an event.
    static func builtIn(_ event: NotificationEvent) -> RenderedMessage {
        let footer = "Workflow: {{workflow.name}} ({{workflow.id}})\nTrigger: {{execution.trigger}}\nLink: {{execution.link}}"
        let htmlFooter = """
            <p>Workflow: <b>{{workflow.name}}</b> ({{workflow.id}})<br>Trigger: {{execution.trigger}}<br>\
            <a href="{{execution.link}}">Open the execution</a></p>
            """
        switch event {
        case .executionStarted:
            return .init(
                subject: "[Weft] {{workflow.name}} started",
                text: "Execution {{execution.id}} of {{workflow.name}} started at {{at}}.\n\n" + footer,
                html: "<p>Execution <code>{{execution.id}}</code> started at {{at}}.</p>" + htmlFooter)
        case .executionCompleted:
            return .init(
                subject: "[Weft] {{workflow.name}} completed in {{execution.duration}}",
                text: "Execution {{execution.id}} of {{workflow.name}} completed in {{execution.duration}}.\n\n" + footer,
                html: "<p>Execution <code>{{execution.id}}</code> completed in {{execution.duration}}.</p>" + htmlFooter)
        case .executionFailed, .executionTimedOut, .executionCancelled:
            return .init(
                subject: "[Weft] {{workflow.name}} {{execution.status}}: {{execution.error}}",
                text: "Execution {{execution.id}} of {{workflow.name}} ended {{execution.status}} after {{execution.duration}}.\n"
                    + "Error: {{execution.error}}\n\n" + footer,
                html: "<p>Execution <code>{{execution.id}}</code> ended <b>{{execution.status}}</b> after {{execution.duration}}.</p>"
                    + "<p>Error: <code>{{execution.error}}</code></p>" + htmlFooter)
        case .executionDeadline:
            return .init(
                subject: "[Weft] {{workflow.name}} still running after {{execution.duration}}",
                text: "Execution {{execution.id}} of {{workflow.name}} has been running for {{execution.duration}}.\n\n" + footer,
                html: "<p>Execution <code>{{execution.id}}</code> has been running for {{execution.duration}}.</p>" + htmlFooter)
        case .taskFailed:
            return .init(
                subject: "[Weft] {{workflow.name}}: task {{task.key}} failed",
                text: "Task {{task.key}} of execution {{execution.id}} failed on attempt {{task.attempt}}: {{execution.error}}\n\n" + footer,
                html: "<p>Task <code>{{task.key}}</code> failed on attempt {{task.attempt}}: <code>{{execution.error}}</code></p>" + htmlFooter)
        case .taskRetried:
            return .init(
                subject: "[Weft] {{workflow.name}}: task {{task.key}} retried",
                text: "Task {{task.key}} of execution {{execution.id}} failed attempt {{task.attempt}} and will be retried: {{execution.error}}\n\n" + footer,
                html: "<p>Task <code>{{task.key}}</code> failed attempt {{task.attempt}} and will be retried: <code>{{execution.error}}</code></p>" + htmlFooter)
        case .scheduleTickMissed:
            return .init(
                subject: "[Weft] {{workflow.name}}: {{count}} schedule tick(s) missed",
                text: "Schedule {{schedule.id}} of {{workflow.name}} missed {{count}} tick(s) from {{schedule.tick}} (catch-up policy {{reason}}).",
                html: "<p>Schedule <code>{{schedule.id}}</code> missed {{count}} tick(s) from {{schedule.tick}} (catch-up policy {{reason}}).</p>")
        case .scheduleTickSkipped:
            return .init(
                subject: "[Weft] {{workflow.name}}: schedule tick skipped ({{reason}})",
                text: "Schedule {{schedule.id}} of {{workflow.name}} skipped its tick at {{schedule.tick}}: {{reason}}.",
                html: "<p>Schedule <code>{{schedule.id}}</code> skipped its tick at {{schedule.tick}}: {{reason}}.</p>")
        case .budgetForecastExceeded:
            return .init(
                subject: "[Weft] {{workflow.name}}: month-end cost forecast over budget",
                text: "The cost forecast of {{workflow.name}} ({{workflow.id}}) for this month is over its budget: {{reason}}",
                html: "<p>The cost forecast of <b>{{workflow.name}}</b> ({{workflow.id}}) for this month is over its budget: {{reason}}</p>")
        case .budgetExceeded:
            return .init(
                subject: "[Weft] {{workflow.name}}: monthly cost budget exceeded",
                text: "{{workflow.name}} ({{workflow.id}}) has spent more than its monthly budget: {{reason}}",
                html: "<p><b>{{workflow.name}}</b> ({{workflow.id}}) has spent more than its monthly budget: {{reason}}</p>")
        case .test:
            return .init(
                subject: "[Weft] test notification",
                text: "This is a test message from Weft for workflow {{workflow.name}} ({{workflow.id}}).",
                html: "<p>This is a test message from Weft for workflow <b>{{workflow.name}}</b> ({{workflow.id}}).</p>")
        }
    }

    /// The template to use: the organization's override (its empty parts
    /// from the built-in one), else the built-in.
    static func effective(_ event: NotificationEvent, override: TemplateRecord?) -> RenderedMessage {
        var template = builtIn(event)
        if let override {
            if !override.subject.isEmpty { template.subject = override.subject }
            if !override.text.isEmpty { template.text = override.text }
            if !override.html.isEmpty { template.html = override.html }
        }
        return template
    }

    /// The values of the placeholders for one event.
    static func values(_ payload: JSONValue, link: String) -> [String: String] {
        func field(_ name: String) -> String { payload[name]?.stringValue ?? "" }
        var values: [String: String] = [
            "event": field("event"), "workflow.id": field("workflowId"), "workflow.name": field("workflowName"),
            "execution.id": field("executionId"), "execution.status": field("status"), "execution.error": field("error"),
            "execution.trigger": field("trigger"), "execution.link": link, "execution.started_at": field("startedAt"),
            "task.key": field("task"), "schedule.id": field("scheduleId"), "schedule.tick": field("scheduledAt"),
            "reason": field("reason"), "at": field("at"),
        ]
        if case .number(let ms)? = payload["durationMs"] { values["execution.duration"] = duration(ms: ms) }
        if case .number(let attempt)? = payload["attempt"] { values["task.attempt"] = String(Int(attempt)) }
        if case .number(let count)? = payload["count"] { values["count"] = String(Int(count)) }
        if values["execution.error"]!.isEmpty { values["execution.error"] = "none" }
        return values
    }

    /// "12 ms", "1.25 s", "3 min 4 s", "2 h 5 min".
    static func duration(ms: Double) -> String {
        if ms < 1000 { return "\(Int(ms.rounded())) ms" }
        let seconds = ms / 1000
        if seconds < 60 { return String(format: "%.2f s", seconds) }
        let whole = Int(seconds)
        if whole < 3600 { return "\(whole / 60) min \(whole % 60) s" }
        return "\(whole / 3600) h \(whole % 3600 / 60) min"
    }

    /// Rendered sizes at most (a template that repeats a long value is cut,
    /// not allowed to fill memory): a subject fits a header line.
    static let maxSubjectBytes = 400
    static let maxBodyBytes = 64 * 1024

    static func render(_ template: RenderedMessage, values: [String: String]) -> RenderedMessage {
        CompiledMessage(template).render(values)
    }

    /// Unknown placeholders in a template (what a PUT refuses).
    static func unknownPlaceholders(_ text: String) -> [String] {
        compile(text).compactMap { piece in
            if case .value(let name) = piece, !placeholders.contains(name) { return name }
            return nil
        }
    }

    static func fill(_ text: String, _ values: [String: String], escape: Bool, limit: Int = .max) -> String {
        fill(compile(text), values, escape: escape, limit: limit)
    }

    /// A template split once into text and placeholders (`{{ name }}`; an
    /// unclosed `{{` is text), so a delivery only joins pieces.
    enum Piece: Sendable, Equatable {
        case text(String)
        case value(String)
    }

    static func compile(_ text: String) -> [Piece] {
        var pieces: [Piece] = []
        let bytes = Array(text.utf8)
        var literal = 0  // start of the pending text
        var index = 0
        while index + 1 < bytes.count {
            guard bytes[index] == UInt8(ascii: "{"), bytes[index + 1] == UInt8(ascii: "{") else {
                index += 1
                continue
            }
            var close = index + 2
            while close + 1 < bytes.count, !(bytes[close] == UInt8(ascii: "}") && bytes[close + 1] == UInt8(ascii: "}")) {
                close += 1
            }
            guard close + 1 < bytes.count else { break }  // unclosed: the rest is text
            if index > literal { pieces.append(.text(String(decoding: bytes[literal..<index], as: UTF8.self))) }
            let name = String(decoding: bytes[(index + 2)..<close], as: UTF8.self).trimmingCharacters(in: .whitespaces)
            pieces.append(.value(name))
            index = close + 2
            literal = index
        }
        if literal < bytes.count { pieces.append(.text(String(decoding: bytes[literal...], as: UTF8.self))) }
        return pieces
    }

    /// Joins pieces with the values; output stops at `limit` bytes (cut on
    /// a character, marked "…"), so a template repeating a long value
    /// cannot fill memory.
    static func fill(_ pieces: [Piece], _ values: [String: String], escape: Bool, limit: Int = .max) -> String {
        var out = ""
        var size = 0
        for piece in pieces {
            let part: String
            switch piece {
            case .text(let text): part = text
            case .value(let name): part = escape ? htmlEscaped(values[name] ?? "") : values[name] ?? ""
            }
            let count = part.utf8.count
            if size + count <= limit {
                out += part
                size += count
                continue
            }
            for character in part {
                let width = character.utf8.count
                guard size + width <= max(0, limit - 3) else { break }
                out.append(character)
                size += width
            }
            return out + "…"
        }
        return out
    }

    static func htmlEscaped(_ text: String) -> String {
        var out = ""
        out.reserveCapacity(text.utf8.count)
        for character in text {
            switch character {
            case "&": out += "&amp;"
            case "<": out += "&lt;"
            case ">": out += "&gt;"
            case "\"": out += "&quot;"
            case "'": out += "&#39;"
            default: out.append(character)
            }
        }
        return out
    }
}

/// A message's three parts compiled (`NotificationTemplates.compile`).
struct CompiledMessage: Sendable {
    let subject: [NotificationTemplates.Piece]
    let text: [NotificationTemplates.Piece]
    let html: [NotificationTemplates.Piece]

    init(_ message: RenderedMessage) {
        subject = NotificationTemplates.compile(message.subject)
        text = NotificationTemplates.compile(message.text)
        html = NotificationTemplates.compile(message.html)
    }

    func render(_ values: [String: String]) -> RenderedMessage {
        RenderedMessage(
            subject: NotificationTemplates.fill(subject, values, escape: false, limit: NotificationTemplates.maxSubjectBytes)
                .replacingOccurrences(of: "\r", with: " ").replacingOccurrences(of: "\n", with: " "),
            text: NotificationTemplates.fill(text, values, escape: false, limit: NotificationTemplates.maxBodyBytes),
            html: NotificationTemplates.fill(html, values, escape: true, limit: NotificationTemplates.maxBodyBytes))
    }
}
