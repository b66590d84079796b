"""Analytics (Step 10) on a real `weft serve`: workflow statistics, trends,
insights, predictions, budgets and their alerts, the new metrics and
`weft analytics rebuild`, over REST.

Every expected figure is computed here from the executions themselves (GET
/workflows/{id}/executions): counts, rates, costs, the maximum duration and
versions exactly; percentiles (nearest rank over a log-linear histogram)
within the response's `durationErrorBound` (relative) + 1 ms; costs within
1e-9 dollars.  proto3 JSON writes int64 as strings, so counts go through
int(); durations arrive as "0.061s".

* `history`: one workflow (an http task with fast retries against a local
  target, then a noop) run with known outcomes: completed, completed after
  one or two retries, failed after every attempt, failed at once (404), a
  webhook-triggered run, one cancelled and one timed out (both held by the
  target), edited (version 2) and run again; its `running` count is read
  while one execution is held.
* Trends in a time zone (period keys = the local day of each execution's
  UTC creation hour), filters, organization scope (admin / member /
  stranger), bad arguments.
* Authorization: strangers 404, a viewer reads but cannot set a budget.
* Insights and predictions; budgets (workflow and organization), their
  validation, alerts (one webhook delivery of budget.exceeded, one in-app
  notification per org admin) with the module's server checking budgets
  every second (`--budget-interval 1`).
* Metrics; rebuild of the rollups on a stopped server's data directory.
"""

from __future__ import annotations

import datetime
import http.server
import json
import math
import subprocess
import threading
import time
import urllib.parse
import uuid
import zoneinfo

import pytest

import notify_sinks as ns
import weft_helpers as wh

#: conftest's api_server takes these on top of wh.API_SERVER_ARGS.
API_SERVER_EXTRA_ARGS = ("--budget-interval", "1")

TIMEOUT = 15
TERMINAL = {"Completed", "Failed", "Cancelled", "TimedOut"}
FAST_RETRY = {"initialBackoff": "0.05s", "maxBackoff": "0.1s", "backoffMultiplier": 2, "jitter": 0}
INVALID_ARGUMENT, NOT_FOUND, PERMISSION_DENIED = 3, 5, 7
BERLIN = zoneinfo.ZoneInfo("Europe/Berlin")

#: An http task whose URL and behaviour come from the input (see Target),
#: retried on 5xx, then a noop.
CALL_THEN_AFTER = [
    {"key": "call", "name": "Call", "action": "http",
     "config": {"url": "{{ input.url }}", "headers": {"X-Run": "{{ input.run }}", "X-Fail": "{{ input.fail }}"}},
     "retry": {"maxAttempts": 3, **FAST_RETRY, "retryableErrors": ["http_5xx"]}},
    {"key": "after", "name": "After", "action": "noop", "dependsOn": ["call"]},
]
#: Fails at once without input ({{ input.x.y }} reads through a missing
#: field), completes with input {"x": {"y": 1}} (test_notifications.py).
SHAPE = [{"key": "shape", "name": "Shape", "action": "transform",
          "config": {"output": {"v": "{{ input.x.y }}"}}, "retry": {"maxAttempts": 1}}]
SUCCEEDS = {"x": {"y": 1}}


# ---------------------------------------------------------------------------
# A local HTTP target
# ---------------------------------------------------------------------------


class Target:
    """A threaded http.server on 127.0.0.1.

    /ok          200
    /flaky       500 {"error": "try again"} for the first X-Fail requests of
                 each X-Run value, then 200
    /down        500 {"error": "down"} always
    /missing     404
    /hold/<id>   answers 200 once release(<id>) is called (at most 20 s)
    """

    def __init__(self):
        self.lock = threading.Lock()
        self.counts: dict[str, int] = {}
        self.holds: dict[str, threading.Event] = {}
        self.held: set[str] = set()
        target = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                path = urllib.parse.urlsplit(self.path).path
                if path == "/ok":
                    self._reply(200, {"ok": True})
                elif path == "/flaky":
                    run = self.headers.get("X-Run", "")
                    with target.lock:
                        target.counts[run] = n = target.counts.get(run, 0) + 1
                    if n <= int(self.headers["X-Fail"]):
                        self._reply(500, {"error": "try again"})
                    else:
                        self._reply(200, {"attempt": n})
                elif path == "/down":
                    self._reply(500, {"error": "down"})
                elif path.startswith("/hold/"):
                    ident = path.split("/", 2)[2]
                    with target.lock:
                        event = target.holds.setdefault(ident, threading.Event())
                        target.held.add(ident)
                    event.wait(20)
                    self._reply(200, {"held": ident})
                else:
                    self._reply(404, {"error": "no such path"})

            def _reply(self, status, payload):
                data = json.dumps(payload).encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the engine stopped the attempt

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def is_held(self, ident: str) -> bool:
        with self.lock:
            return ident in self.held

    def release(self, ident: str) -> None:
        with self.lock:
            self.holds.setdefault(ident, threading.Event()).set()

    def close(self):
        with self.lock:
            for event in self.holds.values():
                event.set()
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture(scope="module")
def target():
    t = Target()
    yield t
    t.close()


# ---------------------------------------------------------------------------
# Users and REST helpers
# ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def alice(api_server):
    return wh.register_and_login(api_server, "Alice Analytics")


@pytest.fixture(scope="module")
def bob(api_server):
    """A viewer of alice's `history` workflow."""
    return wh.register_and_login(api_server, "Bob Viewer")


@pytest.fixture(scope="module")
def carol(api_server):
    """No role near alice or olga."""
    return wh.register_and_login(api_server, "Carol Stranger")


def uid() -> str:
    return uuid.uuid4().hex[:8]


def assert_error(r: wh.RestResponse, status: int, code: int, *fragments: str) -> dict:
    assert r.status == status, r
    body = r.json
    assert isinstance(body, dict) and body.get("code") == code, body
    assert isinstance(body.get("message"), str) and body["message"], body
    for fragment in fragments:
        assert fragment in body["message"], (fragment, body)
    return body


