public import Foundation
public import NIOCore
import WeftRPC

/// When the client upgrades to TLS with STARTTLS (RFC 3207).
public enum SMTPTLSMode: String, Sendable {
    /// STARTTLS must be offered and succeed, or nothing is sent.
    case required
    /// STARTTLS when the server offers it; plaintext otherwise (but never
    /// credentials: with a username set, no STARTTLS fails the send).
    case opportunistic
    /// Never TLS. The only mode that lets credentials travel in the clear.
    case none
}

/// Where and how to send (an `email` integration's config).
public struct SMTPSettings: Sendable {
    public var host: String
    public var port: Int
    public var username: String?
    /// Never logged nor put into an error (`description` hides it).
    public var password: String?
    /// The envelope sender (MAIL FROM: where bounces go); the message's own
    /// `fromAddress` is its From header.
    public var fromAddress: String
    /// The From display name for a message that has none of its own.
    public var fromName: String?
    public var tls: SMTPTLSMode
    /// PEM file of the CAs to trust; nil: the system's.
    public var caFile: String?
    /// PEM certificate(s) to trust instead (an email integration's caCertificate).
    public var caPEM: String?
    /// False accepts any certificate: tests and development only.
    public var verifyCertificate: Bool
    /// The name this client gives in EHLO/HELO.
    public var heloName: String
    /// The longest wait for any one reply (and for the TLS handshake).
    public var commandTimeout: TimeInterval
    public var connectTimeout: TimeInterval

    public init(
        host: String, port: Int = 587, username: String? = nil, password: String? = nil,
        fromAddress: String, fromName: String? = nil, tls: SMTPTLSMode = .required, caFile: String? = nil,
        verifyCertificate: Bool = true, heloName: String = "localhost",
        commandTimeout: TimeInterval = 30, connectTimeout: TimeInterval = 10
    ) {
        self.host = host
        self.port = port
        self.username = username
        self.password = password
        self.fromAddress = fromAddress
        self.fromName = fromName
        self.tls = tls
        self.caFile = caFile
        self.verifyCertificate = verifyCertificate
        self.heloName = heloName
        self.commandTimeout = commandTimeout
        self.connectTimeout = connectTimeout
    }
}

extension SMTPSettings: CustomStringConvertible, CustomDebugStringConvertible, CustomReflectable {
    /// Everything but the password, so that settings printed into a log
    /// cannot leak it.
    public var description: String {
        "SMTPSettings(host: \(host), port: \(port), username: \(username ?? "nil"), password: \(password == nil ? "nil" : "<redacted>"), "
            + "fromAddress: \(fromAddress), tls: \(tls.rawValue), caFile: \(caFile ?? "nil"), verifyCertificate: \(verifyCertificate), "
            + "heloName: \(heloName), commandTimeout: \(commandTimeout), connectTimeout: \(connectTimeout))"
    }

    public var debugDescription: String { description }

    public var customMirror: Mirror { Mirror(self, children: ["description": description]) }
}

/// What the server said when it took the message.
public struct SMTPReceipt: Sendable, Equatable {
    /// The text of the server's final 250 reply to the message (often with
    /// its queue id: "2.0.0 Ok: queued as 4BZ...").
    public var replyText: String
    /// Whether the message went over TLS (STARTTLS).
    public var usedTLS: Bool

    public init(replyText: String, usedTLS: Bool) {
        self.replyText = replyText
        self.usedTLS = usedTLS
    }
}

/// Sends e-mail over SMTP (RFC 5321) with STARTTLS and AUTH PLAIN / LOGIN:
/// one connection per message, every reply awaited at most
/// `commandTimeout`. Errors are `SMTPError`s whose `isPermanent` says
/// whether a retry can help.
public struct SMTPClient: Sendable {
    private let group: any EventLoopGroup

    public init(group: any EventLoopGroup) {
        self.group = group
    }

