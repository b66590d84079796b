import AsyncHTTPClient
import Foundation
import NIOCore
import NIOHTTP1
import Tracing
import WeftObservability
public import WeftStore

/// `http`: one outbound request per attempt through AsyncHTTPClient.
///
/// Config: `url`, `method` (default GET), `headers`, `body` (a string is sent
/// as is; anything else as JSON), `expectedStatus` (default any 2xx),
/// `followRedirects` (default true). Output: `status`, `headers` (lower-case
/// names), `body` (parsed when the response is JSON, else text), and
/// `durationMs`. Failures carry the kind the retry policy matches:
/// `connection`, `timeout`, `http_4xx`, `http_5xx` (`http_3xx` for an
/// unexpected redirect status), `config`.
public struct HTTPRunner: TaskRunner {
    public let action = TaskType.http
    public var isInstant: Bool { false }
    /// Used when the task sets no per-attempt timeout.
    static let defaultTimeout: TimeAmount = .seconds(30)
    /// Larger responses fail the attempt rather than fill memory.
    public static let maxResponseBytes = 10 * 1024 * 1024

    private let following: HTTPClient
    private let notFollowing: HTTPClient

    /// Creates the two clients it needs (with and without redirects); call
    /// `shutdown` when done.
    public init() {
        var follow = HTTPClient.Configuration(redirectConfiguration: .follow(max: 5, allowCycles: false))
        var noFollow = HTTPClient.Configuration(redirectConfiguration: .disallow)
        for index in 0..<2 {
            var configuration = index == 0 ? follow : noFollow
            configuration.connectionPool.concurrentHTTP1ConnectionsPerHostSoftLimit = 64
            // The engine retries per the task's policy: a refused connection
            // fails the attempt at once instead of being retried until the
            // connect timeout.
            configuration.connectionPool.retryConnectionEstablishment = false
            configuration.timeout.connect = .seconds(10)
            // The runner makes its own CLIENT span (current OpenTelemetry
            // attribute names); AsyncHTTPClient's would double it.
            configuration.tracing.tracer = nil
            if index == 0 { follow = configuration } else { noFollow = configuration }
        }
        following = HTTPClient(eventLoopGroupProvider: .singleton, configuration: follow)
        notFollowing = HTTPClient(eventLoopGroupProvider: .singleton, configuration: noFollow)
    }

    public func shutdown() async {
        try? await following.shutdown()
        try? await notFollowing.shutdown()
    }

