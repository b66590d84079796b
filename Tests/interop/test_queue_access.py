"""External queues belong to organizations, with explicit grants
(weft.v1.QueueAccessService), on a real server.

Organization A: its admin `owner` (who runs the workers), a second admin,
`editor` (a member, editor of the owner's workflows) and `wm` (a member who
runs a worker).  `stranger` is the admin of an organization of their own.

* Grants: `PUT /orgs/{orgId}/queues/{queue}/grants/{userId}` (admins only;
  the user must be a member), `GET …/grants`, `DELETE …/{userId}`; bad
  queue names 400, members 403, strangers 404, anonymous 401.
* Submit: the issue's scenario -- an editor added an external task on the
  owner's queue and the owner's worker received its input -- is refused: a
  save (PUT workflow, POST /tasks, a workflow of their own in A) that puts a
  task on queue Q without the `submit` grant is 403 naming the queue, also
  when the workflow already has a task on Q, and the owner's worker receives
  nothing of it.  With the grant the save works; the task the owner's worker
  leases names who started the execution (`startedBy`) and the organization
  (`orgId`).
* Poll: admins poll any queue of their organization (no grant); a member
  without `poll` on Q gets 403 naming the queue (REST and gRPC), with it the
  task; a grant on Q is not one on Q2; a queue name means the poller's own
  organization unless `orgId` says otherwise.
* Leases: Heartbeat, CompleteTask and FailTask with a lease token by someone
  who may not poll its queue answer 400 FAILED_PRECONDITION "the lease is no
  longer held" (as for a lost lease), also once the poll grant is revoked
  while the lease runs; the task is handed out again when the lease expires.
"""

from __future__ import annotations

import types
import uuid

import grpc
import pytest
from google.protobuf import duration_pb2

import weft_helpers as wh
from test_workers import complete, ext, fail, heartbeat, new_queue, no_task, poll

TIMEOUT = 10
LOST = "the lease is no longer held"
GRANT_FIELDS = {"orgId", "queue", "userId", "submit", "poll", "updatedAt"}


def uid() -> str:
    return uuid.uuid4().hex[:8]


def assert_error(r: wh.RestResponse, status: int, code: int, *fragments: str) -> dict:
    assert r.status == status, r
    body = r.json
    assert body.get("code") == code, body
    for fragment in fragments:
        assert fragment in body.get("message", ""), (fragment, body)
    return body


def grants_url(org: str, queue: str, user_id: str = "") -> str:
    return f"/orgs/{org}/queues/{queue}/grants" + (f"/{user_id}" if user_id else "")


def grant(admin: wh.ApiUser, org: str, queue: str, user_id: str, submit=False, poll_=False) -> dict:
    r = admin.rest.put(grants_url(org, queue, user_id), {"submit": submit, "poll": poll_})
    assert r.status == 200, r
    return r.json


def revoke(admin: wh.ApiUser, org: str, queue: str, user_id: str):
    r = admin.rest.delete(grants_url(org, queue, user_id))
    assert r.status in (200, 204), r


def create_wf(user: wh.ApiUser, tasks, org: str | None = None) -> wh.RestResponse:
    body = {"name": f"queues {uid()}", "tasks": list(tasks)}
    if org:
        body["orgId"] = org
    return user.rest.post("/workflows", body)


def created(r: wh.RestResponse) -> dict:
    assert r.status == 201, r
    return r.json


def execute(user: wh.ApiUser, wid: str, input=None) -> str:
    r = user.rest.post(f"/workflows/{wid}/execute", {"input": input or {}})
    assert r.status == 202, r
    return r.json["executionId"]


def get_execution(user: wh.ApiUser, wid: str, eid: str) -> dict:
    r = user.rest.get(f"/workflows/{wid}/executions/{eid}")
    assert r.status == 200, r
    return r.json


def leased(user: wh.ApiUser, queue: str, org: str | None = None, wait="5s", lease="30s") -> dict:
    extra = {"orgId": org} if org else {}
    r = poll(user, queue, wait=wait, lease=lease, **extra)
    assert r.status == 200, r
    task = r.json.get("task")
    assert task, f"no task on {queue} (org {org}) within {wait}: {r}"
    return task


def with_task(tasks, task) -> list:
    """A GET result's tasks plus one more (ids kept)."""
    return [*tasks, task]


