import Foundation

/// scrypt password hashes, stored as `scrypt$logN$r$p$salt$hash` (base64url),
/// so parameters can be raised later without breaking existing accounts.
struct PasswordHasher: Sendable {
    /// CPU/memory cost as log2(N): 15 means N = 32768 (32 MiB, ~100 ms here).
    let logN: Int
    let r = 8
    let p = 1

    init(logN: Int = 15) { self.logN = logN }

    func hash(_ password: String) -> String {
        let salt = Crypto.randomBytes(16)
        let derived = Crypto.scrypt(password: Array(password.utf8), salt: salt, logN: logN, r: r, p: p, length: 32) ?? []
        return "scrypt$\(logN)$\(r)$\(p)$\(Base64URL.encode(salt))$\(Base64URL.encode(derived))"
    }

    func verify(_ password: String, against stored: String) -> Bool {
        let parts = stored.split(separator: "$")
        guard parts.count == 6, parts[0] == "scrypt", let logN = Int(parts[1]), let r = Int(parts[2]),
            let p = Int(parts[3]), (1...20).contains(logN), let salt = Base64URL.decode(parts[4]),
            let expected = Base64URL.decode(parts[5])
        else { return false }
        guard let derived = Crypto.scrypt(
            password: Array(password.utf8), salt: salt, logN: logN, r: r, p: p, length: expected.count)
        else { return false }
        return Crypto.constantTimeEqual(derived, expected)
    }

    /// Burns the same time as a real check, so a login for an unknown email
    /// cannot be told apart by its latency.
    func dummyVerify(_ password: String) {
        _ = Crypto.scrypt(password: Array(password.utf8), salt: Array(repeating: 0, count: 16), logN: logN, r: r, p: p, length: 32)
    }
}
