import CNghttp2

/// A request ready to send many times: its HTTP/2 header block is built once
/// (nghttp2 copies it at submit), so a load loop that repeats a request pays
/// no per-call header encoding of its own.
final class PreparedRequest {
    let wire: WireRequest
    /// name/value bytes the `nva` entries point into.
    private let storage: UnsafeMutablePointer<UInt8>
    private(set) var nva: [nghttp2_nv] = []

    init(_ wire: WireRequest, authority: String, scheme: String) {
        self.wire = wire
        var pairs: [(String, String)] = [
            (":method", wire.method), (":scheme", scheme), (":authority", authority), (":path", wire.path),
        ]
        pairs.append(contentsOf: wire.headers)
        let total = pairs.reduce(0) { $0 + $1.0.utf8.count + $1.1.utf8.count }
        storage = .allocate(capacity: max(total, 1))
        var offset = 0
        var entries: [(Int, Int, Int, Int)] = []
        for (name, value) in pairs {
            let n = Array(name.utf8)
            let v = Array(value.utf8)
            (storage + offset).initialize(from: n, count: n.count)
            (storage + offset + n.count).initialize(from: v, count: v.count)
            entries.append((offset, n.count, offset + n.count, v.count))
            offset += n.count + v.count
        }
        nva = entries.map {
            nghttp2_nv(
                name: storage + $0.0, value: storage + $0.2, namelen: $0.1, valuelen: $0.3,
                flags: UInt8(NGHTTP2_NV_FLAG_NONE.rawValue))
        }
    }

    deinit { storage.deallocate() }
}
