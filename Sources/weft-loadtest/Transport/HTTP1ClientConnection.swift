import NIOCore
import NIOHTTP1

/// An HTTP/1.1 keep-alive client connection (NIOHTTP1's codec): one request
/// at a time, no pipelining, as REST clients do. Confined to its channel's
/// event loop.
final class HTTP1ClientConnection: ChannelDuplexHandler, ClientConnection {
    typealias InboundIn = HTTPClientResponsePart
    typealias OutboundIn = Never
    typealias OutboundOut = HTTPClientRequestPart

    private var context: ChannelHandlerContext?
    private var current: (response: WireResponse, wantsBody: Bool, completion: (WireResponse) -> Void)?
    /// Requests handed over while one is in flight (a caller that ignores
    /// `capacity`); sent in order.
    private var waiting: [(PreparedRequest, (WireResponse) -> Void)] = []
    private let authority: String
    private(set) var isOpen = false
    private var closedReason: String?

    let capacity = 1
    var inFlight: Int { (current == nil ? 0 : 1) + waiting.count }

    init(authority: String) {
        self.authority = authority
    }

    func send(_ request: PreparedRequest, completion: @escaping (WireResponse) -> Void) {
        guard closedReason == nil else {
            completion(WireResponse(transportError: closedReason!))
            return
        }
        guard current == nil, isOpen, let context else {
            waiting.append((request, completion))
            return
        }
        let wire = request.wire
        var head = HTTPRequestHead(version: .http1_1, method: HTTPMethod(rawValue: wire.method), uri: wire.path)
        head.headers.add(name: "host", value: authority)
        for (name, value) in wire.headers { head.headers.add(name: name, value: value) }
        if !wire.body.isEmpty || wire.method == "POST" || wire.method == "PUT" || wire.method == "PATCH" {
            head.headers.add(name: "content-length", value: String(wire.body.count))
        }
        current = (WireResponse(), wire.wantsBody, completion)
        context.write(wrapOutboundOut(.head(head)), promise: nil)
        if !wire.body.isEmpty {
            var buffer = context.channel.allocator.buffer(capacity: wire.body.count)
            buffer.writeBytes(wire.body)
            context.write(wrapOutboundOut(.body(.byteBuffer(buffer))), promise: nil)
        }
        context.write(wrapOutboundOut(.end(nil)), promise: nil)
    }

    func flush() { context?.flush() }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head):
            current?.response.httpStatus = Int(head.status.code)
            if let value = head.headers.first(name: "retry-after") { current?.response.retryAfter = Double(value) }
        case .body(var buffer):
            if current?.wantsBody == true, let bytes = buffer.readBytes(length: buffer.readableBytes) {
                current?.response.body.append(contentsOf: bytes)
            }
        case .end:
            guard let done = current else { return }
            current = nil
            done.completion(done.response)
            if !waiting.isEmpty {
                let (request, completion) = waiting.removeFirst()
                send(request, completion: completion)
                context.flush()
            }
        }
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        if context.channel.isActive { activate() }
    }

    func channelActive(context: ChannelHandlerContext) {
        activate()
        context.fireChannelActive()
    }

    private func activate() {
        guard !isOpen, closedReason == nil else { return }
        isOpen = true
        if !waiting.isEmpty, let context {
            let (request, completion) = waiting.removeFirst()
            send(request, completion: completion)
            context.flush()
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        fail("the server closed the connection")
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        fail("connection error: \(error)")
    }

    func close() { context?.close(promise: nil) }

    private func fail(_ reason: String) {
        guard closedReason == nil else { return }
        closedReason = reason
        isOpen = false
        let pending = (current.map { [$0.completion] } ?? []) + waiting.map(\.1)
        current = nil
        waiting = []
        for completion in pending { completion(WireResponse(transportError: reason)) }
        context?.close(promise: nil)
    }
}
