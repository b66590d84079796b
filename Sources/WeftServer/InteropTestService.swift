import Foundation
import WeftProto
public import WeftRPC

/// `grpc.testing.TestService`, the server side of grpc's interop test
/// descriptions (doc/interop-test-descriptions.md), so that standard gRPC
/// clients can check this server's wire behaviour: unary, client, server
/// and bidirectional streaming, compression, deadlines, cancellation,
/// metadata echo and status propagation. Registered only with
/// `--enable-test-services`; public (no credentials), like the Echo service.
/// `UnimplementedCall` is left unimplemented on purpose (the
/// unimplemented_method case), and `grpc.testing.UnimplementedService` is
/// not served at all (unimplemented_service): both answer UNIMPLEMENTED.
public struct InteropTestService: RPCService {
    static let name = "grpc.testing.TestService"

    public init() {}

    public var handlers: [RPCHandler] {
        [
            .unary(service: Self.name, method: "EmptyCall", access: .public) {
                (_: Grpc_Testing_Empty, context) -> Grpc_Testing_Empty in
                Self.echoMetadata(context)
                return Grpc_Testing_Empty()
            },
            .unary(service: Self.name, method: "UnaryCall", access: .public) {
                (request: Grpc_Testing_SimpleRequest, context) in try Self.unary(request, context)
            },
            .unary(service: Self.name, method: "CacheableUnaryCall", access: .public) {
                (request: Grpc_Testing_SimpleRequest, context) in try Self.unary(request, context)
            },
            .serverStreaming(service: Self.name, method: "StreamingOutputCall", access: .public) {
                (request: Grpc_Testing_StreamingOutputCallRequest, responses: ResponseStream<Grpc_Testing_StreamingOutputCallResponse>,
                    context) in
                Self.echoMetadata(context)
                try await Self.respond(to: request, on: responses, context)
            },
            .clientStreaming(service: Self.name, method: "StreamingInputCall", access: .public) {
                (requests: RequestStream<Grpc_Testing_StreamingInputCallRequest>, context) in
                Self.echoMetadata(context)
                var total: Int64 = 0
                for try await request in requests {
                    try Self.checkCompressed(request.hasExpectCompressed && request.expectCompressed.value, context)
                    total += Int64(request.payload.body.count)
                }
                var response = Grpc_Testing_StreamingInputCallResponse()
                response.aggregatedPayloadSize = Int32(clamping: total)
                return response
            },
            .bidiStreaming(service: Self.name, method: "FullDuplexCall", access: .public) {
                (requests: RequestStream<Grpc_Testing_StreamingOutputCallRequest>,
                    responses: ResponseStream<Grpc_Testing_StreamingOutputCallResponse>, context) in
                Self.echoMetadata(context)
                for try await request in requests {
                    try await Self.respond(to: request, on: responses, context)
                }
            },
            .bidiStreaming(service: Self.name, method: "HalfDuplexCall", access: .public) {
                (requests: RequestStream<Grpc_Testing_StreamingOutputCallRequest>,
                    responses: ResponseStream<Grpc_Testing_StreamingOutputCallResponse>, context) in
                Self.echoMetadata(context)
                var all: [Grpc_Testing_StreamingOutputCallRequest] = []
                for try await request in requests { all.append(request) }
                for request in all { try await Self.respond(to: request, on: responses, context) }
            },
        ]
    }

    /// Largest payload a request may ask for (the server's own limit, so
    /// a test client cannot make it allocate without bound).
    static let maxPayload = 4 * 1024 * 1024

    static func unary(_ request: Grpc_Testing_SimpleRequest, _ context: ServerContext) throws -> Grpc_Testing_SimpleResponse {
        echoMetadata(context)
        try checkCompressed(request.hasExpectCompressed && request.expectCompressed.value, context)
        if request.hasResponseStatus, request.responseStatus.code != 0 {
            throw RPCError(code: RPCError.Code(rawValue: Int(request.responseStatus.code)) ?? .unknown, message: request.responseStatus.message)
        }
        if request.hasResponseCompressed { context.setResponseCompression(request.responseCompressed.value) }
        var response = Grpc_Testing_SimpleResponse()
        response.payload = try payload(size: request.responseSize)
        return response
    }

    static func respond(
        to request: Grpc_Testing_StreamingOutputCallRequest,
        on responses: ResponseStream<Grpc_Testing_StreamingOutputCallResponse>, _ context: ServerContext
    ) async throws {
        if request.hasResponseStatus, request.responseStatus.code != 0 {
            throw RPCError(code: RPCError.Code(rawValue: Int(request.responseStatus.code)) ?? .unknown, message: request.responseStatus.message)
        }
        for parameters in request.responseParameters {
            if parameters.intervalUs > 0 { try await Task.sleep(for: .microseconds(Int(parameters.intervalUs))) }
            context.setResponseCompression(parameters.hasCompressed ? parameters.compressed.value : nil)
            var response = Grpc_Testing_StreamingOutputCallResponse()
            response.payload = try payload(size: parameters.size)
            try await responses.write(response)
        }
    }

    static func payload(size: Int32) throws -> Grpc_Testing_Payload {
        guard size >= 0, Int(size) <= maxPayload else {
            throw RPCError(code: .invalidArgument, message: "response size \(size) is outside 0...\(maxPayload)")
        }
        var payload = Grpc_Testing_Payload()
        payload.type = .compressable
        payload.body = Data(count: Int(size))
        return payload
    }

    /// `expect_compressed`: the message must have come compressed (the
    /// probe of client_compressed_* sends it uncompressed and expects
    /// INVALID_ARGUMENT).
    static func checkCompressed(_ expected: Bool, _ context: ServerContext) throws {
        guard expected, !context.lastRequestCompressed else { return }
        throw RPCError(code: .invalidArgument, message: "the request message was expected compressed but was not")
    }

    /// custom_metadata: the initial value back as header metadata, the
    /// trailing one (binary) back as trailing metadata.
    static func echoMetadata(_ context: ServerContext) {
        if let initial = context.requestMetadata[string: "x-grpc-test-echo-initial"] {
            context.addResponseHeader("x-grpc-test-echo-initial", initial)
        }
        if let trailing = context.requestMetadata[binary: "x-grpc-test-echo-trailing-bin"] {
            context.addResponseTrailer("x-grpc-test-echo-trailing-bin", binary: trailing)
        }
    }
}
