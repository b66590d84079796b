"""The audit log on a real server: what is recorded, how it is read, and that
the table cannot be rewritten.

A scripted session (module fixture `session`), every call carrying its own
W3C `traceparent` unless said otherwise: register, login, create a workflow,
update it, execute it, cancel the execution, invite a second user, who
accepts, add them as a viewer, create a secret, a denied update by the viewer
(PERMISSION_DENIED), a login with a wrong password (UNAUTHENTICATED), an
update over gRPC (traceparent in metadata), reads (which are not recorded),
and an execution that reads a secret (`secret.use`).  Then `GET /audit`:

* one event per state-changing call with the right actor, organization,
  action (`weft.v1.<Service>/<Method>`), resource, outcome (gRPC status name),
  client address (127.0.0.1), trace id (the caller's, or empty without a
  traceparent or with a malformed one), time and transport; none for reads;
* `secret.use` events by "system" on the execution, naming the secrets;
* filters (actorId, action, resourceType + resourceId, since / until with
  UTC and offset times) and paging (pageSize, pageToken; newest first, ids
  strictly decreasing, no overlap, a token bound to its filters);
* access: org admins only (member 403, stranger 404, anonymous 401, orgId
  missing 400), over REST and gRPC (weft.v1.AuditService/ListAuditEvents);
* the `audit_log` table in DATA_DIR/weft.sqlite refuses UPDATE and DELETE
  ("the audit log is append-only"), tried with python's sqlite3 on the live
  file while the server runs.
"""

from __future__ import annotations

import datetime
import os
import re
import sqlite3
import time
import types
import urllib.parse
import uuid

import grpc
import pytest

import flags_support as fs
import weft_helpers as wh

TIMEOUT = 10
PASSWORD = "correct horse battery"
EVENT_FIELDS = {"id", "time", "actorId", "orgId", "action", "resourceType", "resourceId", "outcome",
                "clientAddress", "traceId", "detail"}
WF = "weft.v1.WorkflowService/"
READ_PREFIXES = ("Get", "List", "Search", "Watch", "Tail", "Check", "Heartbeat", "Poll")


def uid() -> str:
    return uuid.uuid4().hex[:8]


def tp() -> tuple[str, dict]:
    """A fresh trace id and the headers carrying it."""
    trace_id = os.urandom(16).hex()
    return trace_id, {"traceparent": f"00-{trace_id}-{os.urandom(8).hex()}-01"}


def assert_error(r: wh.RestResponse, status: int, code: int, *fragments: str) -> dict:
    assert r.status == status, r
    body = r.json
    assert body.get("code") == code, body
    for fragment in fragments:
        assert fragment in body.get("message", ""), (fragment, body)
    return body


def audit(user: wh.ApiUser, org_id: str, **params) -> list:
    """Every event of the organization matching `params` (all pages)."""
    return wh.all_pages(user.rest, "/audit", "events", orgId=org_id, pageSize=1000, **params)


def rfc3339(ns: int, offset_minutes: int = 0) -> str:
    """An RFC 3339 time with milliseconds for `ns` since the epoch, at an offset."""
    tz = datetime.timezone(datetime.timedelta(minutes=offset_minutes))
    when = datetime.datetime.fromtimestamp(ns / 1e9, tz)
    text = when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond // 1000:03d}"
    if offset_minutes == 0:
        return text + "Z"
    sign = "+" if offset_minutes > 0 else "-"
    m = abs(offset_minutes)
    return f"{text}{sign}{m // 60:02d}:{m % 60:02d}"


# ---------------------------------------------------------------------------
# The server and the scripted session
# ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def srv(tmp_path_factory, protos):
    base = tmp_path_factory.mktemp("audit")
    s = wh.WeftServer(wh.weft_bin(), base / "data", base / "logs", args=wh.API_SERVER_ARGS, name="audit",
                      env={"WEFT_SECRETS_KEY": os.urandom(32).hex()})
    s.start(timeout=30)
    yield s
    wh.finish_servers([s])


