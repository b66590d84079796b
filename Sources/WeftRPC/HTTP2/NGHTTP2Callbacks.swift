import CNghttp2

/// The C callbacks nghttp2 calls while `mem_recv`/`mem_send` run. They run on
/// the connection's event loop (inside the handler's own calls into nghttp2)
/// and reach the handler only through `user_data`, never through globals.
enum NGHTTP2Callbacks {
    /// One immutable callbacks object for every session (nghttp2 copies it).
    static let shared = SharedCallbacks()

    final class SharedCallbacks: @unchecked Sendable {
        let pointer: OpaquePointer

        init() {
            var cbs: OpaquePointer?
            precondition(nghttp2_session_callbacks_new(&cbs) == 0, "nghttp2_session_callbacks_new failed")
            let pointer = cbs!
            // Output goes through mem_send; this is never expected to be called.
            nghttp2_session_callbacks_set_send_callback(pointer) { _, _, _, _, _ in
                Int(NGHTTP2_ERR_WOULDBLOCK.rawValue)
            }
            nghttp2_session_callbacks_set_on_begin_headers_callback(pointer) { session, frame, userData in
                withHandler(userData) { $0.onBeginHeaders(session!, frame!) }
            }
            nghttp2_session_callbacks_set_on_header_callback(pointer) { session, frame, name, nameLength, value, valueLength, _, userData in
                // Straight to the stream whose head is being received (set
                // when its HEADERS began): no lookup, no dictionary, no retain.
                let frame = frame!
                guard frame.pointee.headers.cat == NGHTTP2_HCAT_REQUEST else { return 0 }
                let id = frame.pointee.hd.stream_id
                var stream = withHandler(userData) { $0.receivingHead }
                if stream?._withUnsafeGuaranteedRef({ $0.id }) != id {
                    guard let pointer = nghttp2_session_get_stream_user_data(session, id) else { return 0 }
                    stream = Unmanaged<HTTP2Stream>.fromOpaque(pointer)
                }
                stream!._withUnsafeGuaranteedRef {
                    $0.receiveHeader(
                        name: UnsafeRawBufferPointer(start: name, count: nameLength),
                        value: UnsafeRawBufferPointer(start: value, count: valueLength))
                }
                return 0
            }
            nghttp2_session_callbacks_set_on_frame_recv_callback(pointer) { session, frame, userData in
                withHandler(userData) { $0.onFrameReceived(session!, frame!) }
            }
            nghttp2_session_callbacks_set_on_begin_frame_callback(pointer) { _, hd, userData in
                // A DATA frame's payload length, to tell its whole payload
                // from a chunk of it (chunks carry the frame's flags, END_STREAM
                // included, however the socket split the frame).
                let hd = hd!.pointee
                if hd.type == UInt8(NGHTTP2_DATA.rawValue) {
                    let padded = hd.flags & UInt8(NGHTTP2_FLAG_PADDED.rawValue) != 0
                    withHandler(userData) { $0.dataFramePayload = padded ? -1 : hd.length }
                }
                return 0
            }
            nghttp2_session_callbacks_set_on_data_chunk_recv_callback(pointer) { session, flags, streamID, data, length, userData in
                let bytes = UnsafeRawBufferPointer(start: data, count: length)
                if let stream = nghttp2_session_get_stream_user_data(session, streamID) {
                    let lastFrameWhole =
                        flags & UInt8(NGHTTP2_FLAG_END_STREAM.rawValue) != 0
                        && withHandler(userData) { $0.dataFramePayload } == length
                    Unmanaged<HTTP2Stream>.fromOpaque(stream)._withUnsafeGuaranteedRef {
                        $0.receiveData(bytes, lastFrameWhole: lastFrameWhole)
                    }
                } else {
                    // A stream we already finished: give the window back at once.
                    withHandler(userData) { $0.consumeConnection(bytes.count) }
                }
                return 0
            }
            nghttp2_session_callbacks_set_on_stream_close_callback(pointer) { session, streamID, errorCode, userData in
                withHandler(userData) { $0.onStreamClosed(session!, streamID: streamID, errorCode: errorCode) }
            }
            nghttp2_session_callbacks_set_on_frame_send_callback(pointer) { _, frame, userData in
                // Only GOAWAY matters here: it is how nghttp2 ends a connection
                // for a protocol error or abuse (invalid HPACK, floods, rapid reset).
                guard UInt32(frame!.pointee.hd.type) == NGHTTP2_GOAWAY.rawValue,
                    frame!.pointee.goaway.error_code != NGHTTP2_NO_ERROR.rawValue
                else { return 0 }
                let goaway = frame!.pointee.goaway
                let debug = String(
                    decoding: UnsafeRawBufferPointer(start: goaway.opaque_data, count: goaway.opaque_data_len), as: UTF8.self)
                withHandler(userData) { $0.onGoAwaySent(errorCode: goaway.error_code, debug: debug) }
                return 0
            }
            nghttp2_session_callbacks_set_on_invalid_frame_recv_callback(pointer) { _, frame, errorCode, userData in
                withHandler(userData) { $0.onInvalidFrame(frame!, libraryError: errorCode) }
            }
            nghttp2_session_callbacks_set_error_callback2(pointer) { _, code, message, length, userData in
                withHandler(userData) {
                    $0.onLibraryError(
                        code, message: String(decoding: UnsafeRawBufferPointer(start: message, count: length), as: UTF8.self))
                }
            }
            self.pointer = pointer
        }
    }

    /// Session options: the protections the user card asks for.
    static func makeOptions(_ config: RPCServerConfig) -> OpaquePointer {
        var option: OpaquePointer?
        precondition(nghttp2_option_new(&option) == 0, "nghttp2_option_new failed")
        let o = option!
        // Flow control follows what handlers consume (backpressure), not what arrives.
        nghttp2_option_set_no_auto_window_update(o, 1)
        // Rapid reset (CVE-2023-44487): a token bucket on incoming RST_STREAM; GOAWAY when empty.
        nghttp2_option_set_stream_reset_rate_limit(o, UInt64(config.streamResetBurst), UInt64(config.streamResetRatePerSecond))
        // CONTINUATION flood (CVE-2024-27316 family).
        nghttp2_option_set_max_continuations(o, 8)
        // PING / SETTINGS flood: queued ACKs beyond this tear the session down.
        nghttp2_option_set_max_outbound_ack(o, 1000)
        nghttp2_option_set_max_settings(o, 32)
        // Closed streams are forgotten at once (no RFC 7540 priority tree to keep).
        nghttp2_option_set_no_closed_streams(o, 1)
        return o
    }

    /// The handler is alive for as long as its session (it deletes the
    /// session before it goes), so callbacks borrow it without a retain.
    @inline(__always)
    static func withHandler<R>(_ userData: UnsafeMutableRawPointer?, _ body: (HTTP2ServerConnectionHandler) -> R) -> R {
        Unmanaged<HTTP2ServerConnectionHandler>.fromOpaque(userData!)._withUnsafeGuaranteedRef(body)
    }

    /// The DATA source of every response: copies from the stream's outbound
    /// buffer; defers when it is empty; at the end sends trailers (gRPC) or
    /// END_STREAM (plain HTTP). The source pointer is the stream (kept alive
    /// by the connection's stream table until nghttp2 closes the stream).
    static let readCallback: nghttp2_data_source_read_callback = { _, _, buf, length, flags, source, _ in
        Unmanaged<HTTP2Stream>.fromOpaque(source!.pointee.ptr)._withUnsafeGuaranteedRef {
            $0.readResponseData(into: buf!, length: length, flags: flags!)
        }
    }
}
