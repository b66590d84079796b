"""The weft.v1 API of Step 2 over gRPC (grpcio stubs generated from
proto/weft/v1): users, workflows, tasks and search, their status codes, and
that gRPC and REST share one store and one kind of token."""

from __future__ import annotations

import time
import uuid

import grpc
import pytest
from google.protobuf import duration_pb2, message_factory, struct_pb2, timestamp_pb2

import weft_helpers as wh

IMPLEMENTED = {"weft.v1.UserService", "weft.v1.WorkflowService", "weft.v1.TaskService", "weft.v1.CollaboratorService",
               "weft.v1.VersionService", "weft.v1.ExecutionService", "weft.v1.LogService", "weft.v1.WorkerService",
               "weft.v1.OrganizationService", "weft.v1.QueueAccessService", "weft.v1.SecretService", "weft.v1.AuditService",
               "weft.v1.ApiKeyService", "weft.v1.ScheduleService", "weft.v1.TriggerService", "weft.v1.EventService",
               "weft.v1.SubscriptionService", "weft.v1.IntegrationService", "weft.v1.NotificationService",
               "weft.v1.AnalyticsService"}
ANALYTICS_METHODS = ["GetWorkflowStats", "GetExecutionTrends", "GetWorkflowInsights", "PredictExecution",
                     "SetWorkflowBudget", "GetWorkflowBudget", "DeleteWorkflowBudget", "SetOrganizationBudget",
                     "GetOrganizationBudget", "DeleteOrganizationBudget"]
TIMEOUT = 10


# ---------------------------------------------------------------------------
# Fixtures and helpers
# ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def users(chan, v1):
    return v1.users_pb2_grpc.UserServiceStub(chan)


@pytest.fixture(scope="module")
def workflows(chan, v1):
    return v1.workflows_pb2_grpc.WorkflowServiceStub(chan)


@pytest.fixture(scope="module")
def tasks(chan, v1):
    return v1.tasks_pb2_grpc.TaskServiceStub(chan)


class GUser:
    def __init__(self, user, token, email, password):
        self.user = user
        self.id = user.id
        self.token = token
        self.email = email
        self.password = password
        self.md = (("authorization", f"Bearer {token}"),)


def g_register(users, v1, name="Grpc User") -> GUser:
    email = wh.unique_email(name.split()[0].lower())
    password = "grpc password 1"
    user = users.Register(v1.users_pb2.RegisterRequest(email=email, password=password, name=name), timeout=TIMEOUT)
    login = users.Login(v1.users_pb2.LoginRequest(email=email, password=password), timeout=TIMEOUT)
    return GUser(user, login.token, email, password)


@pytest.fixture(scope="module")
def alice(users, v1):
    return g_register(users, v1, "Alice Grpc")


@pytest.fixture(scope="module")
def bob(users, v1):
    return g_register(users, v1, "Bob Grpc")


def word(prefix="g"):
    return prefix + "".join(chr(ord("a") + int(c, 16) % 26) for c in uuid.uuid4().hex[:10])


def expect_code(code, fn, *args, **kwargs) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as info:
        fn(*args, timeout=TIMEOUT, **kwargs)
    assert info.value.code() == code, (info.value.code(), info.value.details())
    return info.value


def task_msg(v1, name, action="noop", key="", config=None, depends=(), **extra):
    t = v1.tasks_pb2.Task(name=name, action=action, key=key, depends_on=list(depends), **extra)
    if config is not None:
        t.config.update(config)
    return t


def create(workflows, v1, user, name=None, description="", task_list=()):
    return workflows.CreateWorkflow(
        v1.workflows_pb2.CreateWorkflowRequest(name=name or f"wf {word()}", description=description,
                                               tasks=list(task_list)),
        metadata=user.md, timeout=TIMEOUT)


def ts_close_to_now(ts: timestamp_pb2.Timestamp):
    assert ts.seconds > 0
    assert abs(ts.seconds - time.time()) < 300, ts


# ---------------------------------------------------------------------------
# Users
# ---------------------------------------------------------------------------


def test_register_login_and_current_user(users, v1):
    email = wh.unique_email("reg")
    user = users.Register(v1.users_pb2.RegisterRequest(email=email, password="password123", name="Reg User"),
                          timeout=TIMEOUT)
    assert user.id.startswith("usr_")
    assert (user.email, user.name) == (email, "Reg User")
    ts_close_to_now(user.created_at)
    ts_close_to_now(user.updated_at)

    login = users.Login(v1.users_pb2.LoginRequest(email=email, password="password123"), timeout=TIMEOUT)
    assert login.token
    assert login.expires_at.seconds > time.time() + 60
    assert login.user.id == user.id
    assert login.user.email == email

    me = users.GetCurrentUser(v1.users_pb2.GetCurrentUserRequest(),
                              metadata=(("authorization", f"Bearer {login.token}"),), timeout=TIMEOUT)
    assert (me.id, me.email, me.name) == (user.id, email, "Reg User")
    assert me.created_at == user.created_at


