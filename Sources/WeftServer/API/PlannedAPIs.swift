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
        let n = "weft.v1.SubscriptionService"
        let i = "weft.v1.IntegrationService"
        let a = "weft.v1.AnalyticsService"
        return [
            StaticService(handlers: [
                planned(n, "CreateSubscription", Weft_V1_CreateSubscriptionRequest.self, Weft_V1_Subscription.self,
                        step: later, rest: [.post("/workflows/{workflowId}/subscriptions", status: 201)]),
                planned(n, "ListSubscriptions", Weft_V1_ListSubscriptionsRequest.self, Weft_V1_ListSubscriptionsResponse.self,
                        step: later, rest: [.get("/workflows/{workflowId}/subscriptions")]),
                planned(n, "DeleteSubscription", Weft_V1_DeleteSubscriptionRequest.self, Weft_V1_DeleteSubscriptionResponse.self,
                        step: later, rest: [.delete("/workflows/{workflowId}/subscriptions/{subscriptionId}")]),
            ]),
            StaticService(handlers: [
                planned(i, "CreateIntegration", Weft_V1_CreateIntegrationRequest.self, Weft_V1_Integration.self,
                        step: later, rest: [.post("/workflows/{workflowId}/integrations", status: 201)]),
                planned(i, "ListIntegrations", Weft_V1_ListIntegrationsRequest.self, Weft_V1_ListIntegrationsResponse.self,
                        step: later, rest: [.get("/workflows/{workflowId}/integrations")]),
                planned(i, "UpdateIntegration", Weft_V1_UpdateIntegrationRequest.self, Weft_V1_Integration.self,
                        step: later, rest: [.put("/workflows/{workflowId}/integrations/{integrationId}")]),
                planned(i, "DeleteIntegration", Weft_V1_DeleteIntegrationRequest.self, Weft_V1_DeleteIntegrationResponse.self,
                        step: later, rest: [.delete("/workflows/{workflowId}/integrations/{integrationId}")]),
            ]),
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