def create_wf(user: wh.ApiUser, tasks, name: str | None = None) -> dict:
    r = user.rest.post("/workflows", {"name": name or f"analytics {uid()}", "tasks": tasks})
    assert r.status == 201, r
    return r.json


def execute(user: wh.ApiUser, wid: str, **body) -> str:
    r = user.rest.post(f"/workflows/{wid}/execute", body)
    assert r.status == 202, r
    return r.json["executionId"]


def get_exec(user: wh.ApiUser, wid: str, eid: str) -> dict:
    r = user.rest.get(f"/workflows/{wid}/executions/{eid}")
    assert r.status == 200, r
    return r.json


def wait_exec(user, wid, eid, statuses=TERMINAL, timeout: float = TIMEOUT) -> dict:
    last = {}

    def check():
        last["e"] = get_exec(user, wid, eid)
        return last["e"] if last["e"]["status"] in statuses else None

    return wh.wait_until(check, timeout, interval=0.03, message=lambda: f"{eid} to reach {statuses}: {last.get('e')}")


def list_execs(user, wid) -> list:
    return wh.all_pages(user.rest, f"/workflows/{wid}/executions", "executions", pageSize=100)


def get_json(user, path: str, **params) -> dict:
    q = urllib.parse.urlencode(params)
    r = user.rest.get(path + (f"?{q}" if q else ""))
    assert r.status == 200, r
    return r.json


def stats(user, wid, **params) -> dict:
    return get_json(user, f"/workflows/{wid}/stats", **params)


def trends(user, **params) -> dict:
    return get_json(user, "/analytics/workflow-executions", **params)


def n(obj: dict, key: str) -> int:
    """An int64 field (a string in proto3 JSON; absent = 0)."""
    return int(obj.get(key, "0"))


def ns_(ts: str) -> int:
    return wh.rfc3339_nanos(ts)


def dur_ms(text: str | None) -> float:
    """A proto3 JSON Duration ("0.061s") in milliseconds (absent = 0)."""
    if not text:
        return 0.0
    assert text.endswith("s"), text
    return float(text[:-1]) * 1000


def duration_ms(execution: dict) -> int:
    """completedAt - createdAt, in whole milliseconds (the API's precision)."""
    return round((ns_(execution["completedAt"]) - ns_(execution["createdAt"])) / 1e6)


def task_ms(task: dict) -> int:
    return round((ns_(task["completedAt"]) - ns_(task["startedAt"])) / 1e6)


def nearest_rank(values, p: float) -> float:
    ordered = sorted(values)
    rank = max(1, math.ceil(p * len(ordered)))
    return ordered[rank - 1]


def assert_close_ms(reported: float, true: float, bound: float, what: str) -> None:
    assert abs(reported - true) <= true * bound + 1, f"{what}: reported {reported} ms, true {true} ms (bound {bound})"


def assert_percentiles(obj: dict, prefix: str, suffix: str, values, bound: float, what: str) -> None:
    for p, name in ((0.5, "p50"), (0.95, "p95"), (0.99, "p99")):
        key = f"{name}{prefix}{suffix}"
        assert_close_ms(dur_ms(obj.get(key)), nearest_rank(values, p), bound, f"{what} {key}")


def queue_wait_ms(execution: dict, depends_on: dict) -> int:
    """docs: the sum, over the critical path (from the task that completed
    last back through the dependency that completed last), of each task's
    first start minus the time it became ready."""
    ran = [t for t in execution["tasks"] if t.get("startedAt") and t.get("completedAt")]
    if not ran:
        return 0
    by_key = {t["taskKey"]: t for t in ran}
    current = max(ran, key=lambda t: (ns_(t["completedAt"]), t["taskKey"]))
    total, seen = 0, set()
    while current["taskKey"] not in seen:
        seen.add(current["taskKey"])
        deps = [by_key[k] for k in depends_on.get(current["taskKey"], []) if k in by_key]
        gate = max(deps, key=lambda t: (ns_(t["completedAt"]), t["taskKey"])) if deps else None
        ready = ns_(gate["completedAt"]) if gate else ns_(execution["createdAt"])
        total += max(0, round((ns_(current["startedAt"]) - ready) / 1e6))
        if gate is None:
            break
        current = gate
    return total


def local_day(created_at: str, zone: zoneinfo.ZoneInfo) -> str:
    """The period key of an execution: the local day (in `zone`) holding the
    start of the UTC hour it was created in."""
    secs = ns_(created_at) // 1_000_000_000
    hour = datetime.datetime.fromtimestamp(secs - secs % 3600, datetime.timezone.utc)
    return hour.astimezone(zone).strftime("%Y-%m-%d")


def near_month_change(zone: zoneinfo.ZoneInfo, margin_s: float = 600) -> bool:
    """True within `margin_s` of a month boundary in `zone`."""
    now = datetime.datetime.now(datetime.timezone.utc)
    months = {(now + datetime.timedelta(seconds=d)).astimezone(zone).strftime("%Y-%m")
              for d in (-margin_s, 0, margin_s)}
    return len(months) > 1


def call_input(target: Target, kind: str, fail: int = 0) -> dict:
    return {"url": target.url({"ok": "/ok", "flaky": "/flaky", "down": "/down", "missing": "/missing"}[kind]),
            # A string: the http task sends only string header values.
            "run": uid(), "fail": str(fail)}


def run_all(user, wid, inputs: list[dict]) -> list[dict]:
    """Starts every execution at once, then waits for each to end."""
    eids = [execute(user, wid, input=body) for body in inputs]
    return [wait_exec(user, wid, eid) for eid in eids]


