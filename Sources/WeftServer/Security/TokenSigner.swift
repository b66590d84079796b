import Foundation

/// Access tokens: JWTs (HS256) with the signing key's `kid` in the header,
/// carrying the user, the session (`sid`), the user's token version (`ver`)
/// and a short expiry. Verified with no store read: the signature by the
/// keyring, revocation by `SessionBook` (in memory).
struct TokenSigner: Sendable {
    struct Claims: Sendable, Equatable {
        let userId: String
        let expiresAt: Date
        let sessionId: String
        let version: Int
    }

    let keyring: SigningKeyring
    let lifetime: TimeInterval

    init(keyring: SigningKeyring, lifetime: TimeInterval) {
        self.keyring = keyring
        self.lifetime = lifetime
    }

    /// The header names the key; `typ` is optional (RFC 7519 5.1) and left
    /// out: every byte of a token is sent, validated by nghttp2 and hashed
    /// for the cache on every call.
    private static func header(kid: String) -> String {
        // kid is [A-Za-z0-9] (ours) so no JSON escaping is needed.
        Base64URL.encode(Array(#"{"alg":"HS256","kid":"\#(kid)"}"#.utf8))
    }

    /// Only what verification needs: subject, expiry, session (which also
    /// makes every token unique), and the token version when not 0.
    func issue(userId: String, sessionId: String, version: Int, now: Date = Date()) -> (token: String, expiresAt: Date) {
        let expires = Date(timeIntervalSince1970: TimeInterval(Int(now.addingTimeInterval(lifetime).timeIntervalSince1970)))
        var payload: [String: Any] = ["sub": userId, "exp": Int(expires.timeIntervalSince1970), "sid": sessionId]
        if version != 0 { payload["ver"] = version }
        let json = (try? JSONSerialization.data(withJSONObject: payload, options: [.sortedKeys])) ?? Data()
        let signing = keyring.current.signing
        let signingInput = Self.header(kid: signing.kid) + "." + Base64URL.encode(json)
        let signature = Crypto.hmacSHA256(key: signing.key, data: Array(signingInput.utf8))
        return (signingInput + "." + Base64URL.encode(signature), expires)
    }

    enum Failure: String, Error {
        case malformed
        case unknownKey = "unknown_key"
        case badSignature = "bad_signature"
        case expired
    }

    func verify(_ token: String, now: Date = Date()) -> Result<Claims, Failure> {
        let parts = token.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 3, let headerBytes = Base64URL.decode(parts[0]), let signature = Base64URL.decode(parts[2]),
            let header = try? JSONSerialization.jsonObject(with: Data(headerBytes)) as? [String: Any],
            header["alg"] as? String == "HS256", let kid = header["kid"] as? String
        else { return .failure(.malformed) }
        guard let key = keyring.current.verification[kid] else { return .failure(.unknownKey) }
        let signingInput = token.utf8.prefix(parts[0].utf8.count + 1 + parts[1].utf8.count)
        guard Crypto.constantTimeEqual(Crypto.hmacSHA256(key: key, data: signingInput), signature) else {
            return .failure(.badSignature)
        }
        guard let payloadBytes = Base64URL.decode(parts[1]),
            let payload = try? JSONSerialization.jsonObject(with: Data(payloadBytes)) as? [String: Any],
            let subject = payload["sub"] as? String, let exp = (payload["exp"] as? NSNumber)?.doubleValue
        else { return .failure(.malformed) }
        let expires = Date(timeIntervalSince1970: exp)
        guard expires > now else { return .failure(.expired) }
        return .success(Claims(
            userId: subject, expiresAt: expires, sessionId: payload["sid"] as? String ?? "",
            version: (payload["ver"] as? NSNumber)?.intValue ?? 0))
    }
}
