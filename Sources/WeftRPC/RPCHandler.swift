import Synchronization
public import SwiftProtobuf

/// One method of a service: its descriptor and how to run it. Services declare
/// their methods once with the typed constructors below; the router and the
/// transports only see this type-erased form.
public struct RPCHandler: Sendable {
    public let descriptor: RPCMethodDescriptor
    /// Whether callers must be authenticated (the default) or not.
    public let access: RPCAccess
    let body: Body
    /// The REST routes of this method (the JSON bridge), declared with it.
    public let restRoutes: [RESTRoute]
    /// Runs the method for a REST request; nil when it has no routes.
    let restInvoker: RESTInvoker?
    /// Answers a REST request on the event loop when it can (a synchronous
    /// handler, or a prepared response's hit); nil from it: run
    /// `restInvoker` in a task. Nil for methods that always need a task.
    let restInline: RESTInline?
    /// Fully qualified protobuf names of the request and response messages.
    public let requestMessageName: String
    public let responseMessageName: String

    typealias RESTInvoker = @Sendable (HTTPRequest, RESTRoute, ServerContext) async throws -> HTTPResponse
    typealias RESTInline = @Sendable (HTTPRequest, RESTRoute, ServerContext) throws -> HTTPResponse?

    init(
        descriptor: RPCMethodDescriptor, access: RPCAccess, body: Body, restRoutes: [RESTRoute] = [],
        restInvoker: RESTInvoker? = nil, restInline: RESTInline? = nil, requestMessageName: String = "",
        responseMessageName: String = ""
    ) {
        self.descriptor = descriptor
        self.access = access
        self.body = body
        self.restRoutes = restRoutes
        self.restInvoker = restRoutes.isEmpty ? nil : restInvoker
        self.restInline = restRoutes.isEmpty ? nil : restInline
        self.requestMessageName = requestMessageName
        self.responseMessageName = responseMessageName
    }

    enum Body: Sendable {
        /// Runs inline on the connection's event loop: decode, handle, encode,
        /// with no task and no thread hop. Only for handlers that touch
        /// in-memory state and never block or wait (health checks and the like).
        case inline(@Sendable (UnsafeRawBufferPointer, ServerContext) throws -> GRPCFramedMessage)
        /// Runs as a Swift task; the transport feeds requests and takes responses.
        case task(@Sendable (RPCRequestStream, RPCResponseWriter, ServerContext) async throws -> Void)
        /// Tries the inline body on the event loop first; when it returns nil
        /// (e.g. a cache miss) the call continues as a task.
        case inlineOrTask(
            @Sendable (UnsafeRawBufferPointer, ServerContext) throws -> GRPCFramedMessage?,
            @Sendable (RPCRequestStream, RPCResponseWriter, ServerContext) async throws -> Void)
        /// `inlineOrTask` for a fast path that reads only the request: a
        /// call it answers makes no `ServerContext` at all (the task, if it
        /// runs, gets one). Health checks, the most frequent call a server
        /// gets, answer this way.
        case contextFreeInlineOrTask(
            @Sendable (UnsafeRawBufferPointer) throws -> GRPCFramedMessage?,
            @Sendable (RPCRequestStream, RPCResponseWriter, ServerContext) async throws -> Void)
    }
}

extension RPCHandler {
    /// A unary method whose handler runs synchronously on the event loop. Use
    /// only for handlers that never block: no I/O, no waiting, no heavy work.
    public static func unaryInline<Request: SwiftProtobuf.Message, Response: SwiftProtobuf.Message>(
        service: String,
        method: String,
        request: Request.Type = Request.self,
        response: Response.Type = Response.self,
        rest: [RESTRoute] = [],
        access: RPCAccess = .authenticated,
        _ handler: @escaping @Sendable (Request, ServerContext) throws -> Response
    ) -> RPCHandler {
        // The same answer on the event loop and, should a transport ask, in a task.
        let answer: @Sendable (HTTPRequest, RESTRoute, ServerContext) throws -> HTTPResponse = { http, route, context in
            let request = try RESTBridge.decodeRequest(Request.self, from: http, route: route)
            return try RESTBridge.respond(
                try handler(request, context), route: route, context: context, encoder: http.jsonEncoder)
        }
        return RPCHandler(
            descriptor: RPCMethodDescriptor(service: service, method: method, kind: .unary), access: access,
            body: .inline { bytes, context in
                let request: Request = try ProtobufCoding.decode(bytes)
                return try ProtobufCoding.encode(try handler(request, context))
            },
            restRoutes: rest,
            restInvoker: answer, restInline: answer,
            requestMessageName: Request.protoMessageName, responseMessageName: Response.protoMessageName)
    }

