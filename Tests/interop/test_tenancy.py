"""Tenancy on real servers: organizations, invitations (consent), members,
collaborators that must be members, a role x operation matrix across two
organizations (REST and gRPC), plan quotas (429 / RESOURCE_EXHAUSTED with
retry-after, usage, metrics) and fair sharing of the in-process workers.

Servers (module-scoped unless said otherwise):

* `api_server` (conftest): the default plan (enterprise, no limits);
* `quota_server`: default plan `tiny` (concurrent_executions=2,
  executions_per_day=5, workflows=3; no request rate limit, so that polling
  does not run into it);
* `rpm_server`: default plan `rpm` (requests_per_minute=30 only);
* the starvation test starts its own server (default workers) and stops it.

Every user registered here gets an organization of their own, so each
quota test works in an organization nobody else touches.
"""

from __future__ import annotations

import datetime
import re
import socket
import threading
import time
import types
import uuid

import grpc
import pytest

import flags_support as fs
import weft_helpers as wh

TIMEOUT = 10
QUOTA_NAMES = ["concurrent_executions", "executions_per_day", "workflows", "schedules", "requests_per_minute"]
TINY = "tiny:concurrent_executions=2,executions_per_day=5,workflows=3"
RPM = "rpm:requests_per_minute=30"
NOOP = [{"key": "a", "name": "A", "action": "noop"}]
LONG_DELAY = [{"key": "wait", "name": "Wait", "action": "delay", "config": {"duration": "30s"}}]


# ---------------------------------------------------------------------------
# Servers and helpers
# ---------------------------------------------------------------------------


def _module_server(tmp_path_factory, name: str, *args: str):
    base = tmp_path_factory.mktemp(name)
    srv = wh.WeftServer(wh.weft_bin(), base / "data", base / "logs", args=(*wh.API_SERVER_ARGS, *args), name=name)
    srv.start(timeout=30)
    return srv


@pytest.fixture(scope="module")
def quota_server(tmp_path_factory, protos):
    srv = _module_server(tmp_path_factory, "tenancy-quota", "--plan", TINY, "--plan", RPM, "--default-plan", "tiny")
    yield srv
    wh.finish_servers([srv])  # SIGTERM; fails the teardown unless it exits cleanly


@pytest.fixture(scope="module")
def rpm_server(tmp_path_factory, protos):
    srv = _module_server(tmp_path_factory, "tenancy-rpm", "--plan", TINY, "--plan", RPM, "--default-plan", "rpm")
    yield srv
    wh.finish_servers([srv])


def uid() -> str:
    return uuid.uuid4().hex[:8]


def assert_error(r: wh.RestResponse, status: int, code: int, *fragments: str) -> dict:
    assert r.status == status, r
    body = r.json
    assert body.get("code") == code, body
    for fragment in fragments:
        assert fragment in body.get("message", ""), (fragment, body)
    return body


def retry_after(value) -> int:
    """A retry-after value: whole seconds, at least 1."""
    assert value is not None and re.fullmatch(r"[0-9]+", str(value)), f"retry-after {value!r}"
    assert int(value) >= 1, f"retry-after {value!r}"
    return int(value)


def md(user) -> tuple:
    return wh.grpc_auth(user)


def grpc_error(fn, *args, **kwargs) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as info:
        fn(*args, timeout=TIMEOUT, **kwargs)
    return info.value


def trailer(err: grpc.RpcError, name: str):
    for key, value in err.trailing_metadata() or ():
        if key == name:
            return value
    return None


def orgs_of(user: wh.ApiUser) -> list:
    r = user.rest.get("/orgs")
    assert r.status == 200, r
    return r.json["organizations"]


def own_org(user: wh.ApiUser) -> dict:
    orgs = orgs_of(user)
    assert orgs and orgs[0]["role"] == "admin", orgs
    return orgs[0]


def usage(user: wh.ApiUser, org_id: str) -> dict:
    """{quota name: (used, limit)} from GET /orgs/{id}/usage; int64 fields
    are proto3 JSON strings (a default 0 may be left out)."""
    r = user.rest.get(f"/orgs/{org_id}/usage")
    assert r.status == 200, r
    out = {}
    for q in r.json["quotas"]:
        for key in ("used", "limit"):
            assert isinstance(q.get(key, "0"), str), f"int64 {key} of {q['name']} is not a JSON string: {r.json}"
        out[q["name"]] = (int(q.get("used", "0")), int(q.get("limit", "0")))
    return out


def rejections(server, quota: str) -> float:
    return fs.metric(server, "weft_quota_rejections_total", quota=quota)


def cancel(user: wh.ApiUser, wid: str, eid: str) -> None:
    r = user.rest.post(f"/workflows/{wid}/executions/{eid}/cancel", {"reason": "test cleanup"})
    assert r.status == 200 or (r.status == 400 and r.json.get("code") == 9), r  # 9: it had already ended


def workers_of(server) -> int:
    m = re.search(r"engine: (\d+) in-process workers", server.stderr_text())
    assert m, server.stderr_tail()
    return int(m.group(1))


