import Foundation
import Synchronization
import WeftObservability
import WeftRPC

/// Who is calling: the user of a verified access token or API key.
struct Caller: Sendable, Equatable {
    let userId: String
    /// The call's audit notes, when it is audited: what a handler resolves
    /// about the caller (organization, resource) is noted here.
    let audit: CallAudit?
    /// Set when the call came with an API key: what it narrows.
    let key: ApiKeyGrant?
    /// The login session of the call's access token.
    let sessionId: String?

    init(userId: String, key: ApiKeyGrant? = nil) {
        self.userId = userId
        audit = nil
        self.key = key
        sessionId = nil
    }

    /// The caller the interceptor chain authenticated (UNAUTHENTICATED if
    /// none: a handler never runs as nobody).
    init(_ context: ServerContext) throws {
        let principal = try context.caller
        self.userId = principal.id
        audit = context.audit
        // (`as?` on a nil existential still goes through the runtime's cast.)
        if let credential = principal.credential {
            key = credential.limits.flatMap { $0 as? ApiKeyGrant }
            sessionId = credential.sessionId
        } else {
            key = nil
            sessionId = nil
        }
    }

    /// PERMISSION_DENIED unless an API key in use may start this workflow.
    func requireExecute(workflowId: String) throws {
        guard let key, !key.mayExecute(workflowId: workflowId) else { return }
        throw RPCError(
            code: .permissionDenied, message: "this API key may not execute workflow \(workflowId) (not in its workflowIds)")
    }

    static func == (a: Caller, b: Caller) -> Bool { a.userId == b.userId && a.key == b.key }
}

/// The authentication stage of the interceptor chain: checks
/// `authorization: Bearer <credential>` (gRPC metadata, or the HTTP header
/// the REST bridge passes as metadata) for every method that is not public,
/// before its request is decoded, and puts the caller in the call. The
/// credential is an access token (a JWT of a session) or an API key
/// (`wk_...`); without one, a verified mutual-TLS client certificate bound
/// to an API key stands for that key. Health, metrics, reflection,
/// register, login and refresh are public. Every check is in memory.
final class Authenticator: ServerInterceptor, Sendable {
    let signer: TokenSigner
    let sessions: SessionBook
    let keys: ApiKeyIndex
    /// The dashboard's cookie session (an alternative to `authorization`
    /// for REST calls, with a CSRF check on writes).
    let cookies: SessionCookies
    private let metrics: WeftMetrics
    /// Verified tokens, so a busy client's calls skip the HMAC and JSON work.
    /// Bounded: cleared when full, and when the keyring is reloaded (a
    /// dropped key's tokens must stop working). Expiry and revocation are
    /// still checked on every hit.
    /// Emptied (and its epoch moved on) whenever a session is revoked, a
    /// token version bumped or the keyring reloaded: an entry in it was
    /// checked against everything that holds now, so a hit needs no other
    /// check than expiry. A token checked before such a change and stored
    /// after it is not stored (its epoch is old).
    private let cache = Mutex<(epoch: Int, entries: [String: CacheEntry])>((0, [:]))

    private struct CacheEntry {
        let claims: TokenSigner.Claims
        /// Built once: a hit copies it (no allocation per call).
        let principal: Principal
    }
    private static let cacheLimit = 10_000
    private static let apiKeyPrefix = Array("wk_".utf8)

    init(signer: TokenSigner, sessions: SessionBook, keys: ApiKeyIndex, metrics: WeftMetrics, secureCookies: Bool) {
        self.signer = signer
        self.cookies = SessionCookies(keyring: signer.keyring, secure: secureCookies)
        self.sessions = sessions
        self.keys = keys
        self.metrics = metrics
        sessions.onChange { [weak self] in self?.invalidate() }
        signer.keyring.onReload { [weak self] in self?.invalidate() }
    }

    private func invalidate() {
        cache.withLock { cache in
            cache.epoch += 1
            cache.entries.removeAll()
        }
    }

    /// Public methods need no credentials: the chain need not show them here.
    var seesPublicMethods: Bool { false }

    func admit(_ call: inout CallHead) throws {
        guard call.access == .authenticated else { return }
        let principal: Principal
        if call.transport == .rest, call.metadata[string: "authorization"] == nil,
            let token = SessionCookies.value(SessionCookies.session, in: call.metadata)
        {
            principal = try authenticate(cookie: token, call: call)
        } else {
            principal = try authenticate(call.metadata, certificate: call.peerIdentity)
        }
        if let limits = principal.credential?.limits, let grant = limits as? ApiKeyGrant, !grant.permits(call.descriptor) {
            fail("scope")
            throw RPCError(
                code: .permissionDenied,
                message: "this API key's scopes (\(grant.scopes.map(\.rawValue).sorted().joined(separator: ", "))) do not allow \(call.descriptor.method)")
        }
        call.principal = principal
    }

