import Foundation
import WeftProto
import WeftRPC
import WeftStore

/// weft.v1.VersionService: every change of a workflow already stores a
/// version; these methods list and read them, label the current one, and
/// roll back (the old definition becomes a new, current version — history is
/// never rewritten).
struct VersionAPI: RPCService {
    static let name = "weft.v1.VersionService"
    let deps: APIDependencies

    var handlers: [RPCHandler] {
        [
            .unary(
                service: Self.name, method: "CreateVersion", rest: [.post("/workflows/{workflowId}/versions", status: 201)]
            ) { (request: Weft_V1_CreateVersionRequest, context) in
                let caller = try Caller(context)
                _ = try await deps.workflow(request.workflowID, caller: caller, needs: .editor)
                let label = request.label.trimmingCharacters(in: .whitespacesAndNewlines)
                guard label.count <= APILimits.labelMaxCharacters else {
                    throw RPCError(
                        code: .invalidArgument, message: "label is longer than \(APILimits.labelMaxCharacters) characters")
                }
                let version = try await deps.workflows.labelVersion(
                    workflowId: request.workflowID, label: label, actor: caller.userId)
                return Self.version(version)
            },
            .unary(service: Self.name, method: "ListVersions", rest: [.get("/workflows/{workflowId}/versions")]) {
                (request: Weft_V1_ListVersionsRequest, context) in
                let caller = try Caller(context)
                let (_, role) = try await deps.workflow(request.workflowID, caller: caller, needs: .viewer)
                let size = try Paging.size(request.pageSize)
                let query = caller.userId + "|versions|" + request.workflowID
                let cursor = try Paging.cursor(request.pageToken, query: query)
                if let cursor, Int(cursor) == nil {
                    throw RPCError(code: .invalidArgument, message: "page_token is not valid")
                }
                let page = try await deps.workflows.listVersions(workflowId: request.workflowID, limit: size, cursor: cursor)
                var response = Weft_V1_ListVersionsResponse()
                response.versions = page.items.map { Self.version($0, masked: role < .editor) }
                response.nextPageToken = Paging.token(cursor: page.nextCursor, query: query)
                return response
            },
            .unary(
                service: Self.name, method: "GetVersion", rest: [.get("/workflows/{workflowId}/versions/{versionId}")]
            ) { (request: Weft_V1_GetVersionRequest, context) in
                let caller = try Caller(context)
                let (_, role) = try await deps.workflow(request.workflowID, caller: caller, needs: .viewer)
                guard !request.versionID.isEmpty else { throw APIError.required("version_id") }
                guard let version = try await deps.workflows.workflowVersion(
                    workflowId: request.workflowID, versionId: request.versionID)
                else {
                    throw RPCError(
                        code: .notFound, message: "version \(request.versionID) of workflow \(request.workflowID) not found")
                }
                return Self.version(version, masked: role < .editor)
            },
            .unary(
                service: Self.name, method: "RollbackVersion",
                rest: [.put("/workflows/{workflowId}/versions/{versionId}/rollback")]
            ) { (request: Weft_V1_RollbackVersionRequest, context) in
                let caller = try Caller(context)
                let (current, _) = try await deps.workflow(request.workflowID, caller: caller, needs: .editor)
                guard !request.versionID.isEmpty else { throw APIError.required("version_id") }
                // An old version may name a queue the caller may not submit to (now).
                if let target = try await deps.workflows.workflowVersion(workflowId: current.id, versionId: request.versionID) {
                    try await deps.queueRights(orgId: current.orgId, caller: caller)
                        .checkSubmit(new: target.tasks, current: current.tasks)
                }
                let (workflow, version) = try await deps.workflows.rollbackWorkflow(
                    id: request.workflowID, to: request.versionID, actor: caller.userId, needs: .editor)
                deps.countWrite("rollback")
                context.addResponseHeader("etag", "\"\(workflow.etag)\"")
                if let warning = CredentialFields.warning(for: workflow.tasks) { context.addResponseHeader("warning", warning) }
                return Self.version(version)
            },
        ]
    }

    static func version(_ record: WorkflowVersionRecord, masked: Bool = false) -> Weft_V1_WorkflowVersion {
        var version = Weft_V1_WorkflowVersion()
        version.id = record.id
        version.workflowID = record.workflowId
        version.version = Int32(clamping: record.version)
        version.name = record.name
        version.description_p = record.description
        version.tasks = record.tasks.map { ProtoMapping.task($0, masked: masked) }
        version.label = record.label
        version.createdBy = record.createdBy
        version.createdAt = ProtoMapping.timestamp(record.createdAt)
        return version
    }
}
