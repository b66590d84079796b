import Foundation
import Yams

/// A scenario file (`loadtest/scenarios/*.yaml`, or JSON): what to set up,
/// what traffic to send and how, and what to collect afterwards.
struct Scenario: Codable, Sendable {
    var name: String
    var description: String?
    var load: LoadShape
    var setup: Setup?
    /// The harness acting as external workers for the run.
    var workers: Workers?
    /// The mix of calls; each call picks one by weight.
    var operations: [Operation]
    /// Wait for the executions the run started (the setup's workflows) and
    /// report end-to-end figures from their stored timestamps.
    var waitForExecutions: Bool?
    /// A soak: sample the server's RSS, open files and queue depth through
    /// the run and report their growth.
    var soak: Bool?
    /// The file it came from (for messages; not in the file).
    var file: String?

    private enum CodingKeys: String, CodingKey {
        case name, description, load, setup, workers, operations, waitForExecutions, soak
    }

    struct LoadShape: Codable, Sendable {
        /// `open` (a target rate; latency from the intended send time) or
        /// `closed` (a fixed number of calls in flight).
        var mode: Mode
        /// Open loop: calls per second (constant).
        var rate: Double?
        /// Open loop: one rate per step, each `duration` seconds long.
        var steps: [Double]?
        /// Open loop: a linear ramp over `duration`.
        var ramp: Ramp?
        /// Closed loop: calls in flight.
        var concurrency: Int?
        /// Seconds of load (per step), after the warm-up.
        var duration: Double?
        /// Stop after this many calls (instead of `duration`).
        var count: Int?
        /// Seconds of load at the start that are not counted.
        var warmup: Double?
        var connections: Int?
        /// Concurrent streams per HTTP/2 connection.
        var streams: Int?

        enum Mode: String, Codable, Sendable { case open, closed }
        struct Ramp: Codable, Sendable {
            var from: Double
            var to: Double
        }
    }

    struct Setup: Codable, Sendable {
        /// Users registered for the run, each with its own organization
        /// (0 or absent: the caller's `--token`).
        var tenants: Int?
        var workflows: [WorkflowSpec]?
        /// Webhook triggers, `{{trigger:NAME}}` in operations.
        var triggers: [TriggerSpec]?
        /// Schedules created in one go (a storm), each on a workflow.
        var schedules: ScheduleStorm?
        /// Start a local HTTP target (`{{sink}}` in definitions) for `http` tasks.
        var httpSink: Bool?
    }

    struct WorkflowSpec: Codable, Sendable {
        var name: String
        /// `CreateWorkflowRequest` fields besides the name (proto3 JSON):
        /// `tasks`, `description`.
        var definition: JSONValue
    }

    struct TriggerSpec: Codable, Sendable {
        var name: String
        var workflow: String
    }

    struct ScheduleStorm: Codable, Sendable {
        var workflow: String
        var count: Int
        /// A cron expression; default every minute.
        var cron: String?
        /// Seconds to wait after the load before reading the executions.
        var waitSeconds: Double?
        /// Schedules per workflow (the server allows 100): the storm uses
        /// as many copies of its workflow as it needs.
        var perWorkflow: Int?
    }

    struct Workers: Codable, Sendable {
        var count: Int
        var queue: String
        /// Seconds of work each task simulates before completing.
        var workSeconds: Double?
    }

    struct Operation: Codable, Sendable {
        var name: String
        var weight: Double?
        /// `grpc` or `rest`.
        var call: CallKind
        /// gRPC: "package.Service/Method".
        var rpc: String?
        /// gRPC: the request message in proto3 JSON (templates allowed).
        var request: JSONValue?
        /// REST: method, path and JSON body (templates allowed).
        var method: String?
        var path: String?
        var body: JSONValue?
        /// Extra headers (templates allowed).
        var headers: [String: String]?
        /// Sent without authorization, over HTTP/2 whatever `--rest` says,
        /// with no JSON headers (a static-file peer, a webhook sender).
        var anonymous: Bool?

