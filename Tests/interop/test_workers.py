"""External workers (Step 3): the example worker examples/worker.py run
unchanged as a subprocess against a real server, and the worker protocol
itself over REST and gRPC (weft.v1.WorkerService).

Covered: outputs of external tasks flowing downstream, retries driven by the
worker's failures, non-retryable failures, heartbeats keeping a lease longer
than its duration, clean stop on SIGTERM/SIGINT, back-off while the server is
unreachable; long poll (empty after the wait, woken by a new task), stale and
reused lease tokens (FAILED_PRECONDITION), garbage tokens, queues per owner,
authentication, argument validation, cancellation ending a lease, and worker
log lines in the execution log.

REST error bodies carry the numeric gRPC code (`{"code": 9, ...}`, see
docs/API.md); `code_is` also accepts the canonical name should the server
print names.
"""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid

import pytest

import weft_helpers as wh

WORKER = wh.REPO_ROOT / "examples" / "worker.py"
TERMINAL = {"Completed", "Failed", "Cancelled", "TimedOut"}
CODES = {"INVALID_ARGUMENT": 3, "NOT_FOUND": 5, "PERMISSION_DENIED": 7, "FAILED_PRECONDITION": 9,
         "UNAUTHENTICATED": 16}
FAST_RETRY = {"maxAttempts": 3, "initialBackoff": "0.05s"}
TIMEOUT = 10


# ---------------------------------------------------------------------------
# Fixtures and helpers
# ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def alice(api_server):
    return wh.register_and_login(api_server, "Alice Worker")


@pytest.fixture(scope="module")
def bob(api_server):
    return wh.register_and_login(api_server, "Bob Worker")


def new_queue() -> str:
    return "q-" + uuid.uuid4().hex[:12]


def code_is(body, *names) -> bool:
    code = body.get("code") if isinstance(body, dict) else None
    return any(code in (CODES[n], n) for n in names)


def assert_error(r: wh.RestResponse, status, *names) -> dict:
    statuses = status if isinstance(status, (tuple, list, set)) else (status,)
    assert r.status in statuses, r
    body = r.json
    assert code_is(body, *names), (names, body)
    assert isinstance(body.get("message"), str) and body["message"], body
    return body


def ext(key, queue, input=None, depends=(), retry=None, **extra) -> dict:
    task = {"key": key, "name": key.capitalize(), "action": "external",
            "config": {"queue": queue, "input": input if input is not None else {}}, "dependsOn": list(depends)}
    if retry is not None:
        task["retry"] = retry
    task.update(extra)
    return task


def transform(key, output, depends=()) -> dict:
    return {"key": key, "name": key.capitalize(), "action": "transform", "config": {"output": output},
            "dependsOn": list(depends)}


def create_wf(user: wh.ApiUser, tasks) -> dict:
    r = user.rest.post("/workflows", {"name": f"workers {uuid.uuid4().hex[:8]}", "tasks": list(tasks)})
    assert r.status == 201, r
    return r.json


def task_id(wf: dict, key: str) -> str:
    return next(t["id"] for t in wf["tasks"] if t["key"] == key)


def execute(user: wh.ApiUser, wid: str, input=None) -> str:
    r = user.rest.post(f"/workflows/{wid}/execute", {"input": input or {}})
    assert r.status == 202, r
    assert r.json["executionId"], r.json
    return r.json["executionId"]


def get_execution(user: wh.ApiUser, wid: str, eid: str) -> dict:
    r = user.rest.get(f"/workflows/{wid}/executions/{eid}")
    assert r.status == 200, r
    return r.json


def wait_terminal(user: wh.ApiUser, wid: str, eid: str, timeout: float = 30) -> dict:
    last = {}

    def done():
        last["x"] = get_execution(user, wid, eid)
        return last["x"] if last["x"]["status"] in TERMINAL else None

    return wh.wait_until(done, timeout, 0.1, message=lambda: f"execution {eid} to end: {last.get('x')}")


def task_run(execution: dict, key: str) -> dict:
    for t in execution.get("tasks", []):
        if t["taskKey"] == key:
            return t
    raise AssertionError(f"no task {key} in {execution}")


def logs_of(user: wh.ApiUser, wid: str, eid: str) -> list:
    return wh.all_pages(user.rest, f"/workflows/{wid}/executions/{eid}/logs", "entries", pageSize=1000)


def wait_log(user, wid, eid, predicate, timeout=5.0) -> list:
    """Log lines are written after the state commit: give them a moment."""
    return wh.wait_until(lambda: [e for e in logs_of(user, wid, eid) if predicate(e)], timeout, 0.1,
                         message=lambda: f"log line in {[e['message'] for e in logs_of(user, wid, eid)]}")


def poll(user: wh.ApiUser, queue: str, wait=None, lease=None, worker="test", **extra) -> wh.RestResponse:
    body = {"workerId": worker, **extra}
    if wait is not None:
        body["wait"] = wait
    if lease is not None:
        body["leaseDuration"] = lease
    client = wh.RestClient(user.rest.server, user.token, timeout=75)
    return client.post(f"/queues/{queue}/poll", body)


def poll_task(user: wh.ApiUser, queue: str, wait="5s", lease="30s") -> dict:
    r = poll(user, queue, wait, lease)
    assert r.status == 200, r
    task = r.json.get("task")
    assert task, f"no task on {queue} within {wait}: {r}"
    return task


