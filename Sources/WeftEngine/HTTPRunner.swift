public import AsyncHTTPClient
import Foundation
import NIOCore
import NIOHTTP1
import Tracing
import WeftObservability
public import WeftStore

/// `http`: one outbound request per attempt through AsyncHTTPClient, every
/// connection through the `EgressGuard`.
///
/// Config: `url`, `method` (default GET), `headers` (not `Host`,
/// `Content-Length`, `Transfer-Encoding` or hop-by-hop ones), `body` (a
/// string is sent as is; anything else as JSON), `expectedStatus` (default
/// any 2xx), `followRedirects` (default false; when true, up to 5 hops, each
/// checked by the guard again), `maxResponseBytes` (at most the server's).
/// Output: `status`, `headers` (lower-case names), `body` (parsed when the
/// response is JSON, else text), and `durationMs`. Failures carry the kind
/// the retry policy matches: `connection`, `timeout`, `http_4xx`,
/// `http_5xx` (`http_3xx` for an unexpected redirect status), `config`,
/// `response_too_large`, and `egress_denied` (never retried).
public struct HTTPRunner: TaskRunner {
    public let action = TaskType.http
    public var isInstant: Bool { false }
    /// Used when the task sets no per-attempt timeout.
    static let defaultTimeout: TimeAmount = .seconds(30)
    /// Redirects followed at most (when a task turns following on).
    static let maxRedirects = 5

    /// What the server allows any one call, whatever a task asks for.
    public struct Limits: Sendable {
        /// Larger responses fail the attempt rather than fill memory.
        public var maxResponseBytes = 1 << 20
        /// The longest one call may take, redirects included.
        public var maxDuration: Duration = .seconds(300)
        public init() {}
    }

    public let egress: EgressGuard
    public let limits: Limits
    /// Resolves `config.integration` (an http_auth integration's headers).
    public let credentials: (any HTTPCredentialSource)?
    /// For literal addresses and hosts the operator allowed by name:
    /// nothing to pin, so connections are pooled and reused.
    private let shared: HTTPClient

    /// Call `shutdown` when done.
    public init(egress: EgressGuard = EgressGuard(), limits: Limits = Limits(), credentials: (any HTTPCredentialSource)? = nil) {
        self.egress = egress
        self.limits = limits
        self.credentials = credentials
        shared = HTTPClient(eventLoopGroupProvider: .singleton, configuration: Self.configuration(pin: nil))
    }

    /// Redirects are never followed by the client: the runner follows them
    /// itself so the guard sees every hop.
    public static func configuration(pin: (host: String, address: IPAddress)?) -> HTTPClient.Configuration {
        var configuration = HTTPClient.Configuration(redirectConfiguration: .disallow)
        configuration.connectionPool.concurrentHTTP1ConnectionsPerHostSoftLimit = 64
        // The engine retries per the task's policy: a refused connection
        // fails the attempt at once instead of being retried until the
        // connect timeout.
        configuration.connectionPool.retryConnectionEstablishment = false
        configuration.timeout.connect = .seconds(10)
        // The runner makes its own CLIENT span (current OpenTelemetry
        // attribute names); AsyncHTTPClient's would double it.
        configuration.tracing.tracer = nil
        // Connect to the address the guard checked; TLS still verifies the
        // certificate against the host name.
        if let pin { configuration.dnsOverride = [pin.host: pin.address.description] }
        return configuration
    }

    public func shutdown() async {
        try? await shared.shutdown()
    }

    /// One request as the runner sends it (hop by hop).
    struct Hop {
        var url: String
        var method: HTTPMethod
        var headers: HTTPHeaders
        var body: ByteBuffer?
        /// Headers an integration set (lower-case): credentials whatever their name.
        var credentialHeaders: Set<String> = []
    }

    public func run(_ invocation: TaskInvocation, log: @escaping @Sendable (LogRecord.Level, String) async -> Void) async
        -> TaskOutcome
    {
        guard let integration = invocation.config["integration"] else { return await perform(invocation, credentials: [], log: log) }
        // Credentials by reference: the task names an http_auth integration
        // of its workflow instead of carrying them.
        guard let id = integration.stringValue, !id.isEmpty else {
            return .failed(.init(kind: "config", message: "config.integration must be an integration id", retryable: false))
        }
        guard let credentials else {
            return .failed(.init(kind: "config", message: "integrations are not available on this server", retryable: false))
        }
        let resolved: HTTPCredentials
        do {
            resolved = try await credentials.credentials(integrationId: id, executionId: invocation.executionId)
        } catch {
            return .failed(.init(kind: "config", message: "config.integration \(id): \(error)", retryable: false))
        }
        // The engine's redactor knows organization secrets only: what the
        // integration supplied is redacted here, from everything the
        // attempt leaves behind (an endpoint may echo its request headers).
        var values: [String: String] = [:]
        for (index, secret) in (resolved.secrets + resolved.headers.map(\.1)).enumerated() {
            values["integration:\(id)#\(index)"] = secret
        }
        let redactor = SecretRedactor(values)
        let outcome = await perform(invocation, credentials: resolved.headers) { level, message in
            await log(level, redactor.redact(message))
        }
        return redactor.redact(outcome)
    }

