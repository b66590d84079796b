import WeftProto
import WeftRPC

/// A stand-in for the server's health service, so the transport is tested
/// without the rest of Weft: `Check` is inline (as the real one is), knows
/// the whole server ("") and nothing else.
struct TestHealthService: RPCService {
    var handlers: [RPCHandler] {
        [
            .unaryInline(
                service: "grpc.health.v1.Health", method: "Check",
                request: Grpc_Health_V1_HealthCheckRequest.self, response: Grpc_Health_V1_HealthCheckResponse.self,
                access: .public
            ) { request, _ in
                guard request.service.isEmpty else {
                    throw RPCError(code: .notFound, message: "unknown service \(request.service)")
                }
                return .with { $0.status = .serving }
            }
        ]
    }
}
