import NIOCore
import SwiftProtobuf
import Testing
import WeftProto

@testable import WeftRPC

@Suite("gRPC framing")
struct GRPCFramingTests {
    private func framed(_ payloads: [[UInt8]]) -> [UInt8] {
        var out: [UInt8] = []
        for p in payloads {
            out.append(0)
            withUnsafeBytes(of: UInt32(p.count).bigEndian) { out.append(contentsOf: $0) }
            out.append(contentsOf: p)
        }
        return out
    }

    @Test("messages split at every possible byte boundary come out whole")
    func splitsAnywhere() throws {
        let payloads: [[UInt8]] = [[], Array("hello".utf8), [UInt8](repeating: 7, count: 300)]
        let wire = framed(payloads)
        for cut in 0...wire.count {
            var deframer = GRPCMessageDeframer(maxMessageSize: 1024)
            var got: [[UInt8]] = []
            for part in [wire[0..<cut], wire[cut...]] {
                Array(part).withUnsafeBytes { deframer.append($0) }
                while let m = try deframer.next() { got.append(Array(m.bytes)) }
            }
            #expect(got == payloads, "cut at \(cut)")
            try deframer.finish()
        }
    }

    @Test("one byte at a time")
    func byteByByte() throws {
        let wire = framed([Array("abc".utf8), Array("defgh".utf8)])
        var deframer = GRPCMessageDeframer(maxMessageSize: 1024)
        var got: [String] = []
        for b in wire {
            [b].withUnsafeBytes { deframer.append($0) }
            while let m = try deframer.next() { got.append(String(decoding: m.bytes, as: UTF8.self)) }
        }
        #expect(got == ["abc", "defgh"])
    }

    @Test("an oversize length prefix is refused before the body arrives")
    func tooLargeAtPrefix() {
        var deframer = GRPCMessageDeframer(maxMessageSize: 4 * 1024 * 1024)
        let prefix: [UInt8] = [0, 0x06, 0x40, 0x00, 0x00]  // 100 MiB
        prefix.withUnsafeBytes { deframer.append($0) }
        #expect(throws: GRPCMessageDeframer.DeframeError.messageTooLarge(announced: 100 * 1024 * 1024, limit: 4 * 1024 * 1024)) {
            _ = try deframer.next()
        }
    }

    @Test("a message exactly at the limit is accepted")
    func atLimit() throws {
        var deframer = GRPCMessageDeframer(maxMessageSize: 10)
        framed([[UInt8](repeating: 1, count: 10)]).withUnsafeBytes { deframer.append($0) }
        #expect(try deframer.next()?.bytes.count == 10)
    }

    @Test("a bad compressed flag and a truncated frame are errors")
    func malformed() throws {
        var deframer = GRPCMessageDeframer(maxMessageSize: 100)
        [UInt8]([2, 0, 0, 0, 0]).withUnsafeBytes { deframer.append($0) }
        #expect(throws: GRPCMessageDeframer.DeframeError.invalidCompressedFlag(2)) { _ = try deframer.next() }

        var truncated = GRPCMessageDeframer(maxMessageSize: 100)
        [UInt8]([0, 0, 0, 0, 9, 1, 2]).withUnsafeBytes { truncated.append($0) }
        #expect(try truncated.next() == nil)
        #expect(throws: GRPCMessageDeframer.DeframeError.truncated(bufferedBytes: 7)) { try truncated.finish() }
    }

    @Test("framed messages carry the prefix and compress when asked")
    func framer() throws {
        let payload = [UInt8](repeating: UInt8(ascii: "a"), count: 1000)
        let plain = try GRPCFramedMessage(payload).wireBytes(compressor: nil)
        #expect(plain.count == 1005)
        #expect(plain[0] == 0)
        #expect(Array(plain[1..<5]) == [0, 0, 0x03, 0xE8])
        #expect(Array(plain[5...]) == payload)

        let compressed = try GRPCFramedMessage(payload).wireBytes(compressor: .gzip)
        #expect(compressed[0] == 1)
        let length = compressed[1..<5].reduce(0) { $0 << 8 | Int($1) }
        #expect(length == compressed.count - 5)
        #expect(length < 100)
        let restored = try Array(compressed[5...]).withUnsafeBytes {
            try GRPCCompression.decompress($0, algorithm: .gzip, limit: 10_000)
        }
        #expect(restored == payload)

        // An empty message is never compressed (the flag is per message).
        #expect(try GRPCFramedMessage([]).wireBytes(compressor: .gzip) == [0, 0, 0, 0, 0])
    }

    @Test("swift-protobuf serializes straight behind the prefix")
    func serializesInPlace() throws {
        var message = Grpc_Health_V1_HealthCheckResponse()
        message.status = .serving
        let framed: GRPCFramedMessage = try message.serializedBytes()
        #expect(framed.count == 2)
        #expect(try framed.wireBytes(compressor: nil) == [0, 0, 0, 0, 2, 0x08, 0x01])
    }
}