@pytest.fixture(scope="module")
def org_a(api_server):
    owner = wh.register_and_login(api_server, "Olga Owner")
    org = wh.own_org_id(api_server, owner.token)
    editor = wh.register_and_login(api_server, "Eddie Editor")
    wm = wh.register_and_login(api_server, "Wanda Worker")
    admin2 = wh.register_and_login(api_server, "Adam Second")
    for user, role in ((editor, "member"), (wm, "member"), (admin2, "admin")):
        wh.invite_and_accept(api_server, owner.token, user.token, org, role=role)
    stranger = wh.register_and_login(api_server, "Stan Stranger")
    return types.SimpleNamespace(org=org, owner=owner, editor=editor, wm=wm, admin2=admin2, stranger=stranger,
                                 stranger_org=wh.own_org_id(api_server, stranger.token))


def shared_workflow(a, tasks) -> dict:
    """A workflow of the owner with `editor` as its editor."""
    wf = created(create_wf(a.owner, tasks))
    r = a.owner.rest.post(f"/workflows/{wf['id']}/collaborators", {"userId": a.editor.id, "role": "editor"})
    assert r.status == 201, r
    return wf


# ---------------------------------------------------------------------------
# Grants
# ---------------------------------------------------------------------------


def test_grants_are_set_listed_and_deleted_by_admins(api_server, org_a):
    a, q = org_a, new_queue()
    assert a.owner.rest.get(grants_url(a.org, q)).json.get("grants", []) == []
    g = grant(a.owner, a.org, q, a.wm.id, submit=True, poll_=False)
    assert set(g) == GRANT_FIELDS, g
    assert (g["orgId"], g["queue"], g["userId"], g["submit"], g["poll"]) == (a.org, q, a.wm.id, True, False), g
    grant(a.owner, a.org, q, a.editor.id, poll_=True)
    r = a.owner.rest.get(grants_url(a.org, q))
    assert r.status == 200, r
    assert sorted((x["userId"], x["submit"], x["poll"]) for x in r.json["grants"]) == sorted(
        [(a.wm.id, True, False), (a.editor.id, False, True)]), r.json
    # A second PUT replaces the grant; another admin may do it too.
    g2 = grant(a.admin2, a.org, q, a.wm.id, submit=False, poll_=True)
    assert (g2["submit"], g2["poll"]) == (False, True), g2
    assert wh.rfc3339_nanos(g2["updatedAt"]) >= wh.rfc3339_nanos(g["updatedAt"])
    listed = {x["userId"]: x for x in a.owner.rest.get(grants_url(a.org, q)).json["grants"]}
    assert (listed[a.wm.id]["submit"], listed[a.wm.id]["poll"]) == (False, True), listed
    # Grants are per queue.
    assert a.owner.rest.get(grants_url(a.org, new_queue())).json.get("grants", []) == []

    revoke(a.owner, a.org, q, a.wm.id)
    assert [x["userId"] for x in a.owner.rest.get(grants_url(a.org, q)).json["grants"]] == [a.editor.id]
    revoke(a.owner, a.org, q, a.editor.id)
    assert a.owner.rest.get(grants_url(a.org, q)).json.get("grants", []) == []

    # Members may not grant (not even themselves); strangers see nothing.
    for member in (a.editor, a.wm):
        assert_error(member.rest.put(grants_url(a.org, q, member.id), {"submit": True, "poll": True}), 403, 7)
        assert_error(member.rest.delete(grants_url(a.org, q, a.editor.id)), 403, 7)
    assert_error(a.stranger.rest.put(grants_url(a.org, q, a.stranger.id), {"submit": True, "poll": True}), 404, 5)
    assert_error(a.stranger.rest.get(grants_url(a.org, q)), 404, 5)
    assert_error(wh.RestClient(api_server).get(grants_url(a.org, q)), 401, 16)
    assert a.owner.rest.get(grants_url(a.org, q)).json.get("grants", []) == []
    # Only members can be granted anything; queue names are checked.
    assert_error(a.owner.rest.put(grants_url(a.org, q, a.stranger.id), {"submit": True, "poll": True}), 404, 5,
                 a.stranger.id)
    for bad in ("bad%20name", "a" * 65, "sl%2Fash"):
        assert_error(a.owner.rest.put(grants_url(a.org, bad, a.wm.id), {"submit": True}), 400, 3, "queue")


# ---------------------------------------------------------------------------
# Submit
# ---------------------------------------------------------------------------


