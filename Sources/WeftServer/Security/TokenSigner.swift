import Foundation

/// Bearer tokens: JWTs (HS256) carrying the user id and an expiry, signed
/// with the server's secret. Stateless to verify: no store read per call.
struct TokenSigner: Sendable {
    struct Claims: Sendable, Equatable {
        let userId: String
        let expiresAt: Date
    }

    private let key: [UInt8]
    let lifetime: TimeInterval

    init(key: [UInt8], lifetime: TimeInterval) {
        self.key = key
        self.lifetime = lifetime
    }

    private static let header = Base64URL.encode(Array(#"{"alg":"HS256","typ":"JWT"}"#.utf8))

    func issue(userId: String, now: Date = Date()) -> (token: String, expiresAt: Date) {
        let expires = now.addingTimeInterval(lifetime)
        let payload: [String: Any] = [
            "sub": userId, "iat": Int(now.timeIntervalSince1970), "exp": Int(expires.timeIntervalSince1970),
            "jti": Base64URL.encode(Crypto.randomBytes(9)),
        ]
        let json = (try? JSONSerialization.data(withJSONObject: payload, options: [.sortedKeys])) ?? Data()
        let signingInput = Self.header + "." + Base64URL.encode(json)
        let signature = Crypto.hmacSHA256(key: key, data: Array(signingInput.utf8))
        return (signingInput + "." + Base64URL.encode(signature), Date(timeIntervalSince1970: TimeInterval(Int(expires.timeIntervalSince1970))))
    }

    enum Failure: String, Error {
        case malformed
        case badSignature = "bad_signature"
        case expired
    }

    func verify(_ token: String, now: Date = Date()) -> Result<Claims, Failure> {
        let parts = token.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 3, parts[0] == Self.header[...], let signature = Base64URL.decode(parts[2]) else {
            return .failure(.malformed)
        }
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
        return .success(Claims(userId: subject, expiresAt: expires))
    }
}
