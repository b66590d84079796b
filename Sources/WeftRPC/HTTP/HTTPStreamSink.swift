/// Where a streaming REST response goes as it is produced (a server-stream
/// RPC over the REST bridge: NDJSON or server-sent events). A transport
/// that can stream puts one in `HTTPRequest.streamSink`; the head is sent
/// with the first chunk, so an error before any message is still an
/// ordinary error response. Each chunk is flushed at once.
public protocol HTTPStreamSink: Sendable {
    /// Sends the response head (once, before the first chunk).
    func begin(status: Int, headers: [(name: String, value: String)]) async throws
    /// Sends a chunk; throws once the client has gone (the handler then ends).
    func write(_ chunk: [UInt8]) async throws
}

/// The client went away while a stream was written.
public struct HTTPStreamClosed: Error {}