def test_an_editor_cannot_put_tasks_on_the_owners_queue_without_submit(org_a):
    """The issue's scenario: the editor's external task must not reach the
    owner's worker."""
    a, q = org_a, new_queue()
    wf = shared_workflow(a, [{"key": "start", "name": "Start", "action": "noop"}])
    wid = wf["id"]
    evil = ext("steal", q, input={"from": "editor", "secret": "{{ input.apiKey }}"}, depends=["start"])
    current = a.editor.rest.get(f"/workflows/{wid}").json

    r = a.editor.rest.put(f"/workflows/{wid}", {**current, "tasks": with_task(current["tasks"], evil)})
    assert_error(r, 403, 7, f'"{q}"', a.org)
    r = a.editor.rest.post("/tasks", {"workflowId": wid, **evil})
    assert_error(r, 403, 7, f'"{q}"')
    r = create_wf(a.editor, [ext("mine", q)], org=a.org)
    assert_error(r, 403, 7, f'"{q}"')
    # Nothing changed, and the owner's worker gets nothing.
    after = a.owner.rest.get(f"/workflows/{wid}").json
    assert [t["key"] for t in after["tasks"]] == ["start"] and after["version"] == wf["version"], after
    eid = execute(a.owner, wid, {"apiKey": "owner-key"})
    assert no_task(poll(a.owner, q, wait="1s")), "the owner's worker received a task the editor put on its queue"
    assert get_execution(a.owner, wid, eid)["status"] in ("Completed", "Running")

    # The editor may still change everything else.
    current = a.editor.rest.get(f"/workflows/{wid}").json
    r = a.editor.rest.put(f"/workflows/{wid}", {**current, "tasks": with_task(current["tasks"], {
        "key": "note", "name": "Note", "action": "log", "config": {"message": "hi"}, "dependsOn": ["start"]})})
    assert r.status == 200, r


def test_an_editor_cannot_add_a_second_task_on_a_queue_the_workflow_already_uses(org_a):
    """The owner's workflow already has an external task on Q: the editor's
    new task on Q is still a new task put on the owner's queue, with an input
    the editor chose (here: the owner's execution input) -- the issue's
    scenario again.  docs/TENANCY.md lets "queues the definition used already
    stay allowed"; that must cover the tasks already there, not new ones."""
    a, q = org_a, new_queue()
    wf = shared_workflow(a, [ext("own", q, input={"from": "owner"})])
    wid = wf["id"]
    evil = ext("steal", q, input={"from": "editor", "key": "{{ input.apiKey }}"})
    current = a.editor.rest.get(f"/workflows/{wid}").json
    put = a.editor.rest.put(f"/workflows/{wid}", {**current, "tasks": with_task(current["tasks"], evil)})
    post = a.editor.rest.post("/tasks", {"workflowId": wid, **{**evil, "key": "steal2", "name": "Steal2"}})
    after = a.owner.rest.get(f"/workflows/{wid}").json
    keys = [t["key"] for t in after["tasks"]]
    if put.status == 200 or post.status == 201:  # show what the owner's worker then receives
        eid = execute(a.owner, wid, {"apiKey": "owner-key"})
        got = [leased(a.owner, q, wait="3s")["input"]]
        r = poll(a.owner, q, wait="1s")
        if r.status == 200 and r.json.get("task"):
            got.append(r.json["task"]["input"])
        raise AssertionError(
            f"an editor without submit on {q} added a task on it: PUT workflow -> {put.status}, POST /tasks -> "
            f"{post.status}; the workflow's tasks are now {keys}; the owner's worker received inputs {got} "
            f"(execution {eid})")
    assert_error(put, 403, 7, f'"{q}"')
    assert_error(post, 403, 7, f'"{q}"')
    assert keys == ["own"], after


