import Logging
import NIOCore
import NIOHTTP1

/// Tells HTTP/2 with prior knowledge from HTTP/1.1 on a shared port: the
/// HTTP/2 connection preface is a fixed 24-byte string. Once decided, the
/// sniffer installs that protocol's handlers, replays what it buffered and
/// removes itself.
final class ProtocolSniffer: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer

    static let preface = Array("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".utf8)

    private let environment: ServerEnvironment
    private let registry: ConnectionRegistry
    private var buffered: ByteBuffer?
    /// The verified client certificate's identity, when TLS established one.
    private var peerIdentity: String?
    /// TLS was established before the first request (`url.scheme` https).
    private var secure = false

    init(environment: ServerEnvironment, registry: ConnectionRegistry) {
        self.environment = environment
        self.registry = registry
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var incoming = unwrapInboundIn(data)
        if buffered == nil {
            buffered = incoming
        } else {
            buffered!.writeBuffer(&incoming)
        }
        let bytes = buffered!.readableBytesView
        let compared = min(bytes.count, Self.preface.count)
        let matches = bytes.prefix(compared).elementsEqual(Self.preface.prefix(compared))
        if matches && compared < Self.preface.count { return }  // need more bytes
        do {
            try configure(context: context, http2: matches)
        } catch {
            environment.logger.error("cannot set up connection: \(error)")
            context.close(promise: nil)
            return
        }
        let replay = buffered!
        buffered = nil
        context.fireChannelRead(wrapInboundOut(replay))
        context.fireChannelReadComplete()
        context.pipeline.syncOperations.removeHandler(context: context, promise: nil)
    }

    private func configure(context: ChannelHandlerContext, http2: Bool) throws {
        let channel = context.channel
        let peer = channel.remoteAddress.map { "\($0)" } ?? "unknown"
        let client = HTTPClientInfo(
            scheme: secure ? "https" : "http", remote: channel.remoteAddress, local: channel.localAddress)
        let operations = context.pipeline.syncOperations
        if http2 {
            let handler = HTTP2ServerConnectionHandler(
                environment: environment, peer: peer, peerIdentity: peerIdentity, client: client)
            try operations.addHandler(handler, position: .after(self))
            let bound = NIOLoopBound(handler, eventLoop: channel.eventLoop)
            registry.register(channel) { bound.value.initiateGracefulShutdown() }
        } else {
            let handler = HTTP1ServerHandler(environment: environment, peer: peer, peerIdentity: peerIdentity, client: client)
            // The handler does what NIOHTTP1's pipelining and error handlers
            // did, and writes its responses as bytes (no response encoder).
            try operations.addHandler(handler)
            try operations.addHandler(
                ByteToMessageHandler(HTTPRequestDecoder(leftOverBytesStrategy: .dropBytes)), position: .after(self))
            let bound = NIOLoopBound(handler, eventLoop: channel.eventLoop)
            registry.register(channel) { bound.value.initiateGracefulShutdown() }
        }
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let established = event as? TLSEstablished {
            peerIdentity = established.clientIdentity
            secure = true
            return
        }
        // Connected but never said anything: close when the idle timer fires.
        if event is IdleStateHandler.IdleStateEvent {
            context.close(promise: nil)
            return
        }
        context.fireUserInboundEventTriggered(event)
    }
}
