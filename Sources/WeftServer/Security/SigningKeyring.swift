public import Foundation
import Synchronization

/// The keys that sign and verify access tokens, each named by a `kid`: one
/// signs, older ones still verify until they are pruned, so a rotation
/// (`weft auth rotate-key`) logs nobody out. Kept in
/// `DATA_DIR/auth-keys.json` (0600); `WEFT_AUTH_SECRET` instead pins one
/// key (kid "env"). A running server re-reads the file on SIGHUP.
public final class SigningKeyring: Sendable {
    public struct Key: Sendable, Codable, Equatable {
        public let kid: String
        /// base64 of 32 random bytes.
        public let secret: String
        public let createdAt: Date

        var bytes: [UInt8] { Data(base64Encoded: secret).map(Array.init) ?? [] }
    }

    /// The newest key signs; every key verifies.
    public struct Snapshot: Sendable {
        public let keys: [Key]
        let verification: [String: [UInt8]]
        var signing: (kid: String, key: [UInt8]) { (keys.last!.kid, verification[keys.last!.kid]!) }

        init(keys: [Key]) {
            self.keys = keys
            var map: [String: [UInt8]] = [:]
            for key in keys { map[key.kid] = key.bytes }
            verification = map
        }
    }

    /// Keys kept after a rotation: the new one and the two before it.
    public static let kept = 3
    private let source: Source
    private let snapshot: Mutex<Snapshot>

    enum Source: Sendable {
        case file(String)
        case pinned([UInt8])
    }

    public var current: Snapshot { snapshot.withLock { $0 } }

    /// Told after every reload: caches of verified tokens drop them, so a
    /// key dropped by a rotation stops verifying at once.
    private let observers = Mutex<[@Sendable () -> Void]>([])

    func onReload(_ body: @escaping @Sendable () -> Void) { observers.withLock { $0.append(body) } }

    /// Loads (creating on first start) the keyring of `dataDirectory`, or
    /// pins `secret` when one is given.
    public init(dataDirectory: String, secret: String?) throws {
        if let secret, !secret.isEmpty {
            guard secret.utf8.count >= 32 else { throw WeftStartupError("the auth secret must be at least 32 bytes") }
            source = .pinned(Array(secret.utf8))
            let key = Key(kid: "env", secret: Data(secret.utf8).base64EncodedString(), createdAt: Date(timeIntervalSince1970: 0))
            snapshot = Mutex(Snapshot(keys: [key]))
            return
        }
        let path = Self.path(dataDirectory)
        source = .file(path)
        snapshot = Mutex(Snapshot(keys: try Self.loadOrCreate(dataDirectory: dataDirectory)))
    }

    /// One fixed key (tests).
    public init(pinned secret: [UInt8], kid: String = "test") {
        source = .pinned(secret)
        snapshot = Mutex(Snapshot(keys: [
            Key(kid: kid, secret: Data(secret).base64EncodedString(), createdAt: Date(timeIntervalSince1970: 0))
        ]))
    }

    /// Re-reads the file (SIGHUP). A pinned secret does not change.
    public func reload() throws {
        guard case .file(let path) = source else { return }
        let keys = try Self.read(path)
        guard !keys.isEmpty else { throw WeftStartupError("\(path) holds no key") }
        snapshot.withLock { $0 = Snapshot(keys: keys) }
        for observer in observers.withLock({ $0 }) { observer() }
    }

    static func path(_ dataDirectory: String) -> String {
        (dataDirectory as NSString).appendingPathComponent("auth-keys.json")
    }

    static func read(_ path: String) throws -> [Key] {
        guard let data = FileManager.default.contents(atPath: path) else { throw WeftStartupError("cannot read \(path)") }
        do {
            let keys = try decoder.decode([Key].self, from: data)
            guard !keys.isEmpty, keys.allSatisfy({ $0.bytes.count >= 32 && !$0.kid.isEmpty }) else {
                throw WeftStartupError("\(path): needs at least one key, each with a kid and 32 bytes")
            }
            return keys
        } catch let error as WeftStartupError {
            throw error
        } catch {
            throw WeftStartupError("\(path) is not a valid keyring: \(error)")
        }
    }

    /// The keyring file, made on first start. An older data directory's
    /// single `auth.key` becomes key "k0" (tokens of older versions carry
    /// no `kid` and are refused anyway: an upgrade logs everyone out once).
    static func loadOrCreate(dataDirectory: String) throws -> [Key] {
        let path = path(dataDirectory)
        if FileManager.default.fileExists(atPath: path) { return try read(path) }
        let legacy = (dataDirectory as NSString).appendingPathComponent("auth.key")
        var keys: [Key] = []
        if let data = FileManager.default.contents(atPath: legacy), data.count >= 32 {
            keys.append(Key(kid: "k0", secret: data.base64EncodedString(), createdAt: Date()))
        } else {
            keys.append(newKey(after: []))
        }
        try write(keys, to: path)
        return keys
    }

    /// Adds a signing key and prunes beyond `kept`; returns the new kid.
    /// (The CLI's `weft auth rotate-key`; the server re-reads on SIGHUP.)
    public static func rotate(dataDirectory: String) throws -> (added: String, removed: [String]) {
        var keys = try loadOrCreate(dataDirectory: dataDirectory)
        let key = newKey(after: keys)
        keys.append(key)
        let removed = keys.count > kept ? keys.prefix(keys.count - kept).map(\.kid) : []
        keys = Array(keys.suffix(kept))
        try write(keys, to: path(dataDirectory))
        return (key.kid, removed)
    }

    public static func list(dataDirectory: String) throws -> [Key] { try read(path(dataDirectory)) }

    private static func newKey(after keys: [Key]) -> Key {
        // k1, k2, ...: the next number after the highest so far.
        let highest = keys.compactMap { Int($0.kid.dropFirst()) }.max() ?? 0
        return Key(kid: "k\(highest + 1)", secret: Data(Crypto.randomBytes(32)).base64EncodedString(), createdAt: Date())
    }

    private static func write(_ keys: [Key], to path: String) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        encoder.dateEncodingStrategy = .iso8601
        let data = try encoder.encode(keys)
        // Write beside, then rename: a reader never sees half a file.
        let temporary = path + ".tmp"
        _ = FileManager.default.createFile(atPath: temporary, contents: nil, attributes: [.posixPermissions: 0o600])
        guard FileManager.default.createFile(atPath: temporary, contents: data, attributes: [.posixPermissions: 0o600]) else {
            throw WeftStartupError("cannot write \(temporary)")
        }
        guard rename(temporary, path) == 0 else { throw WeftStartupError("cannot replace \(path)") }
    }

    private static let decoder: JSONDecoder = {
        let decoder = JSONDecoder()
        decoder.dateDecodingStrategy = .iso8601
        return decoder
    }()
}