# ---------------------------------------------------------------------------
# The history every statistic is checked against
# ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def history(api_server, alice, bob, target):
    """alice's workflow with executions of every outcome over two versions;
    bob is a viewer. Returns the workflow, every execution (as listed at the
    end), the stats read while one execution was held, and more."""
    wf = create_wf(alice, CALL_THEN_AFTER, name=f"history {uid()}")
    wid = wf["id"]
    wh.invite_and_accept(api_server, alice.token, bob.token, wf["orgId"])
    r = alice.rest.post(f"/workflows/{wid}/collaborators", {"userId": bob.id, "role": "viewer"})
    assert r.status == 201, r

    # Version 1: 3 completed, 2 completed after one retry, 1 after two,
    # 1 failed after three attempts (5xx), 1 failed at once (404).
    v1 = run_all(alice, wid, [call_input(target, "ok") for _ in range(3)]
                 + [call_input(target, "flaky", 1) for _ in range(2)]
                 + [call_input(target, "flaky", 2), call_input(target, "down"), call_input(target, "missing")])
    # One more, by a webhook trigger (trigger "webhook").
    r = alice.rest.post(f"/workflows/{wid}/triggers", {"type": "webhook"})
    assert r.status == 201, r
    hook = wh.RestClient(api_server).request("POST", r.json["url"], raw=json.dumps(call_input(target, "ok")).encode())
    assert hook.status == 202, hook
    v1.append(wait_exec(alice, wid, hook.json["executionId"]))

    # Version 2: the same tasks, a new description.
    r = alice.rest.put(f"/workflows/{wid}", {"name": wf["name"], "description": "version 2",
                                            "tasks": CALL_THEN_AFTER})
    assert r.status == 200 and r.json["version"] == 2, r

    # Held by the target: running now, counted in `running`.
    held = uid()
    held_id = execute(alice, wid, input={"url": target.url(f"/hold/{held}"), "run": held, "fail": "0"})
    wh.wait_until(lambda: target.is_held(held), 10, message="the held request to arrive")
    while_held = stats(alice, wid, window="day")
    prediction_running = get_json(alice, f"/executions/{held_id}/prediction")
    # Cancelled while held; timed out while held (execution timeout).
    cancel_hold, timeout_hold = uid(), uid()
    cancelled_id = execute(alice, wid,
                           input={"url": target.url(f"/hold/{cancel_hold}"), "run": cancel_hold, "fail": "0"})
    wh.wait_until(lambda: target.is_held(cancel_hold), 10, message="the request to cancel to arrive")
    r = alice.rest.post(f"/workflows/{wid}/executions/{cancelled_id}/cancel", {"reason": "analytics test"})
    assert r.status == 200 and r.json["status"] == "Cancelled", r
    timed_id = execute(alice, wid, timeout="0.3s",
                       input={"url": target.url(f"/hold/{timeout_hold}"), "run": timeout_hold, "fail": "0"})
    assert wait_exec(alice, wid, timed_id)["status"] == "TimedOut"
    target.release(held)
    target.release(cancel_hold)
    target.release(timeout_hold)
    assert wait_exec(alice, wid, held_id)["status"] == "Completed"
    run_all(alice, wid, [call_input(target, "ok"), call_input(target, "flaky", 1), call_input(target, "down")])

    # The stopped attempts' requests are charged when they return (late
    # cost): wait until every execution's cost has settled.
    def settled():
        first = [e["cost"] for e in list_execs(alice, wid)]
        time.sleep(0.3)
        second = list_execs(alice, wid)
        return second if [e["cost"] for e in second] == first else None

    executions = wh.wait_until(settled, 10, message="execution costs to settle")
    assert len(executions) == 9 + 3 + 3, [e["status"] for e in executions]
    assert all(e["status"] in TERMINAL for e in executions), executions
    statuses = sorted(e["status"] for e in executions)
    assert statuses.count("Cancelled") == 1 and statuses.count("TimedOut") == 1, statuses
    return {
        "wf": wf, "wid": wid, "executions": executions, "while_held": while_held, "held_id": held_id,
        "prediction_running": prediction_running, "depends_on": {"call": [], "after": ["call"]},
    }


def expected_tasks(executions: list[dict]) -> dict:
    """Per task key: runs (ended Completed or Failed), failed, retried,
    flaky, attempts and durations (first start to end, ms)."""
    out: dict[str, dict] = {}
    for e in executions:
        for t in e["tasks"]:
            if t["status"] not in ("Completed", "Failed"):
                continue
            s = out.setdefault(t["taskKey"], {"runs": 0, "failed": 0, "retried": 0, "flaky": 0, "attempts": 0,
                                             "durations": []})
            s["runs"] += 1
            s["attempts"] += t["attempt"]
            s["failed"] += t["status"] == "Failed"
            s["retried"] += t["attempt"] > 1
            s["flaky"] += t["status"] == "Completed" and t["attempt"] > 1
            s["durations"].append(task_ms(t))
    return out


# ---------------------------------------------------------------------------
# Statistics
# ---------------------------------------------------------------------------


def test_stats_counts_rates_cost_and_durations(alice, history):
    execs = history["executions"]
    s = stats(alice, history["wid"], window="day")
    assert s["workflowId"] == history["wid"], s
    # proto3 JSON: int64 counts are strings.
    for key in ("finished", "completed", "failed", "cancelled", "timedOut", "running", "totalExecutions"):
        assert isinstance(s[key], str), (key, s[key])
    by_status = {k: sum(e["status"] == k for e in execs) for k in TERMINAL}
    assert n(s, "finished") == len(execs) == 15, s
    assert n(s, "running") == 0 and n(s, "totalExecutions") == len(execs), s
    assert (n(s, "completed"), n(s, "failed"), n(s, "cancelled"), n(s, "timedOut")) == (
        by_status["Completed"], by_status["Failed"], by_status["Cancelled"], by_status["TimedOut"]), (s, by_status)
    assert (by_status["Completed"], by_status["Failed"]) == (10, 3), by_status
    assert s["successRate"] == pytest.approx(by_status["Completed"] / len(execs), abs=1e-12), s
    retried = sum(any(t["attempt"] > 1 for t in e["tasks"]) for e in execs)
    assert retried == 6, [(e["status"], [t["attempt"] for t in e["tasks"]]) for e in execs]
    assert s["retryRate"] == pytest.approx(retried / len(execs), abs=1e-12), s

    costs = [e["cost"] for e in execs]
    assert all(c > 0 for c in costs), costs
    assert s["totalCost"] == pytest.approx(sum(costs), abs=1e-9), (s["totalCost"], sum(costs))
    assert s["averageCost"] == pytest.approx(sum(costs) / len(execs), abs=1e-9), s

    durations = [duration_ms(e) for e in execs]
    bound = s["durationErrorBound"]
    assert bound == pytest.approx(1 / 128), s
    assert dur_ms(s["maxDuration"]) == max(durations), (s["maxDuration"], sorted(durations))
    assert abs(dur_ms(s["meanDuration"]) - sum(durations) / len(durations)) <= 1, (s["meanDuration"], durations)
    assert_percentiles(s, "", "Duration", durations, bound, "execution")
    waits = [queue_wait_ms(e, history["depends_on"]) for e in execs]
    for p, name in ((0.5, "p50"), (0.95, "p95"), (0.99, "p99")):
        true = nearest_rank(waits, p)
        got = dur_ms(s.get(f"{name}QueueWait"))
        assert abs(got - true) <= true * bound + 2, (name, got, sorted(waits))
    last = max(ns_(e["completedAt"]) for e in execs)
    assert ns_(s["lastExecutionAt"]) == last, (s["lastExecutionAt"], last)