def test_register_errors(users, v1, alice):
    R = v1.users_pb2.RegisterRequest
    expect_code(grpc.StatusCode.ALREADY_EXISTS, users.Register, R(email=alice.email, password="password123", name="x"))
    for req in (R(email="nope", password="password123", name="x"),
                R(email=wh.unique_email(), password="short", name="x"),
                R(email=wh.unique_email(), password="password123", name=""),
                R(email="", password="password123", name="x")):
        expect_code(grpc.StatusCode.INVALID_ARGUMENT, users.Register, req)


def test_login_errors(users, v1, alice):
    L = v1.users_pb2.LoginRequest
    expect_code(grpc.StatusCode.UNAUTHENTICATED, users.Login, L(email=alice.email, password="wrong password"))
    expect_code(grpc.StatusCode.UNAUTHENTICATED, users.Login, L(email=wh.unique_email(), password="whatever1"))


def _implemented_calls(v1, workflows, tasks, users):
    W, T = v1.workflows_pb2, v1.tasks_pb2
    return [
        (users.GetCurrentUser, v1.users_pb2.GetCurrentUserRequest()),
        (workflows.CreateWorkflow, W.CreateWorkflowRequest(name="x")),
        (workflows.ListWorkflows, W.ListWorkflowsRequest()),
        (workflows.GetWorkflow, W.GetWorkflowRequest(workflow_id="wf_x")),
        (workflows.UpdateWorkflow, W.UpdateWorkflowRequest(workflow_id="wf_x", name="x")),
        (workflows.DeleteWorkflow, W.DeleteWorkflowRequest(workflow_id="wf_x")),
        (workflows.SearchWorkflows, W.SearchWorkflowsRequest(query="x")),
        (tasks.CreateTask, T.CreateTaskRequest(workflow_id="wf_x", name="x", action="noop")),
        (tasks.ListTasks, T.ListTasksRequest(workflow_id="wf_x")),
        (tasks.GetTask, T.GetTaskRequest(task_id="tsk_x")),
        (tasks.UpdateTask, T.UpdateTaskRequest(task_id="tsk_x", name="x", action="noop")),
        (tasks.DeleteTask, T.DeleteTaskRequest(task_id="tsk_x")),
    ]


@pytest.mark.parametrize("metadata", [(), (("authorization", "Bearer garbage"),), (("authorization", "garbage"),),
                                      (("authorization", "Bearer"),), (("authorization", "Basic dTpw"),)],
                         ids=["none", "garbage", "no-scheme", "scheme-only", "basic"])
def test_calls_need_a_valid_token(v1, workflows, tasks, users, metadata):
    for fn, req in _implemented_calls(v1, workflows, tasks, users):
        err = expect_code(grpc.StatusCode.UNAUTHENTICATED, fn, req, metadata=metadata)
        assert err.details(), fn


# ---------------------------------------------------------------------------
# Workflows
# ---------------------------------------------------------------------------


def test_create_and_get_workflow(workflows, v1, alice):
    fetch = task_msg(v1, "Fetch order", "http", config={"url": "https://example.com/o", "method": "POST"},
                     description="call it", timeout=duration_pb2.Duration(seconds=30),
                     retry=v1.tasks_pb2.RetryPolicy(max_attempts=3, initial_backoff=duration_pb2.Duration(seconds=1),
                                                    max_backoff=duration_pb2.Duration(seconds=20),
                                                    backoff_multiplier=2.0, retryable_errors=["timeout"]))
    log = task_msg(v1, "Log it", "log", key="logger", config={"message": "done"}, depends=["fetch_order"])
    wf = create(workflows, v1, alice, "Grpc Workflow", "made over gRPC", [fetch, log])
    assert wf.id.startswith("wf_")
    assert (wf.name, wf.description) == ("Grpc Workflow", "made over gRPC")
    assert (wf.owner_id, wf.version, wf.etag, wf.role) == (alice.id, 1, "1", "owner")
    ts_close_to_now(wf.created_at)
    assert [t.key for t in wf.tasks] == ["fetch_order", "logger"]
    t0, t1 = wf.tasks
    assert t0.id.startswith("tsk_") and t1.id.startswith("tsk_") and t0.id != t1.id
    assert t0.workflow_id == wf.id
    assert t0.action == "http"
    assert dict(t0.config) == {"url": "https://example.com/o", "method": "POST"}
    assert t0.description == "call it"
    assert t0.timeout.seconds == 30
    assert t0.retry.max_attempts == 3
    assert t0.retry.initial_backoff.seconds == 1
    assert t0.retry.max_backoff.seconds == 20
    assert t0.retry.backoff_multiplier == 2.0
    assert list(t0.retry.retryable_errors) == ["timeout"]
    assert list(t1.depends_on) == ["fetch_order"]
    assert dict(t1.config) == {"message": "done"}

    got = workflows.GetWorkflow(v1.workflows_pb2.GetWorkflowRequest(workflow_id=wf.id), metadata=alice.md,
                                timeout=TIMEOUT)
    assert got == wf


