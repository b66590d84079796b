import Foundation
import WeftRPC

/// The OpenAPI 3 document of the REST bridge, built at start-up from the
/// registered routes (so it cannot drift from them) and the message schemas
/// generated from proto/ (`APISchemas`, regenerated with the protobuf code).
enum OpenAPIDocument {
    static func build(operations: [RESTOperation]) -> [UInt8] {
        var schemas = constrained(APISchemas.components())
        var paths: [String: [String: Any]] = [:]
        for operation in operations {
            let route = operation.route
            var requestSchema = schemaName(operation.requestMessageName)
            let responseSchema = schemaName(operation.responseMessageName)
            var parameters: [[String: Any]] = route.pathParameters.map {
                let schema: [String: Any] = ["type": "string", "minLength": 1].merging(APIConstraints.pathParameters[$0] ?? [:]) { $1 }
                return ["name": $0, "in": "path", "required": true, "schema": schema]
            }
            if route.hasBody, route.rawBodyField == nil, !route.pathParameters.isEmpty,
                let body = bodySchema(schemas[requestSchema], leavingOut: Set(route.pathParameters))
            {
                // The body of a route with path parameters: the message
                // without the fields the path sets (as grpc-gateway's
                // `body: "*"`): sending them in the body too is redundant,
                // and a different value is refused.
                requestSchema += ".Body"
                schemas[requestSchema] = body
            }
            let requestFields = (schemas[requestSchema] as? [String: Any])?["properties"] as? [String: Any] ?? [:]
            if !route.hasBody {
                let required = Set((schemas[requestSchema] as? [String: Any])?["required"] as? [String] ?? [])
                for (name, schema) in requestFields.sorted(by: { $0.key < $1.key })
                where !route.pathParameters.contains(name) && isQueryable(schema, schemas: schemas) {
                    parameters.append(["name": name, "in": "query", "required": required.contains(name), "schema": schema])
                }
            }
            if route.ifMatchField != nil {
                parameters.append([
                    "name": "If-Match", "in": "header", "required": false, "schema": ["type": "string"],
                    "description": "The etag the change is based on; a stale one fails with 409.",
                ])
            }
            var op: [String: Any] = [
                "operationId": operation.descriptor.method,
                "tags": [operation.descriptor.service.split(separator: ".").last.map(String.init) ?? ""],
                "summary": "\(operation.descriptor.path) over REST",
                "x-grpc-method": operation.descriptor.path,
            ]
            if !parameters.isEmpty { op["parameters"] = parameters }
            if let field = route.rawBodyField {
                // The body as sent (a webhook's JSON object, whatever its
                // shape) goes into the message's `bytes` field `field`.
                op["x-raw-body-field"] = field
                op["requestBody"] = [
                    "required": true,
                    "content": ["application/json": ["schema": ["type": "object"]]],
                ]
            } else if route.hasBody {
                // Needed when the message has required fields (an absent
                // body is the empty message).
                let needed = !(((schemas[requestSchema] as? [String: Any])?["required"] as? [String]) ?? []).isEmpty
                op["requestBody"] = [
                    "required": needed,
                    "content": ["application/json": ["schema": ["$ref": "#/components/schemas/\(requestSchema)"]]],
                ]
            }
            var responses: [String: Any] = ["default": ["$ref": "#/components/responses/Error"]]
            let success = String(route.successStatus)
            if route.successStatus == 204 {
                responses[success] = ["description": "Done."]
            } else if operation.descriptor.kind == .serverStreaming {
                responses[success] = [
                    "description": "The stream, one JSON message per line.",
                    "content": ["application/x-ndjson": ["schema": ["$ref": "#/components/schemas/\(responseSchema)"]]],
                ]
            } else {
                responses[success] = [
                    "description": "OK.",
                    "content": ["application/json": ["schema": ["$ref": "#/components/schemas/\(responseSchema)"]]],
                ]
            }
            op["responses"] = responses
            // What the interceptor chain enforces: public methods need no token.
            if operation.access.isPublic {
                op["security"] = [[String: Any]]()
            } else {
                op["security"] = [["bearer": [String]()]]
            }
            paths[route.template, default: [:]][route.method.lowercased()] = op
        }
        var components = schemas
        components["Error"] = [
            "type": "object",
            "description": "google.rpc.Status-shaped error: the gRPC code (number), a message and details.",
            "properties": [
                "code": ["type": "integer", "format": "int32"],
                "message": ["type": "string"],
                "details": ["type": "array", "items": ["type": "object"]],
            ],
            "required": ["code", "message"],
        ]
        let document: [String: Any] = [
            "openapi": "3.0.3",
            "info": [
                "title": "Weft REST API",
                "version": "1.0.0",
                "description": "The JSON bridge of Weft's gRPC API (package weft.v1): every route runs the same handler as its gRPC method.",
            ],
            "servers": [["url": "/"]],
            "paths": paths,
            "components": [
                "schemas": components,
                "responses": [
                    "Error": [
                        "description": "An error; the HTTP status follows the gRPC code.",
                        "content": ["application/json": ["schema": ["$ref": "#/components/schemas/Error"]]],
                    ]
                ],
                "securitySchemes": ["bearer": ["type": "http", "scheme": "bearer", "bearerFormat": "JWT"]],
            ],
        ]
        let data = (try? JSONSerialization.data(withJSONObject: document, options: [.sortedKeys, .prettyPrinted, .withoutEscapingSlashes])) ?? Data()
        return Array(data)
    }

