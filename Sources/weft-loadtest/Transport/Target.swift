import NIOCore
import NIOPosix
import WeftRPC

/// The server under load: where it is, how to reach it and as whom.
struct Target: Sendable {
    var host: String
    var port: Int
    var tls: Bool
    /// TLS: PEM file of the CA that signed the server's certificate.
    var caFile: String?
    /// TLS: skip the certificate check (test deployments only).
    var insecure: Bool
    /// The credential sent as `authorization: Bearer …` (an access token or
    /// an API key); nil: anonymous (only health, metrics, register, login).
    var credential: String?
    /// REST calls over HTTP/1.1 (`h1`) or HTTP/2 (`h2`).
    var restProtocol: RESTProtocol

    enum RESTProtocol: String, Sendable { case h1, h2 }

    var authority: String { "\(host):\(port)" }
    var scheme: String { tls ? "https" : "http" }
    var baseURL: String { "\(scheme)://\(authority)" }

    /// `http://host:port` or `https://host:port`.
    static func parse(_ url: String) throws -> (host: String, port: Int, tls: Bool) {
        let tls: Bool
        var rest: Substring
        if url.hasPrefix("http://") {
            tls = false
            rest = url.dropFirst(7)
        } else if url.hasPrefix("https://") {
            tls = true
            rest = url.dropFirst(8)
        } else {
            throw HarnessError.usage("--target must be http://HOST:PORT or https://HOST:PORT, not \(url)")
        }
        if let slash = rest.firstIndex(of: "/") { rest = rest[..<slash] }
        let host: Substring
        let portText: Substring?
        if rest.hasPrefix("[") {
            guard let close = rest.firstIndex(of: "]") else { throw HarnessError.usage("--target: unclosed [ in \(url)") }
            host = rest[rest.index(after: rest.startIndex)..<close]
            let after = rest[rest.index(after: close)...]
            portText = after.hasPrefix(":") ? after.dropFirst() : nil
        } else if let colon = rest.lastIndex(of: ":") {
            host = rest[..<colon]
            portText = rest[rest.index(after: colon)...]
        } else {
            host = rest
            portText = nil
        }
        let port = portText.map { Int($0) } ?? (tls ? 443 : 80)
        guard let port, (1...65535).contains(port), !host.isEmpty else { throw HarnessError.usage("--target: no valid host and port in \(url)") }
        return (String(host), port, tls)
    }
}

/// Opens client connections to the target on a given event loop.
struct Connector: Sendable {
    let target: Target

    enum Kind: Sendable { case h2, h1 }

    /// A connected, ready connection (TLS handshake done, ALPN checked).
    /// The connection is confined to `loop`; the future completes on it.
    func connect(_ kind: Kind, on loop: any EventLoop, streams: Int) -> EventLoopFuture<ConnectionBox> {
        loop.assertInEventLoop()
        let connection: any ClientConnection & ChannelHandler =
            kind == .h2 ? H2ClientConnection(capacity: streams) : HTTP1ClientConnection(authority: target.authority)
        let box = ConnectionBox(connection, kind: kind)
        let handshake = target.tls ? loop.makePromise(of: TLSClientHandler.Established.self) : nil
        var tlsConfiguration: TLSClientConfiguration?
        if target.tls {
            tlsConfiguration = TLSClientConfiguration(
                serverName: target.host, caFile: target.caFile, verify: !target.insecure, alpn: kind == .h2 ? ["h2"] : ["http/1.1"])
        }
        let bootstrap = ClientBootstrap(group: loop)
            .channelOption(.tcpOption(.tcp_nodelay), value: 1)
            .connectTimeout(.seconds(10))
            .channelInitializer { [box] channel in
                do {
                    if let tlsConfiguration {
                        try channel.pipeline.syncOperations.addHandler(
                            TLSClientHandler(configuration: tlsConfiguration, handshakePromise: handshake))
                    }
                    if kind == .h1 { try channel.pipeline.syncOperations.addHTTPClientHandlers() }
                    try channel.pipeline.syncOperations.addHandler(box.connection)
                    return channel.eventLoop.makeSucceededVoidFuture()
                } catch {
                    return channel.eventLoop.makeFailedFuture(error)
                }
            }
        let target = self.target
        return bootstrap.connect(host: target.host, port: target.port).flatMap { _ in
            guard let handshake else { return loop.makeSucceededFuture(box) }
            return handshake.futureResult.flatMapThrowing { established in
                if kind == .h2 && established.alpn != "h2" {
                    box.connection.close()
                    throw HarnessError.transport("\(target.authority) did not agree to HTTP/2 by ALPN (chose \(established.alpn ?? "nothing"))")
                }
                return box
            }
        }.flatMapErrorThrowing { error in
            handshake?.fail(error)
            if let error = error as? HarnessError { throw error }
            throw HarnessError.transport("\(target.baseURL): \(error)")
        }
    }
}

/// A connection handed between closures on its event loop (it is only ever
/// used there; the box only carries it).
final class ConnectionBox: @unchecked Sendable {
    let connection: any ClientConnection & ChannelHandler
    let kind: Connector.Kind
    init(_ connection: any ClientConnection & ChannelHandler, kind: Connector.Kind) {
        self.connection = connection
        self.kind = kind
    }
}

/// Headers every call of the harness sends.
enum CallHeaders {
    static func grpc(credential: String?, extra: [(String, String)] = []) -> [(String, String)] {
        var headers = [("content-type", "application/grpc"), ("te", "trailers"), ("user-agent", "weft-loadtest")]
        if let credential { headers.append(("authorization", "Bearer \(credential)")) }
        return headers + extra
    }

    static func rest(credential: String?, hasBody: Bool, extra: [(String, String)] = []) -> [(String, String)] {
        var headers = [("accept", "application/json"), ("user-agent", "weft-loadtest")]
        if hasBody { headers.append(("content-type", "application/json")) }
        if let credential { headers.append(("authorization", "Bearer \(credential)")) }
        return headers + extra
    }
}