def test_create_rejects_invalid_definitions(workflows, v1, alice):
    bad = [
        [task_msg(v1, "a", "teleport")],
        [task_msg(v1, "a", "noop", config={"nope": 1})],
        [task_msg(v1, "a"), task_msg(v1, "a")],
        [task_msg(v1, "a", depends=["ghost"])],
        [task_msg(v1, "a", depends=["b"]), task_msg(v1, "b", depends=["a"])],
        [task_msg(v1, "a", depends=["a"])],
        [task_msg(v1, "a", "http", config={"url": "file:///etc/passwd"})],
        [task_msg(v1, "a", "condition", config={"expression": "x", "then": ["b"]}), task_msg(v1, "b")],
    ]
    for task_list in bad:
        err = expect_code(grpc.StatusCode.INVALID_ARGUMENT, workflows.CreateWorkflow,
                          v1.workflows_pb2.CreateWorkflowRequest(name="bad", tasks=task_list), metadata=alice.md)
        assert '"a"' in err.details(), err.details()
    expect_code(grpc.StatusCode.INVALID_ARGUMENT, workflows.CreateWorkflow,
                v1.workflows_pb2.CreateWorkflowRequest(name=""), metadata=alice.md)


def test_get_unknown_workflow(workflows, v1, alice):
    expect_code(grpc.StatusCode.NOT_FOUND, workflows.GetWorkflow,
                v1.workflows_pb2.GetWorkflowRequest(workflow_id="wf_unknown"), metadata=alice.md)
    expect_code(grpc.StatusCode.INVALID_ARGUMENT, workflows.GetWorkflow,
                v1.workflows_pb2.GetWorkflowRequest(workflow_id=""), metadata=alice.md)


def test_list_workflows_pages_and_filters(workflows, v1, alice):
    prefix = word("glist")
    made = []
    for i in range(5):
        made.append(create(workflows, v1, alice, f"{prefix} {i}", task_list=[task_msg(v1, "t")]))
        time.sleep(0.005)
    L = v1.workflows_pb2.ListWorkflowsRequest
    seen, token = [], ""
    for _ in range(5):
        page = workflows.ListWorkflows(L(name_prefix=prefix, page_size=2, page_token=token), metadata=alice.md,
                                       timeout=TIMEOUT)
        seen.append([w.id for w in page.workflows])
        token = page.next_page_token
        if not token:
            break
    assert [len(p) for p in seen] == [2, 2, 1]
    assert sum(seen, []) == [w.id for w in reversed(made)]

    summary = workflows.ListWorkflows(L(name_prefix=prefix.upper(), summary=True, owner_id="me"), metadata=alice.md,
                                      timeout=TIMEOUT)
    assert [w.id for w in summary.workflows] == [w.id for w in reversed(made)]
    assert all(len(w.tasks) == 0 for w in summary.workflows)

    newer = workflows.ListWorkflows(L(name_prefix=prefix, created_after=made[1].created_at), metadata=alice.md,
                                    timeout=TIMEOUT)
    assert {w.id for w in newer.workflows} <= {w.id for w in made[1:]}
    assert {w.id for w in made[2:]} <= {w.id for w in newer.workflows}

    expect_code(grpc.StatusCode.INVALID_ARGUMENT, workflows.ListWorkflows, L(page_size=-1), metadata=alice.md)
    expect_code(grpc.StatusCode.INVALID_ARGUMENT, workflows.ListWorkflows, L(page_token="junk"), metadata=alice.md)
    first = workflows.ListWorkflows(L(name_prefix=prefix, page_size=1), metadata=alice.md, timeout=TIMEOUT)
    expect_code(grpc.StatusCode.INVALID_ARGUMENT, workflows.ListWorkflows,
                L(name_prefix=prefix + "z", page_size=1, page_token=first.next_page_token), metadata=alice.md)
    big = workflows.ListWorkflows(L(page_size=100000), metadata=alice.md, timeout=TIMEOUT)
    assert 0 < len(big.workflows) <= 1000