def stubs(protos, server):
    ch = wh.new_channel(server.target)
    v1 = protos.v1
    return types.SimpleNamespace(
        channel=ch,
        orgs=v1.organizations_pb2_grpc.OrganizationServiceStub(ch),
        workflows=v1.workflows_pb2_grpc.WorkflowServiceStub(ch),
        executions=v1.executions_pb2_grpc.ExecutionServiceStub(ch),
        collaborators=v1.collaborators_pb2_grpc.CollaboratorServiceStub(ch),
    )


# ---------------------------------------------------------------------------
# a. Registration creates an organization
# ---------------------------------------------------------------------------


def test_registration_creates_an_organization_with_its_user_as_admin(api_server, protos):
    name = f"Orla {uid()}"
    user = wh.register_and_login(api_server, name)
    orgs = orgs_of(user)
    assert len(orgs) == 1, orgs
    org = orgs[0]
    assert org["id"].startswith("org_"), org
    assert (org["name"], org["role"], org["plan"]) == (f"{name}'s organization", "admin", "enterprise"), org
    assert abs(wh.rfc3339_nanos(org["createdAt"]) / 1e9 - time.time()) < 300, org

    r = user.rest.get(f"/orgs/{org['id']}")
    assert r.status == 200 and r.json == org, r
    r = user.rest.get(f"/orgs/{org['id']}/members")
    assert r.status == 200, r
    members = r.json["members"]
    assert [(m["userId"], m["email"], m["name"], m["role"]) for m in members] == [
        (user.id, user.email, name, "admin")], members

    r = user.rest.get(f"/orgs/{org['id']}/usage")
    assert r.status == 200, r
    assert (r.json["orgId"], r.json["plan"]) == (org["id"], "enterprise"), r.json
    assert [q["name"] for q in r.json["quotas"]] == QUOTA_NAMES, r.json
    assert all(limit == 0 for _, limit in usage(user, org["id"]).values()), r.json  # enterprise: no limits
    # The fair share of the in-process workers: --org-worker-share (50 %) of them.
    assert r.json["workerSlots"] == workers_of(api_server) * 50 // 100, r.json

    # A workflow created without orgId lands in the caller's own organization.
    wf = fs.create_wf(user, NOOP)
    assert wf["orgId"] == org["id"], wf
    assert usage(user, org["id"])["workflows"][0] == 1

    # Each account gets an organization of its own.
    other = wh.register_and_login(api_server, f"Osk {uid()}")
    assert own_org(other)["id"] != org["id"]
    assert other.rest.get(f"/orgs/{org['id']}").status == 404

    # gRPC sees the same.
    g = stubs(protos, api_server)
    try:
        pb = protos.v1.organizations_pb2
        listed = g.orgs.ListOrganizations(pb.ListOrganizationsRequest(), metadata=md(user), timeout=TIMEOUT)
        assert [(o.id, o.name, o.role, o.plan) for o in listed.organizations] == [
            (org["id"], org["name"], "admin", "enterprise")]
        got = g.orgs.GetOrganization(pb.GetOrganizationRequest(org_id=org["id"]), metadata=md(user), timeout=TIMEOUT)
        assert (got.id, got.role) == (org["id"], "admin")
        err = grpc_error(g.orgs.GetOrganization, pb.GetOrganizationRequest(org_id=org["id"]), metadata=md(other))
        assert err.code() == grpc.StatusCode.NOT_FOUND, err
    finally:
        g.channel.close()


# ---------------------------------------------------------------------------
# b. Invitations: nobody joins without consent
# ---------------------------------------------------------------------------


def test_invitations_answer_alike_for_registered_and_unknown_emails(api_server):
    admin = wh.register_and_login(api_server, "Ines Admin")
    registered = wh.register_and_login(api_server, "Rita Registered")
    org_id = own_org(admin)["id"]
    unknown_email = wh.unique_email("nobody")
    known = admin.rest.post(f"/orgs/{org_id}/invitations", {"email": registered.email, "role": "member"})
    unknown = admin.rest.post(f"/orgs/{org_id}/invitations", {"email": unknown_email, "role": "member"})
    assert (known.status, unknown.status) == (201, 201), (known, unknown)
    assert known.header("content-type") == unknown.header("content-type")
    a, b = known.json, unknown.json
    assert sorted(a) == sorted(b), (a, b)
    varying = {"id", "email", "createdAt", "expiresAt"}
    assert {k: v for k, v in a.items() if k not in varying} == {k: v for k, v in b.items() if k not in varying}
    assert (a["email"], b["email"]) == (registered.email, unknown_email)
    assert (a["status"], a["role"], a["orgId"], a["invitedBy"]) == ("pending", "member", org_id, admin.id), a
    for inv in (a, b):
        life = (wh.rfc3339_nanos(inv["expiresAt"]) - wh.rfc3339_nanos(inv["createdAt"])) / 1e9
        assert life == 7 * 86400, inv
    # A second pending invitation to either is refused the same way.
    for email in (registered.email, unknown_email):
        assert_error(admin.rest.post(f"/orgs/{org_id}/invitations", {"email": email, "role": "admin"}), 409, 6,
                     "already pending")
    r = admin.rest.get(f"/orgs/{org_id}/invitations")
    assert r.status == 200, r
    assert {(i["email"], i["status"]) for i in r.json["invitations"]} == {
        (registered.email, "pending"), (unknown_email, "pending")}, r.json
    # The email registers later: the invitation waits for it.
    late = wh.register_and_login(api_server, "Lou Late", email=unknown_email)
    mine = late.rest.get("/users/me/invitations")
    assert mine.status == 200 and [i["id"] for i in mine.json["invitations"]] == [b["id"]], mine
    assert late.rest.get(f"/orgs/{org_id}").status == 404, "invited is not a member yet"
    r = late.rest.post(f"/invitations/{b['id']}/accept", {})
    assert r.status == 200 and (r.json["id"], r.json["role"]) == (org_id, "member"), r


