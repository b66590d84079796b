"""The workflow engine through the weft.v1 API (Step 3): executions and their
logs over REST (HTTP/1.1, JSON) and gRPC (grpcio stubs from proto/weft/v1).

Real executions on a real `weft serve`: outputs flowing through templates,
http tasks against a local threaded http.server that records what it is sent,
retries (5xx then success, unreachable host, attempt timeouts, total
timeouts, continueOnFailure), condition branches, delays, cancellation,
execution timeouts, idempotency keys (also under concurrency), list filters
and keyset paging, log paging and filters, watch and tail streams, roles
(owner / viewer / stranger / anonymous) and bad input.

Terminal states are always awaited with a deadline (wh.wait_until), never
with fixed sleeps.  REST JSON is proto3 JSON: int64 fields such as a log
entry's `sequence` arrive as strings, so they go through int().
"""

from __future__ import annotations

import concurrent.futures
import datetime
import http.server
import json
import socket
import threading
import time
import urllib.parse
import uuid

import grpc
import pytest
from google.protobuf import duration_pb2, json_format, timestamp_pb2

import weft_helpers as wh

TIMEOUT = 10
TERMINAL = {"Completed", "Failed", "Cancelled", "TimedOut"}
ERROR_KEYS = {"code", "message", "details"}
FAST_RETRY = {"initialBackoff": "0.05s", "maxBackoff": "0.1s", "backoffMultiplier": 2, "jitter": 0}


# ---------------------------------------------------------------------------
# A local HTTP target for http tasks
# ---------------------------------------------------------------------------


class Target:
    """A threaded http.server on 127.0.0.1 that records every request.

    /echo/...      200 JSON {"reply": "pong", "method", "path"} + X-Reply: yes
    /text          200 text/plain "plain words"
    /flaky/<id>    500 on the first request of <id>, then 200 {"attempt": n}
    /status/<n>    answers status n with JSON {"code": n}
    /slow/<id>     answers after 2 s
    """

    def __init__(self):
        self.lock = threading.Lock()
        self.records: list[dict] = []
        self.counts: dict[str, int] = {}
        target = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep pytest output clean
                pass

            def _handle(self):
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length) if length else b""
                path = urllib.parse.urlsplit(self.path).path
                with target.lock:
                    target.records.append({
                        "method": self.command, "path": path, "query": urllib.parse.urlsplit(self.path).query,
                        "headers": {k.lower(): v for k, v in self.headers.items()}, "body": body,
                    })
                    target.counts[path] = n = target.counts.get(path, 0) + 1
                if path.startswith("/echo/"):
                    self._reply(200, {"reply": "pong", "method": self.command, "path": path}, {"X-Reply": "yes"})
                elif path == "/text":
                    self._reply(200, b"plain words", ctype="text/plain; charset=utf-8")
                elif path.startswith("/flaky/"):
                    if n == 1:
                        self._reply(500, {"error": "try again"})
                    else:
                        self._reply(200, {"attempt": n})
                elif path.startswith("/status/"):
                    code = int(path.split("/")[2])
                    self._reply(code, {"code": code})
                elif path.startswith("/slow/"):
                    time.sleep(2)
                    self._reply(200, {"slow": True})
                else:
                    self._reply(404, {"error": "no such path"})

            def _reply(self, status, payload, headers=None, ctype="application/json"):
                data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", ctype)
                    self.send_header("Content-Length", str(len(data)))
                    for k, v in (headers or {}).items():
                        self.send_header(k, v)
                    self.end_headers()
                    if self.command != "HEAD":
                        self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the engine gave up on this attempt (timeout)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = _handle

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def requests_to(self, path: str) -> list[dict]:
        with self.lock:
            return [r for r in self.records if r["path"] == path]

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture(scope="module")
def target():
    t = Target()
    yield t
    t.close()


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


# ---------------------------------------------------------------------------
# Users and REST helpers
# ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def alice(api_server):
    return wh.register_and_login(api_server, "Alice Engine")


@pytest.fixture(scope="module")
def bob(api_server):
    return wh.register_and_login(api_server, "Bob Engine")


@pytest.fixture(scope="module")
def carol(api_server):
    return wh.register_and_login(api_server, "Carol Engine")


def uid() -> str:
    return uuid.uuid4().hex[:10]


def assert_error(r: wh.RestResponse, status: int, code: int, *fragments: str) -> dict:
    assert r.status == status, r
    assert (r.header("content-type") or "").startswith("application/json"), r.headers
    body = r.json
    assert isinstance(body, dict) and set(body) == ERROR_KEYS, body
    assert body["code"] == code, body
    assert isinstance(body["message"], str) and body["message"], body
    for fragment in fragments:
        assert fragment in body["message"], (fragment, body)
    return body


def create_wf(user: wh.ApiUser, tasks, name=None) -> dict:
    r = user.rest.post("/workflows", {"name": name or f"engine {uid()}", "tasks": tasks})
    assert r.status == 201, r
    return r.json


def task_ids(wf: dict) -> dict:
    return {t["key"]: t["id"] for t in wf["tasks"]}


def execute(user: wh.ApiUser, wid: str, **body) -> dict:
    r = user.rest.post(f"/workflows/{wid}/execute", body)
    assert r.status == 202, r
    out = r.json
    assert out["executionId"].startswith("exe_"), out
    return out


def get_exec(user: wh.ApiUser, wid: str, eid: str) -> dict:
    r = user.rest.get(f"/workflows/{wid}/executions/{eid}")
    assert r.status == 200, r
    return r.json


def wait_status(user: wh.ApiUser, wid: str, eid: str, statuses=TERMINAL, timeout: float = 10, why: str = "") -> dict:
    last = {}

    def check():
        last["e"] = get_exec(user, wid, eid)
        return last["e"] if last["e"]["status"] in statuses else None

    return wh.wait_until(check, timeout, interval=0.03,
                         message=lambda: f"execution {eid} to reach {sorted(statuses)}{why}; last: {last.get('e')}")


def run(user, wid, wait: float = 10, why: str = "", **body) -> dict:
    """Executes (body = the ExecuteWorkflow JSON) and waits up to `wait` s for the end."""
    return wait_status(user, wid, execute(user, wid, **body)["executionId"], timeout=wait, why=why)


def by_key(execution: dict) -> dict:
    tasks = execution.get("tasks", [])
    return {t["taskKey"]: t for t in tasks}


def wait_task(user, wid, eid, key, statuses, timeout: float = 10) -> dict:
    return wh.wait_until(lambda: (lambda e: e if by_key(e).get(key, {}).get("status") in statuses else None)(
        get_exec(user, wid, eid)), timeout, interval=0.03, message=f"task {key} of {eid} to reach {statuses}")


def ns(ts: str) -> int:
    return wh.rfc3339_nanos(ts)


