import Foundation
import NIOCore
public import SwiftProtobuf
import Synchronization

/// Calls a server's RPCs and REST routes in process: through the real
/// router, interceptor chain, handlers and call observability of a
/// `ServerEnvironment`, without sockets (as grpc-swift-2's in-process
/// transport does). What differs from the network transports is only how
/// bytes arrive: HTTP/2, gRPC framing and compression are tested on their own.
public struct InProcessTransport: Sendable {
    public let environment: ServerEnvironment

    public init(environment: ServerEnvironment) {
        self.environment = environment
    }

    /// The outcome of one call: its response messages (serialized), the
    /// response header and trailer metadata, and its error if it failed.
    public struct CallResult: Sendable {
        public var messages: [[UInt8]]
        public var headers: Metadata
        public var trailers: Metadata
        public var error: RPCError?
    }

    /// Runs the method at `path` with these request messages (serialized)
    /// and metadata.
    public func call(path: String, requests: [[UInt8]], metadata: Metadata = Metadata()) async -> CallResult {
        guard let registered = environment.router.lookup(path: Array(path.utf8)[...]) else {
            let message =
                environment.router.hasService(forPath: path)
                ? "unknown method \(path)"
                : "unknown service \(path.split(separator: "/").first.map(String.init) ?? path) (method \(path))"
            return CallResult(
                messages: [], headers: Metadata(), trailers: Metadata(), error: RPCError(code: .unimplemented, message: message))
        }
        let descriptor = registered.descriptor
        let observability = environment.observability
        var observation = observability.beginGRPC(
            registered.metrics, descriptor: descriptor, metadata: metadata, mayAnswerInline: false)
        var head = CallHead(
            descriptor: descriptor, access: registered.access, metadata: metadata, transport: .inProcess,
            peer: "in-process")
        let collector = Collector()
        var context: ServerContext?
        var failure: RPCError?
        do {
            try environment.interceptors.admit(&head)
            let callContext = ServerContext(
                descriptor: descriptor, requestMetadata: head.metadata, deadline: nil, peer: head.peer,
                requestEncoding: "identity", responseEncoding: "identity", principal: head.principal, audit: head.audit,
                transport: .inProcess)
            context = callContext
            if descriptor.kind.isSingleRequest, requests.count != 1 {
                throw RPCError(
                    code: .internal,
                    message: requests.isEmpty
                        ? "the call ended without a request message"
                        : "more than one request message for a \(descriptor.kind.rawValue) call")
            }
            try await run(registered.body, requests: requests, context: callContext, collector: collector)
        } catch {
            failure = RPCError(from: error)
        }
        observability.end(&observation, code: failure?.code ?? .ok, error: failure, path: path)
        if context != nil { environment.interceptors.completed(head, code: failure?.code ?? .ok) }
        return CallResult(
            messages: collector.messages, headers: context?.takeResponseHeaders() ?? Metadata(),
            trailers: context?.takeResponseTrailers() ?? Metadata(), error: failure)
    }

    private func run(
        _ body: RPCHandler.Body, requests: [[UInt8]], context: ServerContext, collector: Collector
    ) async throws {
        // An inline answer, or the task that runs when there is none.
        let task: @Sendable (RPCRequestStream, RPCResponseWriter, ServerContext) async throws -> Void
        switch body {
        case .inline(let inline):
            return collector.add(try requests[0].withUnsafeBytes { try inline($0, context) })
        case .inlineOrTask(let fast, let fallback):
            if let response = try requests[0].withUnsafeBytes({ try fast($0, context) }) { return collector.add(response) }
            task = fallback
        case .contextFreeInlineOrTask(let fast, let fallback):
            if let response = try requests[0].withUnsafeBytes({ try fast($0) }) { return collector.add(response) }
            task = fallback
        case .task(let body):
            task = body
        }
        try await task(RPCRequestStream(source: ArraySource(requests)), RPCResponseWriter(sink: collector), context)
    }

    /// A typed unary call: its response, or its `RPCError`.
    public func unary<Request: SwiftProtobuf.Message, Response: SwiftProtobuf.Message>(
        _ path: String, _ request: Request, metadata: Metadata = Metadata(), as: Response.Type = Response.self
    ) async throws -> Response {
        let result = await call(path: path, requests: [try request.serializedBytes()], metadata: metadata)
        if let error = result.error { throw error }
        guard let first = result.messages.first, result.messages.count == 1 else {
            throw RPCError(code: .internal, message: "a unary call answered \(result.messages.count) messages")
        }
        return try Response(serializedBytes: first)
    }

    /// A typed server-streaming call: every response, or its `RPCError`.
    public func serverStreaming<Request: SwiftProtobuf.Message, Response: SwiftProtobuf.Message>(
        _ path: String, _ request: Request, metadata: Metadata = Metadata(), as: Response.Type = Response.self
    ) async throws -> [Response] {
        let result = await call(path: path, requests: [try request.serializedBytes()], metadata: metadata)
        if let error = result.error { throw error }
        return try result.messages.map { try Response(serializedBytes: $0) }
    }

    /// A REST request through the bridge, as HTTP/1.1 or HTTP/2 would bring it.
    public func rest(
        _ method: String, _ target: String, body: String? = nil, headers: [(name: String, value: String)] = []
    ) async -> HTTPResponse {
        var allHeaders = headers.map { (name: $0.name.lowercased(), value: $0.value) }
        if body != nil, !allHeaders.contains(where: { $0.name == "content-type" }) {
            allHeaders.append(("content-type", "application/json"))
        }
        let request = HTTPRequest(
            method: method, target: target, headers: allHeaders,
            body: ByteBuffer(string: body ?? ""))
        switch HTTPExchange.dispatch(request, environment: environment, transport: .inProcess, peer: "in-process") {
        case .respond(let response): return response
        case .run(let work): return await work()
        }
    }
}

/// Request messages handed over as an array.
private final class ArraySource: RPCRequestSource, Sendable {
    private let remaining: Mutex<[[UInt8]]>

    init(_ messages: [[UInt8]]) { remaining = Mutex(messages.reversed()) }

    func next() async throws -> ArraySlice<UInt8>? {
        remaining.withLock { $0.popLast().map { $0[...] } }
    }
}

/// Response messages, collected.
private final class Collector: RPCResponseSink, Sendable {
    private let collected = Mutex<[[UInt8]]>([])

    var messages: [[UInt8]] { collected.withLock { $0 } }

    func add(_ message: GRPCFramedMessage) {
        let bytes = message.withUnsafeBytes { Array($0) }
        collected.withLock { $0.append(bytes) }
    }

    func write(_ message: GRPCFramedMessage) async throws { add(message) }
}
