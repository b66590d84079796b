import Synchronization
import WeftProto
public import WeftRPC

/// `weft.testing.v1.EchoService`: exercises the transport in tests and
/// benchmarks (see proto/weft/testing/v1/echo.proto). Registered only with
/// `--enable-test-services`.
public final class EchoTestService: RPCService {
    static let name = "weft.testing.v1.EchoService"
    private let cancelled = Atomic<Int64>(0)
    private let active = Atomic<Int64>(0)
    private let completed = Atomic<Int64>(0)

    public init() {}

    public var handlers: [RPCHandler] {
        [
            .unary(
                service: Self.name, method: "Echo",
                request: Weft_Testing_V1_EchoRequest.self, response: Weft_Testing_V1_EchoResponse.self,
                access: .public
            ) { [self] request, context in
                try await tracked(context) { try await echo(request, context) }
            },
            .serverStreaming(
                service: Self.name, method: "Stream",
                request: Weft_Testing_V1_StreamRequest.self, response: Weft_Testing_V1_StreamResponse.self,
                access: .public
            ) { [self] request, responses, context in
                try await tracked(context) {
                    let payload = [UInt8](repeating: UInt8(ascii: "w"), count: max(0, Int(request.payloadSize)))
                    for index in 0..<max(0, request.count) {
                        if index > 0, request.intervalMs > 0 { try await Task.sleep(for: .milliseconds(request.intervalMs)) }
                        try await responses.write(
                            .with {
                                $0.message = request.message
                                $0.index = index
                                $0.payload = .init(payload)
                            })
                    }
                }
            },
            .clientStreaming(
                service: Self.name, method: "Collect",
                request: Weft_Testing_V1_EchoRequest.self, response: Weft_Testing_V1_EchoResponse.self,
                access: .public
            ) { [self] requests, context in
                try await tracked(context) {
                    var response = Weft_Testing_V1_EchoResponse()
                    for try await request in requests {
                        response.message += request.message
                        response.payload.append(request.payload)
                    }
                    return response
                }
            },
            .bidiStreaming(
                service: Self.name, method: "Chat",
                request: Weft_Testing_V1_EchoRequest.self, response: Weft_Testing_V1_EchoResponse.self,
                access: .public
            ) { [self] requests, responses, context in
                try await tracked(context) {
                    for try await request in requests {
                        try await responses.write(try await echo(request, context))
                    }
                }
            },
            .unaryInline(
                service: Self.name, method: "Stats",
                request: Weft_Testing_V1_StatsRequest.self, response: Weft_Testing_V1_StatsResponse.self,
                access: .public
            ) { [self] _, _ in
                .with {
                    $0.cancelledHandlers = cancelled.load(ordering: .relaxed)
                    $0.activeHandlers = active.load(ordering: .relaxed)
                    $0.completedHandlers = completed.load(ordering: .relaxed)
                }
            },
        ]
    }

    private func echo(_ request: Weft_Testing_V1_EchoRequest, _ context: ServerContext) async throws
        -> Weft_Testing_V1_EchoResponse
    {
        if request.delayMs > 0 { try await Task.sleep(for: .milliseconds(request.delayMs)) }
        if request.failWithCode != 0 {
            guard let code = RPCError.Code(rawValue: Int(request.failWithCode)) else {
                throw RPCError(code: .invalidArgument, message: "fail_with_code \(request.failWithCode) is not a gRPC code")
            }
            throw RPCError(code: code, message: request.errorMessage)
        }
        var response = Weft_Testing_V1_EchoResponse()
        response.message = request.message
        response.payload = request.payload
        response.requestEncoding = context.requestEncoding
        response.responseEncoding = context.responseEncoding
        for (key, value) in context.requestMetadata {
            switch value {
            case .string(let s):
                response.requestMetadata[key] = s
                if key.hasPrefix("x-echo-") {
                    context.addResponseHeader(key, s)
                    context.addResponseTrailer("\(key)-trailer", s)
                }
            case .binary(let bytes):
                response.requestMetadata[key] = Base64.encode(bytes, padded: true)
                if key.hasPrefix("x-echo-") {
                    context.addResponseHeader(key, binary: bytes)
                    context.addResponseTrailer("\(key.dropLast(4))-trailer-bin", binary: bytes)
                }
            }
        }
        return response
    }

    private func tracked<T>(_ context: ServerContext, _ body: () async throws -> T) async throws -> T {
        active.add(1, ordering: .relaxed)
        defer { active.subtract(1, ordering: .relaxed) }
        do {
            let result = try await body()
            if context.isCancelled || Task.isCancelled {
                cancelled.add(1, ordering: .relaxed)
            } else {
                completed.add(1, ordering: .relaxed)
            }
            return result
        } catch {
            if error is CancellationError || context.isCancelled || Task.isCancelled {
                cancelled.add(1, ordering: .relaxed)
            }
            throw error
        }
    }
}
