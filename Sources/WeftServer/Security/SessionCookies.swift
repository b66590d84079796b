import Foundation
import WeftProto
import WeftRPC

/// The web dashboard's session: the same login session API clients get,
/// carried in cookies so that no token is ever readable by a script in the
/// page (an injected script cannot steal what it cannot read).
///
/// A REST login (or refresh, or password change) that sends
/// `x-weft-session: cookie` gets, instead of tokens in the body:
/// - `weft_session`: the access token, `HttpOnly; SameSite=Strict; Path=/`;
/// - `weft_refresh`: the refresh token, `HttpOnly; SameSite=Strict`, sent
///   only to `/users/refresh`;
/// - `weft_csrf`: a token bound to the session (HMAC of its id with the
///   token signing key), readable by the page, which must echo it in
///   `x-weft-csrf` on every call that is not a GET or HEAD. `SameSite=Strict`
///   already keeps the cookies off cross-site requests; the header is the
///   second lock (a same-site attacker, an old browser).
/// `Secure` is added when the listener speaks TLS or the public URL is
/// https (TLS ended at a proxy). Bearer tokens in
/// `authorization` keep working for every other client and win over cookies.
struct SessionCookies: Sendable {
    static let session = "weft_session"
    static let refresh = "weft_refresh"
    static let csrf = "weft_csrf"
    static let csrfHeader = "x-weft-csrf"
    static let modeHeader = "x-weft-session"
    static let refreshPath = "/users/refresh"

    let keyring: SigningKeyring
    let secure: Bool

    /// Whether the caller asked for a cookie session (REST only: gRPC
    /// clients have no cookie jar).
    static func wanted(_ context: ServerContext) -> Bool {
        context.transport == .rest && context.requestMetadata[string: modeHeader]?.lowercased() == "cookie"
    }

    /// The value of cookie `name` in the request's `cookie` headers (HTTP/2
    /// may split them into several fields).
    static func value(_ name: String, in metadata: Metadata) -> String? {
        for entry in metadata where entry.key == "cookie" {
            guard case .string(let header) = entry.value else { continue }
            for pair in header.split(separator: ";") {
                let trimmed = pair.drop { $0 == " " || $0 == "\t" }
                guard let eq = trimmed.firstIndex(of: "="), trimmed[..<eq] == name else { continue }
                let value = trimmed[trimmed.index(after: eq)...]
                // An empty one (a cleared or planted duplicate) does not hide a real one.
                guard !value.isEmpty else { continue }
                return String(value)
            }
        }
        return nil
    }

    /// The CSRF token of a session.
    func csrfToken(sessionId: String) -> String {
        Base64URL.encode(Self.csrfMAC(key: keyring.current.signing.key, sessionId: sessionId))
    }

    /// Whether `token` is the CSRF token of `sessionId` under any key the
    /// keyring still verifies with (a rotation does not break open pages).
    func csrfValid(_ token: String, sessionId: String) -> Bool {
        guard let given = Base64URL.decode(token) else { return false }
        return keyring.current.verification.values.contains { key in
            Crypto.constantTimeEqual(Self.csrfMAC(key: key, sessionId: sessionId), given)
        }
    }

    private static func csrfMAC(key: [UInt8], sessionId: String) -> [UInt8] {
        Crypto.hmacSHA256(key: key, data: Array("weft-csrf:\(sessionId)".utf8))
    }

    /// Puts the session in cookies and takes the tokens out of the body.
    /// The session cookie lives as long as the session can be refreshed,
    /// not as long as the access token in it: an expired token answers 401
    /// and the page refreshes, instead of the cookie vanishing.
    func issue(_ response: inout Weft_V1_LoginResponse, sessionId: String, context: ServerContext) {
        let refreshAge = max(0, Int(response.refreshExpiresAt.date.timeIntervalSinceNow.rounded(.down)))
        context.addResponseHeader("set-cookie", cookie(Self.session, response.token, path: "/", maxAge: refreshAge, httpOnly: true))
        context.addResponseHeader(
            "set-cookie", cookie(Self.refresh, response.refreshToken, path: Self.refreshPath, maxAge: refreshAge, httpOnly: true))
        context.addResponseHeader(
            "set-cookie", cookie(Self.csrf, csrfToken(sessionId: sessionId), path: "/", maxAge: refreshAge, httpOnly: false))
        response.token = ""
        response.refreshToken = ""
    }

    /// Expires the three cookies (logout).
    func clear(_ context: ServerContext) {
        for header in clearing { context.addResponseHeader("set-cookie", header) }
    }

    /// Expires the three cookies with an error answer (a refresh that failed).
    func clear(into metadata: inout Metadata) {
        for header in clearing { metadata.add("set-cookie", header) }
    }

    private var clearing: [String] {
        [
            cookie(Self.session, "", path: "/", maxAge: 0, httpOnly: true),
            cookie(Self.refresh, "", path: Self.refreshPath, maxAge: 0, httpOnly: true),
            cookie(Self.csrf, "", path: "/", maxAge: 0, httpOnly: false),
        ]
    }

    private func cookie(_ name: String, _ value: String, path: String, maxAge: Int, httpOnly: Bool) -> String {
        var text = "\(name)=\(value); Path=\(path); Max-Age=\(maxAge); SameSite=Strict"
        if httpOnly { text += "; HttpOnly" }
        if secure { text += "; Secure" }
        return text
    }
}
