public import SwiftProtobuf

/// A response message with room for its 5-byte gRPC prefix in front.
/// swift-protobuf serializes into any `SwiftProtobufContiguousBytes` it is
/// asked for; serializing into this type puts the message straight where it
/// goes on the wire, so framing costs no second buffer and no copy.
public struct GRPCFramedMessage: SwiftProtobufContiguousBytes, Sendable {
    static let prefixLength = 5
    private var storage: [UInt8]
    /// The prefix is written (uncompressed) and the payload final: the
    /// storage is the wire form, handed out as it is, shared, never copied
    /// (a prepared response sent many times).
    private var sealed = false

    public init(repeating value: UInt8, count: Int) {
        storage = [UInt8](repeating: value, count: count + Self.prefixLength)
    }

    public init<S: Sequence>(_ sequence: S) where S.Element == UInt8 {
        storage = [0, 0, 0, 0, 0]
        storage.append(contentsOf: sequence)
    }

    /// The payload size (without the prefix).
    public var count: Int { storage.count - Self.prefixLength }

    public func withUnsafeBytes<R>(_ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        try storage.withUnsafeBytes { try body(UnsafeRawBufferPointer(rebasing: $0[Self.prefixLength...])) }
    }

    public mutating func withUnsafeMutableBytes<R>(_ body: (UnsafeMutableRawBufferPointer) throws -> R) rethrows -> R {
        sealed = false
        return try storage.withUnsafeMutableBytes { try body(UnsafeMutableRawBufferPointer(rebasing: $0[Self.prefixLength...])) }
    }

    /// Writes the uncompressed prefix once, so that every `wireBytes` of
    /// this value and its copies returns the same storage without a copy.
    mutating func seal() {
        Self.writePrefix(count, into: &storage)
        sealed = true
    }

    /// The bytes for the wire: prefix and payload, compressed when asked
    /// (unless the payload is empty, where compression cannot help; the flag
    /// is per message, so mixing is allowed).
    public consuming func wireBytes(compressor: GRPCCompression.Algorithm?) throws -> [UInt8] {
        try takeWireBytes(compressor: compressor)
    }

    /// `wireBytes`, leaving this value empty: called on a `var` the caller
    /// owns, the storage moves out unshared and gets its prefix in place
    /// (a `consuming` call on a `let` may copy the whole array first).
    mutating func takeWireBytes(compressor: GRPCCompression.Algorithm?) throws -> [UInt8] {
        let length = count
        if let compressor, length > 0 {
            let compressed = try withUnsafeBytes { try GRPCCompression.compress($0, algorithm: compressor) }
            var out = [UInt8]()
            out.reserveCapacity(compressed.count + Self.prefixLength)
            out.append(1)
            Self.appendLength(compressed.count, to: &out)
            out.append(contentsOf: compressed)
            return out
        }
        if sealed { return storage }
        var bytes: [UInt8] = []
        swap(&bytes, &storage)
        Self.writePrefix(length, into: &bytes)
        return bytes
    }

    private static func writePrefix(_ length: Int, into bytes: inout [UInt8]) {
        bytes[0] = 0
        bytes[1] = UInt8(truncatingIfNeeded: length >> 24)
        bytes[2] = UInt8(truncatingIfNeeded: length >> 16)
        bytes[3] = UInt8(truncatingIfNeeded: length >> 8)
        bytes[4] = UInt8(truncatingIfNeeded: length)
    }

    private static func appendLength(_ length: Int, to out: inout [UInt8]) {
        out.append(UInt8(truncatingIfNeeded: length >> 24))
        out.append(UInt8(truncatingIfNeeded: length >> 16))
        out.append(UInt8(truncatingIfNeeded: length >> 8))
        out.append(UInt8(truncatingIfNeeded: length))
    }
}
