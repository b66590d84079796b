import COpenSSL
import Logging
import NIOCore

/// What a finished handshake established, sent down the pipeline as a user
/// event before the first decrypted byte.
public struct TLSEstablished: Sendable {
    /// The ALPN protocol chosen ("h2", "http/1.1"), if the client offered one.
    public let alpn: String?
    /// The subject CN of the client's verified certificate (mutual TLS).
    public let clientIdentity: String?
    public let version: String
}

/// TLS on a connection through OpenSSL's memory BIOs: bytes from the socket
/// go into one BIO, OpenSSL's records come out of the other, and the
/// handlers after this one (the protocol sniffer, nghttp2) see plaintext.
/// Nothing here blocks: a handshake advances as bytes arrive, so a slow or
/// stalled client holds only its own connection.
final class TLSServerHandler: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer
    typealias OutboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private let ssl: OpaquePointer
    private let input: OpaquePointer
    private let metrics: TLSMetrics
    private let logger: Logger
    private var state = State.awaitingFirstBytes
    /// OpenSSL's output records on their way to the channel, with the
    /// promises of the plaintext writes they carry.
    private let records: TLSRecordOutput
    /// Plaintext written before the handshake finished (none in practice:
    /// the protocol handlers are added after the first decrypted bytes).
    private var earlyWrites: [(ByteBuffer, EventLoopPromise<Void>?)] = []

    private enum State {
        case awaitingFirstBytes
        case handshaking
        case established
        case closed
    }

    init?(context tls: TLSContext, metrics: TLSMetrics, logger: Logger) {
        guard let ssl = tls.makeSSL() else { return nil }
        guard let input = BIO_new(BIO_s_mem()) else {
            SSL_free(ssl)
            return nil
        }
        guard let output = BIO_new(BIO_s_mem()) else {
            BIO_free(input)
            SSL_free(ssl)
            return nil
        }
        // An empty input BIO means "wait for more", not end of file.
        _ = weft_bio_set_mem_eof_return(input, -1)
        _ = weft_bio_set_mem_eof_return(output, -1)
        SSL_set_bio(ssl, input, output)  // the SSL owns both BIOs now
        SSL_set_accept_state(ssl)
        self.ssl = ssl
        self.input = input
        records = TLSRecordOutput(output: output)
        self.metrics = metrics
        self.logger = logger
    }

    deinit { SSL_free(ssl) }

    // MARK: Inbound

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let bytes = unwrapInboundIn(data)
        switch state {
        case .closed:
            return
        case .awaitingFirstBytes:
            // A TLS record starts with 0x16 (handshake). Anything else is a
            // client speaking plaintext to a TLS port: tell it so, in its
            // own protocol where that is cheap, and close.
            guard let first = bytes.getInteger(at: bytes.readerIndex, as: UInt8.self) else { return }
            guard first == 0x16 else { return refusePlaintext(context: context, bytes) }
            state = .handshaking
        case .handshaking, .established:
            break
        }
        _ = bytes.withUnsafeReadableBytes { BIO_write(input, $0.baseAddress, Int32($0.count)) }
        if state == .handshaking {
            handshake(context: context)
            guard state == .established else { return }
        }
        readPlaintext(context: context)
        records.write(context: context)
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        if state == .established { context.fireChannelReadComplete() }
        records.flush(context: context)
    }

    private func handshake(context: ChannelHandlerContext) {
        let rc = SSL_do_handshake(ssl)
        if rc == 1 {
            state = .established
            metrics.handshakeSucceeded()
            let established = TLSEstablished(alpn: negotiatedALPN(), clientIdentity: clientIdentity(), version: version())
            context.fireUserInboundEventTriggered(established)
            records.write(context: context)
            for (buffer, promise) in earlyWrites { write(context: context, data: wrapOutboundOut(buffer), promise: promise) }
            earlyWrites = []
            return
        }
        switch SSL_get_error(ssl, rc) {
        case SSL_ERROR_WANT_READ, SSL_ERROR_WANT_WRITE:
            records.write(context: context)
            records.flush(context: context)
        default:
            let reason = TLSError.opensslReason() ?? "handshake failed"
            let label = TLSMetrics.reasonLabel(reason)
            metrics.handshakeFailed(reason: label)
            logger.info("tls handshake failed", metadata: ["reason": "\(reason)"])
            // The alert OpenSSL wrote tells the client why.
            records.write(context: context)
            records.flush(context: context)
            state = .closed
            context.close(promise: nil)
        }
    }

    private func readPlaintext(context: ChannelHandlerContext) {
        while state == .established {
            var buffer = context.channel.allocator.buffer(capacity: 16 * 1024)
            var rc: Int32 = 0
            buffer.writeWithUnsafeMutableBytes(minimumWritableBytes: 16 * 1024) { raw in
                rc = SSL_read(ssl, raw.baseAddress, Int32(min(raw.count, Int(Int32.max))))
                return max(0, Int(rc))
            }
            if rc > 0 {
                context.fireChannelRead(wrapInboundOut(buffer))
                continue
            }
            switch SSL_get_error(ssl, rc) {
            case SSL_ERROR_WANT_READ, SSL_ERROR_WANT_WRITE:
                return
            case SSL_ERROR_ZERO_RETURN:
                // close_notify: the client is done. What was read before it
                // still gets its read-complete; ours goes back, then the close.
                context.fireChannelReadComplete()
                SSL_shutdown(ssl)
                records.write(context: context)
                records.flush(context: context)
                state = .closed
                context.close(promise: nil)
                return
            default:
                let reason = TLSError.opensslReason() ?? "read failed"
                logger.debug("tls read failed", metadata: ["reason": "\(reason)"])
                state = .closed
                records.write(context: context)
                records.flush(context: context)
                context.close(promise: nil)
                return
            }
        }
    }

    // MARK: Outbound

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        let buffer = unwrapOutboundIn(data)
        switch state {
        case .awaitingFirstBytes, .handshaking:
            earlyWrites.append((buffer, promise))
            return
        case .closed:
            promise?.fail(ChannelError.ioOnClosedChannel)
            return
        case .established:
            break
        }
        if !TLSRecordOutput.encrypt(buffer, with: ssl) {
            // OpenSSL cannot write any more: the connection is over.
            let reason = TLSError.opensslReason() ?? "write failed"
            logger.debug("tls write failed", metadata: ["reason": "\(reason)"])
            promise?.fail(ChannelError.ioOnClosedChannel)
            state = .closed
            context.close(promise: nil)
            return
        }
        if let promise { records.pendingPromises.append(promise) }
    }

    func flush(context: ChannelHandlerContext) {
        records.write(context: context)
        records.flush(context: context)
    }

    func close(context: ChannelHandlerContext, mode: CloseMode, promise: EventLoopPromise<Void>?) {
        if state == .established, mode == .all {
            // close_notify, so the client can tell a clean end from a cut.
            SSL_shutdown(ssl)
            records.write(context: context)
            records.flush(context: context)
            state = .closed
        }
        context.close(mode: mode, promise: promise)
    }

    func channelInactive(context: ChannelHandlerContext) {
        state = .closed
        let promises = records.pendingPromises + earlyWrites.compactMap(\.1)
        records.pendingPromises = []
        earlyWrites = []
        for promise in promises { promise.fail(ChannelError.ioOnClosedChannel) }
        context.fireChannelInactive()
    }

    // MARK: Plaintext clients

    private func refusePlaintext(context: ChannelHandlerContext, _ bytes: ByteBuffer) {
        state = .closed
        metrics.handshakeFailed(reason: "plaintext")
        logger.info("plaintext client on the TLS port")
        var reply = context.channel.allocator.buffer(capacity: 128)
        let text = "this port speaks TLS: use https://\n"
        if bytes.readableBytesView.starts(with: "PRI ".utf8) {
            // An HTTP/2 prior-knowledge (h2c) client: a GOAWAY with
            // PROTOCOL_ERROR and the reason as debug data. No SETTINGS
            // first: a client that got SETTINGS takes the connection as
            // healthy and reconnects in a loop (grpcio does, until its
            // deadline); GOAWAY alone fails its call at once (UNAVAILABLE).
            let debug = Array("this port speaks TLS".utf8)
            let length = 8 + debug.count
            reply.writeBytes([UInt8(length >> 16), UInt8((length >> 8) & 0xff), UInt8(length & 0xff), 0x7, 0, 0, 0, 0, 0])
            reply.writeInteger(UInt32(0))  // last stream id
            reply.writeInteger(UInt32(1))  // PROTOCOL_ERROR
            reply.writeBytes(debug)
        } else {
            reply.writeString(
                "HTTP/1.1 400 Bad Request\r\ncontent-type: text/plain; charset=utf-8\r\nconnection: close\r\n"
                    + "content-length: \(text.utf8.count)\r\n\r\n\(text)")
        }
        context.writeAndFlush(wrapOutboundOut(reply)).whenComplete { _ in context.close(promise: nil) }
    }

    // MARK: Handshake facts

    private func negotiatedALPN() -> String? {
        var data: UnsafePointer<UInt8>?
        var length: UInt32 = 0
        SSL_get0_alpn_selected(ssl, &data, &length)
        guard let data, length > 0 else { return nil }
        return String(decoding: UnsafeBufferPointer(start: data, count: Int(length)), as: UTF8.self)
    }

    private func clientIdentity() -> String? {
        var buffer = [CChar](repeating: 0, count: 256)
        let length = weft_ssl_peer_common_name(ssl, &buffer, Int32(buffer.count))
        guard length > 0 else { return nil }
        return String(decoding: buffer.prefix(Int(length)).map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    private func version() -> String {
        SSL_get_version(ssl).map { String(cString: $0) } ?? "?"
    }
}
