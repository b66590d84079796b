import Glibc

/// Request header fields as received, packed into one byte array
/// (`nameLength:UInt16 valueLength:UInt32 name value`, repeated): one
/// allocation per request however many fields it has, and no String per
/// field. Strings are made only for the fields that need them.
struct HeaderFields {
    /// The offset of a field's record.
    typealias Index = Int

    private var storage: [UInt8] = []
    private static let recordHeader = 6

    mutating func append(name: UnsafeRawBufferPointer, value: UnsafeRawBufferPointer) -> Index {
        if storage.capacity == 0 { storage.reserveCapacity(512) }
        let index = storage.count
        let n = UInt16(truncatingIfNeeded: name.count)
        let v = UInt32(truncatingIfNeeded: value.count)
        // The record header in one copy (six single-byte appends each
        // checked capacity and uniqueness).
        let header: (UInt8, UInt8, UInt8, UInt8, UInt8, UInt8) = (
            UInt8(truncatingIfNeeded: n), UInt8(truncatingIfNeeded: n >> 8),
            UInt8(truncatingIfNeeded: v), UInt8(truncatingIfNeeded: v >> 8),
            UInt8(truncatingIfNeeded: v >> 16), UInt8(truncatingIfNeeded: v >> 24)
        )
        withUnsafeBytes(of: header) { storage.append(contentsOf: $0.assumingMemoryBound(to: UInt8.self)) }
        // Typed buffer pointers take Array's memcpy path; raw ones go byte by byte.
        storage.append(contentsOf: name.assumingMemoryBound(to: UInt8.self))
        storage.append(contentsOf: value.assumingMemoryBound(to: UInt8.self))
        return index
    }

    private func lengths(_ i: Index) -> (name: Int, value: Int) {
        let n = Int(storage[i]) | Int(storage[i + 1]) << 8
        let v = Int(storage[i + 2]) | Int(storage[i + 3]) << 8 | Int(storage[i + 4]) << 16 | Int(storage[i + 5]) << 24
        return (n, v)
    }

    func name(_ i: Index) -> ArraySlice<UInt8> {
        let (n, _) = lengths(i)
        return storage[(i + Self.recordHeader)..<(i + Self.recordHeader + n)]
    }

    func value(_ i: Index) -> ArraySlice<UInt8> {
        let (n, v) = lengths(i)
        let start = i + Self.recordHeader + n
        return storage[start..<(start + v)]
    }

    func string(_ i: Index) -> String { String(decoding: value(i), as: UTF8.self) }
    func string(name i: Index) -> String { String(decoding: name(i), as: UTF8.self) }

    /// Every field's index, in arrival order. A lazy sequence: walking the
    /// fields (done for every gRPC call, to collect metadata) allocates nothing.
    var indices: Indices { Indices(fields: self) }

    struct Indices: Sequence, IteratorProtocol {
        let fields: HeaderFields
        var offset = 0

        mutating func next() -> Index? {
            guard offset < fields.storage.count else { return nil }
            let index = offset
            let (n, v) = fields.lengths(index)
            offset += HeaderFields.recordHeader + n + v
            return index
        }
    }
}

/// Byte comparisons by memcmp: the generic `elementsEqual` walks element by
/// element and showed up in profiles of the request path.
@inline(__always)
func bytesEqual(_ lhs: UnsafeRawBufferPointer, _ rhs: [UInt8]) -> Bool {
    guard lhs.count == rhs.count else { return false }
    guard let base = lhs.baseAddress else { return rhs.isEmpty }
    return rhs.withUnsafeBytes { memcmp(base, $0.baseAddress!, lhs.count) == 0 }
}

@inline(__always)
func bytesEqual(_ lhs: ArraySlice<UInt8>, _ rhs: [UInt8]) -> Bool {
    guard lhs.count == rhs.count else { return false }
    return lhs.withUnsafeBytes { bytesEqual($0, rhs) }
}

@inline(__always)
func bytesEqual(_ lhs: ArraySlice<UInt8>, _ rhs: ArraySlice<UInt8>) -> Bool {
    guard lhs.count == rhs.count else { return false }
    guard !lhs.isEmpty else { return true }
    return lhs.withUnsafeBytes { l in rhs.withUnsafeBytes { r in memcmp(l.baseAddress!, r.baseAddress!, l.count) == 0 } }
}

@inline(__always)
func bytesHavePrefix(_ bytes: ArraySlice<UInt8>, _ prefix: [UInt8]) -> Bool {
    guard bytes.count >= prefix.count else { return false }
    return bytes.withUnsafeBytes { bytesEqual(UnsafeRawBufferPointer(rebasing: $0[..<prefix.count]), prefix) }
}

/// Header names compared as bytes.
enum HeaderName {
    static let path = Array(":path".utf8)
    static let method = Array(":method".utf8)
    static let contentType = Array("content-type".utf8)
    static let grpcTimeout = Array("grpc-timeout".utf8)
    static let grpcEncoding = Array("grpc-encoding".utf8)
    static let grpcAcceptEncoding = Array("grpc-accept-encoding".utf8)
    static let applicationGRPC = Array("application/grpc".utf8)
    static let identity = Array("identity".utf8)
    private static let grpcPrefix = Array("grpc-".utf8)
    private static let te = Array("te".utf8)
    private static let host = Array("host".utf8)
    private static let connection = Array("connection".utf8)
    private static let userAgent = Array("user-agent".utf8)
    private static let contentLength = Array("content-length".utf8)
    private static let acceptEncoding = Array("accept-encoding".utf8)
    private static let transferEncoding = Array("transfer-encoding".utf8)

    /// Headers that belong to the protocol and never surface as metadata
    /// (the rule `Metadata.isReserved` applies to keys).
    static func isReserved(_ name: ArraySlice<UInt8>) -> Bool {
        if name.first == UInt8(ascii: ":") || bytesHavePrefix(name, grpcPrefix) { return true }
        switch name.count {
        case 2: return bytesEqual(name, te)
        case 4: return bytesEqual(name, host)
        case 10: return bytesEqual(name, connection) || bytesEqual(name, userAgent)
        case 12: return bytesEqual(name, contentType)
        case 14: return bytesEqual(name, contentLength)
        case 15: return bytesEqual(name, acceptEncoding)
        case 17: return bytesEqual(name, transferEncoding)
        default: return false
        }
    }
}
