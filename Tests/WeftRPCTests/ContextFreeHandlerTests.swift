import Logging
import Synchronization
import Testing
import WeftObservability
import WeftProto
import WeftRPC

/// A unary method whose fast path reads only the request
/// (`unary(preparedFromRequest:)`): it answers `""` from a prepared
/// response, fails `"bad"`, and declines anything else, which then runs
/// the task handler with a real `ServerContext` (it echoes `x-echo`).
struct PreparedTestService: RPCService {
    static let serving = try! PreparedResponse(Grpc_Health_V1_HealthCheckResponse.with { $0.status = .serving })
    /// How often the fast path ran, by the request's `service` (tests use
    /// their own names: suites run in parallel).
    static let fastRuns = Mutex<[String: Int]>([:])

    var handlers: [RPCHandler] {
        [
            .unary(
                service: "test.Prepared", method: "Check",
                request: Grpc_Health_V1_HealthCheckRequest.self, response: Grpc_Health_V1_HealthCheckResponse.self,
                access: .public,
                preparedFromRequest: { request in
                    Self.fastRuns.withLock { $0[request.service, default: 0] += 1 }
                    if request.service == "bad" { throw RPCError(code: .invalidArgument, message: "bad service") }
                    return request.service.isEmpty ? Self.serving : nil
                }
            ) { request, context in
                context.addResponseTrailer("x-fallback", request.service)
                return .with {
                    $0.status = context.requestMetadata[string: "x-echo"] == "yes" ? .notServing : .unknown
                }
            }
        ]
    }
}

@Suite("Context-free fast paths")
struct ContextFreeHandlerTests {
    static func transport() -> InProcessTransport {
        let metrics = RPCMetrics(metrics: WeftMetrics())
        var router = RPCRouter()
        router.register(PreparedTestService(), metrics: metrics)
        return InProcessTransport(
            environment: ServerEnvironment(
                config: RPCServerConfig(), router: router, httpRouter: HTTPRouter(), metrics: metrics,
                logger: Logger(label: "test", factory: { _ in SwiftLogNoOpLogHandler() })))
    }

    @Test("the fast path answers from the request alone")
    func fastPath() async throws {
        let response: Grpc_Health_V1_HealthCheckResponse = try await Self.transport().unary(
            "/test.Prepared/Check", Grpc_Health_V1_HealthCheckRequest())
        #expect(response.status == .serving)
    }

    @Test("when the fast path declines, the handler runs with the call's context (metadata in, trailers out)")
    func fallbackGetsContext() async throws {
        var metadata = Metadata()
        metadata.add("x-echo", "yes")
        let request = Grpc_Health_V1_HealthCheckRequest.with { $0.service = "slow" }
        let result = await Self.transport().call(
            path: "/test.Prepared/Check", requests: [try request.serializedBytes()], metadata: metadata)
        #expect(result.error == nil)
        let message = try #require(result.messages.first)
        let response = try Grpc_Health_V1_HealthCheckResponse(serializedBytes: message)
        #expect(response.status == .notServing, "the handler saw the request's x-echo")
        #expect(result.trailers[string: "x-fallback"] == "slow")
    }

    @Test("an error thrown by the fast path is the call's status")
    func fastPathError() async throws {
        let request = Grpc_Health_V1_HealthCheckRequest.with { $0.service = "bad" }
        let result = await Self.transport().call(path: "/test.Prepared/Check", requests: [try request.serializedBytes()])
        #expect(result.error?.code == .invalidArgument)
        #expect(result.error?.message == "bad service")
    }
}