def test_with_a_submit_grant_the_editor_may_and_the_worker_sees_who_started_it(org_a):
    a, q = org_a, new_queue()
    wf = shared_workflow(a, [{"key": "start", "name": "Start", "action": "noop"}])
    wid = wf["id"]
    grant(a.owner, a.org, q, a.editor.id, submit=True)
    current = a.editor.rest.get(f"/workflows/{wid}").json
    r = a.editor.rest.put(f"/workflows/{wid}", {**current, "tasks": with_task(
        current["tasks"], ext("send", q, input={"to": "{{ input.to }}"}, depends=["start"]))})
    assert r.status == 200, r
    # A submit grant is not a poll grant.
    assert_error(poll(a.editor, q, orgId=a.org), 403, 7, f'"{q}"')

    eid = execute(a.editor, wid, {"to": "ann@example.com"})
    task = leased(a.owner, q)  # the owner (admin) polls its organization's queue, no grant needed
    assert (task["workflowId"], task["executionId"], task["taskKey"]) == (wid, eid, "send"), task
    assert task["startedBy"] == a.editor.id, f"startedBy should name the editor who executed: {task}"
    assert task["orgId"] == a.org, task
    assert task["input"] == {"to": "ann@example.com"}, task
    assert complete(a.owner, task["leaseToken"], {"sent": True}).status == 200
    done = wh.wait_until(lambda: (lambda e: e if e["status"] in ("Completed", "Failed") else None)(
        get_execution(a.owner, wid, eid)), 10, interval=0.05)
    assert done["status"] == "Completed", done

    # The owner's own run: startedBy is the owner.
    eid2 = execute(a.owner, wid, {"to": "bo@example.com"})
    task2 = leased(a.admin2, q, org=a.org)  # another admin, no grant either
    assert (task2["executionId"], task2["startedBy"], task2["orgId"]) == (eid2, a.owner.id, a.org), task2
    assert complete(a.admin2, task2["leaseToken"], {}).status == 200

    # Revoked: new tasks on q are refused again.
    revoke(a.owner, a.org, q, a.editor.id)
    assert_error(create_wf(a.editor, [ext("again", q)], org=a.org), 403, 7, f'"{q}"')


# ---------------------------------------------------------------------------
# Poll and leases
# ---------------------------------------------------------------------------


def test_polling_needs_the_poll_grant_on_that_queue(org_a, api_server, v1):
    a, q, q2 = org_a, new_queue(), new_queue()
    wf = created(create_wf(a.owner, [ext("one", q, input={"n": 1}), ext("two", q2, input={"n": 2})]))
    eid = execute(a.owner, wf["id"])

    assert_error(poll(a.wm, q, orgId=a.org), 403, 7, f'"{q}"', a.org)
    assert_error(poll(a.editor, q, orgId=a.org, wait="1s"), 403, 7, f'"{q}"')
    assert_error(poll(a.stranger, q, orgId=a.org), 404, 5)
    # Without orgId a name means the poller's own organization's queue: empty.
    assert no_task(poll(a.wm, q, wait="0.5s"))
    assert no_task(poll(a.stranger, q, wait="0.5s"))

    grant(a.owner, a.org, q, a.wm.id, poll_=True)
    task = leased(a.wm, q, org=a.org)
    assert (task["executionId"], task["taskKey"], task["input"], task["startedBy"], task["orgId"]) == (
        eid, "one", {"n": 1}, a.owner.id, a.org), task
    assert complete(a.wm, task["leaseToken"], {"ok": 1}).status == 200
    # A grant on q is not one on q2.
    assert_error(poll(a.wm, q2, orgId=a.org), 403, 7, f'"{q2}"')
    ch = wh.new_channel(api_server.target)
    try:
        stub = v1.workers_pb2_grpc.WorkerServiceStub(ch)
        with pytest.raises(grpc.RpcError) as info:
            stub.PollTask(v1.workers_pb2.PollTaskRequest(queue=q2, org_id=a.org, wait=duration_pb2.Duration(seconds=0)),
                          metadata=wh.grpc_auth(a.wm), timeout=TIMEOUT)
        assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED and q2 in info.value.details(), info.value
        got = stub.PollTask(
            v1.workers_pb2.PollTaskRequest(queue=q2, org_id=a.org, wait=duration_pb2.Duration(seconds=5)),
            metadata=wh.grpc_auth(a.owner), timeout=TIMEOUT)
        assert got.task.task_key == "two" and got.task.started_by == a.owner.id and got.task.org_id == a.org, got
        assert complete(a.owner, got.task.lease_token, {}).status == 200
    finally:
        ch.close()
    revoke(a.owner, a.org, q, a.wm.id)
    assert_error(poll(a.wm, q, orgId=a.org), 403, 7)


