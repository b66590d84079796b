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
        storage.append(UInt8(truncatingIfNeeded: n))
        storage.append(UInt8(truncatingIfNeeded: n >> 8))
        storage.append(UInt8(truncatingIfNeeded: v))
        storage.append(UInt8(truncatingIfNeeded: v >> 8))
        storage.append(UInt8(truncatingIfNeeded: v >> 16))
        storage.append(UInt8(truncatingIfNeeded: v >> 24))
        storage.append(contentsOf: UnsafeRawBufferPointer(rebasing: name[...]))
        storage.append(contentsOf: UnsafeRawBufferPointer(rebasing: value[...]))
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

    /// Every field's index, in arrival order.
    var indices: [Index] {
        var result: [Index] = []
        var i = 0
        while i < storage.count {
            result.append(i)
            let (n, v) = lengths(i)
            i += Self.recordHeader + n + v
        }
        return result
    }
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
        switch name.count {
        case 2: return name.elementsEqual(te)
        case 4: return name.elementsEqual(host)
        case 10: return name.elementsEqual(connection) || name.elementsEqual(userAgent)
        case 12: return name.elementsEqual(contentType) || name.starts(with: grpcPrefix)
        case 14: return name.elementsEqual(contentLength) || name.starts(with: grpcPrefix)
        case 15: return name.elementsEqual(acceptEncoding) || name.starts(with: grpcPrefix)
        case 17: return name.elementsEqual(transferEncoding) || name.starts(with: grpcPrefix)
        default: return name.count >= 5 && name.starts(with: grpcPrefix)
        }
    }
}
