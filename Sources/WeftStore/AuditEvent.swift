public import Foundation

/// One entry of the append-only audit log.
public struct AuditEvent: Sendable, Hashable {
    /// Assigned by the store, increasing.
    public var id: Int64
    public var at: Date
    public var actorId: String
    public var orgId: String
    public var action: String
    public var resourceType: String
    public var resourceId: String
    /// The gRPC status name of the call ("OK", "PERMISSION_DENIED", ...).
    public var outcome: String
    public var clientAddress: String
    public var traceId: String
    public var detail: JSONValue

    public init(
        id: Int64 = 0, at: Date, actorId: String, orgId: String, action: String, resourceType: String = "",
        resourceId: String = "", outcome: String = "OK", clientAddress: String = "", traceId: String = "",
        detail: JSONValue = .emptyObject
    ) {
        self.id = id
        self.at = at
        self.actorId = actorId
        self.orgId = orgId
        self.action = action
        self.resourceType = resourceType
        self.resourceId = resourceId
        self.outcome = outcome
        self.clientAddress = clientAddress
        self.traceId = traceId
        self.detail = detail
    }
}

/// Which audit events to read: one organization's, newest first.
public struct AuditQuery: Sendable {
    public var orgId: String
    public var actorId: String?
    public var action: String?
    public var resourceType: String?
    public var resourceId: String?
    public var since: Date?
    public var until: Date?
    /// Only events with a smaller id (the page cursor).
    public var beforeId: Int64?
    public var limit: Int

    public init(orgId: String, limit: Int = 100) {
        self.orgId = orgId
        self.limit = limit
    }

    public func matches(_ event: AuditEvent) -> Bool {
        event.orgId == orgId && (actorId.map { $0 == event.actorId } ?? true) && (action.map { $0 == event.action } ?? true)
            && (resourceType.map { $0 == event.resourceType } ?? true) && (resourceId.map { $0 == event.resourceId } ?? true)
            && (since.map { event.at >= $0 } ?? true) && (until.map { event.at < $0 } ?? true)
            && (beforeId.map { event.id < $0 } ?? true)
    }
}

/// The audit log: append and read, never change or delete (the SQLite
/// table refuses UPDATE and DELETE by trigger).
public protocol AuditStore: Sendable {
    func appendAudit(_ events: [AuditEvent]) async throws
    func auditEvents(_ query: AuditQuery) async throws -> [AuditEvent]
}