@pytest.fixture(scope="module")
def session(srv, protos):
    """Runs the scripted session; returns what each step did, by name:
    steps[name] = (expected event fields, trace id or "")."""
    anon = wh.RestClient(srv)
    steps: dict = {}
    t0 = time.time_ns()

    # register + login (public calls, audited)
    email = wh.unique_email("aud")
    trace, h = tp()
    r = anon.post("/users/register", {"email": email, "password": PASSWORD, "name": "Aud Admin"}, headers=h)
    assert r.status == 201, r
    alice_id = r.json["id"]
    steps["register"] = ("weft.v1.UserService/Register", alice_id, "user", alice_id, "OK", trace)
    trace, h = tp()
    r = anon.post("/users/login", {"email": email, "password": PASSWORD}, headers=h)
    assert r.status == 200, r
    alice = wh.ApiUser(alice_id, email, PASSWORD, "Aud Admin", r.json["token"], r.json["user"],
                       wh.RestClient(srv, r.json["token"]))
    steps["login"] = ("weft.v1.UserService/Login", alice_id, "user", alice_id, "OK", trace)
    org = wh.own_org_id(srv, alice.token)

    # workflow: create, update, execute, cancel
    trace, h = tp()
    r = alice.rest.post("/workflows", {"name": f"audited {uid()}", "tasks": [
        {"key": "wait", "name": "Wait", "action": "delay", "config": {"duration": "30s"}}]}, headers=h)
    assert r.status == 201, r
    wid = r.json["id"]
    steps["create"] = (WF + "CreateWorkflow", alice_id, "workflow", wid, "OK", trace)
    trace, h = tp()
    current = alice.rest.get(f"/workflows/{wid}").json
    r = alice.rest.put(f"/workflows/{wid}", {**current, "name": f"audited again {uid()}"}, headers=h)
    assert r.status == 200, r
    steps["update"] = (WF + "UpdateWorkflow", alice_id, "workflow", wid, "OK", trace)
    trace, h = tp()
    r = alice.rest.post(f"/workflows/{wid}/execute", {}, headers=h)
    assert r.status == 202, r
    eid = r.json["executionId"]
    steps["execute"] = ("weft.v1.ExecutionService/ExecuteWorkflow", alice_id, None, (wid, eid), "OK", trace)
    trace, h = tp()
    r = alice.rest.post(f"/workflows/{wid}/executions/{eid}/cancel", {"reason": "audit test"}, headers=h)
    assert r.status == 200, r
    steps["cancel"] = ("weft.v1.ExecutionService/CancelExecution", alice_id, None, (wid, eid), "OK", trace)

    # a second user joins: invite, accept; collaborator
    bob = wh.register_and_login(srv, "Bob Audited")
    trace, h = tp()
    r = alice.rest.post(f"/orgs/{org}/invitations", {"email": bob.email, "role": "member"}, headers=h)
    assert r.status == 201, r
    inv = r.json["id"]
    steps["invite"] = ("weft.v1.OrganizationService/CreateInvitation", alice_id, None, (org, inv), "OK", trace)
    trace, h = tp()
    r = bob.rest.post(f"/invitations/{inv}/accept", {}, headers=h)
    assert r.status == 200, r
    steps["accept"] = ("weft.v1.OrganizationService/AcceptInvitation", bob.id, None, (org, inv), "OK", trace)
    carol = wh.register_and_login(srv, "Carol Declines")
    r = alice.rest.post(f"/orgs/{org}/invitations", {"email": carol.email, "role": "member"})
    assert r.status == 201, r
    trace, h = tp()
    declined = carol.rest.post(f"/invitations/{r.json['id']}/decline", {}, headers=h)
    assert declined.status == 200, declined
    steps["decline"] = ("weft.v1.OrganizationService/DeclineInvitation", carol.id, None, (org, r.json["id"]), "OK",
                        trace)
    trace, h = tp()
    r = alice.rest.post(f"/workflows/{wid}/collaborators", {"userId": bob.id, "role": "viewer"}, headers=h)
    assert r.status == 201, r
    steps["collaborator"] = ("weft.v1.CollaboratorService/AddCollaborator", alice_id, "workflow", wid, "OK", trace)

    # a secret; a denied update; a wrong password
    secret_name = f"AUDIT_{uid().upper()}"
    secret_value = f"audit-secret-{uuid.uuid4().hex}"
    trace, h = tp()
    r = alice.rest.post(f"/orgs/{org}/secrets", {"name": secret_name, "value": secret_value}, headers=h)
    assert r.status == 201, r
    steps["secret"] = ("weft.v1.SecretService/CreateSecret", alice_id, "secret", secret_name, "OK", trace)
    trace, h = tp()
    r = bob.rest.put(f"/workflows/{wid}", {"name": "bob was here"}, headers=h)
    assert r.status == 403, r
    steps["denied"] = (WF + "UpdateWorkflow", bob.id, "workflow", wid, "PERMISSION_DENIED", trace)
    trace, h = tp()
    r = anon.post("/users/login", {"email": email, "password": "not the password"}, headers=h)
    assert r.status == 401, r
    steps["bad login"] = ("weft.v1.UserService/Login", alice_id, "user", alice_id, "UNAUTHENTICATED", trace)

    # without a traceparent: no trace id
    r = alice.rest.post("/workflows", {"name": f"untraced {uid()}", "tasks": [
        {"key": "a", "name": "A", "action": "noop"}]})
    assert r.status == 201, r
    untraced = r.json["id"]
    steps["untraced"] = (WF + "CreateWorkflow", alice_id, "workflow", untraced, "OK", "")

    # over gRPC, the traceparent in metadata
    trace, h = tp()
    ch = wh.new_channel(srv.target)
    try:
        wpb = protos.v1.workflows_pb2
        stub = protos.v1.workflows_pb2_grpc.WorkflowServiceStub(ch)
        stub.UpdateWorkflow(wpb.UpdateWorkflowRequest(workflow_id=untraced, name=f"over grpc {uid()}"),
                            metadata=wh.grpc_auth(alice) + (("traceparent", h["traceparent"]),), timeout=TIMEOUT)
        # reads, which are not recorded
        stub.GetWorkflow(wpb.GetWorkflowRequest(workflow_id=untraced), metadata=wh.grpc_auth(alice), timeout=TIMEOUT)
        stub.ListWorkflows(wpb.ListWorkflowsRequest(), metadata=wh.grpc_auth(alice), timeout=TIMEOUT)
    finally:
        ch.close()
    steps["grpc update"] = (WF + "UpdateWorkflow", alice_id, "workflow", untraced, "OK", trace)
    for path in (f"/workflows/{wid}", "/workflows", f"/workflows/{wid}/executions",
                 f"/workflows/{wid}/executions/{eid}",
                 f"/orgs/{org}/members", f"/orgs/{org}/secrets", "/workflows/search?query=audited"):
        assert alice.rest.get(path).status == 200, path

    # a workflow reading the secret: secret.use
    used = fs.create_wf(alice, [{"key": "use", "name": "Use", "action": "transform",
                                 "config": {"output": {"v": f"{{{{ secrets.{secret_name} }}}}"}}}])
    used_eid = fs.execute(alice, used["id"])
    assert fs.wait_status(alice, used["id"], used_eid)["status"] == "Completed"
    t1 = time.time_ns()
    return types.SimpleNamespace(alice=alice, bob=bob, org=org, wid=wid, eid=eid, inv=inv, steps=steps,
                                 secret_name=secret_name, secret_value=secret_value, used=used, used_eid=used_eid,
                                 untraced=untraced, t0=t0, t1=t1, stranger=wh.register_and_login(srv, "Sy Stranger"))