    /// Sends `message` to its `to` addresses.
    /// - Parameter address: the address to dial, already checked by the
    ///   egress guard (nil: resolve `settings.host`). SNI and the
    ///   certificate check use `settings.host` either way.
    public func send(_ message: MIMEMessage, settings: SMTPSettings, connectTo address: SocketAddress? = nil) async throws -> SMTPReceipt {
        var message = message
        if message.fromName == nil { message.fromName = settings.fromName }
        try message.validate()
        try MIMEMessage.validateAddress(settings.fromAddress, role: "envelope sender")
        let payload = Self.dataPayload(message.render(date: Date()))
        let connection = try await SMTPConnection.connect(
            host: settings.host, port: settings.port, address: address, group: group,
            connectTimeout: Self.timeAmount(settings.connectTimeout), commandTimeout: Self.timeAmount(settings.commandTimeout))
        do {
            var session = SMTPSession(connection: connection, settings: settings)
            let receipt = try await session.deliver(to: message.to, payload: payload)
            await connection.quit()
            return receipt
        } catch {
            await connection.close()
            throw error
        }
    }

    /// The message as DATA carries it: dot-stuffed, ending in CRLF, then
    /// the lone "." that ends it.
    static func dataPayload(_ rendered: String) -> String {
        var body = MIMEMessage.dotStuffed(rendered)
        if !body.hasSuffix("\r\n") { body += "\r\n" }
        return body + ".\r\n"
    }

    /// Seconds as a TimeAmount, kept between 1 ms and a day (a zero, NaN
    /// or infinite setting must not disable the bound).
    static func timeAmount(_ seconds: TimeInterval) -> TimeAmount {
        let bounded = seconds.isFinite ? min(max(seconds, 0.001), 86_400) : 86_400
        return .nanoseconds(Int64(bounded * 1e9))
    }
}

/// One conversation, greeting to the message's 250 (RFC 5321 3).
struct SMTPSession {
    let connection: SMTPConnection
    let settings: SMTPSettings
    private(set) var usedTLS = false

    init(connection: SMTPConnection, settings: SMTPSettings) {
        self.connection = connection
        self.settings = settings
    }

    mutating func deliver(to recipients: [String], payload: String) async throws(SMTPError) -> SMTPReceipt {
        try Self.expect(await connection.reply(stage: "greeting"), [220], stage: "greeting")
        var extensions = try await hello()
        extensions = try await secure(extensions)
        if let username = settings.username {
            try await authenticate(username: username, password: settings.password ?? "", extensions: extensions)
        }
        try Self.expect(await connection.command("MAIL FROM:<\(settings.fromAddress)>", stage: "MAIL FROM"), [250], stage: "MAIL FROM")
        for recipient in recipients {
            // 251: "not local; will forward" is an acceptance too.
            let stage = "RCPT TO <\(recipient)>"
            try Self.expect(await connection.command("RCPT TO:<\(recipient)>", stage: stage), [250, 251], stage: stage)
        }
        try Self.expect(await connection.command("DATA", stage: "DATA"), [354], stage: "DATA")
        let accepted = try Self.expect(await connection.data(payload), [250], stage: "message")
        return SMTPReceipt(replyText: accepted.text, usedTLS: usedTLS)
    }

    /// EHLO, or HELO for a server that does not know EHLO (a 5xx to it):
    /// no extensions then, so no STARTTLS and no AUTH.
    private func hello() async throws(SMTPError) -> SMTPExtensions {
        let name = Self.heloName(settings.heloName)
        let reply = try await connection.command("EHLO \(name)", stage: "EHLO")
        if reply.code == 250 { return SMTPExtensions(ehlo: reply) }
        guard reply.code >= 500 else { throw Self.failure(reply, stage: "EHLO") }
        try Self.expect(await connection.command("HELO \(name)", stage: "HELO"), [250], stage: "HELO")
        return SMTPExtensions()
    }