def rfc3339(t: float) -> str:
    return datetime.datetime.fromtimestamp(t, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def ndjson(r: wh.RestResponse) -> list:
    assert r.status == 200, r
    assert (r.header("content-type") or "").startswith("application/x-ndjson"), r.headers
    return [json.loads(line) for line in r.body.decode().splitlines() if line.strip()]


def log_page(user, wid, eid, **params) -> dict:
    q = urllib.parse.urlencode(params)
    r = user.rest.get(f"/workflows/{wid}/executions/{eid}/logs" + (f"?{q}" if q else ""))
    assert r.status == 200, r
    body = r.json
    assert isinstance(body.get("entries", []), list), body
    return body


def all_logs(user, wid, eid, **params) -> list:
    return wh.all_pages(user.rest, f"/workflows/{wid}/executions/{eid}/logs", "entries", **params)


def error_text(execution: dict, logs: list) -> str:
    """Everything that may explain a failure: execution error, task errors, log lines."""
    parts = [execution.get("error", "")] + [t.get("error", "") for t in execution.get("tasks", [])]
    parts += [e["message"] for e in logs]
    return "\n".join(parts)


def exec_ids(user, wid, **params) -> list:
    return [e["executionId"] for e in wh.all_pages(user.rest, f"/workflows/{wid}/executions", "executions", **params)]


# ---------------------------------------------------------------------------
# Execute and run to completion
# ---------------------------------------------------------------------------


def test_execute_is_202_and_runs_to_completion_with_outputs_flowing(alice):
    wf = create_wf(alice, [
        {"key": "a", "name": "A", "action": "noop", "config": {"output": {"n": 41, "tag": "from-a"}}},
        {"key": "pause", "name": "Pause", "action": "delay", "config": {"duration": "0.2s"}, "dependsOn": ["a"]},
        {"key": "b", "name": "B", "action": "transform", "dependsOn": ["pause"],
         "config": {"output": {"x": "{{ input.orderId }}", "fromA": "{{ tasks.a.output.tag }}",
                               "n": "{{ tasks.a.output.n }}", "text": "order {{ input.orderId }} n={{ tasks.a.output.n }}",
                               "items": ["{{ input.items[1] }}", 7], "aStatus": "{{ tasks.a.status }}"}}},
    ])
    ids = task_ids(wf)
    r = alice.rest.post(f"/workflows/{wf['id']}/execute",
                        {"input": {"orderId": "ord-42", "items": ["x", "y"]}, "idempotencyKey": f"k-{uid()}",
                         "timeout": "30s", "priority": 5})
    assert r.status == 202, r
    assert (r.header("content-type") or "").startswith("application/json"), r.headers
    started = r.json
    assert set(started) == {"executionId", "status"}, started
    assert started["status"] == "Running", started
    eid = started["executionId"]
    assert len(eid) > len("exe_")

    early = get_exec(alice, wf["id"], eid)
    assert early["status"] == "Running", early
    assert early["executionId"] == eid

    done = wait_status(alice, wf["id"], eid)
    assert done["status"] == "Completed", done
    assert done["executionId"] == eid
    assert done["workflowId"] == wf["id"]
    assert done["workflowVersion"] == 1
    assert done["input"] == {"orderId": "ord-42", "items": ["x", "y"]}
    assert done.get("error", "") == ""
    assert done["trigger"] == "api", done  # ExecuteWorkflow over the API
    assert done["idempotencyKey"].startswith("k-")
    created, began, ended = ns(done["createdAt"]), ns(done["startedAt"]), ns(done["completedAt"])
    assert created <= began <= ended, done
    assert abs(created / 1e9 - time.time()) < 300
    assert ended - began >= 0.19e9, "the 0.2 s delay ran inside the execution"

    tasks = by_key(done)
    assert [t["taskKey"] for t in done["tasks"]] == ["a", "pause", "b"]
    assert len({t["taskExecutionId"] for t in done["tasks"]}) == 3
    for key, t in tasks.items():
        assert t["taskId"] == ids[key], t
        assert t["status"] == "Completed", t
        assert t["attempt"] == 1, t
        assert t.get("error", "") == ""
        assert began <= ns(t["startedAt"]) <= ns(t["completedAt"]) <= ended, t
    assert tasks["a"]["output"] == {"n": 41, "tag": "from-a"}
    assert ns(tasks["pause"]["startedAt"]) >= ns(tasks["a"]["completedAt"])
    assert ns(tasks["b"]["startedAt"]) >= ns(tasks["pause"]["completedAt"])
    assert ns(tasks["pause"]["completedAt"]) - ns(tasks["pause"]["startedAt"]) >= 0.19e9
    assert tasks["b"]["output"] == {"x": "ord-42", "fromA": "from-a", "n": 41, "text": "order ord-42 n=41",
                                    "items": ["y", 7], "aStatus": "Completed"}


def test_executions_are_pinned_to_the_version_they_started_on(alice):
    wf = create_wf(alice, [{"key": "t", "name": "T", "action": "transform", "config": {"output": {"v": 1}}}])
    first = run(alice, wf["id"])
    assert (first["status"], first["workflowVersion"], by_key(first)["t"]["output"]) == ("Completed", 1, {"v": 1})
    r = alice.rest.put(f"/workflows/{wf['id']}", {
        "name": wf["name"], "tasks": [{"key": "t", "name": "T", "action": "transform", "config": {"output": {"v": 2}}}]})
    assert r.status == 200, r
    second = run(alice, wf["id"])
    assert (second["status"], second["workflowVersion"], by_key(second)["t"]["output"]) == ("Completed", 2, {"v": 2})
    again = get_exec(alice, wf["id"], first["executionId"])
    assert (again["workflowVersion"], by_key(again)["t"]["output"]) == (1, {"v": 1})


def test_log_task_and_empty_input(alice):
    wf = create_wf(alice, [{"key": "say", "name": "Say", "action": "log",
                            "config": {"message": "hello {{ input.who }}", "level": "Warning"}}])
    done = run(alice, wf["id"], input={"who": "Ada"})
    assert done["status"] == "Completed", done
    entries = all_logs(alice, wf["id"], done["executionId"])
    said = [e for e in entries if e["message"] == "hello Ada"]
    assert len(said) == 1, entries
    assert said[0]["level"] == "Warning" and said[0]["taskId"] == task_ids(wf)["say"], said
    # No input at all: the input is an empty object, and a template reading a
    # field it lacks fails the task, naming the field (templates are strict).
    bare = run(alice, wf["id"])
    assert bare["status"] == "Failed", bare
    assert bare.get("input", {}) == {}
    assert 'input has no field "who"' in bare["error"], bare
    errors = [e for e in all_logs(alice, wf["id"], bare["executionId"]) if e["level"] == "Error"]
    assert any('input has no field "who"' in e["message"] for e in errors), errors


# ---------------------------------------------------------------------------
# http tasks
# ---------------------------------------------------------------------------


def test_http_task_sends_templated_request_and_parses_json(alice, target):
    oid = f"ord-{uid()}"
    wf = create_wf(alice, [
        {"key": "call", "name": "Call", "action": "http",
         "config": {"url": target.url("/echo/{{ input.orderId }}?q={{ input.qty }}"), "method": "POST",
                    "headers": {"X-Order": "{{ input.orderId }}", "X-Static": "fixed value"},
                    "body": {"order": "{{ input.orderId }}", "qty": "{{ input.qty }}", "note": "qty={{ input.qty }}",
                             "nested": {"list": [1, "{{ input.qty }}"]}}}},
        {"key": "text", "name": "Text", "action": "http", "config": {"url": target.url("/text")}},
        {"key": "use", "name": "Use", "action": "transform", "dependsOn": ["call", "text"],
         "config": {"output": {"reply": "{{ tasks.call.output.body.reply }}",
                               "status": "{{ tasks.call.output.status }}",
                               "text": "{{ tasks.text.output.body }}"}}},
    ])
    done = run(alice, wf["id"], input={"orderId": oid, "qty": 3})
    assert done["status"] == "Completed", done

    sent = target.requests_to(f"/echo/{oid}")
    assert len(sent) == 1, sent
    req = sent[0]
    assert req["method"] == "POST"
    assert req["query"] == "q=3", req
    assert req["headers"].get("x-order") == oid, req["headers"]
    assert req["headers"].get("x-static") == "fixed value", req["headers"]
    assert "json" in req["headers"].get("content-type", ""), req["headers"]
    assert json.loads(req["body"]) == {"order": oid, "qty": 3, "note": "qty=3", "nested": {"list": [1, 3]}}
    plain = target.requests_to("/text")
    assert plain and plain[-1]["method"] == "GET" and plain[-1]["body"] == b"", plain

    tasks = by_key(done)
    out = tasks["call"]["output"]
    assert out["status"] == 200, out
    assert out["body"] == {"reply": "pong", "method": "POST", "path": f"/echo/{oid}"}, out
    assert out["headers"].get("x-reply") == "yes", out["headers"]
    assert out["headers"].get("content-type", "").startswith("application/json"), out["headers"]
    assert all(k == k.lower() for k in out["headers"]), out["headers"]
    assert tasks["text"]["output"]["body"] == "plain words", tasks["text"]["output"]
    assert tasks["use"]["output"] == {"reply": "pong", "status": 200, "text": "plain words"}


def test_http_500_then_200_is_retried_to_success(alice, target):
    path = f"/flaky/{uid()}"
    wf = create_wf(alice, [{"key": "flaky", "name": "Flaky", "action": "http", "config": {"url": target.url(path)},
                            "retry": {"maxAttempts": 3, **FAST_RETRY, "retryableErrors": ["http_5xx"]}}])
    done = run(alice, wf["id"])
    assert done["status"] == "Completed", done
    t = by_key(done)["flaky"]
    assert t["attempt"] == 2, t
    assert t["output"]["status"] == 200 and t["output"]["body"] == {"attempt": 2}, t
    assert len(target.requests_to(path)) == 2
    entries = all_logs(alice, wf["id"], done["executionId"], taskId=t["taskId"])
    assert any("http_5xx" in e["message"] or "500" in e["message"] for e in entries), entries


def test_unreachable_host_fails_after_max_attempts(alice):
    wf = create_wf(alice, [
        {"key": "unreachable", "name": "Unreachable", "action": "http",
         "config": {"url": f"http://127.0.0.1:{closed_port()}/nothing"},
         "retry": {"maxAttempts": 3, **FAST_RETRY, "retryableErrors": ["connection"]}},
        {"key": "after", "name": "After", "action": "noop", "dependsOn": ["unreachable"]},
    ])
    done = run(alice, wf["id"], why=" (3 attempts on a refused loopback port with 0.05 s backoffs: a refused connect "
                                    "must fail its attempt at once, not after a connect timeout)")
    assert done["status"] == "Failed", done
    assert "unreachable" in done["error"], done
    tasks = by_key(done)
    assert tasks["unreachable"]["status"] == "Failed" and tasks["unreachable"]["attempt"] == 3, tasks
    assert tasks["after"]["status"] == "Cancelled" and "startedAt" not in tasks["after"], tasks
    entries = all_logs(alice, wf["id"], done["executionId"])
    assert "connection" in error_text(done, entries), (done, entries)
    mine = [e for e in entries if e["taskId"] == tasks["unreachable"]["taskId"] and e["level"] == "Error"]
    assert mine, entries
    assert any(e["level"] == "Error" and e.get("taskId", "") == "" for e in entries), \
        "the execution's failure is logged as an engine event"


def test_4xx_is_not_retried_when_only_5xx_is(alice, target):
    path = f"/status/404/{uid()}"
    wf = create_wf(alice, [{"key": "missing", "name": "Missing", "action": "http", "config": {"url": target.url(path)},
                            "retry": {"maxAttempts": 3, **FAST_RETRY, "retryableErrors": ["http_5xx"]}}])
    done = run(alice, wf["id"])
    assert done["status"] == "Failed", done
    t = by_key(done)["missing"]
    assert (t["status"], t["attempt"]) == ("Failed", 1), t
    assert len(target.requests_to(path)) == 1
    assert "http_4xx" in error_text(done, all_logs(alice, wf["id"], done["executionId"]))
    assert "missing" in done["error"]


def test_expected_status_accepts_a_non_2xx_answer(alice, target):
    path = f"/status/404/{uid()}"
    wf = create_wf(alice, [{"key": "probe", "name": "Probe", "action": "http",
                            "config": {"url": target.url(path), "expectedStatus": [404]}}])
    done = run(alice, wf["id"])
    assert done["status"] == "Completed", done
    assert by_key(done)["probe"]["output"]["status"] == 404
    assert by_key(done)["probe"]["output"]["body"] == {"code": 404}


def test_attempt_timeout_is_kind_timeout_and_retried(alice, target):
    path = f"/slow/{uid()}"
    wf = create_wf(alice, [{"key": "slowpoke", "name": "Slowpoke", "action": "http", "config": {"url": target.url(path)},
                            "timeout": "0.3s",
                            "retry": {"maxAttempts": 2, **FAST_RETRY, "retryableErrors": ["timeout"]}}])
    t0 = time.monotonic()
    done = run(alice, wf["id"])
    assert time.monotonic() - t0 < 4, "two 0.3 s attempts must not wait for the 2 s answers"
    assert done["status"] == "Failed", done
    t = by_key(done)["slowpoke"]
    assert (t["status"], t["attempt"]) == ("Failed", 2), t
    assert ns(done["completedAt"]) - ns(done["startedAt"]) < 3e9, done
    assert "timeout" in error_text(done, all_logs(alice, wf["id"], done["executionId"]))
    wh.wait_until(lambda: len(target.requests_to(path)) == 2, 5)


def test_total_timeout_bounds_all_attempts(alice, target):
    path = f"/status/503/{uid()}"
    wf = create_wf(alice, [{"key": "stubborn", "name": "Stubborn", "action": "http", "config": {"url": target.url(path)},
                            "retry": {"maxAttempts": 100, "initialBackoff": "0.1s", "maxBackoff": "0.1s",
                                      "backoffMultiplier": 1, "jitter": 0, "retryableErrors": ["http_5xx"],
                                      "totalTimeout": "0.6s"}}])
    done = run(alice, wf["id"])
    assert done["status"] == "Failed", done
    t = by_key(done)["stubborn"]
    assert t["status"] == "Failed" and 2 <= t["attempt"] <= 10, t
    assert ns(done["completedAt"]) - ns(done["startedAt"]) < 3e9, done


def test_continue_on_failure_lets_dependents_run(alice, target):
    wf = create_wf(alice, [
        {"key": "optional", "name": "Optional", "action": "http", "config": {"url": target.url(f"/status/500/{uid()}")},
         "retry": {"maxAttempts": 1, "continueOnFailure": True}},
        {"key": "report", "name": "Report", "action": "transform", "dependsOn": ["optional"],
         "config": {"output": {"optional": "{{ tasks.optional.status }}"}}},
    ])
    done = run(alice, wf["id"])
    assert done["status"] == "Completed", done
    tasks = by_key(done)
    assert tasks["optional"]["status"] == "Failed", tasks
    assert tasks["report"]["status"] == "Completed" and tasks["report"]["output"] == {"optional": "Failed"}, tasks


# ---------------------------------------------------------------------------
# Condition, delay, cancel, timeout
# ---------------------------------------------------------------------------


CONDITION_TASKS = [
    {"key": "start", "name": "Start", "action": "noop"},
    {"key": "check", "name": "Check", "action": "condition", "dependsOn": ["start"],
     "config": {"expression": "input.amount > 100 && input.country == 'DE'", "then": ["big"], "else": ["small"]}},
    {"key": "big", "name": "Big", "action": "transform", "dependsOn": ["check"], "config": {"output": {"path": "big"}}},
    {"key": "small", "name": "Small", "action": "transform", "dependsOn": ["check"],
     "config": {"output": {"path": "small"}}},
    {"key": "join", "name": "Join", "action": "transform", "dependsOn": ["big", "small"],
     "config": {"output": {"big": "{{ tasks.big.status }}", "small": "{{ tasks.small.status }}",
                           "taken": "{{ tasks.big.output.path }}{{ tasks.small.output.path }}"}}},
]


@pytest.mark.parametrize("amount, taken, skipped", [(150, "big", "small"), (50, "small", "big")],
                         ids=["then", "else"])
def test_condition_runs_one_branch_skips_the_other_and_joins(alice, amount, taken, skipped):
    wf = create_wf(alice, CONDITION_TASKS)
    done = run(alice, wf["id"], input={"amount": amount, "country": "DE"})
    assert done["status"] == "Completed", done
    tasks = by_key(done)
    assert tasks[taken]["status"] == "Completed" and tasks[taken]["output"] == {"path": taken}, tasks
    assert tasks[skipped]["status"] == "Skipped", tasks
    assert "startedAt" not in tasks[skipped], tasks[skipped]
    assert tasks["join"]["status"] == "Completed", tasks
    assert tasks["join"]["output"] == {taken: "Completed", skipped: "Skipped", "taken": taken}, tasks["join"]


def test_delay_tasks_complete(alice):
    until = rfc3339(time.time() + 0.4)
    wf = create_wf(alice, [
        {"key": "short", "name": "Short", "action": "delay", "config": {"duration": "0.3s"}},
        {"key": "clock", "name": "Clock", "action": "delay", "config": {"until": until}},
        {"key": "after", "name": "After", "action": "noop", "dependsOn": ["short", "clock"]},
    ])
    done = run(alice, wf["id"])
    assert done["status"] == "Completed", done
    tasks = by_key(done)
    short = tasks["short"]
    assert ns(short["completedAt"]) - ns(short["startedAt"]) >= 0.29e9, short
    assert ns(short["completedAt"]) - ns(short["startedAt"]) < 3e9, short
    assert ns(tasks["clock"]["completedAt"]) >= ns(until) - 10**7, (tasks["clock"], until)
    assert ns(tasks["after"]["startedAt"]) >= max(ns(short["completedAt"]), ns(tasks["clock"]["completedAt"]))


LONG_DELAY = [
    {"key": "first", "name": "First", "action": "noop"},
    {"key": "sleepy", "name": "Sleepy", "action": "delay", "config": {"duration": "30s"}, "dependsOn": ["first"]},
    {"key": "after", "name": "After", "action": "noop", "dependsOn": ["sleepy"]},
]


def test_cancel_during_a_long_delay(alice):
    wf = create_wf(alice, LONG_DELAY)
    wid = wf["id"]
    eid = execute(alice, wid)["executionId"]
    wait_task(alice, wid, eid, "sleepy", {"Running"})
    t0 = time.monotonic()
    r = alice.rest.post(f"/workflows/{wid}/executions/{eid}/cancel", {"reason": "operator stop"})
    assert r.status == 200, r
    assert time.monotonic() - t0 < 5
    cancelled = r.json
    assert cancelled["executionId"] == eid and cancelled["status"] == "Cancelled", cancelled
    assert "completedAt" in cancelled, cancelled
    tasks = by_key(cancelled)
    assert tasks["first"]["status"] == "Completed", tasks
    assert tasks["sleepy"]["status"] == "Cancelled", tasks
    # docs/ENGINE.md: a task the end of its execution came before is Cancelled.
    assert tasks["after"]["status"] == "Cancelled" and "startedAt" not in tasks["after"], tasks

    again = get_exec(alice, wid, eid)
    assert again["status"] == "Cancelled" and by_key(again)["sleepy"]["status"] == "Cancelled", again
    entries = all_logs(alice, wid, eid)
    assert any("cancel" in e["message"].lower() for e in entries), entries
    err = assert_error(alice.rest.post(f"/workflows/{wid}/executions/{eid}/cancel", {"reason": "twice"}), 400, 9)
    assert eid in exec_ids(alice, wid, status="Cancelled")
    # Still cancelled after the failed second cancel; "after" never started.
    final = get_exec(alice, wid, eid)
    assert final["status"] == "Cancelled" and "startedAt" not in by_key(final)["after"], (final, err)


def test_cancel_of_a_completed_execution_is_failed_precondition(alice):
    wf = create_wf(alice, [{"key": "a", "name": "A", "action": "noop"}])
    done = run(alice, wf["id"])
    assert done["status"] == "Completed"
    assert_error(alice.rest.post(f"/workflows/{wf['id']}/executions/{done['executionId']}/cancel", {}), 400, 9)
    assert get_exec(alice, wf["id"], done["executionId"])["status"] == "Completed"


def test_execution_timeout_ends_as_timed_out(alice):
    wf = create_wf(alice, [{"key": "long", "name": "Long", "action": "delay", "config": {"duration": "5s"}},
                           {"key": "next", "name": "Next", "action": "noop", "dependsOn": ["long"]}])
    done = run(alice, wf["id"], wait=4, timeout="0.3s")
    assert done["status"] == "TimedOut", done
    took = ns(done["completedAt"]) - ns(done["startedAt"])
    assert 0.29e9 <= took < 3e9, done
    tasks = by_key(done)
    # The execution ended first: the running delay and the task after it are Cancelled.
    assert tasks["long"]["status"] == "Cancelled", tasks
    assert tasks["next"]["status"] == "Cancelled" and "startedAt" not in tasks["next"], tasks
    assert done["error"], done


# ---------------------------------------------------------------------------
# Idempotency, listing
# ---------------------------------------------------------------------------


def test_idempotency_key_returns_the_same_execution(alice):
    wf = create_wf(alice, [{"key": "a", "name": "A", "action": "noop"}])
    other = create_wf(alice, [{"key": "a", "name": "A", "action": "noop"}])
    key = f"order-{uid()}"
    first = execute(alice, wf["id"], idempotencyKey=key, input={"n": 1})
    wait_status(alice, wf["id"], first["executionId"])
    second = execute(alice, wf["id"], idempotencyKey=key, input={"n": 1})
    assert second["executionId"] == first["executionId"], (first, second)
    assert second["status"] in ("Running", "Completed"), second
    fresh = execute(alice, wf["id"], idempotencyKey=f"{key}-2")
    assert fresh["executionId"] != first["executionId"]
    elsewhere = execute(alice, other["id"], idempotencyKey=key)
    assert elsewhere["executionId"] != first["executionId"], "keys are per workflow"
    assert sorted(exec_ids(alice, wf["id"])) == sorted([first["executionId"], fresh["executionId"]])
    assert get_exec(alice, wf["id"], first["executionId"])["idempotencyKey"] == key


def test_concurrent_executes_with_one_key_make_one_execution(alice):
    wf = create_wf(alice, [{"key": "pause", "name": "Pause", "action": "delay", "config": {"duration": "0.1s"}}])
    body = {"idempotencyKey": f"race-{uid()}", "input": {"who": "racer"}}
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda _: alice.rest.post(f"/workflows/{wf['id']}/execute", body), range(8)))
    assert [r.status for r in results] == [202] * 8, results
    ids = {r.json["executionId"] for r in results}
    assert len(ids) == 1, ids
    assert exec_ids(alice, wf["id"]) == list(ids)
    assert wait_status(alice, wf["id"], ids.pop())["status"] == "Completed"


