import Foundation
import WeftEngine
import WeftProto
import WeftRPC
import WeftStore

/// weft.v1.TaskService: the seed's task-by-task API. Each change rewrites the
/// task list of its workflow through the same validation and versioning as
/// UpdateWorkflow, so a task edit can never leave a broken DAG behind.
struct TaskAPI: RPCService {
    static let name = "weft.v1.TaskService"
    let deps: APIDependencies

    var handlers: [RPCHandler] {
        [
            .unary(service: Self.name, method: "CreateTask", rest: [.post("/tasks", status: 201)]) {
                (request: Weft_V1_CreateTaskRequest, context) in
                let caller = try Caller(context)
                let fields = ProtoMapping.TaskFields(
                    key: request.key, name: request.name, description: request.description_p, action: request.action,
                    config: request.hasConfig ? request.config : nil, dependsOn: request.dependsOn,
                    retry: request.hasRetry ? request.retry : nil, timeout: request.hasTimeout ? request.timeout : nil)
                let id = IDGenerator.make(IDGenerator.task)
                let stored = try await mutate(request.workflowID, caller: caller, etag: "", context: context) { tasks, workflowId, now in
                    tasks.append(try ProtoMapping.taskRecord(fields, id: id, workflowId: workflowId, createdAt: now, now: now))
                }
                return try task(id, in: stored)
            },
            .unary(service: Self.name, method: "ListTasks", rest: [.get("/workflows/{workflowId}/tasks")]) {
                (request: Weft_V1_ListTasksRequest, context) in
                let caller = try Caller(context)
                let (workflow, role) = try await deps.workflow(request.workflowID, caller: caller, needs: .viewer)
                let size = try Paging.size(request.pageSize)
                let query = caller.userId + "|" + request.workflowID
                let start = try Paging.offset(request.pageToken, query: query)
                var response = Weft_V1_ListTasksResponse()
                let end = min(workflow.tasks.count, start + size)
                if start < end { response.tasks = workflow.tasks[start..<end].map { ProtoMapping.task($0, masked: role < .editor) } }
                response.nextPageToken = Paging.token(cursor: end < workflow.tasks.count ? String(end) : nil, query: query)
                context.addResponseHeader("etag", "\"\(workflow.etag)\"")
                return response
            },
            .unary(service: Self.name, method: "GetTask", rest: [.get("/tasks/{taskId}")]) {
                (request: Weft_V1_GetTaskRequest, context) in
                let caller = try Caller(context)
                let (task, role) = try await visibleTask(request.taskID, caller: caller, needs: .viewer)
                return ProtoMapping.task(task, masked: role < .editor)
            },
            .unary(service: Self.name, method: "UpdateTask", rest: [.put("/tasks/{taskId}", ifMatch: "etag")]) {
                (request: Weft_V1_UpdateTaskRequest, context) in
                let caller = try Caller(context)
                let (existing, _) = try await visibleTask(request.taskID, caller: caller, needs: .editor)
                if !request.workflowID.isEmpty, request.workflowID != existing.workflowId {
                    throw RPCError(
                        code: .invalidArgument,
                        message: "task \(existing.id) belongs to workflow \(existing.workflowId); tasks cannot move to \(request.workflowID)")
                }
                if !request.id.isEmpty, request.id != existing.id {
                    throw RPCError(code: .invalidArgument, message: "id \(request.id) in the body differs from the path (\(existing.id))")
                }
                let fields = ProtoMapping.TaskFields(
                    key: request.key.isEmpty ? existing.key : request.key, name: request.name,
                    description: request.description_p, action: request.action,
                    config: request.hasConfig ? request.config : nil, dependsOn: request.dependsOn,
                    retry: request.hasRetry ? request.retry : nil, timeout: request.hasTimeout ? request.timeout : nil)
                guard !request.action.isEmpty else { throw APIError.required("action") }
                let stored = try await mutate(existing.workflowId, caller: caller, etag: request.etag, context: context) {
                    tasks, workflowId, now in
                    guard let index = tasks.firstIndex(where: { $0.id == existing.id }) else {
                        throw RPCError(code: .notFound, message: "task \(existing.id) not found")
                    }
                    let oldKey = tasks[index].key
                    tasks[index] = try ProtoMapping.taskRecord(
                        fields, id: existing.id, workflowId: workflowId, createdAt: tasks[index].createdAt, now: now)
                    // A renamed key carries its dependents along.
                    if oldKey != tasks[index].key {
                        for other in tasks.indices where other != index {
                            tasks[other].dependsOn = tasks[other].dependsOn.map { $0 == oldKey ? tasks[index].key : $0 }
                        }
                    }
                }
                return try task(existing.id, in: stored)
            },
            .unary(service: Self.name, method: "DeleteTask", rest: [.delete("/tasks/{taskId}", ifMatch: "etag")]) {
                (request: Weft_V1_DeleteTaskRequest, context) in
                let caller = try Caller(context)
                let (existing, _) = try await visibleTask(request.taskID, caller: caller, needs: .editor)
                _ = try await mutate(existing.workflowId, caller: caller, etag: request.etag, context: context) { tasks, _, _ in
                    // The key as it is now, inside the transaction (it may have been renamed).
                    guard let key = tasks.first(where: { $0.id == existing.id })?.key else {
                        throw RPCError(code: .notFound, message: "task \(existing.id) not found")
                    }
                    let dependents = tasks.filter { $0.dependsOn.contains(key) }.map { "\"\($0.key)\"" }
                    if !dependents.isEmpty {
                        throw RPCError(
                            code: .failedPrecondition,
                            message: "task \"\(key)\" cannot be deleted: \(dependents.joined(separator: ", ")) depend on it")
                    }
                    tasks.removeAll { $0.id == existing.id }
                }
                return Weft_V1_DeleteTaskResponse()
            },
        ]
    }