    public static func unary<Request: SwiftProtobuf.Message, Response: SwiftProtobuf.Message>(
        service: String,
        method: String,
        request: Request.Type = Request.self,
        response: Response.Type = Response.self,
        rest: [RESTRoute] = [],
        access: RPCAccess = .authenticated,
        _ handler: @escaping @Sendable (Request, ServerContext) async throws -> Response
    ) -> RPCHandler {
        RPCHandler(
            descriptor: RPCMethodDescriptor(service: service, method: method, kind: .unary), access: access,
            body: .task { requests, writer, context in
                let request: Request = try await requests.single()
                let response = try await handler(request, context)
                try await writer.write(framed: try ProtobufCoding.encode(response))
            },
            restRoutes: rest,
            restInvoker: { http, route, context in
                let request = try RESTBridge.decodeRequest(Request.self, from: http, route: route)
                return try RESTBridge.respond(
                    try await handler(request, context), route: route, context: context, encoder: http.jsonEncoder)
            },
            requestMessageName: Request.protoMessageName, responseMessageName: Response.protoMessageName)
    }

    /// A unary method whose fast path answers with responses prepared ahead
    /// (serialized once, e.g. when a cache entry is filled), so a hit costs
    /// no encoding at all. REST uses the prepared message, gRPC its bytes.
    public static func unary<Request: SwiftProtobuf.Message, Response: SwiftProtobuf.Message>(
        service: String,
        method: String,
        request: Request.Type = Request.self,
        response: Response.Type = Response.self,
        rest: [RESTRoute] = [],
        access: RPCAccess = .authenticated,
        prepared: @escaping @Sendable (Request, ServerContext) throws -> PreparedResponse<Response>?,
        _ handler: @escaping @Sendable (Request, ServerContext) async throws -> Response
    ) -> RPCHandler {
        RPCHandler(
            descriptor: RPCMethodDescriptor(service: service, method: method, kind: .unary), access: access,
            body: .inlineOrTask(
                { bytes, context in
                    let request: Request = try ProtobufCoding.decode(bytes)
                    // As the non-generic base: no metadata lookup per call.
                    let frame: PreparedFrame? = try prepared(request, context)
                    return frame?.framed
                },
                { requests, writer, context in
                    let request: Request = try await requests.single()
                    let response = try await handler(request, context)
                    try await writer.write(framed: try ProtobufCoding.encode(response))
                }),
            restRoutes: rest,
            restInvoker: { http, route, context in
                let request = try RESTBridge.decodeRequest(Request.self, from: http, route: route)
                let response: Response
                if let fast = try prepared(request, context) {
                    response = fast.message
                } else {
                    response = try await handler(request, context)
                }
                return try RESTBridge.respond(response, route: route, context: context, encoder: http.jsonEncoder)
            },
            restInline: { http, route, context in
                let request = try RESTBridge.decodeRequest(Request.self, from: http, route: route)
                guard let fast = try prepared(request, context) else { return nil }
                // Its JSON, like its protobuf bytes, is written once per preparation.
                return try RESTBridge.respond(route: route, context: context) { try fast.jsonBytes(http.jsonEncoder) }
            },
            requestMessageName: Request.protoMessageName, responseMessageName: Response.protoMessageName)
    }

    /// `unary(prepared:)` for a fast path that needs only the request (no
    /// caller, no metadata, no deadline): a call it answers on the event
    /// loop makes no `ServerContext`. `handler` runs, with a context, when
    /// it returns nil.
    public static func unary<Request: SwiftProtobuf.Message, Response: SwiftProtobuf.Message>(
        service: String,
        method: String,
        request: Request.Type = Request.self,
        response: Response.Type = Response.self,
        rest: [RESTRoute] = [],
        access: RPCAccess = .authenticated,
        preparedFromRequest prepared: @escaping @Sendable (Request) throws -> PreparedResponse<Response>?,
        _ handler: @escaping @Sendable (Request, ServerContext) async throws -> Response
    ) -> RPCHandler {
        let withContext = unary(
            service: service, method: method, request: request, response: response, rest: rest, access: access,
            prepared: { request, _ in try prepared(request) }, handler)
        guard case .inlineOrTask(_, let fallback) = withContext.body else { return withContext }
        return RPCHandler(
            descriptor: withContext.descriptor, access: access,
            body: .contextFreeInlineOrTask(
                { bytes in
                    let request: Request = try ProtobufCoding.decode(bytes)
                    let frame: PreparedFrame? = try prepared(request)
                    return frame?.framed
                },
                fallback),
            restRoutes: rest, restInvoker: withContext.restInvoker, restInline: withContext.restInline,
            requestMessageName: Request.protoMessageName, responseMessageName: Response.protoMessageName)
    }

