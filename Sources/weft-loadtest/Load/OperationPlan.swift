import Foundation

/// A scenario's operations with their templates filled in from the setup:
/// one request variant per tenant, picked in turn, and a weighted order in
/// which the operations are sent.
struct OperationPlan: Sendable {
    struct Compiled: Sendable {
        let name: String
        let kind: Connector.Kind
        /// One per tenant: a finished request, or (when it holds `{{seq}}`)
        /// a template filled per call.
        let variants: [Variant]
    }

    enum Variant: Sendable {
        case fixed(WireRequest)
        case perCall(rpc: String?, method: String, path: String, body: String, headers: [(String, String)], isGRPC: Bool)

        func make(seq: Int) throws -> WireRequest {
            switch self {
            case .fixed(let wire): return wire
            case .perCall(let rpc, let method, let path, let body, let headers, let isGRPC):
                let n = String(seq)
                let filledPath = path.replacingOccurrences(of: "{{seq}}", with: n)
                let filledBody = body.replacingOccurrences(of: "{{seq}}", with: n)
                let bytes: [UInt8] =
                    if let rpc { GRPCFrame.wrap(try RPCCatalog.encode(rpc, json: filledBody)) } else { Array(filledBody.utf8) }
                return WireRequest(
                    method: method, path: filledPath, headers: headers, body: bytes, isGRPC: isGRPC, wantsBody: false)
            }
        }
    }

    let operations: [Compiled]
    /// Operation indexes in sending order (smooth weighted round robin):
    /// call `seq` sends `order[seq % order.count]`.
    let order: [Int]

    var kinds: Set<Connector.Kind> { Set(operations.map(\.kind)) }

    init(_ scenario: Scenario, setup: SetupResult, target: Target, run: String) throws {
        var compiled: [Compiled] = []
        for operation in scenario.operations {
            var variants: [Variant] = []
            for tenant in setup.tenants {
                variants.append(try Self.variant(operation, tenant: tenant, setup: setup, target: target, run: run))
            }
            let kind: Connector.Kind =
                operation.call == .grpc || target.restProtocol == .h2 || operation.anonymous == true ? .h2 : .h1
            compiled.append(Compiled(name: operation.name, kind: kind, variants: variants))
        }
        operations = compiled
        order = Self.weightedOrder(scenario.operations.map { $0.weight ?? 1 })
    }

    /// Fills `{{workflow:NAME}}`, `{{trigger:NAME}}`, `{{sink}}`, `{{run}}`.
    static func fill(_ text: String, tenant: Tenant, setup: SetupResult, run: String) throws -> String {
        var out = text.replacingOccurrences(of: "{{run}}", with: run)
        out = out.replacingOccurrences(of: "{{sink}}", with: setup.sinkURL ?? "http://127.0.0.1:9/no-sink")
        for (prefix, names) in [("workflow", tenant.workflows), ("trigger", tenant.triggers)] {
            while let start = out.range(of: "{{\(prefix):") {
                guard let end = out.range(of: "}}", range: start.upperBound..<out.endIndex) else { break }
                let name = String(out[start.upperBound..<end.lowerBound])
                guard let id = names[name] else {
                    throw HarnessError.usage("{{\(prefix):\(name)}}: the setup creates no \(prefix) named \(name)")
                }
                out.replaceSubrange(start.lowerBound..<end.upperBound, with: id)
            }
        }
        return out
    }

    private static func variant(
        _ operation: Scenario.Operation, tenant: Tenant, setup: SetupResult, target: Target, run: String
    ) throws -> Variant {
        let credential = operation.anonymous == true ? nil : tenant.credential
        var extra: [(String, String)] = []
        for (name, value) in (operation.headers ?? [:]).sorted(by: { $0.key < $1.key }) {
            extra.append((name.lowercased(), try fill(value, tenant: tenant, setup: setup, run: run)))
        }
        switch operation.call {
        case .grpc:
            let rpc = operation.rpc!
            let json = try fill((operation.request ?? .object([])).jsonText, tenant: tenant, setup: setup, run: run)
            let headers = CallHeaders.grpc(credential: credential, extra: extra)
            let path = "/" + rpc
            if json.contains("{{seq}}") {
                return .perCall(rpc: rpc, method: "POST", path: path, body: json, headers: headers, isGRPC: true)
            }
            let body = GRPCFrame.wrap(try RPCCatalog.encode(rpc, json: json))
            return .fixed(WireRequest(method: "POST", path: path, headers: headers, body: body, isGRPC: true, wantsBody: false))
        case .rest:
            let path = try fill(operation.path!, tenant: tenant, setup: setup, run: run)
            let body = try operation.body.map { try fill($0.jsonText, tenant: tenant, setup: setup, run: run) } ?? ""
            var headers =
                operation.anonymous == true
                ? [("user-agent", "weft-loadtest")] : CallHeaders.rest(credential: credential, hasBody: !body.isEmpty)
            headers += extra
            let method = operation.method!.uppercased()
            if path.contains("{{seq}}") || body.contains("{{seq}}") {
                return .perCall(rpc: nil, method: method, path: path, body: body, headers: headers, isGRPC: false)
            }
            return .fixed(
                WireRequest(method: method, path: path, headers: headers, body: Array(body.utf8), isGRPC: false, wantsBody: false))
        }
    }

    /// Smooth weighted round robin (as nginx balances upstreams): every
    /// operation gets its share, interleaved, over a cycle of ~100 calls.
    static func weightedOrder(_ weights: [Double]) -> [Int] {
        guard weights.count > 1 else { return [0] }
        let total = weights.reduce(0, +)
        let slots = weights.map { max(1, Int(($0 / total * 100).rounded())) }
        var current = [Int](repeating: 0, count: slots.count)
        let sum = slots.reduce(0, +)
        var order: [Int] = []
        for _ in 0..<sum {
            for i in slots.indices { current[i] += slots[i] }
            let best = current.indices.max { current[$0] < current[$1] }!
            current[best] -= sum
            order.append(best)
        }
        return order
    }
}