    private func perform(
        _ invocation: TaskInvocation, credentials: [(String, String)],
        log: @escaping @Sendable (LogRecord.Level, String) async -> Void
    ) async -> TaskOutcome {
        let config = invocation.config
        guard let url = config["url"]?.stringValue, let parsed = URL(string: url), let scheme = parsed.scheme?.lowercased(),
            scheme == "http" || scheme == "https", parsed.host != nil
        else {
            return .failed(.init(kind: "config", message: "config.url \"\(config["url"]?.stringValue ?? "")\" is not an http(s) URL"))
        }
        let method = (config["method"]?.stringValue ?? "GET").uppercased()
        var hop = Hop(url: url, method: HTTPMethod(rawValue: method), headers: HTTPHeaders(), body: nil)
        for (name, value) in (config["headers"]?.objectValue ?? [:]).sorted(by: { $0.key < $1.key }) {
            if EgressPolicy.forbiddenHeaders.contains(name.lowercased()) {
                return .failed(.init(
                    kind: "config", message: "config.headers.\(name) cannot be set by a task", retryable: false))
            }
            // A template may have put a line break into a value (header injection).
            if let text = value.stringValue, text.unicodeScalars.contains(where: { $0 == "\r" || $0 == "\n" || $0 == "\0" }) {
                return .failed(.init(
                    kind: "config", message: "config.headers.\(name) must not contain CR, LF or NUL characters",
                    retryable: false))
            }
            if let text = value.stringValue { hop.headers.add(name: name, value: text) }
        }
        for (name, value) in credentials {
            hop.headers.replaceOrAdd(name: name, value: value)
            hop.credentialHeaders.insert(name.lowercased())
        }
        var requestBytes = 0
        if let body = config["body"], body != .null {
            let bytes: String
            if let text = body.stringValue {
                bytes = text
            } else {
                bytes = body.jsonText()
                if !hop.headers.contains(name: "content-type") {
                    hop.headers.add(name: "content-type", value: "application/json")
                }
            }
            requestBytes = bytes.utf8.count
            hop.body = ByteBuffer(string: bytes)
        }
        if !hop.headers.contains(name: "user-agent") { hop.headers.add(name: "user-agent", value: "weft") }
        // The task's timeout, never more than the server's maximum.
        var timeout = invocation.timeoutMs.map { TimeAmount.milliseconds($0) } ?? Self.defaultTimeout
        let (seconds, attoseconds) = limits.maxDuration.components
        timeout = min(timeout, .nanoseconds(seconds * 1_000_000_000 + attoseconds / 1_000_000_000))
        let deadline = NIODeadline.now() + timeout
        var maxBytes = limits.maxResponseBytes
        if let asked = config["maxResponseBytes"]?.numberValue, asked >= 0, asked < Double(maxBytes) { maxBytes = Int(asked) }
        let follow = config["followRedirects"].flatMap { if case .bool(let b) = $0 { b } else { nil } } ?? false
        // One CLIENT span per request (OpenTelemetry HTTP conventions); the
        // target receives its context as `traceparent`.
        let span = WeftTracing.startChild(method, kind: .client)
        defer { span?.end() }
        if let span {
            span.attributes[SpanKeys.httpRequestMethod] = method
            span.attributes[SpanKeys.urlFull] = invocation.redactor.redact(Self.redacted(url))
            span.attributes[SpanKeys.serverAddress] = parsed.host ?? ""
            span.attributes[SpanKeys.serverPort] = parsed.port ?? (scheme == "https" ? 443 : 80)
            for (name, value) in WeftTracing.headers(of: span.context).pairs { hop.headers.replaceOrAdd(name: name, value: value) }
        }
        let started = ContinuousClock.now
        do {
            var redirects = 0
            while true {
                let (response, buffer) = try await send(hop, deadline: deadline, maxBytes: maxBytes)
                let status = Int(response.status.code)
                if follow, [301, 302, 303, 307, 308].contains(status), let location = response.headers.first(name: "location") {
                    guard redirects < Self.maxRedirects else {
                        throw RedirectError(message: "more than \(Self.maxRedirects) redirects")
                    }
                    redirects += 1
                    guard let next = Self.redirect(from: hop, status: status, location: location) else {
                        throw RedirectError(
                            message: "redirect to \"\(Self.redacted(location))\" not followed: not an http(s) URL, or https to http")
                    }
                    await log(.info, "\(hop.method.rawValue) \(Self.redacted(hop.url)) -> \(status), following to \(Self.redacted(next.url))")
                    hop = next
                    continue
                }
                span?.attributes[SpanKeys.httpResponseStatusCode] = status
                if status >= 400 {
                    span?.attributes[SpanKeys.errorType] = String(status)
                    span?.setStatus(SpanStatus(code: .error))
                }
                UsageMeter.current?.add(requests: 1 + redirects, bytes: requestBytes + buffer.readableBytes)
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
            }
        } catch {
            // Sent or not, the request was made: it counts (its body as sent).
            UsageMeter.current?.add(requests: 1, bytes: requestBytes)
            span?.recordError(error)
            span?.setStatus(SpanStatus(code: .error))
            if Task.isCancelled { return .failed(.init(kind: "cancelled", message: "the attempt was stopped")) }
            if let denied = error as? EgressGuard.Denied {
                span?.attributes[SpanKeys.errorType] = "egress_denied"
                return .failed(.init(
                    kind: "egress_denied",
                    message: "egress_denied: \(denied.message) (\(hop.method.rawValue) \(Self.redacted(hop.url)))",
                    retryable: false))
            }
            let kind = Self.kind(of: error)
            span?.attributes[SpanKeys.errorType] = kind
            return .failed(.init(kind: kind, message: "\(method) \(Self.redacted(hop.url)) failed: \(Self.describe(error, maxBytes: maxBytes))"))
        }
    }