def test_update_workflow_and_etags(workflows, v1, alice):
    wf = create(workflows, v1, alice, "G update", task_list=[task_msg(v1, "Keep me"), task_msg(v1, "Drop me")])
    keep = wf.tasks[0]
    U = v1.workflows_pb2.UpdateWorkflowRequest
    kept = v1.tasks_pb2.Task(id=keep.id, name="Keep me", action="log")
    up = workflows.UpdateWorkflow(U(workflow_id=wf.id, name="G updated", description="new", etag="1",
                                    tasks=[kept, task_msg(v1, "Fresh", depends=["keep_me"])]),
                                  metadata=alice.md, timeout=TIMEOUT)
    assert (up.name, up.description, up.version, up.etag) == ("G updated", "new", 2, "2")
    assert up.created_at == wf.created_at
    assert up.tasks[0].id == keep.id and up.tasks[0].action == "log"
    assert up.tasks[1].id not in (keep.id, wf.tasks[1].id)
    assert up.tasks[1].key == "fresh"

    err = expect_code(grpc.StatusCode.ABORTED, workflows.UpdateWorkflow,
                      U(workflow_id=wf.id, name="stale", etag="1"), metadata=alice.md)
    assert err.details()
    other = create(workflows, v1, alice, task_list=[task_msg(v1, "Foreign")])
    expect_code(grpc.StatusCode.INVALID_ARGUMENT, workflows.UpdateWorkflow,
                U(workflow_id=wf.id, name="x", tasks=[v1.tasks_pb2.Task(id=other.tasks[0].id, name="f", action="noop")]),
                metadata=alice.md)
    expect_code(grpc.StatusCode.NOT_FOUND, workflows.UpdateWorkflow, U(workflow_id="wf_unknown", name="x"),
                metadata=alice.md)
    now = workflows.GetWorkflow(v1.workflows_pb2.GetWorkflowRequest(workflow_id=wf.id), metadata=alice.md,
                                timeout=TIMEOUT)
    assert now == up


def test_delete_workflow(workflows, tasks, v1, alice):
    w = word("gdel")
    wf = create(workflows, v1, alice, f"{w} doomed", task_list=[task_msg(v1, "t")])
    D = v1.workflows_pb2.DeleteWorkflowRequest
    expect_code(grpc.StatusCode.ABORTED, workflows.DeleteWorkflow, D(workflow_id=wf.id, etag="5"), metadata=alice.md)
    resp = workflows.DeleteWorkflow(D(workflow_id=wf.id, etag="1"), metadata=alice.md, timeout=TIMEOUT)
    assert resp == v1.workflows_pb2.DeleteWorkflowResponse()
    expect_code(grpc.StatusCode.NOT_FOUND, workflows.GetWorkflow, v1.workflows_pb2.GetWorkflowRequest(workflow_id=wf.id),
                metadata=alice.md)
    expect_code(grpc.StatusCode.NOT_FOUND, workflows.DeleteWorkflow, D(workflow_id=wf.id), metadata=alice.md)
    expect_code(grpc.StatusCode.NOT_FOUND, tasks.GetTask, v1.tasks_pb2.GetTaskRequest(task_id=wf.tasks[0].id),
                metadata=alice.md)
    listed = workflows.ListWorkflows(v1.workflows_pb2.ListWorkflowsRequest(name_prefix=w), metadata=alice.md,
                                     timeout=TIMEOUT)
    assert list(listed.workflows) == []
    found = workflows.SearchWorkflows(v1.workflows_pb2.SearchWorkflowsRequest(query=w), metadata=alice.md,
                                      timeout=TIMEOUT)
    assert list(found.results) == []


def test_search_workflows(workflows, users, v1, alice):
    w = word("gsrch")
    by_desc = create(workflows, v1, alice, "Described", f"about {w} things")
    by_name = create(workflows, v1, alice, f"{w} named")
    S = v1.workflows_pb2.SearchWorkflowsRequest
    res = workflows.SearchWorkflows(S(query=w[:-2]), metadata=alice.md, timeout=TIMEOUT)
    assert [r.workflow.id for r in res.results] == [by_name.id, by_desc.id]
    assert res.results[0].score >= res.results[1].score
    assert f"[{w}]" in res.results[0].snippet.lower()
    assert all(len(r.workflow.tasks) == 0 for r in res.results)
    assert res.results[0].workflow.owner_id == alice.id
    for q in ("", "   "):
        expect_code(grpc.StatusCode.INVALID_ARGUMENT, workflows.SearchWorkflows, S(query=q), metadata=alice.md)
    # Hostile queries are literal text (no FTS syntax): each word must match.
    # None of these words is in any workflow of a fresh user whose only
    # workflow is named "<unique word> named", so every answer is OK and
    # empty -- except a query over 1000 bytes, which is INVALID_ARGUMENT.
    # Alice (many workflows) gets the same status codes.
    carol = g_register(users, v1, "Carol Hostile")
    own = create(workflows, v1, carol, f"{word('ghost')} named")
    own_word = own.name.split()[0]
    for q in ['"', "*", "NEAR(a b)", "(", "a OR", "NOT", "'; DROP TABLE workflows; --", "日本語 🙂", "\x00", "-x",
              "x" * 1000, "x" * 1001]:
        for user in (carol, alice):
            if len(q.encode()) > 1000:
                err = expect_code(grpc.StatusCode.INVALID_ARGUMENT, workflows.SearchWorkflows, S(query=q),
                                  metadata=user.md)
                assert "1000" in err.details(), err.details()
                continue
            res = workflows.SearchWorkflows(S(query=q), metadata=user.md, timeout=TIMEOUT)
            if user is carol:
                assert list(res.results) == [], (q, res)
    # ... while the operators around a word that does match change nothing.
    for q in (f"{own_word} *", f'{own_word} "', f"({own_word})", f"-{own_word}", f"{own_word} NAMED"):
        res = workflows.SearchWorkflows(S(query=q), metadata=carol.md, timeout=TIMEOUT)
        assert [r.workflow.id for r in res.results] == [own.id], (q, res)
    for q in (f"{own_word} OR", f"NOT {own_word}", f"{own_word} NEAR"):
        res = workflows.SearchWorkflows(S(query=q), metadata=carol.md, timeout=TIMEOUT)
        assert list(res.results) == [], (q, res)


