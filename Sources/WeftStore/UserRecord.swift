public import Foundation

/// An account.
public struct UserRecord: Sendable, Hashable {
    public var id: String
    public var email: String
    public var name: String
    /// `scrypt$N$r$p$salt$hash` (see PasswordHasher); never leaves the server.
    public var passwordHash: String
    public var createdAt: Date
    public var updatedAt: Date

    public init(id: String, email: String, name: String, passwordHash: String, createdAt: Date, updatedAt: Date) {
        self.id = id
        self.email = email
        self.name = name
        self.passwordHash = passwordHash
        self.createdAt = createdAt
        self.updatedAt = updatedAt
    }
}
