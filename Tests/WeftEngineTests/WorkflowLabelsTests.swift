import Synchronization
import Testing
import WeftEngine

/// The engine metrics' labelled organizations and workflows: the store's
/// first-by-creation sets, with room filled by newcomers between reads.
@Suite("workflow labels")
struct WorkflowLabelsTests {
    @Test("the store's sets are labelled, the rest are other, per organization")
    func fromStore() {
        let labels = WorkflowLabels(orgCap: 2, perOrgCap: 2)
        labels.update(.init([(orgId: "org_a", workflows: ["deploy", "backup"]), (orgId: "org_b", workflows: ["etl"])]))
        #expect(labels.labels(orgId: "org_a", workflow: "deploy") == ("org_a", "deploy"))
        // org_a's set is full: a third workflow is other, though org_b has room.
        #expect(labels.labels(orgId: "org_a", workflow: "report") == ("org_a", "other"))
        #expect(labels.labels(orgId: "org_b", workflow: "etl") == ("org_b", "etl"))
        // Two organizations labelled already: a third is other, and so are its workflows.
        #expect(labels.labels(orgId: "org_c", workflow: "deploy") == ("other", "other"))
        #expect(labels.org("org_c") == "other" && labels.org("org_b") == "org_b")
    }

    @Test("what this process creates is labelled in creation order while there is room; executions add nothing")
    func creations() {
        let labels = WorkflowLabels(orgCap: 2, perOrgCap: 2)
        labels.update(.init([(orgId: "org_a", workflows: ["deploy"])]))
        let nudges = Counter()
        labels.whenChanged { nudges.add() }
        #expect(labels.labels(orgId: "org_a", workflow: "new") == ("org_a", "other"), "an execution labels nothing")
        labels.created(orgId: "org_a", workflow: "new")
        #expect(labels.labels(orgId: "org_a", workflow: "new") == ("org_a", "new"))
        #expect(nudges.value == 1)
        labels.created(orgId: "org_a", workflow: "newer")
        #expect(labels.labels(orgId: "org_a", workflow: "newer") == ("org_a", "other"), "org_a is full")
        labels.created(orgId: "org_n")
        labels.created(orgId: "org_m")
        #expect(labels.org("org_n") == "org_n" && labels.org("org_m") == "other", "two organizations at most")
        labels.created(orgId: "org_n", workflow: "x")
        #expect(labels.labels(orgId: "org_n", workflow: "x") == ("org_n", "x"))
        #expect(nudges.value == 3)
        #expect(labels.labels(orgId: "", workflow: "x") == ("other", "other"), "workflows outside organizations")
        // The next read wins: the store says org_a's second workflow is "first".
        labels.update(.init([(orgId: "org_a", workflows: ["deploy", "first"]), (orgId: "org_n", workflows: ["x"])]))
        #expect(labels.labels(orgId: "org_a", workflow: "new") == ("org_a", "other"))
        #expect(labels.labels(orgId: "org_a", workflow: "first") == ("org_a", "first"))
    }

    @Test("a read that began before a creation here does not drop it")
    func staleRead() {
        let labels = WorkflowLabels(orgCap: 2, perOrgCap: 3)
        labels.update(.init([(orgId: "org_a", workflows: ["deploy"])]))
        let before = labels.currentGeneration
        labels.created(orgId: "org_a", workflow: "fresh")
        // The read (begun before "fresh" was created) does not hold it.
        #expect(!labels.update(.init([(orgId: "org_a", workflows: ["deploy"])]), readStarted: before))
        #expect(labels.labels(orgId: "org_a", workflow: "fresh") == ("org_a", "fresh"))
        #expect(labels.update(.init([(orgId: "org_a", workflows: ["deploy", "fresh"])]), readStarted: labels.currentGeneration))
    }

    @Test("renames and replacements cannot grow the label values without bound: twice the caps over a lifetime")
    func lifetimeCap() {
        let labels = WorkflowLabels(orgCap: 1, perOrgCap: 1)
        for (index, name) in ["first", "renamed", "again"].enumerated() {
            labels.update(.init([(orgId: "org_a", workflows: [name])]))
            let expected = index < 2 ? name : "other"
            #expect(labels.labels(orgId: "org_a", workflow: name) == ("org_a", expected))
        }
        #expect(labels.labels(orgId: "org_a", workflow: "first") == ("org_a", "other"), "no longer in the set")
        for (index, org) in ["org_b", "org_c"].enumerated() {
            labels.update(.init([(orgId: org, workflows: ["w"])]))
            #expect(labels.org(org) == org)
            #expect(labels.labels(orgId: org, workflow: "w").org == (index == 0 ? org : "other"))
        }
    }

    @Test("repeated names hold one place each, so the cap counts workflows")
    func repeatedNames() {
        let labels = WorkflowLabels(orgCap: 1, perOrgCap: 2)
        labels.update(.init([(orgId: "org_a", workflows: ["same", "same"])]))
        #expect(labels.labels(orgId: "org_a", workflow: "same") == ("org_a", "same"))
        #expect(labels.labels(orgId: "org_a", workflow: "third") == ("org_a", "other"))
    }
}

private final class Counter: Sendable {
    private let count = Mutex(0)
    func add() { count.withLock { $0 += 1 } }
    var value: Int { count.withLock { $0 } }
}
