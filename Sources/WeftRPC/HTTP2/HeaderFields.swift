/// Request header fields as received: names and values in one byte array,
/// looked up by index. Avoids a String (and often a heap allocation) per
/// field on the hot path; Strings are made only for the fields that need them.
struct HeaderFields {
    typealias Index = Int

    private var bytes: [UInt8] = []
    private var ranges: [(nameStart: Int32, nameLength: Int32, valueStart: Int32, valueLength: Int32)] = []

    var indices: Range<Int> { ranges.indices }

    mutating func append(name: UnsafeRawBufferPointer, value: UnsafeRawBufferPointer) -> Index {
        if bytes.isEmpty { bytes.reserveCapacity(256) }
        let nameStart = bytes.count
        bytes.append(contentsOf: name)
        let valueStart = bytes.count
        bytes.append(contentsOf: value)
        ranges.append((Int32(nameStart), Int32(name.count), Int32(valueStart), Int32(value.count)))
        return ranges.count - 1
    }

    func name(_ i: Index) -> ArraySlice<UInt8> {
        let r = ranges[i]
        return bytes[Int(r.nameStart)..<Int(r.nameStart + r.nameLength)]
    }

    func value(_ i: Index) -> ArraySlice<UInt8> {
        let r = ranges[i]
        return bytes[Int(r.valueStart)..<Int(r.valueStart + r.valueLength)]
    }

    func string(_ i: Index) -> String { String(decoding: value(i), as: UTF8.self) }
    func string(name i: Index) -> String { String(decoding: name(i), as: UTF8.self) }
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
    private static let reserved: [[UInt8]] = [
        "content-type", "te", "content-length", "connection", "host", "user-agent", "accept-encoding",
        "transfer-encoding",
    ].map { Array($0.utf8) }

    /// Headers that belong to the protocol and never surface as metadata
    /// (same rule as `Metadata.isReserved`, on bytes).
    static func isReserved(_ name: ArraySlice<UInt8>) -> Bool {
        if name.starts(with: grpcPrefix) { return true }
        return reserved.contains { $0.elementsEqual(name) }
    }
}