def test_list_executions_filters_and_pages(alice, target):
    wf = create_wf(alice, [{"key": "probe", "name": "Probe", "action": "http",
                            "config": {"url": target.url(f"/status/{{{{ input.code }}}}/{uid()}"),
                                       "expectedStatus": [200]},
                            "retry": {"maxAttempts": 1}}])
    wid = wf["id"]
    made, middle = [], None
    for i, code in enumerate(["200", "500", "200", "200", "500", "200"]):
        if i == 3:
            time.sleep(0.02)
            middle = time.time()
            time.sleep(0.02)
        done = run(alice, wid, input={"code": code})
        assert done["status"] == ("Completed" if code == "200" else "Failed"), done
        made.append(done)
    newest_first = [e["executionId"] for e in reversed(made)]

    r = alice.rest.get(f"/workflows/{wid}/executions")
    assert r.status == 200, r
    listed = r.json
    assert [e["executionId"] for e in listed["executions"]] == newest_first
    assert listed.get("nextPageToken", "") == ""
    assert listed["executions"][0]["status"] == "Completed" and listed["executions"][0]["workflowId"] == wid

    assert exec_ids(alice, wid, pageSize=2) == newest_first
    r = alice.rest.get(f"/workflows/{wid}/executions?pageSize=4")
    assert len(r.json["executions"]) == 4 and r.json["nextPageToken"], r

    completed = [e["executionId"] for e in reversed(made) if e["status"] == "Completed"]
    failed = [e["executionId"] for e in reversed(made) if e["status"] == "Failed"]
    assert exec_ids(alice, wid, status="Completed") == completed
    assert exec_ids(alice, wid, status="Failed") == failed
    assert exec_ids(alice, wid, status="Completed", pageSize=3) == completed
    assert exec_ids(alice, wid, status="Cancelled") == []

    after = [e["executionId"] for e in reversed(made[3:])]
    before = [e["executionId"] for e in reversed(made[:3])]
    assert exec_ids(alice, wid, startedAfter=rfc3339(middle)) == after
    assert exec_ids(alice, wid, startedBefore=rfc3339(middle)) == before
    assert exec_ids(alice, wid, startedAfter=rfc3339(middle), status="Failed") == [made[4]["executionId"]]
    assert exec_ids(alice, wid, startedAfter=rfc3339(middle), pageSize=1) == after

    # Bad queries.
    base = f"/workflows/{wid}/executions"
    assert_error(alice.rest.get(base + "?status=Sleeping"), 400, 3, "status")
    assert_error(alice.rest.get(base + "?pageSize=-1"), 400, 3)
    assert_error(alice.rest.get(base + "?startedAfter=yesterday"), 400, 3, "startedAfter")
    assert_error(alice.rest.get(base + "?pageToken=garbage"), 400, 3)
    first = alice.rest.get(base + "?pageSize=1&status=Completed").json
    assert first["nextPageToken"]
    tok = urllib.parse.quote(first["nextPageToken"])
    assert_error(alice.rest.get(base + f"?pageSize=1&status=Failed&pageToken={tok}"), 400, 3)


