import Foundation
public import Logging
import Synchronization
import WeftObservability
import WeftRPC
public import WeftStore

/// Appends audit events without making the call that caused them wait: they
/// are buffered and written in batches (one transaction per batch, within
/// about 100 ms). Readers call `flush()` first, so a query sees every event
/// of calls that finished before it. The server flushes at shutdown.
public final class AuditLog: Sendable {
    let store: any AuditStore
    private let logger: Logger
    private let pending = Mutex<(events: [AuditEvent], flushing: Bool)>(([], false))
    /// A write in progress; `flush()` waits for it.
    private let writer = Mutex<Task<Void, Never>?>(nil)

    public init(store: any AuditStore, logger: Logger) {
        self.store = store
        self.logger = logger
    }

    public func append(_ event: AuditEvent) {
        let start = pending.withLock { state -> Bool in
            state.events.append(event)
            guard !state.flushing else { return false }
            state.flushing = true
            return true
        }
        if start {
            let task = Task {
                try? await Task.sleep(for: .milliseconds(100))
                await self.write()
            }
            writer.withLock { $0 = task }
        }
    }

    /// Writes what is buffered now (and waits for a write in progress).
    public func flush() async {
        if let running = writer.withLock({ $0 }) { await running.value }
        await write()
    }

    private func write() async {
        let batch = pending.withLock { state -> [AuditEvent] in
            defer {
                state.events.removeAll()
                state.flushing = false
            }
            return state.events
        }
        guard !batch.isEmpty else { return }
        do {
            try await store.appendAudit(batch)
        } catch {
            // Never silently: the operator must know the trail has a gap.
            logger.error("audit: \(batch.count) events could not be written: \(error)")
        }
    }
}

/// The interceptor that records every state-changing call (and login) in
/// the audit log when it ends: who, the organization and resource the
/// handler noted, the method, the outcome, the client address, the trace.
final class AuditRecorder: ServerInterceptor, Sendable {
    let log: AuditLog

    init(log: AuditLog) { self.log = log }

    /// Public methods (health, reflection) are not seen, so their calls
    /// cost nothing here; login and register record their own events.
    var seesPublicMethods: Bool { false }
    var wantsCompletion: Bool { true }
    func wantsCompletion(of call: CallHead) -> Bool { call.audit != nil }

    /// Reads are not recorded; everything that changes state is (a method
    /// named by what it does: Create, Update, Delete, Execute, ...).
    func admit(_ call: inout CallHead) throws {
        guard !call.descriptor.isReadOnly, call.descriptor.service.hasPrefix("weft.v1.") else { return }
        call.audit = CallAudit()
    }

    func completed(_ call: CallHead, code: RPCError.Code) {
        guard let audit = call.audit else { return }
        log.append(Self.event(
            audit.current, actor: call.principal?.id ?? "anonymous", action: call.descriptor.spanName, outcome: code,
            peer: call.peer, traceparent: call.metadata[string: "traceparent"], transport: call.transport))
    }

    /// The event of one call: what the handler noted, and how the call came
    /// and ended (the interceptor's, and the self-audited public calls').
    static func event(
        _ notes: CallAudit.Notes, actor: String, action: String, outcome: RPCError.Code, peer: String, traceparent: String?,
        transport: CallHead.Transport?
    ) -> AuditEvent {
        var detail: [String: JSONValue] = [:]
        for (key, value) in notes.detail { detail[key] = .string(value) }
        detail["transport"] = .string(transport?.rawValue ?? "")
        return AuditEvent(
            at: Date(), actorId: notes.actorId ?? actor, orgId: notes.orgId, action: action,
            resourceType: notes.resourceType, resourceId: notes.resourceId, outcome: outcome.canonicalName,
            clientAddress: clientAddress(peer), traceId: WeftTracing.traceId(ofTraceparent: traceparent) ?? "",
            detail: .object(detail))
    }

    /// The client's address as "ip:port" ("[ip]:port" for IPv6), from the
    /// transport's peer description ("[IPv4]127.0.0.1/127.0.0.1:5000").
    static func clientAddress(_ peer: String) -> String {
        guard let slash = peer.lastIndex(of: "/") else { return peer }
        let rest = peer[peer.index(after: slash)...]
        if peer.hasPrefix("[IPv6]"), let colon = rest.lastIndex(of: ":") {
            return "[\(rest[..<colon])]\(rest[colon...])"
        }
        return String(rest)
    }
}
