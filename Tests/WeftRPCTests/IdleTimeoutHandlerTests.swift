import NIOCore
import NIOEmbedded
import Testing

@testable import WeftRPC

/// The idle timer on an EmbeddedChannel whose clock the test moves.
@Suite("Idle timeout handler")
struct IdleTimeoutHandlerTests {
    /// Counts the idle events that reach the end of the pipeline.
    final class Events: ChannelInboundHandler {
        typealias InboundIn = NIOAny
        var idle = 0
        func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
            if case .all? = event as? IdleStateHandler.IdleStateEvent { idle += 1 }
        }
    }

    func channel() throws -> (EmbeddedChannel, EmbeddedEventLoop, Events) {
        let loop = EmbeddedEventLoop()
        let channel = EmbeddedChannel(loop: loop)
        let events = Events()
        try channel.pipeline.syncOperations.addHandler(IdleTimeoutHandler(timeout: .seconds(4)))
        try channel.pipeline.syncOperations.addHandler(events)
        try channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 1)).wait()
        return (channel, loop, events)
    }

    @Test("a quiet connection is idle between the timeout and a quarter more, and again each timeout after")
    func quiet() throws {
        let (channel, loop, events) = try channel()
        defer { _ = try? channel.finish() }
        loop.advanceTime(by: .milliseconds(3_900))
        #expect(events.idle == 0)
        loop.advanceTime(by: .milliseconds(1_100))  // 5 s: past the fourth quiet tick of 1 s
        #expect(events.idle == 1)
        loop.advanceTime(by: .seconds(4))
        #expect(events.idle == 2)
    }

    @Test("reads and writes keep a connection from being idle")
    func activity() throws {
        let (channel, loop, events) = try channel()
        defer { _ = try? channel.finish() }
        for second in 0..<12 {
            loop.advanceTime(by: .seconds(1))
            if second % 2 == 0 {
                try channel.writeInbound(channel.allocator.buffer(string: "x"))
            } else {
                try channel.writeOutbound(channel.allocator.buffer(string: "y"))
            }
        }
        #expect(events.idle == 0)
        loop.advanceTime(by: .seconds(6))
        #expect(events.idle == 1)
    }

    @Test("a closed connection's timer stops")
    func closed() throws {
        let (channel, loop, events) = try channel()
        _ = try channel.finish()
        loop.advanceTime(by: .seconds(60))
        #expect(events.idle == 0)
    }
}