# ---------------------------------------------------------------------------
# Tasks
# ---------------------------------------------------------------------------


def test_task_service(workflows, tasks, v1, alice):
    wf = create(workflows, v1, alice, task_list=[task_msg(v1, "Base")])
    T = v1.tasks_pb2
    cfg = struct_pb2.Struct()
    cfg.update({"duration": "2s"})
    created = tasks.CreateTask(T.CreateTaskRequest(workflow_id=wf.id, name="Wait a bit", action="delay", config=cfg,
                                                   depends_on=["base"]), metadata=alice.md, timeout=TIMEOUT)
    assert created.id.startswith("tsk_")
    assert (created.workflow_id, created.key, created.action) == (wf.id, "wait_a_bit", "delay")
    assert dict(created.config) == {"duration": "2s"}
    assert list(created.depends_on) == ["base"]

    got = tasks.GetTask(T.GetTaskRequest(task_id=created.id), metadata=alice.md, timeout=TIMEOUT)
    assert got == created
    listed = tasks.ListTasks(T.ListTasksRequest(workflow_id=wf.id), metadata=alice.md, timeout=TIMEOUT)
    assert [t.id for t in listed.tasks] == [wf.tasks[0].id, created.id]
    page = tasks.ListTasks(T.ListTasksRequest(workflow_id=wf.id, page_size=1), metadata=alice.md, timeout=TIMEOUT)
    assert [t.id for t in page.tasks] == [wf.tasks[0].id] and page.next_page_token
    page2 = tasks.ListTasks(T.ListTasksRequest(workflow_id=wf.id, page_size=1, page_token=page.next_page_token),
                            metadata=alice.md, timeout=TIMEOUT)
    assert [t.id for t in page2.tasks] == [created.id] and not page2.next_page_token

    updated = tasks.UpdateTask(T.UpdateTaskRequest(task_id=created.id, name="Wait longer", action="delay",
                                                   config=struct_pb2.Struct(fields={"duration": struct_pb2.Value(
                                                       string_value="9s")}), depends_on=["base"]),
                               metadata=alice.md, timeout=TIMEOUT)
    assert (updated.id, updated.key, updated.name) == (created.id, "wait_a_bit", "Wait longer")
    assert dict(updated.config) == {"duration": "9s"}
    expect_code(grpc.StatusCode.INVALID_ARGUMENT, tasks.UpdateTask, T.UpdateTaskRequest(task_id=created.id, name="x"),
                metadata=alice.md)
    expect_code(grpc.StatusCode.ABORTED, tasks.UpdateTask,
                T.UpdateTaskRequest(task_id=created.id, name="x", action="noop", etag="1"), metadata=alice.md)

    wf_now = workflows.GetWorkflow(v1.workflows_pb2.GetWorkflowRequest(workflow_id=wf.id), metadata=alice.md,
                                   timeout=TIMEOUT)
    assert wf_now.version == 3

    err = expect_code(grpc.StatusCode.FAILED_PRECONDITION, tasks.DeleteTask,
                      T.DeleteTaskRequest(task_id=wf.tasks[0].id), metadata=alice.md)
    assert "base" in err.details()
    assert tasks.DeleteTask(T.DeleteTaskRequest(task_id=created.id, etag="3"), metadata=alice.md,
                            timeout=TIMEOUT) == T.DeleteTaskResponse()
    expect_code(grpc.StatusCode.NOT_FOUND, tasks.GetTask, T.GetTaskRequest(task_id=created.id), metadata=alice.md)
    expect_code(grpc.StatusCode.NOT_FOUND, tasks.CreateTask,
                T.CreateTaskRequest(workflow_id="wf_unknown", name="x", action="noop"), metadata=alice.md)
    expect_code(grpc.StatusCode.INVALID_ARGUMENT, tasks.CreateTask,
                T.CreateTaskRequest(workflow_id=wf.id, name="x", action="noop", depends_on=["ghost"]), metadata=alice.md)
    expect_code(grpc.StatusCode.NOT_FOUND, tasks.ListTasks, T.ListTasksRequest(workflow_id="wf_unknown"),
                metadata=alice.md)


