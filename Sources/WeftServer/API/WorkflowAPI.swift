import Foundation
import Synchronization
import WeftEngine
import WeftProto
import WeftRPC
import WeftStore

/// weft.v1.WorkflowService: definitions, listing and search.
struct WorkflowAPI: RPCService {
    static let name = "weft.v1.WorkflowService"
    let deps: APIDependencies
    let ownerViews = PreparedWorkflows()

    var handlers: [RPCHandler] {
        // What the GetWorkflow fast path reads, taken out of `deps` once:
        // the closure then does not copy (and retain) every dependency per call.
        let cache = deps.cache
        let ownerViews = ownerViews
        return [
            .unary(service: Self.name, method: "CreateWorkflow", rest: [.post("/workflows", status: 201)]) {
                (request: Weft_V1_CreateWorkflowRequest, context) in try await create(request, context)
            },
            .unary(service: Self.name, method: "ListWorkflows", rest: [.get("/workflows")]) {
                (request: Weft_V1_ListWorkflowsRequest, context) in try await list(request, context)
            },
            .unary(
                service: Self.name, method: "GetWorkflow", response: Weft_V1_Workflow.self,
                rest: [.get("/workflows/{workflowId}")],
                prepared: { (request: Weft_V1_GetWorkflowRequest, context) in
                    // Fast path on the event loop: the owner reading a cached
                    // definition, answered with bytes encoded once per
                    // version. Anything else (a miss, a collaborator whose
                    // role lives in the store) takes the task path below.
                    guard let workflow = cache?.cachedWorkflow(id: request.workflowID) else { return nil }
                    guard workflow.ownerId == (try context.caller.id) else { return nil }
                    context.addResponseHeader("etag", "\"\(workflow.etag)\"")
                    return try ownerViews.view(of: workflow)
                }
            ) { (request: Weft_V1_GetWorkflowRequest, context) in
                let caller = try Caller(context)
                let (workflow, role) = try await deps.workflow(request.workflowID, caller: caller, needs: .viewer)
                context.addResponseHeader("etag", "\"\(workflow.etag)\"")
                return ProtoMapping.workflow(workflow, role: role)
            },
            .unary(
                service: Self.name, method: "UpdateWorkflow",
                rest: [.put("/workflows/{workflowId}", ifMatch: "etag")]
            ) { (request: Weft_V1_UpdateWorkflowRequest, context) in try await update(request, context) },
            .unary(
                service: Self.name, method: "DeleteWorkflow",
                rest: [.delete("/workflows/{workflowId}", ifMatch: "etag")]
            ) { (request: Weft_V1_DeleteWorkflowRequest, context) in
                let caller = try Caller(context)
                guard !request.workflowID.isEmpty else { throw APIError.required("workflow_id") }
                await deps.noteWorkflow(request.workflowID, caller: caller)
                // The owner check runs inside the store's delete transaction.
                try await deps.workflows.deleteWorkflow(
                    id: request.workflowID, expectedVersion: expectedVersion(request.etag), actor: caller.userId,
                    needs: .owner)
                deps.countWrite("delete")
                // Its schedules stop at their next tick; the gauge drops now.
                deps.scheduler.scheduleChanged()
                return Weft_V1_DeleteWorkflowResponse()
            },
            .unary(service: Self.name, method: "SearchWorkflows", rest: [.get("/workflows/search")]) {
                (request: Weft_V1_SearchWorkflowsRequest, context) in try await search(request, context)
            },
        ]
    }

