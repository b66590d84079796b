import Foundation
import WeftEngine
import WeftRPC
import WeftStore

/// The integration types and their settings: which fields each has, which
/// of them are secret (sealed, never returned), and the checks on save.
/// Adding a type is adding a case here (and its delivery or use).
enum IntegrationKind: String, CaseIterable, Sendable {
    case slack
    case webhook
    case email
    case httpAuth = "http_auth"

    /// Settings fields (config keys) the type takes; the secret ones are sealed.
    var fields: [String] {
        switch self {
        case .slack: ["channel", "username"]
        case .webhook: ["signingSecret"]
        case .email:
            ["host", "port", "username", "password", "from", "fromName", "tls", "caCertificate", "verifyCertificate", "heloName"]
        case .httpAuth: ["scheme", "token", "username", "password", "header", "value"]
        }
    }

    var secretFields: Set<String> {
        switch self {
        case .slack: ["webhookUrl"]
        case .webhook: ["webhookUrl", "signingSecret"]
        case .email: ["password"]
        case .httpAuth: ["token", "password", "value"]
        }
    }

    /// Channels a subscription may deliver through it.
    var channel: NotificationChannel? {
        switch self {
        case .slack: .slack
        case .webhook: .webhook
        case .email: .email
        case .httpAuth: nil
        }
    }
}

/// An integration's settings, validated: what is stored in clear, what is
/// sealed, and the masked URL shown instead of the real one.
struct IntegrationSettings: Sendable, Equatable {
    var config: [String: JSONValue]
    var secrets: [String: String]
    var displayURL: String

    static let maxSecretBytes = 8 * 1024
    static let maxConfigBytes = 64 * 1024