def no_task(r: wh.RestResponse) -> bool:
    assert r.status == 200, r
    return not r.json.get("task")


def heartbeat(user, token, lease=None):
    body = {"leaseToken": token}
    if lease is not None:
        body["leaseDuration"] = lease
    return user.rest.post("/workers/heartbeat", body)


def complete(user, token, output=None, log_lines=()):
    return user.rest.post("/workers/complete", {"leaseToken": token, "output": output or {}, "logLines": list(log_lines)})


def fail(user, token, error="broken", **extra):
    return user.rest.post("/workers/fail", {"leaseToken": token, "error": error, **extra})


def seconds_until(ts: str) -> float:
    return wh.rfc3339_nanos(ts) / 1e9 - time.time()


def assert_handed_out_after(expired_at: str, task: dict, lease_seconds: float) -> None:
    """`task` (leased for `lease_seconds`) was handed out once the earlier lease
    ending at `expired_at` had expired, not before: by the server's clock, its
    own lease expiry minus its length (10 ms for the store's millisecond dates)."""
    handed_out = wh.rfc3339_nanos(task["leaseExpiresAt"]) / 1e9 - lease_seconds
    early = wh.rfc3339_nanos(expired_at) / 1e9 - handed_out
    assert early <= 0.01, f"handed out again {early:.3f}s before the previous lease expired: {task}"


class WorkerProc:
    """examples/worker.py as a subprocess; stderr goes to a file."""

    def __init__(self, server, token, queue, tmp_path, *extra, worker_id="w1", url=None):
        self.worker_id = worker_id
        self.log_path = tmp_path / f"worker-{worker_id}-{uuid.uuid4().hex[:6]}.log"
        self._log = open(self.log_path, "wb")
        self.cmd = [sys.executable, str(WORKER), "--url", url or server.base_url, "--token", token,
                    "--queue", queue, "--worker-id", worker_id, "--wait", "2", *map(str, extra)]
        self.proc = subprocess.Popen(self.cmd, stdin=subprocess.DEVNULL, stdout=self._log, stderr=subprocess.STDOUT)

    def output(self) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")

    def wait(self, timeout: float) -> int | None:
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None

    def wait_exit(self, timeout: float = 20) -> int:
        rc = self.wait(timeout)
        assert rc is not None, f"worker {self.worker_id} still running after {timeout}s:\n{self.output()}"
        return rc

    def signal(self, sig):
        if self.proc.poll() is None:
            self.proc.send_signal(sig)

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)
        self._log.close()


@pytest.fixture
def workers(api_server, tmp_path):
    started: list[WorkerProc] = []

    def start(user, queue, *extra, worker_id="w1", url=None) -> WorkerProc:
        w = WorkerProc(api_server, user.token, queue, tmp_path, *extra, worker_id=worker_id, url=url)
        started.append(w)
        return w

    yield start
    for w in started:
        w.kill()


def worker_lines(entries, text) -> list:
    return [e for e in entries if text in e.get("message", "")]


# ---------------------------------------------------------------------------
# The example worker
# ---------------------------------------------------------------------------


def test_worker_outputs_flow_to_downstream_tasks(alice, workers):
    q = new_queue()
    wf = create_wf(alice, [
        transform("prep", {"numbers": "{{ input.numbers }}", "email": "{{ input.email }}"}),
        ext("add", q, {"sum": "{{ tasks.prep.output.numbers }}"}, depends=["prep"]),
        ext("send", q, {"to": "{{ tasks.prep.output.email }}", "subject": "Total"}, depends=["prep"]),
        transform("report", {"total": "{{ tasks.add.output.sum }}", "to": "{{ tasks.send.output.to }}",
                             "text": "sum={{ tasks.add.output.sum }}"}, depends=["add", "send"]),
    ])
    w = workers(alice, q, "--max-tasks", 2)
    eid = execute(alice, wf["id"], {"numbers": [1, 2, 3.5], "email": "ann@example.com"})
    ex = wait_terminal(alice, wf["id"], eid)
    assert w.wait_exit() == 0, w.output()
    assert ex["status"] == "Completed", (ex, w.output())
    assert task_run(ex, "add")["output"] == {"sum": 6.5}
    assert task_run(ex, "send")["output"] == {"to": "ann@example.com", "subject": "Total"}
    assert task_run(ex, "report")["output"] == {"total": 6.5, "to": "ann@example.com", "text": "sum=6.5"}
    for key in ("prep", "add", "send", "report"):
        assert task_run(ex, key)["status"] == "Completed" and task_run(ex, key)["attempt"] == 1, ex
    # The worker's log lines are in the execution log, on their task.
    for key in ("add", "send"):
        lines = wait_log(alice, wf["id"], eid, lambda e, k=key: f"worker w1 ran {k} attempt 1" in e["message"])
        assert len(lines) == 1, lines
        assert lines[0]["taskId"] == task_id(wf, key), lines
        assert lines[0]["level"] == "Info", lines


