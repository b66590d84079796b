import Logging
public import NIOCore

/// One non-gRPC HTTP request through the server, the same whichever
/// transport brought it (HTTP/1.1, HTTP/2, the in-process test transport):
/// routing, then for an RPC's REST route the interceptor chain before the
/// body is decoded, then the handler, all inside the request's span, with
/// its metrics and access line (`CallObservability`).
public enum HTTPExchange {
    /// What to do with a request: answer at once (404, 405) or run it.
    public enum Dispatch: Sendable {
        case respond(HTTPResponse)
        case run(@Sendable () async -> HTTPResponse)
    }

    /// Routes `request`. An immediate answer is recorded here; the work of
    /// `.run` records itself when it ends.
    public static func dispatch(
        _ request: HTTPRequest, environment: ServerEnvironment, transport: CallHead.Transport = .rest,
        peer: String, peerIdentity: String? = nil, start: NIODeadline = .now()
    ) -> Dispatch {
        let observability = environment.observability
        switch environment.httpRouter.route(request) {
        case .respond(let route, let response):
            // The dashboard's files (the router's fallback) are not user
            // requests for the SLIs; a 404 or 405 is (class `other`).
            observability.answeredHTTP(
                method: request.method, route: route, response: response,
                requestClass: route == HTTPRouter.fallbackRoute ? .none : .other, start: start)
            return .respond(response)
        case .run(let route, let request, let target):
            // Plain routes (/healthz, /metrics, the dashboard's files) are
            // not user requests for the SLIs.
            let requestClass: RequestClass
            if case .operation(let operation) = target { requestClass = operation.descriptor.requestClass } else { requestClass = .none }
            var admitted: CallHead?
            if case .operation(let operation) = target {
                var head = CallHead(
                    descriptor: operation.descriptor, access: operation.access, metadata: RESTBridge.metadata(of: request),
                    transport: transport, peer: peer)
                head.peerIdentity = peerIdentity
                head.httpMethod = request.method
                // The interceptor chain runs here, on the connection's event
                // loop, before the body is decoded (an unauthenticated
                // request with a malformed body is unauthenticated) and
                // before a task is made: a refused call (401, 429) costs no
                // task on the executor the engine runs on, as with gRPC. (A
                // flood of refused REST executes in tasks starved the engine.)
                do {
                    try environment.interceptors.admit(&head)
                } catch {
                    let response = failure(error, route: route, environment: environment)
                    observability.answeredRESTNow(
                        request, route: route, requestClass: requestClass, response: response, start: start)
                    return .respond(response)
                }
                admitted = head
                // Answered on the event loop when the method can (a cache
                // hit of a prepared response), as gRPC does: no task.
                if let inline = operation.inline,
                    let response = answerInline(inline, request, head: head, route: route, environment: environment,
                                                transport: transport, peerIdentity: peerIdentity)
                {
                    observability.answeredRESTNow(
                        request, route: route, requestClass: requestClass, response: response, start: start)
                    return .respond(response)
                }
            }
            return .run { [admitted] in
                await observability.observeREST(request, route: route, requestClass: requestClass, start: start) {
                    await run(
                        target, request, route: route, environment: environment, transport: transport, peerIdentity: peerIdentity,
                        admitted: admitted)
                }
            }
        }
    }

    /// Runs an operation's inline answer; nil when it needs a task.
    private static func answerInline(
        _ inline: @Sendable (HTTPRequest, ServerContext) throws -> HTTPResponse?, _ request: HTTPRequest, head: CallHead,
        route: String, environment: ServerEnvironment, transport: CallHead.Transport, peerIdentity: String?
    ) -> HTTPResponse? {
        let context = context(of: head, transport: transport, peerIdentity: peerIdentity)
        do {
            guard let response = try inline(request, context) else { return nil }
            environment.interceptors.completed(head, code: .ok)
            return response
        } catch {
            environment.interceptors.completed(head, code: RPCError(from: error).code)
            return failure(error, route: route, environment: environment)
        }
    }

    /// The handler's context of an admitted REST call.
    private static func context(of head: CallHead, transport: CallHead.Transport, peerIdentity: String?) -> ServerContext {
        ServerContext(
            descriptor: head.descriptor, requestMetadata: head.metadata, deadline: nil, peer: head.peer,
            requestEncoding: "identity", responseEncoding: "identity", principal: head.principal, audit: head.audit,
            transport: transport, peerIdentity: peerIdentity)
    }

    /// A thrown error as its JSON error body (internals logged, never sent).
    private static func failure(_ error: any Error, route: String, environment: ServerEnvironment) -> HTTPResponse {
        let rpc = RPCError(from: error)
        // A client that went away cancels its request or closes its
        // stream (an idle live stream ends so): not a server error.
        if let cause = rpc.cause, !(cause is CancellationError), !(cause is HTTPStreamClosed) {
            environment.logger.error("\(route) failed: \(cause)")
        }
        return .error(rpc)
    }

    /// Runs a route; a thrown error becomes its JSON error body (internals
    /// logged, never sent).
    private static func run(
        _ target: HTTPRouter.Target, _ request: HTTPRequest, route: String, environment: ServerEnvironment,
        transport: CallHead.Transport, peerIdentity: String?, admitted: CallHead?
    ) async -> HTTPResponse {
        do {
            switch target {
            case .plain(let handler):
                return try await handler(request)
            case .operation(let operation):
                // Admitted by the chain in `dispatch`.
                let head = admitted!
                let context = context(of: head, transport: transport, peerIdentity: peerIdentity)
                let response: HTTPResponse
                do {
                    response = try await operation.invoke(request, context)
                } catch {
                    environment.interceptors.completed(head, code: RPCError(from: error).code)
                    throw error
                }
                environment.interceptors.completed(head, code: .ok)
                return response
            }
        } catch {
            return failure(error, route: route, environment: environment)
        }
    }
}
