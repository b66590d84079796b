import COpenSSL
public import NIOCore

/// How a TLS client checks the server it talks to.
public struct TLSClientConfiguration: Sendable {
    /// The name sent as SNI and checked against the certificate (a DNS name
    /// or an IP literal): the configured host, not the address dialled.
    public var serverName: String
    /// PEM file of the CAs to trust; nil: the system's (OpenSSL's default
    /// paths, which honour SSL_CERT_FILE / SSL_CERT_DIR).
    public var caFile: String?
    /// A PEM CA certificate (or several) to trust instead of the system's:
    /// an email integration's `caCertificate`.
    public var caPEM: String?
    /// False accepts any certificate: for tests and development only.
    public var verify: Bool = true
    /// Protocols offered by ALPN, most wanted first (empty: no ALPN).
    /// `Established.alpn` says which one the server chose.
    public var alpn: [String] = []

    public init(serverName: String, caFile: String? = nil, caPEM: String? = nil, verify: Bool = true, alpn: [String] = []) {
        self.serverName = serverName
        self.caFile = caFile
        self.caPEM = caPEM
        self.verify = verify
        self.alpn = alpn
    }
}

/// A TLS failure with OpenSSL's reason (and the certificate check's, when
/// that is what failed).
public struct TLSClientError: Error, CustomStringConvertible {
    public let description: String
}

/// TLS as a client through OpenSSL's memory BIOs, the client-side twin of
/// WeftRPC's TLSServerHandler: socket bytes go into one BIO, OpenSSL's
/// records come out of the other, and the handlers after this one see
/// plaintext. It starts the handshake as soon as it sits in an active
/// channel (SMTP adds it mid-connection, after STARTTLS), then completes
/// `handshakePromise` and fires `Established` down the pipeline.
/// Notifications' SMTP client and the load-test harness use it.
public final class TLSClientHandler: ChannelDuplexHandler, RemovableChannelHandler {
    public typealias InboundIn = ByteBuffer
    public typealias InboundOut = ByteBuffer
    public typealias OutboundIn = ByteBuffer
    public typealias OutboundOut = ByteBuffer

    /// The user event fired when the handshake succeeds.
    public struct Established: Sendable {
        public let version: String
        public let cipher: String
        /// The protocol the server chose by ALPN (nil: none).
        public let alpn: String?
    }

    private let ssl: OpaquePointer
    private let input: OpaquePointer
    private var handshakePromise: EventLoopPromise<Established>?
    private var state = State.idle
    /// OpenSSL's output records on their way to the channel, with the
    /// promises of the plaintext writes they carry.
    private let records: TLSRecordOutput
    /// Plaintext written before the handshake finished.
    private var earlyWrites: [(ByteBuffer, EventLoopPromise<Void>?)] = []

    private enum State {
        case idle
        case handshaking
        case established
        case closed
    }

    public init(configuration: TLSClientConfiguration, handshakePromise: EventLoopPromise<Established>?) throws {
        _ = TLSError.opensslReason()  // a clean error queue
        let context = try Self.makeContext(configuration)
        // The SSL takes its own reference to the context.
        defer { SSL_CTX_free(context) }
        guard let ssl = SSL_new(context) else { throw Self.error("cannot create a TLS session") }
        guard let input = BIO_new(BIO_s_mem()), let output = BIO_new(BIO_s_mem()) else {
            SSL_free(ssl)
            throw Self.error("cannot create TLS buffers")
        }
        // An empty input BIO means "wait for more", not end of file.
        _ = weft_bio_set_mem_eof_return(input, -1)
        _ = weft_bio_set_mem_eof_return(output, -1)
        SSL_set_bio(ssl, input, output)  // the SSL owns both BIOs now
        SSL_set_connect_state(ssl)
        do {
            try Self.configureServerName(ssl, configuration)
            try Self.offerProtocols(ssl, configuration.alpn)
        } catch {
            SSL_free(ssl)
            throw error
        }
        self.ssl = ssl
        self.input = input
        records = TLSRecordOutput(output: output)
        self.handshakePromise = handshakePromise
    }

    deinit { SSL_free(ssl) }

    // MARK: Setup

