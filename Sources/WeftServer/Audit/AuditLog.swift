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
        let notes = audit.current
        var detail: [String: JSONValue] = [:]
        for (key, value) in notes.detail { detail[key] = .string(value) }
        detail["transport"] = .string(call.transport.rawValue)
        log.append(AuditEvent(
            at: Date(), actorId: notes.actorId ?? call.principal?.id ?? "anonymous", orgId: notes.orgId,
            action: "\(call.descriptor.service)/\(call.descriptor.method)", resourceType: notes.resourceType,
            resourceId: notes.resourceId, outcome: Self.name(code), clientAddress: Self.clientAddress(call.peer),
            traceId: Self.traceId(call.metadata[string: "traceparent"]), detail: .object(detail)))
    }

    /// The trace id of a valid W3C `traceparent` ("00-<32 hex>-<16 hex>-<2
    /// hex>", lower-case, ids not all zero, version not ff); "" otherwise.
    static func traceId(_ traceparent: String?) -> String {
        guard let parts = traceparent?.split(separator: "-", omittingEmptySubsequences: false), parts.count >= 4,
            parts[0].utf8.count == 2, parts[0] != "ff", parts[1].utf8.count == 32, parts[2].utf8.count == 16,
            parts[3].utf8.count == 2, parts[0] != "00" || parts.count == 4,
            parts.prefix(4).allSatisfy({ $0.utf8.allSatisfy { (0x30...0x39).contains($0) || (0x61...0x66).contains($0) } }),
            parts[1].contains(where: { $0 != "0" }), parts[2].contains(where: { $0 != "0" })
        else { return "" }
        return String(parts[1])
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

    static func name(_ code: RPCError.Code) -> String {
        [
            0: "OK", 1: "CANCELLED", 2: "UNKNOWN", 3: "INVALID_ARGUMENT", 4: "DEADLINE_EXCEEDED", 5: "NOT_FOUND",
            6: "ALREADY_EXISTS", 7: "PERMISSION_DENIED", 8: "RESOURCE_EXHAUSTED", 9: "FAILED_PRECONDITION", 10: "ABORTED",
            11: "OUT_OF_RANGE", 12: "UNIMPLEMENTED", 13: "INTERNAL", 14: "UNAVAILABLE", 15: "DATA_LOSS", 16: "UNAUTHENTICATED",
        ][code.rawValue] ?? "CODE_\(code.rawValue)"
    }
}
