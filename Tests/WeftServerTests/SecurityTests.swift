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

    @Test("tokens verify, and tampered, foreign or expired tokens do not")
    func tokens() throws {
        let signer = TokenSigner(key: Array(repeating: 7, count: 32), lifetime: 60)
        let (token, _) = signer.issue(userId: "usr_1")
        #expect(try signer.verify(token).get().userId == "usr_1")
        var parts = token.split(separator: ".").map(String.init)
        parts[1] = Base64URL.encode(Array(#"{"sub":"usr_2","exp":9999999999}"#.utf8))
        #expect(Self.failure(signer.verify(parts.joined(separator: "."))) == .badSignature, "a tampered payload")
        let other = TokenSigner(key: Array(repeating: 8, count: 32), lifetime: 60)
        #expect(Self.failure(other.verify(token)) == .badSignature, "another server's key")
        #expect(Self.failure(signer.verify(token, now: Date().addingTimeInterval(120))) == .expired)
        #expect(Self.failure(signer.verify("not.a.token")) == .malformed)
    }

    static func failure(_ result: Result<TokenSigner.Claims, TokenSigner.Failure>) -> TokenSigner.Failure? {
        if case .failure(let reason) = result { return reason }
        return nil
    }
}