# ---------------------------------------------------------------------------
# Isolation, cross-protocol, every service implemented
# ---------------------------------------------------------------------------


def test_other_users_workflows_are_not_found(workflows, tasks, v1, alice, bob):
    wf = create(workflows, v1, alice, word("gpriv"), task_list=[task_msg(v1, "secret")])
    W, T = v1.workflows_pb2, v1.tasks_pb2
    NF = grpc.StatusCode.NOT_FOUND
    expect_code(NF, workflows.GetWorkflow, W.GetWorkflowRequest(workflow_id=wf.id), metadata=bob.md)
    expect_code(NF, workflows.UpdateWorkflow, W.UpdateWorkflowRequest(workflow_id=wf.id, name="x"), metadata=bob.md)
    expect_code(NF, workflows.DeleteWorkflow, W.DeleteWorkflowRequest(workflow_id=wf.id), metadata=bob.md)
    expect_code(NF, tasks.GetTask, T.GetTaskRequest(task_id=wf.tasks[0].id), metadata=bob.md)
    expect_code(NF, tasks.ListTasks, T.ListTasksRequest(workflow_id=wf.id), metadata=bob.md)
    expect_code(NF, tasks.CreateTask, T.CreateTaskRequest(workflow_id=wf.id, name="x", action="noop"), metadata=bob.md)
    expect_code(NF, tasks.UpdateTask, T.UpdateTaskRequest(task_id=wf.tasks[0].id, name="x", action="noop"),
                metadata=bob.md)
    expect_code(NF, tasks.DeleteTask, T.DeleteTaskRequest(task_id=wf.tasks[0].id), metadata=bob.md)
    listed = workflows.ListWorkflows(W.ListWorkflowsRequest(page_size=1000), metadata=bob.md, timeout=TIMEOUT)
    assert wf.id not in [w.id for w in listed.workflows]
    found = workflows.SearchWorkflows(W.SearchWorkflowsRequest(query=wf.name), metadata=bob.md, timeout=TIMEOUT)
    assert list(found.results) == []
    assert workflows.GetWorkflow(W.GetWorkflowRequest(workflow_id=wf.id), metadata=alice.md, timeout=TIMEOUT) == wf


def test_grpc_and_rest_share_store_and_tokens(api_server, workflows, v1, alice):
    # gRPC token on REST
    rest = wh.RestClient(api_server, alice.token)
    me = rest.get("/users/me")
    assert me.status == 200, me
    assert me.json["id"] == alice.id

    # created over gRPC, read and changed over REST
    g = create(workflows, v1, alice, "cross g", task_list=[task_msg(v1, "Fetch order")])
    r = rest.get(f"/workflows/{g.id}")
    assert r.status == 200, r
    assert r.json["name"] == "cross g"
    assert [t["id"] for t in r.json["tasks"]] == [g.tasks[0].id]
    assert r.json["tasks"][0]["key"] == "fetch_order"
    r = rest.put(f"/workflows/{g.id}", {"name": "cross g2", "tasks": [{"id": g.tasks[0].id, "name": "Fetch order",
                                                                       "action": "noop"}]})
    assert r.status == 200, r
    back = workflows.GetWorkflow(v1.workflows_pb2.GetWorkflowRequest(workflow_id=g.id), metadata=alice.md,
                                 timeout=TIMEOUT)
    assert (back.name, back.version, back.etag) == ("cross g2", 2, "2")

    # created over REST (with a REST-login token), read over gRPC
    login = wh.RestClient(api_server).post("/users/login", {"email": alice.email, "password": alice.password})
    assert login.status == 200, login
    rest2 = wh.RestClient(api_server, login.json["token"])
    r = rest2.post("/workflows", {"name": "cross r", "description": "from rest",
                                  "tasks": [{"name": "Step", "action": "delay", "config": {"duration": "1s"},
                                             "timeout": "5s"}]})
    assert r.status == 201, r
    md = (("authorization", f"Bearer {login.json['token']}"),)
    got = workflows.GetWorkflow(v1.workflows_pb2.GetWorkflowRequest(workflow_id=r.json["id"]), metadata=md,
                                timeout=TIMEOUT)
    assert (got.name, got.description, got.owner_id) == ("cross r", "from rest", alice.id)
    assert got.tasks[0].id == r.json["tasks"][0]["id"]
    assert dict(got.tasks[0].config) == {"duration": "1s"}
    assert got.tasks[0].timeout.seconds == 5
    assert wh.rfc3339_nanos(r.json["createdAt"]) == got.created_at.seconds * 10**9 + got.created_at.nanos

    # deleted over gRPC, gone over REST
    workflows.DeleteWorkflow(v1.workflows_pb2.DeleteWorkflowRequest(workflow_id=r.json["id"]), metadata=md,
                             timeout=TIMEOUT)
    assert rest2.get(f"/workflows/{r.json['id']}").status == 404


