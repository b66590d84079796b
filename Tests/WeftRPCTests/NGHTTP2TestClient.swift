import CNghttp2
import NIOCore

/// A minimal HTTP/2 client on nghttp2's client session, for driving the
/// server handler through an EmbeddedChannel byte for byte.
final class NGHTTP2TestClient {
    struct Response {
        var headers: [(String, String)] = []
        var data: [UInt8] = []
        var trailers: [(String, String)] = []
        var closed = false
        var resetCode: UInt32?

        func header(_ name: String) -> String? { headers.first { $0.0 == name }?.1 }
        func trailer(_ name: String) -> String? { trailers.first { $0.0 == name }?.1 }
        /// grpc-status from trailers, or from headers for a trailers-only response.
        var grpcStatus: Int? { (trailer("grpc-status") ?? header("grpc-status")).flatMap { Int($0) } }
    }

    private(set) var session: OpaquePointer!
    var responses: [Int32: Response] = [:]
    var goawayErrorCode: UInt32?
    var pendingBodies: [Int32: [UInt8]] = [:]

    init() {
        var cbs: OpaquePointer?
        nghttp2_session_callbacks_new(&cbs)
        defer { nghttp2_session_callbacks_del(cbs) }
        nghttp2_session_callbacks_set_send_callback(cbs) { _, _, _, _, _ in Int(NGHTTP2_ERR_WOULDBLOCK.rawValue) }
        nghttp2_session_callbacks_set_on_header_callback(cbs) { _, frame, name, nlen, value, vlen, _, user in
            let client = Unmanaged<NGHTTP2TestClient>.fromOpaque(user!).takeUnretainedValue()
            let id = frame!.pointee.hd.stream_id
            let pair = (
                String(decoding: UnsafeRawBufferPointer(start: name, count: nlen), as: UTF8.self),
                String(decoding: UnsafeRawBufferPointer(start: value, count: vlen), as: UTF8.self)
            )
            if frame!.pointee.headers.cat == NGHTTP2_HCAT_HEADERS {
                client.responses[id, default: Response()].trailers.append(pair)
            } else {
                client.responses[id, default: Response()].headers.append(pair)
            }
            return 0
        }
        nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cbs) { _, _, id, data, len, user in
            let client = Unmanaged<NGHTTP2TestClient>.fromOpaque(user!).takeUnretainedValue()
            client.responses[id, default: Response()].data.append(contentsOf: UnsafeRawBufferPointer(start: data, count: len))
            return 0
        }
        nghttp2_session_callbacks_set_on_stream_close_callback(cbs) { _, id, code, user in
            let client = Unmanaged<NGHTTP2TestClient>.fromOpaque(user!).takeUnretainedValue()
            client.responses[id, default: Response()].closed = true
            if code != 0 { client.responses[id, default: Response()].resetCode = code }
            return 0
        }
        nghttp2_session_callbacks_set_on_frame_recv_callback(cbs) { _, frame, user in
            let client = Unmanaged<NGHTTP2TestClient>.fromOpaque(user!).takeUnretainedValue()
            if UInt32(frame!.pointee.hd.type) == NGHTTP2_GOAWAY.rawValue {
                client.goawayErrorCode = frame!.pointee.goaway.error_code
            }
            return 0
        }
        var session: OpaquePointer?
        nghttp2_session_client_new(&session, cbs, Unmanaged.passUnretained(self).toOpaque())
        self.session = session
        nghttp2_submit_settings(session, UInt8(NGHTTP2_FLAG_NONE.rawValue), nil, 0)
    }

    deinit { nghttp2_session_del(session) }

    /// Submits a request; `body` is sent as DATA with END_STREAM (nil: no body).
    @discardableResult
    func request(_ headers: [(String, String)], body: [UInt8]?) -> Int32 {
        withNVs(headers) { nvs in
            guard let body else {
                return nghttp2_submit_request(session, nil, nvs, nvs.count, nil, nil)
            }
            var provider = Self.bodyProvider
            let id = nghttp2_submit_request(session, nil, nvs, nvs.count, &provider, nil)
            pendingBodies[id] = body
            return id
        }
    }

    /// Opens a stream with its request headers only (no END_STREAM): what
    /// follows is sent with `send(_:on:endStream:)` or `reset(_:)`.
    func open(_ headers: [(String, String)]) -> Int32 {
        withNVs(headers) { nvs in
            nghttp2_submit_headers(session, UInt8(NGHTTP2_FLAG_NONE.rawValue), -1, nil, nvs, nvs.count, nil)
        }
    }

    /// One DATA frame of `bytes` on an open stream (END_STREAM if asked).
    func send(_ bytes: [UInt8], on id: Int32, endStream: Bool) {
        pendingBodies[id] = bytes
        var provider = Self.bodyProvider
        let flags = endStream ? NGHTTP2_FLAG_END_STREAM : NGHTTP2_FLAG_NONE
        precondition(nghttp2_submit_data(session, UInt8(flags.rawValue), id, &provider) == 0)
    }

    func reset(_ id: Int32) {
        precondition(nghttp2_submit_rst_stream(session, UInt8(NGHTTP2_FLAG_NONE.rawValue), id, NGHTTP2_CANCEL.rawValue) == 0)
    }

    /// Sends `pendingBodies[id]`, then EOF.
    private static let bodyProvider = nghttp2_data_provider(
        source: nghttp2_data_source(ptr: nil),
        read_callback: { _, id, buf, length, flags, _, user in
            let client = Unmanaged<NGHTTP2TestClient>.fromOpaque(user!).takeUnretainedValue()
            var pending = client.pendingBodies[id] ?? []
            let n = min(length, pending.count)
            pending.withUnsafeBytes { UnsafeMutableRawPointer(buf!).copyMemory(from: $0.baseAddress ?? UnsafeRawPointer(bitPattern: 1)!, byteCount: n) }
            pending.removeFirst(n)
            client.pendingBodies[id] = pending
            if pending.isEmpty { flags!.pointee |= NGHTTP2_DATA_FLAG_EOF.rawValue }
            return n
        })

    private func withNVs(_ headers: [(String, String)], _ body: ([nghttp2_nv]) -> Int32) -> Int32 {
        var storage: [[UInt8]] = []
        for (n, v) in headers {
            storage.append(Array(n.utf8))
            storage.append(Array(v.utf8))
        }
        var nvs: [nghttp2_nv] = []
        let pointers = storage.map { bytes -> UnsafeMutablePointer<UInt8> in
            let p = UnsafeMutablePointer<UInt8>.allocate(capacity: max(bytes.count, 1))
            p.initialize(from: bytes, count: bytes.count)
            return p
        }
        defer { pointers.forEach { $0.deallocate() } }
        for i in stride(from: 0, to: storage.count, by: 2) {
            nvs.append(
                nghttp2_nv(
                    name: pointers[i], value: pointers[i + 1], namelen: storage[i].count, valuelen: storage[i + 1].count,
                    flags: UInt8(NGHTTP2_NV_FLAG_NONE.rawValue)))
        }
        return body(nvs)
    }

    /// Everything the client wants to send now.
    func output() -> [UInt8] {
        var out: [UInt8] = []
        while true {
            var p: UnsafePointer<UInt8>?
            let n = nghttp2_session_mem_send(session, &p)
            if n <= 0 { break }
            out.append(contentsOf: UnsafeRawBufferPointer(start: p, count: n))
        }
        return out
    }

    func receive(_ bytes: [UInt8]) {
        _ = bytes.withUnsafeBufferPointer { nghttp2_session_mem_recv(session, $0.baseAddress, $0.count) }
    }

    static func grpcFrame(_ payload: [UInt8], compressed: Bool = false) -> [UInt8] {
        var out: [UInt8] = [compressed ? 1 : 0]
        withUnsafeBytes(of: UInt32(payload.count).bigEndian) { out.append(contentsOf: $0) }
        return out + payload
    }

    static func grpcHeaders(_ path: String, extra: [(String, String)] = []) -> [(String, String)] {
        [(":method", "POST"), (":scheme", "http"), (":path", path), (":authority", "localhost"),
         ("content-type", "application/grpc"), ("te", "trailers")] + extra
    }
}