def test_lease_calls_without_poll_rights_are_lease_lost(org_a):
    a, q = org_a, new_queue()
    wf = created(create_wf(a.owner, [ext("job", q, retry={"maxAttempts": 2, "initialBackoff": "0.05s"})]))
    eid = execute(a.owner, wf["id"])
    task = leased(a.owner, q)
    token = task["leaseToken"]
    for who in (a.wm, a.editor, a.stranger):
        for r in (heartbeat(who, token, "30s"), complete(who, token, {"by": who.name}),
                  fail(who, token, f"by {who.name}", nonRetryable=True)):
            assert_error(r, 400, 9, LOST)
    # The holder's lease is intact.
    assert heartbeat(a.owner, token, "30s").status == 200
    assert complete(a.owner, token, {"by": "owner"}).status == 200
    done = wh.wait_until(lambda: (lambda e: e if e["status"] != "Running" else None)(
        get_execution(a.owner, wf["id"], eid)), 10, interval=0.05)
    assert done["status"] == "Completed" and done["tasks"][0]["output"] == {"by": "owner"}, done


def test_a_revoked_poll_grant_ends_what_the_worker_may_report(org_a):
    a, q = org_a, new_queue()
    wf = created(create_wf(a.owner, [ext("job", q)]))
    eid = execute(a.owner, wf["id"])
    grant(a.owner, a.org, q, a.wm.id, poll_=True)
    task = leased(a.wm, q, org=a.org, lease="2s")
    assert heartbeat(a.wm, task["leaseToken"], "2s").status == 200
    revoke(a.owner, a.org, q, a.wm.id)
    assert_error(heartbeat(a.wm, task["leaseToken"], "2s"), 400, 9, LOST)
    assert_error(complete(a.wm, task["leaseToken"], {"late": True}), 400, 9, LOST)
    assert_error(poll(a.wm, q, orgId=a.org), 403, 7)
    # The lease runs out; the task goes to a worker that may take it, same attempt.
    again = leased(a.owner, q, wait="10s")
    assert (again["executionId"], again["taskKey"], again["attempt"]) == (eid, "job", task["attempt"]), again
    assert again["leaseToken"] != task["leaseToken"]
    assert complete(a.owner, again["leaseToken"], {"ok": True}).status == 200
    done = wh.wait_until(lambda: (lambda e: e if e["status"] != "Running" else None)(
        get_execution(a.owner, wf["id"], eid)), 10, interval=0.05)
    assert done["status"] == "Completed" and done["tasks"][0]["output"] == {"ok": True}, done


def test_queues_of_different_organizations_are_apart(org_a):
    a, q = org_a, new_queue()
    mine = created(create_wf(a.owner, [ext("a_job", q, input={"org": "A"})]))
    theirs = created(create_wf(a.stranger, [ext("b_job", q, input={"org": "B"})]))
    assert theirs["orgId"] == a.stranger_org
    execute(a.stranger, theirs["id"])
    execute(a.owner, mine["id"])
    got_a = leased(a.owner, q)
    got_b = leased(a.stranger, q)
    assert (got_a["input"], got_a["orgId"]) == ({"org": "A"}, a.org), got_a
    assert (got_b["input"], got_b["orgId"]) == ({"org": "B"}, a.stranger_org), got_b
    assert no_task(poll(a.owner, q, wait="0.5s")) and no_task(poll(a.stranger, q, wait="0.5s"))
    assert_error(poll(a.owner, q, orgId=a.stranger_org), 404, 5)
    for user, t in ((a.owner, got_a), (a.stranger, got_b)):
        assert complete(user, t["leaseToken"], {}).status == 200


def test_a_member_who_leaves_loses_the_grants(api_server, org_a):
    """Removal from the organization ends the member's queue rights at once
    (the grants stay stored, docs/TENANCY.md, but give nothing)."""
    a, q = org_a, new_queue()
    leaver = wh.register_and_login(api_server, "Lee Leaver")
    wh.invite_and_accept(api_server, a.owner.token, leaver.token, a.org)
    grant(a.owner, a.org, q, leaver.id, submit=True, poll_=True)
    wf = created(create_wf(leaver, [ext("job", q, input={"by": "leaver"})], org=a.org))
    execute(leaver, wf["id"])
    task = leased(leaver, q, org=a.org)
    assert task["startedBy"] == leaver.id and task["orgId"] == a.org, task
    r = a.owner.rest.delete(f"/orgs/{a.org}/members/{leaver.id}")
    assert r.status == 204, r
    # Gone from the organization: no polling, no reporting, no new tasks on its queues.
    assert_error(poll(leaver, q, orgId=a.org), 404, 5)
    assert_error(complete(leaver, task["leaseToken"], {"late": True}), 400, 9, LOST)
    assert_error(create_wf(leaver, [ext("again", q)], org=a.org), 404, 5)
