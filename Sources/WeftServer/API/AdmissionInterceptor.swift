import WeftEngine
import WeftRPC

/// Admission control at the door for the callers that start executions:
/// ExecuteWorkflow and PublishEvent (gRPC, REST, in process) are refused
/// with RESOURCE_EXHAUSTED / HTTP 429 and `retry-after` while the engine is
/// past its knee (`Engine.admit`, docs/OVERLOAD.md).
///
/// Here, in the interceptor chain, because it runs on the connection's
/// event loop before the request is decoded and before a task is made for
/// the handler: a closed-loop flood that ignores `retry-after` (h2load at
/// 512 calls in flight) then costs an event-loop hop per refusal, not a
/// task on the executor the engine and its workers run on. Checked in the
/// handler instead, such a flood starved the engine (11 executions/s
/// completed at a knee of 1,500/s). The price: while refusing, a malformed
/// or unknown-workflow execute hears 429 rather than its 400 or 404.
///
/// Webhooks (`POST /hooks/{id}`, a public method) are checked in their
/// handler: public calls skip the chain, which keeps Health/Check's path
/// free of it.
struct AdmissionInterceptor: ServerInterceptor {
    let engine: Engine

    var seesPublicMethods: Bool { false }

    func admit(_ call: inout CallHead) throws {
        let descriptor = call.descriptor
        // Reads are never refused; most calls end here on a flag.
        guard !descriptor.isReadOnly else { return }
        let source: String
        if descriptor.method == "ExecuteWorkflow" && descriptor.service == ExecutionAPI.name {
            source = "api"
        } else if descriptor.method == "PublishEvent" && descriptor.service == EventAPI.name {
            source = "event"
        } else {
            return
        }
        if let refusal = engine.admit(source: source) {
            throw RPCError.overloaded(refusal.description, retryAfter: refusal.retryAfter)
        }
    }
}