def test_collaborators_over_grpc(api_server, chan, workflows, v1, alice, bob):
    collaborators = v1.collaborators_pb2_grpc.CollaboratorServiceStub(chan)
    pb = v1.collaborators_pb2
    wf = create(workflows, v1, alice, task_list=[task_msg(v1, "a")])
    get = v1.workflows_pb2.GetWorkflowRequest(workflow_id=wf.id)
    expect_code(grpc.StatusCode.NOT_FOUND, workflows.GetWorkflow, get, metadata=bob.md)
    # Collaborators must be members of the workflow's organization (by consent).
    wh.invite_and_accept(api_server, alice.token, bob.token, wf.org_id)
    added = collaborators.AddCollaborator(
        pb.AddCollaboratorRequest(workflow_id=wf.id, user_id=bob.id, role=pb.Collaborator.viewer),
        metadata=alice.md, timeout=TIMEOUT)
    assert added.role == pb.Collaborator.viewer and added.user_id == bob.id
    assert workflows.GetWorkflow(get, metadata=bob.md, timeout=TIMEOUT).role == "viewer"
    update = v1.workflows_pb2.UpdateWorkflowRequest(workflow_id=wf.id, name="taken over")
    expect_code(grpc.StatusCode.PERMISSION_DENIED, workflows.UpdateWorkflow, update, metadata=bob.md)
    expect_code(grpc.StatusCode.PERMISSION_DENIED, collaborators.UpdateCollaboratorRole,
                pb.UpdateCollaboratorRoleRequest(workflow_id=wf.id, user_id=bob.id, role=pb.Collaborator.editor),
                metadata=bob.md)
    collaborators.UpdateCollaboratorRole(
        pb.UpdateCollaboratorRoleRequest(workflow_id=wf.id, user_id=bob.id, role=pb.Collaborator.editor),
        metadata=alice.md, timeout=TIMEOUT)
    assert workflows.UpdateWorkflow(update, metadata=bob.md, timeout=TIMEOUT).version == 2
    listed = collaborators.ListCollaborators(pb.ListCollaboratorsRequest(workflow_id=wf.id), metadata=bob.md,
                                             timeout=TIMEOUT)
    assert [(c.user_id, c.role) for c in listed.collaborators] == [
        (alice.id, pb.Collaborator.owner), (bob.id, pb.Collaborator.editor)]
    collaborators.RemoveCollaborator(pb.RemoveCollaboratorRequest(workflow_id=wf.id, user_id=bob.id),
                                     metadata=alice.md, timeout=TIMEOUT)
    expect_code(grpc.StatusCode.NOT_FOUND, workflows.GetWorkflow, get, metadata=bob.md)


def _later_methods(protos):
    out = []
    for name, svc in sorted(wh.v1_services(protos).items()):
        if name in IMPLEMENTED:
            continue
        for m in svc.methods:
            out.append((name, m))
    return out


def test_every_v1_service_is_implemented(protos):
    # The last planned service, analytics, landed in Step 10.
    methods = _later_methods(protos)
    assert methods == [], [f"{s}/{m.name}" for s, m in methods]
    assert set(wh.v1_services(protos)) == IMPLEMENTED


