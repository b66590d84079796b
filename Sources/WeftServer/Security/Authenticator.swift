import Foundation
import Synchronization
import WeftObservability
import WeftRPC

/// Who is calling: the user of a verified bearer token.
struct Caller: Sendable, Equatable {
    let userId: String
    /// The call's audit notes, when it is audited: what a handler resolves
    /// about the caller (organization, resource) is noted here.
    let audit: CallAudit?

    init(userId: String) {
        self.userId = userId
        audit = nil
    }

    /// The caller the interceptor chain authenticated (UNAUTHENTICATED if
    /// none: a handler never runs as nobody).
    init(_ context: ServerContext) throws {
        self.userId = try context.caller.id
        audit = context.audit
    }

    static func == (a: Caller, b: Caller) -> Bool { a.userId == b.userId }
}

/// The authentication stage of the interceptor chain: checks
/// `authorization: Bearer <token>` (gRPC metadata, or the HTTP header the
/// REST bridge passes as metadata) for every method that is not public,
/// before its request is decoded, and puts the user in the call. Health,
/// metrics, reflection, register and login are public; everything else is
/// refused without a valid token.
final class Authenticator: ServerInterceptor, Sendable {
    let signer: TokenSigner
    private let metrics: WeftMetrics
    /// Verified tokens, so a busy client's calls skip the HMAC and JSON work.
    /// Bounded: cleared when full. Expiry is still checked on every hit.
    private let cache = Mutex<[String: TokenSigner.Claims]>([:])
    private static let cacheLimit = 10_000

    init(signer: TokenSigner, metrics: WeftMetrics) {
        self.signer = signer
        self.metrics = metrics
    }

    /// Public methods need no credentials: the chain need not show them here.
    var seesPublicMethods: Bool { false }

    func admit(_ call: inout CallHead) throws {
        guard call.access != .public else { return }
        call.principal = Principal(id: try authenticate(call.metadata).userId)
    }

    func authenticate(_ metadata: Metadata) throws -> Caller {
        guard let header = metadata[string: "authorization"] else {
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
        if let claims = cache.withLock({ $0[token] }), claims.expiresAt > now {
            return Caller(userId: claims.userId)
        }
        switch signer.verify(token, now: now) {
        case .success(let claims):
            cache.withLock { cache in
                if cache.count >= Self.cacheLimit { cache.removeAll(keepingCapacity: true) }
                cache[token] = claims
            }
            return Caller(userId: claims.userId)
        case .failure(.expired):
            fail("expired")
            throw RPCError(code: .unauthenticated, message: "the token has expired; log in again")
        case .failure(let reason):
            fail(reason.rawValue)
            throw RPCError(code: .unauthenticated, message: "the token is not valid")
        }
    }

    private func fail(_ reason: String) {
        metrics.counter(
            MetricNames.authFailures, help: "Calls rejected as unauthenticated, by reason.", labels: [("reason", reason)]
        ).increment()
    }

    /// The signing key: `WEFT_AUTH_SECRET`-style bytes if given, else a
    /// 32-byte key kept in the data directory (created on first start, 0600),
    /// so tokens survive restarts.
    static func loadKey(dataDirectory: String, secret: String?) throws -> [UInt8] {
        if let secret, !secret.isEmpty {
            guard secret.utf8.count >= 32 else {
                throw WeftStartupError("the auth secret must be at least 32 bytes")
            }
            return Array(secret.utf8)
        }
        let path = (dataDirectory as NSString).appendingPathComponent("auth.key")
        if let data = FileManager.default.contents(atPath: path), data.count >= 32 {
            return Array(data)
        }
        let key = Crypto.randomBytes(32)
        guard FileManager.default.createFile(atPath: path, contents: Data(key), attributes: [.posixPermissions: 0o600])
        else { throw WeftStartupError("cannot write \(path)") }
        return key
    }
}
