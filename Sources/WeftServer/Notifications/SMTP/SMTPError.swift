/// Why an e-mail was not sent. `isPermanent` tells the delivery loop whether
/// a later attempt can succeed: a 5xx or a message we refuse to send will
/// fail the same way again, a 4xx, a timeout or a dropped connection may not.
/// No case ever carries the SMTP password (AUTH replies are scrubbed of it).
public enum SMTPError: Error, CustomStringConvertible, Sendable {
    /// The TCP connection could not be made or was lost.
    case connect(String)
    /// The server did not answer within the configured time.
    case timeout(String)
    /// The server answered `code` (4xx or 5xx) at `stage` ("MAIL FROM", "AUTH LOGIN", ...).
    case rejected(code: Int, text: String, stage: String)
    /// TLS is required (by `tls: .required`, or because credentials must not
    /// travel in the clear) but the server does not offer STARTTLS.
    case tlsUnavailable
    /// The TLS handshake failed (certificate, hostname, protocol), with OpenSSL's reason.
    case tls(String)
    /// Credentials are configured but the server offers neither AUTH PLAIN nor AUTH LOGIN.
    case authUnsupported
    /// The message or the settings cannot be sent as they are (an address
    /// with a line break or angle bracket, no recipients, a reserved header).
    case invalidMessage(String)
    /// The server broke the protocol (a malformed reply, an unexpected code).
    case protocolError(String)

    /// True when retrying the same message with the same settings cannot help.
    public var isPermanent: Bool {
        switch self {
        case .rejected(let code, _, _): code >= 500
        case .invalidMessage, .authUnsupported, .tlsUnavailable: true
        // A certificate can be renewed and a broken server fixed: retried
        // with backoff like a dropped connection.
        case .connect, .timeout, .tls, .protocolError: false
        }
    }

    /// The SMTP reply code behind a rejection (for delivery attempt logs).
    public var replyCode: Int? {
        if case .rejected(let code, _, _) = self { return code }
        return nil
    }

    public var description: String {
        switch self {
        case .connect(let detail): "SMTP connection failed: \(detail)"
        case .timeout(let detail): "SMTP timeout: \(detail)"
        case .rejected(let code, let text, let stage): "SMTP server rejected \(stage): \(code) \(text)"
        case .tlsUnavailable: "the SMTP server does not offer STARTTLS, and TLS is required"
        case .tls(let detail): "SMTP TLS failed: \(detail)"
        case .authUnsupported: "the SMTP server offers neither AUTH PLAIN nor AUTH LOGIN"
        case .invalidMessage(let detail): "invalid e-mail: \(detail)"
        case .protocolError(let detail): "SMTP protocol error: \(detail)"
        }
    }
}