def test_analytics_service_over_grpc(protos, chan, v1, workflows, alice, bob):
    svc = wh.v1_services(protos)["weft.v1.AnalyticsService"]
    assert [m.name for m in svc.methods] == ANALYTICS_METHODS
    A = v1.analytics_pb2
    stub = v1.analytics_pb2_grpc.AnalyticsServiceStub(chan)
    # Every method authenticates first.
    for m in svc.methods:
        req_cls = message_factory.GetMessageClass(m.input_type)
        expect_code(grpc.StatusCode.UNAUTHENTICATED, getattr(stub, m.name), req_cls())
    wf = create(workflows, v1, alice, task_list=[task_msg(v1, "a")])
    s = stub.GetWorkflowStats(A.GetWorkflowStatsRequest(workflow_id=wf.id, window="day"), metadata=alice.md,
                              timeout=TIMEOUT)
    assert s.workflow_id == wf.id and s.finished == 0 and s.duration_error_bound == pytest.approx(1 / 128), s
    assert s.window_end.seconds % 3600 == 0 and s.window_start.seconds % 3600 == 0, s
    t = stub.GetExecutionTrends(A.GetExecutionTrendsRequest(time_zone="Europe/Berlin"), metadata=alice.md,
                                timeout=TIMEOUT)
    assert t.time_zone == "Europe/Berlin" and t.scope == "visible", t
    ins = stub.GetWorkflowInsights(A.GetWorkflowInsightsRequest(workflow_id=wf.id), metadata=alice.md, timeout=TIMEOUT)
    assert ins.workflow_id == wf.id and ins.next_run.sample_size == 0, ins
    expect_code(grpc.StatusCode.NOT_FOUND, stub.PredictExecution, A.PredictExecutionRequest(execution_id="exe_nope"),
                metadata=alice.md)
    expect_code(grpc.StatusCode.INVALID_ARGUMENT, stub.SetWorkflowBudget,
                A.SetWorkflowBudgetRequest(workflow_id=wf.id, monthly_limit_usd=0), metadata=alice.md)
    expect_code(grpc.StatusCode.INVALID_ARGUMENT, stub.SetWorkflowBudget,
                A.SetWorkflowBudgetRequest(workflow_id=wf.id, monthly_limit_usd=3, time_zone="Nowhere/Special"),
                metadata=alice.md)
    b = stub.SetWorkflowBudget(A.SetWorkflowBudgetRequest(workflow_id=wf.id, monthly_limit_usd=3, time_zone="Asia/Tokyo"),
                       metadata=alice.md, timeout=TIMEOUT)
    assert (b.scope, b.scope_id, b.monthly_limit_usd, b.time_zone) == ("workflow", wf.id, 3, "Asia/Tokyo"), b
    got = stub.GetWorkflowBudget(A.GetWorkflowBudgetRequest(workflow_id=wf.id), metadata=alice.md, timeout=TIMEOUT)
    assert got.monthly_limit_usd == 3 and got.scope_id == wf.id, got
    # Another user sees none of it.
    expect_code(grpc.StatusCode.NOT_FOUND, stub.GetWorkflowStats, A.GetWorkflowStatsRequest(workflow_id=wf.id),
                metadata=bob.md)
    expect_code(grpc.StatusCode.NOT_FOUND, stub.GetWorkflowBudget, A.GetWorkflowBudgetRequest(workflow_id=wf.id), metadata=bob.md)
    stub.DeleteWorkflowBudget(A.GetWorkflowBudgetRequest(workflow_id=wf.id), metadata=alice.md, timeout=TIMEOUT)
    expect_code(grpc.StatusCode.NOT_FOUND, stub.GetWorkflowBudget, A.GetWorkflowBudgetRequest(workflow_id=wf.id), metadata=alice.md)
    expect_code(grpc.StatusCode.INVALID_ARGUMENT, stub.GetWorkflowBudget, A.GetWorkflowBudgetRequest(), metadata=alice.md)


def test_unknown_v1_method_is_unimplemented(chan, alice):
    call = chan.unary_unary("/weft.v1.WorkflowService/Teleport", request_serializer=lambda b: b,
                            response_deserializer=lambda b: b)
    with pytest.raises(grpc.RpcError) as info:
        call(b"", metadata=alice.md, timeout=TIMEOUT)
    assert info.value.code() == grpc.StatusCode.UNIMPLEMENTED


def test_out_of_range_durations_and_non_finite_numbers_are_invalid(workflows, v1, alice, users):
    huge = task_msg(v1, "a", timeout=duration_pb2.Duration(seconds=1 << 62))
    expect_code(grpc.StatusCode.INVALID_ARGUMENT, workflows.CreateWorkflow,
                v1.workflows_pb2.CreateWorkflowRequest(name="huge", tasks=[huge]), metadata=alice.md)
    backoff = task_msg(v1, "a", retry=v1.tasks_pb2.RetryPolicy(initial_backoff=duration_pb2.Duration(seconds=-(1 << 62))))
    expect_code(grpc.StatusCode.INVALID_ARGUMENT, workflows.CreateWorkflow,
                v1.workflows_pb2.CreateWorkflowRequest(name="backoff", tasks=[backoff]), metadata=alice.md)
    nan = task_msg(v1, "a", config={"output": float("nan")})
    expect_code(grpc.StatusCode.INVALID_ARGUMENT, workflows.CreateWorkflow,
                v1.workflows_pb2.CreateWorkflowRequest(name="nan", tasks=[nan]), metadata=alice.md)
    inf = task_msg(v1, "a", retry=v1.tasks_pb2.RetryPolicy(jitter=float("inf")))
    expect_code(grpc.StatusCode.INVALID_ARGUMENT, workflows.CreateWorkflow,
                v1.workflows_pb2.CreateWorkflowRequest(name="inf", tasks=[inf]), metadata=alice.md)
    # The server is still there.
    assert users.GetCurrentUser(v1.users_pb2.GetCurrentUserRequest(), metadata=alice.md, timeout=TIMEOUT).id == alice.id
