public import Foundation

extension MemoryStore: AuditStore {
    public func appendAudit(_ events: [AuditEvent]) async throws {
        state.withLock { state in
            for var event in events {
                state.auditLog.append(event)
                event.id = Int64(state.auditLog.count)
                state.auditLog[state.auditLog.count - 1] = event
            }
        }
    }

    public func auditEvents(_ query: AuditQuery) async throws -> [AuditEvent] {
        state.withLock { state in Array(state.auditLog.reversed().filter(query.matches).prefix(query.limit)) }
    }
}