def test_worker_failures_are_retried(alice, workers):
    q = new_queue()
    wf = create_wf(alice, [ext("flaky", q, {"failUntilAttempt": 3, "value": "x"}, retry=FAST_RETRY)])
    w = workers(alice, q, "--max-tasks", 3)
    eid = execute(alice, wf["id"])
    ex = wait_terminal(alice, wf["id"], eid)
    assert w.wait_exit() == 0, w.output()
    assert ex["status"] == "Completed", (ex, w.output())
    run = task_run(ex, "flaky")
    assert run["attempt"] == 3, run
    assert run["output"] == {"failUntilAttempt": 3, "value": "x"}, run
    # The failed attempts' errors are in the log.
    for attempt in (1, 2):
        wait_log(alice, wf["id"], eid, lambda e, a=attempt: f"attempt {a} failed on purpose" in e["message"])
    assert len(worker_lines(logs_of(alice, wf["id"], eid), "worker w1 ran flaky")) == 1


def test_worker_failures_exhaust_the_retries(alice, workers):
    q = new_queue()
    wf = create_wf(alice, [
        ext("flaky", q, {"failUntilAttempt": 3}, retry={"maxAttempts": 2, "initialBackoff": "0.05s"}),
        transform("after", {"x": "{{ tasks.flaky.output.failUntilAttempt }}"}, depends=["flaky"]),
    ])
    w = workers(alice, q, "--max-tasks", 2)
    eid = execute(alice, wf["id"])
    ex = wait_terminal(alice, wf["id"], eid)
    assert w.wait_exit() == 0, w.output()
    assert ex["status"] == "Failed", ex
    run = task_run(ex, "flaky")
    assert run["status"] == "Failed" and run["attempt"] == 2, run
    assert "attempt 2 failed on purpose" in run.get("error", ""), run
    assert task_run(ex, "after")["status"] == "Cancelled" and "startedAt" not in task_run(ex, "after"), ex


@pytest.mark.parametrize("how", ["nonRetryable", "kind-not-retryable"])
def test_non_retryable_failure_fails_the_execution(alice, workers, how):
    q = new_queue()
    if how == "nonRetryable":
        task = ext("pay", q, {"fail": "card declined", "nonRetryable": True},
                   retry={"maxAttempts": 5, "initialBackoff": "0.05s"})
        message = "card declined"
    else:
        task = ext("pay", q, {"fail": "bad address", "kind": "validation"},
                   retry={"maxAttempts": 5, "initialBackoff": "0.05s", "retryableErrors": ["connection"]})
        message = "bad address"
    wf = create_wf(alice, [task, transform("after", {"ok": True}, depends=["pay"])])
    w = workers(alice, q, "--max-tasks", 1)
    eid = execute(alice, wf["id"])
    ex = wait_terminal(alice, wf["id"], eid)
    assert w.wait_exit() == 0, w.output()
    assert ex["status"] == "Failed", ex
    assert ex.get("error"), ex
    run = task_run(ex, "pay")
    assert run["status"] == "Failed" and run["attempt"] == 1, run
    assert message in run.get("error", ""), run
    assert task_run(ex, "after")["status"] == "Cancelled" and "startedAt" not in task_run(ex, "after"), ex
    # No retry was queued: a long poll (a retry after the 0.05 s backoff would
    # wake it) gets nothing.
    assert no_task(poll(alice, q, wait="1s"))
    wait_log(alice, wf["id"], eid, lambda e: message in e["message"])


def test_retryable_error_kind_is_retried(alice, workers):
    q = new_queue()
    wf = create_wf(alice, [ext("call", q, {"failUntilAttempt": 2, "kind": "connection"},
                                retry={"maxAttempts": 3, "initialBackoff": "0.05s",
                                       "retryableErrors": ["connection"]})])
    w = workers(alice, q, "--max-tasks", 2)
    eid = execute(alice, wf["id"])
    ex = wait_terminal(alice, wf["id"], eid)
    assert w.wait_exit() == 0, w.output()
    assert ex["status"] == "Completed", ex
    assert task_run(ex, "call")["attempt"] == 2, ex


def test_heartbeats_keep_a_task_longer_than_its_lease(alice, workers):
    q = new_queue()
    wf = create_wf(alice, [ext("slow", q, {"sleepMs": 5000, "n": 1})])
    w1 = workers(alice, q, "--max-tasks", 1, "--lease-duration", 2, worker_id="w1")
    eid = execute(alice, wf["id"])
    wh.wait_until(lambda: "got slow" in w1.output(), 10, message=lambda: w1.output())
    # A second worker on the same queue never gets the task while w1 heartbeats.
    w2 = workers(alice, q, "--lease-duration", 2, worker_id="w2")
    ex = wait_terminal(alice, wf["id"], eid, timeout=30)
    assert w1.wait_exit() == 0, w1.output()
    assert ex["status"] == "Completed", (ex, w1.output(), w2.output())
    run = task_run(ex, "slow")
    assert run["attempt"] == 1 and run["output"] == {"sleepMs": 5000, "n": 1}, run
    started, ended = wh.rfc3339_nanos(run["startedAt"]), wh.rfc3339_nanos(run["completedAt"])
    assert (ended - started) / 1e9 >= 4.5, run
    assert "got" not in w2.output(), w2.output()
    assert "lease lost" not in w1.output(), w1.output()
    entries = logs_of(alice, wf["id"], eid)
    assert len(worker_lines(entries, "ran slow")) == 1, entries
    w2.signal(signal.SIGTERM)
    assert w2.wait_exit(10) == 0, w2.output()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_worker_stops_cleanly_on_signal_while_polling(alice, workers, sig):
    q = new_queue()
    w = workers(alice, q, "--wait", 30)
    wh.wait_until(lambda: "polling queue" in w.output(), 10, message=lambda: w.output())
    time.sleep(0.5)  # inside the 30 s long poll now
    t0 = time.monotonic()
    w.signal(sig)
    rc = w.wait_exit(10)
    assert rc == 0, w.output()
    assert time.monotonic() - t0 < 5, "the worker waited for its long poll to end"
    assert "Traceback" not in w.output(), w.output()