    /// STARTTLS as `settings.tls` asks; returns the extensions offered over
    /// TLS (RFC 3207 4.2: what the server said before TLS is forgotten).
    private mutating func secure(_ extensions: SMTPExtensions) async throws(SMTPError) -> SMTPExtensions {
        guard settings.tls != .none else { return extensions }
        guard extensions.startTLS else {
            if settings.tls == .required { throw .tlsUnavailable }
            return extensions
        }
        let reply = try await connection.command("STARTTLS", stage: "STARTTLS")
        guard reply.code == 220 else {
            // Opportunistic: carry on in the clear (credentials are refused later).
            if settings.tls == .required || settings.username != nil { throw Self.failure(reply, stage: "STARTTLS") }
            return extensions
        }
        let configuration = TLSClientConfiguration(
            serverName: settings.host, caFile: settings.caFile, caPEM: settings.caPEM, verify: settings.verifyCertificate)
        _ = try await connection.startTLS(configuration)
        usedTLS = true
        return try await hello()
    }

    /// AUTH PLAIN (RFC 4616) when offered, else AUTH LOGIN. Credentials go
    /// only over TLS, unless `tls: .none` says plaintext on purpose.
    private func authenticate(username: String, password: String, extensions: SMTPExtensions) async throws(SMTPError) {
        guard usedTLS || settings.tls == .none else { throw .tlsUnavailable }
        let scrub = Scrubber(username: username, password: password)
        let mechanisms = extensions.authMechanisms
        if mechanisms.contains("PLAIN") {
            let stage = "AUTH PLAIN"
            let token = Self.base64("\0\(username)\0\(password)")
            var reply = try await connection.command("AUTH PLAIN \(token)", stage: stage)
            // A server that ignores the initial response asks with an empty 334.
            if reply.code == 334 { reply = try await connection.command(token, stage: stage) }
            try Self.expect(reply, [235], stage: stage, scrub: scrub)
        } else if mechanisms.contains("LOGIN") {
            let stage = "AUTH LOGIN"
            try Self.expect(await connection.command("AUTH LOGIN", stage: stage), [334], stage: stage, scrub: scrub)
            try Self.expect(await connection.command(Self.base64(username), stage: stage), [334], stage: stage, scrub: scrub)
            try Self.expect(await connection.command(Self.base64(password), stage: stage), [235], stage: stage, scrub: scrub)
        } else {
            throw .authUnsupported
        }
    }

    // MARK: Helpers

    /// The reply when its code is one of `codes`, else the error it means.
    @discardableResult
    private static func expect(_ reply: SMTPReply, _ codes: Set<Int>, stage: String, scrub: Scrubber? = nil) throws(SMTPError) -> SMTPReply {
        guard !codes.contains(reply.code) else { return reply }
        throw failure(reply, stage: stage, scrub: scrub)
    }

    /// 4xx and 5xx are the server saying no; anything else out of turn is a
    /// protocol error.
    private static func failure(_ reply: SMTPReply, stage: String, scrub: Scrubber? = nil) -> SMTPError {
        var text = String(reply.text.prefix(512))
        if let scrub { text = scrub(text) }
        guard reply.code >= 400 else { return .protocolError("unexpected reply \(reply.code) to \(stage): \(text)") }
        return .rejected(code: reply.code, text: text, stage: stage)
    }

    /// A server may echo what it got; its text never carries our secrets out.
    private struct Scrubber {
        let secrets: [String]

        init(username: String, password: String) {
            secrets = [password, SMTPSession.base64(password), SMTPSession.base64("\0\(username)\0\(password)")]
                .filter { !$0.isEmpty }
        }

        func callAsFunction(_ text: String) -> String {
            secrets.reduce(text) { $0.replacingOccurrences(of: $1, with: "<redacted>") }
        }
    }

    /// EHLO's argument: printable ASCII without spaces, whatever the config says.
    static func heloName(_ configured: String) -> String {
        let name = String(configured.unicodeScalars.filter { $0.value > 0x20 && $0.value < 0x7f }.map(Character.init))
        return name.isEmpty ? "localhost" : name
    }

    static func base64(_ text: String) -> String {
        Data(text.utf8).base64EncodedString()
    }
}