def test_stats_by_trigger(alice, history):
    execs = history["executions"]
    s = stats(alice, history["wid"], window="day")
    want = {}
    for e in execs:
        want[e["trigger"]] = want.get(e["trigger"], 0) + 1
    assert want == {"api": 14, "webhook": 1}, want
    # Most first (ties by name).
    assert s["byTrigger"] == [{"trigger": "api", "executions": "14"}, {"trigger": "webhook", "executions": "1"}], \
        s["byTrigger"]


def test_stats_window_is_whole_hours(alice, history):
    before = time.time()
    s = stats(alice, history["wid"], window="day")
    after = time.time()
    start, end = ns_(s["windowStart"]) / 1e9, ns_(s["windowEnd"]) / 1e9
    assert start % 3600 == 0 and end % 3600 == 0, s
    # [the hour holding now - 1 day, the end of the hour holding now), for
    # the server's now, between `before` and `after`.
    assert start <= after - 86400 and before - 86400 < start + 3600, (s, before, after)
    assert end - 3600 <= after and before < end, (s, before, after)
    h = stats(alice, history["wid"], window="hour")
    assert ns_(h["windowStart"]) / 1e9 % 3600 == 0 and ns_(h["windowEnd"]) / 1e9 % 3600 == 0, h
    assert (ns_(h["windowEnd"]) - ns_(h["windowStart"])) / 1e9 in (3600, 7200), h
    # Bad windows and versions.
    for params in ({"window": "fortnight"}, {"version": "-1"}):
        assert_error(alice.rest.get(f"/workflows/{history['wid']}/stats?" + urllib.parse.urlencode(params)), 400,
                     INVALID_ARGUMENT)


def test_stats_per_task(alice, history):
    s = stats(alice, history["wid"], window="day")
    want = expected_tasks(history["executions"])
    assert set(want) == {"call", "after"}, want
    assert want["call"]["runs"] == 13 and want["call"]["flaky"] == 4, want  # cancelled / timed-out calls did not end
    tasks = {t["taskKey"]: t for t in s["tasks"]}
    assert set(tasks) == set(want), s["tasks"]
    bound = s["durationErrorBound"]
    for key, w in want.items():
        t = tasks[key]
        got = {k: n(t, k) for k in ("runs", "failed", "retried", "flaky", "attempts")}
        assert got == {k: w[k] for k in got}, (key, got, w)
        assert t["failureRate"] == pytest.approx(w["failed"] / w["runs"], abs=1e-12), t
        assert dur_ms(t.get("maxDuration")) == max(w["durations"]), (key, t, sorted(w["durations"]))
        assert_percentiles(t, "", "Duration", w["durations"], bound, f"task {key}")
    assert sum(t["costShare"] for t in s["tasks"]) == pytest.approx(1, abs=1e-9), s["tasks"]
    assert s["mostFailingTasks"] == ["call"], s
    assert set(s["slowestTasks"]) == {"call", "after"} and s["slowestTasks"][0] == "call", s


def test_stats_per_version(alice, history):
    execs = history["executions"]
    s = stats(alice, history["wid"], window="day")
    assert [v["version"] for v in s["versions"]] == [2, 1], s["versions"]
    bound = s["durationErrorBound"]
    for v in s["versions"]:
        mine = [e for e in execs if e["workflowVersion"] == v["version"]]
        done = sum(e["status"] == "Completed" for e in mine)
        failed = sum(e["status"] == "Failed" for e in mine)
        assert (n(v, "finished"), n(v, "completed"), n(v, "failed")) == (len(mine), done, failed), (v, len(mine))
        assert v["successRate"] == pytest.approx(done / len(mine), abs=1e-12), v
        assert v["averageCost"] == pytest.approx(sum(e["cost"] for e in mine) / len(mine), abs=1e-9), v
        assert ns_(v["firstStarted"]) == min(ns_(e["createdAt"]) for e in mine), v
        assert ns_(v["lastFinished"]) == max(ns_(e["completedAt"]) for e in mine), v
        for p, name in ((0.5, "p50"), (0.95, "p95")):
            assert_close_ms(dur_ms(v.get(f"{name}Duration")), nearest_rank([duration_ms(e) for e in mine], p), bound,
                            f"version {v['version']} {name}")
    assert [n(v, "finished") for v in s["versions"]] == [6, 9], s["versions"]
    # ?version= narrows everything to that version.
    one = stats(alice, history["wid"], window="day", version=1)
    v1 = [e for e in execs if e["workflowVersion"] == 1]
    assert n(one, "finished") == len(v1) and n(one, "completed") == sum(e["status"] == "Completed" for e in v1), one
    assert one["totalCost"] == pytest.approx(sum(e["cost"] for e in v1), abs=1e-9), one
    assert [v["version"] for v in one["versions"]] == [1], one["versions"]


def test_running_execution_is_counted_while_it_runs(history):
    s = history["while_held"]
    assert n(s, "running") == 1, s
    assert n(s, "totalExecutions") == n(s, "finished") + 1, s
    assert n(s, "finished") == 9, s  # version 1's executions, all ended before
    p = history["prediction_running"]
    assert p["executionId"] == history["held_id"] and p["status"] in ("Running", "Pending"), p
    assert p.get("confidence", 0) < 1, p


