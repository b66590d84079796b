import Foundation
import SwiftProtobuf
import WeftProto
import WeftRPC

/// gRPC server reflection (`grpc.reflection.v1` and `v1alpha`), answered
/// from the descriptor set of proto/ embedded in the binary, so grpcurl,
/// Postman, grpcui and the like can list the services and call them.
///
/// Both versions have the same messages under different package names, so
/// one implementation answers in v1 terms and the v1alpha service converts
/// through the wire format (identical field numbers and types).
struct ReflectionService: RPCService {
    static let v1Name = "grpc.reflection.v1.ServerReflection"
    static let v1alphaName = "grpc.reflection.v1alpha.ServerReflection"

    let index: DescriptorIndex
    /// The services this server registers (others in the descriptor set, e.g.
    /// the test echo service when it is off, are not listed).
    let services: [String]

    init(index: DescriptorIndex, services: [String]) {
        self.index = index
        self.services = services
    }

    var handlers: [RPCHandler] {
        [
            .bidiStreaming(
                service: Self.v1Name, method: "ServerReflectionInfo",
                request: Grpc_Reflection_V1_ServerReflectionRequest.self,
                response: Grpc_Reflection_V1_ServerReflectionResponse.self, access: .public
            ) { requests, responses, _ in
                for try await request in requests {
                    try await responses.write(answer(request))
                }
            },
            .bidiStreaming(
                service: Self.v1alphaName, method: "ServerReflectionInfo",
                request: Grpc_Reflection_V1alpha_ServerReflectionRequest.self,
                response: Grpc_Reflection_V1alpha_ServerReflectionResponse.self, access: .public
            ) { requests, responses, _ in
                for try await request in requests {
                    let v1 = try Grpc_Reflection_V1_ServerReflectionRequest(serializedBytes: try request.serializedBytes() as [UInt8])
                    let answer = answer(v1)
                    try await responses.write(
                        Grpc_Reflection_V1alpha_ServerReflectionResponse(serializedBytes: try answer.serializedBytes() as [UInt8]))
                }
            },
        ]
    }

    /// One response per request; lookups that fail answer with an
    /// `error_response` (the stream goes on), as the protocol asks.
    func answer(_ request: Grpc_Reflection_V1_ServerReflectionRequest) -> Grpc_Reflection_V1_ServerReflectionResponse {
        var response = Grpc_Reflection_V1_ServerReflectionResponse()
        response.validHost = request.host
        response.originalRequest = request
        switch request.messageRequest {
        case .listServices:
            response.listServicesResponse.service = services.sorted().map { name in
                var service = Grpc_Reflection_V1_ServiceResponse()
                service.name = name
                return service
            }
        case .fileByFilename(let name):
            if let files = index.fileWithDependencies(name) {
                response.fileDescriptorResponse.fileDescriptorProto = files
            } else {
                response.errorResponse = Self.error(.notFound, "no file named \(name)")
            }
        case .fileContainingSymbol(let symbol):
            if let file = index.file(declaring: symbol), let files = index.fileWithDependencies(file) {
                response.fileDescriptorResponse.fileDescriptorProto = files
            } else {
                response.errorResponse = Self.error(.notFound, "no symbol named \(symbol)")
            }
        case .fileContainingExtension(let extensionRequest):
            // proto3 files declare no extensions.
            response.errorResponse = Self.error(
                .notFound,
                "no extension \(extensionRequest.extensionNumber) of \(extensionRequest.containingType)")
        case .allExtensionNumbersOfType(let type):
            if index.file(declaring: type) != nil {
                response.allExtensionNumbersResponse.baseTypeName = type
            } else {
                response.errorResponse = Self.error(.notFound, "no type named \(type)")
            }
        case nil:
            response.errorResponse = Self.error(.invalidArgument, "the request names no message_request")
        }
        return response
    }

    static func error(_ code: RPCError.Code, _ message: String) -> Grpc_Reflection_V1_ErrorResponse {
        var error = Grpc_Reflection_V1_ErrorResponse()
        error.errorCode = Int32(code.rawValue)
        error.errorMessage = message
        return error
    }
}

/// The files of a descriptor set by name, with the file declaring each
/// fully qualified symbol (messages and enums, nested ones too, services and
/// their methods).
struct DescriptorIndex: Sendable {
    private var files: [String: (bytes: Data, dependencies: [String])] = [:]
    private var symbols: [String: String] = [:]

    /// The files of the set embedded in the binary (proto/weft.protoset):
    /// reflection's index and the REST bridge's JSON tables both read them.
    static func embeddedFiles() throws -> [Google_Protobuf_FileDescriptorProto] {
        guard let data = Data(base64Encoded: DescriptorSet.base64) else {
            throw WeftStartupError("the embedded descriptor set is not valid base64")
        }
        return try Google_Protobuf_FileDescriptorSet(serializedBytes: data).file
    }

    init(files descriptors: [Google_Protobuf_FileDescriptorProto]) throws {
        for file in descriptors {
            files[file.name] = (try file.serializedBytes(), file.dependency)
            let prefix = file.package.isEmpty ? "" : file.package + "."
            for message in file.messageType { addMessage(message, prefix: prefix, file: file.name) }
            for enumType in file.enumType { symbols[prefix + enumType.name] = file.name }
            for service in file.service {
                symbols[prefix + service.name] = file.name
                for method in service.method { symbols[prefix + service.name + "." + method.name] = file.name }
            }
        }
    }

    private mutating func addMessage(_ message: Google_Protobuf_DescriptorProto, prefix: String, file: String) {
        let name = prefix + message.name
        symbols[name] = file
        for nested in message.nestedType { addMessage(nested, prefix: name + ".", file: file) }
        for enumType in message.enumType { symbols[name + "." + enumType.name] = file }
    }

    var fileNames: [String] { files.keys.sorted() }

    func file(declaring symbol: String) -> String? {
        symbols[symbol.hasPrefix(".") ? String(symbol.dropFirst()) : symbol]
    }

    /// The file and every file it imports, transitively, each once, the file
    /// asked for first (clients may cache; sending all of them every time is
    /// allowed and keeps the server stateless).
    func fileWithDependencies(_ name: String) -> [Data]? {
        guard files[name] != nil else { return nil }
        var seen: Set<String> = []
        var order: [Data] = []
        var pending = [name]
        while let next = pending.popLast() {
            guard seen.insert(next).inserted, let file = files[next] else { continue }
            order.append(file.bytes)
            pending.append(contentsOf: file.dependencies.reversed())
        }
        return order
    }
}