    func create(_ request: Weft_V1_CreateWorkflowRequest, _ context: ServerContext) async throws -> Weft_V1_Workflow {
        let caller = try Caller(context)
        let now = Date.nowMillis
        let id = IDGenerator.make(IDGenerator.workflow, now: now)
        let tasks = try request.tasks.map { task in
            try ProtoMapping.taskRecord(
                ProtoMapping.fields(task), id: IDGenerator.make(IDGenerator.task, now: now), workflowId: id,
                createdAt: now, now: now)
        }
        let validated = try WorkflowDefinition.validate(name: request.name, description: request.description_p, tasks: tasks)
        let (org, _) = try await deps.organizationOrHome(request.orgID, caller: caller, needs: .member)
        try await deps.quotas.admitWorkflow(org)
        var record = WorkflowRecord(
            id: id, ownerId: caller.userId, name: request.name, description: request.description_p, version: 1,
            createdAt: now, updatedAt: now, tasks: validated)
        record.orgId = org.id
        caller.audit?.note(org: org.id, resource: ("workflow", id))
        try await deps.queueRights(orgId: org.id, caller: caller).checkSubmit(new: validated, current: [])
        let stored = try await deps.workflows.createWorkflow(record, actor: caller.userId)
        deps.engine.workflowLabels?.created(orgId: org.id, workflow: stored.name)
        deps.countWrite("create")
        context.addResponseHeader("etag", "\"\(stored.etag)\"")
        if let warning = CredentialFields.warning(for: stored.tasks) { context.addResponseHeader("warning", warning) }
        return ProtoMapping.workflow(stored, role: .owner)
    }

    func update(_ request: Weft_V1_UpdateWorkflowRequest, _ context: ServerContext) async throws -> Weft_V1_Workflow {
        let caller = try Caller(context)
        if !request.id.isEmpty, request.id != request.workflowID {
            throw RPCError(code: .invalidArgument, message: "id \(request.id) in the body differs from the path (\(request.workflowID))")
        }
        guard !request.workflowID.isEmpty else { throw APIError.required("workflow_id") }
        let workflowId = request.workflowID
        let rights = try await deps.queueRights(workflowId: workflowId, caller: caller)
        // The edit runs inside the store's write transaction against the
        // current definition, so concurrent editors without an etag are
        // applied one after the other, never lost.
        let stored = try await deps.workflows.modifyWorkflow(
            id: workflowId, expectedVersion: expectedVersion(request.etag), actor: caller.userId, needs: .editor
        ) { current in
            if !request.orgID.isEmpty, request.orgID != current.orgId {
                throw RPCError(
                    code: .invalidArgument,
                    message: "org_id \(request.orgID) differs from the workflow's organization (workflows do not move between organizations)")
            }
            let now = Date.nowMillis
            let existing = Dictionary(uniqueKeysWithValues: current.tasks.map { ($0.id, $0) })
            let tasks = try request.tasks.enumerated().map { index, task in
                var createdAt = now
                var id = task.id
                if id.isEmpty {
                    id = IDGenerator.make(IDGenerator.task, now: now)
                } else if let old = existing[id] {
                    createdAt = old.createdAt
                } else {
                    throw RPCError(
                        code: .invalidArgument,
                        message: "task #\(index + 1) \"\(task.name)\": id \(id) is not a task of workflow \(workflowId) (leave id empty for a new task)")
                }
                return try ProtoMapping.taskRecord(
                    ProtoMapping.fields(task), id: id, workflowId: workflowId, createdAt: createdAt, now: now)
            }
            let validated = try WorkflowDefinition.validate(
                name: request.name, description: request.description_p, tasks: tasks)
            try rights.checkSubmit(new: validated, current: current.tasks)
            current.tasks = validated
            current.name = request.name
            current.description = request.description_p
            current.updatedAt = now
        }
        deps.countWrite("update")
        context.addResponseHeader("etag", "\"\(stored.etag)\"")
        if let warning = CredentialFields.warning(for: stored.tasks) { context.addResponseHeader("warning", warning) }
        // The store let an editor or the owner through (collaborators are never owners).
        return ProtoMapping.workflow(stored, role: stored.ownerId == caller.userId ? .owner : .editor)
    }

