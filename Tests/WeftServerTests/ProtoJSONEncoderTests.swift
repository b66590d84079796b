import Foundation
import SwiftProtobuf
import Testing
import WeftProto
import WeftRPC
@testable import WeftServer

/// `ProtoJSONEncoder` prints exactly what swift-protobuf's JSON followed by
/// `JSONDefaults.fill` printed (the REST bridge's output before Step 13).
@Suite("proto JSON encoder")
struct ProtoJSONEncoderTests {
    static let defaults = JSONDefaults(types: APIFieldTypes(schemas: APISchemas.components()))
    static let encoder = ProtoJSONEncoder(
        files: try! WeftApplication.descriptorFiles(), defaults: defaults.texts, fallbackShape: defaults.fill)

    static func old<M: SwiftProtobuf.Message>(_ message: M) throws -> String {
        String(decoding: defaults.fill(M.protoMessageName, try message.jsonUTF8Bytes()), as: UTF8.self)
    }

    static func new<M: SwiftProtobuf.Message>(_ message: M) throws -> String {
        String(decoding: try encoder.encode(message), as: UTF8.self)
    }

    /// Both outputs equal; else the place where they part.
    static func same<M: SwiftProtobuf.Message>(_ message: M, sourceLocation: SourceLocation = #_sourceLocation) throws {
        let (new, old) = (Array(try Self.new(message).utf8), Array(try Self.old(message).utf8))
        let at = (0..<min(new.count, old.count)).first { new[$0] != old[$0] } ?? min(new.count, old.count)
        func around(_ bytes: [UInt8]) -> String {
            String(decoding: bytes[max(0, at - 40)..<min(bytes.count, at + 40)], as: UTF8.self)
        }
        #expect(new == old, "\(M.protoMessageName) differs at byte \(at): new …\(around(new))… old …\(around(old))…",
                sourceLocation: sourceLocation)
    }

    static let awkward = "quote \" backslash \\ slash / nl \n tab \t nul \u{0} bell \u{7} del \u{7F} c1 \u{85} nbsp \u{A0} é 日本 🚀 \u{2028}"

    static func timestamp(_ seconds: Int64, _ nanos: Int32) -> Google_Protobuf_Timestamp {
        Google_Protobuf_Timestamp(seconds: seconds, nanos: nanos)
    }

    static func task(_ key: String) throws -> Weft_V1_Task {
        var task = Weft_V1_Task()
        task.id = "tsk_" + key
        task.key = key
        task.name = key.uppercased() + " " + awkward
        task.action = "http"
        task.config = try Google_Protobuf_Struct(jsonString: #"{"url": "https://x.test/a?b=1", "n": 1.5, "list": [1, "two", null, true], "nested": {"k": "v"}}"#)
        task.dependsOn = key == "a" ? [] : ["a"]
        var retry = Weft_V1_RetryPolicy()
        retry.maxAttempts = 3
        retry.initialBackoff = Google_Protobuf_Duration(seconds: 1, nanos: 500_000_000)
        retry.backoffMultiplier = 2
        retry.jitter = 0.1
        retry.retryableErrors = ["timeout", "http_5xx"]
        if key == "b" { task.retry = retry }
        task.timeout = Google_Protobuf_Duration(seconds: 30)
        task.createdAt = timestamp(1_764_000_000, 123_000_000)
        task.updatedAt = timestamp(1_764_000_001, 123_456_000)
        return task
    }

    @Test("workflows, executions and lists print byte for byte as before, awkward text and every number form included")
    func sameBytes() throws {
        var workflow = Weft_V1_Workflow()
        workflow.id = "wf_1"
        workflow.name = Self.awkward
        workflow.tasks = [try Self.task("a"), try Self.task("b")]
        workflow.createdAt = Self.timestamp(0, 0)
        workflow.updatedAt = Self.timestamp(253_402_300_799, 999_999_999)
        workflow.version = 7
        var empty = Weft_V1_Workflow()
        empty.id = "wf_2"
        var list = Weft_V1_ListWorkflowsResponse()
        list.workflows = [workflow, empty]
        list.nextPageToken = "tok"

        var execution = Weft_V1_Execution()
        execution.executionID = "exe_1"
        execution.status = .completed
        execution.input = try Google_Protobuf_Struct(jsonString: #"{"big": 1e300, "small": 1.5e-7, "neg": -0.0, "text": "\u0001"}"#)
        execution.cost = 0.000075
        var cost = Weft_V1_ExecutionCost()
        cost.taskAttempts = 3
        cost.egressBytes = Int64.max
        cost.attemptsDollars = 1.0 / 3.0
        execution.costBreakdown = cost
        execution.createdAt = Self.timestamp(-62_135_596_800, 1)
        var attempt = Weft_V1_TaskExecution()
        attempt.taskKey = "a"
        attempt.status = .failed
        attempt.attempt = 2
        attempt.error = Self.awkward
        execution.tasks = [attempt, Weft_V1_TaskExecution()]
        var unknownStatus = Weft_V1_Execution()
        unknownStatus.status = Weft_V1_Execution.Status(rawValue: 99) ?? .unspecified

        try Self.same(workflow)
        try Self.same(empty)
        try Self.same(list)
        try Self.same(execution)
        try Self.same(unknownStatus)
        try Self.same(Weft_V1_ListWorkflowsResponse())
        // Defaults are really there (the comparison is not between two empty outputs).
        #expect(try Self.new(empty).contains(#""tasks":[]"#))
        #expect(try Self.new(workflow).contains(#""createdAt":"1970-01-01T00:00:00Z""#))
    }

    @Test("what swift-protobuf refuses is refused: a timestamp outside years 1…9999, a NaN in a Struct, a Value with no kind")
    func refused() throws {
        var late = Weft_V1_Workflow()
        late.createdAt = Self.timestamp(253_402_300_800, 0)
        var nan = Weft_V1_Task()
        nan.config.fields["x"] = Google_Protobuf_Value(numberValue: .nan)
        var empty = Weft_V1_Task()
        empty.config.fields["x"] = Google_Protobuf_Value()
        func fails<M: SwiftProtobuf.Message>(_ message: M) -> (new: Bool, old: Bool) {
            var new = false
            do { _ = try Self.encoder.encode(message) } catch { new = true }
            var old = false
            do { let _: [UInt8] = try message.jsonUTF8Bytes() } catch { old = true }
            return (new, old)
        }
        for outcome in [fails(late), fails(nan), fails(empty)] { #expect(outcome.new && outcome.old) }
    }
}
