import Foundation
import Testing
@testable import WeftRPC

/// The server side of a gRPC call without sockets: every path of
/// `GRPCCallStateMachine`, head to status.
@Suite("gRPC call state machine")
struct GRPCCallStateMachineTests {
    typealias Machine = GRPCCallStateMachine

    static let limit = 1024

    func machine() -> Machine { Machine(configuration: .init(maxMessageSize: Self.limit, maxHeaderListSize: 16384)) }

    /// A request head from header pairs (content-type defaults to gRPC).
    func head(
        method: String? = "POST", path: String = "/svc.S/M", _ headers: [(String, String)] = [],
        contentType: String = "application/grpc", tooLarge: Bool = false
    ) -> Machine.RequestHead {
        var fields = HeaderFields()
        var head = Machine.RequestHead(method: method, fields: fields, headersTooLarge: tooLarge)
        head.pathField = Array(":path".utf8).withUnsafeBytes { n in
            Array(path.utf8).withUnsafeBytes { v in fields.append(name: n, value: v) }
        }
        for (name, value) in [("content-type", contentType)] + headers {
            let index = Array(name.utf8).withUnsafeBytes { n in
                Array(value.utf8).withUnsafeBytes { v in fields.append(name: n, value: v) }
            }
            switch name {
            case "content-type": head.contentType = index
            case "grpc-timeout": head.timeout = index
            case "grpc-encoding": head.encoding = index
            case "grpc-accept-encoding": head.acceptEncoding = index
            default: break
            }
        }
        head.fields = fields
        return head
    }

    func acceptance(_ action: Machine.HeadAction) -> Machine.Accepted? {
        if case .accept(let accepted) = action { accepted } else { nil }
    }

    func refusal(_ action: Machine.HeadAction) -> (RPCError.Code, String, Bool)? {
        if case .refuse(let error, let log) = action { (error.code, error.message, log) } else { nil }
    }

    static func frame(_ payload: [UInt8], compressed: Bool = false) -> [UInt8] {
        let n = payload.count
        return [compressed ? 1 : 0, UInt8(n >> 24 & 0xff), UInt8(n >> 16 & 0xff), UInt8(n >> 8 & 0xff), UInt8(n & 0xff)] + payload
    }

    // MARK: Head

    @Test("a well-formed head is accepted with its metadata, deadline and compression")
    func acceptHead() throws {
        var m = machine()
        let action = m.receiveHead(
            head([
                ("grpc-timeout", "250m"), ("grpc-encoding", "gzip"), ("grpc-accept-encoding", "identity, gzip"),
                ("x-user", "ada"), ("trace-bin", "AAEC"), ("te", "trailers"), ("user-agent", "grpc-python"),
            ]),
            lookup: .found(.unary))
        let accepted = try #require(acceptance(action))
        #expect(accepted.deadline == .milliseconds(250))
        #expect(accepted.requestCompression == .gzip && accepted.responseCompression == .gzip)
        #expect(accepted.metadata[string: "x-user"] == "ada")
        #expect(accepted.metadata[binary: "trace-bin"] == [0, 1, 2])
        // Reserved headers are not metadata.
        #expect(accepted.metadata[string: "te"] == nil && accepted.metadata[string: "user-agent"] == nil)
    }

    func isPlain(
        method: String? = "POST", contentType: String = "application/grpc", encoding: Bool = false, timeout: Bool = false,
        metadataFields: Int = 0, tooLarge: Bool = false
    ) -> Bool {
        Array(contentType.utf8).withUnsafeBytes {
            Machine.isPlain(
                method: method, contentType: $0, hasEncoding: encoding, hasTimeout: timeout, metadataFields: metadataFields,
                headersTooLarge: tooLarge)
        }
    }