    func list(_ request: Weft_V1_ListWorkflowsRequest, _ context: ServerContext) async throws
        -> Weft_V1_ListWorkflowsResponse
    {
        let caller = try Caller(context)
        let size = try Paging.size(request.pageSize)
        let fingerprint = Paging.query(request, caller: caller.userId) {
            $0.pageToken = ""
            $0.pageSize = 0
        }
        let cursor = try Paging.cursor(request.pageToken, query: fingerprint)
        if let after = request.hasCreatedAfter ? request.createdAfter.date : nil,
            let before = request.hasCreatedBefore ? request.createdBefore.date : nil, after >= before
        {
            throw RPCError(code: .invalidArgument, message: "created_after must be before created_before")
        }
        let query = WorkflowQuery(
            visibleTo: caller.userId, limit: size, cursor: cursor,
            namePrefix: request.namePrefix.isEmpty ? nil : request.namePrefix,
            ownerId: request.ownerID.isEmpty ? nil : (request.ownerID == "me" ? caller.userId : request.ownerID),
            createdAfter: request.hasCreatedAfter ? request.createdAfter.date : nil,
            createdBefore: request.hasCreatedBefore ? request.createdBefore.date : nil,
            includeTasks: !request.summary)
        let page = try await deps.workflows.listWorkflows(query)
        var response = Weft_V1_ListWorkflowsResponse()
        response.workflows = page.items.map {
            ProtoMapping.workflow($0, role: $0.callerRole, includeTasks: !request.summary)
        }
        response.nextPageToken = Paging.token(cursor: page.nextCursor, query: fingerprint)
        return response
    }

    func search(_ request: Weft_V1_SearchWorkflowsRequest, _ context: ServerContext) async throws
        -> Weft_V1_SearchWorkflowsResponse
    {
        let caller = try Caller(context)
        let text = request.query.trimmingCharacters(in: .whitespacesAndNewlines)
        guard !text.isEmpty else {
            throw RPCError(code: .invalidArgument, message: "query must not be empty (GET /workflows/search?query=...)")
        }
        guard text.utf8.count <= APILimits.searchQueryMaxBytes else {
            throw RPCError(code: .invalidArgument, message: "query is longer than \(APILimits.searchQueryMaxBytes) bytes")
        }
        let size = try Paging.size(request.pageSize)
        let fingerprint = caller.userId + "|" + text
        let cursor = try Paging.cursor(request.pageToken, query: fingerprint)
        let page = try await deps.workflows.searchWorkflows(
            text: text, visibleTo: caller.userId, limit: size, cursor: cursor)
        var response = Weft_V1_SearchWorkflowsResponse()
        response.results = page.items.map { hit in
            var result = Weft_V1_SearchResult()
            result.workflow = ProtoMapping.workflow(hit.workflow, role: hit.workflow.callerRole, includeTasks: false)
            result.score = hit.score
            result.snippet = hit.snippet
            return result
        }
        response.nextPageToken = Paging.token(cursor: page.nextCursor, query: fingerprint)
        return response
    }
}

/// GetWorkflow responses for owners, encoded once per workflow version.
final class PreparedWorkflows: Sendable {
    private let views = Mutex<[String: (version: Int, owner: String, response: PreparedResponse<Weft_V1_Workflow>)]>([:])

    func view(of workflow: WorkflowRecord) throws -> PreparedResponse<Weft_V1_Workflow> {
        // The owner too: it changes without a new version when a member leaves.
        if let hit = views.withLock({ $0[workflow.id] }), hit.version == workflow.version, hit.owner == workflow.ownerId {
            return hit.response
        }
        let response = try PreparedResponse(ProtoMapping.workflow(workflow, role: .owner))
        views.withLock { views in
            // Bounded like the definition cache it shadows.
            if views.count >= 10_000 { views.removeAll(keepingCapacity: true) }
            views[workflow.id] = (workflow.version, workflow.ownerId, response)
        }
        return response
    }
}
