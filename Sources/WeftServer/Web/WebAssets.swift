import Foundation
import WeftRPC

/// The web dashboard's files (web/), read once at start-up and served from
/// memory at `/` by `weft serve` itself: each with its content type, a
/// weak ETag (SHA-256 of its bytes), a gzip copy when that is smaller, and
/// the dashboard's security headers. Files are served by exact path only
/// (a dictionary lookup: no path ever reaches the file system after start).
struct WebAssets: Sendable {
    struct Asset: Sendable {
        let contentType: String
        let body: [UInt8]
        let gzipped: [UInt8]?
        let etag: String
    }

    private let assets: [String: Asset]
    var count: Int { assets.count }
    let directory: String

    /// Strict: scripts, styles, images, fetches and the manifest from this
    /// origin only; no inline script or style attribute, no eval, no
    /// framing, no plugins, no foreign form targets.
    static let contentSecurityPolicy =
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
        + "manifest-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"

    static let securityHeaders: [(name: String, value: String)] = [
        ("content-security-policy", contentSecurityPolicy),
        ("x-content-type-options", "nosniff"),
        ("referrer-policy", "no-referrer"),
        ("x-frame-options", "DENY"),
        ("cross-origin-opener-policy", "same-origin"),
        ("cross-origin-resource-policy", "same-origin"),
        ("permissions-policy", "camera=(), microphone=(), geolocation=(), payment=()"),
    ]

    static let contentTypes: [String: String] = [
        "html": "text/html; charset=utf-8", "js": "text/javascript; charset=utf-8", "mjs": "text/javascript; charset=utf-8",
        "css": "text/css; charset=utf-8", "json": "application/json", "webmanifest": "application/manifest+json",
        "svg": "image/svg+xml", "png": "image/png", "ico": "image/x-icon", "txt": "text/plain; charset=utf-8",
        "woff2": "font/woff2", "map": "application/json",
    ]
    /// Formats that are compressed already.
    static let precompressed: Set<String> = ["png", "ico", "woff2"]
    /// The dashboard is small; a bigger tree is a mistake (a wrong --web-dir).
    static let maxFiles = 2_000
    static let maxTotalBytes = 64 << 20