def test_worker_finishes_its_task_on_sigterm(alice, workers):
    q = new_queue()
    wf = create_wf(alice, [ext("job", q, {"sleepMs": 1500})])
    w = workers(alice, q)
    eid = execute(alice, wf["id"])
    wh.wait_until(lambda: "got job" in w.output(), 10, message=lambda: w.output())
    w.signal(signal.SIGTERM)
    assert w.wait_exit(15) == 0, w.output()
    ex = wait_terminal(alice, wf["id"], eid, timeout=10)
    assert ex["status"] == "Completed", (ex, w.output())


def test_worker_backs_off_while_the_server_is_unreachable(alice, workers):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there now
    w = workers(alice, new_queue(), url=f"http://127.0.0.1:{port}")
    time.sleep(2.5)
    assert w.proc.poll() is None, w.output()
    out = w.output()
    attempts = out.count("cannot reach the server")
    assert 1 <= attempts <= 6, out  # backing off, not spinning
    w.signal(signal.SIGTERM)
    assert w.wait_exit(10) == 0, w.output()


def test_worker_exits_on_a_bad_token(api_server, workers, alice):
    bad = wh.ApiUser("x", "x", "x", "x", "not-a-token", {}, wh.RestClient(api_server))
    w = workers(bad, new_queue())
    assert w.wait_exit(10) == 2, w.output()
    assert "401" in w.output(), w.output()


# ---------------------------------------------------------------------------
# The protocol over REST
# ---------------------------------------------------------------------------


def test_poll_with_wait_returns_empty_after_the_wait(alice):
    t0 = time.monotonic()
    r = poll(alice, new_queue(), wait="1s")
    elapsed = time.monotonic() - t0
    assert no_task(r), r
    assert 0.5 <= elapsed < 8, elapsed


def test_poll_without_wait_returns_at_once(alice):
    t0 = time.monotonic()
    r = poll(alice, new_queue())
    assert no_task(r), r
    assert time.monotonic() - t0 < 2


def test_long_poll_wakes_up_when_a_task_is_queued(alice):
    q = new_queue()
    wf = create_wf(alice, [ext("send", q, {"to": "{{ input.email }}", "n": 7}),
                           transform("after", {"sent": "{{ tasks.send.output.sent }}"}, depends=["send"])])
    got = {}

    def long_poll():
        got["r"] = poll(alice, q, wait="20s", lease="30s", worker="waker")
        got["t"] = time.monotonic()

    th = threading.Thread(target=long_poll)
    th.start()
    time.sleep(1.0)
    t_exec = time.monotonic()
    eid = execute(alice, wf["id"], {"email": "zoe@example.com"})
    th.join(30)
    assert not th.is_alive()
    assert got["t"] - t_exec < 10, "the long poll was not woken by the new task"
    r = got["r"]
    assert r.status == 200, r
    task = r.json["task"]
    assert task["leaseToken"], task
    assert 25 <= seconds_until(task["leaseExpiresAt"]) <= 31, task
    assert task["queue"] == q
    assert task["workflowId"] == wf["id"]
    assert task["executionId"] == eid
    assert task["taskId"] == task_id(wf, "send")
    assert task["taskKey"] == "send"
    assert task["attempt"] == 1
    assert task["input"] == {"to": "zoe@example.com", "n": 7}, task
    assert task["config"] == {"queue": q, "input": {"to": "zoe@example.com", "n": 7}}, task
    r = complete(alice, task["leaseToken"], {"sent": True, "id": "m-1"})
    assert r.status == 200, r
    assert r.json == {}, r
    ex = wait_terminal(alice, wf["id"], eid)
    assert ex["status"] == "Completed", ex
    assert task_run(ex, "send")["output"] == {"sent": True, "id": "m-1"}
    assert task_run(ex, "after")["output"] == {"sent": True}


def test_stale_token_after_the_lease_was_taken_over(alice):
    q = new_queue()
    wf = create_wf(alice, [ext("job", q, {"k": 1})])
    eid = execute(alice, wf["id"])
    first = poll_task(alice, q, lease="1s")
    second = poll_task(alice, q, wait="10s", lease="30s")  # waits for the 1 s lease to run out
    assert (second["executionId"], second["taskKey"]) == (eid, "job"), second
    assert_handed_out_after(first["leaseExpiresAt"], second, 30)
    assert second["attempt"] == first["attempt"] == 1, (first, second)
    assert second["leaseToken"] != first["leaseToken"]
    stale = first["leaseToken"]
    assert_error(complete(alice, stale, {"who": "first"}), 400, "FAILED_PRECONDITION")
    assert_error(heartbeat(alice, stale, "30s"), 400, "FAILED_PRECONDITION")
    assert_error(fail(alice, stale, "late failure"), 400, "FAILED_PRECONDITION")
    r = complete(alice, second["leaseToken"], {"who": "second"})
    assert r.status == 200, r
    ex = wait_terminal(alice, wf["id"], eid)
    assert ex["status"] == "Completed", ex
    assert task_run(ex, "job")["output"] == {"who": "second"}
    assert task_run(ex, "job")["attempt"] == 1


