import Foundation
import Synchronization
import Testing
import WeftTestSupport
import WeftEngine
import WeftStore

@Suite("built-in task runners")
struct TaskRunnerTests {
    final class Lines: Sendable {
        let lines = Mutex<[String]>([])
        func log(_ level: LogRecord.Level, _ message: String) async { lines.withLock { $0.append("\(level): \(message)") } }
    }

    let context = Expression.Context(
        input: .object(["orderId": .string("o-7"), "total": .number(120)]),
        outputs: ["fetch": .object(["body": .object(["items": .array([.number(1), .number(2)])])])])

    func invocation(_ action: String, _ config: JSONValue) throws -> TaskInvocation {
        try TaskInvocation.make(
            Records.task("k", TaskType(rawValue: action), id: "t", workflowId: "w", config: config),
            executionId: "exe", attempt: 1, context: context)
    }

    @Test("noop, log and transform resolve templates and produce their outputs")
    func simple() async throws {
        let lines = Lines()
        let noop = await NoopRunner().run(try invocation("noop", .object(["output": .string("{{ input.orderId }}")])), log: lines.log)
        #expect(noop == .completed(.string("o-7")))
        let logged = await LogRunner().run(
            try invocation("log", .object(["message": .string("order {{ input.orderId }} total {{ input.total }}"),
                                           "level": .string("Warning")])), log: lines.log)
        #expect(logged == .completed(.object(["message": .string("order o-7 total 120")])))
        #expect(lines.lines.withLock { $0 } == ["warning: order o-7 total 120"])
        let shaped = await TransformRunner().run(
            try invocation("transform", .object(["output": .object([
                "id": .string("{{ input.orderId }}"), "items": .string("{{ tasks.fetch.output.body.items }}"),
            ])])), log: lines.log)
        #expect(shaped == .completed(.object(["id": .string("o-7"), "items": .array([.number(1), .number(2)])])))
    }

    @Test("condition evaluates its expression against input and upstream outputs")
    func condition() async throws {
        let lines = Lines()
        let config = { (expression: String) in
            JSONValue.object(["expression": .string(expression), "then": .array([]), "else": .array([])])
        }
        let yes = await ConditionRunner().run(try invocation("condition", config("input.total > 100")), log: lines.log)
        #expect(yes == .completed(.object(["result": .bool(true), "branch": .string("then")])))
        let no = await ConditionRunner().run(
            try invocation("condition", config("{{ tasks.fetch.output.body.items[5] == 1 }}")), log: lines.log)
        #expect(no == .completed(.object(["result": .bool(false), "branch": .string("else")])))
        // The expression is evaluated, never interpolated as a template.
        #expect(try invocation("condition", config("{{ input.total > 100 }}")).config["expression"]
            == .string("{{ input.total > 100 }}"))
        let broken = await ConditionRunner().run(try invocation("condition", config("input.total >")), log: lines.log)
        if case .failed(let error) = broken { #expect(error.kind == "config") } else { Issue.record("expected a failure") }
    }
}