    /// One hop: checks the host with the guard, connects to the checked
    /// address, reads at most `maxBytes` of the body.
    private func send(_ hop: Hop, deadline: NIODeadline, maxBytes: Int) async throws -> (HTTPClientResponse, ByteBuffer) {
        guard let host = URL(string: hop.url)?.host, !host.isEmpty else { throw RedirectError(message: "\(Self.redacted(hop.url)) has no host") }
        let destination = try await egress.check(host: host)
        var request = HTTPClientRequest(url: hop.url)
        request.method = hop.method
        request.headers = hop.headers
        if let body = hop.body { request.body = .bytes(body) }
        guard let pinned = destination.pinned, !destination.isLiteral else {
            let response = try await shared.execute(request, deadline: deadline)
            return (response, try await response.body.collect(upTo: maxBytes))
        }
        // A name: a client of its own that connects only to the checked
        // address (no pooling across calls: the next call checks again).
        let client = HTTPClient(
            eventLoopGroupProvider: .singleton, configuration: Self.configuration(pin: (host, pinned)))
        do {
            let response = try await client.execute(request, deadline: deadline)
            let buffer = try await response.body.collect(upTo: maxBytes)
            try? await client.shutdown()
            return (response, buffer)
        } catch {
            try? await client.shutdown()
            throw error
        }
    }

    /// The next hop of a redirect (RFC 9110 §15.4): the Location resolved
    /// against the current URL, http(s) only; 303 (and 301/302 after a
    /// POST, as browsers do) become a GET without a body; credentials are
    /// not sent to another origin.
    static func redirect(from hop: Hop, status: Int, location: String) -> Hop? {
        guard let base = URL(string: hop.url), let target = URL(string: location, relativeTo: base)?.absoluteURL,
            let scheme = target.scheme?.lowercased(), scheme == "http" || scheme == "https", target.host != nil,
            // No downgrade from https to http (what the task sends would go in clear).
            !(base.scheme?.lowercased() == "https" && scheme == "http")
        else { return nil }
        var next = hop
        next.url = target.absoluteString
        if status == 303 || ((status == 301 || status == 302) && hop.method == .POST) {
            next.method = hop.method == .HEAD ? .HEAD : .GET
            next.body = nil
            for name in ["content-type", "content-encoding", "content-language", "content-location"] {
                next.headers.remove(name: name)
            }
        }
        let sameOrigin = base.scheme?.lowercased() == scheme && base.host?.lowercased() == target.host?.lowercased()
            && (base.port ?? (base.scheme?.lowercased() == "https" ? 443 : 80)) == (target.port ?? (scheme == "https" ? 443 : 80))
        if !sameOrigin {
            // Credentials stay with the origin they were written for.
            let credentials = next.headers.map(\.name).filter {
                EgressPolicy.isCredentialHeader($0) || hop.credentialHeaders.contains($0.lowercased())
            }
            for name in credentials { next.headers.remove(name: name) }
        }
        return next
    }

    /// A redirect the runner will not follow (fails the attempt as `http_3xx`).
    struct RedirectError: Error, CustomStringConvertible {
        let message: String
        var description: String { message }
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
        if error is RedirectError { return "http_3xx" }
        if let client = error as? HTTPClientError {
            switch client {
            case .connectTimeout, .readTimeout, .writeTimeout, .deadlineExceeded: return "timeout"
            default: return "connection"
            }
        }
        let text = String(describing: error).lowercased()
        return text.contains("timeout") || text.contains("timed out") ? "timeout" : "connection"
    }

    static func describe(_ error: any Error, maxBytes: Int) -> String {
        if error is NIOTooManyBytesError { return "response larger than \(maxBytes) bytes" }
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

/// The headers of an http_auth integration, for the `http` task of an
/// execution that names it (the server checks it belongs to the
/// execution's workflow and opens its sealed secrets).
public protocol HTTPCredentialSource: Sendable {
    func credentials(integrationId: String, executionId: String) async throws -> HTTPCredentials
}

/// Headers to add, and the secret values in them (redacted from output).
public struct HTTPCredentials: Sendable {
    public var headers: [(String, String)]
    public var secrets: [String]

    public init(headers: [(String, String)], secrets: [String]) {
        self.headers = headers
        self.secrets = secrets
    }
}
