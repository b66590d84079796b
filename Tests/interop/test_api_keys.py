"""API keys (Step 7): create, list and revoke over REST and gRPC
(weft.v1.ApiKeyService), and what each scope lets a key do on both transports.

* the secret (`wk_...`) is shown once, in the create answer; the list never
  holds it; `prefix` is its visible start;
* `read`: GET routes / Get*, List* only; writes are 403 / PERMISSION_DENIED and
  change nothing;
* `execute`: read + execute and cancel of the listed workflows only; other
  workflows 403, no workflow writes;
* `worker`: the worker protocol on its listed queues (REST polls and
  examples/worker.py run with the key), 403 on another queue and on workflow
  writes;
* `admin`: everything the user can do, API keys included;
* an expired key (expiresAt a few seconds ahead) is 401 "the API key has
  expired", a revoked key 401 at once; lastUsedAt appears after first use;
* bad input is 400 / INVALID_ARGUMENT naming the field.

The gRPC parts need proto/weft/v1/api_keys.proto and skip without it.
"""

from __future__ import annotations

import datetime
import subprocess
import sys
import time
import uuid

import grpc
import pytest

import weft_helpers as wh

TIMEOUT = 10
API_KEYS_PROTO = wh.PROTO_DIR / "weft" / "v1" / "api_keys.proto"
WORKER = wh.REPO_ROOT / "examples" / "worker.py"
TERMINAL = {"Completed", "Failed", "Cancelled", "TimedOut"}
LONG_DELAY = [{"key": "wait", "name": "Wait", "action": "delay", "config": {"duration": "30s"}}]


# ---------------------------------------------------------------------------
# Fixtures and helpers
# ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def owner(api_server):
    return wh.register_and_login(api_server, "Kira Keys")


@pytest.fixture(scope="module")
def other(api_server):
    return wh.register_and_login(api_server, "Otto Other")


def uid() -> str:
    return uuid.uuid4().hex[:10]


