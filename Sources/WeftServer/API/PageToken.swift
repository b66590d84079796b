import Foundation
import SwiftProtobuf
import WeftRPC

/// Page sizes and opaque page tokens shared by every List method. A token
/// carries the store's cursor and a fingerprint of the query it belongs to,
/// so reusing it with other filters is an error rather than a wrong page.
enum Paging {
    static let defaultSize = 100
    static let maxSize = 1000

    /// 0 means the default; above the maximum is clamped (AIP-158).
    static func size(_ requested: Int32) throws -> Int {
        if requested < 0 { throw RPCError(code: .invalidArgument, message: "page_size must not be negative") }
        if requested == 0 { return defaultSize }
        return min(Int(requested), maxSize)
    }

    /// The query a list request's page tokens belong to: the caller and
    /// every filter of the request (its paging fields cleared).
    static func query<Request: SwiftProtobuf.Message>(
        _ request: Request, caller: String, clearing paging: (inout Request) -> Void
    ) -> String {
        var filter = request
        paging(&filter)
        return caller + "|" + ((try? filter.serializedBytes() as [UInt8]).map { Base64URL.encode($0) } ?? "")
    }

    static func token(cursor: String?, query: String) -> String {
        guard let cursor else { return "" }
        return Base64URL.encode(Array("1|\(fingerprint(query))|\(cursor)".utf8))
    }

    /// The cursor inside `token`, nil for the first page.
    static func cursor(_ token: String, query: String) throws -> String? {
        guard !token.isEmpty else { return nil }
        guard let bytes = Base64URL.decode(token), let text = String(bytes: bytes, encoding: .utf8) else {
            throw invalid
        }
        let parts = text.split(separator: "|", maxSplits: 2, omittingEmptySubsequences: false)
        guard parts.count == 3, parts[0] == "1", parts[1] == fingerprint(query)[...], !parts[2].isEmpty else {
            throw invalid
        }
        return String(parts[2])
    }

    /// An offset cursor (index into a list), bounded so no arithmetic on it
    /// can overflow whatever a client puts in a token.
    static func offset(_ token: String, query: String) throws -> Int {
        guard let cursor = try cursor(token, query: query) else { return 0 }
        guard let offset = Int(cursor), (0...maxOffset).contains(offset) else { throw invalid }
        return offset
    }

    static let maxOffset = 10_000_000

    private static let invalid = RPCError(
        code: .invalidArgument,
        message: "page_token is not valid for this request (it must come from the previous page of the same query)")

    private static func fingerprint(_ query: String) -> String {
        Base64URL.encode(Crypto.sha256(Array(query.utf8)).prefix(6))
    }
}
