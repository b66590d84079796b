/// The REST binding of an RPC method: the HTTP method and path template it
/// answers on. Declared next to the method (see `RPCHandler.unary(...rest:)`),
/// so the REST bridge and the gRPC service can never drift apart.
///
/// Mapping (as grpc-gateway and Google's HTTP annotations do):
/// - `{param}` path segments set the request field of that JSON name;
/// - routes with a body take the JSON body as the request message;
/// - query parameters set request fields by JSON name (GET and DELETE, and
///   alongside a body);
/// - the response message is the JSON body (proto3 JSON mapping).
public struct RESTRoute: Sendable, Hashable, CustomStringConvertible {
    public let method: String
    public let template: String
    /// Whether the request message comes from a JSON body.
    public let hasBody: Bool
    /// The HTTP status of success (200, 201 for creates, 204 for deletes).
    public let successStatus: Int
    /// A request field filled from `If-Match` when the body does not set it.
    public let ifMatchField: String?
    /// A `bytes` field that receives the body exactly as sent, of any
    /// content type (webhooks, whose signature covers those bytes); the
    /// body is then not read as the request message.
    public let rawBodyField: String?
    /// Names of the `{param}` segments, in order (parsed once: every
    /// request reads them).
    public let pathParameters: [String]

    public init(
        method: String, template: String, hasBody: Bool, successStatus: Int = 200, ifMatchField: String? = nil,
        rawBodyField: String? = nil
    ) {
        self.method = method
        self.template = template
        self.hasBody = hasBody
        self.successStatus = successStatus
        self.ifMatchField = ifMatchField
        self.rawBodyField = rawBodyField
        self.pathParameters = template.split(separator: "/").compactMap { part in
            part.hasPrefix("{") && part.hasSuffix("}") ? String(part.dropFirst().dropLast()) : nil
        }
    }

    /// A POST whose body goes, as sent, into the `bytes` field `field`.
    public static func postRaw(_ template: String, field: String, status: Int = 200) -> RESTRoute {
        RESTRoute(method: "POST", template: template, hasBody: true, successStatus: status, rawBodyField: field)
    }

    public static func get(_ template: String) -> RESTRoute {
        RESTRoute(method: "GET", template: template, hasBody: false)
    }

    public static func post(_ template: String, status: Int = 200) -> RESTRoute {
        RESTRoute(method: "POST", template: template, hasBody: true, successStatus: status)
    }

    public static func put(_ template: String, ifMatch field: String? = nil) -> RESTRoute {
        RESTRoute(method: "PUT", template: template, hasBody: true, ifMatchField: field)
    }

    public static func delete(_ template: String, ifMatch field: String? = nil) -> RESTRoute {
        RESTRoute(method: "DELETE", template: template, hasBody: false, successStatus: 204, ifMatchField: field)
    }

    public var description: String { "\(method) \(template)" }
}