    public static func serverStreaming<Request: SwiftProtobuf.Message, Response: SwiftProtobuf.Message>(
        service: String,
        method: String,
        request: Request.Type = Request.self,
        response: Response.Type = Response.self,
        rest: [RESTRoute] = [],
        access: RPCAccess = .authenticated,
        _ handler: @escaping @Sendable (Request, ResponseStream<Response>, ServerContext) async throws -> Void
    ) -> RPCHandler {
        RPCHandler(
            descriptor: RPCMethodDescriptor(service: service, method: method, kind: .serverStreaming), access: access,
            body: .task { requests, writer, context in
                let request: Request = try await requests.single()
                try await handler(request, ResponseStream(writer: writer), context)
            },
            restRoutes: rest,
            restInvoker: { http, route, context in
                // REST gets the stream as NDJSON (one JSON message per line)
                // or as server-sent events, each message as it is produced
                // when the transport can stream; else whole at the end.
                let request = try RESTBridge.decodeRequest(Request.self, from: http, route: route)
                if let sink = http.streamSink {
                    let writer = StreamingJSONWriter<Response>(
                        sink: sink, events: http.header("accept")?.contains("text/event-stream") ?? false,
                        encoder: http.jsonEncoder, status: route.successStatus, context: context)
                    do {
                        try await handler(request, ResponseStream(writer: RPCResponseWriter(sink: writer)), context)
                    } catch {
                        // Before the first message: an ordinary error response.
                        guard writer.started else { throw error }
                        try? await writer.fail(RPCError(from: error))
                        return .streamed(status: route.successStatus)
                    }
                    try await writer.finish()
                    return .streamed(status: route.successStatus)
                }
                let collector = NDJSONCollector<Response>(encoder: http.jsonEncoder)
                try await handler(request, ResponseStream(writer: RPCResponseWriter(sink: collector)), context)
                return HTTPResponse(
                    status: route.successStatus,
                    headers: [("content-type", "application/x-ndjson")] + RESTBridge.headers(from: context),
                    body: collector.body)
            },
            requestMessageName: Request.protoMessageName, responseMessageName: Response.protoMessageName)
    }

    public static func clientStreaming<Request: SwiftProtobuf.Message, Response: SwiftProtobuf.Message>(
        service: String,
        method: String,
        request: Request.Type = Request.self,
        response: Response.Type = Response.self,
        access: RPCAccess = .authenticated,
        _ handler: @escaping @Sendable (RequestStream<Request>, ServerContext) async throws -> Response
    ) -> RPCHandler {
        RPCHandler(
            descriptor: RPCMethodDescriptor(service: service, method: method, kind: .clientStreaming), access: access,
            body: .task { requests, writer, context in
                let response = try await handler(RequestStream(raw: requests), context)
                try await writer.write(framed: try ProtobufCoding.encode(response))
            })
    }

    public static func bidiStreaming<Request: SwiftProtobuf.Message, Response: SwiftProtobuf.Message>(
        service: String,
        method: String,
        request: Request.Type = Request.self,
        response: Response.Type = Response.self,
        access: RPCAccess = .authenticated,
        _ handler: @escaping @Sendable (RequestStream<Request>, ResponseStream<Response>, ServerContext) async throws
            -> Void
    ) -> RPCHandler {
        RPCHandler(
            descriptor: RPCMethodDescriptor(service: service, method: method, kind: .bidiStreaming), access: access,
            body: .task { requests, writer, context in
                try await handler(RequestStream(raw: requests), ResponseStream(writer: writer), context)
            })
    }
}

/// The wire form of a prepared response: all the gRPC fast path reads. A
/// non-generic base class, so that a call reads it with no generic metadata
/// lookup (the fast path's closure is generic over the message types; a
/// generic struct there cost a runtime metadata-cache lookup per call).
public class PreparedFrame: @unchecked Sendable {
    /// Immutable after init.
    let framed: GRPCFramedMessage

    init(framed: GRPCFramedMessage) { self.framed = framed }
}

