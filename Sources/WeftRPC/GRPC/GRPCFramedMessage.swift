public import SwiftProtobuf

/// A response message with room for its 5-byte gRPC prefix in front.
/// swift-protobuf serializes into any `SwiftProtobufContiguousBytes` it is
/// asked for; serializing into this type puts the message straight where it
/// goes on the wire, so framing costs no second buffer and no copy.
public struct GRPCFramedMessage: SwiftProtobufContiguousBytes, Sendable {
    static let prefixLength = 5
    private var storage: [UInt8]

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
        try storage.withUnsafeMutableBytes { try body(UnsafeMutableRawBufferPointer(rebasing: $0[Self.prefixLength...])) }
    }

    /// The bytes for the wire: prefix and payload, compressed when asked
    /// (unless the payload is empty, where compression cannot help; the flag
    /// is per message, so mixing is allowed).
    public consuming func wireBytes(compressor: GRPCCompression.Algorithm?) throws -> [UInt8] {
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
        var bytes = storage
        storage = []
        bytes[0] = 0
        bytes[1] = UInt8(truncatingIfNeeded: length >> 24)
        bytes[2] = UInt8(truncatingIfNeeded: length >> 16)
        bytes[3] = UInt8(truncatingIfNeeded: length >> 8)
        bytes[4] = UInt8(truncatingIfNeeded: length)
        return bytes
    }

    private static func appendLength(_ length: Int, to out: inout [UInt8]) {
        out.append(UInt8(truncatingIfNeeded: length >> 24))
        out.append(UInt8(truncatingIfNeeded: length >> 16))
        out.append(UInt8(truncatingIfNeeded: length >> 8))
        out.append(UInt8(truncatingIfNeeded: length))
    }
}