def matches(events: list, step) -> list:
    action, actor, rtype, rid, outcome, trace = step
    return [e for e in events if e["action"] == action and e["actorId"] == actor and e["outcome"] == outcome
            and (e["traceId"] == trace if trace else True)
            and (e["resourceId"] in rid if isinstance(rid, tuple) else e["resourceId"] == rid)]


def find(events: list, step) -> dict:
    found = matches(events, step)
    assert len(found) == 1, (f"expected one event {step}, found {len(found)}:\n" + "\n".join(map(str, found))
                             + "\nall events:\n" + "\n".join(f"  {e}" for e in events))
    return found[0]


# ---------------------------------------------------------------------------
# What is recorded
# ---------------------------------------------------------------------------


def test_every_state_changing_call_is_recorded_with_who_what_and_how(session):
    """One event per step in the organization's log, with the step's actor,
    action, resource, outcome, trace id, time and transport.  Every step is
    checked; the failure lists all steps that went wrong."""
    events = audit(session.alice, session.org)
    for e in events:
        assert set(e) == EVENT_FIELDS, f"event fields: {sorted(e)}"
        assert isinstance(e["id"], str) and re.fullmatch(r"[0-9]+", e["id"]), e  # int64 as a JSON string
        assert e["orgId"] == session.org, e
    # The execution and the cancel name the workflow or the execution; the
    # invitation and its acceptance the organization or the invitation.
    kinds = {"execute": {"workflow", "execution"}, "cancel": {"workflow", "execution"},
             "invite": {"organization", "invitation"}, "accept": {"organization", "invitation"},
             "decline": {"organization", "invitation"}}
    problems = []
    for name, step in session.steps.items():
        if name in INVITATION_ANSWERS:
            continue  # test_invitation_answers_are_in_the_organizations_log
        action, actor, rtype, rid, outcome, trace = step
        found = matches(events, step)
        if len(found) != 1:
            by_actor = [e for e in events if e["action"] == action and e["actorId"] == actor]
            problems.append(f"{name}: expected one event {step} in organization {session.org}'s log, found "
                            f"{len(found)}; events of that action and actor: {by_actor}")
            continue
        e = found[0]
        wrong = []
        if e["resourceType"] not in ({rtype} if rtype else kinds[name]):
            wrong.append(f"resourceType {e['resourceType']!r}")
        if e["traceId"] != trace:
            wrong.append(f"traceId {e['traceId']!r} (sent {trace!r})")
        if not session.t0 - 5e9 <= wh.rfc3339_nanos(e["time"]) <= session.t1 + 5e9:
            wrong.append(f"time {e['time']}")
        if e["detail"].get("transport") != ("grpc" if name == "grpc update" else "rest"):
            wrong.append(f"detail {e['detail']}")
        if wrong:
            problems.append(f"{name}: {', '.join(wrong)} in {e}")
    assert not problems, "\n".join(problems)


