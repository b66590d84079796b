import Foundation
import Synchronization
import WeftStore

/// What revokes access tokens before they expire, in memory so that every
/// call checks it without a store read: each user's token version (logout
/// of all sessions and password changes bump it) and the sessions revoked
/// lately (logout, refresh-token reuse). The store holds the same facts;
/// a start loads them.
final class SessionBook: Sendable {
    private struct State {
        var versions: [String: Int] = [:]
        /// Session (refresh family) id -> when it was revoked.
        var revoked: [String: Date] = [:]
    }

    private let state = Mutex(State())
    /// Told after every change (the authenticator drops the tokens it
    /// checked already: revocations are rare, calls are not).
    private let observers = Mutex<[@Sendable () -> Void]>([])

    func onChange(_ body: @escaping @Sendable () -> Void) { observers.withLock { $0.append(body) } }

    private func changed() {
        for observer in observers.withLock({ $0 }) { observer() }
    }
    /// How long a revoked session must be remembered: an access token of
    /// it lives at most this long.
    let accessLifetime: TimeInterval

    init(accessLifetime: TimeInterval) { self.accessLifetime = accessLifetime }

    func load(from store: any CredentialStore, now: Date = Date()) async throws {
        let versions = try await store.tokenVersions()
        let families = try await store.revokedFamilies(since: now.addingTimeInterval(-accessLifetime))
        state.withLock { state in
            state.versions = versions
            for family in families { state.revoked[family] = now }
        }
        changed()
    }

    func version(of userId: String) -> Int { state.withLock { $0.versions[userId] ?? 0 } }

    /// Whether an access token with these claims is still good.
    func admits(userId: String, version: Int, sessionId: String) -> Bool {
        state.withLock { state in
            (state.versions[userId] ?? 0) == version && (sessionId.isEmpty || state.revoked[sessionId] == nil)
        }
    }

    func setVersion(_ version: Int, of userId: String) {
        // Only forward: two concurrent bumps may land in either order.
        state.withLock { $0.versions[userId] = max($0.versions[userId] ?? 0, version) }
        changed()
    }

    func revoke(_ families: [String], now: Date = Date()) {
        guard !families.isEmpty else { return }
        state.withLock { state in
            for family in families { state.revoked[family] = now }
            // Forget what no live access token can name any more.
            let horizon = now.addingTimeInterval(-accessLifetime - 60)
            if state.revoked.count > 1024 { state.revoked = state.revoked.filter { $0.value > horizon } }
        }
        changed()
    }
}