# ---------------------------------------------------------------------------
# Logs
# ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def logged(alice):
    """A finished execution with Info, Warning and Error log lines from three tasks."""
    wf = create_wf(alice, [
        {"key": "say", "name": "Say", "action": "log", "config": {"message": "hello {{ input.name }}"}},
        {"key": "warn", "name": "Warn", "action": "log", "config": {"message": "careful", "level": "Warning"},
         "dependsOn": ["say"]},
        {"key": "err", "name": "Err", "action": "log", "config": {"message": "bad thing", "level": "Error"},
         "dependsOn": ["warn"]},
    ])
    done = run(alice, wf["id"], input={"name": "Ada"})
    assert done["status"] == "Completed", done
    return wf, done


def test_logs_hold_engine_events_and_task_lines_in_sequence(alice, logged):
    wf, done = logged
    ids = task_ids(wf)
    page = log_page(alice, wf["id"], done["executionId"])
    assert page.get("nextPageToken", "") == ""
    entries = page["entries"]
    assert [int(e["sequence"]) for e in entries] == list(range(1, len(entries) + 1))
    for e in entries:
        assert e["executionId"] == done["executionId"], e
        assert e["level"] in ("Info", "Warning", "Error"), e
        assert isinstance(e["message"], str) and e["message"], e
        assert e.get("taskId", "") in ("", *ids.values()), e
    stamps = [ns(e["createdAt"]) for e in entries]
    # Timestamps follow the sequence (1 ms slack: engine events and task lines
    # take their times from different clocks rounded to milliseconds).
    assert all(b >= a - 10**6 for a, b in zip(stamps, stamps[1:])), [e["createdAt"] for e in entries]
    assert ns(done["createdAt"]) - 10**9 <= stamps[0] and stamps[-1] <= ns(done["completedAt"]) + 5 * 10**9
    lines = {e["message"]: e for e in entries}
    assert lines["hello Ada"]["level"] == "Info" and lines["hello Ada"]["taskId"] == ids["say"]
    assert lines["careful"]["level"] == "Warning" and lines["careful"]["taskId"] == ids["warn"]
    assert lines["bad thing"]["level"] == "Error" and lines["bad thing"]["taskId"] == ids["err"]
    # Engine events: about the execution (no task) and about each task (started / completed).
    assert any(e.get("taskId", "") == "" for e in entries), entries
    for key, tid in ids.items():
        assert len([e for e in entries if e["taskId"] == tid]) >= 2, (key, entries)
    # Task lines come in dependency order.
    assert int(lines["hello Ada"]["sequence"]) < int(lines["careful"]["sequence"]) < int(lines["bad thing"]["sequence"])


