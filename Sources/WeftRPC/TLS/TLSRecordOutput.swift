import COpenSSL
public import NIOCore

/// The ciphertext side both TLS handlers share (the server's, and the
/// client's of SMTP and the load-test harness): OpenSSL writes records into a memory BIO; they go to the
/// channel with the promises of the plaintext they carry, and are flushed
/// once per batch. A class: writing to the channel can call back into
/// the handler, which may write again (a struct property of the handler
/// would be accessed twice at once).
public final class TLSRecordOutput {
    /// The memory BIO OpenSSL writes records into (owned by its SSL).
    let output: OpaquePointer
    /// Promises of plaintext written since the last records went out.
    public var pendingPromises: [EventLoopPromise<Void>] = []
    private var recordsWritten = false

    public init(output: OpaquePointer) {
        self.output = output
    }

    /// Hands plaintext to OpenSSL (`SSL_write`, in chunks it accepts); its
    /// records land in the output BIO. False: OpenSSL cannot write any more
    /// (the connection is over).
    static func encrypt(_ buffer: ByteBuffer, with ssl: OpaquePointer) -> Bool {
        buffer.withUnsafeReadableBytes { raw -> Bool in
            var offset = 0
            while offset < raw.count {
                let chunk = min(raw.count - offset, Int(Int32.max))
                let rc = SSL_write(ssl, raw.baseAddress! + offset, Int32(chunk))
                if rc <= 0 { return false }
                offset += Int(rc)
            }
            return true
        }
    }

    /// Moves OpenSSL's output records to the channel (unflushed), with the
    /// promises of the plaintext they carry.
    public func write(context: ChannelHandlerContext) {
        let pending = Int(BIO_ctrl_pending(output))
        let promises = pendingPromises
        pendingPromises = []
        guard pending > 0 else {
            for promise in promises { promise.succeed() }
            return
        }
        var buffer = context.channel.allocator.buffer(capacity: pending)
        let output = output
        buffer.writeWithUnsafeMutableBytes(minimumWritableBytes: pending) { raw in
            max(0, Int(BIO_read(output, raw.baseAddress, Int32(pending))))
        }
        let promise: EventLoopPromise<Void>?
        switch promises.count {
        case 0: promise = nil
        case 1: promise = promises[0]
        default:
            let combined = context.eventLoop.makePromise(of: Void.self)
            combined.futureResult.whenComplete { result in
                for each in promises { each.completeWith(result) }
            }
            promise = combined
        }
        context.write(NIOAny(buffer), promise: promise)
        recordsWritten = true
    }

    /// Flushes when records were written since the last flush.
    public func flush(context: ChannelHandlerContext) {
        guard recordsWritten else { return }
        recordsWritten = false
        context.flush()
    }
}
