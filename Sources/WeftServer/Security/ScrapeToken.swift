import Foundation

/// The bearer token `/metrics` needs on the main listener (`--metrics-token`).
enum ScrapeToken {
    /// Whether `header` is `Bearer <token>`, compared in constant time.
    static func matches(_ header: String?, token: String) -> Bool {
        guard let header, header.count > 7, header.prefix(7).lowercased() == "bearer " else { return false }
        let presented = header.dropFirst(7).trimmingCharacters(in: .whitespaces)
        return Crypto.constantTimeEqual(Crypto.sha256(presented.utf8), Crypto.sha256(token.utf8))
    }
}