def test_logs_page_and_filter(alice, logged):
    wf, done = logged
    wid, eid = wf["id"], done["executionId"]
    ids = task_ids(wf)
    everything = log_page(alice, wid, eid, pageSize=1000)["entries"]
    assert all_logs(alice, wid, eid, pageSize=2) == everything
    first = log_page(alice, wid, eid, pageSize=2)
    assert len(first["entries"]) == 2 and first["nextPageToken"]

    rank = {"Info": 0, "Warning": 1, "Error": 2}
    warn_up = all_logs(alice, wid, eid, minLevel="Warning")
    assert warn_up == [e for e in everything if rank[e["level"]] >= 1]
    assert {"careful", "bad thing"} <= {e["message"] for e in warn_up}
    assert "hello Ada" not in {e["message"] for e in warn_up}
    errors = all_logs(alice, wid, eid, minLevel="Error")
    assert errors == [e for e in everything if e["level"] == "Error"] and errors
    assert all_logs(alice, wid, eid, minLevel="Info") == everything
    assert all_logs(alice, wid, eid, minLevel="Warning", pageSize=1) == warn_up

    say = all_logs(alice, wid, eid, taskId=ids["say"])
    assert say == [e for e in everything if e["taskId"] == ids["say"]] and say
    assert all_logs(alice, wid, eid, taskId=ids["warn"], minLevel="Warning") == [
        e for e in everything if e["taskId"] == ids["warn"] and rank[e["level"]] >= 1]

    base = f"/workflows/{wid}/executions/{eid}/logs"
    assert_error(alice.rest.get(base + "?minLevel=Loud"), 400, 3, "minLevel")
    assert_error(alice.rest.get(base + "?pageToken=garbage"), 400, 3)
    assert_error(alice.rest.get(base + "?pageSize=-5"), 400, 3)
    assert_error(alice.rest.get(f"/workflows/{wid}/executions/exe_nope/logs"), 404, 5)


# ---------------------------------------------------------------------------
# Streams over REST (NDJSON)
# ---------------------------------------------------------------------------


STREAMED = [
    {"key": "hello", "name": "Hello", "action": "log", "config": {"message": "first words"}},
    {"key": "wait", "name": "Wait", "action": "delay", "config": {"duration": "0.4s"}, "dependsOn": ["hello"]},
    {"key": "bye", "name": "Bye", "action": "log", "config": {"message": "last words", "level": "Warning"},
     "dependsOn": ["wait"]},
]


UNFINISHED_TASK = {"Pending", "Queued", "Running", "Retrying"}


def check_events(events: list, final: str, keys=()) -> None:
    """Events of a watch (JSON): increasing sequence, `status` is the execution
    after the event (so once terminal it stays terminal, and no event that
    shows a task still pending or running says the execution has ended), the
    stream ends on `final`, every task in `keys` is seen Completed, and no
    state change of a task is left out."""
    assert events, "no events"
    seqs = [int(e["sequence"]) for e in events]
    assert seqs == sorted(set(seqs)), seqs
    assert events[-1]["status"] == final, events[-1]
    for i, e in enumerate(events):
        if e["status"] in TERMINAL:
            assert all(later["status"] == e["status"] for later in events[i:]), ("status changed after the end", events[i:])
            task = e.get("task")
            assert not task or task["status"] not in UNFINISHED_TASK, (
                f"event {e['sequence']} says the execution is {e['status']} while task {task['taskKey']} is "
                f"{task['status']}", e)
    for key in keys:
        assert any(e.get("task", {}).get("taskKey") == key and e["task"]["status"] == "Completed" for e in events), \
            (key, events)
    # Every state change is an event: a task first seen waiting (Pending /
    # Queued) is seen Running before it is seen Completed.
    seen: dict = {}
    for e in events:
        task = e.get("task")
        if task:
            seen.setdefault(task["taskKey"], []).append(task["status"])
    for key, states in seen.items():
        if "Completed" in states and states[0] in ("Pending", "Queued"):
            assert "Running" in states[:states.index("Completed")], (
                f"task {key} went {states[0]} -> Completed without a Running event", states)


def check_snapshot_of_finished(events: list, execution: dict) -> None:
    """Watching a finished execution: a snapshot of its final state (one event,
    or one per task), then the stream ends."""
    assert events and all(e["status"] == execution["status"] for e in events), events
    seqs = [int(e["sequence"]) for e in events]
    assert seqs == sorted(set(seqs)), seqs
    final = {t["taskKey"]: t["status"] for t in execution["tasks"]}
    seen = {e["task"]["taskKey"]: e["task"]["status"] for e in events if e.get("task")}
    assert all(final[k] == v for k, v in seen.items()), (seen, final)


def test_watch_over_rest_streams_until_the_end(alice):
    wf = create_wf(alice, STREAMED)
    eid = execute(alice, wf["id"])["executionId"]
    events = ndjson(alice.rest.get(f"/workflows/{wf['id']}/executions/{eid}/watch"))
    assert events[0]["status"] == "Running", events[0]
    check_events(events, "Completed", keys=["wait", "bye"])
    assert get_exec(alice, wf["id"], eid)["status"] == "Completed"
    # Watching a finished execution: one snapshot, then the stream ends.
    again = ndjson(alice.rest.get(f"/workflows/{wf['id']}/executions/{eid}/watch"))
    check_snapshot_of_finished(again, get_exec(alice, wf["id"], eid))


