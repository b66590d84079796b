import Foundation
import Logging
import NIOCore
import Synchronization
import Tracing
import WeftEngine
import WeftObservability
import WeftStore

/// Where a delivery goes: the subscription's destination or its
/// integration's, with the integration's secrets opened.
extension NotificationDispatcher {
    enum Target {
        case webhook(url: String, secret: String?)
        case slack(url: String, config: JSONValue)
        /// `relay`: the operator's server (`--smtp-host`), not an integration's.
        case email(SMTPSettings, to: String, relay: Bool)
        case inApp(userId: String)

        /// The circuit breaker's and rate limiter's key: one receiver (a
        /// URL; an SMTP server with its account), so one tenant's broken
        /// hook does not pause another's on the same host.
        var key: String {
            switch self {
            case .webhook(let url, _), .slack(let url, _):
                return "url:" + Hex.encode(Crypto.sha256(Array(url.utf8)).prefix(12))
            case .email(let settings, _, _): return "smtp:\(settings.host):\(settings.port):\(settings.username ?? "")"
            case .inApp(let userId): return "in_app:" + userId
            }
        }

        /// In-app deliveries are local writes: no breaker, no rate limit.
        var isGuarded: Bool {
            if case .inApp = self { return false }
            return true
        }
    }

    func resolve(_ entry: OutboxEntry) async throws -> Target {
        guard let subscription = index.subscription(id: entry.subscriptionId) else {
            throw Moot(reason: "subscription_deleted", detail: "the subscription was deleted")
        }
        // Whoever lost access to the workflow (removed as a collaborator,
        // left the organization) is told nothing more about it.
        guard try await access.mayRead(userId: subscription.userId, workflowId: subscription.workflowId) else {
            throw Moot(reason: "no_access", detail: "the subscriber no longer has a role on the workflow (or it was deleted)")
        }
        if entry.event == .executionDeadline {
            if let execution = try await executions.execution(id: entry.executionId), execution.isFinished {
                throw Moot(
                    reason: "deadline_met",
                    detail: "the execution ended (\(execution.status.rawValue)) before the \(subscription.deadlineSeconds ?? 0) s deadline")
            }
        }
        return try await target(subscription, channel: entry.channel)
    }

    /// A subscription's destination: its integration's, or its own.
    func target(_ subscription: SubscriptionRecord, channel: NotificationChannel) async throws -> Target {
        var integration: IntegrationRecord?
        var secrets: [String: String] = [:]
        if let id = subscription.integrationId {
            (integration, secrets) = try await opened(integrationId: id)
        }
        switch channel {
        case .webhook:
            let url = secrets["webhookUrl"] ?? subscription.destination
            return .webhook(url: url, secret: secrets["signingSecret"])
        case .slack:
            return .slack(url: secrets["webhookUrl"] ?? subscription.destination, config: integration?.config ?? .emptyObject)
        case .email:
            if let integration {
                return .email(try Self.smtpSettings(integration.config, secrets: secrets), to: subscription.destination, relay: false)
            } else if let configured = self.settings.smtp {
                return .email(configured, to: subscription.destination, relay: true)
            } else {
                throw BrokenTarget(
                    message: "no SMTP server: start weft with --smtp-host (see docs/NOTIFICATIONS.md) or use an email integration")
            }
        case .inApp:
            return .inApp(userId: subscription.userId)
        }
    }

    /// An integration with its secrets opened, kept a few seconds (every
    /// delivery through it needs them; the API forgets it on a change).
    func opened(integrationId id: String) async throws -> (IntegrationRecord, [String: String]) {
        let now = Date()
        if let hit = integrations.withLock({ $0[id] }), now.timeIntervalSince(hit.at) < TemplateCache.lifetime {
            return (hit.record, hit.secrets)
        }
        guard let found = try await store.integration(id: id) else {
            throw BrokenTarget(message: "integration \(id) no longer exists")
        }
        // Without a master key now (a restart without it) the secrets may
        // open later: retried. Damaged ones never will: refused.
        guard vault.sealer != nil else { throw SecretError(vault.closedMessage) }
        let secrets: [String: String]
        do {
            secrets = try vault.openIntegrationSecrets(found.sealed, orgId: found.orgId, integrationId: found.id)
        } catch {
            throw BrokenTarget(message: "the secrets of integration \(id) cannot be opened: \(error)")
        }
        integrations.withLock { cache in
            if cache.count > 10_000 { cache = [:] }
            cache[id] = (now, found, secrets)
        }
        return (found, secrets)
    }

    /// An integration changed or went: the next delivery reads it again.
    func forgetIntegration(_ id: String) {
        integrations.withLock { $0[id] = nil }
    }

    /// An email integration's settings as the SMTP client takes them.
    static func smtpSettings(_ config: JSONValue, secrets: [String: String]) throws -> SMTPSettings {
        guard let host = config["host"]?.stringValue, let from = config["from"]?.stringValue else {
            throw BrokenTarget(message: "the email integration has no host or from address")
        }
        var port = 587
        if case .number(let value)? = config["port"] { port = Int(value) }
        let tls = SMTPTLSMode(rawValue: config["tls"]?.stringValue ?? "required") ?? .required
        var verify = true
        if case .bool(let value)? = config["verifyCertificate"] { verify = value }
        var settings = SMTPSettings(
            host: host, port: port, username: config["username"]?.stringValue, password: secrets["password"],
            fromAddress: from, fromName: config["fromName"]?.stringValue, tls: tls, caFile: nil,
            verifyCertificate: verify, heloName: config["heloName"]?.stringValue ?? "weft.localhost")
        settings.caPEM = config["caCertificate"]?.stringValue
        return settings
    }
}
