import NIOCore
import NIOPosix
import WeftRPC

/// Gathers the server's replies and hands them out one at a time, each
/// wait with its own deadline armed on the event loop: a server that stops
/// answering fails the wait with `SMTPError.timeout`, it never hangs it.
final class SMTPReplyHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private let eventLoop: any EventLoop
    private var decoder = SMTPReplyDecoder()
    /// Replies that arrived before anyone asked for them.
    private var replies = CircularBuffer<SMTPReply>()
    private var waiter: Waiter?
    /// The first thing that ended the conversation; later waits fail with it.
    private var failure: SMTPError?
    private var context: ChannelHandlerContext?

    private struct Waiter {
        let promise: EventLoopPromise<SMTPReply>
        let deadline: Scheduled<Void>
    }

    init(eventLoop: any EventLoop) {
        self.eventLoop = eventLoop
    }

    /// Bytes or replies received that no command asked for yet. After a
    /// STARTTLS 220 there must be none: plaintext the server (or someone on
    /// the path) sent then would otherwise be read as if it came over TLS.
    var hasUnreadInput: Bool { !replies.isEmpty || decoder.hasBufferedInput }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        self.context = nil
        fail(.connect("the connection was torn down"))
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let bytes = unwrapInboundIn(data)
        do throws(SMTPError) {
            replies.append(contentsOf: try decoder.feed(bytes.readableBytesView))
            // The client never pipelines: a server that sends reply after
            // reply unasked is broken or hostile, not to be buffered.
            guard replies.count <= 4 else { throw SMTPError.protocolError("the server sent replies nobody asked for") }
        } catch {
            fail(error)
            context.close(promise: nil)
            return
        }
        deliver()
    }

    func channelInactive(context: ChannelHandlerContext) {
        fail(.connect("the server closed the connection"))
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        if let tls = error as? TLSClientError {
            fail(.tls(tls.description))
        } else {
            fail(.connect(String(describing: error)))
        }
        context.close(promise: nil)
    }

    /// Sends `bytes` (nil: nothing, as for the greeting) and returns the
    /// next reply, failing after `timeout`.
    func exchange(_ bytes: String?, stage: String, timeout: TimeAmount) -> EventLoopFuture<SMTPReply> {
        guard let context else {
            return eventLoop.makeFailedFuture(failure ?? .connect("the connection is closed"))
        }
        guard waiter == nil else {
            return eventLoop.makeFailedFuture(SMTPError.protocolError("a command was sent while another awaited its reply"))
        }
        let promise = eventLoop.makePromise(of: SMTPReply.self)
        let deadline = eventLoop.assumeIsolated().scheduleTask(in: timeout) {
            self.timedOut(stage: stage, after: timeout)
        }
        waiter = Waiter(promise: promise, deadline: deadline)
        if let bytes {
            var buffer = context.channel.allocator.buffer(capacity: bytes.utf8.count)
            buffer.writeString(bytes)
            // A failed write closes the channel, which fails the wait.
            context.writeAndFlush(wrapOutboundOut(buffer), promise: nil)
        }
        deliver()
        return promise.futureResult
    }

    private func timedOut(stage: String, after timeout: TimeAmount) {
        fail(.timeout("no reply to \(stage) within \(timeout.secondsText) s"))
        context?.close(promise: nil)
    }

    /// A reply that arrived wins over a failure that came after it (a
    /// "421 closing" then the close).
    private func deliver() {
        guard let current = waiter else { return }
        if let reply = replies.popFirst() {
            waiter = nil
            current.deadline.cancel()
            current.promise.succeed(reply)
        } else if let failure {
            waiter = nil
            current.deadline.cancel()
            current.promise.fail(failure)
        }
    }

    private func fail(_ error: SMTPError) {
        if failure == nil { failure = error }
        deliver()
    }
}

extension TimeAmount {
    /// "30", "0.5": seconds for error texts, without a trailing ".0".
    fileprivate var secondsText: String {
        let seconds = Double(nanoseconds) / 1e9
        return seconds == seconds.rounded() ? String(Int(seconds)) : String(seconds)
    }
}

/// One TCP connection to an SMTP server: commands out, replies in, and the
/// switch to TLS after STARTTLS. Every wait is bounded by `timeout`.
final class SMTPConnection: Sendable {
    let channel: any Channel
    /// Set by the channel initializer, read on the channel's loop.
    private let replies: NIOLoopBoundBox<SMTPReplyHandler?>
    let timeout: TimeAmount

    private init(channel: any Channel, replies: NIOLoopBoundBox<SMTPReplyHandler?>, timeout: TimeAmount) {
        self.channel = channel
        self.replies = replies
        self.timeout = timeout
    }

