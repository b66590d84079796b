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
        key = principal.limits as? ApiKeyGrant
        sessionId = principal.sessionId
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
    private let metrics: WeftMetrics
    /// Verified tokens, so a busy client's calls skip the HMAC and JSON work.
    /// Bounded: cleared when full, and when the keyring is reloaded (a
    /// dropped key's tokens must stop working). Expiry and revocation are
    /// still checked on every hit.
    private let cache = Mutex<(generation: Int, claims: [String: TokenSigner.Claims])>((0, [:]))
    private static let cacheLimit = 10_000

    init(signer: TokenSigner, sessions: SessionBook, keys: ApiKeyIndex, metrics: WeftMetrics) {
        self.signer = signer
        self.sessions = sessions
        self.keys = keys
        self.metrics = metrics
    }

    /// Public methods need no credentials: the chain need not show them here.
    var seesPublicMethods: Bool { false }

    func admit(_ call: inout CallHead) throws {
        guard call.access == .authenticated else { return }
        let principal = try authenticate(call.metadata, certificate: call.peerIdentity)
        if let grant = principal.limits as? ApiKeyGrant, !grant.permits(call.descriptor) {
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
        let token = String(Substring(header.utf8[body.startIndex..<end]))
        let now = Date()
        if token.hasPrefix("wk_") { return try authenticate(apiKey: token, now: now) }
        let generation = signer.keyring.generation
        let hit = cache.withLock { cache -> TokenSigner.Claims? in
            if cache.generation != generation {
                cache = (generation, [:])
                return nil
            }
            return cache.claims[token]
        }
        if let hit, hit.expiresAt > now { return try admitted(hit) }
        switch signer.verify(token, now: now) {
        case .success(let claims):
            cache.withLock { cache in
                guard cache.generation == generation else { return }
                if cache.claims.count >= Self.cacheLimit { cache.claims.removeAll(keepingCapacity: true) }
                cache.claims[token] = claims
            }
            return try admitted(claims)
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

    private func admitted(_ claims: TokenSigner.Claims) throws -> Principal {
        guard sessions.admits(userId: claims.userId, version: claims.version, sessionId: claims.sessionId) else {
            fail("revoked")
            throw RPCError(code: .unauthenticated, message: "the session has ended (logged out or revoked); log in again")
        }
        return Principal(id: claims.userId, sessionId: claims.sessionId.isEmpty ? nil : claims.sessionId)
    }

    private func authenticate(apiKey secret: String, now: Date) throws -> Principal {
        switch keys.key(secret: secret, now: now) {
        case .success(let key):
            return Principal(id: key.userId, limits: ApiKeyGrant(key))
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
        case .success(let key):
            return Principal(id: key.userId, limits: ApiKeyGrant(key))
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