def test_only_the_invited_account_can_accept(api_server):
    admin = wh.register_and_login(api_server, "Ada Admin")
    invited = wh.register_and_login(api_server, "Ivo Invited")
    stranger = wh.register_and_login(api_server, "Sam Stranger")
    org_id = own_org(admin)["id"]
    inv = admin.rest.post(f"/orgs/{org_id}/invitations", {"email": invited.email, "role": "member"})
    assert inv.status == 201, inv
    iid = inv.json["id"]

    mine = invited.rest.get("/users/me/invitations")
    assert mine.status == 200, mine
    assert [(i["id"], i["orgId"], i["orgName"], i["status"]) for i in mine.json["invitations"]] == [
        (iid, org_id, "Ada Admin's organization", "pending")], mine.json
    theirs = stranger.rest.get("/users/me/invitations")
    assert theirs.status == 200 and theirs.json.get("invitations", []) == [], theirs

    # Someone else holding the id can neither accept nor decline it.
    for verb in ("accept", "decline"):
        assert_error(stranger.rest.post(f"/invitations/{iid}/{verb}", {}), 404, 5,
                     f"no open invitation {iid}")
    assert_error(stranger.rest.get(f"/orgs/{org_id}"), 404, 5)
    assert_error(stranger.rest.post("/invitations/inv_01M00000000000000000000000/accept", {}), 404, 5,
                 "no open invitation")
    assert wh.RestClient(api_server).post(f"/invitations/{iid}/accept", {}).status == 401

    r = invited.rest.post(f"/invitations/{iid}/accept", {})
    assert r.status == 200, r
    assert (r.json["id"], r.json["role"], r.json["plan"]) == (org_id, "member", "enterprise"), r.json
    assert_error(invited.rest.post(f"/invitations/{iid}/accept", {}), 404, 5, "no open invitation")
    assert [(o["id"], o["role"]) for o in orgs_of(invited)][1:] == [(org_id, "member")]
    r = invited.rest.get(f"/orgs/{org_id}")
    assert r.status == 200 and r.json["role"] == "member", r
    r = admin.rest.get(f"/orgs/{org_id}/members")
    assert r.status == 200, r
    assert [(m["userId"], m["role"]) for m in r.json["members"]] == [(admin.id, "admin"), (invited.id, "member")]
    r = admin.rest.get(f"/orgs/{org_id}/invitations")
    assert [(i["id"], i["status"]) for i in r.json["invitations"]] == [(iid, "accepted")], r.json
    assert invited.rest.get("/users/me/invitations").json.get("invitations", []) == []

    # A member is not an admin: no inviting, no listing invitations, no removing others.
    assert_error(invited.rest.post(f"/orgs/{org_id}/invitations", {"email": wh.unique_email("x")}), 403, 7)
    assert_error(invited.rest.get(f"/orgs/{org_id}/invitations"), 403, 7)
    assert_error(invited.rest.delete(f"/orgs/{org_id}/members/{admin.id}"), 403, 7)
    # Non-members learn nothing either way.
    assert_error(stranger.rest.post(f"/orgs/{org_id}/invitations", {"email": wh.unique_email("x")}), 404, 5)
    assert_error(stranger.rest.get(f"/orgs/{org_id}/members"), 404, 5)
    assert_error(stranger.rest.get(f"/orgs/{org_id}/usage"), 404, 5)