@Suite("gRPC compression")
struct GRPCCompressionTests {
    @Test("gzip and deflate round trip", arguments: GRPCCompression.Algorithm.allCases)
    func roundTrip(algorithm: GRPCCompression.Algorithm) throws {
        let input = (0..<50_000).map { UInt8(truncatingIfNeeded: $0 % 251) }
        let compressed = try input.withUnsafeBytes { try GRPCCompression.compress($0, algorithm: algorithm) }
        let output = try compressed.withUnsafeBytes {
            try GRPCCompression.decompress($0, algorithm: algorithm, limit: input.count)
        }
        #expect(output == input)
    }

    @Test("a compression bomb stops at the limit")
    func bomb() throws {
        let input = [UInt8](repeating: 0, count: 10 * 1024 * 1024)
        let compressed = try input.withUnsafeBytes { try GRPCCompression.compress($0, algorithm: .gzip) }
        #expect(compressed.count < 20_000)
        #expect(throws: GRPCCompression.CompressionError.tooLarge(limit: 1024 * 1024)) {
            _ = try compressed.withUnsafeBytes { try GRPCCompression.decompress($0, algorithm: .gzip, limit: 1024 * 1024) }
        }
    }

    @Test("corrupt input is an error, not a crash")
    func corrupt() {
        let junk: [UInt8] = [0x1f, 0x8b, 8, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9]
        #expect(throws: (any Error).self) {
            _ = try junk.withUnsafeBytes { try GRPCCompression.decompress($0, algorithm: .gzip, limit: 1000) }
        }
    }
}

@Suite("gRPC headers")
struct GRPCHeaderTests {
    @Test("grpc-timeout units")
    func timeouts() throws {
        #expect(GRPCTimeout.parse("1S") == .seconds(1))
        #expect(GRPCTimeout.parse("100m") == .milliseconds(100))
        #expect(GRPCTimeout.parse("5u") == .microseconds(5))
        // The largest the header allows does not overflow: it is capped at a century.
        let huge = try #require(GRPCTimeout.parse("99999999H"))
        #expect(huge == .seconds(99_999_999 * 3600))
        #expect(GRPCTimeout.nanoseconds(huge) == 100 * 365 * 86_400 * 1_000_000_000)
        #expect(GRPCTimeout.nanoseconds(.milliseconds(1500)) == 1_500_000_000)
        #expect(GRPCTimeout.parse("7n") == .nanoseconds(7))
        #expect(GRPCTimeout.parse("2M") == .seconds(120))
        #expect(GRPCTimeout.parse("1H") == .seconds(3600))
        #expect(GRPCTimeout.parse("99999999S") == .seconds(99_999_999))
    }

    @Test("malformed grpc-timeout values are rejected", arguments: ["", "S", "1", "123456789S", "1x", "-1S", "1.5S", " 1S"])
    func badTimeouts(_ value: String) {
        #expect(GRPCTimeout.parse(value) == nil)
    }

    @Test("grpc-message percent-encoding round trips")
    func statusMessage() {
        #expect(GRPCStatusMessage.encode("plain text") == "plain text")
        #expect(GRPCStatusMessage.encode("100% done") == "100%25 done")
        #expect(GRPCStatusMessage.encode("line\nbreak") == "line%0Abreak")
        #expect(GRPCStatusMessage.encode("café") == "caf%C3%A9")
        for s in ["héllo wörld ✓", "%%%", "a\tb", ""] {
            #expect(GRPCStatusMessage.decode(GRPCStatusMessage.encode(s)) == s)
        }
        #expect(GRPCStatusMessage.decode("bad %zz escape %4") == "bad %zz escape %4")
    }

