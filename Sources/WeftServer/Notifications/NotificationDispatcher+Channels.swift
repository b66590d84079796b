import Foundation
import Logging
import NIOCore
import Synchronization
import Tracing
import WeftEngine
import WeftObservability
import WeftStore

/// What each channel sends, and the rendered message and link.
extension NotificationDispatcher {
    // MARK: Channels

    func send(_ entry: OutboxEntry, target: Target, attempt: Int) async throws -> Result {
        // The facts as of now: a deadline alert's duration, a missed tick's
        // workflow name.
        let (message, link, payload) = try await render(entry)
        var entry = entry
        entry.payload = payload
        let timeout = settings.policy.attemptTimeout
        switch target {
        case .webhook(let url, let secret):
            let body = Array(NotificationPayloads.webhook(entry, message: message, link: link).jsonText().utf8)
            let timestamp = Int(Date().timeIntervalSince1970)
            var headers = [
                ("content-type", "application/json"), ("user-agent", "Weft-Notifications/1"),
                (WebhookSignature.deliveryHeader, entry.deliveryId), (WebhookSignature.eventHeader, entry.event.rawValue),
                (WebhookSignature.timestampHeader, String(timestamp)), ("X-Weft-Attempt", String(attempt)),
            ]
            if let secret {
                headers.append((WebhookSignature.signatureHeader, WebhookSignature.sign(secret: secret, timestamp: timestamp, body: body)))
            }
            return try await httpResult(poster.post(url: url, headers: headers, body: body, timeout: timeout))
        case .slack(let url, let config):
            let body = Array(NotificationPayloads.slack(entry, message: message, link: link, config: config).jsonText().utf8)
            let headers = [("content-type", "application/json"), ("user-agent", "Weft-Notifications/1")]
            return try await httpResult(poster.post(url: url, headers: headers, body: body, timeout: timeout))
        case .email(var settings, let to, let relay):
            guard EmailAddress.isValid(to) else { throw BrokenTarget(message: "\"\(to)\" is not an e-mail address") }
            settings.commandTimeout = timeout
            let destination = try await (relay ? relayEgress : egress).check(host: settings.host)
            let address = try destination.pinned.map { try SocketAddress(ipAddress: $0.description, port: settings.port) }
            var mail = MIMEMessage(
                fromAddress: settings.fromAddress, fromName: settings.fromName ?? "Weft", to: [to], subject: message.subject,
                text: message.text + "\n", html: message.html, headers: [("X-Weft-Delivery-Id", entry.deliveryId)],
                messageId: "<\(entry.deliveryId)@weft>")
            mail.headers.append(("X-Weft-Event", entry.event.rawValue))
            do {
                let receipt = try await smtp.send(mail, settings: settings, connectTo: address)
                return .delivered(status: 250, detail: receipt.replyText)
            } catch let error as SMTPError {
                return .failed(status: error.replyCode ?? 0, detail: error.description, permanent: error.isPermanent)
            }
        case .inApp(let userId):
            let record = NotificationRecord(
                id: IDGenerator.make("ntf", now: Date()), userId: userId, workflowId: entry.workflowId,
                executionId: entry.executionId, event: entry.event.rawValue, title: message.subject, body: message.text,
                link: link, deliveryId: entry.deliveryId, createdAt: Date())
            if try await store.insertNotification(record) { feed.publish(record) }
            return .delivered(status: 0, detail: "stored for user \(userId)")
        }
    }

    /// 2xx delivered; 408, 429 and 5xx retried; other statuses refused for good.
    func httpResult(_ response: WebhookPoster.Response) -> Result {
        let detail = "HTTP \(response.status)" + (response.body.isEmpty ? "" : ": " + String(response.body.prefix(200)))
        switch response.status {
        case 200..<300: return .delivered(status: response.status, detail: detail)
        case 408, 429, 500...: return .failed(status: response.status, detail: detail, permanent: false)
        default: return .failed(status: response.status, detail: detail, permanent: true)
        }
    }

    /// The message of an event: the organization's template (or the
    /// built-in one) filled with its facts; and its link.
    func render(_ entry: OutboxEntry) async throws -> (RenderedMessage, String, JSONValue) {
        var payload = entry.payload
        if payload["workflowName"]?.stringValue?.isEmpty ?? true,
            let workflow = try? await workflows.workflow(id: entry.workflowId, includeDeleted: true),
            case .object(var fields) = payload
        {
            fields["workflowName"] = .string(workflow.name)
            payload = .object(fields)
        }
        if entry.event == .executionDeadline, case .object(var fields) = payload,
            let started = (payload["startedAt"]?.stringValue).flatMap({ try? Date($0, strategy: EventFacts.timestamp) })
        {
            // How long it has run by now, not at its start.
            fields["durationMs"] = .number((Date().timeIntervalSince(started) * 1000).rounded())
            fields["at"] = .string(StoreDate.rfc3339(Date()))
            payload = .object(fields)
        }
        let link = Self.link(publicURL: settings.publicURL, entry)
        let template = try await templates.compiled(orgId: entry.orgId, event: entry.event)
        return (template.render(NotificationTemplates.values(payload, link: link)), link, payload)
    }

    static func link(publicURL: String, _ entry: OutboxEntry) -> String {
        let base = publicURL.hasSuffix("/") ? String(publicURL.dropLast()) : publicURL
        return entry.executionId.isEmpty ? "\(base)/workflows/\(entry.workflowId)" : "\(base)/executions/\(entry.executionId)"
    }
}