# ---------------------------------------------------------------------------
# Trends
# ---------------------------------------------------------------------------


def sum_points(points: list, key: str) -> int:
    return sum(n(p, key) for p in points)


def test_trends_of_a_workflow_in_a_time_zone_and_filters(alice, history):
    execs = history["executions"]
    wid = history["wid"]
    for zone_name in ("Europe/Berlin", "America/New_York", "Asia/Kolkata"):
        zone = zoneinfo.ZoneInfo(zone_name)
        t = trends(alice, timeZone=zone_name, workflowId=wid)
        assert t["timeZone"] == zone_name and t["scope"] == f"workflow:{wid}", t
        assert n(t, "workflows") == 1, t
        want: dict[str, int] = {}
        for e in execs:
            want[local_day(e["createdAt"], zone)] = want.get(local_day(e["createdAt"], zone), 0) + 1
        assert {p["period"]: n(p, "started") for p in t["daily"]} == want, (zone_name, t["daily"])
        for level in ("daily", "monthly", "yearly"):
            assert sum_points(t[level], "started") == len(execs), (level, t[level])
            assert sum_points(t[level], "completed") == sum(e["status"] == "Completed" for e in execs), t[level]
            assert sum(p.get("cost", 0) for p in t[level]) == pytest.approx(sum(e["cost"] for e in execs), abs=1e-9)
        assert [p["period"] for p in t["monthly"]] == sorted({d[:7] for d in want}), t["monthly"]
        assert t.get("hourAligned", False) == (zone_name == "Asia/Kolkata"), t
    # Filters narrow the counts.
    t = trends(alice, workflowId=wid, trigger="webhook")
    assert sum_points(t["daily"], "started") == 1, t
    t = trends(alice, workflowId=wid, status="Failed")
    failed = sum(e["status"] == "Failed" for e in execs)
    assert sum_points(t["daily"], "started") == failed == sum_points(t["daily"], "failed"), t
    assert sum_points(t["daily"], "completed") == 0, t
    t = trends(alice, workflowId=wid, status="Completed", trigger="api")
    assert sum_points(t["daily"], "started") == sum(
        e["status"] == "Completed" and e["trigger"] == "api" for e in execs), t


def test_trends_today_in_the_callers_zone(api_server):
    """A user's own trends (no orgId): only the workflows they own or
    collaborate on; today's date in the zone is the period key."""
    dana = wh.register_and_login(api_server, "Dana Trends")
    wf = create_wf(dana, SHAPE)
    done = [wait_exec(dana, wf["id"], execute(dana, wf["id"], input=body)) for body in (SUCCEEDS, SUCCEEDS, {})]
    zone = zoneinfo.ZoneInfo("Asia/Tokyo")
    t = trends(dana, timeZone="Asia/Tokyo")
    assert t["scope"] == "visible" and t["timeZone"] == "Asia/Tokyo" and n(t, "workflows") == 1, t
    assert sum_points(t["daily"], "started") == 3, t
    assert (sum_points(t["daily"], "completed"), sum_points(t["daily"], "failed")) == (2, 1), t
    want = {local_day(e["createdAt"], zone) for e in done}
    assert {p["period"] for p in t["daily"]} == want, t["daily"]
    # A whole-hour zone: each execution's day is its local creation day,
    # today's (unless the test ran across local midnight).
    now = datetime.datetime.now(zone)
    if now.strftime("%H:%M") >= "00:02":
        assert want == {now.strftime("%Y-%m-%d")}, (want, now)
    for p in t["daily"]:
        assert ns_(p["start"]) / 1e9 == datetime.datetime.strptime(p["period"], "%Y-%m-%d").replace(
            tzinfo=zone).timestamp(), p


def test_trends_of_an_organization(olga_org, carol):
    olga, mel, org_id, execs = olga_org["olga"], olga_org["mel"], olga_org["org_id"], olga_org["executions"]
    t = trends(olga, orgId=org_id, timeZone="Europe/Berlin")
    assert t["scope"] == f"organization:{org_id}", t
    assert n(t, "workflows") == 1, t
    assert sum_points(t["daily"], "started") == len(execs), t
    assert sum_points(t["daily"], "failed") == sum(e["status"] == "Failed" for e in execs), t
    assert {p["period"] for p in t["daily"]} == {local_day(e["createdAt"], BERLIN) for e in execs}, t
    assert_error(mel.rest.get(f"/analytics/workflow-executions?orgId={org_id}"), 403, PERMISSION_DENIED)
    assert_error(carol.rest.get(f"/analytics/workflow-executions?orgId={org_id}"), 404, NOT_FOUND)


@pytest.mark.parametrize("params, fragment", [
    ({"timeZone": "Mars/Olympus_Mons"}, "Mars/Olympus_Mons"),
    ({"timeZone": "Europe/Berlin", "status": "Running"}, "Running"),
    ({"status": "bogus"}, "bogus"),
    ({"trigger": "carrier-pigeon"}, "carrier-pigeon"),
    ({"since": "2026-01-02T00:00:00Z", "until": "2026-01-01T00:00:00Z"}, "since"),
], ids=["zone", "unfinished-status", "unknown-status", "trigger", "empty-range"])
def test_trends_bad_arguments_are_400(alice, params, fragment):
    r = alice.rest.get("/analytics/workflow-executions?" + urllib.parse.urlencode(params))
    assert_error(r, 400, INVALID_ARGUMENT, fragment)


# ---------------------------------------------------------------------------
# Authorization
# ---------------------------------------------------------------------------


