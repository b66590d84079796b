import Logging
import Synchronization
import Testing
import WeftObservability
import WeftProto
import WeftRPC

/// The chain's scoping: which interceptors see which calls, before the
/// handler, and which hear how they ended.
@Suite("Interceptor chain")
struct InterceptorChainTests {
    /// Records what it sees; refuses calls without `x-pass`.
    final class Recorder: ServerInterceptor, Sendable {
        let name: String
        let seesPublicMethods: Bool
        let wantsCompletion: Bool
        let events = Mutex<[String]>([])

        init(_ name: String, seesPublicMethods: Bool, wantsCompletion: Bool) {
            self.name = name
            self.seesPublicMethods = seesPublicMethods
            self.wantsCompletion = wantsCompletion
        }

        func admit(_ call: inout CallHead) throws {
            events.withLock { $0.append("admit \(call.descriptor.method)") }
            guard call.metadata[string: "x-pass"] != nil else {
                throw RPCError(code: .permissionDenied, message: "\(name) refuses")
            }
            call.principal = Principal(id: name)
        }

        func completed(_ call: CallHead, code: RPCError.Code) {
            events.withLock { $0.append("completed \(call.descriptor.method) \(code)") }
        }
    }

    /// A public method (Check) and a private one (Whoami: answers with the principal).
    struct Service: RPCService {
        var handlers: [RPCHandler] {
            [
                .unaryInline(
                    service: "test.Chain", method: "Check", request: Grpc_Health_V1_HealthCheckRequest.self,
                    response: Grpc_Health_V1_HealthCheckResponse.self, access: .public
                ) { _, _ in .with { $0.status = .serving } },
                .unaryInline(
                    service: "test.Chain", method: "Whoami", request: Grpc_Health_V1_HealthCheckRequest.self,
                    response: Grpc_Health_V1_HealthCheckRequest.self
                ) { _, context in .with { $0.service = (try? context.caller.id) ?? "nobody" } },
            ]
        }
    }

    static func transport(_ interceptors: [any ServerInterceptor]) -> InProcessTransport {
        let metrics = RPCMetrics(metrics: WeftMetrics())
        var router = RPCRouter()
        router.register(Service(), metrics: metrics)
        return InProcessTransport(
            environment: ServerEnvironment(
                config: RPCServerConfig(), router: router, httpRouter: HTTPRouter(), metrics: metrics,
                logger: Logger(label: "test", factory: { _ in SwiftLogNoOpLogHandler() }),
                interceptors: InterceptorChain(interceptors)))
    }

    static func pass() -> Metadata {
        var metadata = Metadata()
        metadata.add("x-pass", "1")
        return metadata
    }

    @Test("private calls go through every interceptor in order; public ones only through those that see them")
    func scoping() async throws {
        let auth = Recorder("auth", seesPublicMethods: false, wantsCompletion: false)
        let audit = Recorder("audit", seesPublicMethods: true, wantsCompletion: true)
        let transport = Self.transport([auth, audit])

        let who: Grpc_Health_V1_HealthCheckRequest = try await transport.unary(
            "/test.Chain/Whoami", Grpc_Health_V1_HealthCheckRequest(), metadata: Self.pass())
        #expect(who.service == "audit", "the last interceptor's principal reaches the handler")
        let _: Grpc_Health_V1_HealthCheckResponse = try await transport.unary(
            "/test.Chain/Check", Grpc_Health_V1_HealthCheckRequest(), metadata: Self.pass())

        #expect(auth.events.withLock { $0 } == ["admit Whoami"], "auth does not see the public method")
        #expect(audit.events.withLock { $0 } == ["admit Whoami", "completed Whoami OK", "admit Check", "completed Check OK"])
    }

    @Test("a refusal ends the call before the handler and before later interceptors; refused calls are not completed")
    func refusal() async throws {
        let auth = Recorder("auth", seesPublicMethods: false, wantsCompletion: true)
        let audit = Recorder("audit", seesPublicMethods: true, wantsCompletion: true)
        let transport = Self.transport([auth, audit])
        do {
            let _: Grpc_Health_V1_HealthCheckRequest = try await transport.unary(
                "/test.Chain/Whoami", Grpc_Health_V1_HealthCheckRequest())
            Issue.record("a call without x-pass was admitted")
        } catch let error as RPCError {
            #expect(error.code == .permissionDenied && error.message == "auth refuses")
        }
        #expect(auth.events.withLock { $0 } == ["admit Whoami"])
        #expect(audit.events.withLock { $0 }.isEmpty)
    }
}
