import Foundation
import SwiftProtobuf
import WeftProto

/// What a scenario's setup made on the server, per tenant: the names its
/// operations' templates refer to.
struct Tenant: Sendable {
    var credential: String?
    var workflows: [String: String] = [:]
    var triggers: [String: String] = [:]
}

struct SetupResult: Sendable {
    var tenants: [Tenant]
    /// Every workflow created (for the completion read-back), by tenant.
    var workflowIds: [(tenant: Int, id: String)]
    var sinkURL: String?
    var schedulesCreated = 0
    var scheduleCreateSeconds = 0.0
    /// The storm's schedules, deleted after the run (they would fire on).
    var scheduleIds: [(tenant: Int, workflowId: String, id: String)] = []
}

/// Makes what a scenario needs before its load starts: tenants (registered
/// users with API keys), workflows, webhook triggers, a schedule storm.
/// Everything is named `lt-<run>-…` so runs never collide.
struct RunSetup {
    let client: RPCClient
    let run: String

    func perform(_ scenario: Scenario, sinkURL: String?) async throws -> SetupResult {
        let setup = scenario.setup ?? Scenario.Setup()
        var tenants: [Tenant] = []
        // One tenant and a credential on the command line: that caller is
        // the tenant (a deployment whose registration is closed).
        let wanted = setup.tenants ?? 0
        let count = wanted == 1 && client.target.credential != nil ? 0 : wanted
        if count > 0 {
            for index in 0..<count { tenants.append(Tenant(credential: try await registerTenant(index))) }
        } else {
            tenants.append(Tenant(credential: client.target.credential))
        }
        var result = SetupResult(tenants: [], workflowIds: [], sinkURL: sinkURL)
        for (index, var tenant) in tenants.enumerated() {
            for spec in setup.workflows ?? [] {
                let id = try await createWorkflow(spec, tenant: tenant, sinkURL: sinkURL)
                tenant.workflows[spec.name] = id
                result.workflowIds.append((index, id))
            }
            for spec in setup.triggers ?? [] {
                var request = Weft_V1_CreateTriggerRequest()
                request.workflowID = tenant.workflows[spec.workflow]!
                request.type = "webhook"
                request.description_p = "weft-loadtest \(run)"
                let trigger = try await call(
                    "/weft.v1.TriggerService/CreateTrigger", request, as: Weft_V1_Trigger.self, credential: tenant.credential)
                tenant.triggers[spec.name] = trigger.id
            }
            tenants[index] = tenant
        }
        if let storm = setup.schedules, let spec = setup.workflows?.first(where: { $0.name == storm.workflow }) {
            // A workflow holds at most `perWorkflow` schedules (the server's
            // cap is 100): the storm spreads over copies of its workflow.
            let perWorkflow = max(1, storm.perWorkflow ?? 100)
            let copies = (storm.count + perWorkflow * tenants.count - 1) / (perWorkflow * tenants.count)
            for (index, var tenant) in tenants.enumerated() where copies > 1 {
                for copy in 1..<copies {
                    var copied = spec
                    copied.name = "\(spec.name)-\(copy)"
                    let id = try await createWorkflow(copied, tenant: tenant, sinkURL: sinkURL)
                    tenant.workflows[copied.name] = id
                    result.workflowIds.append((index, id))
                }
                tenants[index] = tenant
            }
            let started = Date()
            result.scheduleIds = try await createSchedules(storm, tenants: tenants, perWorkflow: perWorkflow)
            result.schedulesCreated = result.scheduleIds.count
            result.scheduleCreateSeconds = Date().timeIntervalSince(started)
        }
        result.tenants = tenants
        return result
    }

    private func call<Response: Message>(
        _ path: String, _ request: some Message, as type: Response.Type, credential: String?
    ) async throws -> Response {
        do {
            return try await client.call(path, request, as: type, credential: .some(credential))
        } catch let failure as RPCFailure {
            throw HarnessError.setup(failure.description)
        }
    }