def test_strangers_get_404_and_their_trends_hold_only_their_own(alice, carol, history):
    wid, eid = history["wid"], history["executions"][0]["executionId"]
    for r in (carol.rest.get(f"/workflows/{wid}/stats"), carol.rest.get(f"/workflows/{wid}/insights"),
              carol.rest.get(f"/executions/{eid}/prediction"), carol.rest.get(f"/workflows/{wid}/budget"),
              carol.rest.put(f"/workflows/{wid}/budget", {"monthlyLimitUsd": 5}),
              carol.rest.delete(f"/workflows/{wid}/budget"),
              carol.rest.get(f"/analytics/workflow-executions?workflowId={wid}")):
        assert_error(r, 404, NOT_FOUND)
    wf = create_wf(carol, SHAPE)
    wait_exec(carol, wf["id"], execute(carol, wf["id"], input=SUCCEEDS))
    t = trends(carol)
    assert t["scope"] == "visible" and n(t, "workflows") == 1, t
    assert sum_points(t["daily"], "started") == 1, t


def test_a_viewer_reads_but_cannot_set_a_budget(bob, history):
    wid = history["wid"]
    s = stats(bob, wid, window="day")
    assert n(s, "finished") == len(history["executions"]), s
    assert get_json(bob, f"/workflows/{wid}/insights")["workflowId"] == wid
    eid = history["executions"][0]["executionId"]
    assert get_json(bob, f"/executions/{eid}/prediction")["executionId"] == eid
    t = trends(bob, workflowId=wid)
    assert sum_points(t["daily"], "started") == len(history["executions"]), t
    assert_error(bob.rest.put(f"/workflows/{wid}/budget", {"monthlyLimitUsd": 5}), 403, PERMISSION_DENIED)
    assert_error(bob.rest.delete(f"/workflows/{wid}/budget"), 403, PERMISSION_DENIED)


# ---------------------------------------------------------------------------
# Insights and predictions
# ---------------------------------------------------------------------------


def test_insights(alice, history):
    execs = history["executions"]
    ins = get_json(alice, f"/workflows/{history['wid']}/insights")
    assert ins["workflowId"] == history["wid"], ins
    completed = [e for e in execs if e["status"] == "Completed"]
    newest = max(e["workflowVersion"] for e in execs)
    newest_done = [e for e in completed if e["workflowVersion"] == newest]
    sample = newest_done if len(newest_done) >= 10 else completed
    nr = ins["nextRun"]
    assert n(nr, "sampleSize") == len(sample) == 10, (nr, len(sample))
    low, predicted, high = dur_ms(nr.get("low")), dur_ms(nr.get("predicted")), dur_ms(nr.get("high"))
    assert 0 < low <= predicted <= high, nr
    durations = sorted(duration_ms(e) for e in sample)
    bound = 1 / 128
    assert_close_ms(predicted, nearest_rank(durations, 0.5), bound, "predicted")
    k = len(durations)
    j, kk = max(1, math.floor(0.1 * (k + 1))), min(k, math.ceil(0.9 * (k + 1)))
    assert_close_ms(low, durations[j - 1], bound, "low")
    assert_close_ms(high, durations[kk - 1], bound, "high")
    assert nr["confidence"] == pytest.approx((kk - j) / (k + 1), abs=1e-12), nr

    want = expected_tasks(execs)
    flaky = {f["taskKey"]: f for f in ins["flakyTasks"]}
    assert set(flaky) == {k for k, w in want.items() if w["flaky"] >= 2} == {"call"}, ins["flakyTasks"]
    call = flaky["call"]
    assert (n(call, "runs"), n(call, "flakyRuns")) == (want["call"]["runs"], want["call"]["flaky"]), call
    assert call["flakyRate"] == pytest.approx(want["call"]["flaky"] / want["call"]["runs"], abs=1e-12), call
    assert 0 < call["confidence"] < call["flakyRate"], call
    # The flaky runs' last error (a 500 from /flaky) is listed with its count.
    retried_msgs = [t["error"] for e in execs for t in e["tasks"]
                    if t["taskKey"] == "call" and t["status"] == "Completed" and t["attempt"] > 1]
    assert len(retried_msgs) == 4 and len(set(retried_msgs)) == 1 and "500" in retried_msgs[0], retried_msgs
    errors = {x["message"]: n(x, "count") for x in call["errors"]}
    assert errors.get(retried_msgs[0]) == 4, call["errors"]

    suggested = {s["taskKey"]: s for s in ins["suggestions"]}
    assert set(suggested) == {k for k, w in want.items() if w["runs"] >= 10} == {"call", "after"}, ins["suggestions"]
    for key, s in suggested.items():
        assert n(s, "sampleSize") == want[key]["runs"], s
        assert dur_ms(s.get("observedMax")) == max(want[key]["durations"]), s
        assert dur_ms(s["suggestedTimeout"]) >= 1000, s
    assert suggested["call"]["currentMaxAttempts"] == 3 and "attemptFailureRate" in suggested["call"], suggested
    assert ins.get("bottleneck", {}).get("taskKey") == "call", ins.get("bottleneck")


def test_prediction_of_a_finished_and_an_unknown_execution(alice, history):
    for e in history["executions"][:3]:
        p = get_json(alice, f"/executions/{e['executionId']}/prediction")
        assert p["executionId"] == e["executionId"] and p["status"] == e["status"], p
        assert p["confidence"] == 1, p
        assert ns_(p["predictedFinish"]) == ns_(e["completedAt"]) == ns_(p["finishLow"]) == ns_(p["finishHigh"]), (p, e)
        assert ns_(p["startedAt"]) == ns_(e["createdAt"]), (p, e)
        assert dur_ms(p["elapsed"]) == duration_ms(e), (p, e)
    assert_error(alice.rest.get("/executions/exe_01NOSUCHEXECUTION0000000000/prediction"), 404, NOT_FOUND)


# ---------------------------------------------------------------------------
# Budgets
# ---------------------------------------------------------------------------


