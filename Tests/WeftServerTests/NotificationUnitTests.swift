import Foundation
import Testing
import WeftEngine
import WeftRPC
import WeftStore

@testable import WeftServer

/// The pieces of delivery without I/O: templates, the subscription index,
/// backoff, circuit breakers, rate limits, integration settings and MIME.
@Suite("notification pieces")
struct NotificationUnitTests {
    static let at = Date(timeIntervalSince1970: 1_800_000_000)

    static func facts(_ event: NotificationEvent, trigger: String = "api") -> EventFacts {
        var facts = EventFacts(
            event: event, workflowId: "wf_1", workflowName: "Nightly <ETL> & co", orgId: "org_1", executionId: "exe_1",
            at: at.addingTimeInterval(75.5), status: "Failed", trigger: trigger)
        facts.startedAt = at
        facts.error = "boom <script>"
        return facts
    }

    @Test("templates fill placeholders, escape HTML only in html, keep unknown text, and flag unknown placeholders")
    func templates() {
        let payload = Self.facts(.executionFailed).payload
        let values = NotificationTemplates.values(payload, link: "https://weft.example.com/executions/exe_1")
        #expect(values["execution.duration"] == "1 min 15 s")
        let rendered = NotificationTemplates.render(NotificationTemplates.builtIn(.executionFailed), values: values)
        #expect(rendered.subject == "[Weft] Nightly <ETL> & co Failed: boom <script>")
        #expect(rendered.text.contains("Link: https://weft.example.com/executions/exe_1"))
        #expect(rendered.html.contains("Nightly &lt;ETL&gt; &amp; co") && rendered.html.contains("boom &lt;script&gt;"))
        #expect(!rendered.html.contains("<script>"))
        let custom = NotificationTemplates.render(
            RenderedMessage(subject: "{{ workflow.name }}\nline", text: "{{event}} {{ unclosed", html: ""), values: values)
        #expect(custom.subject == "Nightly <ETL> & co line")
        #expect(custom.text == "execution.failed {{ unclosed")
        #expect(NotificationTemplates.unknownPlaceholders("{{workflow.name}} {{ nope }} {{execution.eror}}") == ["nope", "execution.eror"])
        #expect(NotificationTemplates.duration(ms: 12) == "12 ms")
        #expect(NotificationTemplates.duration(ms: 1250) == "1.25 s")
        #expect(NotificationTemplates.duration(ms: 7_500_000) == "2 h 5 min")
        for event in NotificationEvent.allCases {
            let template = NotificationTemplates.builtIn(event)
            for part in [template.subject, template.text, template.html] {
                #expect(NotificationTemplates.unknownPlaceholders(part).isEmpty, "\(event)")
            }
        }
    }

    @Test("the index matches events, filters and deadlines; a delivery id is the same for the same event")
    func index() {
        let index = NotificationIndex()
        func subscription(_ id: String, _ events: Set<NotificationEvent>, filter: String? = nil, deadline: Int? = nil) -> SubscriptionRecord {
            SubscriptionRecord(
                id: id, workflowId: "wf_1", orgId: "org_1", userId: "usr_1", eventType: "custom", events: events,
                channel: .webhook, destination: "https://x.example.com", filter: filter, deadlineSeconds: deadline,
                createdAt: Self.at)
        }
        index.load([
            subscription("sub_all", [.executionFailed]),
            subscription("sub_sched", [.executionFailed], filter: "event.trigger == \"schedule\""),
            subscription("sub_deadline", [.executionDeadline], deadline: 90),
        ])
        #expect(index.watches(workflowId: "wf_1") && !index.watches(workflowId: "wf_2"))
        let api = index.entries(for: Self.facts(.executionFailed))
        #expect(api.map(\.subscriptionId) == ["sub_all"])
        let scheduled = index.entries(for: Self.facts(.executionFailed, trigger: "schedule"))
        #expect(scheduled.map(\.subscriptionId).sorted() == ["sub_all", "sub_sched"])
        #expect(index.entries(for: Self.facts(.executionFailed)).map(\.deliveryId) == api.map(\.deliveryId))
        #expect(api[0].deliveryId.hasPrefix("dlv_") && api[0].deliveryId.count == 36)
        #expect(scheduled.first { $0.subscriptionId == "sub_all" }?.deliveryId == api[0].deliveryId)
        let deadline = index.entries(for: Self.facts(.executionDeadline))
        #expect(deadline.count == 1 && deadline[0].nextAttemptAt == Self.facts(.executionDeadline).at.addingTimeInterval(90))
        index.remove(id: "sub_all", workflowId: "wf_1")
        #expect(index.subscription(id: "sub_all") == nil)
        #expect(index.entries(for: Self.facts(.executionFailed)).isEmpty)
        // A task event's id depends on the task and attempt.
        var first = Self.facts(.executionDeadline)
        first.taskKey = "a"
        first.attempt = 1
        var second = first
        second.attempt = 2
        #expect(NotificationIndex.deliveryId(subscription: "s", facts: first) != NotificationIndex.deliveryId(subscription: "s", facts: second))
    }

