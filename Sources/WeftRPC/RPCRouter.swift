/// Finds the handler for a `:path`. Built once at start-up, then read-only,
/// so lookups take no lock.
public struct RPCRouter: Sendable {
    private var handlers: [String: RegisteredMethod] = [:]
    public private(set) var serviceNames: [String] = []

    /// A class so a call holds one reference to all of it.
    final class RegisteredMethod: Sendable {
        let handler: RPCHandler
        let metrics: RPCMethodMetrics
        let isSingleRequest: Bool

        init(handler: RPCHandler, metrics: RPCMethodMetrics) {
            self.handler = handler
            self.metrics = metrics
            self.isSingleRequest = handler.descriptor.kind.isSingleRequest
        }
    }

    public init() {}

    public mutating func register(_ service: any RPCService, metrics: RPCMetrics) {
        for handler in service.handlers {
            let descriptor = handler.descriptor
            precondition(handlers[descriptor.path] == nil, "\(descriptor.path) registered twice")
            handlers[descriptor.path] = RegisteredMethod(handler: handler, metrics: metrics.method(descriptor))
            if !serviceNames.contains(descriptor.service) { serviceNames.append(descriptor.service) }
        }
    }

    func lookup(path: String) -> RegisteredMethod? { handlers[path] }

    /// Whether `path` names a registered service (for UNIMPLEMENTED messages
    /// and for telling gRPC paths from REST paths).
    public func hasService(forPath path: String) -> Bool {
        guard path.hasPrefix("/"), let slash = path.dropFirst().firstIndex(of: "/") else { return false }
        let service = path[path.index(after: path.startIndex)..<slash]
        return serviceNames.contains { $0 == service }
    }

    public var paths: [String] { handlers.keys.sorted() }
}