def test_complete_twice_is_failed_precondition(alice):
    q = new_queue()
    wf = create_wf(alice, [ext("job", q)])
    eid = execute(alice, wf["id"])
    task = poll_task(alice, q)
    assert complete(alice, task["leaseToken"], {"n": 1}).status == 200
    assert_error(complete(alice, task["leaseToken"], {"n": 2}), 400, "FAILED_PRECONDITION")
    assert_error(fail(alice, task["leaseToken"], "after completion"), 400, "FAILED_PRECONDITION")
    assert_error(heartbeat(alice, task["leaseToken"]), 400, "FAILED_PRECONDITION")
    ex = wait_terminal(alice, wf["id"], eid)
    assert ex["status"] == "Completed" and task_run(ex, "job")["output"] == {"n": 1}, ex


def test_heartbeat_extends_the_lease(alice):
    q = new_queue()
    wf = create_wf(alice, [ext("job", q)])
    eid = execute(alice, wf["id"])
    task = poll_task(alice, q, lease="2s")
    r = heartbeat(alice, task["leaseToken"], "30s")
    assert r.status == 200, r
    assert 25 <= seconds_until(r.json["leaseExpiresAt"]) <= 31, r.json
    # A long poll past the end of the first (2 s) lease gets nothing.
    assert no_task(poll(alice, q, wait="3s")), "the task was handed out again despite the heartbeat"
    assert complete(alice, task["leaseToken"], {"ok": True}).status == 200
    assert wait_terminal(alice, wf["id"], eid)["status"] == "Completed"


def test_heartbeat_without_duration_renews_for_the_default_60s(alice):
    """workers.proto: HeartbeatRequest.lease_duration defaults to 60s (the
    server does not remember each lease's length)."""
    q = new_queue()
    wf = create_wf(alice, [ext("job", q)])
    eid = execute(alice, wf["id"])
    task = poll_task(alice, q, lease="5s")
    assert 3 <= seconds_until(task["leaseExpiresAt"]) <= 5.5, task
    r = heartbeat(alice, task["leaseToken"])
    assert r.status == 200, r
    left = seconds_until(r.json["leaseExpiresAt"])
    assert 55 <= left <= 61, f"heartbeat without leaseDuration renewed for {left:.1f}s, expected the default 60s"
    assert complete(alice, task["leaseToken"], {}).status == 200
    assert wait_terminal(alice, wf["id"], eid)["status"] == "Completed"


def test_fail_then_retry_delivers_the_next_attempt(alice):
    q = new_queue()
    wf = create_wf(alice, [ext("job", q, retry=FAST_RETRY)])
    eid = execute(alice, wf["id"])
    first = poll_task(alice, q)
    assert first["attempt"] == 1
    r = fail(alice, first["leaseToken"], "try again", logLines=["first attempt log"])  # kind defaults to "external"
    assert r.status == 200, r
    assert r.json == {}, r
    second = poll_task(alice, q, wait="10s")
    assert (second["executionId"], second["taskKey"], second["attempt"]) == (eid, "job", 2), second
    assert complete(alice, second["leaseToken"], {"attempt": 2}).status == 200
    ex = wait_terminal(alice, wf["id"], eid)
    assert ex["status"] == "Completed", ex
    assert task_run(ex, "job")["attempt"] == 2 and task_run(ex, "job")["output"] == {"attempt": 2}
    wait_log(alice, wf["id"], eid, lambda e: "first attempt log" in e["message"])
    wait_log(alice, wf["id"], eid, lambda e: "try again" in e["message"])


def test_worker_log_lines_appear_in_the_execution_logs(alice):
    q = new_queue()
    wf = create_wf(alice, [ext("job", q), ext("bad", q, retry={"maxAttempts": 1}, depends=["job"])])
    eid = execute(alice, wf["id"])
    task = poll_task(alice, q)
    lines = ["hello from the worker", "second line", "third: ünïcødé ✓"]
    assert complete(alice, task["leaseToken"], {}, lines).status == 200
    task = poll_task(alice, q, wait="10s")
    assert task["taskKey"] == "bad"
    assert fail(alice, task["leaseToken"], "it broke", kind="external", logLines=["about to fail"]).status == 200
    ex = wait_terminal(alice, wf["id"], eid)
    assert ex["status"] == "Failed", ex
    wait_log(alice, wf["id"], eid, lambda e: "about to fail" in e["message"])
    entries = logs_of(alice, wf["id"], eid)
    mine = [e for e in entries if e["message"] in lines]
    assert [e["message"] for e in mine] == lines, entries
    assert all(e["taskId"] == task_id(wf, "job") and e["level"] == "Info" for e in mine), mine
    seqs = [int(e["sequence"]) for e in entries]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs), seqs
    assert [e for e in entries if "it broke" in e["message"] and e["taskId"] == task_id(wf, "bad")], entries
    assert "it broke" in task_run(ex, "bad").get("error", "")