    /// One context per connection: notifications open a few connections a
    /// minute, and a fresh context picks up a renewed CA file without a
    /// reload step.
    private static func makeContext(_ configuration: TLSClientConfiguration) throws -> OpaquePointer {
        guard let ctx = SSL_CTX_new(TLS_client_method()) else { throw error("cannot create a TLS context") }
        var ok = false
        defer { if !ok { SSL_CTX_free(ctx) } }
        guard weft_ssl_ctx_set_min_tls12(ctx) == 1 else { throw error("cannot require TLS 1.2") }
        // Cipher suites stay OpenSSL's defaults (security level 2 on
        // Debian): mail servers are older than browsers' peers, and the
        // TLS 1.2 floor already rules out the broken ones.
        weft_ssl_ctx_harden(ctx)
        if configuration.verify {
            if let pem = configuration.caPEM {
                guard Self.trust(pem: pem, in: ctx) else { throw error("cannot read the CA certificate (PEM)") }
            } else if let caFile = configuration.caFile {
                guard SSL_CTX_load_verify_locations(ctx, caFile, nil) == 1 else { throw error("cannot load the CA file \(caFile)") }
            } else {
                guard SSL_CTX_set_default_verify_paths(ctx) == 1 else { throw error("cannot load the system CA certificates") }
            }
            SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, nil)
        } else {
            SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, nil)
        }
        ok = true
        return ctx
    }

    /// SNI (DNS names only: RFC 6066 forbids IP literals there) and the
    /// name the certificate must carry.
    private static func configureServerName(_ ssl: OpaquePointer, _ configuration: TLSClientConfiguration) throws {
        var name = configuration.serverName
        if name.hasPrefix("[") && name.hasSuffix("]") { name = String(name.dropFirst().dropLast()) }
        let isIPLiteral = (try? SocketAddress(ipAddress: name, port: 0)) != nil
        if !isIPLiteral && !name.isEmpty {
            guard weft_ssl_set_tlsext_host_name(ssl, name) == 1 else { throw error("cannot set the server name \(name)") }
        }
        guard configuration.verify else { return }
        if isIPLiteral {
            guard X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), name) == 1 else { throw error("cannot check the address \(name)") }
        } else {
            SSL_set_hostflags(ssl, UInt32(X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS))
            guard SSL_set1_host(ssl, name) == 1 else { throw error("cannot check the host name \(name)") }
        }
    }

    /// ALPN's wire form: each name preceded by its length.
    private static func offerProtocols(_ ssl: OpaquePointer, _ names: [String]) throws {
        guard !names.isEmpty else { return }
        var wire: [UInt8] = []
        for name in names where !name.isEmpty && name.utf8.count < 256 {
            wire.append(UInt8(name.utf8.count))
            wire.append(contentsOf: name.utf8)
        }
        // SSL_set_alpn_protos returns 0 on success (unlike most of OpenSSL).
        guard SSL_set_alpn_protos(ssl, wire, UInt32(wire.count)) == 0 else { throw error("cannot offer ALPN protocols") }
    }

    // MARK: Handshake

    public func handlerAdded(context: ChannelHandlerContext) {
        if context.channel.isActive { startHandshake(context: context) }
    }

    public func channelActive(context: ChannelHandlerContext) {
        startHandshake(context: context)
        context.fireChannelActive()
    }

    public func handlerRemoved(context: ChannelHandlerContext) {
        failHandshake("the TLS handler was removed before the handshake finished")
    }

    private func startHandshake(context: ChannelHandlerContext) {
        guard state == .idle else { return }
        state = .handshaking
        handshake(context: context)
    }

    private func handshake(context: ChannelHandlerContext) {
        _ = TLSError.opensslReason()
        let rc = SSL_do_handshake(ssl)
        if rc == 1 {
            state = .established
            // Our Finished (TLS 1.2, and 1.3's client Finished) must go out now.
            records.write(context: context)
            records.flush(context: context)
            let established = Established(version: version(), cipher: cipher(), alpn: selectedProtocol())
            context.fireUserInboundEventTriggered(established)
            let promise = handshakePromise
            handshakePromise = nil
            promise?.succeed(established)
            let writes = earlyWrites
            earlyWrites = []
            for (buffer, promise) in writes { write(context: context, data: wrapOutboundOut(buffer), promise: promise) }
            if !writes.isEmpty { flush(context: context) }
            return
        }
        switch SSL_get_error(ssl, rc) {
        case SSL_ERROR_WANT_READ, SSL_ERROR_WANT_WRITE:
            records.write(context: context)
            records.flush(context: context)
        default:
            let reason = handshakeFailureReason()
            // The alert OpenSSL wrote tells the server why.
            records.write(context: context)
            records.flush(context: context)
            state = .closed
            failHandshake(reason)
            context.close(promise: nil)
        }
    }

    /// OpenSSL's reason, with the certificate check's detail ("hostname
    /// mismatch", "self-signed certificate") when verification failed.
    private func handshakeFailureReason() -> String {
        let reason = TLSError.opensslReason() ?? "TLS handshake failed"
        let verifyResult = SSL_get_verify_result(ssl)
        guard verifyResult != X509_V_OK, let detail = X509_verify_cert_error_string(verifyResult) else { return reason }
        return "\(reason) (\(String(cString: detail)))"
    }

    private func failHandshake(_ reason: String) {
        let promise = handshakePromise
        handshakePromise = nil
        promise?.fail(TLSClientError(description: reason))
    }

    // MARK: Inbound

    public func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let bytes = unwrapInboundIn(data)
        guard state == .handshaking || state == .established else { return }
        _ = bytes.withUnsafeReadableBytes { BIO_write(input, $0.baseAddress, Int32($0.count)) }
        if state == .handshaking {
            handshake(context: context)
            guard state == .established else { return }
        }
        // Records that came with the server's last handshake flight, or
        // after it (TLS 1.3 session tickets), are read here.
        readPlaintext(context: context)
        records.write(context: context)
    }

    public func channelReadComplete(context: ChannelHandlerContext) {
        if state == .established { context.fireChannelReadComplete() }
        records.flush(context: context)
    }

    private func readPlaintext(context: ChannelHandlerContext) {
        while state == .established {
            var buffer = context.channel.allocator.buffer(capacity: 16 * 1024)
            var rc: Int32 = 0
            _ = TLSError.opensslReason()
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
                // close_notify: the server is done; ours goes back, then the close.
                SSL_shutdown(ssl)
                records.write(context: context)
                records.flush(context: context)
                state = .closed
                context.close(promise: nil)
                return
            default:
                let reason = TLSError.opensslReason() ?? "TLS read failed"
                state = .closed
                records.write(context: context)
                records.flush(context: context)
                context.fireErrorCaught(TLSClientError(description: reason))
                context.close(promise: nil)
                return
            }
        }
    }

    // MARK: Outbound

    public func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        let buffer = unwrapOutboundIn(data)
        switch state {
        case .idle, .handshaking:
            earlyWrites.append((buffer, promise))
            return
        case .closed:
            promise?.fail(ChannelError.ioOnClosedChannel)
            return
        case .established:
            break
        }
        _ = TLSError.opensslReason()
        if !TLSRecordOutput.encrypt(buffer, with: ssl) {
            // OpenSSL cannot write any more: the connection is over.
            let reason = TLSError.opensslReason() ?? "TLS write failed"
            promise?.fail(TLSClientError(description: reason))
            state = .closed
            context.close(promise: nil)
            return
        }
        if let promise { records.pendingPromises.append(promise) }
    }

    public func flush(context: ChannelHandlerContext) {
        // Before the handshake the plaintext waits; records of the handshake
        // itself are flushed as they are made.
        guard state == .established else { return }
        records.write(context: context)
        records.flush(context: context)
    }

    public func close(context: ChannelHandlerContext, mode: CloseMode, promise: EventLoopPromise<Void>?) {
        if state == .established, mode == .all {
            // close_notify, so the server can tell a clean end from a cut.
            SSL_shutdown(ssl)
            records.write(context: context)
            records.flush(context: context)
            state = .closed
        }
        context.close(mode: mode, promise: promise)
    }

    public func channelInactive(context: ChannelHandlerContext) {
        state = .closed
        failHandshake("the server closed the connection during the TLS handshake")
        let promises = records.pendingPromises + earlyWrites.compactMap(\.1)
        records.pendingPromises = []
        earlyWrites = []
        for promise in promises { promise.fail(ChannelError.ioOnClosedChannel) }
        context.fireChannelInactive()
    }

    // MARK: Facts and errors

    private func version() -> String {
        SSL_get_version(ssl).map { String(cString: $0) } ?? "?"
    }

    private func selectedProtocol() -> String? {
        var data: UnsafePointer<UInt8>?
        var length: UInt32 = 0
        SSL_get0_alpn_selected(ssl, &data, &length)
        guard let data, length > 0 else { return nil }
        return String(decoding: UnsafeBufferPointer(start: data, count: Int(length)), as: UTF8.self)
    }

    private func cipher() -> String {
        SSL_get_current_cipher(ssl).flatMap { SSL_CIPHER_get_name($0) }.map { String(cString: $0) } ?? "?"
    }

    private static func error(_ what: String) -> TLSClientError {
        TLSClientError(description: "\(what)\(TLSError.opensslReason().map { ": \($0)" } ?? "")")
    }
}

extension TLSClientHandler {
    /// Adds every certificate of a PEM text to the context's trust store.
    static func trust(pem: String, in ctx: OpaquePointer) -> Bool {
        guard let store = SSL_CTX_get_cert_store(ctx) else { return false }
        let bytes = Array(pem.utf8)
        return bytes.withUnsafeBytes { raw -> Bool in
            guard let bio = BIO_new_mem_buf(raw.baseAddress, Int32(raw.count)) else { return false }
            defer { BIO_free(bio) }
            var added = 0
            while let certificate = PEM_read_bio_X509(bio, nil, nil, nil) {
                defer { X509_free(certificate) }
                if X509_STORE_add_cert(store, certificate) == 1 { added += 1 }
            }
            ERR_clear_error()  // the read that ends the loop leaves "no start line"
            return added > 0
        }
    }
}
