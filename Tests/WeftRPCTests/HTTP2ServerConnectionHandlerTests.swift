import CNghttp2
import Logging
import NIOCore
import NIOEmbedded
import SwiftProtobuf
import Testing
import WeftObservability
import WeftProto

@testable import WeftRPC

/// The nghttp2 handler driven byte for byte through an EmbeddedChannel, with
/// nghttp2's own client session on the other side. Only inline handlers run
/// here (EmbeddedEventLoop is single-threaded); task handlers are covered by
/// the interop tests against a real server.
// Serialized: `noStreamLeak` counts live streams, which other tests here create.
@Suite("HTTP/2 connection handler", .serialized)
struct HTTP2ServerConnectionHandlerTests {
    final class Harness {
        let channel = EmbeddedChannel()
        let client = NGHTTP2TestClient()
        let metrics = WeftMetrics()

        init(config: RPCServerConfig = RPCServerConfig()) throws {
            try channel.pipeline.syncOperations.addHandler(
                ProtocolSniffer(environment: Self.environment(config: config, metrics: metrics), registry: ConnectionRegistry()))
            try channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 1)).wait()
        }

        static func environment(config: RPCServerConfig = RPCServerConfig(), metrics: WeftMetrics) -> ServerEnvironment {
            let rpcMetrics = RPCMetrics(metrics: metrics)
            var router = RPCRouter()
            router.register(TestHealthService(), metrics: rpcMetrics)
            router.register(PreparedTestService(), metrics: rpcMetrics)
            var http = HTTPRouter()
            http.add("GET", "/healthz") { _ in .json(200, ["status": "SERVING"]) }
            return ServerEnvironment(
                config: config, router: router, httpRouter: http, metrics: rpcMetrics,
                logger: Logger(label: "test", factory: { _ in SwiftLogNoOpLogHandler() }))
        }

        /// A connection ends by closing (its handler lets go of its streams then).
        deinit { _ = try? channel.finish() }

        /// Moves bytes both ways until neither side has anything to say.
        func exchange(clientBytes: [UInt8]? = nil, chunkSize: Int = .max) throws {
            var first = clientBytes ?? client.output()
            for _ in 0..<50 {
                var offset = 0
                while offset < first.count {
                    let end = min(first.count, offset + chunkSize)
                    try channel.writeInbound(channel.allocator.buffer(bytes: first[offset..<end]))
                    offset = end
                }
                var fromServer: [UInt8] = []
                while let buffer = try channel.readOutbound(as: ByteBuffer.self) {
                    fromServer.append(contentsOf: buffer.readableBytesView)
                }
                if fromServer.isEmpty && first.isEmpty { return }
                client.receive(fromServer)
                first = client.output()
            }
        }
    }

    static let preface = Array("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".utf8)

    private func checkRequest() throws -> [UInt8] {
        try Grpc_Health_V1_HealthCheckRequest().serializedBytes()
    }

    @Test("Health/Check answers SERVING with headers, one message and grpc-status 0")
    func healthCheck() throws {
        let h = try Harness()
        let id = h.client.request(NGHTTP2TestClient.grpcHeaders("/grpc.health.v1.Health/Check"),
                                  body: NGHTTP2TestClient.grpcFrame(try checkRequest()))
        try h.exchange()
        let r = try #require(h.client.responses[id])
        #expect(r.header(":status") == "200")
        #expect(r.header("content-type") == "application/grpc")
        #expect(r.grpcStatus == 0)
        #expect(r.closed)
        #expect(r.data.count >= 5)
        let response = try Grpc_Health_V1_HealthCheckResponse(serializedBytes: Array(r.data[5...]))
        #expect(response.status == .serving)
        let exposition = String(decoding: h.metrics.exposition(), as: UTF8.self)
        #expect(exposition.contains(#"grpc_server_handled_total{grpc_type="unary",grpc_service="grpc.health.v1.Health",grpc_method="Check",grpc_code="OK"} 1"#))
    }

    #if DEBUG  // the count of live streams exists in debug builds only
    @Test("streams do not outlive their calls (no reference cycle between a stream and its exchange)")
    func noStreamLeak() throws {
        let before = HTTP2Stream.live.load(ordering: .relaxed)
        do {
            let h = try Harness()
            var ids: [Int32] = []
            for _ in 0..<20 {
                ids.append(h.client.request(
                    NGHTTP2TestClient.grpcHeaders("/grpc.health.v1.Health/Check"), body: NGHTTP2TestClient.grpcFrame(try checkRequest())))
            }
            ids.append(h.client.request([(":method", "GET"), (":scheme", "http"), (":path", "/nope"), (":authority", "x")], body: nil))
            try h.exchange()
            #expect(ids.allSatisfy { h.client.responses[$0] != nil })
        }
        #expect(HTTP2Stream.live.load(ordering: .relaxed) == before)
    }
    #endif

    @Test("a reused stream starts clean: compression, size limits and unknown methods of one call do not leak into the next")
    func reusedStreamsStartClean() throws {
        var config = RPCServerConfig()
        config.maxHeaderListSize = 1024
        let h = try Harness(config: config)
        #if DEBUG
        let madeBefore = HTTP2Stream.made.load(ordering: .relaxed)
        #endif
        for _ in 0..<10 {
            let payload: [UInt8] = try checkRequest()
            let compressed = try payload.withUnsafeBytes { try GRPCCompression.compress($0, algorithm: .gzip) }
            let gzipped = h.client.request(
                NGHTTP2TestClient.grpcHeaders(
                    "/grpc.health.v1.Health/Check",
                    extra: [("grpc-encoding", "gzip"), ("grpc-accept-encoding", "gzip"), ("x-trace", "a"), ("grpc-timeout", "5S")]),
                body: NGHTTP2TestClient.grpcFrame(compressed, compressed: true))
            try h.exchange()
            #expect(h.client.responses[gzipped]?.header("grpc-encoding") == "gzip")
            let tooLarge = h.client.request(
                NGHTTP2TestClient.grpcHeaders("/grpc.health.v1.Health/Check", extra: [("x-big", String(repeating: "a", count: 2000))]),
                body: NGHTTP2TestClient.grpcFrame(payload))
            try h.exchange()
            #expect(h.client.responses[tooLarge]?.grpcStatus == 8)
            let unknown = h.client.request(NGHTTP2TestClient.grpcHeaders("/grpc.health.v1.Health/Nope"), body: NGHTTP2TestClient.grpcFrame([]))
            try h.exchange()
            #expect(h.client.responses[unknown]?.grpcStatus == 12)
            let plain = h.client.request(
                NGHTTP2TestClient.grpcHeaders("/grpc.health.v1.Health/Check"), body: NGHTTP2TestClient.grpcFrame(payload))
            try h.exchange()
            let r = try #require(h.client.responses[plain])
            #expect(r.grpcStatus == 0)
            #expect(r.header("grpc-encoding") == nil)
            #expect(r.data.first == 0)
            #expect(try Grpc_Health_V1_HealthCheckResponse(serializedBytes: Array(r.data[5...])).status == .serving)
        }
        #if DEBUG
        // 40 calls one after another: the closed streams were reused.
        #expect(HTTP2Stream.made.load(ordering: .relaxed) - madeBefore <= 2)
        #endif
    }

    @Test("nghttp2's blocks come back from the session's pool: calls after the first reuse them")
    func sessionPoolReuse() throws {
        let h = try Harness()
        for round in 0..<20 {
            let id = h.client.request(
                NGHTTP2TestClient.grpcHeaders("/grpc.health.v1.Health/Check"), body: NGHTTP2TestClient.grpcFrame(try checkRequest()))
            try h.exchange()
            #expect(h.client.responses[id]?.grpcStatus == 0, "call \(round)")
        }
        // In the pipeline once the preface told HTTP/2 from HTTP/1.1.
        let handler = try h.channel.pipeline.syncOperations.handler(type: HTTP2ServerConnectionHandler.self)
        let (allocations, reused) = handler.poolCounts
        #expect(allocations > 100)
        // Each call frees what it took; only the first calls (and the session's
        // own long-lived buffers) need new memory.
        #expect(Double(reused) > 0.8 * Double(allocations))
    }

    @Test("the request arriving one byte per read still works (frames split anywhere)")
    func byteByByte() throws {
        let h = try Harness()
        let id = h.client.request(NGHTTP2TestClient.grpcHeaders("/grpc.health.v1.Health/Check"),
                                  body: NGHTTP2TestClient.grpcFrame(try checkRequest()))
        try h.exchange(chunkSize: 1)
        #expect(h.client.responses[id]?.grpcStatus == 0)
    }

    @Test("many calls on one connection in one read burst")
    func manyStreams() throws {
        let h = try Harness()
        let ids = try (0..<50).map { _ in
            h.client.request(NGHTTP2TestClient.grpcHeaders("/grpc.health.v1.Health/Check"),
                             body: NGHTTP2TestClient.grpcFrame(try checkRequest()))
        }
        // Calls of another method in the same read burst: the burst's tally
        // switches methods and loses nothing.
        let unknown = (0..<7).map { _ in
            h.client.request(NGHTTP2TestClient.grpcHeaders("/grpc.health.v1.Health/Nope"), body: NGHTTP2TestClient.grpcFrame([]))
        }
        try h.exchange()
        for id in ids { #expect(h.client.responses[id]?.grpcStatus == 0) }
        for id in unknown { #expect(h.client.responses[id]?.grpcStatus == 12) }
        let text = String(decoding: h.metrics.exposition(), as: UTF8.self)
        let check = #"grpc_type="unary",grpc_service="grpc.health.v1.Health",grpc_method="Check""#
        for line in [
            "grpc_server_started_total{\(check)} 50", "grpc_server_handled_total{\(check),grpc_code=\"OK\"} 50",
            "grpc_server_msg_received_total{\(check)} 50", "grpc_server_msg_sent_total{\(check)} 50",
            #"grpc_server_started_total{grpc_type="unary",grpc_service="unknown",grpc_method="unknown"} 7"#,
            "weft_http2_server_streams_active 0.0",
        ] {
            #expect(text.contains(line + "\n"), "\(line)")
        }
    }

    @Test("unknown service and method are trailers-only UNIMPLEMENTED")
    func unimplemented() throws {
        let h = try Harness()
        let a = h.client.request(NGHTTP2TestClient.grpcHeaders("/no.Such/Method"), body: NGHTTP2TestClient.grpcFrame([]))
        let b = h.client.request(NGHTTP2TestClient.grpcHeaders("/grpc.health.v1.Health/Nope"), body: NGHTTP2TestClient.grpcFrame([]))
        try h.exchange()
        for id in [a, b] {
            let r = try #require(h.client.responses[id])
            #expect(r.header(":status") == "200")
            #expect(r.header("grpc-status") == "12")
            #expect(r.data.isEmpty)
            #expect(r.trailers.isEmpty)
        }
        #expect(h.client.responses[a]?.header("grpc-message")?.contains("unknown service") == true)
        #expect(h.client.responses[b]?.header("grpc-message")?.contains("unknown method") == true)
    }

    @Test("an unknown service in Check is NOT_FOUND with a percent-encoded message")
    func notFound() throws {
        let h = try Harness()
        var request = Grpc_Health_V1_HealthCheckRequest()
        request.service = "nö such"
        let id = h.client.request(NGHTTP2TestClient.grpcHeaders("/grpc.health.v1.Health/Check"),
                                  body: NGHTTP2TestClient.grpcFrame(try request.serializedBytes()))
        try h.exchange()
        let r = try #require(h.client.responses[id])
        #expect(r.grpcStatus == 5)
        #expect(r.header("grpc-message") == "unknown service n%C3%B6 such")
    }

    @Test("a gRPC path with a non-gRPC content-type is HTTP 415")
    func wrongContentType() throws {
        let h = try Harness()
        let id = h.client.request(
            [(":method", "POST"), (":scheme", "http"), (":path", "/grpc.health.v1.Health/Check"),
             (":authority", "x"), ("content-type", "application/json")], body: Array("{}".utf8))
        try h.exchange()
        #expect(h.client.responses[id]?.header(":status") == "415")
    }

    @Test("an unknown path over HTTP/2 is a 404 JSON body, answered on the event loop")
    func httpOverH2() throws {
        let h = try Harness()
        let missing = h.client.request([(":method", "GET"), (":scheme", "http"), (":path", "/nope"), (":authority", "x")], body: nil)
        try h.exchange()
        #expect(h.client.responses[missing]?.header(":status") == "404")
        #expect(h.client.responses[missing]?.header("content-type") == "application/json")
        let body = String(decoding: h.client.responses[missing]?.data ?? [], as: UTF8.self)
        #expect(body == #"{"code":5,"details":[],"message":"no route for GET /nope"}"#)
    }

    @Test("a length prefix over the limit is RESOURCE_EXHAUSTED without the body")
    func tooLarge() throws {
        var config = RPCServerConfig()
        config.maxReceiveMessageSize = 1024
        let h = try Harness(config: config)
        let id = h.client.request(NGHTTP2TestClient.grpcHeaders("/grpc.health.v1.Health/Check"),
                                  body: [0, 0x06, 0x40, 0, 0, 1, 2, 3])
        try h.exchange()
        let r = try #require(h.client.responses[id])
        #expect(r.grpcStatus == 8)
        #expect(r.header("grpc-message")?.contains("exceeds the limit of 1024 bytes") == true)
    }

    @Test("a request ending inside a frame is INTERNAL")
    func truncated() throws {
        let h = try Harness()
        let id = h.client.request(NGHTTP2TestClient.grpcHeaders("/grpc.health.v1.Health/Check"), body: [0, 0, 0, 0, 100, 1, 2])
        try h.exchange()
        #expect(h.client.responses[id]?.grpcStatus == 13)
    }

    @Test("gzip: a compressed request is accepted and the response mirrors it")
    func gzip() throws {
        let h = try Harness()
        var request = Grpc_Health_V1_HealthCheckRequest()
        request.service = String(repeating: "", count: 0)
        let payload: [UInt8] = try request.serializedBytes() + Array(repeating: 0, count: 0)
        let compressed = try Array("".utf8).withUnsafeBytes { _ in
            try payload.withUnsafeBytes { try GRPCCompression.compress($0, algorithm: .gzip) }
        }
        let id = h.client.request(
            NGHTTP2TestClient.grpcHeaders(
                "/grpc.health.v1.Health/Check", extra: [("grpc-encoding", "gzip"), ("grpc-accept-encoding", "identity, gzip")]),
            body: NGHTTP2TestClient.grpcFrame(compressed, compressed: true))
        try h.exchange()
        let r = try #require(h.client.responses[id])
        #expect(r.grpcStatus == 0)
        #expect(r.header("grpc-encoding") == "gzip")
        #expect(r.data.first == 1)
        let body = Array(r.data[5...])
        let plain = try body.withUnsafeBytes { try GRPCCompression.decompress($0, algorithm: .gzip, limit: 1000) }
        #expect(try Grpc_Health_V1_HealthCheckResponse(serializedBytes: plain).status == .serving)
    }

    @Test("a context-free fast path answers on the wire, mirrors gzip, and its error is the status")
    func contextFreeFastPath() throws {
        let h = try Harness()
        let plain = h.client.request(
            NGHTTP2TestClient.grpcHeaders("/test.Prepared/Check"), body: NGHTTP2TestClient.grpcFrame(try checkRequest()))
        let payload = try checkRequest()
        let compressed = try payload.withUnsafeBytes { try GRPCCompression.compress($0, algorithm: .gzip) }
        let zipped = h.client.request(
            NGHTTP2TestClient.grpcHeaders(
                "/test.Prepared/Check", extra: [("grpc-encoding", "gzip"), ("grpc-accept-encoding", "identity, gzip")]),
            body: NGHTTP2TestClient.grpcFrame(compressed, compressed: true))
        let bad = h.client.request(
            NGHTTP2TestClient.grpcHeaders("/test.Prepared/Check"),
            body: NGHTTP2TestClient.grpcFrame(try Grpc_Health_V1_HealthCheckRequest.with { $0.service = "bad" }.serializedBytes()))
        try h.exchange()

        let r = try #require(h.client.responses[plain])
        #expect(r.grpcStatus == 0)
        #expect(r.data.first == 0)
        #expect(try Grpc_Health_V1_HealthCheckResponse(serializedBytes: Array(r.data[5...])).status == .serving)

        let z = try #require(h.client.responses[zipped])
        #expect(z.grpcStatus == 0)
        #expect(z.header("grpc-encoding") == "gzip")
        #expect(z.data.first == 1)
        let body = Array(z.data[5...])
        let unzipped = try body.withUnsafeBytes { try GRPCCompression.decompress($0, algorithm: .gzip, limit: 1000) }
        #expect(try Grpc_Health_V1_HealthCheckResponse(serializedBytes: unzipped).status == .serving)

        let b = try #require(h.client.responses[bad])
        #expect(b.grpcStatus == 3)
        #expect((b.trailer("grpc-message") ?? b.header("grpc-message")) == "bad service")
    }

    /// `grpc_server_*_total` of test.Prepared/Check in the harness's exposition.
    private func preparedCount(_ h: Harness, _ counter: String, code: String? = nil) -> Int? {
        let labels = #"grpc_type="unary",grpc_service="test.Prepared",grpc_method="Check""# + (code.map { #",grpc_code="\#($0)""# } ?? "")
        let text = String(decoding: h.metrics.exposition(), as: UTF8.self)
        let prefix = "grpc_server_\(counter)_total{\(labels)} "
        return text.split(separator: "\n").first { $0.hasPrefix(prefix) }.flatMap { Int($0.dropFirst(prefix.count)) }
    }

    /// A context-free method (answered in place when plain) and an inline one (always a call object).
    static let unaryPaths = ["/test.Prepared/Check", "/grpc.health.v1.Health/Check"]

    #if DEBUG
    private func callsMade(_ h: Harness) throws -> Int {
        try h.channel.pipeline.syncOperations.handler(type: HTTP2ServerConnectionHandler.self).grpcCallsMade
    }
    #endif

    @Test("a plain context-free call answered by its stream is counted like any call; bad input still gets its status")
    func plainUnaryCounted() throws {
        let h = try Harness()
        var ids = try (0..<3).map { _ in
            h.client.request(NGHTTP2TestClient.grpcHeaders("/test.Prepared/Check"), body: NGHTTP2TestClient.grpcFrame(try checkRequest()))
        }
        // grpc-encoding: identity is no compression: still plain.
        ids.append(
            h.client.request(
                NGHTTP2TestClient.grpcHeaders("/test.Prepared/Check", extra: [("grpc-encoding", "identity")]),
                body: NGHTTP2TestClient.grpcFrame(try checkRequest())))
        // No message at all: the call it becomes refuses it.
        let empty = h.client.request(NGHTTP2TestClient.grpcHeaders("/test.Prepared/Check"), body: nil)
        // A compressed frame without grpc-encoding: not plain enough to answer in place.
        let flagged = h.client.request(
            NGHTTP2TestClient.grpcHeaders("/test.Prepared/Check"), body: NGHTTP2TestClient.grpcFrame([], compressed: true))
        try h.exchange()
        for id in ids {
            let r = try #require(h.client.responses[id])
            #expect(r.header("content-type") == "application/grpc")
            #expect(r.grpcStatus == 0)
            #expect(try Grpc_Health_V1_HealthCheckResponse(serializedBytes: Array(r.data[5...])).status == .serving)
        }
        #expect(h.client.responses[empty]?.grpcStatus == 13)
        #expect(h.client.responses[flagged]?.grpcStatus == 13)
        #expect(preparedCount(h, "started") == 6)
        #expect(preparedCount(h, "handled", code: "OK") == 4)
        #expect(preparedCount(h, "handled", code: "Internal") == 2)
        #expect(preparedCount(h, "msg_received") == 4)
        #expect(preparedCount(h, "msg_sent") == 4)
        #if DEBUG
        // Only the two refused calls became call objects.
        #expect(try callsMade(h) == 2)
        #endif
    }

    @Test("two messages in the DATA frame that ends a unary call are INTERNAL even when a read ends between them", arguments: Self.unaryPaths)
    func lastFrameSplitByReads(path: String) throws {
        let h = try Harness()
        let frame = NGHTTP2TestClient.grpcFrame(try checkRequest())
        let id = h.client.request(NGHTTP2TestClient.grpcHeaders(path), body: frame + frame)
        let bytes = h.client.output()
        // The DATA frame comes last, so the first read ends with the
        // first message: that chunk carries the frame's END_STREAM flag
        // and looks like a whole request.
        #expect(Array(bytes.suffix(2 * frame.count + 9).prefix(9)) == [0, 0, 10, 0, 1, 0, 0, 0, 1], "one DATA frame, END_STREAM, stream 1")
        #expect(Array(bytes.suffix(2 * frame.count)) == frame + frame)
        try h.channel.writeInbound(h.channel.allocator.buffer(bytes: bytes[..<(bytes.count - frame.count)]))
        try h.exchange(clientBytes: Array(bytes[(bytes.count - frame.count)...]))
        let r = try #require(h.client.responses[id], "\(path)")
        #expect(r.grpcStatus == 13, "\(path)")
        #if DEBUG
        #expect(try callsMade(h) == 1, "\(path)")
        #endif
    }

    @Test("a body shorter than its content-length is reset, not answered, on both paths; a matching one is answered in place", arguments: Self.unaryPaths)
    func contentLengthChecked(path: String) throws {
        let h = try Harness()
        let frame = NGHTTP2TestClient.grpcFrame(try checkRequest())
        let short = h.client.request(
            NGHTTP2TestClient.grpcHeaders(path, extra: [("content-length", "\(frame.count + 1)")]), body: frame)
        let exact = h.client.request(
            NGHTTP2TestClient.grpcHeaders(path, extra: [("content-length", "\(frame.count)")]), body: frame)
        try h.exchange()
        let r = try #require(h.client.responses[short], "\(path)")
        #expect(r.resetCode == 1, "\(path): PROTOCOL_ERROR")
        #expect(r.grpcStatus == nil, "\(path): no status for a malformed request")
        #expect(h.client.responses[exact]?.grpcStatus == 0, "\(path)")
        let text = String(decoding: h.metrics.exposition(), as: UTF8.self)
        let service = path.hasPrefix("/test") ? "test.Prepared" : "grpc.health.v1.Health"
        let labels = #"grpc_type="unary",grpc_service="\#(service)",grpc_method="Check""#
        #expect(text.contains("grpc_server_handled_total{\(labels),grpc_code=\"OK\"} 1\n"), "\(path)")
        #expect(text.contains("grpc_server_handled_total{\(labels),grpc_code=\"Canceled\"} 1\n"), "\(path)")
        #if DEBUG
        // The Prepared call with the right length was answered in place.
        #expect(try callsMade(h) == (path.hasPrefix("/test") ? 1 : 2), "\(path)")
        #endif
    }

    @Test("a plain call whose message is split over DATA frames, or ends in an empty one, is answered by the full call")
    func plainUnaryFallsBackToTheCall() throws {
        let h = try Harness()
        let frame = NGHTTP2TestClient.grpcFrame(try Grpc_Health_V1_HealthCheckRequest().serializedBytes())
        let split = h.client.open(NGHTTP2TestClient.grpcHeaders("/test.Prepared/Check"))
        let trailing = h.client.open(NGHTTP2TestClient.grpcHeaders("/test.Prepared/Check"))
        try h.exchange()
        h.client.send(Array(frame[..<3]), on: split, endStream: false)
        h.client.send(frame, on: trailing, endStream: false)
        try h.exchange()
        #expect(h.client.responses[split] == nil && h.client.responses[trailing] == nil, "no answer before the request ends")
        h.client.send(Array(frame[3...]), on: split, endStream: true)
        h.client.send([], on: trailing, endStream: true)
        try h.exchange()
        for id in [split, trailing] {
            let r = try #require(h.client.responses[id])
            #expect(r.grpcStatus == 0)
            #expect(try Grpc_Health_V1_HealthCheckResponse(serializedBytes: Array(r.data[5...])).status == .serving)
        }
        #expect(preparedCount(h, "started") == 2)
        #expect(preparedCount(h, "handled", code: "OK") == 2)
        #if DEBUG
        #expect(try callsMade(h) == 2)
        #endif
    }

    @Test("a plain call reset before its message counts as cancelled, and its stream is reused")
    func plainUnaryReset() throws {
        let h = try Harness()
        #if DEBUG
        let madeBefore = HTTP2Stream.made.load(ordering: .relaxed)
        #endif
        let id = h.client.open(NGHTTP2TestClient.grpcHeaders("/test.Prepared/Check"))
        try h.exchange()
        h.client.reset(id)
        try h.exchange()
        #expect(preparedCount(h, "started") == 1)
        #expect(preparedCount(h, "handled", code: "Canceled") == 1)
        let next = h.client.request(
            NGHTTP2TestClient.grpcHeaders("/test.Prepared/Check"), body: NGHTTP2TestClient.grpcFrame(try checkRequest()))
        try h.exchange()
        #expect(h.client.responses[next]?.grpcStatus == 0)
        #expect(preparedCount(h, "handled", code: "OK") == 1)
        let text = String(decoding: h.metrics.exposition(), as: UTF8.self)
        #expect(text.contains("weft_http2_server_streams_active 0.0\n"))
        #if DEBUG
        // The reset call became a call object (to be counted as cancelled);
        // the next one took the first's stream.
        #expect(try callsMade(h) == 1)
        #expect(HTTP2Stream.made.load(ordering: .relaxed) - madeBefore == 1)
        #endif
    }

    @Test("a plain call whose fast path declines runs its handler as a task, with a context, and answers on the wire")
    func plainUnaryDeclines() async throws {
        // A thread-safe test loop: the handler task hops back onto it.
        let channel = NIOAsyncTestingChannel()
        let metrics = WeftMetrics()
        let environment = Harness.environment(metrics: metrics)
        try await channel.testingEventLoop.executeInContext {
            try channel.pipeline.syncOperations.addHandler(ProtocolSniffer(environment: environment, registry: ConnectionRegistry()))
        }
        try await channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 1))
        let client = NGHTTP2TestClient()
        let runsBefore = PreparedTestService.fastRuns.withLock { $0["slow-wire", default: 0] }
        let id = client.request(
            NGHTTP2TestClient.grpcHeaders("/test.Prepared/Check"),
            body: NGHTTP2TestClient.grpcFrame(try Grpc_Health_V1_HealthCheckRequest.with { $0.service = "slow-wire" }.serializedBytes()))
        var toServer = client.output()
        for _ in 0..<500 where client.responses[id]?.closed != true {
            if !toServer.isEmpty { try await channel.writeInbound(channel.allocator.buffer(bytes: toServer)) }
            await channel.testingEventLoop.run()
            var fromServer: [UInt8] = []
            while let buffer = try await channel.readOutbound(as: ByteBuffer.self) { fromServer += buffer.readableBytesView }
            if !fromServer.isEmpty { client.receive(fromServer) }
            toServer = client.output()
            try await Task.sleep(for: .milliseconds(5))
        }
        let r = try #require(client.responses[id])
        #expect(r.grpcStatus == 0)
        // The task handler's answer (the fast path has none for "slow-wire"), and its trailer.
        #expect(try Grpc_Health_V1_HealthCheckResponse(serializedBytes: Array(r.data[5...])).status == .unknown)
        #expect(r.trailer("x-fallback") == "slow-wire")
        // The fast path ran once: its answer (none) went to the call.
        #expect(PreparedTestService.fastRuns.withLock { $0["slow-wire", default: 0] } - runsBefore == 1)
        let text = String(decoding: metrics.exposition(), as: UTF8.self)
        let labels = #"grpc_type="unary",grpc_service="test.Prepared",grpc_method="Check""#
        #expect(text.contains("grpc_server_started_total{\(labels)} 1\n"))
        #expect(text.contains("grpc_server_handled_total{\(labels),grpc_code=\"OK\"} 1\n"))
        _ = try? await channel.finish()
    }

    @Test("an unsupported grpc-encoding is UNIMPLEMENTED and lists what is accepted")
    func unsupportedEncoding() throws {
        let h = try Harness()
        let id = h.client.request(
            NGHTTP2TestClient.grpcHeaders("/grpc.health.v1.Health/Check", extra: [("grpc-encoding", "snappy")]),
            body: NGHTTP2TestClient.grpcFrame([], compressed: false))
        try h.exchange()
        let r = try #require(h.client.responses[id])
        #expect(r.grpcStatus == 12)
        #expect(r.header("grpc-accept-encoding") == GRPCCompression.acceptEncodingHeader)
    }

    @Test("headers over the size limit are RESOURCE_EXHAUSTED")
    func headerListTooLarge() throws {
        var config = RPCServerConfig()
        config.maxHeaderListSize = 1024
        let h = try Harness(config: config)
        let id = h.client.request(
            NGHTTP2TestClient.grpcHeaders("/grpc.health.v1.Health/Check", extra: [("x-big", String(repeating: "a", count: 2000))]),
            body: NGHTTP2TestClient.grpcFrame([]))
        try h.exchange()
        #expect(h.client.responses[id]?.grpcStatus == 8)
    }

    @Test("invalid HPACK closes the connection with GOAWAY COMPRESSION_ERROR")
    func invalidHPACK() throws {
        let h = try Harness()
        var bytes = Self.preface
        bytes += [0, 0, 0, 4, 0, 0, 0, 0, 0]  // empty SETTINGS
        bytes += [0, 0, 5, 1, 5, 0, 0, 0, 1, 0xff, 0xff, 0xff, 0xff, 0xff]  // HEADERS, END_STREAM|END_HEADERS
        try h.channel.writeInbound(h.channel.allocator.buffer(bytes: bytes))
        var fromServer: [UInt8] = []
        while let buffer = try h.channel.readOutbound(as: ByteBuffer.self) { fromServer += buffer.readableBytesView }
        // Find the GOAWAY frame (type 7) and its error code.
        var i = 0
        var goaway: UInt32?
        while i + 9 <= fromServer.count {
            let length = Int(fromServer[i]) << 16 | Int(fromServer[i + 1]) << 8 | Int(fromServer[i + 2])
            if fromServer[i + 3] == 7, i + 9 + 8 <= fromServer.count {
                goaway = fromServer[(i + 13)..<(i + 17)].reduce(0) { $0 << 8 | UInt32($1) }
            }
            i += 9 + length
        }
        #expect(goaway == NGHTTP2_COMPRESSION_ERROR.rawValue)
        #expect(!h.channel.isActive)
    }

    @Test("bytes that are not the HTTP/2 preface go to HTTP/1.1, which answers garbage with 400 and closes")
    func garbagePreface() throws {
        let h = try Harness()
        try h.channel.writeInbound(h.channel.allocator.buffer(bytes: Array("\u{16}\u{03}\u{01}garbage\r\n\r\n".utf8)))
        var fromServer: [UInt8] = []
        while let buffer = try h.channel.readOutbound(as: ByteBuffer.self) { fromServer += buffer.readableBytesView }
        let text = String(decoding: fromServer, as: UTF8.self)
        #expect(text.hasPrefix("HTTP/1.1 400"))
        #expect(!h.channel.isActive)
    }

    @Test("graceful shutdown sends GOAWAY and closes once no stream is open")
    func gracefulShutdown() throws {
        let h = try Harness()
        try h.exchange()
        let handler = try h.channel.pipeline.syncOperations.handler(type: HTTP2ServerConnectionHandler.self)
        handler.initiateGracefulShutdown()
        h.channel.embeddedEventLoop.advanceTime(by: .milliseconds(200))
        try h.exchange()
        #expect(h.client.goawayErrorCode == NGHTTP2_NO_ERROR.rawValue)
        #expect(!h.channel.isActive)
    }
}

extension HTTP2ServerConnectionHandlerTests {
    @Test("plain HTTP requests with oversize headers get 431")
    func httpHeadersTooLarge() throws {
        var config = RPCServerConfig()
        config.maxHeaderListSize = 1024
        let h = try Harness(config: config)
        let id = h.client.request(
            [(":method", "GET"), (":scheme", "http"), (":path", "/healthz"), (":authority", "x"),
             ("x-big", String(repeating: "a", count: 2000))], body: nil)
        try h.exchange()
        #expect(h.client.responses[id]?.header(":status") == "431")
    }
}