    /// Checks a create (or an update merged with the stored secrets):
    /// unknown fields, missing ones, bad URLs, addresses and values all
    /// fail with a message naming the field.
    static func validate(
        _ kind: IntegrationKind, webhookURL: String, config raw: JSONValue, keeping stored: [String: String] = [:]
    ) throws -> IntegrationSettings {
        guard case .object(let fields) = raw else {
            throw RPCError(code: .invalidArgument, message: "config must be an object")
        }
        guard raw.jsonText().utf8.count <= maxConfigBytes else {
            throw RPCError(code: .invalidArgument, message: "config is larger than \(maxConfigBytes) bytes")
        }
        let allowed = Set(kind.fields)
        for key in fields.keys.sorted() where !allowed.contains(key) {
            throw RPCError(
                code: .invalidArgument,
                message: "config.\(key) is not a setting of a \(kind.rawValue) integration (settings: \(kind.fields.joined(separator: ", ")))")
        }
        var config: [String: JSONValue] = [:]
        var secrets = stored
        for (key, value) in fields {
            if kind.secretFields.contains(key) {
                guard let text = value.stringValue else {
                    throw RPCError(code: .invalidArgument, message: "config.\(key) must be a string")
                }
                guard text.utf8.count <= maxSecretBytes else {
                    throw RPCError(code: .invalidArgument, message: "config.\(key) is longer than \(maxSecretBytes) bytes")
                }
                if !text.isEmpty { secrets[key] = text }
            } else if value != .null {
                config[key] = value
            }
        }
        if !webhookURL.isEmpty { secrets["webhookUrl"] = webhookURL }
        func string(_ key: String) throws -> String? {
            guard let value = config[key] else { return nil }
            guard let text = value.stringValue else {
                throw RPCError(code: .invalidArgument, message: "config.\(key) must be a string")
            }
            return text
        }
        var display = ""
        switch kind {
        case .slack, .webhook:
            // The request's URL, or on an update the stored one.
            guard let url = secrets["webhookUrl"] else { throw APIError.required("webhook_url") }
            display = try checkURL(url, field: "webhook_url")
            if kind == .webhook {
                guard let secret = secrets["signingSecret"] else {
                    throw RPCError(
                        code: .invalidArgument,
                        message: "config.signingSecret is required: webhook deliveries are signed with it (16 to 256 bytes)")
                }
                guard (16...256).contains(secret.utf8.count) else {
                    throw RPCError(
                        code: .invalidArgument, message: "config.signingSecret must be 16 to 256 bytes, got \(secret.utf8.count)")
                }
            }
            for key in ["channel", "username"] { _ = try string(key) }
        case .email:
            guard webhookURL.isEmpty else {
                throw RPCError(code: .invalidArgument, message: "webhook_url is not a setting of an email (SMTP) integration")
            }
            guard let host = try string("host"), !host.isEmpty, host.utf8.count <= 253,
                !host.contains(where: { $0.isWhitespace || $0 == "/" || $0 == "@" })
            else { throw RPCError(code: .invalidArgument, message: "config.host (the SMTP server's host name) is required") }
            if let port = config["port"] {
                guard case .number(let value) = port, value == value.rounded(), (1...65535).contains(value) else {
                    throw RPCError(code: .invalidArgument, message: "config.port must be a port number (1 to 65535)")
                }
            }
            guard let from = try string("from"), EmailAddress.isValid(from) else {
                throw RPCError(code: .invalidArgument, message: "config.from (the sender's e-mail address) is required and must be an address")
            }
            if let mode = try string("tls"), !["required", "opportunistic", "none"].contains(mode) {
                throw RPCError(code: .invalidArgument, message: "config.tls \"\(mode)\" is not required, opportunistic or none")
            }
            if let verify = config["verifyCertificate"], !verify.isBool {
                throw RPCError(code: .invalidArgument, message: "config.verifyCertificate must be true or false")
            }
            if let pem = try string("caCertificate"), !pem.contains("-----BEGIN CERTIFICATE-----") {
                throw RPCError(code: .invalidArgument, message: "config.caCertificate must be a PEM certificate")
            }
            for key in ["username", "fromName", "heloName"] { _ = try string(key) }
            if secrets["password"] != nil, (try string("username") ?? "").isEmpty {
                throw RPCError(code: .invalidArgument, message: "config.password needs config.username")
            }
            display = "smtp://\(host)"
        case .httpAuth:
            guard webhookURL.isEmpty else {
                throw RPCError(code: .invalidArgument, message: "webhook_url is not a setting of an http_auth integration")
            }
            switch try string("scheme") {
            case "bearer":
                guard secrets["token"] != nil else { throw RPCError(code: .invalidArgument, message: "config.token is required for scheme bearer") }
            case "basic":
                guard let user = try string("username"), !user.isEmpty, !user.contains(":"), secrets["password"] != nil else {
                    throw RPCError(code: .invalidArgument, message: "scheme basic needs config.username (no \":\") and config.password")
                }
            case "api_key":
                guard let header = try string("header"), EgressPolicy.isHeaderName(header) else {
                    throw RPCError(code: .invalidArgument, message: "scheme api_key needs config.header, an HTTP header name")
                }
                guard !EgressPolicy.forbiddenHeaders.contains(header.lowercased()) else {
                    throw RPCError(code: .invalidArgument, message: "config.header \(header) is set by the client; choose another header")
                }
                guard secrets["value"] != nil else { throw RPCError(code: .invalidArgument, message: "config.value is required for scheme api_key") }
            case let other:
                throw RPCError(
                    code: .invalidArgument,
                    message: other == nil
                        ? "config.scheme is required: bearer, basic or api_key"
                        : "config.scheme \"\(other!)\" is not bearer, basic or api_key")
            }
        }
        // Settings go into SMTP commands and headers (heloName, from,
        // username): one line each. Only a PEM certificate spans lines.
        for (key, value) in config where key != "caCertificate" {
            if let text = value.stringValue, text.unicodeScalars.contains(where: { $0.value < 0x20 || $0.value == 0x7f }) {
                throw RPCError(code: .invalidArgument, message: "config.\(key) must not contain line breaks or control characters")
            }
        }
        // Scalars, not Characters: "\r\n" is one Character, equal to neither.
        for (key, value) in secrets where value.unicodeScalars.contains(where: { $0 == "\r" || $0 == "\n" || $0 == "\0" }) {
            throw RPCError(code: .invalidArgument, message: "config.\(key) must not contain line breaks")
        }
        return IntegrationSettings(config: config, secrets: secrets, displayURL: display)
    }

    /// An http(s) URL with a host; returns it masked ("https://hooks.slack.com/…").
    static func checkURL(_ text: String, field: String) throws -> String {
        guard text.utf8.count <= 2048, let url = URL(string: text), let scheme = url.scheme?.lowercased(),
            scheme == "http" || scheme == "https", let host = url.host, !host.isEmpty
        else {
            throw RPCError(code: .invalidArgument, message: "\(field) must be an http or https URL with a host")
        }
        guard url.user == nil, url.password == nil else {
            throw RPCError(code: .invalidArgument, message: "\(field) must not carry credentials (user:password@)")
        }
        return "\(scheme)://\(host)\(url.port.map { ":\($0)" } ?? "")/…"
    }
}

/// The e-mail address checks of the API (a pragmatic subset of RFC 5321:
/// what an SMTP server accepts in MAIL FROM / RCPT TO).
extension JSONValue {
    var isBool: Bool {
        if case .bool = self { return true }
        return false
    }
}

enum EmailAddress {
    static func isValid(_ text: String) -> Bool {
        guard text.utf8.count <= 254, let at = text.lastIndex(of: "@") else { return false }
        let local = text[..<at]
        let domain = text[text.index(after: at)...]
        guard !local.isEmpty, local.utf8.count <= 64, !domain.isEmpty, domain.contains(".") || domain == "localhost" else {
            return false
        }
        let forbidden = CharacterSet(charactersIn: "<>()[],;:\\\"\r\n ").union(.controlCharacters)
        return text.unicodeScalars.allSatisfy { !forbidden.contains($0) }
    }
}
