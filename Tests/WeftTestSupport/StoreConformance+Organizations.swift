import Foundation
import Testing
import WeftStore

extension StoreConformance {
    static let organizations: [Case] = [
        Case(name: "registration creates the user's organization with them as admin; invitations need the invited email to accept") {
            store in
            let at = t0
            let admin = Records.user(email: "admin@example.com")
            let org = OrganizationRecord(id: "org_a", name: "A", plan: "free", createdAt: at)
            try await store.users.createUser(admin, organization: org)
            let invited = try await store.user("Bob@Example.com")
            let other = try await store.user("eve@example.com")
            #expect(try await store.orgs.membership(orgId: "org_a", userId: admin.id)?.role == .admin)
            #expect(try await store.orgs.memberships(userId: admin.id).map(\.1.id) == ["org_a"])
            let invitation = InvitationRecord(
                id: "inv_1", orgId: "org_a", email: "bob@example.com", role: .member, invitedBy: admin.id, createdAt: at,
                expiresAt: at.addingTimeInterval(60))
            try await store.orgs.createInvitation(invitation, actor: admin.id)
            // One pending invitation per email.
            await #expect(throws: StoreError.self) {
                try await store.orgs.createInvitation(
                    InvitationRecord(
                        id: "inv_2", orgId: "org_a", email: "BOB@example.com", role: .admin, invitedBy: admin.id,
                        createdAt: at, expiresAt: at.addingTimeInterval(60)), actor: admin.id)
            }
            #expect(try await store.orgs.openInvitations(email: "BOB@EXAMPLE.COM", now: at).map(\.id) == ["inv_1"])
            // Someone else cannot accept it; an expired one cannot be accepted.
            await #expect(throws: StoreError.self) {
                _ = try await store.orgs.respond(invitationId: "inv_1", userId: other.id, email: other.email, accept: true, now: at)
            }
            await #expect(throws: StoreError.self) {
                _ = try await store.orgs.respond(
                    invitationId: "inv_1", userId: invited.id, email: invited.email, accept: true, now: at.addingTimeInterval(61))
            }
            let accepted = try await store.orgs.respond(
                invitationId: "inv_1", userId: invited.id, email: invited.email, accept: true, now: at.addingTimeInterval(1))
            #expect(accepted.status == .accepted)
            #expect(try await store.orgs.membership(orgId: "org_a", userId: invited.id)?.role == .member)
            #expect(try await store.orgs.membership(orgId: "org_a", userId: other.id) == nil)
            #expect(try await store.orgs.members(orgId: "org_a").map(\.1.id) == [admin.id, invited.id])
            // Answered: not again.
            await #expect(throws: StoreError.self) {
                _ = try await store.orgs.respond(
                    invitationId: "inv_1", userId: invited.id, email: invited.email, accept: false, now: at.addingTimeInterval(2))
            }
            // The last admin stays; a member can go.
            await #expect(throws: StoreError.self) { try await store.orgs.removeMember(orgId: "org_a", userId: admin.id, actor: admin.id) }
            try await store.orgs.removeMember(orgId: "org_a", userId: invited.id, actor: admin.id)
            #expect(try await store.orgs.membership(orgId: "org_a", userId: invited.id) == nil)
        },
        Case(name: "the metrics' labelled sets: the first organizations by creation, each with its first live workflows") {
            store in
            let owner = Records.user(email: "owner@example.com")
            try await store.users.createUser(owner, organization: OrganizationRecord(id: "org_1", name: "1", plan: "", createdAt: t0))
            for (index, org) in ["org_2", "org_3"].enumerated() {
                try await store.users.createUser(
                    Records.user(email: "owner\(index)@example.com"),
                    organization: OrganizationRecord(id: org, name: org, plan: "", createdAt: t0))
            }
            var made: [WorkflowRecord] = []
            for (index, name) in ["first", "second", "gone", "third", "fourth"].enumerated() {
                // Ids sort by creation time: a millisecond apart, in this order.
                var workflow = Records.workflow(
                    owner: owner.id, name: name, tasks: [Records.task("a")], at: t0.addingTimeInterval(Double(index) / 1000))
                workflow.orgId = "org_1"
                made.append(try await store.workflows.createWorkflow(workflow, actor: owner.id))
            }
            try await store.workflows.deleteWorkflow(id: made[2].id, expectedVersion: nil, actor: owner.id, needs: nil)
            let sets = try await store.orgs.labelledWorkflows(orgs: 2, perOrg: 3)
            #expect(sets.map(\.orgId) == ["org_1", "org_2"])
            #expect(sets.first?.workflows == ["first", "second", "third"], "a deleted workflow holds no place")
            #expect(sets.last?.workflows == [])
        },
        Case(name: "a member who leaves loses their roles there; what they owned passes to an admin") { store in
            let admin = Records.user(email: "boss@example.com")
            try await store.users.createUser(admin, organization: OrganizationRecord(id: "org_m", name: "M", plan: "", createdAt: t0))
            let leaver = try await store.user("leaver@example.com")
            let other = try await store.user("other@example.com")
            for (id, user) in [("inv_l", leaver), ("inv_o", other)] {
                try await store.orgs.createInvitation(
                    InvitationRecord(
                        id: id, orgId: "org_m", email: user.email, role: .member, invitedBy: admin.id, createdAt: t0,
                        expiresAt: t0.addingTimeInterval(60)), actor: admin.id)
                _ = try await store.orgs.respond(invitationId: id, userId: user.id, email: user.email, accept: true, now: t0)
            }
            var theirs = Records.workflow(owner: leaver.id, name: "theirs", taskNames: ["a"])
            theirs.orgId = "org_m"
            theirs = try await store.workflows.createWorkflow(theirs, actor: leaver.id)
            var admins = Records.workflow(owner: admin.id, name: "admins", taskNames: ["a"])
            admins.orgId = "org_m"
            admins = try await store.workflows.createWorkflow(admins, actor: admin.id)
            try await store.workflows.addCollaborator(
                CollaboratorRecord(workflowId: admins.id, userId: leaver.id, role: .editor, addedAt: t0), actor: admin.id)
            try await store.workflows.addCollaborator(
                CollaboratorRecord(workflowId: theirs.id, userId: other.id, role: .viewer, addedAt: t0), actor: leaver.id)
            try await store.orgs.removeMember(orgId: "org_m", userId: leaver.id, actor: leaver.id)
            #expect(try await store.workflows.role(userId: leaver.id, workflowId: admins.id) == nil)
            #expect(try await store.workflows.workflow(id: theirs.id, includeDeleted: false)?.ownerId == admin.id)
            #expect(try await store.workflows.role(userId: other.id, workflowId: theirs.id) == .viewer, "others keep their roles")
        },
        Case(name: "memberships read before a change show it right after (role, removal, plan, an accepted invitation)") {
            store in
            let admin = Records.user(email: "cache-admin@example.com")
            try await store.users.createUser(admin, organization: OrganizationRecord(id: "org_c", name: "C", plan: "", createdAt: t0))
            let member = try await store.user("cache-member@example.com")
            // Read first: a cache in the store must not answer these later.
            #expect(try await store.orgs.membership(orgId: "org_c", userId: member.id) == nil)
            #expect(try await store.orgs.memberships(userId: member.id).isEmpty)
            try await store.orgs.createInvitation(
                InvitationRecord(
                    id: "inv_c", orgId: "org_c", email: member.email, role: .member, invitedBy: admin.id, createdAt: t0,
                    expiresAt: t0.addingTimeInterval(60)), actor: admin.id)
            _ = try await store.orgs.respond(invitationId: "inv_c", userId: member.id, email: member.email, accept: true, now: t0)
            #expect(try await store.orgs.membership(orgId: "org_c", userId: member.id)?.role == .member)
            _ = try await store.orgs.setMemberRole(orgId: "org_c", userId: member.id, role: .admin, actor: admin.id)
            #expect(try await store.orgs.membership(orgId: "org_c", userId: member.id)?.role == .admin)
            #expect(try await store.orgs.memberships(userId: admin.id).first?.1.plan == "")
            try await store.orgs.setPlan(orgId: "org_c", plan: "team")
            #expect(try await store.orgs.memberships(userId: admin.id).first?.1.plan == "team")
            #expect(try await store.orgs.memberships(userId: member.id).first?.1.plan == "team")
            try await store.orgs.removeMember(orgId: "org_c", userId: member.id, actor: admin.id)
            #expect(try await store.orgs.membership(orgId: "org_c", userId: member.id) == nil)
            #expect(try await store.orgs.memberships(userId: member.id).isEmpty)
        },
        Case(name: "workflows and executions are counted per organization") { store in
            let owner = Records.user()
            try await store.users.createUser(owner, organization: OrganizationRecord(id: "org_x", name: "X", plan: "", createdAt: t0))
            var first = Records.workflow(owner: owner.id, name: "one", taskNames: ["a"])
            first.orgId = "org_x"
            var second = Records.workflow(owner: owner.id, name: "two", taskNames: ["a"])
            second.orgId = "org_x"
            let stored = try await store.workflows.createWorkflow(first, actor: owner.id)
            #expect(stored.orgId == "org_x")
            #expect(try await store.workflows.workflow(id: stored.id, includeDeleted: false)?.orgId == "org_x")
            _ = try await store.workflows.createWorkflow(second, actor: owner.id)
            #expect(try await store.orgs.workflowCount(orgId: "org_x") == 2)
            try await store.workflows.deleteWorkflow(id: second.id, expectedVersion: nil, actor: owner.id, needs: nil)
            #expect(try await store.orgs.workflowCount(orgId: "org_x") == 1)
            _ = try await store.executions.createExecution(Records.execution(of: stored, at: t0))
            #expect(try await store.orgs.executionCount(orgId: "org_x", since: t0) == 1)
            #expect(try await store.orgs.executionCount(orgId: "org_x", since: t0.addingTimeInterval(1)) == 0)
            #expect(try await store.executions.unfinishedCountsByOrganization()["org_x"] == 1)
        },
    ]
}