def test_decline_revoke_leave_and_the_last_admin(api_server):
    admin = wh.register_and_login(api_server, "Dora Admin")
    decliner = wh.register_and_login(api_server, "Dan Decliner")
    revoked = wh.register_and_login(api_server, "Rex Revoked")
    second = wh.register_and_login(api_server, "Sid Second")
    org_id = own_org(admin)["id"]
    invite = lambda email, role="member": admin.rest.post(f"/orgs/{org_id}/invitations", {"email": email, "role": role})  # noqa: E731

    # Decline: answered, not a member, cannot accept afterwards.
    d = invite(decliner.email)
    assert d.status == 201, d
    r = decliner.rest.post(f"/invitations/{d.json['id']}/decline", {})
    assert r.status == 200 and (r.json["id"], r.json["status"]) == (d.json["id"], "declined"), r
    assert_error(decliner.rest.post(f"/invitations/{d.json['id']}/accept", {}), 404, 5)
    assert_error(decliner.rest.get(f"/orgs/{org_id}"), 404, 5)
    assert len(orgs_of(decliner)) == 1
    # A declined invitation is no longer pending: a new one may be sent.
    assert invite(decliner.email).status == 201

    # Revoke: gone for the invitee.
    v = invite(revoked.email)
    assert v.status == 201, v
    r = admin.rest.delete(f"/orgs/{org_id}/invitations/{v.json['id']}")
    assert r.status == 204, r
    assert_error(admin.rest.delete(f"/orgs/{org_id}/invitations/{v.json['id']}"), 404, 5)
    assert revoked.rest.get("/users/me/invitations").json.get("invitations", []) == []
    assert_error(revoked.rest.post(f"/invitations/{v.json['id']}/accept", {}), 404, 5)
    assert_error(revoked.rest.get(f"/orgs/{org_id}"), 404, 5)
    statuses = {i["id"]: i["status"] for i in admin.rest.get(f"/orgs/{org_id}/invitations").json["invitations"]}
    assert (statuses[d.json["id"]], statuses[v.json["id"]]) == ("declined", "revoked"), statuses

    # Bad invitations.
    assert_error(invite("not-an-email"), 400, 3)
    assert_error(invite(wh.unique_email("x"), "owner"), 400, 3, "role")

    # An admin invitation makes an admin, who then manages invitations.
    s = invite(second.email, "admin")
    assert s.status == 201 and s.json["role"] == "admin", s
    r = second.rest.post(f"/invitations/{s.json['id']}/accept", {})
    assert r.status == 200 and r.json["role"] == "admin", r
    assert second.rest.get(f"/orgs/{org_id}/invitations").status == 200

    # Members leave; admins remove; the last admin cannot go.
    only = own_org(decliner)["id"]
    assert_error(decliner.rest.delete(f"/orgs/{only}/members/{decliner.id}"), 400, 9, "must keep an admin")
    r = admin.rest.delete(f"/orgs/{org_id}/members/{second.id}")
    assert r.status == 204, r
    assert_error(second.rest.get(f"/orgs/{org_id}"), 404, 5)
    assert_error(admin.rest.delete(f"/orgs/{org_id}/members/{admin.id}"), 400, 9, "must keep an admin")
    r = admin.rest.get(f"/orgs/{org_id}/members")
    assert [(m["userId"], m["role"]) for m in r.json["members"]] == [(admin.id, "admin")], r.json


# ---------------------------------------------------------------------------
# c. Collaborators must be members
# ---------------------------------------------------------------------------


def test_collaborators_must_be_members_of_the_workflows_organization(api_server, protos):
    owner = wh.register_and_login(api_server, "Olga Owner")
    outsider = wh.register_and_login(api_server, "Otto Outsider")
    wf = fs.create_wf(owner, NOOP)
    org_id = wf["orgId"]
    coll = f"/workflows/{wf['id']}/collaborators"

    def refused(user_id: str):
        body = assert_error(owner.rest.post(coll, {"userId": user_id, "role": "viewer"}), 404, 5)
        assert body["message"] == (f"no member {user_id} in organization {org_id}; "
                                   "invite them to the organization first"), body

    refused(outsider.id)
    refused("usr_01M00000000000000000000000")  # a made-up id: the same answer
    # Invited is not enough: only an accepted invitation makes a member.
    inv = owner.rest.post(f"/orgs/{org_id}/invitations", {"email": outsider.email, "role": "member"})
    assert inv.status == 201, inv
    refused(outsider.id)
    assert_error(outsider.rest.get(f"/workflows/{wf['id']}"), 404, 5)
    g = stubs(protos, api_server)
    try:
        pb = protos.v1.collaborators_pb2
        err = grpc_error(g.collaborators.AddCollaborator,
                         pb.AddCollaboratorRequest(workflow_id=wf["id"], user_id=outsider.id, role=pb.Collaborator.viewer),
                         metadata=md(owner))
        assert err.code() == grpc.StatusCode.NOT_FOUND and "invite them to the organization first" in err.details(), err
    finally:
        g.channel.close()

    r = outsider.rest.post(f"/invitations/{inv.json['id']}/accept", {})
    assert r.status == 200, r
    # A member without a role still does not see the workflow.
    assert_error(outsider.rest.get(f"/workflows/{wf['id']}"), 404, 5)
    r = owner.rest.post(coll, {"userId": outsider.id, "role": "viewer"})
    assert r.status == 201 and (r.json["userId"], r.json["role"]) == (outsider.id, "viewer"), r
    got = outsider.rest.get(f"/workflows/{wf['id']}")
    assert got.status == 200 and got.json["role"] == "viewer", got

    # Creating a workflow in an organization takes membership too.
    assert_error(outsider.rest.post("/workflows", {"name": "elsewhere", "orgId": own_org(owner)["id"] + "x",
                                                   "tasks": []}), 404, 5)
    r = outsider.rest.post("/workflows", {"name": "in the joined org", "orgId": org_id, "tasks": []})
    assert r.status == 201 and (r.json["orgId"], r.json["ownerId"]) == (org_id, outsider.id), r
    stranger = wh.register_and_login(api_server, "Stu Stranger")
    assert_error(stranger.rest.post("/workflows", {"name": "x", "orgId": org_id, "tasks": []}), 404, 5)


