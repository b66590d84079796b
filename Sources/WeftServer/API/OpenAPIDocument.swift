import Foundation
import WeftRPC

/// The OpenAPI 3 document of the REST bridge, built at start-up from the
/// registered routes (so it cannot drift from them) and the message schemas
/// generated from proto/ (`APISchemas`, regenerated with the protobuf code).
enum OpenAPIDocument {
    static func build(operations: [RESTOperation]) -> [UInt8] {
        let schemas = APISchemas.components()
        var paths: [String: [String: Any]] = [:]
        for operation in operations {
            let route = operation.route
            let requestSchema = schemaName(operation.requestMessageName)
            let responseSchema = schemaName(operation.responseMessageName)
            var parameters: [[String: Any]] = route.pathParameters.map {
                ["name": $0, "in": "path", "required": true, "schema": ["type": "string"]]
            }
            let requestFields = (schemas[requestSchema] as? [String: Any])?["properties"] as? [String: Any] ?? [:]
            if !route.hasBody {
                for (name, schema) in requestFields.sorted(by: { $0.key < $1.key })
                where !route.pathParameters.contains(name) && isQueryable(schema, schemas: schemas) {
                    parameters.append(["name": name, "in": "query", "required": false, "schema": schema])
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
            if route.hasBody {
                op["requestBody"] = [
                    "required": false,
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
            if operation.access == .public {
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