INVITATION_ANSWERS = ("accept", "decline")


def test_invitation_answers_are_in_the_organizations_log(session):
    """Who joined (or refused to join) an organization is an event of that
    organization: its admins see the accept and the decline."""
    events = audit(session.alice, session.org)
    missing = [name for name in INVITATION_ANSWERS if len(matches(events, session.steps[name])) != 1]
    assert not missing, f"not in organization {session.org}'s audit log: {missing}"


MALFORMED = {
    "all-zero trace id": lambda t, s: f"00-{'0' * 32}-{s}-01",
    "all-zero parent id": lambda t, s: f"00-{t}-{'0' * 16}-01",
    "version ff": lambda t, s: f"ff-{t}-{s}-01",
    "non-hex trace id": lambda t, s: f"00-{'xy' * 16}-{s}-01",
    "upper-case trace id": lambda t, s: f"00-{t.upper()}-{s}-01",
    "non-hex flags": lambda t, s: f"00-{t}-{s}-zz",
}


def test_a_malformed_traceparent_records_no_trace_id(session):
    """A call with a malformed traceparent is not part of that trace (W3C
    trace context: the header is ignored), so its event names no trace id."""
    alice, org = session.alice, session.org
    sent = {}
    for case, make in MALFORMED.items():
        header = make(os.urandom(16).hex(), os.urandom(8).hex())
        r = alice.rest.post("/workflows", {"name": f"tp {uid()}", "tasks": []}, headers={"traceparent": header})
        assert r.status == 201, (case, r)
        sent[r.json["id"]] = (case, header)
    events = {e["resourceId"]: e for e in audit(alice, org, action=WF + "CreateWorkflow") if e["resourceId"] in sent}
    assert set(events) == set(sent), (sorted(events), sorted(sent))
    wrong = {sent[wid][0]: (sent[wid][1], e["traceId"]) for wid, e in events.items() if e["traceId"]}
    assert not wrong, "events of calls with a malformed traceparent carry a trace id (header, traceId): " + str(wrong)


