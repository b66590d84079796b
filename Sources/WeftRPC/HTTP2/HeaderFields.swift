import Glibc

/// Request header fields as received, packed into one byte array
/// (`nameLength:UInt16 valueLength:UInt32 name value`, repeated): one
/// allocation per request however many fields it has, and no String per
/// field. Strings are made only for the fields that need them.
struct HeaderFields {
    /// The offset of a field's record.
    typealias Index = Int

    /// Records in `storage[..<used]`; the bytes after them are room (made
    /// in one go, so appending a field is three copies into memory already
    /// there rather than a dozen checked appends), their content unused.
    private var storage: [UInt8] = []
    private var used = 0
    private static let recordHeader = 6
    private static let initialRoom = 512

    mutating func append(name: UnsafeRawBufferPointer, value: UnsafeRawBufferPointer) -> Index {
        let index = used
        let needed = Self.recordHeader + name.count + value.count
        if storage.count - used < needed { makeRoom(needed) }
        // Two unaligned stores for the lengths (little-endian, as `lengths`
        // reads them) and two copies: a field per request header, so this
        // is on every call's path.
        storage.withUnsafeMutableBytes { raw in
            let record = raw.baseAddress.unsafelyUnwrapped + index
            record.storeBytes(of: UInt16(truncatingIfNeeded: name.count).littleEndian, as: UInt16.self)
            record.storeBytes(of: UInt32(truncatingIfNeeded: value.count).littleEndian, toByteOffset: 2, as: UInt32.self)
            if let base = name.baseAddress, name.count > 0 {
                (record + Self.recordHeader).copyMemory(from: base, byteCount: name.count)
            }
            if let base = value.baseAddress, value.count > 0 {
                (record + Self.recordHeader + name.count).copyMemory(from: base, byteCount: value.count)
            }
        }
        used += needed
        return index
    }

    @inline(never)
    private mutating func makeRoom(_ needed: Int) {
        let room = Swift.max(Self.initialRoom, storage.count, needed)
        if storage.isEmpty {
            storage = [UInt8](repeating: 0, count: room)  // a memset, not a loop
        } else {
            storage.append(contentsOf: repeatElement(0, count: room))
        }
    }

    /// Forgets every field, keeping the room (a reused stream).
    mutating func removeAll() { used = 0 }

    private func lengths(_ i: Index) -> (name: Int, value: Int) {
        storage.withUnsafeBytes { raw in
            precondition(i >= 0 && i + Self.recordHeader <= raw.count)
            let n = UInt16(littleEndian: raw.loadUnaligned(fromByteOffset: i, as: UInt16.self))
            let v = UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: i + 2, as: UInt32.self))
            return (Int(n), Int(v))
        }
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

    /// The value's bytes, borrowed: no slice (and no retain of the storage)
    /// for checks made on every call.
    func withValue<R>(_ i: Index, _ body: (UnsafeRawBufferPointer) -> R) -> R {
        storage.withUnsafeBytes { raw in
            let (n, v) = lengths(i)
            let start = i + Self.recordHeader + n
            precondition(start + v <= raw.count)
            return body(UnsafeRawBufferPointer(rebasing: raw[start..<(start + v)]))
        }
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
            guard offset < fields.used else { return nil }
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
func bytesEqual(_ lhs: UnsafeRawBufferPointer, _ rhs: UnsafeRawBufferPointer) -> Bool {
    guard lhs.count == rhs.count else { return false }
    guard let l = lhs.baseAddress, let r = rhs.baseAddress else { return true }
    return memcmp(l, r, lhs.count) == 0
}

/// Against a literal: no array behind it, so no lazy global to check and
/// no reference to hold (the per-header checks of every request use these).
@inline(__always)
func bytesEqual(_ lhs: UnsafeRawBufferPointer, _ rhs: StaticString) -> Bool {
    guard lhs.count == rhs.utf8CodeUnitCount else { return false }
    guard let base = lhs.baseAddress else { return true }
    return memcmp(base, rhs.utf8Start, lhs.count) == 0
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
func bytesHavePrefix(_ bytes: UnsafeRawBufferPointer, _ prefix: StaticString) -> Bool {
    guard bytes.count >= prefix.utf8CodeUnitCount else { return false }
    return bytesEqual(UnsafeRawBufferPointer(rebasing: bytes[..<prefix.utf8CodeUnitCount]), prefix)
}

/// Header names compared as bytes.
enum HeaderName {
    static let applicationGRPC = Array("application/grpc".utf8)

    /// Headers that belong to the protocol and never surface as metadata
    /// (the rule `Metadata.isReserved` applies to keys). On the bytes as
    /// nghttp2 hands them over: no slice, no bounds checks, literals for names.
    static func isReserved(_ name: UnsafeRawBufferPointer) -> Bool {
        if name.first == UInt8(ascii: ":") { return true }
        if name.count >= 5, bytesEqual(UnsafeRawBufferPointer(rebasing: name[..<5]), "grpc-") { return true }
        switch name.count {
        case 2: return bytesEqual(name, "te")
        case 4: return bytesEqual(name, "host")
        case 10: return bytesEqual(name, "connection") || bytesEqual(name, "user-agent")
        case 12: return bytesEqual(name, "content-type")
        case 14: return bytesEqual(name, "content-length")
        case 15: return bytesEqual(name, "accept-encoding")
        case 17: return bytesEqual(name, "transfer-encoding")
        default: return false
        }
    }

    static func isReserved(_ name: ArraySlice<UInt8>) -> Bool { name.withUnsafeBytes { isReserved($0) } }
}