def test_leaving_the_organization_ends_access_to_its_workflows(api_server):
    """A collaborator who is removed from (or leaves) the workflow's
    organization no longer is a member, which collaborators must be."""
    owner = wh.register_and_login(api_server, "Lena Owner")
    removed = wh.register_and_login(api_server, "Rob Removed")
    leaver = wh.register_and_login(api_server, "Lee Leaver")
    wf = fs.create_wf(owner, NOOP)
    org_id = wf["orgId"]
    for user in (removed, leaver):
        wh.invite_and_accept(api_server, owner.token, user.token, org_id)
        r = owner.rest.post(f"/workflows/{wf['id']}/collaborators", {"userId": user.id, "role": "editor"})
        assert r.status == 201, r
        assert user.rest.get(f"/workflows/{wf['id']}").status == 200
    assert owner.rest.delete(f"/orgs/{org_id}/members/{removed.id}").status == 204
    assert leaver.rest.delete(f"/orgs/{org_id}/members/{leaver.id}").status == 204
    for user in (removed, leaver):
        assert_error(user.rest.get(f"/orgs/{org_id}"), 404, 5)
        assert_error(user.rest.get(f"/workflows/{wf['id']}"), 404, 5)
        assert_error(user.rest.post(f"/workflows/{wf['id']}/execute", {}), 404, 5)


# ---------------------------------------------------------------------------
# d. Roles x operations across two organizations
# ---------------------------------------------------------------------------

# Expected REST status per user and operation.
OPS = ["get_workflow", "put_workflow", "execute", "list_executions", "add_collaborator", "delete_workflow",
       "get_org", "get_usage", "invite", "list_invitations"]
REST_EXPECTED = {
    "owner":   [200, 200, 202, 200, 201, 204, 200, 200, 201, 200],
    "editor":  [200, 200, 202, 200, 403, 403, 200, 200, 403, 403],
    "viewer":  [200, 403, 403, 200, 403, 403, 200, 200, 403, 403],
    "member":  [404, 404, 404, 404, 404, 404, 200, 200, 403, 403],
    "outside": [404, 404, 404, 404, 404, 404, 404, 404, 404, 404],
}


@pytest.fixture(scope="module")
def matrix(api_server):
    """Org A: its admin owns workflow W; members with the editor and viewer
    roles on W, a member without a role, and a spare member the owner adds
    as a collaborator. Org B: another user's own organization (its admin)."""
    owner = wh.register_and_login(api_server, "Mona Owner")
    users = {
        "owner": owner,
        "editor": wh.register_and_login(api_server, "Ed Editor"),
        "viewer": wh.register_and_login(api_server, "Vi Viewer"),
        "member": wh.register_and_login(api_server, "Mel Member"),
        "outside": wh.register_and_login(api_server, "Bea Badmin"),
    }
    spare = wh.register_and_login(api_server, "Spa Spare")
    wf = fs.create_wf(owner, NOOP, name="matrix W")
    org_a = wf["orgId"]
    for role in ("editor", "viewer", "member"):
        wh.invite_and_accept(api_server, owner.token, users[role].token, org_a)
    wh.invite_and_accept(api_server, owner.token, spare.token, org_a)
    for role in ("editor", "viewer"):
        r = owner.rest.post(f"/workflows/{wf['id']}/collaborators", {"userId": users[role].id, "role": role})
        assert r.status == 201, r
    org_b = own_org(users["outside"])["id"]
    assert org_b != org_a
    return types.SimpleNamespace(users=users, spare=spare, wf=wf, org_a=org_a, org_b=org_b)


def _rest_op(mx, who: str, op: str) -> int:
    user, owner, wid, org = mx.users[who], mx.users["owner"], mx.wf["id"], mx.org_a
    rest = user.rest
    if op == "get_workflow":
        return rest.get(f"/workflows/{wid}").status
    if op == "put_workflow":
        current = owner.rest.get(f"/workflows/{wid}").json
        return rest.put(f"/workflows/{wid}", {"name": "matrix W", "tasks": current["tasks"]}).status
    if op == "execute":
        return rest.post(f"/workflows/{wid}/execute", {}).status
    if op == "list_executions":
        return rest.get(f"/workflows/{wid}/executions").status
    if op == "add_collaborator":
        r = rest.post(f"/workflows/{wid}/collaborators", {"userId": mx.spare.id, "role": "viewer"})
        if r.status == 201:  # leave W as it was for the next user
            assert owner.rest.delete(f"/workflows/{wid}/collaborators/{mx.spare.id}").status == 204
        return r.status
    if op == "delete_workflow":
        # The owner may: shown on a workflow of its own, so W stays for the others.
        target = fs.create_wf(owner, NOOP)["id"] if who == "owner" else wid
        return rest.delete(f"/workflows/{target}").status
    if op == "get_org":
        return rest.get(f"/orgs/{org}").status
    if op == "get_usage":
        return rest.get(f"/orgs/{org}/usage").status
    if op == "invite":
        return rest.post(f"/orgs/{org}/invitations", {"email": wh.unique_email("mx"), "role": "member"}).status
    if op == "list_invitations":
        return rest.get(f"/orgs/{org}/invitations").status
    raise AssertionError(op)


