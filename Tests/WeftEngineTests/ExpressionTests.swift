import Foundation
import Testing
import WeftTestSupport
import WeftEngine
import WeftStore

@Suite("expressions and templates")
struct ExpressionTests {
    let context = Expression.Context(
        input: .object(["total": .number(150), "country": .string("DE"), "items": .array([.string("a"), .string("b")]),
                        "flag": .bool(true)]),
        outputs: ["fetch": .object(["status": .number(200), "body": .object(["id": .string("o-1"), "tags": .array([])])])],
        statuses: ["fetch": "Completed"])

    func eval(_ text: String) throws -> JSONValue { try Expression.parse(text).evaluate(context) }

    @Test("comparisons, logic, paths and literals evaluate as documented")
    func evaluation() throws {
        #expect(try eval("input.total > 100") == .bool(true))
        #expect(try eval("input.total >= 150 && input.country == 'DE'") == .bool(true))
        #expect(try eval("input.country != \"DE\" || !input.flag") == .bool(false))
        #expect(try eval("(input.total < 10 || input.items[1] == 'b') && tasks.fetch.status == 'Completed'") == .bool(true))
        #expect(try eval("tasks.fetch.output.body.id") == .string("o-1"))
        #expect(try eval("tasks.fetch.output.missing.deeper") == .null)
        #expect(try eval("input.items[5]") == .null)
        #expect(try eval("tasks.fetch.output.body.tags").isTruthy == false)
        #expect(try eval("-2.5 < 0") == .bool(true))
        #expect(try eval("'b' > 'a'") == .bool(true))
        #expect(try eval("input.total < 'x'") == .bool(false))
        #expect(try eval("null == input.nothing") == .bool(true))
        #expect(try Expression.parse("tasks.fetch.output.body.id == input.x || tasks.b-2.status").taskReferences == ["fetch", "b-2"])
    }

    @Test("syntax errors say what and where")
    func errors() {
        func message(_ text: String) -> String? {
            do {
                _ = try Expression.parse(text)
                return nil
            } catch {
                return error.description
            }
        }
        #expect(message("input.total >") == "expected a value, found the end of the expression at character 14")
        #expect(message("input.total & 1")?.hasPrefix("unexpected \"&\"") == true)
        #expect(message("order.total")?.contains("unknown name \"order\"") == true)
        #expect(message("tasks.fetch.body")?.contains("expected \"output\" or \"status\"") == true)
        #expect(message("'open") == "unterminated string at character 1")
        #expect(message("(input.a") == "expected \")\", found end of expression at character 9")
        #expect(message("input.items[x]")?.contains("expected an index") == true)
        // Hostile nesting and length are refused, never recursed into.
        #expect(message(String(repeating: "(", count: 100) + "true" + String(repeating: ")", count: 100))?
            .contains("nests deeper than 64") == true)
        #expect(message(String(repeating: "!", count: 1000) + "true")?.contains("nests deeper than 64") == true)
        #expect(message(String(repeating: "true && ", count: 400) + "true")?.contains("longer than 2048") == true)
    }

    @Test("templates keep JSON types when alone and interpolate otherwise")
    func templates() throws {
        let config = JSONValue.object([
            "url": .string("https://api.example.com/orders/{{ tasks.fetch.output.body.id }}?n={{ input.total }}"),
            "count": .string("{{ input.total }}"),
            "body": .object(["items": .string("{{input.items}}"), "fixed": .number(1)]),
            "plain": .string("no templates"),
        ])
        let resolved = try Template.resolve(config, context)
        #expect(resolved["url"] == .string("https://api.example.com/orders/o-1?n=150"))
        #expect(resolved["count"] == .number(150))
        #expect(resolved["body"]?["items"] == .array([.string("a"), .string("b")]))
        #expect(resolved["body"]?["fixed"] == .number(1))
        #expect(resolved["plain"] == .string("no templates"))
        #expect(try Template.expressions(in: config, at: "config").map(\.0) == [
            "config.body.items", "config.count", "config.url", "config.url",
        ])
        #expect(throws: ExpressionError.self) { _ = try Template.resolve(.string("{{ input.a "), context) }
    }

    func task(_ key: String, _ deps: [String] = [], action: String = "noop", config: JSONValue = .emptyObject) -> TaskRecord {
        Records.task(key, TaskType(rawValue: action), id: "", workflowId: "w", dependsOn: deps, config: config)
    }

    func problem(_ tasks: [TaskRecord]) -> String? {
        do {
            _ = try WorkflowDefinition.validate(name: "w", description: "", tasks: tasks)
            return nil
        } catch {
            return error.message
        }
    }

    @Test("saving checks templates and condition expressions, and that they read only earlier tasks")
    func validation() {
        let http = { (url: String) in JSONValue.object(["url": .string(url)]) }
        #expect(problem([task("fetch", action: "http", config: http("https://x/{{ input.id }}")),
                         task("use", ["fetch"], action: "http", config: http("https://x/{{ tasks.fetch.output.body.id }}"))]) == nil)
        #expect(problem([task("a"), task("b", ["a"]), task("c", ["b"], action: "transform",
                                                        config: .object(["output": .string("{{ tasks.a.output }}")]))]) == nil)
        #expect(problem([task("fetch"), task("use", action: "http", config: http("https://x/{{ tasks.fetch.output.id }}"))])
            == "task \"use\" (#2): config.url reads task \"fetch\", which does not run before it (add \"fetch\" to dependsOn, directly or through another task)")
        #expect(problem([task("use", action: "http", config: http("https://x/{{ tasks.nope.output }}"))])?
            .contains("reads task \"nope\", which is not a task of this workflow") == true)
        #expect(problem([task("use", action: "http", config: http("https://x/{{ input.a == }}"))])?
            .hasPrefix("task \"use\" (#1): in {{ input.a == }}: expected a value") == true)
        let condition = { (expression: String) in
            JSONValue.object(["expression": .string(expression), "then": .array([.string("yes")])])
        }
        #expect(problem([task("check", action: "condition", config: condition("input.total > 100 && input.ok")),
                         task("yes", ["check"])]) == nil)
        #expect(problem([task("check", action: "condition", config: condition("{{ input.total > 100 }}")),
                         task("yes", ["check"])]) == nil)
        #expect(problem([task("check", action: "condition", config: condition("input.total >")), task("yes", ["check"])])?
            .hasPrefix("task \"check\" (#1): expected a value") == true)
        #expect(problem([task("check", action: "condition", config: condition("tasks.yes.status == 'Completed'")),
                         task("yes", ["check"])])?.contains("reads task \"yes\", which does not run before it") == true)
    }
}
