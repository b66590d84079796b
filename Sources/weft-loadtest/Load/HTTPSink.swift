import NIOCore
import NIOHTTP1
import NIOPosix
import Synchronization

/// A local HTTP target for `http` tasks: answers every request 200 with a
/// small JSON body and counts them. Binds 127.0.0.1 on a free port; the
/// server under test must allow it through its egress guard
/// (`--egress-allow 127.0.0.1`).
final class HTTPSink: Sendable {
    private let channel: any Channel
    private let requests: Atomic<Int>
    let port: Int

    var url: String { "http://127.0.0.1:\(port)/sink" }
    var received: Int { requests.load(ordering: .relaxed) }

    private init(channel: any Channel, port: Int) {
        self.channel = channel
        self.requests = Atomic(0)
        self.port = port
    }

    static func start(group: any EventLoopGroup) async throws -> HTTPSink {
        let counter = Counter()
        let channel = try await ServerBootstrap(group: group)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.configureHTTPServerPipeline()
                    try channel.pipeline.syncOperations.addHandler(SinkHandler(counter: counter))
                }
            }
            .bind(host: "127.0.0.1", port: 0).get()
        let sink = HTTPSink(channel: channel, port: channel.localAddress?.port ?? 0)
        counter.sink = sink
        return sink
    }

    func count() { requests.add(1, ordering: .relaxed) }

    func stop() async { try? await channel.close() }

    final class Counter: @unchecked Sendable {
        // Set once, before the first request can arrive.
        weak var sink: HTTPSink?
    }

    private final class SinkHandler: ChannelInboundHandler {
        typealias InboundIn = HTTPServerRequestPart
        typealias OutboundOut = HTTPServerResponsePart
        let counter: Counter
        init(counter: Counter) { self.counter = counter }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            guard case .end = unwrapInboundIn(data) else { return }
            counter.sink?.count()
            let body = #"{"ok":true}"#
            var head = HTTPResponseHead(version: .http1_1, status: .ok)
            head.headers.add(name: "content-type", value: "application/json")
            head.headers.add(name: "content-length", value: String(body.utf8.count))
            context.write(wrapOutboundOut(.head(head)), promise: nil)
            context.write(wrapOutboundOut(.body(.byteBuffer(context.channel.allocator.buffer(string: body)))), promise: nil)
            context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: nil)
        }
    }
}