@pytest.mark.parametrize("who", list(REST_EXPECTED))
def test_role_matrix_over_rest(matrix, who):
    got = {op: _rest_op(matrix, who, op) for op in OPS}
    want = dict(zip(OPS, REST_EXPECTED[who]))
    assert got == want, {op: (got[op], want[op]) for op in OPS if got[op] != want[op]}
    # The workflow survived every refused delete.
    assert matrix.users["owner"].rest.get(f"/workflows/{matrix.wf['id']}").status == 200


OK, NF, PD = grpc.StatusCode.OK, grpc.StatusCode.NOT_FOUND, grpc.StatusCode.PERMISSION_DENIED
GRPC_OPS = ["GetWorkflow", "UpdateWorkflow", "ExecuteWorkflow", "AddCollaborator", "GetOrganization", "GetUsage",
            "CreateInvitation", "ListInvitations"]
GRPC_EXPECTED = {
    "owner":   [OK, OK, OK, OK, OK, OK, OK, OK],
    "editor":  [OK, OK, OK, PD, OK, OK, PD, PD],
    "viewer":  [OK, PD, PD, PD, OK, OK, PD, PD],
    "member":  [NF, NF, NF, NF, OK, OK, PD, PD],
    "outside": [NF, NF, NF, NF, NF, NF, NF, NF],
}


@pytest.mark.parametrize("who", list(GRPC_EXPECTED))
def test_role_matrix_over_grpc(matrix, protos, api_server, who):
    v1 = protos.v1
    wpb, epb, cpb, opb = v1.workflows_pb2, v1.executions_pb2, v1.collaborators_pb2, v1.organizations_pb2
    user, owner, wid, org = matrix.users[who], matrix.users["owner"], matrix.wf["id"], matrix.org_a
    g = stubs(protos, api_server)
    try:
        current = g.workflows.GetWorkflow(wpb.GetWorkflowRequest(workflow_id=wid), metadata=md(owner), timeout=TIMEOUT)
        calls = {
            "GetWorkflow": lambda: g.workflows.GetWorkflow(wpb.GetWorkflowRequest(workflow_id=wid), metadata=md(user),
                                                           timeout=TIMEOUT),
            "UpdateWorkflow": lambda: g.workflows.UpdateWorkflow(
                wpb.UpdateWorkflowRequest(workflow_id=wid, name="matrix W", tasks=list(current.tasks)),
                metadata=md(user), timeout=TIMEOUT),
            "ExecuteWorkflow": lambda: g.executions.ExecuteWorkflow(epb.ExecuteWorkflowRequest(workflow_id=wid),
                                                                    metadata=md(user), timeout=TIMEOUT),
            "AddCollaborator": lambda: g.collaborators.AddCollaborator(
                cpb.AddCollaboratorRequest(workflow_id=wid, user_id=matrix.spare.id, role=cpb.Collaborator.viewer),
                metadata=md(user), timeout=TIMEOUT),
            "GetOrganization": lambda: g.orgs.GetOrganization(opb.GetOrganizationRequest(org_id=org), metadata=md(user),
                                                              timeout=TIMEOUT),
            "GetUsage": lambda: g.orgs.GetUsage(opb.GetUsageRequest(org_id=org), metadata=md(user), timeout=TIMEOUT),
            "CreateInvitation": lambda: g.orgs.CreateInvitation(
                opb.CreateInvitationRequest(org_id=org, email=wh.unique_email("gmx"), role="member"),
                metadata=md(user), timeout=TIMEOUT),
            "ListInvitations": lambda: g.orgs.ListInvitations(opb.ListInvitationsRequest(org_id=org), metadata=md(user),
                                                              timeout=TIMEOUT),
        }
        got = {}
        for op in GRPC_OPS:
            try:
                calls[op]()
                got[op] = OK
                if op == "AddCollaborator":
                    assert owner.rest.delete(f"/workflows/{wid}/collaborators/{matrix.spare.id}").status == 204
            except grpc.RpcError as err:
                got[op] = err.code()
        want = dict(zip(GRPC_OPS, GRPC_EXPECTED[who]))
        assert got == want, {op: (got[op], want[op]) for op in GRPC_OPS if got[op] != want[op]}
    finally:
        g.channel.close()


# ---------------------------------------------------------------------------
# e. Quotas
# ---------------------------------------------------------------------------


