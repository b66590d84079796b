import Foundation
import Testing
import WeftEngine
import WeftProto
import WeftRPC
import WeftServer
import WeftStore
import WeftTestSupport

/// The API handlers in process: the real router, interceptor chain, handlers
/// and proto mapping on the in-memory store (`APIHarness`), over gRPC and
/// REST, without sockets.
@Suite("API")
struct APITests {
    static let createWorkflow = "/weft.v1.WorkflowService/CreateWorkflow"
    static let getWorkflow = "/weft.v1.WorkflowService/GetWorkflow"
    static let listWorkflows = "/weft.v1.WorkflowService/ListWorkflows"

    func errorCode(_ body: () async throws -> Void) async -> (RPCError.Code, String)? {
        do {
            try await body()
            return nil
        } catch let error as RPCError {
            return (error.code, error.message)
        } catch {
            return (.unknown, "\(error)")
        }
    }

    static func workflow(_ name: String = "Orders", tasks: [(String, String, [String])] = [("fetch", "noop", [])])
        -> Weft_V1_CreateWorkflowRequest
    {
        .with {
            $0.name = name
            $0.tasks = tasks.map { key, action, deps in
                .with {
                    $0.key = key
                    $0.name = key
                    $0.action = action
                    $0.dependsOn = deps
                }
            }
        }
    }

    static func execution(_ api: APIHarness, _ workflowId: String, _ executionId: String, token: String) async throws
        -> Weft_V1_Execution
    {
        try await api.call(
            "/weft.v1.ExecutionService/GetExecution",
            Weft_V1_GetExecutionRequest.with {
                $0.workflowID = workflowId
                $0.executionID = executionId
            }, token: token)
    }

    // MARK: Authentication (the interceptor chain)

    @Test("every non-public method refuses a call without a valid token, over gRPC and REST; public ones need none")
    func authentication() async throws {
        try await APIHarness.with { api in
            for (path, request) in [
                (Self.listWorkflows, try Weft_V1_ListWorkflowsRequest().serializedBytes() as [UInt8]),
                ("/weft.v1.UserService/GetCurrentUser", try Weft_V1_GetCurrentUserRequest().serializedBytes()),
                ("/weft.v1.ScheduleService/ListSchedules", try Weft_V1_ListSchedulesRequest().serializedBytes()),
            ] {
                let result = await api.transport.call(path: path, requests: [request])
                #expect(result.error?.code == .unauthenticated, "\(path)")
                #expect(result.error?.message.hasPrefix("missing credentials") == true)
            }
            let garbage = await api.transport.call(
                path: Self.listWorkflows, requests: [try Weft_V1_ListWorkflowsRequest().serializedBytes()],
                metadata: APIHarness.bearer("not-a-token"))
            #expect(garbage.error?.code == .unauthenticated && garbage.error?.message == "the token is not valid")
            let malformed = await api.rest("GET", "/workflows", token: nil)
            #expect(malformed.status == 401 && malformed.json["code"] as? Int == 16)
            // Public: health, register, login.
            let health: Grpc_Health_V1_HealthCheckResponse = try await api.transport.unary(
                "/grpc.health.v1.Health/Check", Grpc_Health_V1_HealthCheckRequest())
            #expect(health.status == .serving)
            let (token, user) = try await api.signUp()
            let me: Weft_V1_User = try await api.call(
                "/weft.v1.UserService/GetCurrentUser", Weft_V1_GetCurrentUserRequest(), token: token)
            #expect(me.id == user.id)
            let exposition = String(decoding: api.metrics.exposition(), as: UTF8.self)
            #expect(exposition.contains(#"weft_auth_failures_total{reason="missing"} 4"#))
        }
    }