    public func run(_ invocation: TaskInvocation, log: @escaping @Sendable (LogRecord.Level, String) async -> Void) async
        -> TaskOutcome
    {
        let config = invocation.config
        guard let url = config["url"]?.stringValue, let parsed = URL(string: url), let scheme = parsed.scheme?.lowercased(),
            scheme == "http" || scheme == "https", parsed.host != nil
        else {
            return .failed(.init(kind: "config", message: "config.url \"\(config["url"]?.stringValue ?? "")\" is not an http(s) URL"))
        }
        let method = (config["method"]?.stringValue ?? "GET").uppercased()
        var request = HTTPClientRequest(url: url)
        request.method = HTTPMethod(rawValue: method)
        for (name, value) in (config["headers"]?.objectValue ?? [:]).sorted(by: { $0.key < $1.key }) {
            if let text = value.stringValue { request.headers.add(name: name, value: text) }
        }
        var requestBytes = 0
        if let body = config["body"], body != .null {
            let bytes: String
            if let text = body.stringValue {
                bytes = text
            } else {
                bytes = body.jsonText()
                if !request.headers.contains(name: "content-type") {
                    request.headers.add(name: "content-type", value: "application/json")
                }
            }
            requestBytes = bytes.utf8.count
            request.body = .bytes(ByteBuffer(string: bytes))
        }
        if !request.headers.contains(name: "user-agent") { request.headers.add(name: "user-agent", value: "weft") }
        let timeout = invocation.timeoutMs.map { TimeAmount.milliseconds($0) } ?? Self.defaultTimeout
        let client = (config["followRedirects"].flatMap { if case .bool(let b) = $0 { b } else { nil } } ?? true)
            ? following : notFollowing
        // One CLIENT span per request (OpenTelemetry HTTP conventions); the
        // target receives its context as `traceparent`.
        let span = WeftTracing.startChild(method, kind: .client)
        defer { span?.end() }
        if let span {
            span.attributes[SpanKeys.httpRequestMethod] = method
            span.attributes[SpanKeys.urlFull] = Self.redacted(url)
            span.attributes[SpanKeys.serverAddress] = parsed.host ?? ""
            span.attributes[SpanKeys.serverPort] = parsed.port ?? (scheme == "https" ? 443 : 80)
            for (name, value) in WeftTracing.headers(of: span.context).pairs { request.headers.replaceOrAdd(name: name, value: value) }
        }
        let started = ContinuousClock.now
        do {
            let response = try await client.execute(request, timeout: timeout)
            let buffer = try await response.body.collect(upTo: Self.maxResponseBytes)
            span?.attributes[SpanKeys.httpResponseStatusCode] = Int(response.status.code)
            if response.status.code >= 400 {
                span?.attributes[SpanKeys.errorType] = String(response.status.code)
                span?.setStatus(SpanStatus(code: .error))
            }
            UsageMeter.current?.add(requests: 1, bytes: requestBytes + buffer.readableBytes)
            let elapsed = ContinuousClock.now - started
            let ms = Double(elapsed.components.seconds) * 1000 + Double(elapsed.components.attoseconds) / 1e15
            var headers: [String: JSONValue] = [:]
            for (name, value) in response.headers {
                let key = name.lowercased()
                if case .string(let existing)? = headers[key] {
                    headers[key] = .string(existing + ", " + value)
                } else {
                    headers[key] = .string(value)
                }
            }
            let text = String(buffer: buffer)
            var body: JSONValue = .string(text)
            let contentType = response.headers.first(name: "content-type")?.lowercased() ?? ""
            if contentType.contains("json"), let parsed = try? JSONValue(jsonText: text) { body = parsed }
            let status = Int(response.status.code)
            let output = JSONValue.object([
                "status": .number(Double(status)), "headers": .object(headers), "body": body,
                "durationMs": .number((ms * 10).rounded() / 10),
            ])
            await log(.info, "\(method) \(Self.redacted(url)) -> \(status) in \(Int(ms.rounded())) ms")
            if Self.expected(status, config["expectedStatus"]) { return .completed(output) }
            let kind = status >= 500 ? "http_5xx" : status >= 400 ? "http_4xx" : status >= 300 ? "http_3xx" : "http_status"
            let snippet = text.prefix(200)
            return .failed(.init(
                kind: kind,
                message: "\(method) \(Self.redacted(url)) returned \(status), expected \(Self.describeExpected(config["expectedStatus"]))"
                    + (snippet.isEmpty ? "" : ": \(snippet)")))
        } catch {
            // Sent or not, the request was made: it counts (its body as sent).
            UsageMeter.current?.add(requests: 1, bytes: requestBytes)
            span?.recordError(error)
            span?.setStatus(SpanStatus(code: .error))
            if Task.isCancelled { return .failed(.init(kind: "cancelled", message: "the attempt was stopped")) }
            let kind = Self.kind(of: error)
            span?.attributes[SpanKeys.errorType] = kind
            return .failed(.init(kind: kind, message: "\(method) \(Self.redacted(url)) failed: \(Self.describe(error))"))
        }
    }

    static func expected(_ status: Int, _ spec: JSONValue?) -> Bool {
        guard let codes = spec?.arrayValue?.compactMap(\.numberValue), !codes.isEmpty else { return (200..<300).contains(status) }
        return codes.contains(Double(status))
    }

    static func describeExpected(_ spec: JSONValue?) -> String {
        guard let codes = spec?.arrayValue?.compactMap(\.numberValue), !codes.isEmpty else { return "2xx" }
        return codes.map { String(Int($0)) }.joined(separator: " or ")
    }

    static func kind(of error: any Error) -> String {
        if error is NIOTooManyBytesError { return "response_too_large" }
        if let client = error as? HTTPClientError {
            switch client {
            case .connectTimeout, .readTimeout, .writeTimeout, .deadlineExceeded: return "timeout"
            default: return "connection"
            }
        }
        let text = String(describing: error).lowercased()
        return text.contains("timeout") || text.contains("timed out") ? "timeout" : "connection"
    }

    static func describe(_ error: any Error) -> String {
        if error is NIOTooManyBytesError { return "response larger than \(maxResponseBytes) bytes" }
        if let client = error as? HTTPClientError {
            switch client {
            case .deadlineExceeded: return "no response within the timeout"
            case .connectTimeout: return "connect timed out"
            default: return client.description
            }
        }
        return String(describing: error)
    }

    /// The URL without its query and user info (they may hold secrets).
    static func redacted(_ url: String) -> String {
        guard var parts = URLComponents(string: url) else { return url }
        parts.user = nil
        parts.password = nil
        let hadQuery = parts.query != nil
        parts.query = nil
        return (parts.string ?? url) + (hadQuery ? "?…" : "")
    }
}