def test_concurrent_executions_quota(quota_server, protos):
    user = wh.register_and_login(quota_server, "Cora Concurrent")
    other = wh.register_and_login(quota_server, "Nils Neighbour")
    org_id = own_org(user)["id"]
    assert own_org(user)["plan"] == "tiny"
    wf = fs.create_wf(user, LONG_DELAY)
    before = rejections(quota_server, "concurrent_executions")
    started = []
    g = stubs(protos, quota_server)
    try:
        started = [fs.execute(user, wf["id"]) for _ in range(2)]
        assert usage(user, org_id)["concurrent_executions"] == (2, 2)
        r = user.rest.post(f"/workflows/{wf['id']}/execute", {})
        body = assert_error(r, 429, 8, "concurrent_executions")
        assert retry_after(r.header("retry-after")), r.headers
        assert set(body) <= {"code", "message", "details"}, body
        err = grpc_error(g.executions.ExecuteWorkflow, protos.v1.executions_pb2.ExecuteWorkflowRequest(workflow_id=wf["id"]),
                         metadata=md(user))
        assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, err
        assert "concurrent_executions" in err.details(), err.details()
        retry_after(trailer(err, "retry-after"))
        assert rejections(quota_server, "concurrent_executions") == before + 2
        # Refused executions were not started and not counted for the day.
        listed = wh.all_pages(user.rest, f"/workflows/{wf['id']}/executions", "executions")
        assert sorted(e["executionId"] for e in listed) == sorted(started), listed
        assert usage(user, org_id)["executions_per_day"] == (2, 5)
        # The quota is the organization's: a neighbour's executions run.
        fs.run(other, fs.create_wf(other, NOOP)["id"])
        # Ending one frees its place.
        cancel(user, wf["id"], started[0])
        wh.wait_until(lambda: usage(user, org_id)["concurrent_executions"] == (1, 2), 5, message="one running")
        started.append(fs.execute(user, wf["id"]))
        assert usage(user, org_id)["concurrent_executions"] == (2, 2)
    finally:
        for eid in started:
            cancel(user, wf["id"], eid)
        g.channel.close()
    wh.wait_until(lambda: usage(user, org_id)["concurrent_executions"] == (0, 2), 5, message="none running")


def test_executions_per_day_quota(quota_server, protos):
    now = datetime.datetime.now(datetime.timezone.utc)
    to_midnight = (datetime.datetime.combine(now.date() + datetime.timedelta(days=1), datetime.time(),
                                             tzinfo=datetime.timezone.utc) - now).total_seconds()
    if to_midnight < 120:
        pytest.skip("too close to 00:00 UTC, when the daily count resets")
    user = wh.register_and_login(quota_server, "Dag Daily")
    org_id = own_org(user)["id"]
    wf = fs.create_wf(user, NOOP)
    before = rejections(quota_server, "executions_per_day")
    for _ in range(5):
        assert fs.run(user, wf["id"])["status"] == "Completed"  # one at a time: under concurrent_executions
    assert usage(user, org_id)["executions_per_day"] == (5, 5)
    r = user.rest.post(f"/workflows/{wf['id']}/execute", {})
    assert_error(r, 429, 8, "executions_per_day")
    # Retry after the next 00:00 UTC.
    assert abs(retry_after(r.header("retry-after")) - to_midnight) < 60, (r.header("retry-after"), to_midnight)
    g = stubs(protos, quota_server)
    try:
        err = grpc_error(g.executions.ExecuteWorkflow, protos.v1.executions_pb2.ExecuteWorkflowRequest(workflow_id=wf["id"]),
                         metadata=md(user))
        assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and "executions_per_day" in err.details(), err
        assert abs(retry_after(trailer(err, "retry-after")) - to_midnight) < 60
    finally:
        g.channel.close()
    assert rejections(quota_server, "executions_per_day") == before + 2
    assert len(wh.all_pages(user.rest, f"/workflows/{wf['id']}/executions", "executions")) == 5
    assert usage(user, org_id)["executions_per_day"] == (5, 5)


def test_workflows_quota(quota_server):
    user = wh.register_and_login(quota_server, "Wim Workflows")
    org_id = own_org(user)["id"]
    before = rejections(quota_server, "workflows")
    made = [fs.create_wf(user, NOOP) for _ in range(3)]
    assert usage(user, org_id)["workflows"] == (3, 3)
    r = user.rest.post("/workflows", {"name": "one too many", "tasks": NOOP})
    assert_error(r, 429, 8, "workflows")
    retry_after(r.header("retry-after"))
    assert rejections(quota_server, "workflows") == before + 1
    assert len(wh.all_pages(user.rest, "/workflows", "workflows")) == 3
    # A deleted workflow no longer counts.
    assert user.rest.delete(f"/workflows/{made[0]['id']}").status == 204
    assert usage(user, org_id)["workflows"] == (2, 3)
    fs.create_wf(user, NOOP)
    assert usage(user, org_id)["workflows"] == (3, 3)


