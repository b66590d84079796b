import SwiftProtobuf
import WeftProto

/// The gRPC methods a scenario may call, with their request message types
/// (a scenario writes the request in proto3 JSON; the harness encodes it).
enum RPCCatalog {
    private static let types: [String: any Message.Type] = [
        "grpc.health.v1.Health/Check": Grpc_Health_V1_HealthCheckRequest.self,
        "weft.v1.WorkflowService/CreateWorkflow": Weft_V1_CreateWorkflowRequest.self,
        "weft.v1.WorkflowService/GetWorkflow": Weft_V1_GetWorkflowRequest.self,
        "weft.v1.WorkflowService/ListWorkflows": Weft_V1_ListWorkflowsRequest.self,
        "weft.v1.WorkflowService/SearchWorkflows": Weft_V1_SearchWorkflowsRequest.self,
        "weft.v1.WorkflowService/UpdateWorkflow": Weft_V1_UpdateWorkflowRequest.self,
        "weft.v1.ExecutionService/ExecuteWorkflow": Weft_V1_ExecuteWorkflowRequest.self,
        "weft.v1.ExecutionService/GetExecution": Weft_V1_GetExecutionRequest.self,
        "weft.v1.ExecutionService/ListExecutions": Weft_V1_ListExecutionsRequest.self,
        "weft.v1.ExecutionService/CancelExecution": Weft_V1_CancelExecutionRequest.self,
        "weft.v1.TriggerService/DeliverWebhook": Weft_V1_WebhookDelivery.self,
        "weft.v1.AnalyticsService/GetWorkflowStats": Weft_V1_GetWorkflowStatsRequest.self,
        "weft.v1.UserService/GetCurrentUser": Weft_V1_GetCurrentUserRequest.self,
    ]

    static var names: [String] { types.keys.sorted() }

    static func requestType(_ rpc: String) -> (any Message.Type)? { types[rpc] }

    /// The request's wire bytes from its proto3 JSON.
    static func encode(_ rpc: String, json: String) throws -> [UInt8] {
        guard let type = types[rpc] else { throw HarnessError.usage("unknown rpc \(rpc)") }
        do {
            var options = JSONDecodingOptions()
            options.ignoreUnknownFields = false
            let message = try type.init(jsonString: json, options: options)
            return try message.serializedBytes()
        } catch {
            throw HarnessError.usage("the request of \(rpc) is not a valid \(type.protoMessageName) in proto3 JSON: \(error) (\(json.prefix(200)))")
        }
    }
}