def test_workflow_budget_set_get_delete(alice, history):
    wid = history["wid"]
    path = f"/workflows/{wid}/budget"
    assert_error(alice.rest.get(path), 404, NOT_FOUND)
    r = alice.rest.put(path, {"monthlyLimitUsd": 50, "timeZone": "Europe/Berlin"})
    assert r.status == 200, r
    b = r.json
    month = datetime.datetime.now(BERLIN).strftime("%Y-%m")
    assert (b["scope"], b["scopeId"], b["monthlyLimitUsd"], b["timeZone"]) == ("workflow", wid, 50, "Europe/Berlin"), b
    spent = sum(e["cost"] for e in history["executions"])
    if not near_month_change(BERLIN):
        assert b["month"] == month, b
        assert b["spentUsd"] == pytest.approx(spent, abs=1e-9), (b, spent)
        assert b["forecastUsd"] >= b["spentUsd"] and b["status"] == "ok", b
    got = alice.rest.get(path)
    assert got.status == 200, got
    g = got.json
    assert {k: g[k] for k in ("scope", "scopeId", "monthlyLimitUsd", "timeZone", "month")} == \
        {k: b[k] for k in ("scope", "scopeId", "monthlyLimitUsd", "timeZone", "month")}, (g, b)
    if not near_month_change(BERLIN):
        assert g["spentUsd"] == pytest.approx(spent, abs=1e-9), g
    # Insights carry it.
    assert get_json(alice, f"/workflows/{wid}/insights").get("budget", {}).get("monthlyLimitUsd") == 50
    # A new limit replaces the old one.
    r = alice.rest.put(path, {"monthlyLimitUsd": 75.5, "timeZone": "America/New_York"})
    assert r.status == 200 and r.json["monthlyLimitUsd"] == 75.5 and r.json["timeZone"] == "America/New_York", r
    r = alice.rest.delete(path)
    assert r.status == 204, r
    assert_error(alice.rest.get(path), 404, NOT_FOUND)
    assert_error(alice.rest.delete(path), 404, NOT_FOUND)


@pytest.mark.parametrize("body, fragment", [
    ({"monthlyLimitUsd": 0}, "monthly_limit_usd"),
    ({"monthlyLimitUsd": -1}, "monthly_limit_usd"),
    ({"monthlyLimitUsd": 1e9 * 1.000001}, "monthly_limit_usd"),
    ({}, "monthly_limit_usd"),
    ({"monthlyLimitUsd": 10, "timeZone": "Mars/Olympus_Mons"}, "Mars/Olympus_Mons"),
], ids=["zero", "negative", "too-large", "missing", "zone"])
def test_invalid_budgets_are_400(alice, history, body, fragment):
    wid = history["wid"]
    assert_error(alice.rest.put(f"/workflows/{wid}/budget", body), 400, INVALID_ARGUMENT, fragment)
    assert_error(alice.rest.get(f"/workflows/{wid}/budget"), 404, NOT_FOUND)


@pytest.fixture(scope="module")
def olga_org(api_server):
    """olga, admin of her own organization with one workflow and three
    finished executions; mel, a plain member of it."""
    olga = wh.register_and_login(api_server, "Olga Admin")
    mel = wh.register_and_login(api_server, "Mel Member")
    org_id = wh.own_org_id(api_server, olga.token)
    org = olga.rest.get(f"/orgs/{org_id}")
    assert org.status == 200, org
    wh.invite_and_accept(api_server, olga.token, mel.token, org_id)
    wf = create_wf(olga, SHAPE)
    execs = [wait_exec(olga, wf["id"], execute(olga, wf["id"], input=body)) for body in (SUCCEEDS, {}, SUCCEEDS)]
    return {"olga": olga, "mel": mel, "org_id": org_id, "org_name": org.json["name"], "wf": wf, "executions": execs}


def budget_notifications(user) -> list:
    r = user.rest.get("/notifications")
    assert r.status == 200, r
    return [x for x in r.json.get("notifications", []) if x["event"].startswith("budget.")]


def test_organization_budget_roles_and_in_app_alert(olga_org, carol):
    olga, mel, org_id = olga_org["olga"], olga_org["mel"], olga_org["org_id"]
    path = f"/orgs/{org_id}/budget"
    assert_error(mel.rest.put(path, {"monthlyLimitUsd": 1e-9}), 403, PERMISSION_DENIED)
    assert_error(carol.rest.put(path, {"monthlyLimitUsd": 1e-9}), 404, NOT_FOUND)
    assert_error(olga.rest.put(path, {"monthlyLimitUsd": 0}), 400, INVALID_ARGUMENT)
    r = olga.rest.put(path, {"monthlyLimitUsd": 1e-9, "timeZone": "Europe/Berlin"})
    assert r.status == 200, r
    b = r.json
    assert (b["scope"], b["scopeId"], b["monthlyLimitUsd"]) == ("organization", org_id, 1e-9), b
    spent = sum(e["cost"] for e in olga_org["executions"])
    if not near_month_change(BERLIN):
        assert b["spentUsd"] == pytest.approx(spent, abs=1e-9) and b["status"] == "over", (b, spent)
    # Members read it; strangers do not see it.
    got = mel.rest.get(path)
    assert got.status == 200 and got.json["scopeId"] == org_id, got
    assert_error(carol.rest.get(path), 404, NOT_FOUND)
    # The monitor (every second here) tells each admin, once, in-app.
    [alert] = wh.wait_until(lambda: budget_notifications(olga) or None, 10, message="olga's budget notification")
    assert alert["event"] == "budget.exceeded", alert
    assert olga_org["org_name"] in alert["title"], alert
    time.sleep(2.5)
    assert len(budget_notifications(olga)) == 1, budget_notifications(olga)
    assert budget_notifications(mel) == [], "a plain member is not told"
    assert_error(mel.rest.delete(path), 403, PERMISSION_DENIED)
    assert olga.rest.delete(path).status == 204
    assert_error(olga.rest.get(path), 404, NOT_FOUND)


