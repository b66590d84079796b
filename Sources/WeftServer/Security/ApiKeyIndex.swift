import Foundation
import Synchronization
import WeftRPC
import WeftStore

/// What an API key may do, carried by its calls (`Principal.limits`).
struct ApiKeyGrant: PrincipalLimits, Equatable {
    enum Scope: String, CaseIterable, Sendable {
        case read, execute, worker, admin
    }

    let keyId: String
    let scopes: Set<Scope>
    let workflowIds: Set<String>
    let queues: Set<String>
    /// The organization of `queues` ("" = the creator's own).
    let orgId: String
    let expiresAt: Date?

    var credentialId: String { keyId }

    init(_ record: ApiKeyRecord) {
        keyId = record.id
        scopes = Set(record.scopes.compactMap(Scope.init(rawValue:)))
        workflowIds = Set(record.workflowIds)
        queues = Set(record.queues)
        orgId = record.orgId
        expiresAt = record.expiresAt
    }

    /// Whether the key's scopes cover calling this method at all (the
    /// handlers check the names: which workflow, which queue).
    func permits(_ descriptor: RPCMethodDescriptor) -> Bool {
        if scopes.contains(.admin) { return true }
        if descriptor.service == ApiKeyAPI.name && !descriptor.isReadOnly { return false }
        if descriptor.isReadOnly && (scopes.contains(.read) || scopes.contains(.execute)) { return true }
        if scopes.contains(.execute), descriptor.service == ExecutionAPI.name,
            descriptor.method == "ExecuteWorkflow" || descriptor.method == "CancelExecution"
        {
            return true
        }
        if scopes.contains(.worker) {
            if descriptor.service == WorkerAPI.name { return true }
            if descriptor.service == UserAPI.name && descriptor.method == "GetCurrentUser" { return true }
        }
        return false
    }

    func mayExecute(workflowId: String) -> Bool { scopes.contains(.admin) || workflowIds.contains(workflowId) }

    func mayPoll(queue: String, orgId: String, home: String?) -> Bool {
        if scopes.contains(.admin) { return true }
        guard scopes.contains(.worker), queues.contains(queue) else { return false }
        return (self.orgId.isEmpty ? home : self.orgId) == orgId
    }
}

/// Every live API key in memory, by the prefix its secret starts with and
/// by its client-certificate name, so a call is checked without a store
/// read. Last-used times collect here and are written in batches.
final class ApiKeyIndex: Sendable {
    /// A live key, its secret's hash as bytes, and the principal its calls
    /// carry (all built once).
    private struct Entry {
        var record: ApiKeyRecord
        let hash: [UInt8]
        let principal: Principal
    }

    private struct State {
        var byPrefix: [String: Entry] = [:]
        var byCertificate: [String: String] = [:]
        /// Last use not yet written to the store.
        var unwritten: [String: Date] = [:]
        /// Secrets already checked -> their key's prefix, so a busy key
        /// skips the SHA-256 (emptied when a key is removed; bounded).
        var verified: [String: String] = [:]
    }

    private let state = Mutex(State())
    /// A key's last-used time is written at most this often.
    static let touchInterval: TimeInterval = 60

    /// `wk_` + 8 characters: what lookup and lists use.
    static let prefixLength = 11

    func load(from store: any CredentialStore) async throws {
        let keys = try await store.liveApiKeys()
        state.withLock { state in
            for key in keys { Self.insert(key, into: &state) }
        }
    }

    func add(_ key: ApiKeyRecord) { state.withLock { Self.insert(key, into: &$0) } }

    private static func insert(_ key: ApiKeyRecord, into state: inout State) {
        state.byPrefix[key.prefix] = Entry(
            record: key, hash: Hex.decode(key.secretHash) ?? [],
            principal: Principal(id: key.userId, credential: PrincipalCredential(limits: ApiKeyGrant(key))))
        if !key.clientCertCn.isEmpty { state.byCertificate[key.clientCertCn] = key.prefix }
    }

    func remove(_ key: ApiKeyRecord) {
        state.withLock { state in
            state.byPrefix[key.prefix] = nil
            if state.byCertificate[key.clientCertCn] == key.prefix { state.byCertificate[key.clientCertCn] = nil }
            state.unwritten[key.id] = nil
            state.verified.removeAll()
        }
    }

    func lastUsed(prefix: String) -> Date? { state.withLock { $0.byPrefix[prefix]?.record.lastUsedAt } }

    func certificateInUse(_ name: String) -> Bool { state.withLock { $0.byCertificate[name] != nil } }

    enum Failure: Error {
        case unknown
        case expired
    }

    /// The principal of the key whose secret this is (constant-time hash
    /// comparison).
    func key(secret: String, now: Date) -> Result<Principal, Failure> {
        guard secret.utf8.count > Self.prefixLength else { return .failure(.unknown) }
        let fast = state.withLock { state -> Result<Principal, Failure>? in
            guard let prefix = state.verified[secret], let entry = state.byPrefix[prefix] else { return nil }
            return Self.use(entry, now: now, state: &state)
        }
        if let fast { return fast }
        let prefix = String(secret.prefix(Self.prefixLength))
        let hash = Crypto.sha256(secret.utf8)
        return state.withLock { state in
            guard let entry = state.byPrefix[prefix], Crypto.constantTimeEqual(entry.hash, hash) else {
                return .failure(.unknown)
            }
            if state.verified.count >= 10_000 { state.verified.removeAll(keepingCapacity: true) }
            state.verified[secret] = prefix
            return Self.use(entry, now: now, state: &state)
        }
    }

    /// The principal of the key bound to a verified client certificate's CN.
    func key(certificate name: String, now: Date) -> Result<Principal, Failure> {
        state.withLock { state in
            guard let prefix = state.byCertificate[name], let entry = state.byPrefix[prefix] else { return .failure(.unknown) }
            return Self.use(entry, now: now, state: &state)
        }
    }

    private static func use(_ entry: Entry, now: Date, state: inout State) -> Result<Principal, Failure> {
        let key = entry.record
        if let expires = key.expiresAt, expires <= now { return .failure(.expired) }
        if let last = key.lastUsedAt, now.timeIntervalSince(last) < touchInterval { return .success(entry.principal) }
        state.byPrefix[key.prefix]?.record.lastUsedAt = now
        state.unwritten[key.id] = now
        return .success(entry.principal)
    }

    /// Last-used times to write (cleared here).
    func takeUnwritten() -> [String: Date] {
        state.withLock { state in
            let taken = state.unwritten
            state.unwritten = [:]
            return taken
        }
    }

    /// A new secret: `wk_` + 8 lookup characters + `_` + 32 random bytes.
    static func newSecret() -> String {
        let alphabet = Array("ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789")
        let lookup = Crypto.randomBytes(8).map { alphabet[Int($0) % alphabet.count] }
        return "wk_" + String(lookup) + "_" + Base64URL.encode(Crypto.randomBytes(32))
    }

    /// SHA-256 of a secret, hex (as stored).
    static func hash(_ secret: String) -> String { Hex.encode(Crypto.sha256(secret.utf8)) }
}
