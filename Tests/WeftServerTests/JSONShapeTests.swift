import Foundation
import Testing

@testable import WeftServer

@Suite("REST JSON shaping")
struct JSONShapeTests {
    let types = APIFieldTypes(schemas: APISchemas.components())

    func object(_ bytes: [UInt8]) throws -> [String: Any] {
        try #require(try JSONSerialization.jsonObject(with: Data(bytes)) as? [String: Any])
    }

    @Test("missing defaults are printed at every level, present values and key order kept")
    func fillsDefaults() throws {
        let defaults = JSONDefaults(types: types)
        let input = #"{"id":"wf_1","name":"a \"quoted\" {brace} [bracket]","tasks":[{"id":"t","config":{"x":[1,{"y":"}"}]}},{}]}"#
        let output = defaults.fill("weft.v1.Workflow", Array(input.utf8))
        let text = String(decoding: output, as: UTF8.self)
        #expect(text.hasPrefix(#"{"id":"wf_1","name":"a \"quoted\" {brace} [bracket]","tasks":[{"id":"t","config":{"x":[1,{"y":"}"}]}"#))
        let json = try object(output)
        #expect(json["description"] as? String == "")
        #expect(json["version"] as? Int == 0)
        #expect(json["etag"] as? String == "")
        let tasks = try #require(json["tasks"] as? [[String: Any]])
        #expect(tasks.count == 2)
        #expect(tasks[0]["dependsOn"] as? [Any] != nil)
        #expect(tasks[1]["action"] as? String == "")
        // Message fields that are unset stay absent (null semantics).
        #expect(tasks[0]["retry"] == nil && json["createdAt"] == nil)
        // A config (Struct) is not a message of ours: nothing is added inside it.
        #expect((tasks[0]["config"] as? [String: Any])?.count == 1)
    }

    @Test("lists, empty objects and unknown messages pass through unchanged")
    func passThrough() throws {
        let defaults = JSONDefaults(types: types)
        #expect(String(decoding: defaults.fill("weft.v1.Workflow", Array("{}".utf8)), as: UTF8.self).contains(#""tasks":[]"#))
        #expect(defaults.fill("no.such.Message", Array(#"{"a":1}"#.utf8)) == Array(#"{"a":1}"#.utf8))
        // Malformed input is returned as is rather than half-rewritten.
        #expect(defaults.fill("weft.v1.Workflow", Array(#"{"id":"x""#.utf8)) == Array(#"{"id":"x""#.utf8))
        let list = defaults.fill("weft.v1.ListWorkflowsResponse", Array(#"{"workflows":[{"id":"a"},{"id":"b"}]}"#.utf8))
        let workflows = try #require(try object(list)["workflows"] as? [[String: Any]])
        #expect(workflows.map { $0["tasks"] as? [Any] != nil } == [true, true])
        #expect(try object(list)["nextPageToken"] as? String == "")
    }

    @Test("the type explainer names the field and the expected type")
    func explains() {
        let explainer = JSONTypeExplainer(types: types)
        func explain(_ json: String) -> String? { explainer.explain("weft.v1.CreateWorkflowRequest", Array(json.utf8)) }
        #expect(explain(#"{"name":5}"#) == "name: expected a string, got a number")
        #expect(explain(#"{"tasks":[{"name":"a"},{"depends_on":"x"}]}"#) == "tasks[1].depends_on: expected an array, got a string")
        #expect(explain(#"{"tasks":[{"retry":{"jitter":true}}]}"#) == "tasks[0].retry.jitter: expected a number, got a boolean")
        #expect(explain(#"{"tasks":[{"timeout":"5m"}]}"#)?.contains("is not a duration in seconds") == true)
        #expect(explain(#"{"name":"fine","tasks":[]}"#) == nil)
        #expect(explain("not json") == nil)
    }
}