def test_reads_are_not_recorded(session):
    events = audit(session.alice, session.org)
    reads = [e for e in events if e["action"].split("/")[-1].startswith(READ_PREFIXES)]
    assert not reads, "reads in the audit log:\n" + "\n".join(map(str, reads))
    # The module made every recorded call exactly once (no duplicates).
    keys = [(e["action"], e["actorId"], e["traceId"]) for e in events if e["traceId"]]
    assert len(keys) == len(set(keys)), sorted(keys)


def test_client_address_is_the_callers_ip(session):
    events = audit(session.alice, session.org)
    calls = [e for e in events if e["actorId"] != "system"]
    assert calls, events
    ok = re.compile(r"127\.0\.0\.1(:\d{1,5})?")
    wrong = sorted({e["clientAddress"] for e in calls if not ok.fullmatch(e["clientAddress"])})
    assert not wrong, (f"clientAddress should be the caller's address 127.0.0.1 (optionally with its port); "
                       f"got {wrong} (e.g. {next(e for e in calls if e['clientAddress'] in wrong)})")


def test_secret_use_is_recorded_by_system_on_the_execution(session):
    uses = audit(session.alice, session.org, action="secret.use")
    assert uses, "no secret.use events"
    mine = [e for e in uses if e["resourceId"] == session.used_eid]
    assert len(mine) == 1, uses
    e = mine[0]
    assert (e["actorId"], e["resourceType"], e["orgId"]) == ("system", "execution", session.org), e
    assert e["detail"].get("secrets") == [session.secret_name], e
    assert e["detail"].get("workflow_id") == session.used["id"], e
    # Names only, never the value.
    r = session.alice.rest.get(f"/audit?orgId={session.org}&pageSize=1000")
    assert r.status == 200 and session.secret_value.encode() not in r.body, r


def test_the_bad_login_is_recorded_for_a_known_email_only(srv, session):
    anon = wh.RestClient(srv)
    unknown = wh.unique_email("ghost")
    trace, h = tp()
    assert anon.post("/users/login", {"email": unknown, "password": "whatever it is"}, headers=h).status == 401
    events = audit(session.alice, session.org, action="weft.v1.UserService/Login")
    assert not [e for e in events if e["traceId"] == trace], events
    bad = [e for e in events if e["outcome"] == "UNAUTHENTICATED"]
    assert [e["actorId"] for e in bad] == [session.alice.id], bad


# ---------------------------------------------------------------------------
# Filters and paging
# ---------------------------------------------------------------------------