@pytest.mark.parametrize("token", ["garbage", "", "x" * 300, "lease_0000000000000000", "..", "1.", "\u00e9\u0000"])
def test_garbage_lease_token_is_a_client_error(alice, token):
    for r in (heartbeat(alice, token, "10s"), complete(alice, token, {"a": 1}), fail(alice, token, "nope")):
        assert_error(r, (400, 404), "INVALID_ARGUMENT", "NOT_FOUND")


def test_well_formed_but_unknown_lease_token_is_a_client_error(alice):
    """A token shaped like a real one that names no held lease.  The server
    cannot tell "never issued" from "already used and removed" (which must be
    FAILED_PRECONDITION), so any of the three 4xx codes is accepted."""
    q = new_queue()
    wf = create_wf(alice, [ext("job", q)])
    execute(alice, wf["id"])
    real = poll_task(alice, q)["leaseToken"]
    assert complete(alice, real, {}).status == 200
    unknown = real[:-6] + "".join(reversed(real[-6:])) if real[-6:] != real[-6:][::-1] else real + "0"
    for token in (real, unknown):
        for r in (heartbeat(alice, token, "10s"), complete(alice, token, {"a": 1}), fail(alice, token, "nope")):
            assert_error(r, (400, 404), "INVALID_ARGUMENT", "NOT_FOUND", "FAILED_PRECONDITION")


