public import NIOCore

/// Splits a gRPC request body into length-prefixed messages
/// (`compressed-flag(1) length(4, big-endian) bytes`), whatever the DATA frame
/// boundaries. A pure value type: no I/O, tested byte by byte.
public struct GRPCMessageDeframer: Sendable {
    public struct Message: Sendable, Equatable {
        public var compressed: Bool
        public var bytes: ByteBuffer
    }

    public enum DeframeError: Error, Equatable {
        /// The length prefix announces more than the limit. Detected as soon as
        /// the 5-byte prefix arrives, before buffering the body.
        case messageTooLarge(announced: Int, limit: Int)
        /// The compressed flag byte is neither 0 nor 1.
        case invalidCompressedFlag(UInt8)
        /// The stream ended in the middle of a message.
        case truncated(bufferedBytes: Int)
    }

    private var buffer: ByteBuffer
    public let maxMessageSize: Int

    public init(maxMessageSize: Int, allocator: ByteBufferAllocator = ByteBufferAllocator()) {
        self.maxMessageSize = maxMessageSize
        self.buffer = allocator.buffer(capacity: 0)
    }

    /// Bytes received but not yet part of a complete message.
    public var bufferedBytes: Int { buffer.readableBytes }

    public mutating func append(_ bytes: UnsafeRawBufferPointer) {
        buffer.writeBytes(bytes)
    }

    public mutating func append(_ bytes: ByteBuffer) {
        var bytes = bytes
        buffer.writeBuffer(&bytes)
    }

    /// The next complete message, or nil when more bytes are needed.
    public mutating func next() throws(DeframeError) -> Message? {
        guard buffer.readableBytes >= 5 else { return nil }
        let start = buffer.readerIndex
        let flag = buffer.getInteger(at: start, as: UInt8.self)!
        guard flag <= 1 else { throw .invalidCompressedFlag(flag) }
        let length = Int(buffer.getInteger(at: start + 1, as: UInt32.self)!)
        guard length <= maxMessageSize else { throw .messageTooLarge(announced: length, limit: maxMessageSize) }
        guard buffer.readableBytes >= 5 + length else { return nil }
        buffer.moveReaderIndex(forwardBy: 5)
        let body = buffer.readSlice(length: length)!
        if buffer.readableBytes == 0 { buffer.clear() }
        return Message(compressed: flag == 1, bytes: body)
    }

    /// Call at end of stream: throws if a partial message is left over.
    public func finish() throws(DeframeError) {
        if buffer.readableBytes > 0 { throw .truncated(bufferedBytes: buffer.readableBytes) }
    }
}