    /// Reads `directory` (recursively; dot files skipped). `index.html` gets
    /// the trace viewer's URL template put into its `{{TRACE_URL}}` slot.
    init(directory: String, traceViewerURL: String?) throws {
        // Resolved first: the walk below does not descend into a symlinked root.
        let root = URL(fileURLWithPath: directory).resolvingSymlinksInPath().standardizedFileURL
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: root.path, isDirectory: &isDirectory), isDirectory.boolValue else {
            throw WeftStartupError("--web-dir \(directory): no such directory (or not a directory)")
        }
        var assets: [String: Asset] = [:]
        var total = 0  // bytes held: every file and its gzip copy
        let enumerator = FileManager.default.enumerator(
            at: root, includingPropertiesForKeys: [.isRegularFileKey], options: [.skipsHiddenFiles])
        while let url = enumerator?.nextObject() as? URL {
            guard let values = try? url.resourceValues(forKeys: [.isRegularFileKey, .fileSizeKey]), values.isRegularFile == true
            else { continue }  // directories; symbolic links inside the tree are not followed
            let relative = String(url.standardizedFileURL.path.dropFirst(root.path.count))
            let ext = url.pathExtension.lowercased()
            guard let contentType = Self.contentTypes[ext] else { continue }  // tests, notes: not served
            // Checked before reading: a wrong --web-dir is refused, not read.
            guard assets.count < Self.maxFiles, total + (values.fileSize ?? 0) <= Self.maxTotalBytes else {
                throw WeftStartupError("--web-dir \(directory) holds more than \(Self.maxFiles) files or \(Self.maxTotalBytes >> 20) MiB")
            }
            var bytes: [UInt8]
            do {
                bytes = Array(try Data(contentsOf: url))
            } catch {
                throw WeftStartupError("--web-dir \(directory): cannot read \(relative): \(error.localizedDescription)")
            }
            if relative == "/index.html" {
                let slot = NotificationTemplates.htmlEscaped(traceViewerURL ?? "")  // quotes too: an attribute
                bytes = Array(String(decoding: bytes, as: UTF8.self).replacingOccurrences(of: "{{TRACE_URL}}", with: slot).utf8)
            }
            var gzipped: [UInt8]?
            if !Self.precompressed.contains(ext), bytes.count > 256,
                let packed = try? bytes.withUnsafeBytes({ try GRPCCompression.compress($0, algorithm: .gzip) }),
                packed.count < bytes.count * 9 / 10
            {
                gzipped = packed
            }
            // Weak: the plain and the gzip body are two representations of
            // one file (RFC 9110 8.8.1), and If-None-Match compares weakly.
            let etag = "W/\"" + Base64URL.encode(Crypto.sha256(bytes).prefix(18)) + "\""
            total += bytes.count + (gzipped?.count ?? 0)
            assets[relative] = Asset(contentType: contentType, body: bytes, gzipped: gzipped, etag: etag)
        }
        guard assets["/index.html"] != nil else {
            throw WeftStartupError("--web-dir \(directory) has no index.html (is it the dashboard's web/ directory?)")
        }
        self.assets = assets
        self.directory = root.path
    }

    /// The response for a GET or HEAD of `path`, or nil when no file has it
    /// (the caller answers 404). `/` is index.html.
    func response(for request: HTTPRequest) -> HTTPResponse? {
        let path = request.path == "/" ? "/index.html" : request.path
        guard let asset = assets[path] else { return nil }
        var headers = Self.securityHeaders
        headers.append(("etag", asset.etag))
        // Revalidate every time (no hashed file names without a build
        // step): an unchanged file costs a 304 without a body.
        headers.append(("cache-control", "no-cache"))
        if asset.gzipped != nil { headers.append(("vary", "accept-encoding")) }
        if let match = request.header("if-none-match"), Self.matches(match, etag: asset.etag) {
            return HTTPResponse(status: 304, headers: headers)
        }
        headers.append(("content-type", asset.contentType))
        if let gzipped = asset.gzipped, Self.acceptsGzip(request.header("accept-encoding")) {
            headers.append(("content-encoding", "gzip"))
            return HTTPResponse(status: 200, headers: headers, body: gzipped)
        }
        return HTTPResponse(status: 200, headers: headers, body: asset.body)
    }

    /// `If-None-Match`: `*` or a list of entity tags (weak ones compare
    /// weakly, as RFC 9110 13.1.2 says for this header).
    static func matches(_ header: String, etag: String) -> Bool {
        header.split(separator: ",").contains { candidate in
            let tag = candidate.trimmingCharacters(in: .whitespaces)
            return tag == "*" || Self.opaque(tag) == Self.opaque(etag)
        }
    }

    /// An entity tag without its weakness flag.
    static func opaque(_ tag: String) -> Substring { tag.hasPrefix("W/") ? tag.dropFirst(2) : Substring(tag) }

    /// Whether `Accept-Encoding` allows gzip (present with a nonzero q).
    static func acceptsGzip(_ header: String?) -> Bool {
        guard let header else { return false }
        var star: Double?
        for part in header.lowercased().split(separator: ",") {
            let fields = part.split(separator: ";").map { $0.trimmingCharacters(in: .whitespaces) }
            guard let coding = fields.first, coding == "gzip" || coding == "x-gzip" || coding == "*" else { continue }
            let q = fields.dropFirst().first { $0.hasPrefix("q=") }.flatMap { Double($0.dropFirst(2)) } ?? 1
            // gzip named decides; `*` speaks only for codings not named.
            if coding == "*" { star = q } else { return q > 0 }
        }
        return (star ?? 0) > 0
    }

    /// Where the dashboard's files are when `--web-dir` is not given:
    /// `./web`, else `web/` beside the binary or up to three directories
    /// above it (a `.build/<config>/weft` in a checkout), else
    /// `../share/weft/web` from the binary (an installed layout). Nil: none.
    /// The binary is found through /proc (argv[0] is a bare name when it
    /// came from PATH).
    static func discover(
        executable: String = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe"))
            ?? CommandLine.arguments.first ?? ""
    ) -> String? {
        let fm = FileManager.default
        var candidates = [fm.currentDirectoryPath + "/web"]
        let binary = URL(fileURLWithPath: executable).resolvingSymlinksInPath().deletingLastPathComponent()
        var dir = binary
        for _ in 0..<4 {
            candidates.append(dir.appendingPathComponent("web").path)
            dir = dir.deletingLastPathComponent()
        }
        candidates.append(binary.appendingPathComponent("../share/weft/web").standardizedFileURL.path)
        return candidates.first { fm.fileExists(atPath: $0 + "/index.html") }
    }
}