def test_tampered_lease_token_is_refused_and_the_real_one_still_works(alice):
    q = new_queue()
    wf = create_wf(alice, [ext("job", q)])
    eid = execute(alice, wf["id"])
    task = poll_task(alice, q)
    real = task["leaseToken"]
    forged = [real[:-1] + ("A" if real[-1] != "A" else "B"), real + "x", real[: len(real) // 2]]
    head, dot, rest = real.partition(".")
    if dot and head.isdigit():  # a delivery counter in front: another delivery of the same item
        forged += [f"{int(head) + 1}.{rest}", f"{int(head) + 100}.{rest}"]
    for bad in forged:
        for r in (heartbeat(alice, bad), complete(alice, bad, {"forged": True})):
            assert 400 <= r.status < 500, r
            assert code_is(r.json, "INVALID_ARGUMENT", "NOT_FOUND", "FAILED_PRECONDITION"), r
    assert complete(alice, real, {"real": True}).status == 200
    ex = wait_terminal(alice, wf["id"], eid)
    assert task_run(ex, "job")["output"] == {"real": True}


def test_queues_are_per_owner(api_server, alice, bob):
    q = new_queue()
    wf = create_wf(alice, [ext("job", q)])
    # Even an editor of the workflow has its own queue of that name.
    wh.invite_and_accept(api_server, alice.token, bob.token, wf["orgId"])  # collaborators must be members
    r = alice.rest.post(f"/workflows/{wf['id']}/collaborators", {"userId": bob.id, "role": "editor"})
    assert r.status == 201, r
    eid = execute(alice, wf["id"])
    assert no_task(poll(bob, q, wait="1s")), "another user received the owner's task"
    task = poll_task(alice, q)
    assert task["executionId"] == eid
    # Bob cannot act on Alice's lease.
    for r in (heartbeat(bob, task["leaseToken"]), complete(bob, task["leaseToken"], {"by": "bob"}),
              fail(bob, task["leaseToken"], "by bob", nonRetryable=True)):
        assert 400 <= r.status < 500, r
    assert complete(alice, task["leaseToken"], {"by": "alice"}).status == 200
    ex = wait_terminal(alice, wf["id"], eid)
    assert ex["status"] == "Completed" and task_run(ex, "job")["output"] == {"by": "alice"}, ex


def test_worker_calls_need_authentication(alice, api_server):
    anon = wh.RestClient(api_server)
    q = new_queue()
    calls = [
        (f"/queues/{q}/poll", {"workerId": "w"}),
        ("/workers/heartbeat", {"leaseToken": "t"}),
        ("/workers/complete", {"leaseToken": "t", "output": {}}),
        ("/workers/fail", {"leaseToken": "t", "error": "e"}),
    ]
    for path, body in calls:
        assert_error(anon.post(path, body), 401, "UNAUTHENTICATED")
        assert_error(anon.post(path, body, headers={"Authorization": "Bearer garbage"}), 401, "UNAUTHENTICATED")


def test_bad_poll_arguments_are_invalid_and_lease_nothing(alice):
    q = new_queue()
    wf = create_wf(alice, [ext("job", q)])
    eid = execute(alice, wf["id"])
    bad = [
        {"wait": "61s"},
        {"wait": "-1s"},
        {"wait": "soon"},
        {"wait": 5},
        {"leaseDuration": "0.5s"},
        {"leaseDuration": "3601s"},
        {"leaseDuration": "-10s"},
        {"workerId": "w" * 129},
        {"lease": "10s"},
    ]
    client = wh.RestClient(alice.rest.server, alice.token, timeout=75)
    for extra in bad:
        body = {"workerId": "bad", **extra}
        assert_error(client.post(f"/queues/{q}/poll", body), 400, "INVALID_ARGUMENT")
    # Boundary values are fine, and the task was not leased by any bad call.
    task = poll_task(alice, q, wait="0s", lease="3600s")
    assert task["executionId"] == eid
    assert 3590 <= seconds_until(task["leaseExpiresAt"]) <= 3601, task
    for lease in ("3601s", "0.5s", "-1s", "later"):
        assert_error(heartbeat(alice, task["leaseToken"], lease), 400, "INVALID_ARGUMENT")
    r = heartbeat(alice, task["leaseToken"], "3600s")
    assert r.status == 200, r
    assert complete(alice, task["leaseToken"], {}).status == 200


def test_bad_completions_are_invalid_and_keep_the_lease(alice):
    q = new_queue()
    wf = create_wf(alice, [ext("job", q)])
    eid = execute(alice, wf["id"])
    task = poll_task(alice, q)
    token = task["leaseToken"]
    for body in ({"leaseToken": token, "output": "text"}, {"leaseToken": token, "output": [1, 2]},
                 {"leaseToken": token, "output": {}, "logLines": ["x"] * 1001},
                 {"leaseToken": token, "output": {}, "extra": 1}):
        assert_error(alice.rest.post("/workers/complete", body), 400, "INVALID_ARGUMENT")
    assert complete(alice, token, {"fine": True}, ["line"] * 1000).status == 200
    ex = wait_terminal(alice, wf["id"], eid)
    assert ex["status"] == "Completed" and task_run(ex, "job")["output"] == {"fine": True}, ex


def test_cancel_ends_the_lease(alice):
    q = new_queue()
    wf = create_wf(alice, [ext("job", q)])
    eid = execute(alice, wf["id"])
    task = poll_task(alice, q)
    r = alice.rest.post(f"/workflows/{wf['id']}/executions/{eid}/cancel", {"reason": "test"})
    assert r.status == 200, r
    ex = wait_terminal(alice, wf["id"], eid, timeout=10)
    assert ex["status"] == "Cancelled", ex
    assert_error(heartbeat(alice, task["leaseToken"], "30s"), 400, "FAILED_PRECONDITION")
    assert_error(complete(alice, task["leaseToken"], {"late": True}), 400, "FAILED_PRECONDITION")
    ex = get_execution(alice, wf["id"], eid)
    assert ex["status"] == "Cancelled" and task_run(ex, "job").get("output") in (None, {}), ex


# ---------------------------------------------------------------------------
# The protocol over gRPC (weft.v1.WorkerService)
# ---------------------------------------------------------------------------


@pytest.fixture
def grpc_workers(api_server, protos):
    ch = wh.new_channel(api_server.target)
    yield protos.v1.workers_pb2_grpc.WorkerServiceStub(ch), protos.v1.workers_pb2
    ch.close()


md = wh.grpc_auth


def duration(seconds: float):
    from google.protobuf import duration_pb2

    d = duration_pb2.Duration()
    d.FromNanoseconds(int(seconds * 1e9))
    return d


struct = wh.proto_struct


def to_dict(msg) -> dict:
    from google.protobuf import json_format

    return json.loads(json_format.MessageToJson(msg))


def grpc_code(fn, *args, **kwargs):
    import grpc

    with pytest.raises(grpc.RpcError) as info:
        fn(*args, timeout=TIMEOUT, **kwargs)
    return info.value.code()


def test_grpc_poll_with_wait_returns_empty(alice, grpc_workers):
    stub, pb = grpc_workers
    t0 = time.monotonic()
    resp = stub.PollTask(pb.PollTaskRequest(queue=new_queue(), worker_id="g", wait=duration(1)),
                         metadata=md(alice), timeout=TIMEOUT)
    assert not resp.HasField("task"), resp
    assert 0.5 <= time.monotonic() - t0 < 8


def test_grpc_full_cycle(alice, grpc_workers):
    import grpc

    stub, pb = grpc_workers
    q = new_queue()
    wf = create_wf(alice, [ext("job", q, {"x": "{{ input.x }}"}),
                           transform("after", {"via": "{{ tasks.job.output.via }}"}, depends=["job"])])
    got = {}

    def long_poll():
        got["resp"] = stub.PollTask(pb.PollTaskRequest(queue=q, worker_id="g1", wait=duration(20),
                                                       lease_duration=duration(30)),
                                    metadata=md(alice), timeout=40)
        got["t"] = time.monotonic()

    th = threading.Thread(target=long_poll)
    th.start()
    time.sleep(1.0)
    t_exec = time.monotonic()
    eid = execute(alice, wf["id"], {"x": [1, "two"]})
    th.join(45)
    assert got["t"] - t_exec < 10
    task = got["resp"].task
    assert got["resp"].HasField("task")
    assert (task.queue, task.workflow_id, task.execution_id, task.task_key, task.attempt) == (
        q, wf["id"], eid, "job", 1)
    assert task.task_id == task_id(wf, "job")
    assert to_dict(task.input) == {"x": [1, "two"]}
    assert to_dict(task.config) == {"queue": q, "input": {"x": [1, "two"]}}
    hb = stub.Heartbeat(pb.HeartbeatRequest(lease_token=task.lease_token, lease_duration=duration(10)),
                        metadata=md(alice), timeout=TIMEOUT)
    assert 5 <= hb.lease_expires_at.seconds - time.time() <= 11, hb
    stub.CompleteTask(pb.CompleteTaskRequest(lease_token=task.lease_token, output=struct({"via": "grpc"}),
                                             log_lines=["grpc line"]), metadata=md(alice), timeout=TIMEOUT)
    assert grpc_code(stub.CompleteTask, pb.CompleteTaskRequest(lease_token=task.lease_token),
                     metadata=md(alice)) == grpc.StatusCode.FAILED_PRECONDITION
    ex = wait_terminal(alice, wf["id"], eid)
    assert ex["status"] == "Completed", ex
    assert task_run(ex, "after")["output"] == {"via": "grpc"}
    wait_log(alice, wf["id"], eid, lambda e: e["message"] == "grpc line")


def test_grpc_stale_token_and_cross_protocol(alice, grpc_workers):
    import grpc

    stub, pb = grpc_workers
    q = new_queue()
    wf = create_wf(alice, [ext("job", q)])
    eid = execute(alice, wf["id"])
    first = stub.PollTask(pb.PollTaskRequest(queue=q, worker_id="g1", wait=duration(5), lease_duration=duration(1)),
                          metadata=md(alice), timeout=TIMEOUT).task
    assert first.execution_id == eid
    second = poll_task(alice, q, wait="10s")  # the REST poll takes it over once the 1 s lease ran out
    assert second["attempt"] == first.attempt
    assert_handed_out_after(first.lease_expires_at.ToJsonString(), second, 30)
    for call, req in ((stub.CompleteTask, pb.CompleteTaskRequest(lease_token=first.lease_token)),
                      (stub.Heartbeat, pb.HeartbeatRequest(lease_token=first.lease_token)),
                      (stub.FailTask, pb.FailTaskRequest(lease_token=first.lease_token, error="late"))):
        assert grpc_code(call, req, metadata=md(alice)) == grpc.StatusCode.FAILED_PRECONDITION
    stub.CompleteTask(pb.CompleteTaskRequest(lease_token=second["leaseToken"], output=struct({"n": 2})),
                      metadata=md(alice), timeout=TIMEOUT)
    ex = wait_terminal(alice, wf["id"], eid)
    assert ex["status"] == "Completed" and task_run(ex, "job")["output"] == {"n": 2}, ex


def test_grpc_fail_task_non_retryable(alice, grpc_workers):
    stub, pb = grpc_workers
    q = new_queue()
    wf = create_wf(alice, [ext("job", q, retry={"maxAttempts": 5, "initialBackoff": "0.05s"})])
    eid = execute(alice, wf["id"])
    task = stub.PollTask(pb.PollTaskRequest(queue=q, wait=duration(5)), metadata=md(alice), timeout=TIMEOUT).task
    stub.FailTask(pb.FailTaskRequest(lease_token=task.lease_token, error="fatal over grpc", kind="external",
                                     non_retryable=True, log_lines=["giving up"]),
                  metadata=md(alice), timeout=TIMEOUT)
    ex = wait_terminal(alice, wf["id"], eid)
    assert ex["status"] == "Failed", ex
    assert task_run(ex, "job")["attempt"] == 1 and "fatal over grpc" in task_run(ex, "job").get("error", ""), ex


def test_grpc_errors(alice, bob, grpc_workers):
    import grpc

    stub, pb = grpc_workers
    q = new_queue()
    S = grpc.StatusCode
    assert grpc_code(stub.PollTask, pb.PollTaskRequest(queue=q)) == S.UNAUTHENTICATED
    assert grpc_code(stub.PollTask, pb.PollTaskRequest(queue=q),
                     metadata=(("authorization", "Bearer garbage"),)) == S.UNAUTHENTICATED
    assert grpc_code(stub.CompleteTask, pb.CompleteTaskRequest(lease_token="t")) == S.UNAUTHENTICATED
    for req in (pb.PollTaskRequest(queue=q, wait=duration(61)),
                pb.PollTaskRequest(queue=q, wait=duration(-1)),
                pb.PollTaskRequest(queue=q, lease_duration=duration(0.5)),
                pb.PollTaskRequest(queue=q, lease_duration=duration(3601)),
                pb.PollTaskRequest(queue=q, worker_id="w" * 129)):
        assert grpc_code(stub.PollTask, req, metadata=md(alice)) == S.INVALID_ARGUMENT, req
    for call, req in ((stub.Heartbeat, pb.HeartbeatRequest(lease_token="garbage")),
                      (stub.CompleteTask, pb.CompleteTaskRequest(lease_token="garbage")),
                      (stub.FailTask, pb.FailTaskRequest(lease_token="garbage", error="e")),
                      (stub.CompleteTask, pb.CompleteTaskRequest(lease_token=""))):
        assert grpc_code(call, req, metadata=md(alice)) in (S.INVALID_ARGUMENT, S.NOT_FOUND)
    # Another owner's queue of the same name stays invisible over gRPC too.
    wf = create_wf(alice, [ext("job", q)])
    execute(alice, wf["id"])
    resp = stub.PollTask(pb.PollTaskRequest(queue=q, wait=duration(1)), metadata=md(bob), timeout=TIMEOUT)
    assert not resp.HasField("task")
    task = poll_task(alice, q)
    assert complete(alice, task["leaseToken"]).status == 200
