import Synchronization
import WeftObservability

/// Which organizations and workflows get their own label values on the
/// engine's metrics, the rest counting as "other": the first `orgCap`
/// organizations by creation, and in each the first `perOrgCap` live
/// workflows by creation. The server reads the sets from the store
/// (`Snapshot`) at start and every few seconds, so every replica and every
/// restart labels the same workflows whatever order executions arrive in,
/// and no organization can take another's labels by creating workflows.
/// At most `orgCap` × `perOrgCap` workflow names (plus one "other" per
/// organization) are labelled at a time; since names can change (a rename,
/// a workflow deleted and another created in its place) and a series, once
/// made, stays until the process ends, a process also stops naming new
/// organizations after 2 × `orgCap` and new workflows after 2 × `orgCap` ×
/// `perOrgCap` distinct values (`lifetimeCap`): what a label set's churn
/// can add is bounded too.
///
/// Between two reads, what this process creates is labelled as it is
/// created (`created`), in creation order, which is the order of ids and so
/// the order the next read confirms; what other replicas create shows at
/// the next read. Executions never add to the sets.
public final class WorkflowLabels: Sendable {
    public struct Snapshot: Sendable, Equatable {
        /// Labelled organizations, by id.
        public var orgs: Set<String>
        /// Labelled workflow names of each labelled organization.
        public var workflows: [String: Set<String>]
        /// How many of each organization's workflows hold a place (names
        /// may repeat, so this can exceed its count of names).
        public var places: [String: Int]

        public init(orgs: Set<String> = [], workflows: [String: Set<String>] = [:], places: [String: Int] = [:]) {
            self.orgs = orgs
            self.workflows = workflows
            self.places = places
        }

        /// From the store's answer: organizations with their first workflows' names.
        public init(_ rows: [(orgId: String, workflows: [String])]) {
            self.init()
            for row in rows {
                orgs.insert(row.orgId)
                workflows[row.orgId, default: []].formUnion(row.workflows)
                places[row.orgId, default: 0] += row.workflows.count
            }
        }
    }

    public let orgCap: Int
    public let perOrgCap: Int
    private let snapshot = Mutex(Snapshot())
    /// Bumped by every creation labelled ahead of the store: a read that
    /// began before one must not replace the sets (it would drop it).
    private let generation = Mutex(0)
    /// The label values this process has used, capped for its lifetime.
    private let usedOrgs: BoundedLabel
    private let usedWorkflows: BoundedLabel
    /// Called when something was labelled ahead of the store's word: the
    /// server reads the sets again soon (an organization labelled here gets
    /// its zero series then).
    private let onChange: Mutex<(@Sendable () -> Void)?> = Mutex(nil)

    public init(orgCap: Int = 10, perOrgCap: Int = 10) {
        self.orgCap = max(0, orgCap)
        self.perOrgCap = max(0, perOrgCap)
        usedOrgs = BoundedLabel(cap: 2 * self.orgCap)
        usedWorkflows = BoundedLabel(cap: 2 * self.orgCap * self.perOrgCap)
    }

    /// The creations counter a read should note before it starts.
    public var currentGeneration: Int { generation.withLock { $0 } }

    /// Replaces the sets with a read of the store, unless something was
    /// created here since the read began (`readStarted`): then it keeps
    /// the sets and returns false, and the caller reads again.
    @discardableResult
    public func update(_ next: Snapshot, readStarted: Int? = nil) -> Bool {
        generation.withLock { current in
            guard readStarted == nil || readStarted == current else { return false }
            snapshot.withLock { $0 = next }
            return true
        }
    }

    public var current: Snapshot { snapshot.withLock { $0 } }

    public func whenChanged(_ body: @escaping @Sendable () -> Void) { onChange.withLock { $0 = body } }

    /// The `org` label: the organization's id, or "other".
    public func org(_ id: String) -> String {
        snapshot.withLock { $0.orgs.contains(id) } ? id : "other"
    }

    /// The `org` and `workflow` labels of a workflow of organization `orgId`.
    public func labels(orgId: String, workflow name: String) -> (org: String, workflow: String) {
        let (org, workflow) = snapshot.withLock { snapshot -> (Bool, Bool) in
            guard snapshot.orgs.contains(orgId) else { return (false, false) }
            return (true, snapshot.workflows[orgId]?.contains(name) == true)
        }
        guard org, usedOrgs.value(orgId) != "other" else { return ("other", "other") }
        guard workflow, usedWorkflows.value(orgId + "/" + name) != "other" else { return (orgId, "other") }
        return (orgId, String(name.prefix(64)))
    }

    /// An organization this process just created: labelled if there is room.
    public func created(orgId: String) {
        let added = generation.withLock { generation in
            snapshot.withLock { snapshot -> Bool in
                guard !orgId.isEmpty, !snapshot.orgs.contains(orgId), snapshot.orgs.count < orgCap else { return false }
                snapshot.orgs.insert(orgId)
                generation += 1
                return true
            }
        }
        if added { onChange.withLock { $0 }?() }
    }

    /// A workflow this process just created: labelled if its organization
    /// is and has a place left.
    public func created(orgId: String, workflow name: String) {
        let added = generation.withLock { generation in
            snapshot.withLock { snapshot -> Bool in
                guard snapshot.orgs.contains(orgId), snapshot.places[orgId, default: 0] < perOrgCap else { return false }
                snapshot.places[orgId, default: 0] += 1
                generation += 1
                return snapshot.workflows[orgId, default: []].insert(name).inserted
            }
        }
        if added { onChange.withLock { $0 }?() }
    }
}
