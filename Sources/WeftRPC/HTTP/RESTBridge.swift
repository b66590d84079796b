import Foundation
import WeftObservability
public import SwiftProtobuf

/// Maps HTTP requests to request messages and response messages to JSON, by
/// the proto3 JSON mapping (lowerCamelCase names; proto names accepted too).
/// Every problem with the request is an INVALID_ARGUMENT (400) that says what
/// is wrong; nothing here ever answers 500 for bad input.
public enum RESTBridge {
    static let decodingOptions: JSONDecodingOptions = {
        var options = JSONDecodingOptions()
        options.ignoreUnknownFields = false
        options.messageDepthLimit = 64
        return options
    }()

    /// Builds the request message from path parameters, query parameters and
    /// (for routes with a body) the JSON body.
    ///
    /// The body is decoded from the bytes the client sent, never from a
    /// re-serialized copy: Foundation reads a number with a long mantissa as
    /// an NSDecimalNumber and writes it back in plain notation
    /// (`1.5461418000910875e-111` becomes 129 characters), which the protobuf
    /// parser refuses. Parameters are decoded on their own and merged in.
    public static func decodeRequest<M: SwiftProtobuf.Message>(
        _ type: M.Type, from request: HTTPRequest, route: RESTRoute
    ) throws -> M {
        do {
            return try decodeRequestUnmarked(type, from: request, route: route)
        } catch var failure as RPCError where failure.code == .invalidArgument {
            // The request's fault (not JSON, a wrong content-type, a value
            // that does not fit); a server-side failure stays what it is.
            failure.decodeFailed = true
            throw failure
        }
        // A RESTDecodeError goes on as it is: the router explains which
        // field is wrong (`HTTPRouter.register(explain:)`) and marks it.
    }

    private static func decodeRequestUnmarked<M: SwiftProtobuf.Message>(
        _ type: M.Type, from request: HTTPRequest, route: RESTRoute
    ) throws -> M {
        // The common read (path parameters only): their JSON written at once.
        if !route.hasBody, request.body.readableBytes == 0, request.query?.isEmpty ?? true,
            route.ifMatchField == nil || request.header("if-match") == nil
        {
            var text = "{"
            var first = true
            for name in route.pathParameters {
                guard let value = request.pathParameters[name] else { continue }
                if !first { text += "," }
                first = false
                text += quote(name) + ":" + quote(value)
            }
            text += "}"
            return try decode(Data(text.utf8), object: request.pathParameters, request: request)
        }
        var body: M?
        var bodyFields: [String: Any] = [:]
        if let field = route.rawBodyField {
            // The bytes as sent (base64 is how proto3 JSON carries `bytes`).
            bodyFields[field] = Data(request.body.readableBytesView).base64EncodedString()
        } else if route.hasBody, request.body.readableBytes > 0 {
            if let contentType = request.header("content-type"), !isJSON(contentType) {
                throw RPCError(
                    code: .invalidArgument,
                    message: "content-type must be application/json, got \(contentType)",
                    httpStatus: 415)
            }
            let bytes = Data(request.body.readableBytesView)
            let parsed: Any
            do {
                parsed = try JSONSerialization.jsonObject(with: bytes, options: [.fragmentsAllowed])
            } catch {
                throw RPCError(code: .invalidArgument, message: "request body is not valid JSON: \(jsonProblem(error))")
            }
            guard let dictionary = parsed as? [String: Any] else {
                throw RPCError(
                    code: .invalidArgument,
                    message: "request body must be a JSON object (a \(M.protoMessageName)), got \(jsonKind(parsed))")
            }
            // Foundation's parser is lenient (it takes trailing commas); the
            // protobuf JSON parser is strict, so the body must pass it too.
            let strict: M = try decode(bytes, object: dictionary, request: request)
            let hasParameters =
                !route.pathParameters.isEmpty || !(request.query ?? "").isEmpty
                || (route.ifMatchField != nil && request.header("if-match") != nil)
            if !hasParameters { return strict }
            // proto3 JSON accepts proto names too (`workflow_id`); use one
            // spelling so a body field cannot shadow a path parameter.
            for (key, value) in dictionary { bodyFields[jsonName(key)] = value }
            body = strict
        }
        if !route.hasBody, request.body.readableBytes > 0, route.method != "DELETE" {
            throw RPCError(code: .invalidArgument, message: "\(route.method) \(route.template) takes no request body")
        }
        var parameters: [String: Any] = [:]
        for (rawName, values) in queryParameters(request.query) {
            let name = jsonName(rawName)
            if bodyFields[name] != nil || parameters[name] != nil {
                throw RPCError(code: .invalidArgument, message: "field \(name) is given twice (query and body, or two spellings)")
            }
            let typed: [Any] = request.booleanFields.contains(name) ? values.map(booleanQueryValue) : values
            parameters[name] = typed.count == 1 ? typed[0] : typed
        }
        for name in route.pathParameters {
            guard let value = request.pathParameters[name] else { continue }
            if let given = parameters[name] ?? bodyFields[name] {
                guard let text = given as? String, text == value else {
                    throw RPCError(
                        code: .invalidArgument,
                        message: "\(name) in the request (\(given)) differs from the one in the path (\(value))")
                }
            }
            parameters[name] = value
        }
        if let field = route.ifMatchField, parameters[field] == nil, bodyFields[field] == nil,
            let ifMatch = request.header("if-match")
        {
            parameters[field] = unquoteETag(ifMatch)
        }
        if let field = route.rawBodyField { parameters[field] = bodyFields[field] }
        // Path and query parameters are strings and booleans (flatJSON never
        // fails for them); the serializer is a fallback.
        let json: Data
        if let text = flatJSON(parameters) {
            json = Data(text.utf8)
        } else {
            do {
                json = try JSONSerialization.data(withJSONObject: parameters)
            } catch {
                throw RPCError(code: .invalidArgument, message: "request cannot be mapped to \(M.protoMessageName)")
            }
        }
        let fromParameters: M = try decode(json, object: parameters, request: request)
        guard var message = body else { return fromParameters }
        // A binary merge sets the parameters' fields on the body's message;
        // none of them is also in the body with another value (checked above).
        do {
            let bytes: [UInt8] = try fromParameters.serializedBytes()
            try message.merge(serializedBytes: bytes)
        } catch {
            throw RPCError(code: .internal, message: "cannot merge request parameters into \(M.protoMessageName)", cause: error)
        }
        return message
    }

