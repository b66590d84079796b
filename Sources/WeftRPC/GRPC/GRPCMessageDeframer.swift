/// Splits a gRPC request body into length-prefixed messages
/// (`compressed-flag(1) length(4, big-endian) bytes`), whatever the DATA frame
/// boundaries. A pure value type: no I/O, tested byte by byte. Messages come
/// out as slices of one array (no allocation per message).
public struct GRPCMessageDeframer: Sendable {
    public struct Message: Sendable, Equatable {
        public var compressed: Bool
        public var bytes: ArraySlice<UInt8>
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

    private var buffer: [UInt8] = []
    private var readIndex = 0
    public let maxMessageSize: Int

    public init(maxMessageSize: Int) {
        self.maxMessageSize = maxMessageSize
    }

    /// Bytes received but not yet part of a complete message.
    public var bufferedBytes: Int { buffer.count - readIndex }

    public mutating func append(_ bytes: UnsafeRawBufferPointer) {
        if readIndex == buffer.count {
            buffer.removeAll(keepingCapacity: true)
            readIndex = 0
        } else if readIndex > 4096 && readIndex > buffer.count / 2 {
            buffer.removeFirst(readIndex)
            readIndex = 0
        }
        buffer.append(contentsOf: bytes.assumingMemoryBound(to: UInt8.self))
    }

    /// The next complete message, or nil when more bytes are needed.
    public mutating func next() throws(DeframeError) -> Message? {
        guard buffer.count - readIndex >= 5 else { return nil }
        let flag = buffer[readIndex]
        guard flag <= 1 else { throw .invalidCompressedFlag(flag) }
        let length =
            Int(buffer[readIndex + 1]) << 24 | Int(buffer[readIndex + 2]) << 16 | Int(buffer[readIndex + 3]) << 8
            | Int(buffer[readIndex + 4])
        guard length <= maxMessageSize else { throw .messageTooLarge(announced: length, limit: maxMessageSize) }
        guard buffer.count - readIndex >= 5 + length else { return nil }
        let start = readIndex + 5
        readIndex = start + length
        return Message(compressed: flag == 1, bytes: buffer[start..<readIndex])
    }

    /// Call at end of stream: throws if a partial message is left over.
    public func finish() throws(DeframeError) {
        if bufferedBytes > 0 { throw .truncated(bufferedBytes: bufferedBytes) }
    }
}