    /// Connects to `address` when given (the egress guard's pinned
    /// address), else resolves `host`.
    static func connect(
        host: String, port: Int, address: SocketAddress?, group: any EventLoopGroup,
        connectTimeout: TimeAmount, commandTimeout: TimeAmount
    ) async throws(SMTPError) -> SMTPConnection {
        // The handler is kept from the initializer on, not looked up after
        // the connect: a server that talks and hangs up at once would have
        // it removed by then.
        let eventLoop = group.next()
        let replies = NIOLoopBoundBox.makeEmptyBox(valueType: SMTPReplyHandler.self, eventLoop: eventLoop)
        let bootstrap = ClientBootstrap(group: eventLoop)
            .connectTimeout(connectTimeout)
            // Commands are small and each waits for its reply.
            .channelOption(.socketOption(.tcp_nodelay), value: 1)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    let handler = SMTPReplyHandler(eventLoop: channel.eventLoop)
                    try channel.pipeline.syncOperations.addHandler(handler)
                    replies.value = handler
                }
            }
        let target = address.map { "\(host) at \($0)" } ?? "\(host):\(port)"
        do {
            let channel = try await (address.map { bootstrap.connect(to: $0) } ?? bootstrap.connect(host: host, port: port)).get()
            return SMTPConnection(channel: channel, replies: replies, timeout: commandTimeout)
        } catch ChannelError.connectTimeout(let amount) {
            throw .timeout("no connection to \(target) within \(amount.secondsText) s")
        } catch {
            throw .connect("\(target): \(error)")
        }
    }

    /// The next reply, with no command (the greeting).
    func reply(stage: String) async throws(SMTPError) -> SMTPReply {
        try await exchange(nil, stage: stage, timeout: timeout)
    }

    /// Sends one command line (CRLF added) and awaits its reply.
    func command(_ line: String, stage: String, timeout: TimeAmount? = nil) async throws(SMTPError) -> SMTPReply {
        try await exchange(line + "\r\n", stage: stage, timeout: timeout ?? self.timeout)
    }

    /// Sends the DATA payload as it is and awaits the reply to it.
    func data(_ payload: String) async throws(SMTPError) -> SMTPReply {
        try await exchange(payload, stage: "message", timeout: timeout)
    }

    private func exchange(_ bytes: String?, stage: String, timeout: TimeAmount) async throws(SMTPError) -> SMTPReply {
        guard !Task.isCancelled else { throw Self.cancelled }
        let replies = self.replies
        let channel = self.channel
        let future = channel.eventLoop.flatSubmit { () -> EventLoopFuture<SMTPReply> in
            guard let handler = replies.value else {
                return channel.eventLoop.makeFailedFuture(SMTPError.connect("the connection is closed"))
            }
            return handler.exchange(bytes, stage: stage, timeout: timeout)
        }
        do {
            return try await cancellable(future)
        } catch let error as SMTPError {
            throw error
        } catch {
            throw .connect(String(describing: error))
        }
    }

    /// Transient: the server may or may not have taken the message, as with
    /// a connection lost at the same point.
    private static let cancelled = SMTPError.connect("the send was cancelled")

    /// Waits for `future`; a cancelled task closes the connection rather
    /// than wait out the command timeout (a draining server stops sooner).
    private func cancellable<T: Sendable>(_ future: EventLoopFuture<T>) async throws -> T {
        let channel = self.channel
        do {
            return try await withTaskCancellationHandler {
                try await future.get()
            } onCancel: {
                channel.close(promise: nil)
            }
        } catch {
            throw Task.isCancelled ? Self.cancelled : error
        }
    }

    /// Puts TLS in front of everything after the server's 220 to STARTTLS
    /// and waits for the handshake (bounded by the command timeout).
    func startTLS(_ configuration: TLSClientConfiguration) async throws(SMTPError) -> TLSClientHandler.Established {
        let replies = self.replies
        let channel = self.channel
        let timeout = self.timeout
        let future = channel.eventLoop.flatSubmit { () -> EventLoopFuture<TLSClientHandler.Established> in
            guard let handler = replies.value else {
                return channel.eventLoop.makeFailedFuture(SMTPError.connect("the connection is closed"))
            }
            guard !handler.hasUnreadInput else {
                return channel.eventLoop.makeFailedFuture(
                    SMTPError.protocolError("the server sent more after its STARTTLS reply (refused: it would be read as if sent over TLS)"))
            }
            let promise = channel.eventLoop.makePromise(of: TLSClientHandler.Established.self)
            do {
                let tls = try TLSClientHandler(configuration: configuration, handshakePromise: promise)
                try channel.pipeline.syncOperations.addHandler(tls, position: .first)
            } catch {
                return channel.eventLoop.makeFailedFuture(error)
            }
            let deadline = channel.eventLoop.scheduleTask(in: timeout) {
                // A second completion of a promise is ignored: whichever comes first wins.
                promise.fail(SMTPError.timeout("no TLS handshake within \(timeout.secondsText) s"))
                channel.close(promise: nil)
            }
            promise.futureResult.whenComplete { _ in deadline.cancel() }
            return promise.futureResult
        }
        do {
            return try await cancellable(future)
        } catch let error as SMTPError {
            throw error
        } catch let error as TLSClientError {
            throw .tls(error.description)
        } catch {
            throw .tls(String(describing: error))
        }
    }

    /// Ends the session politely (QUIT), then closes; neither may fail the
    /// send, whose message the server has already accepted.
    func quit() async {
        _ = try? await command("QUIT", stage: "QUIT", timeout: min(timeout, .seconds(5)))
        await close()
    }

    func close() async {
        try? await channel.close().get()
    }
}