def test_tail_logs_over_rest_streams_until_the_end(alice):
    wf = create_wf(alice, STREAMED)
    eid = execute(alice, wf["id"])["executionId"]
    tailed = ndjson(alice.rest.get(f"/workflows/{wf['id']}/executions/{eid}/logs/tail"))
    assert get_exec(alice, wf["id"], eid)["status"] == "Completed"
    assert [int(e["sequence"]) for e in tailed] == list(range(1, len(tailed) + 1))
    assert {"first words", "last words"} <= {e["message"] for e in tailed}
    assert tailed == all_logs(alice, wf["id"], eid)
    warn = ndjson(alice.rest.get(f"/workflows/{wf['id']}/executions/{eid}/logs/tail?minLevel=Warning"))
    assert warn == [e for e in tailed if e["level"] in ("Warning", "Error")] and warn


# ---------------------------------------------------------------------------
# Bad input, failures at run time, access
# ---------------------------------------------------------------------------


def test_execute_unknown_or_deleted_workflow_is_404(alice):
    assert_error(alice.rest.post("/workflows/wf_doesnotexist/execute", {}), 404, 5)
    wf = create_wf(alice, [{"key": "a", "name": "A", "action": "noop"}])
    r = alice.rest.delete(f"/workflows/{wf['id']}")
    assert r.status == 204, r
    assert_error(alice.rest.post(f"/workflows/{wf['id']}/execute", {}), 404, 5)


@pytest.mark.parametrize("body, field", [
    ({"input": [1]}, "input"),
    ({"input": "x"}, "input"),
    ({"input": 5}, "input"),
    ({"inputs": {}}, "inputs"),
    ({"timeout": "soon"}, "timeout"),
    ({"timeout": "-1s"}, "timeout"),
    ({"priority": 101}, "priority"),
    ({"priority": "high"}, "priority"),
    ({"idempotencyKey": 7}, "idempotencyKey"),
], ids=["input-array", "input-string", "input-number", "unknown-field", "timeout-text", "timeout-negative",
        "priority-range", "priority-type", "key-type"])
def test_bad_execute_requests_are_400_naming_the_field(alice, body, field):
    wf = create_wf(alice, [{"key": "a", "name": "A", "action": "noop"}])
    assert_error(alice.rest.post(f"/workflows/{wf['id']}/execute", body), 400, 3, field)
    assert exec_ids(alice, wf["id"]) == [], "nothing was started"


def test_unknown_execution_ids_are_404(alice):
    wf = create_wf(alice, [{"key": "a", "name": "A", "action": "noop"}])
    other = create_wf(alice, [{"key": "a", "name": "A", "action": "noop"}])
    done = run(alice, wf["id"])
    base = f"/workflows/{other['id']}/executions/{done['executionId']}"
    for method, path in [("GET", ""), ("POST", "/cancel"), ("GET", "/watch"), ("GET", "/logs"), ("GET", "/logs/tail")]:
        body = {} if method == "POST" else None
        assert_error(alice.rest.request(method, base + path, body), 404, 5)  # right id, wrong workflow
        assert_error(alice.rest.request(method, f"/workflows/{wf['id']}/executions/exe_nope{path}", body), 404, 5)


@pytest.mark.parametrize("template, field", [("{{ input.missing.deep }}", "missing"),
                                             ("{{ input.present.deep }}", "present")],
                         ids=["through-a-missing-field", "through-a-number"])
def test_bad_template_path_fails_the_task_clearly(alice, api_server, template, field):
    """A template path that cannot be followed at run time (docs/ENGINE.md: "an
    error for a path through a non-object") fails the task with a clear error
    in the execution error, the task error and an Error log line."""
    wf = create_wf(alice, [
        {"key": "shape", "name": "Shape", "action": "transform", "config": {"output": {"deep": template}}},
        {"key": "after", "name": "After", "action": "noop", "dependsOn": ["shape"]},
    ])
    done = run(alice, wf["id"], input={"present": 1})
    assert done["status"] == "Failed", done
    tasks = by_key(done)
    assert tasks["shape"]["status"] == "Failed", tasks
    assert tasks["after"]["status"] == "Cancelled" and "startedAt" not in tasks["after"], tasks
    assert "shape" in done["error"] and field in done["error"], done
    assert field in tasks["shape"].get("error", ""), tasks["shape"]
    entries = all_logs(alice, wf["id"], done["executionId"], minLevel="Error")
    assert any(e["taskId"] == tasks["shape"]["taskId"] and field in e["message"] for e in entries), entries
    # The server is fine and still runs workflows.
    assert api_server.running()
    assert alice.rest.get("/users/me").status == 200
    ok = create_wf(alice, [{"key": "a", "name": "A", "action": "noop"}])
    assert run(alice, ok["id"])["status"] == "Completed"


def test_strangers_get_404_on_everything(alice, carol):
    wf = create_wf(alice, LONG_DELAY)
    wid = wf["id"]
    eid = execute(alice, wid)["executionId"]
    base = f"/workflows/{wid}/executions/{eid}"
    for method, path in [("POST", f"/workflows/{wid}/execute"), ("GET", f"/workflows/{wid}/executions"),
                         ("GET", base), ("POST", base + "/cancel"), ("GET", base + "/watch"), ("GET", base + "/logs"),
                         ("GET", base + "/logs/tail")]:
        body = {} if method == "POST" else None
        assert_error(carol.rest.request(method, path, body), 404, 5)
    assert get_exec(alice, wid, eid)["status"] == "Running", "the stranger's cancel did nothing"
    assert exec_ids(alice, wid) == [eid], "the stranger's execute did nothing"
    r = alice.rest.post(base + "/cancel", {"reason": "cleanup"})
    assert r.status == 200 and r.json["status"] == "Cancelled", r


def test_viewers_read_but_cannot_execute_or_cancel(api_server, alice, bob):
    wf = create_wf(alice, LONG_DELAY)
    wid = wf["id"]
    wh.invite_and_accept(api_server, alice.token, bob.token, wf["orgId"])  # collaborators must be members
    r = alice.rest.post(f"/workflows/{wid}/collaborators", {"userId": bob.id, "role": "viewer"})
    assert r.status == 201, r
    eid = execute(alice, wid)["executionId"]
    base = f"/workflows/{wid}/executions/{eid}"
    assert_error(bob.rest.post(f"/workflows/{wid}/execute", {}), 403, 7)
    assert_error(bob.rest.post(base + "/cancel", {"reason": "not mine"}), 403, 7)
    assert get_exec(bob, wid, eid)["status"] == "Running"
    assert exec_ids(bob, wid) == [eid], "the viewer's execute started nothing"
    assert log_page(bob, wid, eid)["entries"]
    r = alice.rest.post(base + "/cancel", {"reason": "done here"})
    assert r.status == 200, r
    events = ndjson(bob.rest.get(base + "/watch"))
    check_snapshot_of_finished(events, get_exec(bob, wid, eid))
    assert events[-1]["status"] == "Cancelled", events
    tail = ndjson(bob.rest.get(base + "/logs/tail"))
    assert tail == all_logs(bob, wid, eid)


UNAUTH_ROUTES = [
    ("POST", "/workflows/{w}/execute"),
    ("GET", "/workflows/{w}/executions"),
    ("GET", "/workflows/{w}/executions/{e}"),
    ("POST", "/workflows/{w}/executions/{e}/cancel"),
    ("GET", "/workflows/{w}/executions/{e}/watch"),
    ("GET", "/workflows/{w}/executions/{e}/logs"),
    ("GET", "/workflows/{w}/executions/{e}/logs/tail"),
]


def test_everything_needs_a_token(alice, anon):
    wf = create_wf(alice, [{"key": "a", "name": "A", "action": "noop"}])
    done = run(alice, wf["id"])
    for method, template in UNAUTH_ROUTES:
        path = template.replace("{w}", wf["id"]).replace("{e}", done["executionId"])
        body = {} if method == "POST" else None
        assert_error(anon.request(method, path, body), 401, 16)
        assert_error(anon.request(method, path, body, headers={"Authorization": "Bearer garbage"}), 401, 16)
    assert exec_ids(alice, wf["id"]) == [done["executionId"]]


# ---------------------------------------------------------------------------
# gRPC
# ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ex(chan, v1):
    return v1.executions_pb2_grpc.ExecutionServiceStub(chan)


@pytest.fixture(scope="module")
def logsvc(chan, v1):
    return v1.logs_pb2_grpc.LogServiceStub(chan)


md = wh.grpc_auth


def expect_code(code, fn, *args, stream=False, **kwargs) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as info:
        result = fn(*args, timeout=TIMEOUT, **kwargs)
        if stream:
            list(result)
    assert info.value.code() == code, (info.value.code(), info.value.details())
    assert info.value.details(), "an error says why"
    return info.value