    /// The strict proto3 JSON decode of `json` (whose parsed form is
    /// `object`). A timestamp refused for its offset is retried in UTC (see
    /// `HTTPRequest.utcTimestamps`).
    private static func decode<M: SwiftProtobuf.Message>(_ json: Data, object: [String: Any], request: HTTPRequest) throws -> M {
        do {
            return try M(jsonUTF8Bytes: json, options: decodingOptions)
        } catch JSONDecodingError.malformedTimestamp where request.utcTimestamps != nil {
            let utc = request.utcTimestamps!(object)
            if let rewritten = try? JSONSerialization.data(withJSONObject: utc),
                let message = try? M(jsonUTF8Bytes: rewritten, options: decodingOptions)
            {
                return message
            }
            throw RESTDecodeError(
                messageName: M.protoMessageName, json: Array(json), generic: explain(.malformedTimestamp, object: object))
        } catch let error as JSONDecodingError {
            throw RESTDecodeError(messageName: M.protoMessageName, json: Array(json), generic: explain(error, object: object))
        } catch {
            throw RPCError(code: .invalidArgument, message: "invalid \(M.protoMessageName): \(error)")
        }
    }

    /// The proto3 JSON of a response message (by `encoder` when given:
    /// defaults included).
    public static func encodeResponse<M: SwiftProtobuf.Message>(_ message: M, encoder: ProtoJSONEncoder? = nil) throws
        -> [UInt8]
    {
        do {
            if let encoder { return try encoder.encode(message) }
            return try message.jsonUTF8Bytes()
        } catch {
            throw RPCError(code: .internal, message: "cannot encode response", cause: error)
        }
    }

    /// HTTP headers that become request metadata for the handler (the same
    /// names a gRPC client would send, e.g. `authorization`).
    static let skippedHeaders: Set<String> = [
        "host", "content-length", "content-type", "connection", "keep-alive", "transfer-encoding", "te", "upgrade",
        "accept-encoding", "user-agent", "accept",
    ]

    /// The request metadata a handler sees for an HTTP request.
    public static func metadata(of request: HTTPRequest) -> Metadata {
        var metadata = Metadata()
        for (name, value) in request.headers where !skippedHeaders.contains(name) && !name.hasPrefix(":") {
            metadata.add(name, value)
        }
        return metadata
    }

    /// Response metadata the handler set (e.g. `etag`) as HTTP headers.
    static func headers(from context: ServerContext) -> [(name: String, value: String)] {
        context.takeResponseHeaders().compactMap { entry in
            if case .string(let value) = entry.value { return (entry.key, value) }
            return nil
        }
    }