    /// The schemas from proto/ with what the server enforces on top
    /// (`APIConstraints`): durations and timestamps as the proto3 JSON
    /// mapping writes them, ranges, lengths, patterns, required and
    /// read-only fields.
    static func constrained(_ base: [String: Any]) -> [String: Any] {
        var schemas: [String: Any] = [:]
        for (name, raw) in base {
            guard var schema = raw as? [String: Any] else {
                schemas[name] = raw
                continue
            }
            if var properties = schema["properties"] as? [String: Any] {
                for (field, property) in properties { properties[field] = wellKnownFormats(property) }
                let fields = APIConstraints.messages[name] ?? [:]
                for (field, constraint) in fields {
                    guard let property = properties[field] else { continue }
                    properties[field] = merge(property, constraint.keywords)
                }
                for field in APIConstraints.readOnly[name] ?? [] {
                    guard let property = properties[field] else { continue }
                    properties[field] = merge(property, ["readOnly": true])
                }
                schema["properties"] = properties
                let required = fields.filter(\.value.required).map(\.key).sorted()
                if !required.isEmpty { schema["required"] = required }
                if APIConstraints.taskMessages.contains(name) { schema["oneOf"] = APIConstraints.taskVariants }
            }
            schemas[name] = schema
        }
        return schemas
    }

    /// Durations and timestamps as proto3 JSON writes them: JSON Schema's
    /// `format: duration` means ISO 8601 ("P1D"), which the mapping does not
    /// take; a timestamp's offset and precision are stated as a pattern.
    private static func wellKnownFormats(_ property: Any) -> Any {
        guard var schema = property as? [String: Any] else { return property }
        switch schema["format"] as? String {
        case "duration":
            schema["format"] = nil
            schema["pattern"] = SchemaPatterns.duration
        case "date-time":
            schema["pattern"] = SchemaPatterns.timestamp
        default:
            break
        }
        if let items = schema["items"] { schema["items"] = wellKnownFormats(items) }
        return schema
    }

    /// Adds keywords to a property; a reference is wrapped (`allOf`), since
    /// OpenAPI 3.0 ignores siblings of `$ref`.
    private static func merge(_ property: Any, _ keywords: [String: Any]) -> Any {
        guard var schema = property as? [String: Any] else { return property }
        if schema["$ref"] != nil {
            schema = ["allOf": [schema]]
        }
        for (keyword, value) in keywords {
            if keyword == "items", let items = value as? [String: Any], let existing = schema["items"] {
                schema["items"] = merge(existing, items)
            } else {
                schema[keyword] = value
            }
        }
        if keywords["anyOf"] != nil || keywords["enum"] != nil { schema["format"] = nil }
        return schema
    }

    /// A request schema without the fields a route's path sets.
    private static func bodySchema(_ raw: Any?, leavingOut fields: Set<String>) -> [String: Any]? {
        guard var schema = raw as? [String: Any], var properties = schema["properties"] as? [String: Any] else { return nil }
        for field in fields { properties[field] = nil }
        schema["properties"] = properties
        if let required = schema["required"] as? [String] {
            let kept = required.filter { !fields.contains($0) }
            schema["required"] = kept.isEmpty ? nil : kept
        }
        return schema
    }

    /// "weft.v1.CreateWorkflowRequest" -> "weft.v1.CreateWorkflowRequest" (schema keys keep the full name).
    static func schemaName(_ protoName: String) -> String { protoName }

    /// Scalars (and enums, timestamps) can be query parameters; messages cannot.
    static func isQueryable(_ schema: Any, schemas: [String: Any]) -> Bool {
        guard let schema = schema as? [String: Any] else { return false }
        if let ref = schema["$ref"] as? String {
            let name = String(ref.split(separator: "/").last ?? "")
            guard let target = schemas[name] as? [String: Any] else { return false }
            return target["type"] as? String != "object"
        }
        return schema["type"] as? String != "object"
    }
}
