/// Finds the handler for a `:path`. Built once at start-up, then read-only,
/// so lookups take no lock.
public struct RPCRouter: Sendable {
    /// Methods keyed by the bytes of their path, so the transport looks a
    /// call up without building a String.
    private var handlersByPath: [PathKey: RegisteredMethod] = [:]

    /// Path bytes as a dictionary key: hashed in one `combine(bytes:)` call
    /// and compared with memcmp, where `[UInt8]` would go byte by byte.
    struct PathKey: Hashable, Sendable {
        let bytes: ArraySlice<UInt8>

        func hash(into hasher: inout Hasher) {
            bytes.withUnsafeBytes { hasher.combine(bytes: $0) }
        }

        static func == (lhs: PathKey, rhs: PathKey) -> Bool { bytesEqual(lhs.bytes, rhs.bytes) }
    }

    public private(set) var serviceNames: [String] = []

    /// A class so a call holds one reference to all of it.
    final class RegisteredMethod: Sendable {
        let metrics: RPCMethodMetrics
        // The handler's parts a call reads, so that the call path never
        // copies the whole `RPCHandler` (a struct of strings, routes and closures).
        let descriptor: RPCMethodDescriptor
        /// `descriptor.path` as bytes (a connection's last-method check).
        let pathBytes: [UInt8]
        let access: RPCAccess
        let body: RPCHandler.Body
        let isSingleRequest: Bool
        /// The handler may answer on the event loop (inline, or inline-or-task).
        let answersInline: Bool
        /// Set when the body is `contextFreeInlineOrTask` (a call makes its
        /// `ServerContext` only if the task runs): its fast path, held apart,
        /// since calling it through the body enum bound (retained) both of
        /// its closures on every call.
        let contextFreeFast: (@Sendable (UnsafeRawBufferPointer) throws -> GRPCFramedMessage?)?

        init(handler: RPCHandler, metrics: RPCMethodMetrics) {
            self.metrics = metrics
            self.descriptor = handler.descriptor
            self.pathBytes = Array(handler.descriptor.path.utf8)
            self.access = handler.access
            self.body = handler.body
            self.isSingleRequest = handler.descriptor.kind.isSingleRequest
            if case .task = handler.body { answersInline = false } else { answersInline = true }
            if case .contextFreeInlineOrTask(let fast, _) = handler.body { contextFreeFast = fast } else { contextFreeFast = nil }
        }
    }

    public init() {}

    public mutating func register(_ service: any RPCService, metrics: RPCMetrics) {
        for handler in service.handlers {
            let descriptor = handler.descriptor
            let key = PathKey(bytes: Array(descriptor.path.utf8)[...])
            precondition(handlersByPath[key] == nil, "\(descriptor.path) registered twice")
            handlersByPath[key] = RegisteredMethod(handler: handler, metrics: metrics.method(descriptor))
            if !serviceNames.contains(descriptor.service) { serviceNames.append(descriptor.service) }
        }
    }

    func lookup(path: ArraySlice<UInt8>) -> RegisteredMethod? { handlersByPath[PathKey(bytes: path)] }

    /// Whether `path` names a registered service (for UNIMPLEMENTED messages
    /// and for telling gRPC paths from REST paths).
    public func hasService(forPath path: String) -> Bool {
        guard path.hasPrefix("/"), let slash = path.dropFirst().firstIndex(of: "/") else { return false }
        let service = path[path.index(after: path.startIndex)..<slash]
        return serviceNames.contains { $0 == service }
    }
}