    /// JSON text of an object whose values are strings, booleans or lists of
    /// those (what path and query parameters produce); nil for anything else.
    static func flatJSON(_ object: [String: Any]) -> String? {
        var out = "{"
        for (key, value) in object {
            if out.count > 1 { out += "," }
            out += quote(key) + ":"
            switch value {
            case let string as String: out += quote(string)
            case let bool as Bool: out += bool ? "true" : "false"
            case let list as [Any]:
                var items: [String] = []
                for item in list {
                    if let string = item as? String { items.append(quote(string)) }
                    else if let bool = item as? Bool { items.append(bool ? "true" : "false") }
                    else { return nil }
                }
                out += "[" + items.joined(separator: ",") + "]"
            default: return nil
            }
        }
        return out + "}"
    }

    static func quote(_ string: String) -> String { JSONText.quoted(string) }

    static func isJSON(_ contentType: String) -> Bool {
        let media = contentType.split(separator: ";").first.map { $0.trimmingCharacters(in: .whitespaces).lowercased() } ?? ""
        return media == "application/json" || media.hasSuffix("+json")
    }

    static func unquoteETag(_ value: String) -> String {
        var tag = value.trimmingCharacters(in: .whitespaces)
        if tag.hasPrefix("W/") { tag.removeFirst(2) }
        if tag.count >= 2, tag.hasPrefix("\""), tag.hasSuffix("\"") { tag = String(tag.dropFirst().dropLast()) }
        return tag
    }

    /// `a=1&b=x&b=y` as name -> values, percent- and plus-decoded.
    static func queryParameters(_ query: String?) -> [(String, [String])] {
        guard let query, !query.isEmpty else { return [] }
        var order: [String] = []
        var values: [String: [String]] = [:]
        for pair in query.split(separator: "&", omittingEmptySubsequences: true) {
            let parts = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            let decode: (Substring) -> String = {
                String($0).replacingOccurrences(of: "+", with: " ").removingPercentEncoding ?? String($0)
            }
            let name = decode(parts[0])
            let value = parts.count > 1 ? decode(parts[1]) : ""
            if values[name] == nil { order.append(name) }
            values[name, default: []].append(value)
        }
        return order.map { ($0, values[$0]!) }
    }

    /// Query values are text; proto3 JSON takes numbers and enums as strings
    /// but booleans only as JSON booleans.
    static func booleanQueryValue(_ value: String) -> Any {
        switch value {
        case "true": return true
        case "false": return false
        default: return value
        }
    }

    /// `workflow_id` -> `workflowId`; JSON names pass through.
    public static func jsonName(_ key: String) -> String {
        guard key.contains("_") else { return key }
        var out = ""
        var upper = false
        for character in key {
            if character == "_" {
                upper = true
            } else {
                out.append(upper ? Character(character.uppercased()) : character)
                upper = false
            }
        }
        return out
    }

    static func jsonKind(_ value: Any) -> String {
        switch value {
        case is [Any]: return "an array"
        case is String: return "a string"
        case is NSNull: return "null"
        case is NSNumber: return "a number or boolean"
        default: return "a \(type(of: value))"
        }
    }

    static func jsonProblem(_ error: any Error) -> String {
        let nsError = error as NSError
        if let detail = nsError.userInfo[NSDebugDescriptionErrorKey] as? String { return detail }
        return "malformed JSON"
    }

    static func explain(_ error: JSONDecodingError, object: [String: Any]) -> String {
        switch error {
        case .unknownField(let name): return "unknown field \"\(name)\""
        case .malformedString: return "a field that must be a string has another type"
        case .malformedNumber: return "a field that must be a number has another type or is not a valid number"
        case .numberRange: return "a number is out of range for its field"
        case .malformedBool: return "a field that must be a boolean (true/false) has another type"
        case .unrecognizedEnumValue: return "an enum field has a value that is not one of its names"
        case .malformedTimestamp: return "a timestamp is not RFC 3339 (e.g. 2026-11-27T12:00:00Z)"
        case .malformedDuration: return "a duration is not in seconds with an 's' suffix (e.g. \"1.5s\")"
        case .illegalNull: return "null is not allowed for a field"
        case .schemaMismatch: return "a field has the wrong JSON type (object, array or scalar)"
        case .messageDepthLimit: return "the JSON nests too deeply"
        // The body passed Foundation's UTF-8 check first, so what protobuf
        // calls invalid UTF-8 is a number it cannot read (over 127 characters).
        case .invalidUTF8: return "a number is written with more than 127 characters, or a string is not valid UTF-8"
        case .failure, .truncated, .trailingGarbage, .missingFieldNames, .leadingZero, .unquotedMapKey:
            return "the body is not strict JSON (RFC 8259: no trailing commas, comments or unquoted names)"
        default: return "\(error)"
        }
    }
}