    func authenticate(_ metadata: Metadata, certificate: String? = nil) throws -> Principal {
        guard let header = metadata[string: "authorization"] else {
            if let certificate { return try authenticate(certificate: certificate) }
            fail("missing")
            throw RPCError(
                code: .unauthenticated,
                message: "missing credentials: send `authorization: Bearer <token>` (POST /users/login returns a token)")
        }
        // Byte-level parsing: Foundation's trimming costs more than the whole
        // rest of a cached call.
        let utf8 = header.utf8
        guard utf8.count > 7, utf8.prefix(6).map({ $0 | 0x20 }).elementsEqual("bearer".utf8), utf8.dropFirst(6).first == 0x20
        else {
            fail("malformed")
            throw RPCError(code: .unauthenticated, message: "authorization must be `Bearer <token>`")
        }
        let body = utf8.dropFirst(7).drop { $0 == 0x20 || $0 == 0x09 }
        let end = body.lastIndex { $0 != 0x20 && $0 != 0x09 }.map { body.index(after: $0) } ?? body.startIndex
        let bytes = header.utf8[body.startIndex..<end]
        let token = String(Substring(bytes))
        let now = Date()
        // Byte compare: String.hasPrefix is Unicode-aware and costs more.
        if bytes.starts(with: Self.apiKeyPrefix) { return try authenticate(apiKey: token, now: now) }
        return try authenticate(accessToken: token, now: now)
    }

    /// The dashboard's session cookie: an access token of a login session
    /// (never an API key), and on anything but a read the session's CSRF
    /// token in `x-weft-csrf`.
    private func authenticate(cookie token: String, call: CallHead) throws -> Principal {
        guard !token.utf8.starts(with: Self.apiKeyPrefix) else {
            fail("malformed")
            throw RPCError(code: .unauthenticated, message: "the session cookie does not hold a session; log in again")
        }
        let principal = try authenticate(accessToken: token, now: Date())
        guard let sessionId = principal.credential?.sessionId, !sessionId.isEmpty else {
            fail("malformed")
            throw RPCError(code: .unauthenticated, message: "the session cookie does not hold a session; log in again")
        }
        let method = call.httpMethod ?? "POST"
        if method != "GET" && method != "HEAD" {
            guard let csrf = call.metadata[string: SessionCookies.csrfHeader], cookies.csrfValid(csrf, sessionId: sessionId) else {
                fail("csrf")
                throw RPCError(
                    code: .permissionDenied,
                    message: "missing or wrong \(SessionCookies.csrfHeader) header: a call with the session cookie must echo the \(SessionCookies.csrf) cookie in it")
            }
        }
        return principal
    }

    private func authenticate(accessToken token: String, now: Date) throws -> Principal {
        let (hit, epoch) = cache.withLock { ($0.entries[token], $0.epoch) }
        if let hit, hit.claims.expiresAt > now { return hit.principal }
        switch signer.verify(token, now: now) {
        case .success(let claims):
            try admit(claims)
            let principal = Principal(
                id: claims.userId,
                credential: claims.sessionId.isEmpty ? nil : PrincipalCredential(sessionId: claims.sessionId))
            cache.withLock { cache in
                guard cache.epoch == epoch else { return }
                if cache.entries.count >= Self.cacheLimit { cache.entries.removeAll(keepingCapacity: true) }
                cache.entries[token] = CacheEntry(claims: claims, principal: principal)
            }
            return principal
        case .failure(.expired):
            fail("expired")
            throw RPCError(code: .unauthenticated, message: "the token has expired; refresh it (POST /users/refresh) or log in again")
        case .failure(.unknownKey):
            fail("unknown_key")
            throw RPCError(code: .unauthenticated, message: "the token is not valid (its signing key is not known)")
        case .failure(let reason):
            fail(reason.rawValue)
            throw RPCError(code: .unauthenticated, message: "the token is not valid")
        }
    }

    /// UNAUTHENTICATED when the token's session was revoked or its user's
    /// token version moved on.
    private func admit(_ claims: TokenSigner.Claims) throws {
        guard sessions.admits(userId: claims.userId, version: claims.version, sessionId: claims.sessionId) else {
            fail("revoked")
            throw RPCError(code: .unauthenticated, message: "the session has ended (logged out or revoked); log in again")
        }
    }

    private func authenticate(apiKey secret: String, now: Date) throws -> Principal {
        switch keys.key(secret: secret, now: now) {
        case .success(let principal):
            return principal
        case .failure(.expired):
            fail("expired")
            throw RPCError(code: .unauthenticated, message: "the API key has expired")
        case .failure(.unknown):
            fail("bad_api_key")
            throw RPCError(code: .unauthenticated, message: "the API key is not valid (unknown or revoked)")
        }
    }

    private func authenticate(certificate name: String) throws -> Principal {
        switch keys.key(certificate: name, now: Date()) {
        case .success(let principal):
            return principal
        case .failure(.expired):
            fail("expired")
            throw RPCError(code: .unauthenticated, message: "the API key of client certificate \"\(name)\" has expired")
        case .failure(.unknown):
            fail("unknown_certificate")
            throw RPCError(
                code: .unauthenticated,
                message: "client certificate \"\(name)\" is not bound to an API key; send `authorization: Bearer <token>`")
        }
    }

    private func fail(_ reason: String) {
        metrics.counter(
            MetricNames.authFailures, help: "Calls rejected as unauthenticated, by reason.", labels: [("reason", reason)]
        ).increment()
    }
}
