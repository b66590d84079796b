import Foundation
import Synchronization
import WeftStore

/// Organizations' template overrides, read at most every few seconds per
/// organization (deliveries render one each).
final class TemplateCache: Sendable {
    let store: any NotificationStore
    private let cached = Mutex<[String: (at: Date, templates: [String: TemplateRecord])]>([:])
    private let compiledCache = Mutex<[String: (at: Date, message: CompiledMessage)]>([:])
    static let lifetime: TimeInterval = 5

    init(store: any NotificationStore) { self.store = store }

    func template(orgId: String, event: NotificationEvent) async throws -> TemplateRecord? {
        let now = Date()
        if let hit = cached.withLock({ $0[orgId] }), now.timeIntervalSince(hit.at) < Self.lifetime {
            return hit.templates[event.rawValue]
        }
        let all = try await store.templates(orgId: orgId)
        let byEvent = Dictionary(all.map { ($0.event, $0) }, uniquingKeysWith: { _, last in last })
        cached.withLock { $0[orgId] = (now, byEvent) }
        return byEvent[event.rawValue]
    }

    /// The organization's template of an event, compiled, with the
    /// built-in one's parts where it has none.
    func compiled(orgId: String, event: NotificationEvent) async throws -> CompiledMessage {
        let now = Date()
        if let hit = compiledCache.withLock({ $0[orgId + "|" + event.rawValue] }), now.timeIntervalSince(hit.at) < Self.lifetime {
            return hit.message
        }
        let message = CompiledMessage(NotificationTemplates.effective(event, override: try await template(orgId: orgId, event: event)))
        compiledCache.withLock { cache in
            if cache.count > 10_000 { cache = [:] }
            cache[orgId + "|" + event.rawValue] = (now, message)
        }
        return message
    }

    func forget(orgId: String) {
        compiledCache.withLock { cache in cache = cache.filter { !$0.key.hasPrefix(orgId + "|") } }
        cached.withLock { $0[orgId] = nil }
    }
}