struct = wh.proto_struct


def g_wait(ex, v1, user, wid, eid, timeout: float = 10, why: str = ""):
    E = v1.executions_pb2.Execution
    terminal = {E.Completed, E.Failed, E.Cancelled, E.TimedOut}
    req = v1.executions_pb2.GetExecutionRequest(workflow_id=wid, execution_id=eid)
    return wh.wait_until(lambda: (lambda e: e if e.status in terminal else None)(
        ex.GetExecution(req, metadata=md(user), timeout=TIMEOUT)), timeout, interval=0.03,
        message=lambda: f"execution {eid} to end{why}; now: {ex.GetExecution(req, metadata=md(user), timeout=TIMEOUT)}")


def test_grpc_execute_watch_get_and_idempotency(ex, v1, alice, api_server):
    pb = v1.executions_pb2
    E, T = pb.Execution, pb.TaskExecution
    wf = create_wf(alice, [
        {"key": "wait", "name": "Wait", "action": "delay", "config": {"duration": "0.3s"}},
        {"key": "shape", "name": "Shape", "action": "transform", "dependsOn": ["wait"],
         "config": {"output": {"id": "{{ input.orderId }}", "qty": "{{ input.qty }}"}}},
    ])
    key = f"g-{uid()}"
    req = pb.ExecuteWorkflowRequest(workflow_id=wf["id"], input=struct({"orderId": "g-7", "qty": 2}),
                                    idempotency_key=key, timeout=duration_pb2.Duration(seconds=30), priority=-3)
    got_created = time.time_ns()
    started = ex.ExecuteWorkflow(req, metadata=md(alice), timeout=TIMEOUT)
    assert started.execution_id.startswith("exe_")
    assert started.status == E.Running, started

    events = list(ex.WatchExecution(pb.WatchExecutionRequest(workflow_id=wf["id"], execution_id=started.execution_id),
                                    metadata=md(alice), timeout=15))
    assert events, "the watch sent nothing"
    assert events[0].status == E.Running, events[0]
    assert events[-1].status == E.Completed, events[-1]
    seqs = [e.sequence for e in events]
    assert seqs == sorted(set(seqs)), seqs
    check_events([json_format.MessageToDict(e) for e in events], "Completed")
    for k in ("wait", "shape"):
        assert any(e.HasField("task") and e.task.task_key == k and e.task.status == T.Completed for e in events), k
    times = [e.time.ToNanoseconds() for e in events]
    assert all(got_created - 10**9 <= t <= time.time_ns() + 10**9 for t in times), times

    got = ex.GetExecution(pb.GetExecutionRequest(workflow_id=wf["id"], execution_id=started.execution_id),
                          metadata=md(alice), timeout=TIMEOUT)
    assert got.status == E.Completed and got.workflow_id == wf["id"] and got.workflow_version == 1
    assert got.idempotency_key == key
    assert json_format.MessageToDict(got.input) == {"orderId": "g-7", "qty": 2}
    shape = {t.task_key: t for t in got.tasks}["shape"]
    assert shape.status == T.Completed and shape.attempt == 1
    assert json_format.MessageToDict(shape.output) == {"id": "g-7", "qty": 2}
    assert got.started_at.ToNanoseconds() <= got.completed_at.ToNanoseconds()

    again = ex.ExecuteWorkflow(req, metadata=md(alice), timeout=TIMEOUT)
    assert again.execution_id == started.execution_id
    assert again.status in (E.Running, E.Completed), again

    # Cross-protocol: the same execution over REST, enums as names.
    rest = get_exec(alice, wf["id"], started.execution_id)
    assert rest["status"] == "Completed" and by_key(rest)["shape"]["output"] == {"id": "g-7", "qty": 2}
    assert ns(rest["completedAt"]) == got.completed_at.ToNanoseconds()


def test_grpc_list_cancel_and_failed_precondition(ex, v1, alice):
    pb = v1.executions_pb2
    E, T = pb.Execution, pb.TaskExecution
    wf = create_wf(alice, LONG_DELAY)
    wid = wf["id"]
    quick = create_wf(alice, [{"key": "a", "name": "A", "action": "noop"}])

    running = ex.ExecuteWorkflow(pb.ExecuteWorkflowRequest(workflow_id=wid), metadata=md(alice), timeout=TIMEOUT)
    wait_task(alice, wid, running.execution_id, "sleepy", {"Running"})
    cancelled = ex.CancelExecution(pb.CancelExecutionRequest(workflow_id=wid, execution_id=running.execution_id,
                                                             reason="grpc stop"), metadata=md(alice), timeout=TIMEOUT)
    assert cancelled.status == E.Cancelled, cancelled
    tasks = {t.task_key: t for t in cancelled.tasks}
    assert tasks["sleepy"].status == T.Cancelled and tasks["first"].status == T.Completed, tasks
    assert not tasks["after"].HasField("started_at"), tasks["after"]
    expect_code(grpc.StatusCode.FAILED_PRECONDITION, ex.CancelExecution,
                pb.CancelExecutionRequest(workflow_id=wid, execution_id=running.execution_id), metadata=md(alice))

    done = ex.ExecuteWorkflow(pb.ExecuteWorkflowRequest(workflow_id=quick["id"]), metadata=md(alice), timeout=TIMEOUT)
    assert g_wait(ex, v1, alice, quick["id"], done.execution_id).status == E.Completed
    expect_code(grpc.StatusCode.FAILED_PRECONDITION, ex.CancelExecution,
                pb.CancelExecutionRequest(workflow_id=quick["id"], execution_id=done.execution_id), metadata=md(alice))

    second = ex.ExecuteWorkflow(pb.ExecuteWorkflowRequest(workflow_id=wid), metadata=md(alice), timeout=TIMEOUT)
    L = pb.ListExecutionsRequest
    listed = ex.ListExecutions(L(workflow_id=wid), metadata=md(alice), timeout=TIMEOUT)
    assert [e.execution_id for e in listed.executions] == [second.execution_id, running.execution_id]
    assert listed.next_page_token == ""
    only = ex.ListExecutions(L(workflow_id=wid, status=E.Cancelled), metadata=md(alice), timeout=TIMEOUT)
    assert [e.execution_id for e in only.executions] == [running.execution_id]
    page = ex.ListExecutions(L(workflow_id=wid, page_size=1), metadata=md(alice), timeout=TIMEOUT)
    assert [e.execution_id for e in page.executions] == [second.execution_id] and page.next_page_token
    page2 = ex.ListExecutions(L(workflow_id=wid, page_size=1, page_token=page.next_page_token), metadata=md(alice),
                              timeout=TIMEOUT)
    assert [e.execution_id for e in page2.executions] == [running.execution_id] and page2.next_page_token == ""
    future = timestamp_pb2.Timestamp(seconds=int(time.time()) + 3600)
    assert list(ex.ListExecutions(L(workflow_id=wid, started_after=future), metadata=md(alice),
                                  timeout=TIMEOUT).executions) == []
    expect_code(grpc.StatusCode.INVALID_ARGUMENT, ex.ListExecutions, L(workflow_id=wid, page_token="junk"),
                metadata=md(alice))
    expect_code(grpc.StatusCode.INVALID_ARGUMENT, ex.ListExecutions, L(workflow_id=wid, page_size=-1),
                metadata=md(alice))
    ex.CancelExecution(pb.CancelExecutionRequest(workflow_id=wid, execution_id=second.execution_id),
                       metadata=md(alice), timeout=TIMEOUT)