def test_filters(session):
    alice, org = session.alice, session.org
    everything = audit(alice, org)

    by_bob = audit(alice, org, actorId=session.bob.id)
    assert by_bob and all(e["actorId"] == session.bob.id for e in by_bob), by_bob
    assert by_bob == [e for e in everything if e["actorId"] == session.bob.id]
    assert WF + "UpdateWorkflow" in {e["action"] for e in by_bob}, by_bob

    creates = audit(alice, org, action=WF + "CreateWorkflow")
    assert {e["resourceId"] for e in creates} >= {session.wid, session.untraced}, creates
    assert creates == [e for e in everything if e["action"] == WF + "CreateWorkflow"]

    about = audit(alice, org, resourceType="workflow", resourceId=session.wid)
    assert about == [e for e in everything if (e["resourceType"], e["resourceId"]) == ("workflow", session.wid)]
    assert {WF + "CreateWorkflow", WF + "UpdateWorkflow", "weft.v1.CollaboratorService/AddCollaborator"} <= {
        e["action"] for e in about}, about
    assert audit(alice, org, resourceType="secret") == [e for e in everything if e["resourceType"] == "secret"]
    assert audit(alice, org, actorId="usr_nobody") == []
    assert audit(alice, org, action="weft.v1.WorkflowService/NoSuchMethod") == []

    # since (inclusive) and until (exclusive) split the log at an event's time.
    pivot = find(everything, session.steps["secret"])
    at = wh.rfc3339_nanos(pivot["time"])
    for offset in (0, 150, -330):
        since = audit(alice, org, since=rfc3339(at, offset))
        until = audit(alice, org, until=rfc3339(at, offset))
        assert pivot in since and pivot not in until, (offset, pivot)
        assert all(wh.rfc3339_nanos(e["time"]) >= at for e in since), offset
        assert all(wh.rfc3339_nanos(e["time"]) < at for e in until), offset
        assert sorted(e["id"] for e in since + until) == sorted(e["id"] for e in everything), offset
    window = audit(alice, org, since=rfc3339(at), until=rfc3339(at + 1_000_000))
    assert pivot in window and all(at <= wh.rfc3339_nanos(e["time"]) < at + 1_000_000 for e in window), window
    assert audit(alice, org, since=rfc3339(time.time_ns() + 3600 * 10**9)) == []
    r = alice.rest.get(f"/audit?orgId={org}&since=yesterday")
    assert_error(r, 400, 3, "since")


def test_paging_is_newest_first_without_overlap(session):
    alice, org = session.alice, session.org
    everything = audit(alice, org)
    assert len(everything) >= 12, everything
    ids = [int(e["id"]) for e in everything]
    assert ids == sorted(ids, reverse=True) and len(set(ids)) == len(ids), ids
    times = [wh.rfc3339_nanos(e["time"]) for e in everything]
    assert times == sorted(times, reverse=True), "newest first"

    pages, token = [], ""
    while True:
        q = urllib.parse.urlencode({"orgId": org, "pageSize": 5, **({"pageToken": token} if token else {})})
        r = alice.rest.get(f"/audit?{q}")
        assert r.status == 200, r
        page = r.json.get("events", [])
        assert len(page) <= 5, page
        pages.append(page)
        token = r.json.get("nextPageToken", "")
        if not token:
            break
        assert len(page) == 5, "a page before the last is full"
        assert len(pages) < 100, "paging never ended"
    flat = [e for p in pages for e in p]
    assert [e["id"] for e in flat] == [e["id"] for e in everything[:len(flat)]], "pages = the whole list in order"
    assert {e["id"] for e in flat} >= {e["id"] for e in everything}, "every event is on some page"

    # A token belongs to its query.
    q = urllib.parse.urlencode({"orgId": org, "pageSize": 2})
    token = alice.rest.get(f"/audit?{q}").json["nextPageToken"]
    assert token
    other = urllib.parse.urlencode({"orgId": org, "pageSize": 2, "actorId": alice.id, "pageToken": token})
    assert_error(alice.rest.get(f"/audit?{other}"), 400, 3)
    assert_error(alice.rest.get(f"/audit?orgId={org}&pageToken=garbage"), 400, 3)
    # Filters and paging together.
    mine = wh.all_pages(alice.rest, "/audit", "events", orgId=org, pageSize=2, actorId=alice.id)
    assert mine == [e for e in audit(alice, org) if e["actorId"] == alice.id]


# ---------------------------------------------------------------------------
# Access
# ---------------------------------------------------------------------------


