import NIOCore
import SwiftProtobuf

/// Unary gRPC calls for setup, collection and the external workers: one
/// HTTP/2 connection, many calls at once, awaited from async code.
final class RPCClient: @unchecked Sendable {
    // Confined to `loop`: `box` is only touched in closures run on it.
    private let loop: any EventLoop
    private let box: ConnectionBox
    let target: Target

    private init(loop: any EventLoop, box: ConnectionBox, target: Target) {
        self.loop = loop
        self.box = box
        self.target = target
    }

    static func connect(_ target: Target, on loop: any EventLoop, streams: Int = 256) async throws -> RPCClient {
        let box = try await loop.flatSubmit { Connector(target: target).connect(.h2, on: loop, streams: streams) }.get()
        return RPCClient(loop: loop, box: box, target: target)
    }

    /// Calls `path` ("/package.Service/Method") with `request`; a non-OK
    /// status throws `RPCFailure`.
    func call<Response: Message>(
        _ path: String, _ request: some Message, as: Response.Type = Response.self, credential: String?? = .none
    ) async throws -> Response {
        let payload = try request.serializedBytes() as [UInt8]
        let wire = WireRequest(
            method: "POST", path: path, headers: CallHeaders.grpc(credential: credential ?? target.credential),
            body: GRPCFrame.wrap(payload), isGRPC: true, wantsBody: true)
        let response = try await send(wire)
        guard response.succeeded else { throw RPCFailure(path: path, response: response) }
        return try Response(serializedBytes: GRPCFrame.firstMessage(response.body) ?? [])
    }

    /// Any request on this connection (REST over HTTP/2, a scrape).
    func send(_ wire: WireRequest) async throws -> WireResponse {
        let promise = loop.makePromise(of: WireResponse.self)
        let (box, target) = (self.box, self.target)
        loop.execute {
            let prepared = PreparedRequest(wire, authority: target.authority, scheme: target.scheme)
            box.connection.send(prepared) { promise.succeed($0) }
            box.connection.flush()
        }
        return try await promise.futureResult.get()
    }

    func close() {
        let box = self.box
        loop.execute { box.connection.close() }
    }
}

/// A call that did not end OK.
struct RPCFailure: Error, CustomStringConvertible {
    let path: String
    let response: WireResponse

    var description: String {
        if let error = response.transportError { return "\(path): \(error)" }
        if let status = response.grpcStatus {
            return "\(path): \(GRPCCode.name(status))\(response.grpcMessage.map { ": \($0)" } ?? "")"
        }
        return "\(path): HTTP \(response.httpStatus) \(String(decoding: response.body.prefix(300), as: UTF8.self))"
    }

}
