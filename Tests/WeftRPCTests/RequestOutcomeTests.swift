import Testing
@testable import WeftRPC

@Suite("Request outcomes and classes (the SLIs' one classification)")
struct RequestOutcomeTests {
    @Test("every gRPC code has one outcome: OpenTelemetry's server-span errors are server errors, the rest the caller's")
    func codes() {
        let server: Set<Int> = [2, 4, 12, 13, 14, 15]
        for raw in 0...16 {
            let code = RPCError.Code(rawValue: raw)!
            let expected: RequestOutcome = raw == 0 ? .ok : server.contains(raw) ? .serverError : .clientError
            #expect(RequestOutcome(code: code) == expected, "\(code)")
            // Without an override an error's outcome is its code's.
            #expect(RPCError(code: code, message: "x").outcome == expected)
        }
    }

    @Test("HTTP statuses: 5xx server errors, 4xx the caller's, the rest ok; an RPCError's own outcome wins on REST")
    func statuses() {
        #expect(RequestOutcome(httpStatus: 200) == .ok)
        #expect(RequestOutcome(httpStatus: 304) == .ok)
        for status in [400, 401, 404, 413, 429, 499] { #expect(RequestOutcome(httpStatus: status) == .clientError) }
        for status in [500, 501, 503, 504] { #expect(RequestOutcome(httpStatus: status) == .serverError) }
        // A caller's quota: 429 and a client error. The server past its capacity: 429 and overload.
        let quota = RPCError.exhausted("your organization's quota", retryAfter: 3)
        let overloaded = RPCError.overloaded("the server is past its capacity", retryAfter: 3)
        #expect(quota.outcome == .clientError && quota.httpStatus == 429)
        #expect(overloaded.outcome == .overload && overloaded.httpStatus == 429 && overloaded.code == .resourceExhausted)
        #expect(overloaded.metadata[string: "retry-after"] == "3")
        #expect(HTTPResponse.error(overloaded).outcome == .overload)
        #expect(HTTPResponse.error(quota).outcome == .clientError)
        #expect(RequestOutcome.overload.spendsBudget && RequestOutcome.serverError.spendsBudget)
        #expect(!RequestOutcome.clientError.spendsBudget && !RequestOutcome.ok.spendsBudget)
    }

    @Test("methods fall in one class: health, reflection and test services none; streams, executes, auth, reads, writes")
    func classes() {
        func of(_ service: String, _ method: String, _ kind: RPCMethodDescriptor.Kind = .unary) -> RequestClass {
            RPCMethodDescriptor(service: service, method: method, kind: kind).requestClass
        }
        #expect(of("grpc.health.v1.Health", "Check") == .none)
        #expect(of("grpc.health.v1.Health", "Watch", .serverStreaming) == .none)
        #expect(of("grpc.reflection.v1.ServerReflection", "ServerReflectionInfo", .bidiStreaming) == .none)
        #expect(of("grpc.testing.TestService", "UnaryCall") == .none)
        #expect(of("weft.testing.v1.EchoService", "Echo") == .none)
        #expect(of("unknown", "unknown") == .none)
        #expect(of("weft.v1.ExecutionService", "WatchExecution", .serverStreaming) == .stream)
        #expect(of("weft.v1.WorkerService", "PollTask") == .stream)
        #expect(of("weft.v1.ExecutionService", "ExecuteWorkflow") == .execute)
        #expect(of("weft.v1.TriggerService", "DeliverWebhook") == .execute)
        #expect(of("weft.v1.EventService", "PublishEvent") == .execute)
        #expect(of("weft.v1.UserService", "Login") == .auth)
        #expect(of("weft.v1.UserService", "Register") == .auth)
        #expect(of("weft.v1.UserService", "GetCurrentUser") == .read)
        #expect(of("weft.v1.WorkflowService", "GetWorkflow") == .read)
        #expect(of("weft.v1.WorkflowService", "SearchWorkflows") == .read)
        #expect(of("weft.v1.WorkflowService", "CreateWorkflow") == .write)
        #expect(of("weft.v1.ExecutionService", "CancelExecution") == .write)
    }
}
