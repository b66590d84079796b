import Foundation
import Testing
import WeftTestSupport
import WeftEngine
import WeftStore

@Suite("workflow definition validation")
struct WorkflowDefinitionTests {
    func task(_ name: String, _ action: String = "noop", key: String = "", deps: [String] = [], config: JSONValue = .emptyObject) -> TaskRecord {
        Records.task(key, TaskType(rawValue: action), name: name, id: "", workflowId: "w", dependsOn: deps, config: config)
    }

    func message(_ tasks: [TaskRecord]) -> String? {
        do {
            _ = try WorkflowDefinition.validate(name: "w", description: "", tasks: tasks)
            return nil
        } catch {
            return error.message
        }
    }

    @Test("keys default to a slug of the name")
    func slugs() throws {
        let tasks = try WorkflowDefinition.validate(
            name: "w", description: "", tasks: [task("Fetch the Order!"), task("2nd step"), task("!!!")])
        #expect(tasks.map(\.key) == ["fetch_the_order", "t_2nd_step", "task_3"])
    }

    @Test("each broken rule is reported and names the task")
    func failures() {
        #expect(message([task("a"), task("A")])?.contains("key \"a\" is already used by task #1") == true)
        #expect(message([task("a", deps: ["nope"])]) == "task \"a\" (#1): dependsOn names \"nope\", which is not a task of this workflow")
        #expect(message([task("a", deps: ["a"])]) == "task \"a\" (#1): depends on itself")
        #expect(message([task("a", deps: ["c"]), task("b", deps: ["a"]), task("c", deps: ["b"])])?.contains("cycle (a -> c -> b -> a)") == true)
        #expect(message([task("a", "send email")])?.contains("unknown action (task type) \"send email\"") == true)
        #expect(message([task("a", "http")]) == "task \"a\" (#1): an http task needs config.url (a string)")
        #expect(message([task("a", "http", config: .object(["url": .string("ftp://x")]))])?.contains("must start with http") == true)
        #expect(message([task("a", "noop", config: .object(["bogus": .null]))])?.contains("has no field \"bogus\"") == true)
        #expect(message([task("a", "delay", config: .object(["duration": .string("soon")]))])?.contains("config.duration") == true)
        #expect(message([task("a", "external", config: .object(["queue": .string("bad queue!")]))])?.contains("config.queue") == true)
        #expect(message([task("c", "condition", config: .object(["expression": .string("x"), "then": .array([.string("b")])])), task("b")])?
            .contains("branch task \"b\" must list \"c\"") == true)
        #expect(message([task("a", key: "1bad")])?.contains("key \"1bad\" must start with a letter") == true)
        #expect(message([task("")])?.contains("name must not be empty") == true)
    }

    @Test("a diamond with typed configs is valid")
    func diamond() {
        #expect(message([
            task("start"),
            task("left", "http", deps: ["start"], config: .object(["url": .string("https://example.com"), "method": .string("post"), "expectedStatus": .array([.number(200)])])),
            task("right", "delay", deps: ["start"], config: .object(["duration": .string("1m30s")])),
            task("join", "transform", deps: ["left", "right"], config: .object(["output": .object(["ok": .bool(true)])])),
        ]) == nil)
        #expect(DurationText.milliseconds("1h30m") == 5_400_000)
        #expect(DurationText.milliseconds("500ms") == 500)
        #expect(DurationText.milliseconds("5") == nil)
    }
}
