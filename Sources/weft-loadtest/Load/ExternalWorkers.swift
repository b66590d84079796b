import Foundation
import Synchronization
import SwiftProtobuf
import WeftProto

/// The harness as N external workers: each long-polls the queue
/// (PollTask), holds the task for the simulated work time, and completes
/// it (CompleteTask), over one shared HTTP/2 connection per tenant.
final class ExternalWorkers: Sendable {
    let clients: [RPCClient]
    let tenants: [Tenant]
    let spec: Scenario.Workers
    private let counts = Mutex((polls: 0, tasks: 0, errors: 0, lastError: String?.none))

    init(clients: [RPCClient], tenants: [Tenant], spec: Scenario.Workers) {
        self.clients = clients
        self.tenants = tenants
        self.spec = spec
    }

    var completed: (polls: Int, tasks: Int, errors: Int, lastError: String?) { counts.withLock { $0 } }

    /// Runs until cancelled.
    func run() async {
        await withTaskGroup(of: Void.self) { group in
            for index in 0..<spec.count {
                let tenant = index % tenants.count
                group.addTask { await self.loop(worker: index, client: self.clients[tenant], credential: self.tenants[tenant].credential) }
            }
        }
    }

    private func loop(worker: Int, client: RPCClient, credential: String?) async {
        while !Task.isCancelled {
            var poll = Weft_V1_PollTaskRequest()
            poll.queue = spec.queue
            poll.workerID = "weft-loadtest-\(worker)"
            poll.wait = Google_Protobuf_Duration(seconds: 2)
            do {
                let response = try await client.call(
                    "/weft.v1.WorkerService/PollTask", poll, as: Weft_V1_PollTaskResponse.self, credential: .some(credential))
                counts.withLock { $0.polls += 1 }
                guard response.hasTask else { continue }
                if let work = spec.workSeconds, work > 0 { try? await Task.sleep(for: .seconds(work)) }
                var complete = Weft_V1_CompleteTaskRequest()
                complete.leaseToken = response.task.leaseToken
                _ = try await client.call(
                    "/weft.v1.WorkerService/CompleteTask", complete, as: Weft_V1_CompleteTaskResponse.self,
                    credential: .some(credential))
                counts.withLock { $0.tasks += 1 }
            } catch {
                counts.withLock {
                    $0.errors += 1
                    $0.lastError = "\(error)"
                }
                try? await Task.sleep(for: .milliseconds(100))
            }
        }
    }
}