    @Test("a plain head is one the machine accepts with no metadata, deadline or compression; others are not plain")
    func plainHeads() throws {
        for contentType in ["application/grpc", "application/grpc+proto", "application/grpc;charset=utf-8"] {
            #expect(isPlain(contentType: contentType))
            var m = machine()
            let accepted = try #require(
                acceptance(
                    m.receiveHead(
                        head([("grpc-accept-encoding", "gzip"), ("te", "trailers"), ("user-agent", "x")], contentType: contentType),
                        lookup: .found(.unary))))
            #expect(accepted.metadata.isEmpty && accepted.deadline == nil)
            #expect(accepted.requestCompression == nil && accepted.responseCompression == nil)
        }
        #expect(!isPlain(method: "GET"))
        #expect(!isPlain(method: nil))
        #expect(!isPlain(contentType: "application/grpc+json"))
        #expect(!isPlain(encoding: true))
        #expect(!isPlain(timeout: true))
        #expect(!isPlain(metadataFields: 1))
        #expect(!isPlain(tooLarge: true))
        // What the machine does with those heads: refuses, or carries something.
        var a = machine()
        #expect(refusal(a.receiveHead(head(contentType: "application/grpc+json"), lookup: .found(.unary)))?.0 == .unimplemented)
        var b = machine()
        #expect(refusal(b.receiveHead(head(method: "GET"), lookup: .found(.unary)))?.0 == .unimplemented)
        var c = machine()
        #expect(try #require(acceptance(c.receiveHead(head([("x-user", "ada")]), lookup: .found(.unary)))).metadata.isEmpty == false)
        var d = machine()
        #expect(try #require(acceptance(d.receiveHead(head([("grpc-encoding", "gzip")]), lookup: .found(.unary)))).requestCompression == .gzip)
        var e = machine()
        #expect(try #require(acceptance(e.receiveHead(head([("grpc-timeout", "1S")]), lookup: .found(.unary)))).deadline == .seconds(1))
        var f = machine()
        #expect(refusal(f.receiveHead(head(tooLarge: true), lookup: .found(.unary)))?.0 == .resourceExhausted)
        // grpc-encoding identity (which the transport treats as none) carries nothing either.
        var g = machine()
        let identity = try #require(acceptance(g.receiveHead(head([("grpc-encoding", "identity")]), lookup: .found(.unary))))
        #expect(identity.requestCompression == nil && identity.responseCompression == nil)
    }

    @Test("compression is mirrored only when the client accepts it; identity means none")
    func compressionChoice() throws {
        var a = machine()
        let noMirror = try #require(acceptance(a.receiveHead(head([("grpc-encoding", "deflate")]), lookup: .found(.unary))))
        #expect(noMirror.requestCompression == .deflate && noMirror.responseCompression == nil)
        var b = machine()
        let identity = try #require(acceptance(b.receiveHead(head([("grpc-encoding", "identity")]), lookup: .found(.unary))))
        #expect(identity.requestCompression == nil && identity.responseCompression == nil)
    }

    @Test(
        "malformed heads are refused with the right status",
        arguments: [
            ("GET", "application/grpc", [(String, String)](), false, RPCError.Code.unimplemented, "gRPC requires POST, got GET"),
            ("POST", "application/grpc+json", [], false, .unimplemented, "content-type application/grpc+json is not supported; use application/grpc+proto"),
            ("POST", "application/grpc", [], true, .resourceExhausted, "request headers exceed the limit of 16384 bytes"),
            ("POST", "application/grpc", [("grpc-encoding", "br")], false, .unimplemented, "grpc-encoding br is not supported"),
            ("POST", "application/grpc", [("grpc-timeout", "1.5S")], false, .invalidArgument, "malformed grpc-timeout 1.5S"),
            ("POST", "application/grpc", [("x-id-bin", "***")], false, .invalidArgument, "metadata x-id-bin is not valid base64"),
        ])
    func refuseHead(
        method: String, contentType: String, headers: [(String, String)], tooLarge: Bool, code: RPCError.Code, message: String
    ) throws {
        var m = machine()
        let (gotCode, gotMessage, log) = try #require(
            refusal(m.receiveHead(head(method: method, headers, contentType: contentType, tooLarge: tooLarge), lookup: .found(.unary))))
        #expect(gotCode == code && gotMessage == message && log)
    }

    @Test("+proto and parameters are gRPC content types; an unknown method or service is UNIMPLEMENTED, logged as routine")
    func lookups() throws {
        for contentType in ["application/grpc+proto", "application/grpc;charset=utf-8"] {
            var m = machine()
            #expect(acceptance(m.receiveHead(head(contentType: contentType), lookup: .found(.unary))) != nil)
        }
        var a = machine()
        let method = try #require(refusal(a.receiveHead(head(path: "/svc.S/Nope"), lookup: .unknownMethod)))
        #expect(method == (.unimplemented, "unknown method /svc.S/Nope", false))
        var b = machine()
        let service = try #require(refusal(b.receiveHead(head(path: "/nope.X/M"), lookup: .unknownService("nope.X"))))
        #expect(service == (.unimplemented, "unknown service nope.X (method /nope.X/M)", false))
    }

    // MARK: Messages

    @Test("a unary request split anywhere is kept until the end of the request, then runs")
    func unaryAssembled() throws {
        let bytes = Self.frame(Array("hello".utf8))
        for cut in 0...bytes.count {
            var m = machine()
            _ = m.receiveHead(head(), lookup: .found(.unary))
            var seen = 0
            for part in [bytes[..<cut], bytes[cut...]] where !part.isEmpty {
                let failure = Array(part).withUnsafeBytes { m.receiveData($0) { _, size, _ in seen += size } }
                #expect(failure == nil)
            }
            #expect(seen == bytes.count, "each message is reported once, with its framed size")
            guard case .run(let message) = m.receiveEnd() else { Issue.record("no run at cut \(cut)"); continue }
            #expect(Array(message) == Array("hello".utf8))
            #expect(m.receiveEnd() == .none)
        }
    }

    @Test("the whole request in the last frame is taken in place; partial or compressed frames are not")
    func inPlace() {
        var m = machine()
        _ = m.receiveHead(head(), lookup: .found(.unary))
        let whole = Self.frame([1, 2, 3])
        let message = whole.withUnsafeBytes { m.wholeRequestInPlace($0).map { Array($0) } }
        #expect(message == [1, 2, 3])
        #expect(m.receiveEnd() == .none, "the request side is closed")
        var partial = machine()
        _ = partial.receiveHead(head(), lookup: .found(.unary))
        #expect(Array(Self.frame([1, 2, 3]).prefix(6)).withUnsafeBytes { partial.wholeRequestInPlace($0) } == nil)
        var compressed = machine()
        _ = compressed.receiveHead(head([("grpc-encoding", "gzip")]), lookup: .found(.unary))
        #expect(Self.frame([1], compressed: true).withUnsafeBytes { compressed.wholeRequestInPlace($0) } == nil)
        var streaming = machine()
        _ = streaming.receiveHead(head(), lookup: .found(.clientStreaming))
        #expect(whole.withUnsafeBytes { streaming.wholeRequestInPlace($0) } == nil)
    }

    @Test("a streaming request delivers each message as it completes; the end ends the stream")
    func streaming() {
        var m = machine()
        _ = m.receiveHead(head(), lookup: .found(.bidiStreaming))
        var got: [[UInt8]] = []
        let bytes = Self.frame([1]) + Self.frame([2, 2]) + Self.frame([3, 3, 3]).prefix(4)
        let failure = bytes.withUnsafeBytes { m.receiveData($0) { message, _, _ in got.append(Array(message)) } }
        #expect(failure == nil && got == [[1], [2, 2]])
        _ = Array(Self.frame([3, 3, 3]).dropFirst(4)).withUnsafeBytes { m.receiveData($0) { message, _, _ in got.append(Array(message)) } }
        #expect(got == [[1], [2, 2], [3, 3, 3]])
        #expect(m.receiveEnd() == .endOfMessages)
    }

    @Test("request errors: oversize prefix, bad flag, second unary message, compressed without encoding, bomb, truncation, no message")
    func requestErrors() throws {
        func error(
            _ bytes: [UInt8], kind: RPCMethodDescriptor.Kind = .unary, headers: [(String, String)] = [], end: Bool = false
        ) -> (RPCError.Code, String)? {
            var m = machine()
            _ = m.receiveHead(head(headers), lookup: .found(kind))
            if let failure = bytes.withUnsafeBytes({ m.receiveData($0) { _, _, _ in } }) { return (failure.code, failure.message) }
            guard end, case .refuse(let failure) = m.receiveEnd() else { return nil }
            return (failure.code, failure.message)
        }
        #expect(error([0, 0, 0, 0x04, 0x01])! == (.resourceExhausted, "request message of 1025 bytes exceeds the limit of 1024 bytes"))
        #expect(error([7, 0, 0, 0, 0])?.0 == .internal)
        #expect(error(Self.frame([1]) + Self.frame([2]))! == (.internal, "more than one request message for a unary call"))
        #expect(error(Self.frame([1], compressed: true))! == (.internal, "compressed message without grpc-encoding"))
        let bomb = try [UInt8](repeating: 0, count: 100_000).withUnsafeBytes { try GRPCCompression.compress($0, algorithm: .gzip) }
        #expect(error(Self.frame(bomb, compressed: true), headers: [("grpc-encoding", "gzip")])!
            == (.resourceExhausted, "decompressed request message exceeds the limit of 1024 bytes"))
        #expect(error(Self.frame([9, 9, 9], compressed: true), headers: [("grpc-encoding", "gzip")])!
            == (.internal, "cannot decompress request message (gzip)"))
        #expect(error(Array(Self.frame([1, 2, 3]).prefix(6)), end: true)?.0 == .internal)
        #expect(error([], end: true)! == (.internal, "the call ended without a request message"))
        #expect(error([], kind: .serverStreaming, end: true)! == (.internal, "the call ended without a request message"))
    }

    @Test("a compressed request is decompressed before delivery")
    func decompresses() throws {
        var m = machine()
        _ = m.receiveHead(head([("grpc-encoding", "deflate")]), lookup: .found(.unary))
        let payload = Array("compress me, compress me".utf8)
        let compressed = try payload.withUnsafeBytes { try GRPCCompression.compress($0, algorithm: .deflate) }
        #expect(Self.frame(compressed, compressed: true).withUnsafeBytes { m.receiveData($0) { _, _, _ in } } == nil)
        guard case .run(let message) = m.receiveEnd() else { Issue.record("no run"); return }
        #expect(Array(message) == payload)
    }

    // MARK: Response

    @Test("status before any message is trailers-only; after one it is trailers; nothing after the status")
    func framing() {
        var a = machine()
        _ = a.receiveHead(head(), lookup: .found(.unary))
        #expect(a.sendStatus() == .trailersOnly && a.isClosed)
        #expect(a.sendMessage() == .refuse && a.sendStatus() == .alreadySent)
        var b = machine()
        _ = b.receiveHead(head(), lookup: .found(.serverStreaming))
        #expect(b.sendMessage() == .headersThenMessage)
        #expect(b.sendMessage() == .message)
        #expect(b.sendStatus() == .trailers)
        #expect(b.sendStatus() == .alreadySent)
    }

    @Test("after the status, request bytes and the end are ignored; a closed stream counts as cancelled only while open")
    func afterStatus() {
        var m = machine()
        _ = m.receiveHead(head(), lookup: .found(.unary))
        #expect(m.sendStatus() == .trailersOnly)
        let ignored = Self.frame([1]).withUnsafeBytes { m.receiveData($0) { _, _, _ in Issue.record("delivered after status") } }
        #expect(ignored == nil)
        #expect(m.receiveEnd() == .none)
        let cancelled = m.streamClosed()
        #expect(!cancelled, "a call whose status went out is not cancelled by the stream closing")
        var open = machine()
        _ = open.receiveHead(head(), lookup: .found(.bidiStreaming))
        #expect(open.streamClosed() && open.isClosed)
        #expect(open.sendMessage() == .refuse)
    }

    @Test("the transport's reserved-name check on raw bytes agrees with the machine's on fields")
    func reservedAgree() {
        let names = [
            ":path", ":authority", "te", "host", "connection", "user-agent", "content-type", "content-length",
            "accept-encoding", "transfer-encoding", "grpc-timeout", "grpc-trace-bin", "grpc-", "grpc", "x-user",
            "x-trace-bin", "authorization", "t", "tE", "user-agen", "", "traceparent", "content-typf",
        ]
        for name in names {
            let bytes = Array(name.utf8)
            var fields = HeaderFields()
            let index = bytes.withUnsafeBytes { fields.append(name: $0, value: UnsafeRawBufferPointer(start: nil, count: 0)) }
            let raw = bytes.withUnsafeBytes { HeaderName.isReserved($0) }
            #expect(raw == HeaderName.isReserved(fields.name(index)), "\(name)")
        }
    }
}

extension GRPCCallStateMachine.EndAction: Equatable {
    static func == (lhs: Self, rhs: Self) -> Bool {
        switch (lhs, rhs) {
        case (.run(let a), .run(let b)): a == b
        case (.endOfMessages, .endOfMessages), (.none, .none): true
        case (.refuse(let a), .refuse(let b)): a.code == b.code && a.message == b.message
        default: false
        }
    }
}