def test_workflow_budget_exceeded_is_delivered_once(alice):
    sink = ns.HookSink()
    try:
        wf = create_wf(alice, SHAPE, name=f"budget alert {uid()}")
        wid = wf["id"]
        r = alice.rest.post(f"/workflows/{wid}/subscriptions",
                            {"events": ["budget.exceeded"], "notifyVia": "webhook", "destination": sink.url("/budget")})
        assert r.status == 201, r
        sid = r.json["id"]
        done = wait_exec(alice, wid, execute(alice, wid, input=SUCCEEDS))
        assert done["status"] == "Completed" and done["cost"] > 1e-9, done
        r = alice.rest.put(f"/workflows/{wid}/budget", {"monthlyLimitUsd": 1e-9, "timeZone": "Europe/Berlin"})
        assert r.status == 200 and r.json["status"] == "over", r
        [rec] = sink.wait(1, path="/budget", timeout=10, why="(budget.exceeded)")
        assert rec["headers"].get("x-weft-event") == "budget.exceeded", rec["headers"]
        body = rec["json"]
        assert body["event"] == "budget.exceeded" and body["subscriptionId"] == sid, body
        assert body["data"]["workflowId"] == wid and body["data"]["status"] == "over", body
        time.sleep(3)  # three more checks of the budget: nothing more is sent
        assert len(sink.posts()) == 1, [p["json"] for p in sink.posts()]
        r = alice.rest.get(f"/workflows/{wid}/subscriptions/{sid}/deliveries")
        assert r.status == 200, r
        deliveries = r.json["deliveries"]
        assert len(deliveries) == 1 and deliveries[0]["event"] == "budget.exceeded", deliveries
        assert deliveries[0]["state"] == "delivered", deliveries
    finally:
        sink.close()


# ---------------------------------------------------------------------------
# Metrics
# ---------------------------------------------------------------------------


def budget_series(m: wh.Metrics, metric: str, name: str) -> list:
    """Series of a workflow budget gauge (`name` is a label here, which
    Metrics.select cannot take as a keyword)."""
    return [s for s in m.samples if s.name == metric and s.labels == {"scope": "workflow", "name": name}]


def test_metrics(api_server, alice, history):
    wf = create_wf(alice, SHAPE, name=f"metered {uid()}")
    r = alice.rest.put(f"/workflows/{wf['id']}/budget", {"monthlyLimitUsd": 7.25})
    assert r.status == 200, r
    stats(alice, history["wid"])

    def gauge():
        m = wh.fetch_metrics(api_server)
        return m if budget_series(m, "weft_budget_limit_dollars", wf["name"]) else None

    m = wh.wait_until(gauge, 5, message="the budget gauge (the monitor checks every second)")
    [limit] = budget_series(m, "weft_budget_limit_dollars", wf["name"])
    assert limit.value == 7.25, limit
    assert budget_series(m, "weft_budget_spend_dollars", wf["name"]), "spend gauge"
    assert budget_series(m, "weft_budget_forecast_dollars", wf["name"]), "forecast gauge"
    assert m.total("weft_analytics_query_duration_seconds_count", query="stats") > 0
    assert m.total("weft_rollup_executions_total") >= len(history["executions"])
    name = history["wf"]["name"]
    assert m.total("weft_execution_duration_seconds_count", workflow=name) == len(history["executions"])
    # A deleted budget's gauges go away.
    assert alice.rest.delete(f"/workflows/{wf['id']}/budget").status == 204
    wh.wait_until(lambda: not budget_series(wh.fetch_metrics(api_server), "weft_budget_limit_dollars", wf["name"]), 5,
                  message="the deleted budget's gauge to go")


# ---------------------------------------------------------------------------
# Rebuild (on a stopped server's data directory) and retention
# ---------------------------------------------------------------------------


COMPARED = ("finished", "completed", "failed", "cancelled", "timedOut", "totalExecutions", "p50Duration", "p95Duration",
            "p99Duration", "maxDuration", "meanDuration", "p50QueueWait", "p95QueueWait", "p99QueueWait", "byTrigger",
            "lastExecutionAt", "successRate", "retryRate")


def test_rebuild_recomputes_the_same_rollups(tmp_path, protos, target):
    binary = wh.weft_bin()
    data, logs = tmp_path / "data", tmp_path / "logs"
    started = []

    def start(tag):
        srv = wh.WeftServer(binary, data, logs, args=[*wh.API_SERVER_ARGS, "--execution-retention-days", "30"],
                            name=f"rebuild-{tag}")
        started.append(srv)
        srv.start(timeout=30)
        return srv

    try:
        srv = start("before")
        user = wh.register_and_login(srv, "Rita Rebuild")
        wf = create_wf(user, CALL_THEN_AFTER)
        wid = wf["id"]
        execs = run_all(user, wid, [call_input(target, "ok"), call_input(target, "ok"), call_input(target, "flaky", 1),
                                    call_input(target, "down"), call_input(target, "missing")])
        assert sorted(e["status"] for e in execs) == ["Completed"] * 3 + ["Failed"] * 2, execs
        before = stats(user, wid, window="day")
        assert n(before, "finished") == 5, before
        wh.finish_servers([srv])

        out = subprocess.run([str(binary), "analytics", "rebuild", "--data-dir", str(data)], capture_output=True,
                             text=True, timeout=60)
        assert out.returncode == 0, (out.stdout, out.stderr)
        assert "from 5 finished executions" in out.stdout, out.stdout

        srv = start("after")
        again = wh.RestClient(srv).post("/users/login", {"email": user.email, "password": user.password})
        assert again.status == 200, again
        user = wh.ApiUser(user.id, user.email, user.password, user.name, again.json["token"], user.user,
                          wh.RestClient(srv, again.json["token"]))
        after = stats(user, wid, window="day")
        assert {k: after.get(k) for k in COMPARED} == {k: before.get(k) for k in COMPARED}, (before, after)
        assert after["totalCost"] == pytest.approx(before["totalCost"], rel=1e-12), (before, after)
        assert after["totalCost"] == pytest.approx(sum(e["cost"] for e in execs), abs=1e-9)
        strip = lambda ts: [{k: v for k, v in t.items() if k not in ("cost", "costShare")} for t in ts]  # noqa: E731
        assert strip(after["tasks"]) == strip(before["tasks"]), (before["tasks"], after["tasks"])
        assert after["versions"] == before["versions"], (before["versions"], after["versions"])
        # Retention (30 days) kept every recent execution.
        for e in execs:
            assert get_exec(user, wid, e["executionId"])["status"] == e["status"]
        m = wh.fetch_metrics(srv)
        purged = m.select("weft_executions_purged_total")
        assert [s.value for s in purged] == [0], purged
        assert m.total("weft_rollup_executions_total") == 0  # nothing finished since the start
    finally:
        wh.finish_servers(started)
