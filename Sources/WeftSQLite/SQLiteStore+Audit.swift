public import Foundation
import GRDB
public import WeftStore

extension SQLiteStore: AuditStore {
    public func appendAudit(_ events: [AuditEvent]) async throws {
        guard !events.isEmpty else { return }
        try await write("append_audit") { db in
            let insert = try db.cachedStatement(sql: """
                INSERT INTO audit_log (at, actor_id, org_id, action, resource_type, resource_id, outcome, client_address,
                    trace_id, detail)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                """)
            for event in events {
                try insert.execute(arguments: [
                    event.at, event.actorId, event.orgId, event.action, event.resourceType, event.resourceId, event.outcome,
                    event.clientAddress, event.traceId, event.detail.jsonText(),
                ])
            }
        }
    }

    public func auditEvents(_ query: AuditQuery) async throws -> [AuditEvent] {
        try await read("audit_events") { db in
            var sql = "SELECT * FROM audit_log INDEXED BY audit_by_org WHERE org_id = ?"
            var arguments: StatementArguments = [query.orgId]
            if let actor = query.actorId {
                sql += " AND actor_id = ?"
                arguments += [actor]
            }
            if let action = query.action {
                sql += " AND action = ?"
                arguments += [action]
            }
            if let type = query.resourceType {
                sql += " AND resource_type = ?"
                arguments += [type]
            }
            if let id = query.resourceId {
                sql += " AND resource_id = ?"
                arguments += [id]
            }
            if let since = query.since {
                sql += " AND at >= ?"
                arguments += [since]
            }
            if let until = query.until {
                sql += " AND at < ?"
                arguments += [until]
            }
            if let before = query.beforeId {
                sql += " AND id < ?"
                arguments += [before]
            }
            sql += " ORDER BY id DESC LIMIT ?"
            arguments += [query.limit]
            return try Row.fetchAll(db, sql: sql, arguments: arguments).map { row in
                AuditEvent(
                    id: row["id"], at: row["at"], actorId: row["actor_id"], orgId: row["org_id"], action: row["action"],
                    resourceType: row["resource_type"], resourceId: row["resource_id"], outcome: row["outcome"],
                    clientAddress: row["client_address"], traceId: row["trace_id"],
                    detail: (try? JSONValue(jsonText: row["detail"] as String)) ?? .emptyObject)
            }
        }
    }
}
