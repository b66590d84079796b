public import NIOCore
import Foundation
import Logging
import Tracing
import WeftObservability

/// A non-gRPC HTTP request, the same whether it came over HTTP/1.1 or HTTP/2.
/// The connection a request came on: its scheme (`https` behind Weft's
/// TLS) and the client's address and port.
public struct HTTPClientInfo: Sendable {
    public var scheme: String
    public var address: String?
    public var port: Int?
    /// The address and port the connection came in on (`server.address`
    /// when the request names no host).
    public var localAddress: String?
    public var localPort: Int?

    public init(scheme: String, remote: SocketAddress?, local: SocketAddress? = nil) {
        self.scheme = scheme
        self.address = remote?.ipAddress
        self.port = remote?.port
        self.localAddress = local?.ipAddress
        self.localPort = local?.port
    }
}

public struct HTTPRequest: Sendable {
    public var method: String
    /// The path without the query string.
    public var path: String
    public var query: String?
    public var headers: [(name: String, value: String)]
    public var body: ByteBuffer
    /// Values of `{name}` segments of the matched route template.
    public var pathParameters: [String: String] = [:]
    /// Request fields that are booleans: their query values `true`/`false`
    /// become JSON booleans (all other query values stay text).
    public var booleanFields: Set<String> = []
    /// Rewrites the request object's timestamps with offsets as UTC: the
    /// bridge retries with it when the protobuf parser refused an offset.
    public var utcTimestamps: (@Sendable ([String: Any]) -> [String: Any])?
    /// Set by transports that can send a response as it is produced.
    public var streamSink: (any HTTPStreamSink)?
    /// Writes response messages as JSON with their defaults (set by the
    /// router; nil: swift-protobuf's JSON as it is).
    public var jsonEncoder: ProtoJSONEncoder?
    /// Where the request came from, for its span (`url.scheme`,
    /// `client.address`, `client.port`): set by the socket transports.
    public var client: HTTPClientInfo?

    public init(method: String, target: String, headers: [(name: String, value: String)], body: ByteBuffer) {
        self.method = method
        if let q = target.firstIndex(of: "?") {
            self.path = String(target[..<q])
            self.query = String(target[target.index(after: q)...])
        } else {
            self.path = target
            self.query = nil
        }
        // Names in lower case once, so lookups compare bytes (HTTP/2 and
        // the HTTP/1.1 handler already send them so).
        self.headers =
            headers.contains { $0.name.utf8.contains { $0 >= UInt8(ascii: "A") && $0 <= UInt8(ascii: "Z") } }
            ? headers.map { ($0.name.lowercased(), $0.value) } : headers
        self.body = body
    }

    /// The first value of a header; `name` in lower case.
    public func header(_ name: String) -> String? {
        headers.first { $0.name == name }?.value
    }
}

public struct HTTPResponse: Sendable {
    public var status: Int
    public var headers: [(name: String, value: String)]
    public var body: [UInt8]
    /// The head and body went out through the request's `streamSink`: the
    /// transport only ends the response.
    public var streamed = false
    /// How the request ended, when an `RPCError` says more than the status
    /// (an overload's 429); nil: from the status.
    public var outcome: RequestOutcome?
    /// The request did not decode into the method's request message
    /// (`weft_rest_request_decode_errors_total`).
    public var decodeFailed = false

    public static func streamed(status: Int) -> HTTPResponse {
        var response = HTTPResponse(status: status)
        response.streamed = true
        return response
    }

    public init(status: Int, headers: [(name: String, value: String)] = [], body: [UInt8] = []) {
        self.status = status
        self.headers = headers
        self.body = body
    }

    public static func json(_ status: Int, _ object: Any) -> HTTPResponse {
        let data = (try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys, .withoutEscapingSlashes])) ?? Data("{}".utf8)
        return HTTPResponse(status: status, headers: [("content-type", "application/json")], body: Array(data))
    }

    /// The JSON error body of the REST bridge: google.rpc.Status-shaped
    /// (`code` is the numeric gRPC code), with the HTTP status of that code.
    /// A `retry-after` in the error's metadata (quotas, rate limits)
    /// becomes the HTTP header.
    public static func error(_ error: RPCError) -> HTTPResponse {
        var response = json(error.httpStatus, ["code": error.code.rawValue, "message": error.message, "details": [Any]()])
        response.outcome = error.outcome
        response.decodeFailed = error.decodeFailed
        if let retryAfter = error.metadata[string: "retry-after"] { response.headers.append(("retry-after", retryAfter)) }
        // Cookies an error expires (a dashboard session that ended).
        for entry in error.metadata where entry.key == "set-cookie" {
            if case .string(let value) = entry.value { response.headers.append(("set-cookie", value)) }
        }
        return response
    }

    /// An answer the transport or router gives itself (404, 405, 413, 415,
    /// 431): its outcome follows the HTTP status (a 405 carries gRPC's
    /// UNIMPLEMENTED, but a wrong method is the caller's mistake).
    public static func error(status: Int, code: RPCError.Code, message: String) -> HTTPResponse {
        json(status, ["code": code.rawValue, "message": message, "details": [Any]()])
    }
}

