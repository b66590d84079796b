import SwiftProtobuf
import WeftProto
import WeftRPC

/// The services whose behaviour arrives in later steps. Their methods, messages
/// and REST routes are final (clients can be generated once); calls are
/// authenticated and then answer UNIMPLEMENTED (HTTP 501) naming the step.
struct PlannedAPIs {
    let deps: APIDependencies

    private func planned<Request: SwiftProtobuf.Message, Response: SwiftProtobuf.Message>(
        _ service: String, _ method: String, _ request: Request.Type, _ response: Response.Type, step: String,
        rest: [RESTRoute]
    ) -> RPCHandler {
        .unary(service: service, method: method, rest: rest) { (_: Request, context) -> Response in
                        throw APIError.notYet("\(service)/\(method)", step: step)
        }
    }

    private func plannedStream<Request: SwiftProtobuf.Message, Response: SwiftProtobuf.Message>(
        _ service: String, _ method: String, _ request: Request.Type, _ response: Response.Type, step: String,
        rest: [RESTRoute]
    ) -> RPCHandler {
        .serverStreaming(service: service, method: method, rest: rest) { (_: Request, _: ResponseStream<Response>, context) in
                        throw APIError.notYet("\(service)/\(method)", step: step)
        }
    }

    var services: [any RPCService] {
        let later = "a later step"
        let a = "weft.v1.AnalyticsService"
        return [
            StaticService(handlers: [
                planned(a, "GetWorkflowStats", Weft_V1_GetWorkflowStatsRequest.self, Weft_V1_WorkflowStats.self,
                        step: later, rest: [.get("/workflows/{workflowId}/stats")]),
                planned(a, "GetExecutionTrends", Weft_V1_GetExecutionTrendsRequest.self, Weft_V1_ExecutionTrends.self,
                        step: later, rest: [.get("/analytics/workflow-executions")]),
            ]),
        ]
    }
}

/// A service given as a list of handlers.
struct StaticService: RPCService {
    let handlers: [RPCHandler]
}