def test_requests_per_minute_quota_is_per_organization(rpm_server, protos):
    hasty = wh.register_and_login(rpm_server, "Hal Hasty")
    calm = wh.register_and_login(rpm_server, "Cal Calm")
    hasty_org, calm_org = own_org(hasty)["id"], own_org(calm)["id"]
    assert own_org(calm)["plan"] == "rpm"
    before = rejections(rpm_server, "requests_per_minute")
    statuses, refusals = [], []
    for _ in range(45):
        r = hasty.rest.get("/users/me")
        statuses.append(r.status)
        if r.status == 429:
            refusals.append(r)
    # A burst: the bucket (10 seconds' worth, at least 10 calls) empties,
    # then every call is refused.
    first_refused = statuses.index(429) if 429 in statuses else None
    assert first_refused is not None and 7 <= first_refused <= 11, statuses
    assert set(statuses[:first_refused]) == {200} and set(statuses[first_refused:]) == {429}, statuses
    waits = {retry_after(r.header("retry-after")) for r in refusals}
    assert max(waits) <= 2, waits  # 30 a minute: a token every 2 s
    assert_error(refusals[-1], 429, 8, "requests_per_minute")
    # Another organization's user is not slowed down.
    assert [calm.rest.get("/users/me").status for _ in range(5)] == [200] * 5
    # `used` is the current rate as calls per minute, over the burst window.
    calm_usage = usage(calm, calm_org)["requests_per_minute"]
    assert calm_usage[1] == 30 and 9 <= calm_usage[0] <= 27, calm_usage
    # gRPC is charged to the same bucket.
    g = stubs(protos, rpm_server)
    try:
        err = grpc_error(g.orgs.ListOrganizations, protos.v1.organizations_pb2.ListOrganizationsRequest(),
                         metadata=md(hasty))
        assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and "requests_per_minute" in err.details(), err
        wait = retry_after(trailer(err, "retry-after"))
    finally:
        g.channel.close()
    assert rejections(rpm_server, "requests_per_minute") == before + len(refusals) + 1
    # retry-after tells the truth: after it, a call goes through.
    time.sleep(wait + 0.2)
    used, limit = usage(hasty, hasty_org)["requests_per_minute"]
    assert limit == 30 and used >= 25, (used, limit)


# ---------------------------------------------------------------------------
# f. Fair sharing of the in-process workers
# ---------------------------------------------------------------------------


class SilentListener:
    """A TCP listener on 127.0.0.1 that accepts connections and never answers."""

    def __init__(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(1024)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.conns: list[socket.socket] = []
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self):
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            with self.lock:
                self.conns.append(conn)

    @property
    def accepted(self) -> int:
        with self.lock:
            return len(self.conns)

    def close(self):
        self.stop.set()
        self.thread.join(2)
        with self.lock:
            for c in self.conns:
                c.close()
        self.sock.close()


def test_a_busy_organization_cannot_starve_another(server_factory):
    srv = server_factory(*wh.API_SERVER_ARGS)
    share = workers_of(srv) * 50 // 100  # --org-worker-share 50 (the default)
    listener = SilentListener()
    busy = wh.register_and_login(srv, "Bus Busy")
    light = wh.register_and_login(srv, "Lil Light")
    hog = fs.create_wf(busy, [{"key": "call", "name": "Call", "action": "http", "timeout": "60s",
                               "retry": {"maxAttempts": 1},
                               "config": {"url": f"http://127.0.0.1:{listener.port}/never"}}])
    quick = fs.create_wf(light, NOOP)
    eids = []
    try:
        eids = [fs.execute(busy, hog["id"], priority=100) for _ in range(2 * share)]
        wh.wait_until(lambda: listener.accepted >= share, 20,
                      message=lambda: f"{share} connections from the busy organization (got {listener.accepted})")

        def split():
            m = wh.fetch_metrics(srv)
            return (m.total("weft_queue_depth", queue="builtin", state="leased") == share
                    and m.total("weft_queue_depth", queue="builtin", state="ready") == share and m)

        wh.wait_until(split, 10, message=f"{share} leased and {share} ready in the builtin queue")
        assert own_org(busy)["id"] == hog["orgId"]
        assert busy.rest.get(f"/orgs/{hog['orgId']}/usage").json["workerSlots"] == share

        t0 = time.monotonic()
        done = fs.run(light, quick["id"], timeout=15)
        took = time.monotonic() - t0
        held = listener.accepted
        print(f"\nthe light organization's noop execution completed in {took:.3f}s while the busy one "
              f"held {held} listener connections (share {share}) with {2 * share} executions")
        assert done["status"] == "Completed", done
        assert took < 3, f"a one-task noop execution of another organization took {took:.2f}s"
        # Still no more than the share, and the rest of the busy work waits.
        assert held <= share, f"the listener got {held} connections from one organization; its share is {share}"
        assert wh.fetch_metrics(srv).total("weft_queue_depth", queue="builtin", state="ready") == share
    finally:
        # The queued ones first (newest first), so that no cancel frees a
        # slot for one of them.
        for eid in reversed(eids):
            cancel(busy, hog["id"], eid)
        listener.close()