/// Routes non-gRPC HTTP requests by method and path template
/// (`/workflows/{workflowId}`); literal segments win over `{params}`.
/// Built once at start-up, then read-only.
public struct HTTPRouter: Sendable {
    public typealias Handler = @Sendable (HTTPRequest) async throws -> HTTPResponse

    /// What a route runs: a plain handler (health, metrics, the OpenAPI
    /// document: public, no interceptors) or an RPC method's REST binding
    /// (through the interceptor chain, with a `ServerContext`).
    public enum Target: Sendable {
        case plain(Handler)
        case operation(Operation)
    }

    /// An RPC method bound to a REST route.
    public struct Operation: Sendable {
        public let descriptor: RPCMethodDescriptor
        public let access: RPCAccess
        let invoke: @Sendable (HTTPRequest, ServerContext) async throws -> HTTPResponse
        /// Answers on the event loop when it can (nil from it: `invoke` in a task).
        var inline: (@Sendable (HTTPRequest, ServerContext) throws -> HTTPResponse?)?
    }

    struct Route: Sendable {
        let method: String
        let template: String
        let segments: [Segment]
        let target: Target
    }

    enum Segment: Sendable, Equatable {
        case literal(String)
        case parameter(String)
    }

    private var routes: [Route] = []
    /// Indices into `routes` (in its order) by segment count and first
    /// segment ("*" for a parameter): a request checks only the routes that
    /// can match its shape, not all of them.
    private var shapes: [String: [Int]] = [:]
    /// Answers a GET or HEAD that no route matches (the web dashboard's
    /// files), or nil for the usual 404. Synchronous: it serves from memory
    /// on the event loop.
    public var fallback: (@Sendable (HTTPRequest) -> HTTPResponse?)?
    /// The `http_route` label of what `fallback` answers.
    public static let fallbackRoute = "/{webAsset}"
    /// REST routes registered from RPC services, in registration order.
    public internal(set) var restOperations: [RESTOperation] = []

    public init() {}

    /// Adds a plain route: public, run without interceptors.
    public mutating func add(_ method: String, _ template: String, _ handler: @escaping Handler) {
        add(method, template, target: .plain(handler))
    }

    mutating func add(_ method: String, _ template: String, target: Target) {
        let segments = Self.split(template).map { part -> Segment in
            part.hasPrefix("{") && part.hasSuffix("}") ? .parameter(String(part.dropFirst().dropLast())) : .literal(part)
        }
        routes.append(Route(method: method, template: template, segments: segments, target: target))
        // More literal segments first, so `/workflows/search` beats `/workflows/{id}`.
        routes.sort { lhs, rhs in
            for (l, r) in zip(lhs.segments, rhs.segments) {
                switch (l, r) {
                case (.literal, .parameter): return true
                case (.parameter, .literal): return false
                default: continue
                }
            }
            return lhs.segments.count > rhs.segments.count
        }
        shapes = [:]
        for (index, route) in routes.enumerated() {
            shapes[Self.shape(count: route.segments.count, first: route.segments.first), default: []].append(index)
        }
    }

    private static func shape(count: Int, first: Segment?) -> String {
        switch first {
        case .literal(let text)?: "\(count)/\(text)"
        case .parameter?: "\(count)/*"
        case nil: "0/"
        }
    }

    public enum Match: Sendable {
        case found(route: String, target: Target, parameters: [String: String])
        /// The path exists with other methods: 405 with `Allow`.
        case methodNotAllowed(allowed: [String])
        case notFound
    }

    public func match(method: String, path: String) -> Match {
        let parts = Self.split(path)
        var allowed: [String] = []
        // The most literal template that matches the path owns it: other
        // methods on it are 405, never a fall-through to a `{param}` route
        // (`PUT /workflows/search` is not a PUT of workflow "search").
        var owner: [Segment]?
        // The routes of this shape, in `routes` order: a literal first
        // segment equal to the path's, or a parameter.
        let literal = shapes[Self.shape(count: parts.count, first: parts.first.map { .literal($0) })] ?? []
        let parameter = parts.isEmpty ? [] : shapes[Self.shape(count: parts.count, first: .parameter(""))] ?? []
        for route in (literal + parameter).sorted().lazy.map({ routes[$0] }) {
            if let owner, owner != route.segments { continue }
            var parameters: [String: String] = [:]
            var ok = true
            for (segment, part) in zip(route.segments, parts) {
                switch segment {
                case .literal(let literal): ok = literal == part
                case .parameter(let name):
                    parameters[name] = part.utf8.contains(UInt8(ascii: "%")) ? (part.removingPercentEncoding ?? part) : part
                }
                if !ok { break }
            }
            guard ok else { continue }
            owner = route.segments
            if route.method == method || (method == "HEAD" && route.method == "GET") {
                return .found(route: route.template, target: route.target, parameters: parameters)
            }
            allowed.append(route.method)
        }
        return allowed.isEmpty ? .notFound : .methodNotAllowed(allowed: allowed)
    }