    /// A live task the caller may act on. Without any role on its workflow
    /// the answer is "task not found", never which workflow holds it.
    private func visibleTask(_ id: String, caller: Caller, needs: WorkflowRole) async throws -> (TaskRecord, WorkflowRole) {
        guard !id.isEmpty else { throw APIError.required("task_id") }
        let notFound = RPCError(code: .notFound, message: "task \(id) not found")
        guard let task = try await deps.workflows.task(id: id) else { throw notFound }
        do {
            let (_, role) = try await deps.workflow(task.workflowId, caller: caller, needs: needs)
            return (task, role)
        } catch let error as RPCError where error.code == .notFound {
            throw notFound
        }
    }

    private func task(_ id: String, in workflow: WorkflowRecord) throws -> Weft_V1_Task {
        guard let task = workflow.tasks.first(where: { $0.id == id }) else {
            throw RPCError(code: .internal, message: "task \(id) missing after write")
        }
        return ProtoMapping.task(task)
    }

    /// Read-modify-write of a workflow's tasks, validated and versioned, in
    /// one store transaction (so concurrent edits never lose one another);
    /// with an etag the caller's view must still be current.
    private func mutate(
        _ workflowId: String, caller: Caller, etag: String, context: ServerContext,
        _ change: @escaping @Sendable (inout [TaskRecord], String, Date) throws -> Void
    ) async throws -> WorkflowRecord {
        // The role is checked by the store inside the write transaction.
        guard !workflowId.isEmpty else { throw APIError.required("workflow_id") }
        let rights = try await deps.queueRights(workflowId: workflowId, caller: caller)
        let stored = try await deps.workflows.modifyWorkflow(
            id: workflowId, expectedVersion: expectedVersion(etag), actor: caller.userId, needs: .editor
        ) { workflow in
            let now = Date.nowMillis
            var tasks = workflow.tasks
            try change(&tasks, workflow.id, now)
            let validated = try WorkflowDefinition.validate(
                name: workflow.name, description: workflow.description, tasks: tasks)
            try rights.checkSubmit(new: validated, current: workflow.tasks)
            workflow.tasks = validated
            workflow.updatedAt = now
        }
        deps.countWrite("task")
        context.addResponseHeader("etag", "\"\(stored.etag)\"")
        if let warning = CredentialFields.warning(for: stored.tasks) { context.addResponseHeader("warning", warning) }
        return stored
    }
}
