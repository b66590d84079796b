import NIOCore

/// Fires `IdleStateHandler.IdleStateEvent.all` once a connection has neither
/// read nor written for `timeout`, and again each `timeout` while it stays
/// quiet (the protocol handlers decide what idle means for them: HTTP/2 keeps
/// a connection with open streams, HTTP/1.1 one with a request in flight).
///
/// NIO's `IdleStateHandler` sends the same event, but it reads the clock at
/// every read burst and, for every write, makes a promise, registers a
/// callback on it and reads the clock again when it completes. On unary
/// Health/Check a write carries only a few calls, so that was a measurable
/// part of the per-call cost. Here a read or a write sets one flag; a timer
/// that runs `ticksPerTimeout` times per timeout clears it, and the event
/// fires after that many quiet ticks in a row. A connection is therefore
/// called idle between `timeout` and `timeout × (1 + 1/ticksPerTimeout)`
/// after its last read or write.
final class IdleTimeoutHandler: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = NIOAny
    typealias InboundOut = NIOAny
    typealias OutboundIn = NIOAny
    typealias OutboundOut = NIOAny

    static let ticksPerTimeout = 4

    private let tick: TimeAmount
    /// A read or write happened since the last tick.
    private var active = false
    private var quietTicks = 0
    private var timer: Scheduled<Void>?

    init(timeout: TimeAmount) {
        tick = .nanoseconds(max(1, timeout.nanoseconds / Int64(Self.ticksPerTimeout)))
    }

    func handlerAdded(context: ChannelHandlerContext) {
        if context.channel.isActive { arm(context) }
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        disarm()
    }

    func channelActive(context: ChannelHandlerContext) {
        arm(context)
        context.fireChannelActive()
    }

    func channelInactive(context: ChannelHandlerContext) {
        disarm()
        context.fireChannelInactive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        active = true
        context.fireChannelRead(data)
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        active = true
        context.write(data, promise: promise)
    }

    private func arm(_ context: ChannelHandlerContext) {
        guard timer == nil else { return }
        active = false
        quietTicks = 0
        schedule(context)
    }

    private func disarm() {
        timer?.cancel()
        timer = nil
    }

    private func schedule(_ context: ChannelHandlerContext) {
        timer = context.eventLoop.assumeIsolatedUnsafeUnchecked().scheduleTask(in: tick) {
            self.ticked(context)
        }
    }

    private func ticked(_ context: ChannelHandlerContext) {
        guard timer != nil, context.channel.isActive else {
            timer = nil
            return
        }
        if active {
            active = false
            quietTicks = 0
        } else {
            quietTicks += 1
        }
        schedule(context)
        if quietTicks >= Self.ticksPerTimeout {
            quietTicks = 0
            context.fireUserInboundEventTriggered(IdleStateHandler.IdleStateEvent.all)
        }
    }
}