def test_grpc_logs_and_tail(ex, logsvc, v1, alice):
    pb, lg = v1.executions_pb2, v1.logs_pb2
    Lv = lg.LogEntry
    wf = create_wf(alice, STREAMED)
    wid = wf["id"]
    started = ex.ExecuteWorkflow(pb.ExecuteWorkflowRequest(workflow_id=wid), metadata=md(alice), timeout=TIMEOUT)
    eid = started.execution_id
    tailed = list(logsvc.TailLogs(lg.TailLogsRequest(workflow_id=wid, execution_id=eid), metadata=md(alice),
                                  timeout=15))
    assert g_wait(ex, v1, alice, wid, eid).status == pb.Execution.Completed
    assert [e.sequence for e in tailed] == list(range(1, len(tailed) + 1))
    assert {"first words", "last words"} <= {e.message for e in tailed}
    assert all(e.execution_id == eid for e in tailed)

    G = lg.GetExecutionLogsRequest
    full = logsvc.GetExecutionLogs(G(workflow_id=wid, execution_id=eid), metadata=md(alice), timeout=TIMEOUT)
    assert list(full.entries) == tailed and full.next_page_token == ""
    warn = logsvc.GetExecutionLogs(G(workflow_id=wid, execution_id=eid, min_level=Lv.Warning), metadata=md(alice),
                                   timeout=TIMEOUT)
    assert list(warn.entries) == [e for e in tailed if e.level >= Lv.Warning]
    assert "last words" in {e.message for e in warn.entries}
    bye = task_ids(wf)["bye"]
    only = logsvc.GetExecutionLogs(G(workflow_id=wid, execution_id=eid, task_id=bye), metadata=md(alice),
                                   timeout=TIMEOUT)
    assert list(only.entries) == [e for e in tailed if e.task_id == bye] and only.entries
    p1 = logsvc.GetExecutionLogs(G(workflow_id=wid, execution_id=eid, page_size=2), metadata=md(alice), timeout=TIMEOUT)
    assert list(p1.entries) == tailed[:2] and p1.next_page_token
    p2 = logsvc.GetExecutionLogs(G(workflow_id=wid, execution_id=eid, page_size=2, page_token=p1.next_page_token),
                                 metadata=md(alice), timeout=TIMEOUT)
    assert list(p2.entries) == tailed[2:4]

    # Tailing a finished execution replays and ends; after_sequence skips what was seen.
    rest_tail = list(logsvc.TailLogs(lg.TailLogsRequest(workflow_id=wid, execution_id=eid, after_sequence=2),
                                     metadata=md(alice), timeout=TIMEOUT))
    assert rest_tail == tailed[2:]
    warn_tail = list(logsvc.TailLogs(lg.TailLogsRequest(workflow_id=wid, execution_id=eid, min_level=Lv.Warning),
                                     metadata=md(alice), timeout=TIMEOUT))
    assert warn_tail == list(warn.entries)

    expect_code(grpc.StatusCode.INVALID_ARGUMENT, logsvc.GetExecutionLogs,
                G(workflow_id=wid, execution_id=eid, page_token="junk"), metadata=md(alice))
    expect_code(grpc.StatusCode.NOT_FOUND, logsvc.GetExecutionLogs, G(workflow_id=wid, execution_id="exe_nope"),
                metadata=md(alice))
    expect_code(grpc.StatusCode.NOT_FOUND, logsvc.TailLogs,
                lg.TailLogsRequest(workflow_id=wid, execution_id="exe_nope"), metadata=md(alice), stream=True)


def test_grpc_error_codes(api_server, ex, logsvc, v1, alice, bob, carol):
    pb, lg = v1.executions_pb2, v1.logs_pb2
    wf = create_wf(alice, [{"key": "a", "name": "A", "action": "noop"}])
    wid = wf["id"]
    wh.invite_and_accept(api_server, alice.token, bob.token, wf["orgId"])  # collaborators must be members
    r = alice.rest.post(f"/workflows/{wid}/collaborators", {"userId": bob.id, "role": "viewer"})
    assert r.status == 201, r
    done = ex.ExecuteWorkflow(pb.ExecuteWorkflowRequest(workflow_id=wid), metadata=md(alice), timeout=TIMEOUT)
    g_wait(ex, v1, alice, wid, done.execution_id)
    eid = done.execution_id
    X = pb.ExecuteWorkflowRequest
    IA, NF, PD, UA = (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND, grpc.StatusCode.PERMISSION_DENIED,
                      grpc.StatusCode.UNAUTHENTICATED)

    expect_code(IA, ex.ExecuteWorkflow, X(workflow_id=""), metadata=md(alice))
    expect_code(IA, ex.ExecuteWorkflow, X(workflow_id=wid, priority=1000), metadata=md(alice))
    expect_code(IA, ex.ExecuteWorkflow, X(workflow_id=wid, timeout=duration_pb2.Duration(seconds=-1)), metadata=md(alice))
    expect_code(NF, ex.ExecuteWorkflow, X(workflow_id="wf_doesnotexist"), metadata=md(alice))
    expect_code(NF, ex.GetExecution, pb.GetExecutionRequest(workflow_id=wid, execution_id="exe_nope"), metadata=md(alice))
    expect_code(NF, ex.WatchExecution, pb.WatchExecutionRequest(workflow_id=wid, execution_id="exe_nope"),
                metadata=md(alice), stream=True)

    # A stranger sees nothing, a viewer reads but cannot act, no token is UNAUTHENTICATED.
    calls = [
        (ex.ExecuteWorkflow, X(workflow_id=wid), False),
        (ex.GetExecution, pb.GetExecutionRequest(workflow_id=wid, execution_id=eid), False),
        (ex.ListExecutions, pb.ListExecutionsRequest(workflow_id=wid), False),
        (ex.CancelExecution, pb.CancelExecutionRequest(workflow_id=wid, execution_id=eid), False),
        (ex.WatchExecution, pb.WatchExecutionRequest(workflow_id=wid, execution_id=eid), True),
        (logsvc.GetExecutionLogs, lg.GetExecutionLogsRequest(workflow_id=wid, execution_id=eid), False),
        (logsvc.TailLogs, lg.TailLogsRequest(workflow_id=wid, execution_id=eid), True),
    ]
    for fn, req, stream in calls:
        expect_code(NF, fn, req, metadata=md(carol), stream=stream)
        expect_code(UA, fn, req, metadata=(), stream=stream)
    expect_code(PD, ex.ExecuteWorkflow, X(workflow_id=wid), metadata=md(bob))
    expect_code(PD, ex.CancelExecution, pb.CancelExecutionRequest(workflow_id=wid, execution_id=eid), metadata=md(bob))
    assert ex.GetExecution(pb.GetExecutionRequest(workflow_id=wid, execution_id=eid), metadata=md(bob),
                           timeout=TIMEOUT).status == pb.Execution.Completed
    watched = list(ex.WatchExecution(pb.WatchExecutionRequest(workflow_id=wid, execution_id=eid), metadata=md(bob),
                                     timeout=TIMEOUT))
    check_snapshot_of_finished([json_format.MessageToDict(e) for e in watched], get_exec(bob, wid, eid))
    assert logsvc.GetExecutionLogs(lg.GetExecutionLogsRequest(workflow_id=wid, execution_id=eid), metadata=md(bob),
                                   timeout=TIMEOUT).entries
    listed = ex.ListExecutions(pb.ListExecutionsRequest(workflow_id=wid), metadata=md(bob), timeout=TIMEOUT)
    assert [e.execution_id for e in listed.executions] == [eid], "no one else's call started anything"


def test_grpc_failed_execution_reports_the_task(ex, logsvc, v1, alice):
    pb, lg = v1.executions_pb2, v1.logs_pb2
    wf = create_wf(alice, [{"key": "broken", "name": "Broken", "action": "http",
                            "config": {"url": f"http://127.0.0.1:{closed_port()}/x"},
                            "retry": {"maxAttempts": 2, **FAST_RETRY, "retryableErrors": ["connection"]}}])
    started = ex.ExecuteWorkflow(pb.ExecuteWorkflowRequest(workflow_id=wf["id"]), metadata=md(alice), timeout=TIMEOUT)
    done = g_wait(ex, v1, alice, wf["id"], started.execution_id,
                  why=" (2 attempts on a refused loopback port: a refused connect must fail its attempt at once)")
    assert done.status == pb.Execution.Failed, done
    assert "broken" in done.error
    t = done.tasks[0]
    assert (t.task_key, t.status, t.attempt) == ("broken", pb.TaskExecution.Failed, 2)
    errors = logsvc.GetExecutionLogs(lg.GetExecutionLogsRequest(workflow_id=wf["id"], execution_id=done.execution_id,
                                                                min_level=lg.LogEntry.Error),
                                     metadata=md(alice), timeout=TIMEOUT)
    assert errors.entries and all(e.level == lg.LogEntry.Error for e in errors.entries)
    text = "\n".join([done.error, t.error] + [e.message for e in errors.entries])
    assert "connection" in text, text