extension RESTBridge {
    /// The HTTP response of a unary method's result.
    static func respond<M: SwiftProtobuf.Message>(
        _ message: M, route: RESTRoute, context: ServerContext, encoder: ProtoJSONEncoder? = nil
    ) throws -> HTTPResponse {
        try respond(route: route, context: context) { try encodeResponse(message, encoder: encoder) }
    }

    /// The HTTP response of a unary method whose JSON `body` gives (not
    /// asked for when the route answers 204).
    static func respond(route: RESTRoute, context: ServerContext, body: () throws -> [UInt8]) throws -> HTTPResponse {
        let headers = headers(from: context)
        if route.successStatus == 204 { return HTTPResponse(status: 204, headers: headers) }
        return HTTPResponse(
            status: route.successStatus, headers: [("content-type", "application/json")] + headers, body: try body())
    }
}

/// A request that JSON-decodes to no valid message. Carries the JSON so the
/// server can say which field is wrong (see `HTTPRouter.register(explain:)`).
public struct RESTDecodeError: Error, RPCErrorConvertible {
    public let messageName: String
    public let json: [UInt8]
    /// swift-protobuf's reason, which names no field.
    public let generic: String

    public var rpcError: RPCError { RPCError(code: .invalidArgument, message: "invalid \(messageName): \(generic)") }
}

/// Writes a server stream's messages to a streaming transport as they come:
/// NDJSON (`application/x-ndjson`, one proto3 JSON message per line) or,
/// when the client accepts `text/event-stream`, server-sent events (one
/// `data:` event per message). An error after the first message ends the
/// stream with an error line (`{"error": {"code", "message"}}`) or an
/// `event: error`.
final class StreamingJSONWriter<M: SwiftProtobuf.Message>: RPCResponseSink, @unchecked Sendable {
    // Used only by the one handler task that owns the call.
    private let sink: any HTTPStreamSink
    private let events: Bool
    private let encoder: ProtoJSONEncoder?
    private let status: Int
    private let context: ServerContext
    private(set) var started = false

    init(
        sink: any HTTPStreamSink, events: Bool, encoder: ProtoJSONEncoder? = nil, status: Int, context: ServerContext
    ) {
        self.sink = sink
        self.events = events
        self.encoder = encoder
        self.status = status
        self.context = context
    }

    private func begin() async throws {
        guard !started else { return }
        started = true
        let type = events ? "text/event-stream" : "application/x-ndjson"
        // No buffering on the way (proxies, browsers): each message as it comes.
        try await sink.begin(
            status: status,
            headers: [("content-type", type), ("cache-control", "no-cache"), ("x-accel-buffering", "no")]
                + RESTBridge.headers(from: context))
    }

    func write(_ message: GRPCFramedMessage) async throws {
        let decoded = try message.withUnsafeBytes { try M(serializedBytes: Array($0)) }
        let json = try RESTBridge.encodeResponse(decoded, encoder: encoder)
        try await begin()
        try await sink.write(frame(json, event: nil))
    }

    /// An empty stream still gets its head.
    func finish() async throws { try await begin() }

    func fail(_ error: RPCError) async throws {
        let body: [String: Any] = ["error": ["code": error.code.rawValue, "message": error.message]]
        let json = (try? JSONSerialization.data(withJSONObject: body, options: [.sortedKeys])).map(Array.init) ?? []
        try await sink.write(frame(json, event: "error"))
    }

    private func frame(_ json: [UInt8], event: String?) -> [UInt8] {
        guard events else { return json + [UInt8(ascii: "\n")] }
        var out: [UInt8] = []
        if let event { out += Array("event: \(event)\n".utf8) }
        return out + Array("data: ".utf8) + json + Array("\n\n".utf8)
    }
}

/// Collects a server stream's messages as NDJSON (one proto3 JSON message
/// per line) for the REST bridge.
final class NDJSONCollector<M: SwiftProtobuf.Message>: RPCResponseSink, @unchecked Sendable {
    // Written only by the one handler task that owns the call.
    private(set) var body: [UInt8] = []
    private let encoder: ProtoJSONEncoder?

    init(encoder: ProtoJSONEncoder? = nil) { self.encoder = encoder }

    func write(_ message: GRPCFramedMessage) async throws {
        // The typed stream hands over serialized protobuf; turn it back into
        // the message to print it as JSON.
        let decoded = try message.withUnsafeBytes { try M(serializedBytes: Array($0)) }
        body.append(contentsOf: try RESTBridge.encodeResponse(decoded, encoder: encoder))
        body.append(UInt8(ascii: "\n"))
    }
}
