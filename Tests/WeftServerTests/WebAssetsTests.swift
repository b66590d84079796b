import Foundation
import NIOCore
import Testing
import WeftRPC

@testable import WeftServer

@Suite("the web dashboard's files")
struct WebAssetsTests {
    /// A small web/ tree in a temporary directory.
    static func tree() throws -> String {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("weft-web-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir.appendingPathComponent("js"), withIntermediateDirectories: true)
        try #"<meta name="weft-trace-url" content="{{TRACE_URL}}"><script type="module" src="/js/app.js"></script>"#
            .write(to: dir.appendingPathComponent("index.html"), atomically: true, encoding: .utf8)
        try String(repeating: "export const x = 1;\n", count: 200).write(
            to: dir.appendingPathComponent("js/app.js"), atomically: true, encoding: .utf8)
        try Data([0x89, 0x50, 0x4e, 0x47] + Array(repeating: 0, count: 600)).write(to: dir.appendingPathComponent("icon.png"))
        try "{}".write(to: dir.appendingPathComponent("manifest.webmanifest"), atomically: true, encoding: .utf8)
        try "notes".write(to: dir.appendingPathComponent("README.unknownext"), atomically: true, encoding: .utf8)
        try "secret".write(to: dir.appendingPathComponent(".env"), atomically: true, encoding: .utf8)
        return dir.path
    }

    static func get(_ path: String, _ headers: [(String, String)] = []) -> HTTPRequest {
        HTTPRequest(method: "GET", target: path, headers: headers.map { (name: $0.0, value: $0.1) }, body: ByteBuffer())
    }

    static func header(_ response: HTTPResponse, _ name: String) -> String? {
        response.headers.first { $0.name == name }?.value
    }

    @Test("files are served by exact path with their content type, ETag and the security headers")
    func serving() throws {
        let assets = try WebAssets(directory: try Self.tree(), traceViewerURL: nil)
        #expect(assets.count == 4, "html, js, png, webmanifest; not unknown extensions or dot files")
        let index = try #require(assets.response(for: Self.get("/")))
        #expect(index.status == 200)
        #expect(Self.header(index, "content-type") == "text/html; charset=utf-8")
        #expect(Self.header(index, "content-security-policy")?.contains("script-src 'self'") == true)
        #expect(Self.header(index, "content-security-policy")?.contains("'unsafe-inline'") == false)
        #expect(Self.header(index, "x-content-type-options") == "nosniff")
        #expect(Self.header(index, "cache-control") == "no-cache")
        #expect(try #require(assets.response(for: Self.get("/js/app.js"))).headers.contains { $0 == ("content-type", "text/javascript; charset=utf-8") })
        #expect(Self.header(try #require(assets.response(for: Self.get("/manifest.webmanifest"))), "content-type") == "application/manifest+json")
        #expect(assets.response(for: Self.get("/.env")) == nil)
        #expect(assets.response(for: Self.get("/README.unknownext")) == nil)
        #expect(assets.response(for: Self.get("/js/../index.html")) == nil, "no path resolution: exact keys only")
        #expect(assets.response(for: Self.get("/missing.js")) == nil)
    }

    @Test("If-None-Match answers 304 without a body; gzip only when accepted and smaller")
    func revalidationAndCompression() throws {
        let assets = try WebAssets(directory: try Self.tree(), traceViewerURL: nil)
        let plain = try #require(assets.response(for: Self.get("/js/app.js")))
        let etag = try #require(Self.header(plain, "etag"))
        #expect(etag.hasPrefix("W/\"") && etag.hasSuffix("\""), "weak: the gzip body is another representation")
        #expect(Self.header(plain, "content-encoding") == nil)
        let cached = try #require(assets.response(for: Self.get("/js/app.js", [("if-none-match", "\"other\", \(etag)")])))
        #expect(cached.status == 304 && cached.body.isEmpty)
        #expect(try #require(assets.response(for: Self.get("/js/app.js", [("if-none-match", String(etag.dropFirst(2)))]))).status == 304,
            "compared weakly")
        #expect(try #require(assets.response(for: Self.get("/js/app.js", [("if-none-match", "\"stale\"")]))).status == 200)
        let gzipped = try #require(assets.response(for: Self.get("/js/app.js", [("accept-encoding", "br, gzip")])))
        #expect(Self.header(gzipped, "content-encoding") == "gzip")
        #expect(gzipped.body.count < plain.body.count / 4)
        let inflated = try gzipped.body.withUnsafeBytes { try GRPCCompression.decompress($0, algorithm: .gzip, limit: 1 << 20) }
        #expect(inflated == plain.body)
        #expect(Self.header(try #require(assets.response(for: Self.get("/js/app.js", [("accept-encoding", "gzip;q=0")]))), "content-encoding") == nil)
        #expect(Self.header(try #require(assets.response(for: Self.get("/js/app.js", [("accept-encoding", "gzip;q=0, *")]))), "content-encoding") == nil,
            "* speaks only for codings not named")
        #expect(Self.header(try #require(assets.response(for: Self.get("/js/app.js", [("accept-encoding", "*")]))), "content-encoding") == "gzip")
        #expect(Self.header(try #require(assets.response(for: Self.get("/icon.png", [("accept-encoding", "gzip")]))), "content-encoding") == nil,
            "PNGs are compressed already")
    }

    @Test("index.html carries the trace viewer's template, attribute-escaped")
    func traceViewer() throws {
        let assets = try WebAssets(directory: try Self.tree(), traceViewerURL: "http://t.example/trace/{traceId}?a=1&b=\"2\"")
        let body = String(decoding: try #require(assets.response(for: Self.get("/"))).body, as: UTF8.self)
        #expect(body.contains(#"content="http://t.example/trace/{traceId}?a=1&amp;b=&quot;2&quot;""#))
        let none = try WebAssets(directory: try Self.tree(), traceViewerURL: nil)
        #expect(String(decoding: try #require(none.response(for: Self.get("/"))).body, as: UTF8.self).contains(#"content="""#))
    }

    @Test("a directory without index.html, or no directory, is a start-up error")
    func badDirectory() throws {
        #expect(throws: WeftStartupError.self) { try WebAssets(directory: "/nonexistent/web", traceViewerURL: nil) }
        #expect(throws: WeftStartupError.self) { try WebAssets(directory: FileManager.default.temporaryDirectory.path, traceViewerURL: nil) }
    }
}