    @Test("backoff doubles to its cap with equal jitter; circuits open after the threshold and let one trial through")
    func policy() {
        let policy = DeliveryPolicy()
        #expect(policy.backoff(afterAttempt: 1, random: 0) == 0.5 && policy.backoff(afterAttempt: 1, random: 0.999) < 1)
        #expect(policy.backoff(afterAttempt: 4, random: 0) == 4)
        #expect(policy.backoff(afterAttempt: 40, random: 1) == 300)
        let breakers = CircuitBreakers(threshold: 3, cooldown: 30)
        let now = Self.at
        #expect(breakers.admit("d", now: now) == nil)
        #expect(!breakers.failed("d", now: now) && !breakers.failed("d", now: now))
        #expect(breakers.failed("d", now: now))
        #expect(breakers.admit("d", now: now.addingTimeInterval(10)) == now.addingTimeInterval(30))
        #expect(breakers.admit("other", now: now) == nil)
        #expect(breakers.admit("d", now: now.addingTimeInterval(31)) == nil)  // the trial
        #expect(breakers.admit("d", now: now.addingTimeInterval(31)) != nil)  // one at a time
        breakers.succeeded("d")
        #expect(breakers.admit("d", now: now.addingTimeInterval(32)) == nil)
        let limiter = DestinationRateLimiter(rate: 10, burst: 2)
        #expect(limiter.take("d", now: now) == 0 && limiter.take("d", now: now) == 0)
        #expect(abs(limiter.take("d", now: now) - 0.1) < 1e-9)
        #expect(limiter.take("d", now: now.addingTimeInterval(1)) == 0)
    }

    @Test("integration settings: secrets split from config, unknown fields and bad values refused with the field named")
    func settings() throws {
        let slack = try IntegrationSettings.validate(
            .slack, webhookURL: "https://hooks.slack.com/services/T/B/secret", config: .object(["channel": .string("#ops")]))
        #expect(slack.secrets == ["webhookUrl": "https://hooks.slack.com/services/T/B/secret"])
        #expect(slack.config == ["channel": .string("#ops")] && slack.displayURL == "https://hooks.slack.com/…")
        let email = try IntegrationSettings.validate(
            .email, webhookURL: "",
            config: .object([
                "host": .string("smtp.example.com"), "port": .number(465), "username": .string("u"), "password": .string("p"),
                "from": .string("weft@example.com"), "tls": .string("opportunistic"),
            ]))
        #expect(email.secrets == ["password": "p"] && email.config["password"] == nil && email.config["port"] == .number(465))
        // An update without the secret keeps the stored one.
        let kept = try IntegrationSettings.validate(
            .httpAuth, webhookURL: "", config: .object(["scheme": .string("bearer")]), keeping: ["token": "t0k"])
        #expect(kept.secrets == ["token": "t0k"])
        for (kind, url, config, message) in [
            (IntegrationKind.email, "", JSONValue.object(["host": .string("h.example.com"), "from": .string("a@b.example"), "port": .number(70000)]), "config.port"),
            (.email, "", .object(["host": .string("h.example.com"), "from": .string("a@b.example"), "tls": .string("maybe")]), "config.tls"),
            (.email, "", .object(["host": .string("h.example.com"), "from": .string("a@b.example"), "password": .string("p")]), "config.password needs config.username"),
            (.httpAuth, "", .object(["scheme": .string("basic"), "username": .string("a:b"), "password": .string("p")]), "scheme basic"),
            (.httpAuth, "", .object(["scheme": .string("bearer"), "token": .string("a\r\nX-Evil: 1")]), "line breaks"),
            (.slack, "https://user:pw@hooks.slack.com/x", .emptyObject, "must not carry credentials"),
            (.webhook, "https://x.example.com", .object(["signingSecret": .string("short")]), "16 to 256 bytes"),
        ] {
            #expect(throws: RPCError.self, "\(message)") { try IntegrationSettings.validate(kind, webhookURL: url, config: config) }
            do {
                _ = try IntegrationSettings.validate(kind, webhookURL: url, config: config)
            } catch let error as RPCError {
                #expect(error.message.contains(message), "\(error.message)")
            } catch {}
        }
        #expect(EmailAddress.isValid("ops@example.com") && !EmailAddress.isValid("ops@example.com>\r\nRCPT TO:<x@y.z"))
    }

    @Test("the MIME message: multipart text and HTML, encoded non-ASCII headers, dot-stuffing, no header injection")
    func mime() throws {
        let message = MIMEMessage(
            fromAddress: "weft@example.com", fromName: "Wéft Alerts", to: ["ops@example.com"],
            subject: "Überwachung ✓ failed\r\nBcc: victim@example.com", text: "line one\n.starts with a dot\n",
            html: "<p>Überwachung</p>", headers: [("X-Weft-Delivery-Id", "dlv_1")], messageId: "<dlv_1@weft>")
        try message.validate()
        let rendered = message.render(date: Self.at)
        #expect(rendered.contains("Content-Type: multipart/alternative"))
        #expect(rendered.contains("Subject: =?UTF-8?B?"))
        #expect(rendered.contains("From: =?UTF-8?B?"))
        #expect(!rendered.contains("\r\nBcc:"))
        #expect(rendered.contains("Message-ID: <dlv_1@weft>") && rendered.contains("X-Weft-Delivery-Id: dlv_1"))
        #expect(rendered.unicodeScalars.allSatisfy { $0.isASCII })
        #expect(MIMEMessage.dotStuffed("a\r\n.b\r\n..c\r\n") == "a\r\n..b\r\n...c\r\n")
    }
}