def rfc3339(ts: float) -> str:
    return datetime.datetime.fromtimestamp(int(ts), datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def norm(text: str) -> str:
    return text.lower().replace("_", "").replace(" ", "")


def assert_error(r: wh.RestResponse, status: int, code: int, *fragments: str) -> dict:
    assert r.status == status, r
    body = r.json
    assert body.get("code") == code, body
    assert isinstance(body.get("message"), str) and body["message"], body
    for fragment in fragments:
        assert norm(fragment) in norm(body["message"]), (fragment, body)
    return body


def create_key(user: wh.ApiUser, scopes, name=None, **extra) -> tuple[dict, str]:
    body = {"name": name or f"key {uid()}", "scopes": list(scopes), **extra}
    r = user.rest.post("/api-keys", body)
    assert r.status == 201, r
    key, secret = r.json["apiKey"], r.json["secret"]
    return key, secret


def assert_revoked(r: wh.RestResponse):
    """A revoke: 200 `{}` (the spec) or 204 without a body (the REST bridge's
    answer to every other DELETE)."""
    assert (r.status, r.body.strip()) in ((200, b"{}"), (204, b"")), r


def as_key(server, secret) -> wh.RestClient:
    return wh.RestClient(server, secret)


def list_keys(user_or_client) -> list:
    client = user_or_client.rest if isinstance(user_or_client, wh.ApiUser) else user_or_client
    r = client.get("/api-keys")
    assert r.status == 200, r
    return r.json.get("apiKeys", [])


def create_wf(user: wh.ApiUser, tasks=LONG_DELAY, name=None) -> dict:
    r = user.rest.post("/workflows", {"name": name or f"keys {uid()}", "tasks": list(tasks)})
    assert r.status == 201, r
    return r.json


def ext_wf(user, queue) -> dict:
    return create_wf(user, [{"key": "job", "name": "Job", "action": "external",
                             "config": {"queue": queue, "input": {"n": 1}}}])


def execute(client: wh.RestClient, wid) -> wh.RestResponse:
    return client.post(f"/workflows/{wid}/execute", {"input": {}})


def cancel(client: wh.RestClient, wid, eid) -> wh.RestResponse:
    return client.post(f"/workflows/{wid}/executions/{eid}/cancel", {"reason": "test"})


def cleanup_cancel(user, wid, eid):
    r = cancel(user.rest, wid, eid)
    assert r.status == 200 or (r.status == 400 and r.json.get("code") == 9), r


def wait_terminal(user, wid, eid, timeout=20) -> dict:
    def done():
        r = user.rest.get(f"/workflows/{wid}/executions/{eid}")
        assert r.status == 200, r
        return r.json if r.json["status"] in TERMINAL else None
    return wh.wait_until(done, timeout, 0.1, message=f"execution {eid} to end")


def poll(client: wh.RestClient, queue, wait="0s") -> wh.RestResponse:
    return client.post(f"/queues/{queue}/poll", {"workerId": "keytest", "wait": wait, "leaseDuration": "30s"})


# gRPC -----------------------------------------------------------------------


def need_api_keys_proto():
    if not API_KEYS_PROTO.exists():
        pytest.skip("proto/weft/v1/api_keys.proto is not there yet")


class GrpcKeys:
    """weft.v1.ApiKeyService through stubs generated from api_keys.proto;
    requests are built from the service's own descriptors."""

    def __init__(self, protos, channel):
        self.pb = protos.v1.api_keys_pb2
        self.svc = self.pb.DESCRIPTOR.services_by_name["ApiKeyService"]
        self.stub = protos.v1.api_keys_pb2_grpc.ApiKeyServiceStub(channel)

    def request(self, method, **fields):
        return getattr(self.pb, self.svc.methods_by_name[method].input_type.name)(**fields)

    def create_request(self, name, scopes, workflow_ids=(), queues=(), expires_at=None):
        msg = self.request("CreateApiKey", name=name)
        field = msg.DESCRIPTOR.fields_by_name["scopes"]
        if field.enum_type is not None:
            for s in scopes:
                numbers = [v.number for v in field.enum_type.values
                           if v.name.lower() == s or v.name.lower().endswith("_" + s)]
                msg.scopes.append(numbers[0] if numbers else 99)  # 99: a number no scope has
        else:
            msg.scopes.extend(scopes)
        msg.workflow_ids.extend(workflow_ids)
        msg.queues.extend(queues)
        if expires_at is not None:
            msg.expires_at.FromSeconds(int(expires_at))
        return msg

    def scope_names(self, key) -> list:
        field = key.DESCRIPTOR.fields_by_name["scopes"]
        if field.enum_type is None:
            return list(key.scopes)
        return [field.enum_type.values_by_number[n].name.lower().rsplit("_", 1)[-1] for n in key.scopes]


@pytest.fixture
def gkeys(protos, chan):
    need_api_keys_proto()
    return GrpcKeys(protos, chan)


def bearer(token) -> tuple:
    return (("authorization", f"Bearer {token}"),)


def grpc_err(fn, *args, **kwargs) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as info:
        fn(*args, timeout=TIMEOUT, **kwargs)
    return info.value


def stubs(protos, chan):
    v1 = protos.v1
    return (v1.workflows_pb2_grpc.WorkflowServiceStub(chan), v1.workflows_pb2,
            v1.executions_pb2_grpc.ExecutionServiceStub(chan), v1.executions_pb2,
            v1.workers_pb2_grpc.WorkerServiceStub(chan), v1.workers_pb2,
            v1.users_pb2_grpc.UserServiceStub(chan), v1.users_pb2)


# ---------------------------------------------------------------------------
# Create / list / revoke
# ---------------------------------------------------------------------------


def test_create_shows_the_secret_once_and_list_never(api_server, owner, other):
    wf = create_wf(owner)
    name = f"deploy bot {uid()}"
    r = owner.rest.post("/api-keys", {"name": name, "scopes": ["read", "execute"], "workflowIds": [wf["id"]]})
    assert r.status == 201, r
    key, secret = r.json["apiKey"], r.json["secret"]
    assert secret.startswith("wk_") and len(secret) >= 24, secret
    assert key["name"] == name
    assert sorted(key["scopes"]) == ["execute", "read"], key
    assert key["workflowIds"] == [wf["id"]], key
    assert key.get("queues", []) == [], key
    assert isinstance(key["id"], str) and key["id"], key
    assert secret.startswith(key["prefix"]) and len(key["prefix"]) < len(secret), (key["prefix"], secret)
    assert abs(wh.rfc3339_nanos(key["createdAt"]) / 1e9 - time.time()) < 300, key
    assert not key.get("lastUsedAt"), key
    assert not key.get("expiresAt"), key
    assert "secret" not in key, key

    r = owner.rest.get("/api-keys")
    assert r.status == 200, r
    assert secret.encode() not in r.body, "the list holds the secret"
    listed = {k["id"]: k for k in r.json["apiKeys"]}
    assert key["id"] in listed, r.json
    got = listed[key["id"]]
    assert "secret" not in got, got
    for field in ("name", "prefix", "scopes", "workflowIds", "createdAt"):
        assert got[field] == key[field], (field, got, key)
    # The key works, as its user.
    me = as_key(api_server, secret).get("/users/me")
    assert me.status == 200 and me.json["id"] == owner.id, me
    # Another user sees none of it.
    assert key["id"] not in {k["id"] for k in list_keys(other)}


def test_revoke_is_immediate(api_server, owner, other, protos, chan):
    key, secret = create_key(owner, ["read"])
    keyed = as_key(api_server, secret)
    assert keyed.get("/users/me").status == 200
    # Only its owner can revoke it; a stranger gets 404 and the key keeps working.
    assert_error(other.rest.delete(f"/api-keys/{key['id']}"), 404, 5)
    assert keyed.get("/users/me").status == 200
    assert_revoked(owner.rest.delete(f"/api-keys/{key['id']}"))
    assert_error(keyed.get("/users/me"), 401, 16)
    assert_error(keyed.get("/workflows"), 401, 16)
    _, _, _, _, _, _, users, users_pb = stubs(protos, chan)
    err = grpc_err(users.GetCurrentUser, users_pb.GetCurrentUserRequest(), metadata=bearer(secret))
    assert err.code() == grpc.StatusCode.UNAUTHENTICATED, err
    assert_error(owner.rest.delete(f"/api-keys/key_{uid()}"), 404, 5)


def test_managing_keys_needs_a_login_or_an_admin_key(api_server, owner, anon):
    assert_error(anon.post("/api-keys", {"name": "x", "scopes": ["read"]}), 401, 16)
    assert_error(anon.get("/api-keys"), 401, 16)
    wf = create_wf(owner)
    read_key, read_secret = create_key(owner, ["read"])
    _, exec_secret = create_key(owner, ["execute"], workflowIds=[wf["id"]])
    _, worker_secret = create_key(owner, ["worker"], queues=[f"q-{uid()}"])
    for secret in (read_secret, exec_secret, worker_secret):
        assert_error(as_key(api_server, secret).post("/api-keys", {"name": "y", "scopes": ["admin"]}), 403, 7)
        assert_error(as_key(api_server, secret).delete(f"/api-keys/{read_key['id']}"), 403, 7)
    assert as_key(api_server, read_secret).get("/users/me").status == 200  # not revoked by those attempts
    _, admin_secret = create_key(owner, ["admin"])
    admin = as_key(api_server, admin_secret)
    r = admin.post("/api-keys", {"name": f"made by a key {uid()}", "scopes": ["read"]})
    assert r.status == 201, r
    made = r.json["apiKey"]["id"]
    assert made in {k["id"] for k in list_keys(owner)}
    assert_revoked(admin.delete(f"/api-keys/{made}"))


@pytest.mark.parametrize(
    "body, field",
    [
        ({"name": "k", "scopes": ["superuser"]}, "scopes"),
        ({"name": "", "scopes": ["read"]}, "name"),
        ({"name": "k", "scopes": ["read"], "expiresAt": "PAST"}, "expiresAt"),
        ({"name": "k", "scopes": ["execute"]}, "workflowIds"),
        ({"name": "k", "scopes": ["execute"], "workflowIds": []}, "workflowIds"),
    ],
    ids=["unknown-scope", "empty-name", "expires-in-the-past", "execute-without-workflows", "execute-empty-workflows"],
)
def test_bad_create_input_is_400_naming_the_field(owner, body, field):
    body = {k: (rfc3339(time.time() - 3600) if v == "PAST" else v) for k, v in body.items()}
    before = {k["id"] for k in list_keys(owner)}
    assert_error(owner.rest.post("/api-keys", body), 400, 3, field)
    assert {k["id"] for k in list_keys(owner)} == before, "a refused key was created"


def test_grpc_create_list_revoke(api_server, owner, gkeys, protos, chan):
    wf = create_wf(owner)
    name = f"grpc key {uid()}"
    resp = gkeys.stub.CreateApiKey(gkeys.create_request(name, ["execute"], workflow_ids=[wf["id"]]),
                                   metadata=bearer(owner.token), timeout=TIMEOUT)
    assert resp.secret.startswith("wk_"), resp
    assert resp.api_key.name == name and resp.api_key.id, resp
    assert gkeys.scope_names(resp.api_key) == ["execute"], resp.api_key
    assert list(resp.api_key.workflow_ids) == [wf["id"]]
    assert resp.secret.startswith(resp.api_key.prefix)

    listed = gkeys.stub.ListApiKeys(gkeys.request("ListApiKeys"), metadata=bearer(owner.token), timeout=TIMEOUT)
    assert resp.api_key.id in [k.id for k in listed.api_keys], listed
    assert resp.secret not in str(listed), "the list holds the secret"
    # Created over gRPC, listed over REST (and the key works over REST).
    assert resp.api_key.id in {k["id"] for k in list_keys(owner)}
    r = execute(as_key(api_server, resp.secret), wf["id"])
    assert r.status == 202, r
    cleanup_cancel(owner, wf["id"], r.json["executionId"])

    gkeys.stub.RevokeApiKey(gkeys.request("RevokeApiKey", api_key_id=resp.api_key.id),
                            metadata=bearer(owner.token), timeout=TIMEOUT)
    assert_error(as_key(api_server, resp.secret).get("/users/me"), 401, 16)
    err = grpc_err(gkeys.stub.RevokeApiKey, gkeys.request("RevokeApiKey", api_key_id=f"key_{uid()}"),
                   metadata=bearer(owner.token))
    assert err.code() == grpc.StatusCode.NOT_FOUND, err

    # Anonymous: UNAUTHENTICATED; a read key may not manage keys.
    err = grpc_err(gkeys.stub.ListApiKeys, gkeys.request("ListApiKeys"))
    assert err.code() == grpc.StatusCode.UNAUTHENTICATED, err
    _, read_secret = create_key(owner, ["read"])
    err = grpc_err(gkeys.stub.CreateApiKey, gkeys.create_request("nope", ["admin"]), metadata=bearer(read_secret))
    assert err.code() == grpc.StatusCode.PERMISSION_DENIED, err


def test_grpc_bad_create_input_is_invalid_argument(owner, gkeys):
    wf = create_wf(owner)
    for req in (gkeys.create_request("k", ["superuser"]),
                gkeys.create_request("", ["read"]),
                gkeys.create_request("k", ["read"], expires_at=time.time() - 3600),
                gkeys.create_request("k", ["execute"])):
        err = grpc_err(gkeys.stub.CreateApiKey, req, metadata=bearer(owner.token))
        assert err.code() == grpc.StatusCode.INVALID_ARGUMENT, (req, err)
    ok = gkeys.stub.CreateApiKey(gkeys.create_request("fine", ["execute"], workflow_ids=[wf["id"]]),
                                 metadata=bearer(owner.token), timeout=TIMEOUT)
    assert ok.secret


# ---------------------------------------------------------------------------
# Scopes over REST
# ---------------------------------------------------------------------------


def test_read_key_reads_but_cannot_write(api_server, owner):
    wf = create_wf(owner, [{"key": "a", "name": "A", "action": "noop"}])
    _, secret = create_key(owner, ["read"])
    keyed = as_key(api_server, secret)
    for path in ("/users/me", "/workflows", f"/workflows/{wf['id']}", f"/workflows/{wf['id']}/tasks", "/orgs"):
        r = keyed.get(path)
        assert r.status == 200, (path, r)
    assert keyed.get(f"/workflows/{wf['id']}").json["id"] == wf["id"]

    assert_error(keyed.post("/workflows", {"name": "by a read key", "tasks": []}), 403, 7)
    assert_error(keyed.put(f"/workflows/{wf['id']}", {"name": "renamed by a read key"},
                           headers={"If-Match": '"1"'}), 403, 7)
    assert_error(keyed.delete(f"/workflows/{wf['id']}"), 403, 7)
    assert_error(execute(keyed, wf["id"]), 403, 7)
    assert_error(keyed.post("/tasks", {"workflowId": wf["id"], "name": "T", "action": "noop"}), 403, 7)
    # Nothing changed.
    r = owner.rest.get(f"/workflows/{wf['id']}")
    assert r.status == 200, r
    assert (r.json["name"], r.json["version"], len(r.json["tasks"])) == (wf["name"], 1, 1), r.json


def test_execute_key_runs_only_its_workflows(api_server, owner):
    mine = create_wf(owner)
    not_listed = create_wf(owner)
    _, secret = create_key(owner, ["execute"], workflowIds=[mine["id"]])
    keyed = as_key(api_server, secret)

    r = execute(keyed, mine["id"])
    assert r.status == 202, r
    eid = r.json["executionId"]
    r = keyed.get(f"/workflows/{mine['id']}/executions/{eid}")  # execute includes read
    assert r.status == 200 and r.json["status"] not in TERMINAL, r
    r = cancel(keyed, mine["id"], eid)
    assert r.status == 200, r
    assert wait_terminal(owner, mine["id"], eid)["status"] == "Cancelled"

    assert_error(execute(keyed, not_listed["id"]), 403, 7)
    other_eid = execute(owner.rest, not_listed["id"]).json["executionId"]
    assert_error(cancel(keyed, not_listed["id"], other_eid), 403, 7)
    r = owner.rest.get(f"/workflows/{not_listed['id']}/executions/{other_eid}")
    assert r.json["status"] not in TERMINAL, r.json  # the refused cancel did nothing
    cleanup_cancel(owner, not_listed["id"], other_eid)

    assert_error(keyed.post("/workflows", {"name": "by an execute key", "tasks": []}), 403, 7)
    assert_error(keyed.put(f"/workflows/{mine['id']}", {"name": "renamed"}), 403, 7)
    assert_error(keyed.delete(f"/workflows/{mine['id']}"), 403, 7)
    assert owner.rest.get(f"/workflows/{mine['id']}").json["version"] == 1


def test_worker_key_polls_only_its_queues(api_server, owner):
    q1, q2 = f"q-{uid()}", f"q-{uid()}"
    wf1, wf2 = ext_wf(owner, q1), ext_wf(owner, q2)
    _, secret = create_key(owner, ["worker"], queues=[q1])
    keyed = as_key(api_server, secret)

    eid = execute(owner.rest, wf1["id"]).json["executionId"]
    r = poll(keyed, q1, wait="5s")
    assert r.status == 200, r
    task = r.json.get("task")
    assert task and task["executionId"] == eid and task["queue"] == q1, r.json
    r = keyed.post("/workers/heartbeat", {"leaseToken": task["leaseToken"], "leaseDuration": "30s"})
    assert r.status == 200, r
    r = keyed.post("/workers/complete", {"leaseToken": task["leaseToken"], "output": {"by": "worker key"}})
    assert r.status == 200, r
    ex = wait_terminal(owner, wf1["id"], eid)
    assert ex["status"] == "Completed", ex

    # Another queue: 403, and its task stays for someone allowed.
    eid2 = execute(owner.rest, wf2["id"]).json["executionId"]
    assert_error(poll(keyed, q2), 403, 7)
    r = poll(owner.rest, q2, wait="5s")
    assert r.status == 200 and r.json["task"]["executionId"] == eid2, r
    assert owner.rest.post("/workers/complete", {"leaseToken": r.json["task"]["leaseToken"], "output": {}}).status == 200

    # No workflow writes, no executions.
    assert_error(keyed.post("/workflows", {"name": "by a worker key", "tasks": []}), 403, 7)
    assert_error(keyed.put(f"/workflows/{wf1['id']}", {"name": "renamed"}), 403, 7)
    assert_error(keyed.delete(f"/workflows/{wf1['id']}"), 403, 7)
    assert_error(execute(keyed, wf1["id"]), 403, 7)


def test_example_worker_runs_with_a_worker_key(api_server, owner, tmp_path):
    q = f"q-{uid()}"
    wf = ext_wf(owner, q)
    _, secret = create_key(owner, ["worker"], queues=[q])
    eid = execute(owner.rest, wf["id"]).json["executionId"]
    log = tmp_path / "worker.log"
    with open(log, "wb") as out:
        proc = subprocess.run([sys.executable, str(WORKER), "--url", api_server.base_url, "--token", secret,
                               "--queue", q, "--worker-id", "keyed", "--wait", "5", "--max-tasks", "1"],
                              stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, timeout=60)
    assert proc.returncode == 0, log.read_text()
    ex = wait_terminal(owner, wf["id"], eid)
    assert ex["status"] == "Completed", (ex, log.read_text())
    run = next(t for t in ex["tasks"] if t["taskKey"] == "job")
    assert run["output"] == {"n": 1}, run
    # The same worker on a queue the key does not name stops on the 403.
    other = subprocess.run([sys.executable, str(WORKER), "--url", api_server.base_url, "--token", secret,
                            "--queue", f"q-{uid()}", "--once", "--wait", "1"],
                           stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60)
    assert other.returncode != 0 and "403" in (other.stdout + other.stderr), other


def test_admin_key_can_write(api_server, owner):
    _, secret = create_key(owner, ["admin"])
    keyed = as_key(api_server, secret)
    r = keyed.post("/workflows", {"name": f"by an admin key {uid()}", "tasks": LONG_DELAY})
    assert r.status == 201, r
    wf = r.json
    assert wf["ownerId"] == owner.id, wf
    r = execute(keyed, wf["id"])
    assert r.status == 202, r
    assert cancel(keyed, wf["id"], r.json["executionId"]).status == 200
    r = keyed.put(f"/workflows/{wf['id']}", {"name": "renamed by the admin key", "tasks": LONG_DELAY})
    assert r.status == 200 and r.json["version"] == 2 and r.json["name"] == "renamed by the admin key", r
    assert keyed.delete(f"/workflows/{wf['id']}").status in (200, 204)
    assert owner.rest.get(f"/workflows/{wf['id']}").status == 404


# ---------------------------------------------------------------------------
# Scopes over gRPC
# ---------------------------------------------------------------------------


def test_scopes_over_grpc(api_server, owner, protos, chan):
    wfs, wpb, exs, epb, workers, kpb, users, upb = stubs(protos, chan)
    D = grpc.StatusCode.PERMISSION_DENIED
    wf = create_wf(owner)
    other_wf = create_wf(owner)
    q1, q2 = f"q-{uid()}", f"q-{uid()}"
    _, read_secret = create_key(owner, ["read"])
    _, exec_secret = create_key(owner, ["execute"], workflowIds=[wf["id"]])
    _, worker_secret = create_key(owner, ["worker"], queues=[q1])
    _, admin_secret = create_key(owner, ["admin"])

    def denied(fn, req, secret):
        err = grpc_err(fn, req, metadata=bearer(secret))
        assert err.code() == D, (fn, req, err)

    # read
    got = wfs.GetWorkflow(wpb.GetWorkflowRequest(workflow_id=wf["id"]), metadata=bearer(read_secret), timeout=TIMEOUT)
    assert got.id == wf["id"]
    wfs.ListWorkflows(wpb.ListWorkflowsRequest(page_size=5), metadata=bearer(read_secret), timeout=TIMEOUT)
    assert users.GetCurrentUser(upb.GetCurrentUserRequest(), metadata=bearer(read_secret),
                                timeout=TIMEOUT).id == owner.id
    denied(wfs.CreateWorkflow, wpb.CreateWorkflowRequest(name="by a read key"), read_secret)
    denied(wfs.UpdateWorkflow, wpb.UpdateWorkflowRequest(workflow_id=wf["id"], name="x"), read_secret)
    denied(wfs.DeleteWorkflow, wpb.DeleteWorkflowRequest(workflow_id=wf["id"]), read_secret)
    denied(exs.ExecuteWorkflow, epb.ExecuteWorkflowRequest(workflow_id=wf["id"]), read_secret)

    # execute
    resp = exs.ExecuteWorkflow(epb.ExecuteWorkflowRequest(workflow_id=wf["id"]), metadata=bearer(exec_secret),
                               timeout=TIMEOUT)
    exs.CancelExecution(epb.CancelExecutionRequest(workflow_id=wf["id"], execution_id=resp.execution_id),
                        metadata=bearer(exec_secret), timeout=TIMEOUT)
    denied(exs.ExecuteWorkflow, epb.ExecuteWorkflowRequest(workflow_id=other_wf["id"]), exec_secret)
    denied(wfs.CreateWorkflow, wpb.CreateWorkflowRequest(name="by an execute key"), exec_secret)

    # worker
    r = workers.PollTask(kpb.PollTaskRequest(queue=q1, worker_id="g"), metadata=bearer(worker_secret),
                         timeout=TIMEOUT)
    assert not r.HasField("task")
    denied(workers.PollTask, kpb.PollTaskRequest(queue=q2, worker_id="g"), worker_secret)
    denied(wfs.CreateWorkflow, wpb.CreateWorkflowRequest(name="by a worker key"), worker_secret)
    denied(exs.ExecuteWorkflow, epb.ExecuteWorkflowRequest(workflow_id=wf["id"]), worker_secret)

    # admin
    made = wfs.CreateWorkflow(wpb.CreateWorkflowRequest(name=f"by an admin key {uid()}"),
                              metadata=bearer(admin_secret), timeout=TIMEOUT)
    assert made.owner_id == owner.id
    wfs.DeleteWorkflow(wpb.DeleteWorkflowRequest(workflow_id=made.id), metadata=bearer(admin_secret), timeout=TIMEOUT)

    # Nothing the refused calls touched changed.
    r = owner.rest.get(f"/workflows/{wf['id']}")
    assert r.status == 200 and r.json["version"] == 1 and r.json["name"] == wf["name"], r


# ---------------------------------------------------------------------------
# Expiry and last use
# ---------------------------------------------------------------------------


def test_expired_key_is_401(api_server, owner, protos, chan):
    expires = int(time.time()) + 4
    key, secret = create_key(owner, ["read"], expiresAt=rfc3339(expires))
    assert wh.rfc3339_nanos(key["expiresAt"]) // 1_000_000_000 == expires, key
    keyed = as_key(api_server, secret)
    if time.time() < expires - 1:  # still valid: it works (skipped only on a stalled machine)
        assert keyed.get("/users/me").status == 200
    time.sleep(max(0.0, expires + 1.5 - time.time()))  # the time under test
    err = assert_error(keyed.get("/users/me"), 401, 16)
    assert "the api key has expired" in err["message"].lower(), err
    *_, users, upb = stubs(protos, chan)
    e = grpc_err(users.GetCurrentUser, upb.GetCurrentUserRequest(), metadata=bearer(secret))
    assert e.code() == grpc.StatusCode.UNAUTHENTICATED, e


def test_last_used_appears_after_use(api_server, owner):
    key, secret = create_key(owner, ["read"])
    listed = {k["id"]: k for k in list_keys(owner)}
    assert not listed[key["id"]].get("lastUsedAt"), listed[key["id"]]
    t0 = time.time()
    assert as_key(api_server, secret).get("/users/me").status == 200

    def used():
        k = {k["id"]: k for k in list_keys(owner)}[key["id"]]
        return k.get("lastUsedAt")

    last = wh.wait_until(used, 10, 0.2, message="lastUsedAt after the first use")
    at = wh.rfc3339_nanos(last) / 1e9
    assert wh.rfc3339_nanos(key["createdAt"]) / 1e9 - 1 <= at <= time.time() + 1, (last, key)
    assert at >= t0 - 1, (last, t0)


def test_unknown_and_malformed_keys_are_401(api_server):
    for token in ("wk_" + uuid.uuid4().hex + uuid.uuid4().hex, "wk_", "wk_x"):
        assert_error(as_key(api_server, token).get("/users/me"), 401, 16)