    @Test("authentication runs before the body is decoded: an unauthenticated malformed request is 401, not 400")
    func authenticationBeforeDecoding() async throws {
        try await APIHarness.with { api in
            for (method, path, body) in [
                ("POST", "/tasks", #"{"workflowId": 7"#), ("POST", "/workflows", "not json"),
                ("PUT", "/tasks/tsk_1", #"{"timeout": "P1D"}"#), ("POST", "/queues/q/poll", #"{"wait": []}"#),
            ] {
                let response = await api.rest(method, path, body: body)
                #expect(response.status == 401, "\(method) \(path)")
            }
            // With a token the same body is what is wrong.
            let (token, _) = try await api.signUp()
            let bad = await api.rest("POST", "/tasks", body: #"{"workflowId": 7"#, token: token)
            #expect(bad.status == 400)
            #expect((bad.json["message"] as? String)?.contains("JSON") == true)
            // gRPC: refused from the metadata alone, whatever the message bytes.
            let result = await api.transport.call(path: "/weft.v1.TaskService/CreateTask", requests: [[0xff, 0xff, 0xff]])
            #expect(result.error?.code == .unauthenticated)
        }
    }

    // MARK: Errors and their codes

    @Test("an engine that is starting or stopping is UNAVAILABLE (503), not an internal error")
    func engineUnavailable() {
        let errors: [any Error] = [EngineError.notRunning, EngineError.recoveryFailed("disk"), BatchWriterError.stopped("commit")]
        for error in errors {
            let mapped = RPCError(from: error)
            #expect(mapped.code == .unavailable && mapped.httpStatus == 503, "\(error) -> \(mapped)")
        }
    }

    @Test("store and validation errors map to one gRPC status and one HTTP status")
    func errorCodes() async throws {
        try await APIHarness.with { api in
            let (owner, _) = try await api.signUp("Owner")
            let (stranger, _) = try await api.signUp("Stranger")
            let created: Weft_V1_Workflow = try await api.call(Self.createWorkflow, Self.workflow(), token: owner)
            // A stranger sees nothing (NOT_FOUND, not PERMISSION_DENIED: existence is not revealed).
            let hidden = await errorCode {
                let _: Weft_V1_Workflow = try await api.call(
                    Self.getWorkflow, Weft_V1_GetWorkflowRequest.with { $0.workflowID = created.id }, token: stranger)
            }
            #expect(hidden! == (.notFound, "workflow \(created.id) not found"))
            #expect(await api.rest("GET", "/workflows/\(created.id)", token: stranger).status == 404)
            // A stale etag is ABORTED / 409.
            let stale = await errorCode {
                let _: Weft_V1_Workflow = try await api.call(
                    "/weft.v1.WorkflowService/UpdateWorkflow",
                    Weft_V1_UpdateWorkflowRequest.with {
                        $0.workflowID = created.id
                        $0.name = "New"
                        $0.etag = "99"
                    }, token: owner)
            }
            #expect(stale?.0 == .aborted)
            let staleREST = await api.rest(
                "PUT", "/workflows/\(created.id)", body: #"{"name": "New", "etag": "99"}"#, token: owner)
            #expect(staleREST.status == 409 && staleREST.json["code"] as? Int == 10)
            // A definition error is INVALID_ARGUMENT / 400, naming the problem.
            let cycle = await errorCode {
                let _: Weft_V1_Workflow = try await api.call(
                    Self.createWorkflow, Self.workflow(tasks: [("a", "noop", ["b"]), ("b", "noop", ["a"])]), token: owner)
            }
            #expect(cycle?.0 == .invalidArgument && cycle?.1.contains("cycle") == true)
            let unknownType = await api.rest(
                "POST", "/workflows", body: #"{"name": "x", "tasks": [{"name": "a", "action": "teleport"}]}"#, token: owner)
            #expect(unknownType.status == 400)
            #expect((unknownType.json["message"] as? String)?.contains(#"unknown action (task type) "teleport""#) == true)
            // Viewers read but do not write: PERMISSION_DENIED / 403.
            let (viewer, viewerUser) = try await api.signUp("Viewer")
            try await api.join((viewer, viewerUser), org: created.orgID, admin: owner)
            let _: Weft_V1_Collaborator = try await api.call(
                "/weft.v1.CollaboratorService/AddCollaborator",
                Weft_V1_AddCollaboratorRequest.with {
                    $0.workflowID = created.id
                    $0.userID = viewerUser.id
                    $0.role = .viewer
                }, token: owner)
            let read: Weft_V1_Workflow = try await api.call(
                Self.getWorkflow, Weft_V1_GetWorkflowRequest.with { $0.workflowID = created.id }, token: viewer)
            #expect(read.role == "viewer")
            let denied = await api.rest("POST", "/workflows/\(created.id)/execute", body: "{}", token: viewer)
            #expect(denied.status == 403 && denied.json["code"] as? Int == 7)
            // Unknown methods.
            let unknown = await api.transport.call(path: "/weft.v1.WorkflowService/Nope", requests: [[]])
            #expect(unknown.error?.code == .unimplemented && unknown.error?.message == "unknown method /weft.v1.WorkflowService/Nope")
        }
    }

    // MARK: Proto mapping

    @Test("what REST creates gRPC reads back field for field; REST JSON is proto3 JSON with defaults printed")
    func protoMapping() async throws {
        try await APIHarness.with { api in
            let (token, user) = try await api.signUp()
            let created = await api.rest(
                "POST", "/workflows",
                body: #"""
                    {"name": "Sample", "description": "d", "tasks": [
                      {"name": "Fetch order", "action": "HTTP ", "config": {"url": "https://example.com/o"},
                       "retry": {"maxAttempts": 2, "initialBackoff": "1.5s"}, "timeout": "30s"},
                      {"name": "Log it", "action": "log", "dependsOn": ["fetch_order"]}]}
                    """#, token: token)
            #expect(created.status == 201)
            #expect(created.headers.contains { $0.name == "etag" && $0.value == "\"1\"" })
            let id = try #require(created.json["id"] as? String)
            let read: Weft_V1_Workflow = try await api.call(
                Self.getWorkflow, Weft_V1_GetWorkflowRequest.with { $0.workflowID = id }, token: token)
            #expect(read.name == "Sample" && read.description_p == "d" && read.ownerID == user.id && read.role == "owner")
            #expect(read.version == 1 && read.etag == "1")
            #expect(read.tasks.map(\.key) == ["fetch_order", "log_it"])
            #expect(read.tasks[0].action == "http", "action is trimmed and lower-cased")
            #expect(read.tasks[0].retry.maxAttempts == 2 && read.tasks[0].retry.initialBackoff.seconds == 1)
            #expect(read.tasks[0].retry.initialBackoff.nanos == 500_000_000 && read.tasks[0].timeout.seconds == 30)
            #expect(read.tasks[1].dependsOn == ["fetch_order"])
            let tasks = try #require(created.json["tasks"] as? [[String: Any]])
            #expect(tasks[0]["dependsOn"] as? [String] == [], "empty lists are printed")
            #expect((tasks[0]["retry"] as? [String: Any])?["initialBackoff"] as? String == "1.500s")
        }
    }

    @Test("an execution over REST runs on the engine and reads back over gRPC with its status and tasks")
    func executions() async throws {
        try await APIHarness.with { api in
            let (token, _) = try await api.signUp()
            let created: Weft_V1_Workflow = try await api.call(
                Self.createWorkflow, Self.workflow(tasks: [("a", "noop", []), ("b", "noop", ["a"])]), token: token)
            let started = await api.rest("POST", "/workflows/\(created.id)/execute", body: #"{"input": {"n": 1}}"#, token: token)
            // Both tasks are instant: they ran in the unit that started it.
            #expect(started.status == 202 && started.json["status"] as? String == "Completed")
            let executionId = try #require(started.json["executionId"] as? String)
            _ = try await api.engine.drive(executionId)
            let execution = try await Self.execution(api, created.id, executionId, token: token)
            #expect(execution.status == .completed && execution.trigger == "api")
            #expect(execution.tasks.map(\.status) == [.completed, .completed])
            #expect(execution.input.fields["n"]?.numberValue == 1)
            let cancel = await api.rest(
                "POST", "/workflows/\(created.id)/executions/\(executionId)/cancel", body: "{}", token: token)
            #expect(cancel.status == 400 && cancel.json["code"] as? Int == 9)
        }
    }

    @Test("a REST body is decoded from the bytes sent (numbers keep their precision) and merged with path and query")
    func restBodyAndParameters() async throws {
        try await APIHarness.with { api in
            let (token, _) = try await api.signUp()
            let created: Weft_V1_Workflow = try await api.call(Self.createWorkflow, Self.workflow(), token: token)
            // Foundation would write 1.5461418000910875e-111 back as 129 digits, which protobuf refuses.
            let started = await api.rest(
                "POST", "/workflows/\(created.id)/execute",
                body: #"{"input": {"tiny": 1.5461418000910875e-111, "big": -2.5351880195202424e+16}}"#, token: token)
            #expect(started.status == 202, "\(started.json)")
            let executionId = try #require(started.json["executionId"] as? String)
            let execution = try await Self.execution(api, created.id, executionId, token: token)
            #expect(execution.input.fields["tiny"]?.numberValue == 1.5461418000910875e-111)
            #expect(execution.input.fields["big"]?.numberValue == -2.5351880195202424e+16)
            let same = await api.rest(
                "POST", "/workflows/\(created.id)/execute", body: #"{"workflowId": "\#(created.id)"}"#, token: token)
            #expect(same.status == 202, "the path's id repeated in the body is accepted")
            let differs = await api.rest(
                "POST", "/workflows/\(created.id)/execute", body: #"{"workflow_id": "wf_other"}"#, token: token)
            #expect(differs.status == 400)
            #expect((differs.json["message"] as? String)?.contains("differs from the one in the path") == true)
            let twice = await api.rest(
                "POST", "/workflows/\(created.id)/execute?input=1", body: #"{"input": {}}"#, token: token)
            #expect(twice.status == 400 && twice.json["message"] as? String == "field input is given twice (query and body, or two spellings)")
            let tooLong = await api.rest(
                "POST", "/workflows/\(created.id)/execute",
                body: #"{"input": {"n": 1.\#(String(repeating: "1", count: 130))}}"#, token: token)
            #expect(tooLong.status == 400)
            #expect((tooLong.json["message"] as? String)?.contains("more than 127 characters") == true, "\(tooLong.json)")
        }
    }

    // MARK: Paging

    @Test("keyset pages walk every workflow once; tokens are tied to their query; bad sizes and tokens are refused")
    func paging() async throws {
        try await APIHarness.with { api in
            let (token, _) = try await api.signUp()
            var ids: Set<String> = []
            for n in 0..<5 {
                let created: Weft_V1_Workflow = try await api.call(Self.createWorkflow, Self.workflow("wf \(n)"), token: token)
                ids.insert(created.id)
            }
            var seen: [String] = []
            var pageToken = ""
            repeat {
                let page: Weft_V1_ListWorkflowsResponse = try await api.call(
                    Self.listWorkflows,
                    Weft_V1_ListWorkflowsRequest.with {
                        $0.pageSize = 2
                        $0.pageToken = pageToken
                    }, token: token)
                #expect(page.workflows.count <= 2)
                seen += page.workflows.map(\.id)
                pageToken = page.nextPageToken
            } while !pageToken.isEmpty
            #expect(seen.count == 5 && Set(seen) == ids && seen == seen.sorted(by: >))
            let first: Weft_V1_ListWorkflowsResponse = try await api.call(
                Self.listWorkflows, Weft_V1_ListWorkflowsRequest.with { $0.pageSize = 2 }, token: token)
            let otherQuery = await errorCode {
                let _: Weft_V1_ListWorkflowsResponse = try await api.call(
                    Self.listWorkflows,
                    Weft_V1_ListWorkflowsRequest.with {
                        $0.pageSize = 2
                        $0.namePrefix = "wf"
                        $0.pageToken = first.nextPageToken
                    }, token: token)
            }
            #expect(otherQuery?.0 == .invalidArgument)
            let negative = await api.rest("GET", "/workflows?pageSize=-1", token: token)
            #expect(negative.status == 400 && negative.json["message"] as? String == "page_size must not be negative")
            let garbage = await api.rest("GET", "/workflows?pageToken=zzz", token: token)
            #expect(garbage.status == 400)
            // Any RFC 3339 offset, as the proto3 JSON mapping takes it (swift-protobuf alone refuses +14:00 and up).
            let offset = await api.rest("GET", "/workflows?createdAfter=2000-01-01T00:06:04%2B21:58&pageSize=1", token: token)
            #expect(offset.status == 200 && (offset.json["workflows"] as? [Any])?.count == 1)
            let future = await api.rest("GET", "/workflows?createdAfter=2999-01-01T00:00:00-23:59", token: token)
            #expect(future.status == 200 && (future.json["workflows"] as? [Any] ?? []).isEmpty)
        }
    }
}
