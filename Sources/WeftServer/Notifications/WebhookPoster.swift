import AsyncHTTPClient
import Foundation
import NIOCore
import NIOHTTP1
import Synchronization
import WeftEngine

/// POSTs JSON to webhook and Slack URLs, every connection through the
/// egress guard (the address it checked is the one connected to), with the
/// client settings of `http` tasks (`HTTPRunner.configuration`: no
/// redirects followed, no retried connects, a 10 s connect timeout).
final class WebhookPoster: Sendable {
    let egress: EgressGuard
    /// Literal addresses and hosts allowed by name: pooled connections.
    /// Made on first use, so a poster that never posts owns no threads to
    /// shut down.
    private let pool = Mutex<(client: HTTPClient?, closed: Bool)>((nil, false))
    static let maxResponseBytes = 64 * 1024

    struct Response: Sendable {
        let status: Int
        let body: String
    }

    init(egress: EgressGuard) {
        self.egress = egress
    }

    private func shared() throws -> HTTPClient {
        try pool.withLock { pool in
            if let client = pool.client { return client }
            // After shutdown (a test call during the drain) nothing new starts.
            guard !pool.closed else { throw WebhookURLError(message: "the server is shutting down") }
            let made = HTTPClient(eventLoopGroupProvider: .singleton, configuration: HTTPRunner.configuration(pin: nil))
            pool.client = made
            return made
        }
    }

    func shutdown() async {
        let client = pool.withLock { pool in
            defer { pool = (nil, true) }
            return pool.client
        }
        try? await client?.shutdown()
    }

    /// Throws `EgressGuard.Denied` for a refused destination, transport
    /// errors for the rest; any HTTP status is a response.
    func post(url: String, headers: [(String, String)], body: [UInt8], timeout: TimeInterval) async throws -> Response {
        guard let host = URL(string: url)?.host, !host.isEmpty else {
            throw WebhookURLError(message: "the URL has no host")
        }
        let destination = try await egress.check(host: host)
        var request = HTTPClientRequest(url: url)
        request.method = .POST
        for (name, value) in headers { request.headers.add(name: name, value: value) }
        request.body = .bytes(ByteBuffer(bytes: body))
        let deadline = NIODeadline.now() + .milliseconds(Int64(timeout * 1000))
        if let pinned = destination.pinned, !destination.isLiteral {
            let client = HTTPClient(
                eventLoopGroupProvider: .singleton, configuration: HTTPRunner.configuration(pin: (host, pinned)))
            do {
                let response = try await send(request, client: client, deadline: deadline)
                try? await client.shutdown()
                return response
            } catch {
                try? await client.shutdown()
                throw error
            }
        }
        return try await send(request, client: try shared(), deadline: deadline)
    }

    private func send(_ request: HTTPClientRequest, client: HTTPClient, deadline: NIODeadline) async throws -> Response {
        let response = try await client.execute(request, deadline: deadline)
        var text = ""
        do {
            let buffer = try await response.body.collect(upTo: Self.maxResponseBytes)
            text = String(buffer: buffer)
        } catch {
            text = "(response body over \(Self.maxResponseBytes) bytes)"
        }
        return Response(status: Int(response.status.code), body: text)
    }
}

struct WebhookURLError: Error, CustomStringConvertible {
    let message: String
    var description: String { message }
}

/// What receivers of generic webhooks check (docs/NOTIFICATIONS.md):
/// `X-Weft-Signature: sha256=<hex HMAC-SHA256 of "<timestamp>.<body>">`
/// with the integration's signing secret, `X-Weft-Timestamp` (Unix
/// seconds; reject old ones to stop replays) and `X-Weft-Delivery-Id` (the
/// same on every attempt: drop repeats).
enum WebhookSignature {
    static let signatureHeader = "X-Weft-Signature"
    static let timestampHeader = "X-Weft-Timestamp"
    static let deliveryHeader = "X-Weft-Delivery-Id"
    static let eventHeader = "X-Weft-Event"

    static func sign(secret: String, timestamp: Int, body: [UInt8]) -> String {
        "sha256=" + Hex.encode(Crypto.hmacSHA256(key: Array(secret.utf8), data: Array("\(timestamp).".utf8) + body))
    }
}
