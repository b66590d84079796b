import Foundation
import Testing

@testable import WeftServer

@Suite("passwords and tokens")
struct SecurityTests {
    @Test("scrypt hashes verify only the right password and are salted")
    func passwords() {
        let hasher = PasswordHasher(logN: 10)
        let hash = hasher.hash("correct horse")
        #expect(hash.hasPrefix("scrypt$10$8$1$"))
        #expect(hasher.verify("correct horse", against: hash))
        #expect(!hasher.verify("correct horsf", against: hash))
        #expect(hasher.hash("correct horse") != hash)
        #expect(!hasher.verify("x", against: "garbage"))
    }

    @Test("tokens verify, and tampered, foreign, unknown-key or expired tokens do not")
    func tokens() throws {
        let signer = TokenSigner(keyring: SigningKeyring(pinned: Array(repeating: 7, count: 32), kid: "k1"), lifetime: 60)
        let (token, _) = signer.issue(userId: "usr_1", sessionId: "ses_1", version: 3)
        let claims = try signer.verify(token).get()
        #expect(claims.userId == "usr_1" && claims.sessionId == "ses_1" && claims.version == 3)
        var parts = token.split(separator: ".").map(String.init)
        parts[1] = Base64URL.encode(Array(#"{"sub":"usr_2","exp":9999999999}"#.utf8))
        #expect(Self.failure(signer.verify(parts.joined(separator: "."))) == .badSignature, "a tampered payload")
        let other = TokenSigner(keyring: SigningKeyring(pinned: Array(repeating: 8, count: 32), kid: "k1"), lifetime: 60)
        #expect(Self.failure(other.verify(token)) == .badSignature, "another server's key")
        let rotated = TokenSigner(keyring: SigningKeyring(pinned: Array(repeating: 7, count: 32), kid: "k2"), lifetime: 60)
        #expect(Self.failure(rotated.verify(token)) == .unknownKey, "a kid the keyring does not hold")
        #expect(Self.failure(signer.verify(token, now: Date().addingTimeInterval(120))) == .expired)
        #expect(Self.failure(signer.verify("not.a.token")) == .malformed)
    }

    static func failure(_ result: Result<TokenSigner.Claims, TokenSigner.Failure>) -> TokenSigner.Failure? {
        if case .failure(let reason) = result { return reason }
        return nil
    }
}
