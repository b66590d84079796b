import Synchronization
public import WeftProto
public import WeftRPC

/// Serving status per service name ("" is the whole server), with
/// subscribers for Watch. During a drain every status is NOT_SERVING and
/// stays so.
public final class HealthStatusStore: Sendable {
    public typealias Status = Grpc_Health_V1_HealthCheckResponse.ServingStatus

    private struct State {
        var statuses: [String: Status] = [:]
        var watchers: [Int: (service: String, continuation: AsyncStream<Status>.Continuation)] = [:]
        var nextWatcher = 0
        var draining = false
    }

    private let state = Mutex(State())
    /// The whole server's status ("") mirrored outside the lock as its raw
    /// value + 1 (0: not set), for the check every probe polls.
    private let serverStatus = Atomic<Int>(0)

    public init() {}

    public func set(_ service: String, _ status: Status) {
        state.withLock { state in
            guard !state.draining else { return }
            update(&state, service, status)
        }
    }

    public func status(of service: String) -> Status? {
        state.withLock { $0.statuses[service] }
    }

    /// The answer to a check of `service`, serialized once per status
    /// (a check is polled by every load balancer and probe).
    func checkResponse(_ service: String) throws -> PreparedResponse<Grpc_Health_V1_HealthCheckResponse> {
        let known: Status?
        if service.isEmpty {
            let raw = serverStatus.load(ordering: .acquiring)
            known = raw == 0 ? nil : Status(rawValue: raw - 1)
        } else {
            known = status(of: service)
        }
        guard let status = known else {
            throw RPCError(code: .notFound, message: "unknown service \(service)")
        }
        switch status {
        case .serving: return Self.serving
        case .notServing: return Self.notServing
        default: return try PreparedResponse(.with { $0.status = status })
        }
    }

    private static let serving = try! PreparedResponse(Grpc_Health_V1_HealthCheckResponse.with { $0.status = .serving })
    private static let notServing = try! PreparedResponse(
        Grpc_Health_V1_HealthCheckResponse.with { $0.status = .notServing })

    public var isDraining: Bool { state.withLock { $0.draining } }

    public var all: [String: Status] { state.withLock { $0.statuses } }

    /// Everything NOT_SERVING from now on; watchers see it, then their streams end.
    public func enterDrain() {
        let watchers = state.withLock { state in
            state.draining = true
            for service in state.statuses.keys { update(&state, service, .notServing) }
            defer { state.watchers.removeAll() }
            return state.watchers.values.map(\.continuation)
        }
        // Outside the lock: finish() runs onTermination, which takes it.
        for continuation in watchers { continuation.finish() }
    }

    /// The current status (SERVICE_UNKNOWN if unknown) and then every change.
    public func watch(_ service: String) -> AsyncStream<Status> {
        let (stream, continuation) = AsyncStream<Status>.makeStream(bufferingPolicy: .bufferingNewest(8))
        let registered = state.withLock { state -> Bool in
            continuation.yield(state.statuses[service] ?? .serviceUnknown)
            guard !state.draining else { return false }
            let id = state.nextWatcher
            state.nextWatcher += 1
            state.watchers[id] = (service, continuation)
            // Runs when the stream ends (client gone or drain), never under the lock.
            continuation.onTermination = { [weak self] _ in
                _ = self?.state.withLock { $0.watchers.removeValue(forKey: id) }
            }
            return true
        }
        if !registered { continuation.finish() }
        return stream
    }

    private func update(_ state: inout State, _ service: String, _ status: Status) {
        guard state.statuses[service] != status else { return }
        state.statuses[service] = status
        if service.isEmpty { serverStatus.store(status.rawValue + 1, ordering: .releasing) }
        for (_, watcher) in state.watchers where watcher.service == service {
            watcher.continuation.yield(status)
        }
    }
}

/// `grpc.health.v1.Health`, wire-compatible with the standard service.
public struct HealthService: RPCService {
    public let store: HealthStatusStore
    static let name = "grpc.health.v1.Health"

    public init(store: HealthStatusStore) { self.store = store }

    public var handlers: [RPCHandler] {
        [
            // On the event loop: the server's status read from an atomic (a
            // named service's under the store's lock) and a response
            // serialized once per status (the task fallback is never taken);
            // it reads only the request, so the call makes no ServerContext.
            .unary(
                service: Self.name, method: "Check",
                request: Grpc_Health_V1_HealthCheckRequest.self, response: Grpc_Health_V1_HealthCheckResponse.self,
                access: .public,
                preparedFromRequest: { [store] request in try store.checkResponse(request.service) }
            ) { [store] request, _ in
                try store.checkResponse(request.service).message
            },
            .serverStreaming(
                service: Self.name, method: "Watch",
                request: Grpc_Health_V1_HealthCheckRequest.self, response: Grpc_Health_V1_HealthCheckResponse.self,
                access: .public
            ) { [store] request, responses, _ in
                for await status in store.watch(request.service) {
                    try await responses.write(.with { $0.status = status })
                }
                try Task.checkCancellation()
                if store.isDraining {
                    throw RPCError(code: .unavailable, message: "server is shutting down")
                }
            },
        ]
    }
}
