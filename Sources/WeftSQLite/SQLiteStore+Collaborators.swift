import Foundation
import GRDB
public import WeftStore

/// Roles and collaborators of workflows.
extension SQLiteStore {
    public func role(userId: String, workflowId: String) async throws -> WorkflowRole? {
        try await read("get_role") { db in
            guard let owner = try String.fetchOne(
                db, sql: "SELECT user_id FROM workflows WHERE id = ? AND deleted_at IS NULL", arguments: [workflowId])
            else { return nil }
            if owner == userId { return .owner }
            let role = try String.fetchOne(
                db, sql: "SELECT role FROM workflow_collaborators WHERE workflow_id = ? AND user_id = ?",
                arguments: [workflowId, userId])
            return role.flatMap(WorkflowRole.init(rawValue:))
        }
    }

    public func addCollaborator(_ collaborator: CollaboratorRecord, actor: String) async throws {
        try await write("add_collaborator") { db in
            do {
                try db.execute(
                    sql: "INSERT INTO workflow_collaborators (workflow_id, user_id, role, added_at) VALUES (?, ?, ?, ?)",
                    arguments: [collaborator.workflowId, collaborator.userId, collaborator.role.rawValue, collaborator.addedAt])
            } catch let error as DatabaseError where error.extendedResultCode == .SQLITE_CONSTRAINT_PRIMARYKEY {
                throw StoreError.alreadyExists(
                    "user \(collaborator.userId) is already a collaborator of workflow \(collaborator.workflowId); use PUT to change the role")
            } catch let error as DatabaseError where error.extendedResultCode == .SQLITE_CONSTRAINT_FOREIGNKEY {
                throw StoreError.notFound("user \(collaborator.userId) not found")
            }
            try Self.audit(db, actor: actor, action: "add_collaborator", resourceType: "workflow",
                           resourceId: collaborator.workflowId, at: collaborator.addedAt,
                           detail: .object(["userId": .string(collaborator.userId), "role": .string(collaborator.role.rawValue)]))
        }
    }

    public func updateCollaborator(workflowId: String, userId: String, role: WorkflowRole, actor: String) async throws {
        try await write("update_collaborator") { db in
            try db.execute(
                sql: "UPDATE workflow_collaborators SET role = ? WHERE workflow_id = ? AND user_id = ?",
                arguments: [role.rawValue, workflowId, userId])
            guard db.changesCount == 1 else {
                throw StoreError.notFound("user \(userId) is not a collaborator of workflow \(workflowId)")
            }
            try Self.audit(db, actor: actor, action: "update_collaborator", resourceType: "workflow", resourceId: workflowId,
                           at: Date(), detail: .object(["userId": .string(userId), "role": .string(role.rawValue)]))
        }
    }

    public func removeCollaborator(workflowId: String, userId: String, actor: String) async throws {
        try await write("remove_collaborator") { db in
            try db.execute(
                sql: "DELETE FROM workflow_collaborators WHERE workflow_id = ? AND user_id = ?",
                arguments: [workflowId, userId])
            guard db.changesCount == 1 else {
                throw StoreError.notFound("user \(userId) is not a collaborator of workflow \(workflowId)")
            }
            try Self.audit(db, actor: actor, action: "remove_collaborator", resourceType: "workflow", resourceId: workflowId,
                           at: Date(), detail: .object(["userId": .string(userId)]))
        }
    }

    public func collaborators(workflowId: String) async throws -> [(CollaboratorRecord, UserRecord)] {
        try await read("list_collaborators") { db in
            try Row.fetchAll(
                db,
                sql: """
                    SELECT c.workflow_id, c.role, c.added_at, u.* FROM workflow_collaborators c
                    JOIN users u ON u.id = c.user_id WHERE c.workflow_id = ? ORDER BY c.added_at, u.id
                    """,
                arguments: [workflowId]
            ).map { row in
                let user = Self.userRecord(row)
                return (
                    CollaboratorRecord(
                        workflowId: row["workflow_id"], userId: user.id,
                        role: WorkflowRole(rawValue: row["role"]) ?? .viewer, addedAt: row["added_at"]),
                    user
                )
            }
        }
    }
}