    @Test("base64 for -bin metadata: unpadded out, padded or not in")
    func base64() {
        for bytes in [[], [0], [0, 1], [0, 1, 0xff], Array(0...255)] as [[UInt8]] {
            let encoded = Base64.encode(bytes)
            #expect(!encoded.contains("="))
            #expect(Base64.decode(encoded.utf8) == bytes)
            #expect(Base64.decode(Base64.encode(bytes, padded: true).utf8) == bytes)
        }
        #expect(Base64.decode("not base64!".utf8) == nil)
    }

    @Test("status codes map to HTTP statuses and Go names")
    func codes() {
        #expect(RPCError.Code.notFound.httpStatus == 404)
        #expect(RPCError.Code.unauthenticated.httpStatus == 401)
        #expect(RPCError.Code.cancelled.httpStatus == 499)
        #expect(RPCError.Code.unavailable.httpStatus == 503)
        #expect(RPCError.Code.deadlineExceeded.httpStatus == 504)
        #expect(RPCError.Code.cancelled.name == "Canceled")
        #expect(RPCError.Code.resourceExhausted.canonicalName == "RESOURCE_EXHAUSTED")
        #expect(RPCError.Code(rawValue: 17) == nil)
    }

    @Test("unknown errors become INTERNAL without their details")
    func internalErrors() {
        struct Secret: Error { let path = "/etc/secret" }
        let error = RPCError(from: Secret())
        #expect(error.code == .internal)
        #expect(!error.message.contains("secret"))
    }
}

@Suite("HTTP router")
struct HTTPRouterTests {
    @Test("literal segments win over parameters; 405 lists allowed methods")
    func matching() {
        var router = HTTPRouter()
        router.add("GET", "/workflows/{workflowId}") { _ in HTTPResponse(status: 200) }
        router.add("GET", "/workflows/search") { _ in HTTPResponse(status: 201) }
        router.add("DELETE", "/workflows/{workflowId}") { _ in HTTPResponse(status: 204) }
        guard case .found(let route, _, let params) = router.match(method: "GET", path: "/workflows/search") else {
            Issue.record("no match")
            return
        }
        #expect(route == "/workflows/search")
        #expect(params.isEmpty)
        guard case .found(let route2, _, let params2) = router.match(method: "GET", path: "/workflows/wf%20x") else {
            Issue.record("no match")
            return
        }
        #expect(route2 == "/workflows/{workflowId}")
        #expect(params2 == ["workflowId": "wf x"])
        guard case .methodNotAllowed(let allowed) = router.match(method: "POST", path: "/workflows/abc") else {
            Issue.record("expected 405")
            return
        }
        #expect(Set(allowed) == ["GET", "DELETE"])
        guard case .notFound = router.match(method: "GET", path: "/nope") else {
            Issue.record("expected 404")
            return
        }
    }

    @Test("routes are found by shape: a parameter first, the root, literals beside parameters; each method listed once")
    func shapes() {
        var router = HTTPRouter()
        router.add("GET", "/") { _ in HTTPResponse(status: 200) }
        router.add("GET", "/{name}/files") { _ in HTTPResponse(status: 200) }
        router.add("GET", "/hooks/files") { _ in HTTPResponse(status: 200) }
        router.add("PUT", "/hooks/{id}") { _ in HTTPResponse(status: 200) }
        router.add("POST", "/hooks/{id}") { _ in HTTPResponse(status: 200) }
        func route(_ method: String, _ path: String) -> String? {
            if case .found(let route, _, _) = router.match(method: method, path: path) { return route }
            return nil
        }
        #expect(route("GET", "/") == "/")
        #expect(route("GET", "/alpha/files") == "/{name}/files")
        #expect(route("GET", "/hooks/files") == "/hooks/files")
        #expect(route("PUT", "/hooks/h1") == "/hooks/{id}")
        guard case .methodNotAllowed(let allowed) = router.match(method: "DELETE", path: "/hooks/h1") else {
            Issue.record("expected 405")
            return
        }
        #expect(allowed.sorted() == ["POST", "PUT"])
        guard case .methodNotAllowed(let root) = router.match(method: "POST", path: "/") else {
            Issue.record("expected 405 on /")
            return
        }
        #expect(root == ["GET"])
    }
}