        enum CallKind: String, Codable, Sendable { case grpc, rest }
    }

    static func load(path: String) throws -> Scenario {
        let text: String
        do {
            text = try String(contentsOfFile: path, encoding: .utf8)
        } catch {
            throw HarnessError.usage("cannot read the scenario file \(path): \(error.localizedDescription)")
        }
        // Checked by the caller once command-line overrides are applied
        // (`--duration` may supply what the file leaves out).
        var scenario = try decodeDocument(Scenario.self, text: text, path: path)
        scenario.file = path
        return scenario
    }

    func validate(path: String) throws {
        func bad(_ message: String) -> HarnessError { .usage("\(path): \(message)") }
        guard !operations.isEmpty else { throw bad("a scenario needs at least one operation") }
        switch load.mode {
        case .open:
            let rates = [load.rate].compactMap { $0 } + (load.steps ?? []) + [load.ramp?.from, load.ramp?.to].compactMap { $0 }
            guard !rates.isEmpty else { throw bad("an open-loop load needs `rate`, `steps` or `ramp`") }
            guard rates.allSatisfy({ $0 > 0 && $0 <= 1_000_000 }) else { throw bad("rates must be between 0 and 1,000,000 per second") }
        case .closed:
            guard let concurrency = load.concurrency, concurrency >= 1, concurrency <= 100_000 else {
                throw bad("a closed-loop load needs `concurrency` from 1 to 100,000")
            }
        }
        if load.duration == nil && load.count == nil { throw bad("the load needs a `duration` (seconds) or a `count`") }
        for operation in operations {
            switch operation.call {
            case .grpc:
                guard let rpc = operation.rpc else { throw bad("operation \(operation.name): a gRPC call needs `rpc`") }
                guard RPCCatalog.requestType(rpc) != nil else {
                    throw bad("operation \(operation.name): unknown rpc \(rpc); known: \(RPCCatalog.names.joined(separator: ", "))")
                }
            case .rest:
                guard operation.method != nil, let path = operation.path, path.hasPrefix("/") else {
                    throw bad("operation \(operation.name): a REST call needs `method` and a `path` starting with /")
                }
            }
            if let weight = operation.weight, !(weight > 0) { throw bad("operation \(operation.name): weight must be positive") }
        }
        let names = Set(setup?.workflows?.map(\.name) ?? [])
        for trigger in setup?.triggers ?? [] where !names.contains(trigger.workflow) {
            throw bad("trigger \(trigger.name) names workflow \(trigger.workflow), which the setup does not create")
        }
        if let storm = setup?.schedules, !names.contains(storm.workflow) {
            throw bad("schedules name workflow \(storm.workflow), which the setup does not create")
        }
    }
}

/// Reads a YAML or JSON document (JSON is YAML) into a Decodable, with the
/// decoder's complaint and the file in the error.
func decodeDocument<T: Decodable>(_ type: T.Type, text: String, path: String) throws -> T {
    do {
        return try YAMLDecoder().decode(T.self, from: text)
    } catch let DecodingError.keyNotFound(key, context) {
        throw HarnessError.usage("\(path): missing `\(key.stringValue)` at \(codingPath(context))")
    } catch let DecodingError.typeMismatch(_, context), let DecodingError.valueNotFound(_, context),
        let DecodingError.dataCorrupted(context)
    {
        // A YAML syntax error carries its line and column in the underlying error.
        let detail = context.underlyingError.map { ": \($0)" } ?? ""
        throw HarnessError.usage("\(path): \(context.debugDescription)\(detail) at \(codingPath(context))")
    } catch {
        throw HarnessError.usage("\(path): not valid YAML/JSON: \(error)")
    }
}

private func codingPath(_ context: DecodingError.Context) -> String {
    let path = context.codingPath.map { $0.intValue.map { "[\($0)]" } ?? ".\($0.stringValue)" }.joined()
    return path.isEmpty ? "the top level" : String(path.drop { $0 == "." })
}