    /// A user of its own (and so an organization of its own, on the
    /// server's default plan), with an admin API key: keys do not expire
    /// during a long soak as access tokens do.
    private func registerTenant(_ index: Int) async throws -> String {
        let email = "lt-\(run)-\(index)@loadtest.invalid"
        let password = "lt-\(run)-\(UUID().uuidString)"
        var register = Weft_V1_RegisterRequest()
        register.email = email
        register.password = password
        register.name = "weft-loadtest tenant \(index)"
        _ = try await call("/weft.v1.UserService/Register", register, as: Weft_V1_User.self, credential: nil)
        var login = Weft_V1_LoginRequest()
        login.email = email
        login.password = password
        let session = try await call("/weft.v1.UserService/Login", login, as: Weft_V1_LoginResponse.self, credential: nil)
        var key = Weft_V1_CreateApiKeyRequest()
        key.name = "weft-loadtest \(run)"
        key.scopes = ["admin"]
        let created = try await call(
            "/weft.v1.ApiKeyService/CreateApiKey", key, as: Weft_V1_CreateApiKeyResponse.self, credential: session.token)
        return created.secret
    }

    private func createWorkflow(_ spec: Scenario.WorkflowSpec, tenant: Tenant, sinkURL: String?) async throws -> String {
        var json = spec.definition.merging([("name", .string("lt-\(run)-\(spec.name)"))]).jsonText
        json = json.replacingOccurrences(of: "{{sink}}", with: sinkURL ?? "http://127.0.0.1:9/no-sink")
        let request: Weft_V1_CreateWorkflowRequest
        do {
            request = try Weft_V1_CreateWorkflowRequest(jsonString: json)
        } catch {
            throw HarnessError.usage("workflow \(spec.name): the definition is not a CreateWorkflowRequest in proto3 JSON: \(error)")
        }
        let workflow = try await call(
            "/weft.v1.WorkflowService/CreateWorkflow", request, as: Weft_V1_Workflow.self, credential: tenant.credential)
        return workflow.id
    }

    /// `storm.count` schedules spread over the tenants and the copies of
    /// the workflow, `perWorkflow` each, created 32 at a time.
    private func createSchedules(_ storm: Scenario.ScheduleStorm, tenants: [Tenant], perWorkflow: Int) async throws
        -> [(tenant: Int, workflowId: String, id: String)]
    {
        let cron = storm.cron ?? "* * * * *"
        var created: [(tenant: Int, workflowId: String, id: String)] = []
        var next = 0
        while next < storm.count {
            let batch = min(32, storm.count - next)
            created += try await withThrowingTaskGroup(of: (Int, String, String).self) { group in
                for i in next..<(next + batch) {
                    let tenant = tenants[i % tenants.count]
                    let copy = (i / tenants.count) / perWorkflow
                    var request = Weft_V1_CreateScheduleRequest()
                    request.workflowID = tenant.workflows[copy == 0 ? storm.workflow : "\(storm.workflow)-\(copy)"]!
                    request.cron = cron
                    request.timezone = "UTC"
                    request.description_p = "weft-loadtest \(run) #\(i)"
                    group.addTask {
                        let schedule = try await call(
                            "/weft.v1.ScheduleService/CreateSchedule", request, as: Weft_V1_Schedule.self,
                            credential: tenant.credential)
                        return (i % tenants.count, request.workflowID, schedule.id)
                    }
                }
                var ids: [(Int, String, String)] = []
                for try await id in group { ids.append(id) }
                return ids.map { (tenant: $0.0, workflowId: $0.1, id: $0.2) }
            }
            next += batch
        }
        return created
    }

    /// Deletes the storm's schedules (best effort: the run's figures are
    /// already read); returns how many could not be deleted.
    func deleteSchedules(_ ids: [(tenant: Int, workflowId: String, id: String)], tenants: [Tenant]) async -> Int {
        var failed = 0
        for (tenant, workflowId, id) in ids {
            var request = Weft_V1_DeleteScheduleRequest()
            request.workflowID = workflowId
            request.scheduleID = id
            do {
                _ = try await client.call(
                    "/weft.v1.ScheduleService/DeleteSchedule", request, as: Weft_V1_DeleteScheduleResponse.self,
                    credential: .some(tenants[tenant].credential))
            } catch {
                failed += 1
            }
        }
        return failed
    }
}