/// A response message serialized once, for answering many calls from a cache.
public final class PreparedResponse<Message: SwiftProtobuf.Message>: PreparedFrame, @unchecked Sendable {
    public let message: Message
    /// Its JSON for the REST bridge, written on first use and kept with it.
    private let json = Mutex<(encoder: ObjectIdentifier?, bytes: [UInt8])?>(nil)

    public init(_ message: Message) throws {
        self.message = message
        var framed = try ProtobufCoding.encode(message)
        framed.seal()
        super.init(framed: framed)
    }

    /// The message's JSON by `encoder` (nil: swift-protobuf's), written once.
    func jsonBytes(_ encoder: ProtoJSONEncoder?) throws -> [UInt8] {
        let key = encoder.map(ObjectIdentifier.init)
        if let cached = json.withLock({ $0 }), cached.encoder == key { return cached.bytes }
        let bytes = try RESTBridge.encodeResponse(message, encoder: encoder)
        json.withLock { $0 = (key, bytes) }
        return bytes
    }
}


/// A service: a name and its methods, declared once.
public protocol RPCService: Sendable {
    var handlers: [RPCHandler] { get }
}

enum ProtobufCoding {
    static func decode<M: SwiftProtobuf.Message>(_ bytes: ArraySlice<UInt8>) throws -> M {
        try bytes.withUnsafeBytes { try decode($0) }
    }

    /// Decodes in place (RawSpan), without a copy.
    static func decode<M: SwiftProtobuf.Message>(_ bytes: UnsafeRawBufferPointer) throws -> M {
        // No bytes are the default message (proto3); a health check's
        // request usually is one.
        if bytes.isEmpty { return M() }
        do {
            return try M(serializedBytes: bytes.bytes)
        } catch {
            throw RPCError(
                code: .invalidArgument,
                message: "cannot decode \(M.protoMessageName): \(error)",
                cause: error)
        }
    }

    /// Serializes behind room for the gRPC prefix (see `GRPCFramedMessage`).
    static func encode<M: SwiftProtobuf.Message>(_ message: M) throws -> GRPCFramedMessage {
        do {
            return try message.serializedBytes()
        } catch {
            throw RPCError(code: .internal, message: "cannot encode response", cause: error)
        }
    }
}

// MARK: - Streams seen by handlers

/// The transport side of a call's request messages (payloads, decompressed).
public protocol RPCRequestSource: Sendable {
    /// The next request message, or nil at end of stream.
    func next() async throws -> ArraySlice<UInt8>?
}

/// The transport side of a call's response messages.
public protocol RPCResponseSink: Sendable {
    /// Sends one response message (sending response headers first if needed),
    /// suspending while the peer is not reading (backpressure).
    func write(_ message: GRPCFramedMessage) async throws
}

public struct RPCRequestStream: Sendable {
    let source: any RPCRequestSource

    public init(source: any RPCRequestSource) { self.source = source }

    public func next() async throws -> ArraySlice<UInt8>? { try await source.next() }

    /// Exactly one message, as unary and server-streaming calls require.
    func single<M: SwiftProtobuf.Message>() async throws -> M {
        guard let first = try await source.next() else {
            throw RPCError(code: .internal, message: "the call ended without a request message")
        }
        return try ProtobufCoding.decode(first)
    }
}

public struct RPCResponseWriter: Sendable {
    let sink: any RPCResponseSink

    public init(sink: any RPCResponseSink) { self.sink = sink }

    /// Sends one serialized message.
    public func write(_ payload: [UInt8]) async throws { try await sink.write(GRPCFramedMessage(payload)) }

    func write(framed message: GRPCFramedMessage) async throws { try await sink.write(message) }
}

/// Typed request messages of a client- or bidi-streaming call.
public struct RequestStream<Message: SwiftProtobuf.Message>: AsyncSequence, Sendable {
    public typealias Element = Message
    let raw: RPCRequestStream

    public struct AsyncIterator: AsyncIteratorProtocol {
        let raw: RPCRequestStream
        public mutating func next() async throws -> Message? {
            guard let bytes = try await raw.next() else { return nil }
            return try ProtobufCoding.decode(bytes)
        }
    }

    public func makeAsyncIterator() -> AsyncIterator { AsyncIterator(raw: raw) }
}

/// Typed response messages of a server- or bidi-streaming call.
public struct ResponseStream<Message: SwiftProtobuf.Message>: Sendable {
    let writer: RPCResponseWriter

    /// Sends one message; suspends while the client is not reading.
    public func write(_ message: Message) async throws {
        try await writer.write(framed: try ProtobufCoding.encode(message))
    }
}
