import Foundation
import WeftEngine
import WeftStore

/// The bodies channels send, built from one event and its rendered message.
enum NotificationPayloads {
    /// A generic webhook's JSON body.
    static func webhook(_ entry: OutboxEntry, message: RenderedMessage, link: String) -> JSONValue {
        .object([
            "deliveryId": .string(entry.deliveryId),
            "event": .string(entry.event.rawValue),
            "createdAt": .string(StoreDate.rfc3339(entry.createdAt)),
            "subscriptionId": .string(entry.subscriptionId),
            "workflowId": .string(entry.workflowId),
            "executionId": .string(entry.executionId),
            "link": .string(link),
            "subject": .string(message.subject),
            "text": .string(message.text),
            "data": entry.payload,
        ])
    }

    /// Slack Block Kit: a header, the facts as fields, the error, a link.
    static func slack(_ entry: OutboxEntry, message: RenderedMessage, link: String, config: JSONValue) -> JSONValue {
        let payload = entry.payload
        func field(_ title: String, _ value: String) -> JSONValue {
            .object(["type": .string("mrkdwn"), "text": .string("*\(title)*\n\(escape(value))")])
        }
        var fields: [JSONValue] = [
            field("Status", payload["status"]?.stringValue ?? "-"),
            field("Trigger", payload["trigger"]?.stringValue ?? "-"),
        ]
        if case .number(let ms)? = payload["durationMs"] { fields.append(field("Duration", NotificationTemplates.duration(ms: ms))) }
        if let task = payload["task"]?.stringValue { fields.append(field("Task", task)) }
        if !entry.executionId.isEmpty { fields.append(field("Execution", entry.executionId)) }
        var blocks: [JSONValue] = [
            .object([
                "type": .string("header"),
                "text": .object(["type": .string("plain_text"), "text": .string(String(message.subject.prefix(150)))]),
            ]),
            .object(["type": .string("section"), "fields": .array(fields)]),
        ]
        if let error = payload["error"]?.stringValue, !error.isEmpty {
            blocks.append(.object([
                "type": .string("section"),
                // A ``` in the error would end the code block early.
                "text": .object([
                    "type": .string("mrkdwn"),
                    "text": .string("*Error*\n```\(escape(String(error.prefix(2800))).replacingOccurrences(of: "```", with: "` ` `"))```"),
                ]),
            ]))
        }
        if !link.isEmpty {
            blocks.append(.object([
                "type": .string("actions"),
                "elements": .array([
                    .object([
                        "type": .string("button"), "text": .object(["type": .string("plain_text"), "text": .string("Open execution")]),
                        "url": .string(link),
                    ])
                ]),
            ]))
        }
        blocks.append(.object([
            "type": .string("context"),
            "elements": .array([
                .object([
                    "type": .string("mrkdwn"),
                    "text": .string("\(escape(payload["workflowName"]?.stringValue ?? "")) · \(entry.event.rawValue) · delivery \(entry.deliveryId)"),
                ])
            ]),
        ]))
        // Escaped: a workflow name or error with <!channel> must not ping anyone.
        var body: [String: JSONValue] = ["text": .string(escape(message.subject)), "blocks": .array(blocks)]
        if let channel = config["channel"]?.stringValue, !channel.isEmpty { body["channel"] = .string(channel) }
        if let username = config["username"]?.stringValue, !username.isEmpty { body["username"] = .string(username) }
        return .object(body)
    }

    /// Slack's mrkdwn escapes only these three.
    static func escape(_ text: String) -> String {
        text.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;")
            .replacingOccurrences(of: ">", with: "&gt;")
    }
}