/// A JSON value inside a scenario (a request body, a definition), kept as
/// written and turned into JSON text after templates are filled in.
enum JSONValue: Codable, Sendable {
    case null
    case bool(Bool)
    case number(Double)
    case string(String)
    case array([JSONValue])
    case object([(String, JSONValue)])

    init(from decoder: any Decoder) throws {
        if let container = try? decoder.container(keyedBy: AnyKey.self) {
            var pairs: [(String, JSONValue)] = []
            for key in container.allKeys { pairs.append((key.stringValue, try container.decode(JSONValue.self, forKey: key))) }
            self = .object(pairs.sorted { $0.0 < $1.0 })
            return
        }
        if var container = try? decoder.unkeyedContainer() {
            var items: [JSONValue] = []
            while !container.isAtEnd { items.append(try container.decode(JSONValue.self)) }
            self = .array(items)
            return
        }
        let single = try decoder.singleValueContainer()
        if single.decodeNil() {
            self = .null
        } else if let value = try? single.decode(Bool.self) {
            self = .bool(value)
        } else if let value = try? single.decode(Double.self) {
            self = .number(value)
        } else {
            self = .string(try single.decode(String.self))
        }
    }

    func encode(to encoder: any Encoder) throws {
        switch self {
        case .null:
            var single = encoder.singleValueContainer()
            try single.encodeNil()
        case .bool(let value):
            var single = encoder.singleValueContainer()
            try single.encode(value)
        case .number(let value):
            var single = encoder.singleValueContainer()
            try single.encode(value)
        case .string(let value):
            var single = encoder.singleValueContainer()
            try single.encode(value)
        case .array(let items):
            var container = encoder.unkeyedContainer()
            for item in items { try container.encode(item) }
        case .object(let pairs):
            var container = encoder.container(keyedBy: AnyKey.self)
            for (key, value) in pairs { try container.encode(value, forKey: AnyKey(stringValue: key)) }
        }
    }

    /// JSON text (keys in order, integers without a fraction).
    var jsonText: String {
        var out = ""
        write(to: &out)
        return out
    }

    private func write(to out: inout String) {
        switch self {
        case .null: out += "null"
        case .bool(let value): out += value ? "true" : "false"
        case .number(let value):
            if value == value.rounded(), abs(value) < 1e15 { out += String(Int64(value)) } else { out += String(value) }
        case .string(let value): out += Self.quoted(value)
        case .array(let items):
            out += "["
            for (i, item) in items.enumerated() {
                if i > 0 { out += "," }
                item.write(to: &out)
            }
            out += "]"
        case .object(let pairs):
            out += "{"
            for (i, (key, value)) in pairs.enumerated() {
                if i > 0 { out += "," }
                out += Self.quoted(key) + ":"
                value.write(to: &out)
            }
            out += "}"
        }
    }

    static func quoted(_ text: String) -> String {
        var out = "\""
        for scalar in text.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            case _ where scalar.value < 0x20: out += String(format: "\\u%04x", scalar.value)
            default: out.unicodeScalars.append(scalar)
            }
        }
        return out + "\""
    }

    /// The object's pairs plus `extra` (replacing same-named keys).
    func merging(_ extra: [(String, JSONValue)]) -> JSONValue {
        guard case .object(var pairs) = self else { return .object(extra) }
        for (key, value) in extra {
            pairs.removeAll { $0.0 == key }
            pairs.append((key, value))
        }
        return .object(pairs)
    }
}

struct AnyKey: CodingKey {
    var stringValue: String
    var intValue: Int?
    init(stringValue: String) { self.stringValue = stringValue }
    init?(intValue: Int) {
        self.stringValue = String(intValue)
        self.intValue = intValue
    }
}

/// A usage or setup problem the harness reports and exits on (code 2).
enum HarnessError: Error, CustomStringConvertible {
    case usage(String)
    case setup(String)
    case transport(String)

    var description: String {
        switch self {
        case .usage(let message): "usage: \(message)"
        case .setup(let message): "setup failed: \(message)"
        case .transport(let message): "cannot reach the server: \(message)"
        }
    }
}
