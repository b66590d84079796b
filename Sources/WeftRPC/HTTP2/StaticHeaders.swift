import CNghttp2

/// Header sets sent on almost every gRPC response, built once in memory that
/// never moves or goes away, so nghttp2 can take them without copying
/// (NGHTTP2_NV_FLAG_NO_COPY_*): the common unary call builds no header block.
final class StaticHeaders: @unchecked Sendable {
    // Immutable after init; the pointers are never freed.
    private let nvs: UnsafeMutablePointer<nghttp2_nv>
    let count: Int

    init(_ fields: [(String, String)]) {
        count = fields.count
        nvs = .allocate(capacity: fields.count)
        for (i, (name, value)) in fields.enumerated() {
            nvs[i] = nghttp2_nv(
                name: Self.permanent(name), value: Self.permanent(value),
                namelen: name.utf8.count, valuelen: value.utf8.count,
                flags: UInt8(NGHTTP2_NV_FLAG_NO_COPY_NAME.rawValue | NGHTTP2_NV_FLAG_NO_COPY_VALUE.rawValue))
        }
    }

    var pointer: UnsafePointer<nghttp2_nv> { UnsafePointer(nvs) }

    private static func permanent(_ s: String) -> UnsafeMutablePointer<UInt8> {
        let bytes = Array(s.utf8)
        let p = UnsafeMutablePointer<UInt8>.allocate(capacity: max(bytes.count, 1))
        p.initialize(from: bytes, count: bytes.count)
        return p
    }

    /// Response headers of a gRPC call without compression or custom metadata.
    static let grpcResponse = StaticHeaders([
        (":status", "200"), ("content-type", "application/grpc"),
        ("grpc-accept-encoding", GRPCCompression.acceptEncodingHeader),
    ])

    /// Trailers of a successful call without custom trailing metadata.
    static let grpcOK = StaticHeaders([("grpc-status", "0")])
}