    /// What to do with a request: answer at once (404, 405) or run a route.
    public enum Routing: Sendable {
        case respond(route: String, HTTPResponse)
        case run(route: String, request: HTTPRequest, target: Target)
    }

    /// Routes a request for either transport (HTTP/1.1 or HTTP/2). `route`
    /// is the metric label: the template, or `unmatched`.
    public func route(_ request: HTTPRequest) -> Routing {
        switch match(method: request.method, path: request.path) {
        case .notFound:
            if request.method == "GET" || request.method == "HEAD", let response = fallback?(request) {
                return .respond(route: Self.fallbackRoute, response)
            }
            return .respond(
                route: "unmatched",
                .error(status: 404, code: .notFound, message: "no route for \(request.method) \(request.path)"))
        case .methodNotAllowed(let allowed):
            var response = HTTPResponse.error(
                status: 405, code: .unimplemented, message: "\(request.method) is not allowed on \(request.path)")
            response.headers.append(("allow", allowed.joined(separator: ", ")))
            return .respond(route: "unmatched", response)
        case .found(let route, let target, let parameters):
            var request = request
            request.pathParameters = parameters
            return .run(route: route, request: request, target: target)
        }
    }

    private static func split(_ path: String) -> [String] {
        path.split(separator: "/", omittingEmptySubsequences: true).map(String.init)
    }
}

extension HTTPRouter {
    /// Adds the REST routes of every method of `service`: each runs the same
    /// handler as its gRPC method, with JSON mapped to and from its messages.
    ///
    /// `encoder` writes the JSON responses (e.g. with the fields that hold
    /// their default value; nil: swift-protobuf's JSON). `explain` may name
    /// the offending field of a request that did not decode (nil keeps the
    /// generic reason).
    public mutating func register(
        _ service: any RPCService, explain: (@Sendable (_ messageName: String, _ json: [UInt8]) -> String?)? = nil,
        booleanFields: (@Sendable (_ messageName: String) -> Set<String>)? = nil,
        utcTimestamps: (@Sendable (_ messageName: String, _ object: [String: Any]) -> [String: Any])? = nil,
        encoder: ProtoJSONEncoder? = nil
    ) {
        for handler in service.handlers {
            guard let invoke = handler.restInvoker else { continue }
            let descriptor = handler.descriptor
            let booleans = booleanFields?(handler.requestMessageName) ?? []
            let requestMessage = handler.requestMessageName
            let rewrite: (@Sendable ([String: Any]) -> [String: Any])? =
                if let utcTimestamps { { object in utcTimestamps(requestMessage, object) } } else { nil }
            @Sendable func prepare(_ request: HTTPRequest) -> HTTPRequest {
                var request = request
                request.booleanFields = booleans
                request.utcTimestamps = rewrite
                request.jsonEncoder = encoder
                return request
            }
            @Sendable func explained(_ error: RESTDecodeError) -> any Error {
                var failure = error.rpcError
                if let precise = explain?(error.messageName, error.json) {
                    failure = RPCError(code: .invalidArgument, message: "invalid \(error.messageName): \(precise)")
                }
                failure.decodeFailed = true
                return failure
            }
            for route in handler.restRoutes {
                let inline: (@Sendable (HTTPRequest, ServerContext) throws -> HTTPResponse?)? =
                    if let fast = handler.restInline {
                        { request, context in
                            do {
                                return try fast(prepare(request), route, context)
                            } catch let error as RESTDecodeError {
                                throw explained(error)
                            }
                        }
                    } else { nil }
                let invoke: @Sendable (HTTPRequest, ServerContext) async throws -> HTTPResponse = { request, context in
                    do {
                        return try await invoke(prepare(request), route, context)
                    } catch let error as RESTDecodeError {
                        throw explained(error)
                    }
                }
                add(route.method, route.template,
                    target: .operation(Operation(descriptor: descriptor, access: handler.access, invoke: invoke, inline: inline)))
                restOperations.append(RESTOperation(route: route, handler: handler))
            }
        }
    }
}

/// A REST route and the RPC method behind it (for the OpenAPI document).
public struct RESTOperation: Sendable {
    public let route: RESTRoute
    public let descriptor: RPCMethodDescriptor
    public let access: RPCAccess
    public let requestMessageName: String
    public let responseMessageName: String

    init(route: RESTRoute, handler: RPCHandler) {
        self.route = route
        self.descriptor = handler.descriptor
        self.access = handler.access
        self.requestMessageName = handler.requestMessageName
        self.responseMessageName = handler.responseMessageName
    }
}