def test_only_org_admins_read_the_audit_log(srv, session, protos):
    org = session.org
    assert_error(session.bob.rest.get(f"/audit?orgId={org}"), 403, 7)
    assert_error(session.stranger.rest.get(f"/audit?orgId={org}"), 404, 5)
    assert_error(session.alice.rest.get("/audit"), 400, 3)
    assert_error(wh.RestClient(srv).get(f"/audit?orgId={org}"), 401, 16)
    assert_error(session.alice.rest.get("/audit?orgId=org_01M00000000000000000000000"), 404, 5)
    # The stranger's own organization shows only the stranger's events.
    theirs = audit(session.stranger, wh.own_org_id(srv, session.stranger.token))
    assert theirs and {e["actorId"] for e in theirs} == {session.stranger.id}, theirs
    assert not [e for e in audit(session.alice, org) if e["actorId"] == session.stranger.id]

    ch = wh.new_channel(srv.target)
    try:
        pb = protos.v1.audit_pb2
        stub = protos.v1.audit_pb2_grpc.AuditServiceStub(ch)
        got = stub.ListAuditEvents(pb.ListAuditEventsRequest(org_id=org, page_size=1000),
                                   metadata=wh.grpc_auth(session.alice), timeout=TIMEOUT)
        rest = audit(session.alice, org)
        grpc_ids = [e.id for e in got.events]
        assert grpc_ids[: len(rest)] == [int(e["id"]) for e in rest][: len(grpc_ids)], (grpc_ids, rest)
        step = session.steps["denied"]
        denied = [e for e in got.events if e.trace_id == step[5]]
        assert len(denied) == 1 and (denied[0].outcome, denied[0].actor_id) == ("PERMISSION_DENIED", session.bob.id)
        for who, code in ((session.bob, grpc.StatusCode.PERMISSION_DENIED),
                          (session.stranger, grpc.StatusCode.NOT_FOUND)):
            with pytest.raises(grpc.RpcError) as info:
                stub.ListAuditEvents(pb.ListAuditEventsRequest(org_id=org), metadata=wh.grpc_auth(who), timeout=TIMEOUT)
            assert info.value.code() == code, info.value
        with pytest.raises(grpc.RpcError) as info:
            stub.ListAuditEvents(pb.ListAuditEventsRequest(), metadata=wh.grpc_auth(session.alice), timeout=TIMEOUT)
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT, info.value
    finally:
        ch.close()


# ---------------------------------------------------------------------------
# Append-only
# ---------------------------------------------------------------------------


def test_the_audit_table_refuses_update_and_delete(srv, session):
    path = srv.data_dir / "weft.sqlite"
    audit(session.alice, session.org)  # flushed: the session's events are in the table
    conn = sqlite3.connect(str(path), timeout=10, isolation_level=None)
    try:
        (before,) = conn.execute("SELECT count(*) FROM audit_log").fetchone()
        (first_id, first_outcome) = conn.execute("SELECT id, outcome FROM audit_log ORDER BY id LIMIT 1").fetchone()
        assert before >= 12, before
        for sql in ("UPDATE audit_log SET outcome = 'OK', actor_id = 'usr_forged' WHERE id = ?",
                    "DELETE FROM audit_log WHERE id = ?",
                    "DELETE FROM audit_log WHERE id >= ?"):
            with pytest.raises(sqlite3.DatabaseError, match="the audit log is append-only"):
                conn.execute(sql, (first_id,))
        with pytest.raises(sqlite3.DatabaseError, match="the audit log is append-only"):
            conn.execute("UPDATE audit_log SET detail = '{}'")
        (after,) = conn.execute("SELECT count(*) FROM audit_log").fetchone()
        assert after >= before
        assert conn.execute("SELECT outcome FROM audit_log WHERE id = ?", (first_id,)).fetchone() == (first_outcome,)
    finally:
        conn.close()
    # The server still writes to it.
    trace, h = tp()
    r = session.alice.rest.post("/workflows", {"name": f"after {uid()}", "tasks": [
        {"key": "a", "name": "A", "action": "noop"}]}, headers=h)
    assert r.status == 201, r
    assert [e["resourceId"] for e in audit(session.alice, session.org) if e["traceId"] == trace] == [r.json["id"]]
