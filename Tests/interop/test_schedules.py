"""Cron schedules and backfills (Step 8) on a real `weft serve`: the
ScheduleService over REST (HTTP/1.1 JSON) and gRPC (grpcio stubs from
proto/weft/v1/schedules.proto).

* CRUD: create / get / list / update (full replacement) / delete / pause /
  resume, the defaults, nextRunAt and nextRunTimes; every validation error
  class (a bad cron field named in the message, an unknown time zone, bad
  policy names, a jitter of an hour or more, 100 schedules per workflow);
  roles (editor writes, viewer reads and gets 403, a stranger 404, no
  token 401); the same over gRPC.
* Preview: DST in America/New_York and Europe/Berlin (a skipped local time
  fires once at the first instant after the gap, a repeated one once, at its
  first occurrence, interval schedules skip the repeated hour), Feb 29, the
  day rules (L, L-3, 15W, LW, 5L, FRI#3, the Vixie dom/dow OR), names,
  steps, macros and their normalized form, startAt/endAt, count bounds.
* Live firing: an every-second schedule starts executions with trigger
  "schedule", triggerId, a whole-second scheduledTime (also in the input),
  the schedule's idempotency key, one per tick with no tick missing; pause
  stops it (nothing starts over 3 s), resume restarts it with no tick of the
  pause run.
* Overlap policies with a slow workflow: skip (one execution at a time,
  skippedCount and lastSkipReason "overlap"), allow (several at once),
  buffer_one (buffered, never overlapping), cancel_other / terminate_other
  (the earlier one Cancelled, its error naming the schedule).
* Quotas: a tick refused by concurrent_executions / executions_per_day is
  skipped with reason "concurrency_limit" / "quota".
* Backfills: every tick of a range once (repeat and overlap start nothing
  twice), maxConcurrent respected, cancel, bounds.
* Metrics: weft_schedule_ticks_fired_total, weft_schedule_ticks_skipped_total
  {reason}, weft_schedule_fire_lag_seconds, weft_schedules{state},
  weft_schedule_backfill_ticks_total{outcome}, weft_schedule_backfills_running,
  weft_trigger_executions_total{trigger} -- as exact deltas (the module's tests
  run one after another and each deletes its schedules at the end).

Conditions are awaited with wh.wait_until; the only sleeps are windows in
which something must *not* happen (a paused schedule firing, a cancelled
backfill going on).  REST JSON is proto3 JSON: int64 counters arrive as
strings and a field holding its default value may be left out.
"""

from __future__ import annotations

import calendar
import datetime as dt
import re
import time
import uuid
from zoneinfo import ZoneInfo

import grpc
import pytest
from google.protobuf import duration_pb2, json_format, timestamp_pb2

import weft_helpers as wh

TIMEOUT = 10
TERMINAL = {"Completed", "Failed", "Cancelled", "TimedOut"}
ERROR_KEYS = {"code", "message", "details"}
INVALID_ARGUMENT, NOT_FOUND, PERMISSION_DENIED, FAILED_PRECONDITION, UNAUTHENTICATED = 3, 5, 7, 9, 16
EVERY_SECOND = "* * * * * *"
EVERY_MINUTE = "0 * * * * *"
NIGHTLY = "0 0 * * *"
NOOP = [{"key": "a", "name": "A", "action": "noop"}]
SCHEDULE_ID_RE = re.compile(r"sch_[0-9A-Za-z_-]+")
BACKFILL_ID_RE = re.compile(r"bkf_[0-9A-Za-z_-]+")


def delay_wf(duration: str) -> list:
    return [{"key": "wait", "name": "Wait", "action": "delay", "config": {"duration": duration}}]


# ---------------------------------------------------------------------------
# Users, workflows, helpers
# ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def alice(api_server):
    return wh.register_and_login(api_server, "Alice Schedules")


@pytest.fixture(scope="module")
def bob(api_server):
    """A viewer of alice's shared workflow."""
    return wh.register_and_login(api_server, "Bob Viewer")


@pytest.fixture(scope="module")
def dave(api_server):
    """An editor of alice's shared workflow."""
    return wh.register_and_login(api_server, "Dave Editor")


@pytest.fixture(scope="module")
def carol(api_server):
    """No role anywhere near alice."""
    return wh.register_and_login(api_server, "Carol Stranger")


@pytest.fixture(scope="module")
def shared_wf(api_server, alice, bob, dave):
    wf = create_wf(alice, NOOP, "shared schedules target")
    for user, role in ((bob, "viewer"), (dave, "editor")):
        wh.invite_and_accept(api_server, alice.token, user.token, wf["orgId"])  # collaborators must be members
        r = alice.rest.post(f"/workflows/{wf['id']}/collaborators", {"userId": user.id, "role": role})
        assert r.status == 201, r
    return wf


class Tidy:
    """Schedules to delete and workflows whose running executions to cancel
    at the end of a test (so no schedule of one test fires into the next)."""

    def __init__(self):
        self.schedules: list = []  # (user, wid, sid)
        self.workflows: list = []  # (user, wid)

    def schedule(self, user, wid, sid):
        self.schedules.append((user, wid, sid))
        return sid

    def workflow(self, user, wid):
        self.workflows.append((user, wid))
        return wid

    def run(self):
        for user, wid, sid in self.schedules:
            user.rest.post(f"/workflows/{wid}/schedules/{sid}/pause", {})
            user.rest.delete(f"/workflows/{wid}/schedules/{sid}")
        for user, wid in self.workflows:
            cancel_running(user, wid)


@pytest.fixture
def tidy():
    t = Tidy()
    yield t
    t.run()


def uid() -> str:
    return uuid.uuid4().hex[:8]


def assert_error(r: wh.RestResponse, status: int, code: int, *fragments: str) -> dict:
    assert r.status == status, r
    assert (r.header("content-type") or "").startswith("application/json"), r.headers
    body = r.json
    assert isinstance(body, dict) and set(body) <= ERROR_KEYS, body
    assert body.get("code") == code, body
    assert isinstance(body.get("message"), str) and body["message"], body
    for fragment in fragments:
        assert fragment in body["message"], (fragment, body)
    return body


def create_wf(user: wh.ApiUser, tasks, name: str | None = None) -> dict:
    r = user.rest.post("/workflows", {"name": name or f"schedules {uid()}", "tasks": tasks})
    assert r.status == 201, r
    return r.json


def spath(wid: str, sid: str = "", rest: str = "") -> str:
    return f"/workflows/{wid}/schedules" + (f"/{sid}" if sid else "") + rest


def create_schedule(user: wh.ApiUser, wid: str, tidy: Tidy | None = None, **body) -> dict:
    r = user.rest.post(spath(wid), body)
    assert r.status == 201, r
    s = r.json
    if tidy is not None:
        tidy.schedule(user, wid, s["id"])
        tidy.workflow(user, wid)
    return s


def delete_schedule(user: wh.ApiUser, wid: str, sid: str) -> None:
    """DELETE a schedule: 204 with no body (docs/SCHEDULES.md, like DeleteWorkflow)."""
    r = user.rest.delete(spath(wid, sid))
    assert (r.status, r.body) == (204, b""), r


def get_schedule(user: wh.ApiUser, wid: str, sid: str) -> dict:
    r = user.rest.get(spath(wid, sid))
    assert r.status == 200, r
    return r.json


def list_schedules(user: wh.ApiUser, wid: str) -> list:
    return wh.all_pages(user.rest, spath(wid), "schedules")


def pause(user, wid, sid, note: str = "") -> dict:
    r = user.rest.post(spath(wid, sid, "/pause"), {"note": note} if note else {})
    assert r.status == 200, r
    assert r.json.get("paused") is True, r.json
    return r.json


def resume(user, wid, sid) -> dict:
    r = user.rest.post(spath(wid, sid, "/resume"), {})
    assert r.status == 200, r
    assert not r.json.get("paused", False), r.json
    return r.json


def count(obj: dict, key: str) -> int:
    """An int64 counter of proto3 JSON (a string; left out when 0)."""
    v = obj.get(key, "0")
    assert isinstance(v, (str, int)), (key, obj)
    return int(v)


def executions(user: wh.ApiUser, wid: str, **params) -> list:
    return wh.all_pages(user.rest, f"/workflows/{wid}/executions", "executions", pageSize=1000, **params)


def running(user, wid) -> list:
    return executions(user, wid, status="Running")


def cancel_running(user, wid) -> None:
    for e in running(user, wid):
        r = user.rest.post(f"/workflows/{wid}/executions/{e['executionId']}/cancel", {"reason": "test cleanup"})
        assert r.status == 200 or (r.status == 400 and r.json.get("code") == FAILED_PRECONDITION), r


def get_exec(user, wid, eid) -> dict:
    r = user.rest.get(f"/workflows/{wid}/executions/{eid}")
    assert r.status == 200, r
    return r.json


def all_terminal(user, wid, timeout: float = TIMEOUT) -> list:
    def check():
        listed = executions(user, wid)
        return listed if all(e["status"] in TERMINAL for e in listed) else None

    return wh.wait_until(check, timeout, interval=0.1, message=f"every execution of {wid} to end")


def ns(text: str) -> int:
    return wh.rfc3339_nanos(text)


def secs(text: str) -> float:
    return ns(text) / 1e9


def utc(text: str) -> dt.datetime:
    n = ns(text)
    return dt.datetime.fromtimestamp(n // 10**9, dt.timezone.utc) + dt.timedelta(microseconds=(n % 10**9) // 1000)


def iso(t: float) -> str:
    """RFC 3339 UTC with whole seconds (t is whole) or milliseconds."""
    d = dt.datetime.fromtimestamp(t, dt.timezone.utc)
    if float(t).is_integer():
        return d.strftime("%Y-%m-%dT%H:%M:%SZ")
    return d.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def tick_of(e: dict) -> int:
    """The execution's scheduledTime in whole seconds (asserting it is whole)."""
    assert e.get("scheduledTime"), e
    n = ns(e["scheduledTime"])
    assert n % 10**9 == 0, f"scheduledTime is not a whole second: {e['scheduledTime']}"
    return n // 10**9


def check_schedule_execution(e: dict, sid: str, base_input: dict | None = None) -> int:
    """The fields every schedule-started execution carries; returns its tick."""
    tick = tick_of(e)
    assert e.get("trigger") == "schedule", e
    assert e.get("triggerId") == sid, e
    assert e.get("idempotencyKey") == f"schedule:{sid}:{tick * 1000}", e
    inp = e.get("input", {})
    assert set(inp) == set(base_input or {}) | {"scheduledTime"}, inp
    assert {k: v for k, v in inp.items() if k != "scheduledTime"} == (base_input or {}), inp
    assert ns(inp["scheduledTime"]) == tick * 10**9, (inp, e["scheduledTime"])
    return tick


def metrics(server):
    return wh.fetch_metrics(server)


def metric(server, name: str, **labels) -> float:
    return metrics(server).total(name, **labels)


def settled(server):
    """/metrics once the schedules gauge has caught up with earlier changes
    (it is recounted at most once a second after a change)."""
    time.sleep(1.3)
    return metrics(server)


def schedules_gauge(server, active: float, paused: float, timeout: float = 5) -> None:
    """weft_schedules{state} reaches (active, paused) -- soon: the server
    recounts after each change, off the request path."""
    def check():
        m = metrics(server)
        got = (m.total("weft_schedules", state="active"), m.total("weft_schedules", state="paused"))
        return got == (active, paused) or None

    wh.wait_until(check, timeout, interval=0.05, message=f"weft_schedules to be active={active} paused={paused}")


# ---------------------------------------------------------------------------
# CRUD
# ---------------------------------------------------------------------------


def test_create_get_list_update_delete(api_server, alice, bob, shared_wf, tidy):
    wid = shared_wf["id"]
    before = time.time()
    s = create_schedule(alice, wid, tidy, cron=NIGHTLY, timezone="Europe/Berlin", input={"region": "eu", "n": 1},
                        description="nightly export")
    sid = s["id"]
    assert SCHEDULE_ID_RE.fullmatch(sid), s
    assert s["workflowId"] == wid and s["cron"] == NIGHTLY and s["timezone"] == "Europe/Berlin", s
    assert s["input"] == {"region": "eu", "n": 1} and s["description"] == "nightly export", s
    assert not s.get("paused", False) and not s.get("pausedNote"), s
    # Defaults: overlap skip, catch-up run_once with a 1 h window, no jitter.
    assert s.get("overlapPolicy") == "skip" and s.get("catchupPolicy") == "run_once", s
    assert s.get("catchupWindow") == "3600s", s
    assert s.get("jitter", "0s") in ("0s", "0.000s"), s
    assert s["createdBy"] == alice.id, s
    assert before - 2 <= secs(s["createdAt"]) <= time.time() + 2, s
    assert ns(s["updatedAt"]) >= ns(s["createdAt"]), s
    for key in ("firedCount", "missedCount", "skippedCount"):
        assert count(s, key) == 0, (key, s)
    for key in ("lastFireAt", "lastExecutionId", "lastSkipReason", "startAt", "endAt"):
        assert not s.get(key), (key, s)
    assert not s.get("buffered", False), s
    # The next five ticks: midnight in Berlin (whatever its offset that day), one a day.
    nexts = s["nextRunTimes"]
    assert len(nexts) == 5 and ns(s["nextRunAt"]) == ns(nexts[0]), s
    berlin = ZoneInfo("Europe/Berlin")
    local = [utc(t).astimezone(berlin) for t in nexts]
    assert all((d.hour, d.minute, d.second) == (0, 0, 0) for d in local), local
    assert all((b.date() - a.date()).days == 1 for a, b in zip(local, local[1:])), local
    assert before < secs(nexts[0]) <= time.time() + 86400 + 3600, (before, nexts)

    same = get_schedule(alice, wid, sid)
    stable = lambda d: {k: v for k, v in d.items() if k not in ("nextRunAt", "nextRunTimes")}  # noqa: E731
    assert stable(same) == stable(s), (same, s)
    assert sid in [x["id"] for x in list_schedules(alice, wid)]
    assert sid in [x["id"] for x in list_schedules(bob, wid)], "a viewer lists the schedules"
    assert get_schedule(bob, wid, sid)["cron"] == NIGHTLY

    # Update replaces every setting: what the body leaves out goes back to its default.
    time.sleep(0.01)
    t_update = time.time()
    r = alice.rest.put(spath(wid, sid), {"cron": "*/5 * * * *", "overlapPolicy": "allow"})
    assert r.status == 200, r
    u = r.json
    assert u["id"] == sid and u["cron"] == "*/5 * * * *" and u.get("timezone") == "UTC", u
    assert not u.get("input") and not u.get("description"), u
    assert u.get("overlapPolicy") == "allow" and u.get("catchupPolicy") == "run_once", u
    assert ns(u["createdAt"]) == ns(s["createdAt"]) and ns(u["updatedAt"]) > ns(s["updatedAt"]), (u, s)
    nxt = ns(u["nextRunAt"])
    assert nxt % (300 * 10**9) == 0 and t_update < nxt / 1e9 <= t_update + 301, u
    assert [ns(t) - nxt for t in u["nextRunTimes"]] == [i * 300 * 10**9 for i in range(5)], u
    assert get_schedule(alice, wid, sid)["cron"] == "*/5 * * * *"

    # A refused update changes nothing.
    assert_error(alice.rest.put(spath(wid, sid), {"cron": "61 * * * *"}), 400, INVALID_ARGUMENT, "minute")
    assert get_schedule(alice, wid, sid)["cron"] == "*/5 * * * *"
    assert_error(alice.rest.put(spath(wid, "sch_doesnotexist"), {"cron": NIGHTLY}), 404, NOT_FOUND)

    delete_schedule(alice, wid, sid)
    assert_error(alice.rest.get(spath(wid, sid)), 404, NOT_FOUND)
    assert sid not in [x["id"] for x in list_schedules(alice, wid)]
    assert_error(alice.rest.delete(spath(wid, sid)), 404, NOT_FOUND)
    assert_error(alice.rest.post(spath(wid, sid, "/pause"), {}), 404, NOT_FOUND)


def test_pause_and_resume_fields(alice, shared_wf, tidy):
    wid = shared_wf["id"]
    s = create_schedule(alice, wid, tidy, cron=NIGHTLY)
    sid = s["id"]
    p = pause(alice, wid, s["id"], note="holiday freeze")
    assert p["pausedNote"] == "holiday freeze", p
    assert "nextRunAt" not in p and not p.get("nextRunTimes"), p
    assert get_schedule(alice, wid, sid).get("paused") is True
    before = time.time()
    r = resume(alice, wid, sid)
    assert not r.get("pausedNote"), r
    assert before < secs(r["nextRunAt"]) <= time.time() + 86400 + 1, r
    assert len(r["nextRunTimes"]) == 5, r
    # Created paused: no next run until resumed.
    q = create_schedule(alice, wid, tidy, cron=NIGHTLY, paused=True)
    assert q.get("paused") is True and "nextRunAt" not in q, q
    assert "nextRunAt" in resume(alice, wid, q["id"])


def test_jitter_and_window_round_trip(alice, shared_wf, tidy):
    wid = shared_wf["id"]
    s = create_schedule(alice, wid, tidy, cron=NIGHTLY, jitter="30s", catchupPolicy="run_all", catchupWindow="600s",
                        overlapPolicy="buffer_one", startAt="2030-01-01T00:00:00Z", endAt="2030-02-01T00:00:00Z")
    assert s["jitter"] == "30s" and s["catchupWindow"] == "600s", s
    assert s["catchupPolicy"] == "run_all" and s["overlapPolicy"] == "buffer_one", s
    assert ns(s["startAt"]) == ns("2030-01-01T00:00:00Z") and ns(s["endAt"]) == ns("2030-02-01T00:00:00Z"), s
    # Ticks (before jitter) never before startAt: the first is 2030-01-01 00:00 UTC.
    assert ns(s["nextRunAt"]) == ns("2030-01-01T00:00:00Z"), s
    assert ns(s["nextRunTimes"][4]) == ns("2030-01-05T00:00:00Z"), s
    # Jitter just below an hour is allowed.
    assert create_schedule(alice, wid, tidy, cron=NIGHTLY, jitter="3599s")["jitter"] == "3599s"


CRON_ERRORS = [
    ("61 * * * *", ['minute field "61" is out of range 0-59']),
    ("0 24 * * *", ['hour field "24" is out of range 0-23']),
    ("* x * * *", ['hour field "x" is not a number']),
    ("* * *", ["cron expression must have 5", "6", "got 3"]),
    ("* * * * * * *", ["cron expression must have 5", "6", "got 7"]),
    ("*/0 * * * *", ['step must be at least 1 in minute field "*/0"']),
    ("60 * * * * *", ['field "60" is out of range 0-59']),
    ("0 0 32 * *", ['"32"']),
    ("0 0 0 * *", ['"0"']),
    ("0 0 * 13 *", ['"13"']),
    ("0 0 * FOO *", ['month field "FOO" is not a number or a month name (JAN-DEC)']),
    ("0 0 * * 8", ['"8"']),
    ("0 0 * * 5#6", ['"5#6"']),
    ("@sometimes", []),
    ("30-10 * * * *", ['range "30-10" in minute field runs backwards (30 > 10)']),
    ("0 0 30 2 *", ['"0 0 30 2 *" never fires']),
    ("0 0 31 4,6,9,11 *", ["never fires"]),
]


@pytest.mark.parametrize("cron, fragments", CRON_ERRORS, ids=[c for c, _ in CRON_ERRORS])
def test_bad_cron_names_the_field(alice, shared_wf, cron, fragments):
    wid = shared_wf["id"]
    before = len(list_schedules(alice, wid))
    err = assert_error(alice.rest.post(spath(wid), {"cron": cron}), 400, INVALID_ARGUMENT, *fragments)
    assert err["message"].startswith("cron: "), err
    check_preview_refuses(alice, cron, fragments)
    assert len(list_schedules(alice, wid)) == before, "nothing was created"


def check_preview_refuses(user, cron: str, fragments=()) -> None:
    """The preview parses with the same parser and refuses what create
    refuses (an expression that never fires included): the same 400."""
    r = user.rest.post("/schedules/preview", {"cron": cron})
    err = assert_error(r, 400, INVALID_ARGUMENT, *fragments)
    assert err["message"].startswith("cron: "), err


# The messages word for word, as docs/SCHEDULES.md lists them.
CRON_WORDING = [
    ("* * *", "cron: cron expression must have 5 fields (minute hour day-of-month month day-of-week) or 6 "
              "(with seconds first), got 3"),
    ("61 * * * *", 'cron: minute field "61" is out of range 0-59'),
    ("* x * * *", 'cron: hour field "x" is not a number'),
    ("0 0 * FOO *", 'cron: month field "FOO" is not a number or a month name (JAN-DEC)'),
    ("*/0 * * * *", 'cron: step must be at least 1 in minute field "*/0"'),
    ("30-10 * * * *", 'cron: range "30-10" in minute field runs backwards (30 > 10)'),
    ("0 0 30 2 *", 'cron: "0 0 30 2 *" never fires (e.g. February 30)'),
]


@pytest.mark.parametrize("cron, message", CRON_WORDING, ids=[c for c, _ in CRON_WORDING])
def test_cron_messages_word_for_word(alice, shared_wf, cron, message):
    err = assert_error(alice.rest.post(spath(shared_wf["id"]), {"cron": cron}), 400, INVALID_ARGUMENT)
    assert err["message"] == message, err
    check_preview_refuses(alice, cron, [message])


BAD_SETTINGS = [
    ({"cron": ""}, ["cron"]),
    ({"timezone": "Mars/Base"}, ['unknown time zone "Mars/Base"']),
    ({"timezone": "Europe/Nowhere"}, ['unknown time zone "Europe/Nowhere"']),
    ({"overlapPolicy": "sometimes"}, ["sometimes"]),
    ({"overlapPolicy": "SKIP "}, []),
    ({"catchupPolicy": "never"}, ["never"]),
    ({"jitter": "3600s"}, ["jitter"]),
    ({"jitter": "7200s"}, ["jitter"]),
    ({"jitter": "-5s"}, ["jitter"]),
]


@pytest.mark.parametrize("patch, fragments", BAD_SETTINGS, ids=[str(p) for p, _ in BAD_SETTINGS])
def test_bad_settings_are_400(alice, shared_wf, patch, fragments):
    wid = shared_wf["id"]
    before = len(list_schedules(alice, wid))
    assert_error(alice.rest.post(spath(wid), {"cron": NIGHTLY, **patch}), 400, INVALID_ARGUMENT, *fragments)
    assert len(list_schedules(alice, wid)) == before, "nothing was created"


def test_a_workflow_holds_at_most_100_schedules(alice):
    wf = create_wf(alice, NOOP)
    wid = wf["id"]
    try:
        for i in range(100):
            create_schedule(alice, wid, cron=NIGHTLY, paused=True, description=f"#{i}")
        assert_error(alice.rest.post(spath(wid), {"cron": NIGHTLY, "paused": True}), 400, FAILED_PRECONDITION)
        listed = list_schedules(alice, wid)
        assert len(listed) == 100 and len({s["id"] for s in listed}) == 100
        # Another workflow is not full.
        other = create_wf(alice, NOOP)
        s = create_schedule(alice, other["id"], cron=NIGHTLY, paused=True)
        delete_schedule(alice, other["id"], s["id"])
        # Deleting one makes room again.
        delete_schedule(alice, wid, listed[0]["id"])
        create_schedule(alice, wid, cron=NIGHTLY, paused=True)
    finally:
        for s in list_schedules(alice, wid):
            alice.rest.delete(spath(wid, s["id"]))


def test_roles(api_server, alice, bob, dave, carol, anon, shared_wf, tidy):
    wid = shared_wf["id"]
    s = create_schedule(alice, wid, tidy, cron=NIGHTLY, description="alice's")
    sid = s["id"]
    body = {"cron": "0 3 * * *"}
    backfill = {"startTime": "2026-01-01T00:00:00Z", "endTime": "2026-01-01T00:05:00Z"}
    writes = [
        ("POST", spath(wid), body),
        ("PUT", spath(wid, sid), body),
        ("DELETE", spath(wid, sid), None),
        ("POST", spath(wid, sid, "/pause"), {"note": "mine now"}),
        ("POST", spath(wid, sid, "/resume"), {}),
        ("POST", spath(wid, sid, "/backfills"), backfill),
    ]
    reads = [("GET", spath(wid), None), ("GET", spath(wid, sid), None)]
    for method, path, b in writes:
        assert_error(bob.rest.request(method, path, b), 403, PERMISSION_DENIED)
    for method, path, b in writes + reads:
        assert_error(carol.rest.request(method, path, b), 404, NOT_FOUND)
        assert_error(anon.request(method, path, b), 401, UNAUTHENTICATED)
    assert_error(anon.post("/schedules/preview", {"cron": NIGHTLY}), 401, UNAUTHENTICATED)
    # Nothing of that changed anything.
    now = get_schedule(alice, wid, sid)
    assert now["cron"] == NIGHTLY and not now.get("paused", False) and now["description"] == "alice's", now
    assert [x["id"] for x in list_schedules(alice, wid)].count(sid) == 1
    assert len(list_schedules(alice, wid)) == 1, "the refused creates created nothing"
    r = alice.rest.get(spath(wid, sid, "/backfills"))
    assert r.status == 200 and not r.json.get("backfills"), r
    # Reads for the viewer; writes for the editor; preview for anyone signed in.
    assert get_schedule(bob, wid, sid)["id"] == sid
    d = create_schedule(dave, wid, tidy, cron="0 4 * * *")
    assert d["createdBy"] == dave.id, d
    assert pause(dave, wid, sid)["paused"] is True
    resume(dave, wid, sid)
    r = dave.rest.put(spath(wid, sid), {"cron": "0 5 * * *", "description": "dave's now"})
    assert r.status == 200 and r.json["cron"] == "0 5 * * *", r
    delete_schedule(dave, wid, d["id"])
    r = carol.rest.post("/schedules/preview", {"cron": NIGHTLY, "count": 2})
    assert r.status == 200 and len(r.json["times"]) == 2, r
    # Unknown workflow: 404 for everyone.
    assert_error(alice.rest.post(spath("wf_doesnotexist"), body), 404, NOT_FOUND)


# ---------------------------------------------------------------------------
# Preview
# ---------------------------------------------------------------------------


def preview(user, **body) -> dict:
    r = user.rest.post("/schedules/preview", body)
    assert r.status == 200, r
    out = r.json
    assert len(out.get("times", [])) == len(out.get("localTimes", [])), out
    return out


def z(times) -> list:
    """Timestamps as canonical 'YYYY-MM-DDTHH:MM:SSZ' strings (exact to the second)."""
    out = []
    for t in times:
        n = ns(t)
        assert n % 10**9 == 0, t
        out.append(iso(n // 10**9))
    return out


DST_CASES = [
    # Spring forward in New York (2027-03-14 02:00 EST -> 03:00 EDT): 02:30
    # does not exist that day and fires once at 03:00 EDT.
    ("ny-spring", "30 2 * * *", "America/New_York", "2027-03-13T12:00:00Z", 3,
     ["2027-03-14T07:00:00Z", "2027-03-15T06:30:00Z", "2027-03-16T06:30:00Z"],
     ["2027-03-14T03:00:00-04:00", "2027-03-15T02:30:00-04:00", "2027-03-16T02:30:00-04:00"], "0 30 2 * * *"),
    # Fall back (2027-11-07 02:00 EDT -> 01:00 EST): 01:30 happens twice and fires at its first occurrence only.
    ("ny-fall", "30 1 * * *", "America/New_York", "2027-11-06T12:00:00Z", 3,
     ["2027-11-07T05:30:00Z", "2027-11-08T06:30:00Z", "2027-11-09T06:30:00Z"],
     ["2027-11-07T01:30:00-04:00", "2027-11-08T01:30:00-05:00", "2027-11-09T01:30:00-05:00"], "0 30 1 * * *"),
    # An interval schedule does not fire during the repeated hour's second pass.
    ("ny-fall-interval", "*/15 * * * *", "America/New_York", "2027-11-07T04:50:00Z", 6,
     ["2027-11-07T05:00:00Z", "2027-11-07T05:15:00Z", "2027-11-07T05:30:00Z", "2027-11-07T05:45:00Z",
      "2027-11-07T07:00:00Z", "2027-11-07T07:15:00Z"],
     ["2027-11-07T01:00:00-04:00", "2027-11-07T01:15:00-04:00", "2027-11-07T01:30:00-04:00",
      "2027-11-07T01:45:00-04:00", "2027-11-07T02:00:00-05:00", "2027-11-07T02:15:00-05:00"], None),
    # Hourly across the gap: 02:00 does not exist; the first instant after the gap (03:00 EDT) fires once.
    ("ny-spring-hourly", "0 * * * *", "America/New_York", "2027-03-14T05:30:00Z", 3,
     ["2027-03-14T06:00:00Z", "2027-03-14T07:00:00Z", "2027-03-14T08:00:00Z"],
     ["2027-03-14T01:00:00-05:00", "2027-03-14T03:00:00-04:00", "2027-03-14T04:00:00-04:00"], "0 0 * * * *"),
    # Berlin: spring forward 2027-03-28 02:00 CET -> 03:00 CEST.
    ("berlin-spring", "30 2 * * *", "Europe/Berlin", "2027-03-27T12:00:00Z", 2,
     ["2027-03-28T01:00:00Z", "2027-03-29T00:30:00Z"],
     ["2027-03-28T03:00:00+02:00", "2027-03-29T02:30:00+02:00"], "0 30 2 * * *"),
    # Berlin: fall back 2027-10-31 03:00 CEST -> 02:00 CET; 02:30 fires at its first (CEST) occurrence.
    ("berlin-fall", "30 2 * * *", "Europe/Berlin", "2027-10-30T12:00:00Z", 2,
     ["2027-10-31T00:30:00Z", "2027-11-01T01:30:00Z"],
     ["2027-10-31T02:30:00+02:00", "2027-11-01T02:30:00+01:00"], "0 30 2 * * *"),
    # Feb 29 only in leap years.
    ("feb29-utc", "0 0 29 2 *", "UTC", "2026-03-01T00:00:00Z", 2,
     ["2028-02-29T00:00:00Z", "2032-02-29T00:00:00Z"], None, "0 0 0 29 2 *"),
    ("feb29-berlin", "0 0 29 2 *", "Europe/Berlin", "2026-03-01T00:00:00Z", 2,
     ["2028-02-28T23:00:00Z", "2032-02-28T23:00:00Z"],
     ["2028-02-29T00:00:00+01:00", "2032-02-29T00:00:00+01:00"], None),
]


@pytest.mark.parametrize("case", DST_CASES, ids=[c[0] for c in DST_CASES])
def test_preview_dst_and_leap_days(alice, case):
    _, cron, tz, after, n, times, local, normalized = case
    out = preview(alice, cron=cron, timezone=tz, after=after, count=n)
    assert z(out["times"]) == times, out
    if local is not None:
        assert out["localTimes"] == local, out
    if normalized is not None:
        assert out["normalized"] == normalized, out


def test_preview_over_grpc_matches_rest(api_server, protos, alice):
    pb = protos.v1.schedules_pb2
    ch = wh.new_channel(api_server.target)
    try:
        stub = protos.v1.schedules_pb2_grpc.ScheduleServiceStub(ch)
        after = timestamp_pb2.Timestamp()
        after.FromJsonString("2027-03-13T12:00:00Z")
        resp = stub.PreviewSchedule(pb.PreviewScheduleRequest(cron="30 2 * * *", timezone="America/New_York",
                                                              count=2, after=after),
                                    metadata=wh.grpc_auth(alice), timeout=TIMEOUT)
        assert [t.ToJsonString() for t in resp.times] == ["2027-03-14T07:00:00Z", "2027-03-15T06:30:00Z"], resp
        assert list(resp.local_times) == ["2027-03-14T03:00:00-04:00", "2027-03-15T02:30:00-04:00"], resp
        assert resp.normalized == "0 30 2 * * *", resp
        with pytest.raises(grpc.RpcError) as info:
            stub.PreviewSchedule(pb.PreviewScheduleRequest(cron="61 * * * *"), metadata=wh.grpc_auth(alice),
                                 timeout=TIMEOUT)
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT, info.value
        assert info.value.details().startswith("cron: ") and 'minute field "61" is out of range 0-59' in \
            info.value.details(), info.value.details()
        with pytest.raises(grpc.RpcError) as info:
            stub.PreviewSchedule(pb.PreviewScheduleRequest(cron=NIGHTLY), timeout=TIMEOUT)
        assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED, info.value
    finally:
        ch.close()


def _days(after: str, n: int, rule) -> list:
    """The first n dates after `after` (a noon UTC) matching rule, at 00:00Z."""
    d = utc(after).date() + dt.timedelta(days=1)
    out = []
    while len(out) < n:
        if rule(d):
            out.append(d.strftime("%Y-%m-%dT00:00:00Z"))
        d += dt.timedelta(days=1)
    return out


def _last_dom(d):
    return (d + dt.timedelta(days=1)).month != d.month


def _nearest_weekday(d, day):
    t = dt.date(d.year, d.month, day)
    if t.weekday() == 5:
        t -= dt.timedelta(days=1)
    elif t.weekday() == 6:
        t += dt.timedelta(days=1)
    return d == t


def _last_weekday(d):
    t = dt.date(d.year, d.month, calendar.monthrange(d.year, d.month)[1])
    while t.weekday() >= 5:
        t -= dt.timedelta(days=1)
    return d == t


def _fri(d):
    return d.weekday() == 4


DAY_RULES = [
    ("0 0 L * *", _last_dom),
    ("0 0 L-3 * *", lambda d: d + dt.timedelta(days=3) == dt.date(d.year, d.month,
                                                                   calendar.monthrange(d.year, d.month)[1])),
    ("0 0 15W * *", lambda d: _nearest_weekday(d, 15)),
    ("0 0 LW * *", _last_weekday),
    ("0 0 * * 5L", lambda d: _fri(d) and (d + dt.timedelta(days=7)).month != d.month),
    ("0 0 * * FRIL", lambda d: _fri(d) and (d + dt.timedelta(days=7)).month != d.month),
    ("0 0 * * 5#3", lambda d: _fri(d) and 15 <= d.day <= 21),
    ("0 0 * * fri#3", lambda d: _fri(d) and 15 <= d.day <= 21),
    ("0 0 13 * 5", lambda d: d.day == 13 or _fri(d)),  # dom OR dow (Vixie)
    ("0 0 ? * 7", lambda d: d.weekday() == 6),
    ("0 0 * * 0", lambda d: d.weekday() == 6),
    ("0 0 * * SUN", lambda d: d.weekday() == 6),
    ("0 0 1,15 * *", lambda d: d.day in (1, 15)),
    ("0 0 * JAN-MAR mon-fri", lambda d: d.month <= 3 and d.weekday() < 5),
    ("0 0 1 jun,DEC ?", lambda d: d.day == 1 and d.month in (6, 12)),
]


@pytest.mark.parametrize("cron, rule", DAY_RULES, ids=[c for c, _ in DAY_RULES])
def test_preview_day_rules(alice, cron, rule):
    after = "2027-03-20T12:00:00Z"  # spans month ends, a 15th on a Saturday (May) and a year end
    out = preview(alice, cron=cron, timezone="UTC", after=after, count=12)
    assert z(out["times"]) == _days(after, 12, rule), out


TIME_RULES = [
    # cron, after, expected first times, normalized (None: not checked)
    ("*/7 * * * * *", "2027-01-01T23:59:59.500Z",
     ["2027-01-02T00:00:00Z", "2027-01-02T00:00:07Z", "2027-01-02T00:00:14Z"], None),
    ("50/7 * * * * *", "2027-01-01T23:59:49.500Z",
     ["2027-01-01T23:59:50Z", "2027-01-01T23:59:57Z", "2027-01-02T00:00:50Z"], None),
    ("0 10-50/20 * * * *", "2027-01-01T00:00:30Z",
     ["2027-01-01T00:10:00Z", "2027-01-01T00:30:00Z", "2027-01-01T00:50:00Z", "2027-01-01T01:10:00Z"], None),
    ("5/20 * * * *", "2027-01-01T00:00:30Z",
     ["2027-01-01T00:05:00Z", "2027-01-01T00:25:00Z", "2027-01-01T00:45:00Z", "2027-01-01T01:05:00Z"], None),
    ("0 9-10 * * *", "2027-01-01T09:30:00Z",
     ["2027-01-01T10:00:00Z", "2027-01-02T09:00:00Z", "2027-01-02T10:00:00Z"], None),
    ("@hourly", "2027-01-01T00:30:00Z", ["2027-01-01T01:00:00Z", "2027-01-01T02:00:00Z"], "0 0 * * * *"),
    ("@daily", "2027-01-01T00:30:00Z", ["2027-01-02T00:00:00Z", "2027-01-03T00:00:00Z"], "0 0 0 * * *"),
    ("@midnight", "2027-01-01T00:30:00Z", ["2027-01-02T00:00:00Z"], "0 0 0 * * *"),
    ("@weekly", "2027-01-01T00:30:00Z", ["2027-01-03T00:00:00Z", "2027-01-10T00:00:00Z"], "0 0 0 * * 0"),
    ("@monthly", "2027-01-01T00:30:00Z", ["2027-02-01T00:00:00Z", "2027-03-01T00:00:00Z"], "0 0 0 1 * *"),
    ("@yearly", "2027-01-01T00:30:00Z", ["2028-01-01T00:00:00Z", "2029-01-01T00:00:00Z"], "0 0 0 1 1 *"),
    ("@annually", "2027-01-01T00:30:00Z", ["2028-01-01T00:00:00Z"], "0 0 0 1 1 *"),
]


@pytest.mark.parametrize("cron, after, first, normalized", TIME_RULES, ids=[c for c, *_ in TIME_RULES])
def test_preview_steps_ranges_macros(alice, cron, after, first, normalized):
    out = preview(alice, cron=cron, after=after, count=len(first))  # timezone defaults to UTC
    assert z(out["times"]) == first, out
    if normalized:
        assert out["normalized"] == normalized, out


def test_preview_defaults_bounds_and_window(alice):
    before = time.time()
    out = preview(alice, cron=EVERY_MINUTE)
    assert len(out["times"]) == 5, out  # default count
    first = secs(out["times"][0])
    assert before < first <= time.time() + 61 and first % 60 == 0, out  # default after: now
    assert len(preview(alice, cron=EVERY_MINUTE, count=100)["times"]) == 100
    assert len(preview(alice, cron=EVERY_MINUTE, count=1)["times"]) == 1
    for bad in (101, -1):
        assert_error(alice.rest.post("/schedules/preview", {"cron": EVERY_MINUTE, "count": bad}), 400,
                     INVALID_ARGUMENT)
    assert_error(alice.rest.post("/schedules/preview", {"cron": NIGHTLY, "timezone": "Mars/Base"}), 400,
                 INVALID_ARGUMENT, 'unknown time zone "Mars/Base"')
    # startAt / endAt bound the ticks (fewer than count when the window ends).
    out = preview(alice, cron=NIGHTLY, after="2027-01-01T12:00:00Z", startAt="2027-01-04T12:00:00Z",
                  endAt="2027-01-07T12:00:00Z", count=10)
    assert z(out["times"]) == ["2027-01-05T00:00:00Z", "2027-01-06T00:00:00Z", "2027-01-07T00:00:00Z"], out


def test_preview_whole_second_window_is_inclusive(alice):
    out = preview(alice, cron=EVERY_SECOND, after="2030-01-01T00:00:00Z", startAt="2030-01-01T00:00:05Z",
                  endAt="2030-01-01T00:00:09Z", count=10)
    assert z(out["times"]) == [f"2030-01-01T00:00:0{i}Z" for i in range(5, 10)], out


def test_no_tick_before_a_fractional_start(alice, shared_wf, tidy):
    out = preview(alice, cron=EVERY_SECOND, after="2030-01-01T00:00:00Z", startAt="2030-01-01T00:00:05.700Z",
                  endAt="2030-01-01T00:00:08.999Z", count=10)
    assert z(out["times"]) == ["2030-01-01T00:00:06Z", "2030-01-01T00:00:07Z", "2030-01-01T00:00:08Z"], out
    s = create_schedule(alice, shared_wf["id"], tidy, cron=EVERY_SECOND, startAt="2030-01-01T00:00:05.700Z")
    assert ns(s["nextRunAt"]) == ns("2030-01-01T00:00:06Z"), s


# ---------------------------------------------------------------------------
# gRPC CRUD
# ---------------------------------------------------------------------------


def test_schedule_crud_over_grpc(api_server, protos, alice, bob, carol, shared_wf):
    pb = protos.v1.schedules_pb2
    wid = shared_wf["id"]
    ch = wh.new_channel(api_server.target)
    stub = protos.v1.schedules_pb2_grpc.ScheduleServiceStub(ch)
    md = wh.grpc_auth(alice)
    sid = None
    try:
        created = stub.CreateSchedule(pb.CreateScheduleRequest(
            workflow_id=wid, cron="0 6 * * MON-FRI", timezone="America/New_York", input=wh.proto_struct({"g": "rpc"}),
            description="grpc made", jitter=duration_pb2.Duration(seconds=5)), metadata=md, timeout=TIMEOUT)
        sid = created.id
        assert SCHEDULE_ID_RE.fullmatch(sid), created
        assert created.workflow_id == wid and created.created_by == alice.id, created
        assert json_format.MessageToDict(created.input) == {"g": "rpc"}, created
        assert created.overlap_policy == "skip" and created.catchup_policy == "run_once", created
        assert created.catchup_window.seconds == 3600 and created.jitter.seconds == 5, created
        assert created.HasField("next_run_at") and len(created.next_run_times) == 5, created
        ny = ZoneInfo("America/New_York")
        for t in created.next_run_times:
            local = t.ToDatetime(tzinfo=dt.timezone.utc).astimezone(ny)
            assert (local.hour, local.minute) == (6, 0) and local.weekday() < 5, local

        # Cross-protocol: REST reads what gRPC wrote.
        rest = get_schedule(alice, wid, sid)
        assert rest["cron"] == "0 6 * * MON-FRI" and rest["description"] == "grpc made", rest
        got = stub.GetSchedule(pb.GetScheduleRequest(workflow_id=wid, schedule_id=sid), metadata=md, timeout=TIMEOUT)
        assert got.id == sid and got.timezone == "America/New_York", got
        listed = stub.ListSchedules(pb.ListSchedulesRequest(workflow_id=wid), metadata=wh.grpc_auth(bob),
                                    timeout=TIMEOUT)
        assert sid in [s.id for s in listed.schedules], listed

        paused = stub.PauseSchedule(pb.PauseScheduleRequest(workflow_id=wid, schedule_id=sid, note="rpc pause"),
                                    metadata=md, timeout=TIMEOUT)
        assert paused.paused and paused.paused_note == "rpc pause" and not paused.HasField("next_run_at"), paused
        resumed = stub.ResumeSchedule(pb.ResumeScheduleRequest(workflow_id=wid, schedule_id=sid), metadata=md,
                                      timeout=TIMEOUT)
        assert not resumed.paused and resumed.HasField("next_run_at"), resumed
        updated = stub.UpdateSchedule(pb.UpdateScheduleRequest(workflow_id=wid, schedule_id=sid, cron="15 7 * * *",
                                                               timezone="UTC"), metadata=md, timeout=TIMEOUT)
        assert updated.cron == "15 7 * * *" and updated.timezone == "UTC" and not updated.description, updated
        assert updated.next_run_at.seconds % 86400 == 7 * 3600 + 15 * 60, updated

        def code_of(fn, req, metadata):
            with pytest.raises(grpc.RpcError) as info:
                fn(req, metadata=metadata, timeout=TIMEOUT)
            assert info.value.details(), "an error says why"
            return info.value.code(), info.value.details()

        C = grpc.StatusCode
        assert code_of(stub.CreateSchedule, pb.CreateScheduleRequest(workflow_id=wid, cron="0 0 * * 9"), md)[0] \
            == C.INVALID_ARGUMENT
        code, details = code_of(stub.CreateSchedule, pb.CreateScheduleRequest(workflow_id=wid, cron="0 24 * * *"), md)
        assert code == C.INVALID_ARGUMENT and 'hour field "24" is out of range 0-23' in details, details
        assert code_of(stub.CreateSchedule, pb.CreateScheduleRequest(workflow_id=wid, cron=NIGHTLY),
                       wh.grpc_auth(bob))[0] == C.PERMISSION_DENIED
        assert code_of(stub.PauseSchedule, pb.PauseScheduleRequest(workflow_id=wid, schedule_id=sid),
                       wh.grpc_auth(bob))[0] == C.PERMISSION_DENIED
        assert code_of(stub.GetSchedule, pb.GetScheduleRequest(workflow_id=wid, schedule_id=sid),
                       wh.grpc_auth(carol))[0] == C.NOT_FOUND
        assert code_of(stub.ListSchedules, pb.ListSchedulesRequest(workflow_id=wid), ())[0] == C.UNAUTHENTICATED
        assert code_of(stub.GetSchedule, pb.GetScheduleRequest(workflow_id=wid, schedule_id="sch_nope"), md)[0] \
            == C.NOT_FOUND

        stub.DeleteSchedule(pb.DeleteScheduleRequest(workflow_id=wid, schedule_id=sid), metadata=md, timeout=TIMEOUT)
        sid_deleted, sid = sid, None
        assert_error(alice.rest.get(spath(wid, sid_deleted)), 404, NOT_FOUND)
    finally:
        if sid:
            alice.rest.delete(spath(wid, sid))
        ch.close()


# ---------------------------------------------------------------------------
# Live firing
# ---------------------------------------------------------------------------


def test_every_second_schedule_fires_pauses_and_resumes(api_server, alice, tidy):
    wf = create_wf(alice, NOOP)
    wid = wf["id"]
    m0 = settled(api_server)
    fired0 = m0.total("weft_schedule_ticks_fired_total")
    lag0 = m0.total("weft_schedule_fire_lag_seconds_count")
    trig0 = m0.total("weft_trigger_executions_total", trigger="schedule")
    active0, paused0 = m0.total("weft_schedules", state="active"), m0.total("weft_schedules", state="paused")
    # "allow": a noop finishing late must not turn a tick into a skip here.
    s = create_schedule(alice, wid, tidy, cron=EVERY_SECOND, input={"who": "clock"}, overlapPolicy="allow")
    sid = s["id"]
    created = secs(s["createdAt"])
    schedules_gauge(api_server, active0 + 1, paused0)

    wh.wait_until(lambda: len(executions(alice, wid)) >= 4, TIMEOUT, interval=0.1,
                  message="an every-second schedule to start 4 executions")
    t_pause = time.time()
    p = pause(alice, wid, sid, note="window check")
    assert "nextRunAt" not in p, p
    listed = all_terminal(alice, wid)
    n_paused = len(listed)
    schedules_gauge(api_server, active0, paused0 + 1)  # paused: not active
    time.sleep(3)  # the window under test: a paused schedule starts nothing
    assert len(executions(alice, wid)) == n_paused, "a paused schedule started executions"

    ticks = sorted(check_schedule_execution(e, sid, {"who": "clock"}) for e in listed)
    assert len(set(ticks)) == len(ticks), f"a tick ran twice: {ticks}"
    assert ticks == list(range(ticks[0], ticks[0] + len(ticks))), f"a tick is missing: {ticks}"
    assert created - 1 < ticks[0] <= created + 2, (created, ticks)
    assert ticks[-1] <= t_pause + 1, (t_pause, ticks)
    for e in listed:
        assert e["status"] == "Completed", e
        lag = secs(e["createdAt"]) - tick_of(e)
        assert 0 <= lag < 3, f"execution created {lag:.3f}s after its tick: {e}"
    # One full execution read back has the same fields as the list.
    latest = max(listed, key=tick_of)
    full = get_exec(alice, wid, latest["executionId"])
    check_schedule_execution(full, sid, {"who": "clock"})

    sch = get_schedule(alice, wid, sid)
    assert count(sch, "firedCount") == n_paused, sch
    assert count(sch, "missedCount") == 0 and count(sch, "skippedCount") == 0, sch
    assert sch["lastExecutionId"] == latest["executionId"], (sch, latest)
    assert ns(sch["lastFireAt"]) == ticks[-1] * 10**9, sch
    assert sch.get("lastOutcome") == "Completed", sch
    assert sch["pausedNote"] == "window check", sch

    m = metrics(api_server)
    assert m.total("weft_schedule_ticks_fired_total") - fired0 == n_paused
    assert m.total("weft_schedule_fire_lag_seconds_count") - lag0 == n_paused
    assert m.total("weft_trigger_executions_total", trigger="schedule") - trig0 == n_paused
    assert m.type_of("weft_schedule_fire_lag_seconds") == "histogram", m.types.get("weft_schedule_fire_lag_seconds")
    assert m.type_of("weft_schedule_ticks_fired_total") == "counter"
    buckets = sorted(((float(s.labels["le"]), s.value) for s in m.select("weft_schedule_fire_lag_seconds_bucket")))
    assert buckets and buckets[-1][0] == float("inf"), buckets
    assert [v for _, v in buckets] == sorted(v for _, v in buckets), "cumulative buckets"
    assert buckets[-1][1] == m.total("weft_schedule_fire_lag_seconds_count")

    # Resume: the next tick after now; the ticks of the pause are not run and not counted missed.
    t_resume = time.time()
    r = resume(alice, wid, sid)
    assert t_resume - 1 < secs(r["nextRunAt"]) <= time.time() + 1.5, r
    wh.wait_until(lambda: len(executions(alice, wid)) >= n_paused + 2, TIMEOUT, interval=0.1,
                  message="the resumed schedule to fire again")
    pause(alice, wid, sid)
    after = all_terminal(alice, wid)
    new = sorted(check_schedule_execution(e, sid, {"who": "clock"}) for e in after if tick_of(e) not in ticks)
    assert len(new) == len(after) - n_paused and len(new) >= 2, (new, ticks)
    assert new[0] >= t_resume - 0.001, f"a tick of the pause ran: resumed at {t_resume:.3f}, ticks {new}"
    assert new == list(range(new[0], new[0] + len(new))), new
    sch = get_schedule(alice, wid, sid)
    assert count(sch, "firedCount") == len(after) and count(sch, "missedCount") == 0, sch

    delete_schedule(alice, wid, sid)
    schedules_gauge(api_server, active0, paused0)


def test_jitter_delays_each_tick_within_its_bound(alice, tidy):
    wf = create_wf(alice, NOOP)
    wid = wf["id"]
    # Jitter must be shorter than the gap between ticks (else a later tick
    # could fall due first): every 3 s with up to 2 s.
    s = create_schedule(alice, wid, tidy, cron="*/3 * * * * *", jitter="2s", overlapPolicy="allow")
    wh.wait_until(lambda: len(executions(alice, wid)) >= 4, TIMEOUT + 15, interval=0.1, message="four jittered ticks")
    pause(alice, wid, s["id"])
    listed = all_terminal(alice, wid)
    ticks = sorted(check_schedule_execution(e, s["id"]) for e in listed)  # scheduledTime: the tick, before jitter
    assert ticks == list(range(ticks[0], ticks[0] + 3 * len(ticks), 3)), ticks
    lags = sorted(secs(e["createdAt"]) - tick_of(e) for e in listed)
    assert lags[0] >= 0 and lags[-1] < 2.75, f"each tick fires within its 2 s jitter: {lags}"
    assert lags[-1] >= 0.25, f"the jitter delayed some tick: {lags}"


def test_jitter_as_long_as_the_gap_is_refused(alice, shared_wf):
    err = assert_error(alice.rest.post(spath(shared_wf["id"]), {"cron": EVERY_SECOND, "jitter": "1s"}), 400, INVALID_ARGUMENT)
    assert err["message"] == "jitter (1.0 s) must be shorter than the gap between ticks (1.0 s)", err


def test_overlap_skip_runs_one_at_a_time(api_server, alice, tidy):
    wf = create_wf(alice, delay_wf("5s"))
    wid = wf["id"]
    skipped0 = metric(api_server, "weft_schedule_ticks_skipped_total", reason="overlap")
    s = create_schedule(alice, wid, tidy, cron=EVERY_SECOND, overlapPolicy="skip")
    sid = s["id"]
    most = [0]

    def three_skips():
        most[0] = max(most[0], len(running(alice, wid)))
        sch = get_schedule(alice, wid, sid)
        return sch if count(sch, "skippedCount") >= 3 else None

    wh.wait_until(three_skips, TIMEOUT, interval=0.1, message="three ticks skipped while the first execution runs")
    p = pause(alice, wid, sid)
    listed = executions(alice, wid)
    assert len(listed) == 1 and listed[0]["status"] == "Running", listed
    assert most[0] == 1, most
    assert count(p, "firedCount") == 1 and count(p, "skippedCount") >= 3, p
    assert p["lastSkipReason"] == "overlap" and p.get("lastOutcome") == "Skipped", p
    assert p["lastExecutionId"] == listed[0]["executionId"], p
    delta = metric(api_server, "weft_schedule_ticks_skipped_total", reason="overlap") - skipped0
    assert delta == count(p, "skippedCount"), (delta, p)


def test_overlap_allow_runs_several_at_once(alice, tidy):
    wf = create_wf(alice, delay_wf("5s"))
    wid = wf["id"]
    s = create_schedule(alice, wid, tidy, cron=EVERY_SECOND, overlapPolicy="allow")
    wh.wait_until(lambda: len(running(alice, wid)) >= 3, TIMEOUT, interval=0.1,
                  message="three executions of the schedule running at once")
    p = pause(alice, wid, s["id"])
    assert count(p, "skippedCount") == 0 and count(p, "firedCount") >= 3, p
    assert p.get("lastOutcome") == "Running", p


def test_overlap_buffer_one_waits_and_never_overlaps(alice, tidy):
    # A 2.5 s execution on an every-second schedule: the tick after a start
    # waits (buffered), the next one finds the buffer full and is skipped.
    wf = create_wf(alice, delay_wf("2500ms"))
    wid = wf["id"]
    s = create_schedule(alice, wid, tidy, cron=EVERY_SECOND, overlapPolicy="buffer_one")
    sid = s["id"]
    seen = {"buffered": 0, "most_running": 0}

    def progress():
        seen["most_running"] = max(seen["most_running"], len(running(alice, wid)))
        sch = get_schedule(alice, wid, sid)
        if sch.get("buffered"):
            seen["buffered"] += 1
        return seen["buffered"] and count(sch, "firedCount") >= 2 and count(sch, "skippedCount") >= 1

    wh.wait_until(progress, 15, interval=0.05, message=lambda: f"a buffered tick to start (seen {seen})")
    p = pause(alice, wid, sid)
    assert p["lastSkipReason"] == "overlap", p
    listed = all_terminal(alice, wid, timeout=15)
    assert seen["most_running"] == 1, seen
    done = sorted(listed, key=lambda e: ns(e["startedAt"]))
    assert len(done) >= 2, done
    for a, b in zip(done, done[1:]):
        assert ns(b["startedAt"]) >= ns(a["completedAt"]), f"executions overlap: {a} / {b}"
        assert tick_of(b) > tick_of(a), (a, b)
    # The buffered one (the tick right after the first) started when the first
    # ended, well after its tick.
    second = done[1]
    assert tick_of(second) == tick_of(done[0]) + 1, done[:2]
    assert secs(second["startedAt"]) - tick_of(second) >= 1.0, second


@pytest.mark.parametrize("policy", ["cancel_other", "terminate_other"])
def test_overlap_cancel_other_cancels_the_running_one(alice, tidy, policy):
    wf = create_wf(alice, delay_wf("30s"))
    wid = wf["id"]
    s = create_schedule(alice, wid, tidy, cron=EVERY_SECOND, overlapPolicy=policy)
    sid = s["id"]
    wh.wait_until(lambda: len(executions(alice, wid, status="Cancelled")) >= 3, TIMEOUT, interval=0.1,
                  message="three executions cancelled by the ones after them")
    p = pause(alice, wid, sid)
    listed = sorted(executions(alice, wid), key=tick_of)
    newest = listed[-1]
    cancelled = [e for e in listed if e["status"] == "Cancelled"]
    assert newest["status"] == "Running", listed
    assert [e["executionId"] for e in listed[:-1]] == [e["executionId"] for e in cancelled], \
        "every execution but the newest was cancelled"
    for e, nxt in zip(listed, listed[1:]):
        assert sid in e.get("error", ""), f"the cancel reason names the schedule: {e}"
        # Cancelled at the next tick, not after its 30 s delay.
        assert secs(e["completedAt"]) - tick_of(nxt) < 2.0, (e, nxt)
    assert count(p, "skippedCount") == 0 and count(p, "firedCount") == len(listed), p


def test_start_and_end_bound_the_live_ticks(alice, tidy):
    wf = create_wf(alice, NOOP)
    wid = wf["id"]
    now = time.time()
    start = int(now) + 2
    end = start + 1
    # Whole seconds: "no tick before startAt or after endAt", so both ends run.
    s = create_schedule(alice, wid, tidy, cron=EVERY_SECOND, overlapPolicy="allow", startAt=iso(start), endAt=iso(end))
    expected = [start, end]
    assert ns(s["nextRunAt"]) == start * 10**9, (s, expected)
    assert [ns(t) // 10**9 for t in s["nextRunTimes"]] == expected, (s, expected)  # fewer than 5: the window ends
    sch = wh.wait_until(lambda: (lambda x: x if "nextRunAt" not in x else None)(get_schedule(alice, wid, s["id"])),
                        TIMEOUT, interval=0.1, message="the schedule to run out at endAt")
    wh.wait_until(lambda: time.time() > end + 1.5, 10)  # a tick after endAt would have come by now
    assert sorted(tick_of(e) for e in all_terminal(alice, wid)) == expected
    assert count(get_schedule(alice, wid, s["id"]), "firedCount") == len(expected), sch
    # A window already over: no next run at all.
    past = create_schedule(alice, wid, tidy, cron=EVERY_SECOND, endAt=iso(int(now) - 60))
    assert "nextRunAt" not in past and not past.get("nextRunTimes"), past


def test_a_deleted_workflows_schedule_stops(api_server, alice):
    wf = create_wf(alice, NOOP)
    wid = wf["id"]
    s = create_schedule(alice, wid, cron=EVERY_SECOND, overlapPolicy="allow")
    wh.wait_until(lambda: len(executions(alice, wid)) >= 1, TIMEOUT, interval=0.1, message="a tick")
    gone0 = metric(api_server, "weft_schedule_ticks_skipped_total", reason="workflow_gone")
    r = alice.rest.delete(f"/workflows/{wid}")
    assert r.status == 204, r
    fired = metric(api_server, "weft_schedule_ticks_fired_total")
    # The next tick finds the workflow gone: skipped, and the schedule stops.
    wh.wait_until(lambda: metric(api_server, "weft_schedule_ticks_skipped_total", reason="workflow_gone") > gone0,
                  5, interval=0.1, message="a tick skipped as workflow_gone")
    time.sleep(1.5)  # the window under test: nothing fires for a deleted workflow
    assert metric(api_server, "weft_schedule_ticks_fired_total") == fired
    assert metric(api_server, "weft_schedule_ticks_skipped_total", reason="workflow_gone") == gone0 + 1, \
        "the schedule stopped after its first tick without a workflow"
    assert_error(alice.rest.get(spath(wid, s["id"])), 404, NOT_FOUND)


def test_a_deleted_workflows_schedule_leaves_the_gauge(api_server, alice):
    m0 = settled(api_server)
    active0, paused0 = m0.total("weft_schedules", state="active"), m0.total("weft_schedules", state="paused")
    wf = create_wf(alice, NOOP)
    create_schedule(alice, wf["id"], cron=NIGHTLY)
    create_schedule(alice, wf["id"], cron=NIGHTLY, paused=True)
    schedules_gauge(api_server, active0 + 1, paused0 + 1)
    r = alice.rest.delete(f"/workflows/{wf['id']}")
    assert r.status == 204, r
    schedules_gauge(api_server, active0, paused0, timeout=3)


# ---------------------------------------------------------------------------
# Quotas
# ---------------------------------------------------------------------------


def test_ticks_refused_by_quotas_are_skipped(server_factory):
    srv = server_factory(*wh.API_SERVER_ARGS, "--plan", "lim:concurrent_executions=1,executions_per_day=3",
                         "--default-plan", "lim")
    user = wh.register_and_login(srv, "Quinn Quota")
    hold = create_wf(user, delay_wf("30s"))
    r = user.rest.post(f"/workflows/{hold['id']}/execute", {})
    assert r.status == 202, r
    held = r.json["executionId"]
    wf = create_wf(user, NOOP)
    wid = wf["id"]
    s = create_schedule(user, wid, cron=EVERY_SECOND, overlapPolicy="allow")
    sid = s["id"]
    try:
        # The running hold takes the one concurrent place: ticks are skipped.
        sch = wh.wait_until(lambda: (lambda x: x if count(x, "skippedCount") >= 2 else None)(
            get_schedule(user, wid, sid)), TIMEOUT, interval=0.1, message="ticks skipped for the concurrency limit")
        assert sch["lastSkipReason"] == "concurrency_limit" and sch.get("lastOutcome") == "Skipped", sch
        assert count(sch, "firedCount") == 0 and executions(user, wid) == [], sch
        assert metric(srv, "weft_schedule_ticks_skipped_total", reason="concurrency_limit") >= 2
        # Freed: ticks run until the day's 3 executions are used (hold + 2), then "quota".
        r = user.rest.post(f"/workflows/{hold['id']}/executions/{held}/cancel", {"reason": "free the place"})
        assert r.status == 200, r
        sch = wh.wait_until(lambda: (lambda x: x if x.get("lastSkipReason") == "quota" else None)(
            get_schedule(user, wid, sid)), TIMEOUT, interval=0.1, message="ticks skipped for the daily quota")
        assert count(sch, "firedCount") == 2, sch
        assert len(executions(user, wid)) == 2
        assert metric(srv, "weft_schedule_ticks_skipped_total", reason="quota") >= 1
    finally:
        user.rest.post(spath(wid, sid, "/pause"), {})
        user.rest.delete(spath(wid, sid))


# ---------------------------------------------------------------------------
# Backfills
# ---------------------------------------------------------------------------


def minute_floor(t: float) -> int:
    return int(t // 60) * 60


def backfill(user, wid, sid, start: int, end: int, max_concurrent: int | None = None) -> dict:
    body = {"startTime": iso(start), "endTime": iso(end)}
    if max_concurrent is not None:
        body["maxConcurrent"] = max_concurrent
    r = user.rest.post(spath(wid, sid, "/backfills"), body)
    assert r.status == 201, r
    b = r.json
    assert BACKFILL_ID_RE.fullmatch(b["id"]), b
    assert b["scheduleId"] == sid and b["workflowId"] == wid and b["createdBy"] == user.id, b
    assert ns(b["startTime"]) == start * 10**9 and ns(b["endTime"]) == end * 10**9, b
    assert b["status"] in ("Running", "Completed"), b
    return b


def get_backfill(user, wid, sid, bid) -> dict:
    r = user.rest.get(spath(wid, sid, f"/backfills/{bid}"))
    assert r.status == 200, r
    return r.json


def wait_backfill(user, wid, sid, bid, statuses=("Completed",), timeout=TIMEOUT) -> dict:
    last = {}

    def check():
        last["b"] = get_backfill(user, wid, sid, bid)
        return last["b"] if last["b"]["status"] in statuses else None

    return wh.wait_until(check, timeout, interval=0.1, message=lambda: f"backfill {bid} to be {statuses}: {last}")


def in_range(listed, start, end) -> list:
    return [e for e in listed if e.get("scheduledTime") and start <= tick_of(e) < end]


def test_backfill_runs_every_tick_once(api_server, alice, tidy):
    wf = create_wf(alice, NOOP)
    wid = wf["id"]
    s = create_schedule(alice, wid, tidy, cron=EVERY_MINUTE, input={"src": "bf"}, overlapPolicy="allow")
    sid = s["id"]
    start = minute_floor(time.time()) - 3 * 3600
    end = start + 600
    m0 = metrics(api_server)
    b = backfill(alice, wid, sid, start, end, max_concurrent=4)
    assert count(b, "ticksTotal") == 10 and b["maxConcurrent"] == 4, b
    done = wait_backfill(alice, wid, sid, b["id"])
    assert count(done, "ticksTotal") == 10 and count(done, "ticksDone") == 10, done
    assert count(done, "ticksExisting") == 0 and count(done, "executionsFailed") == 0, done
    assert ns(done["lastTick"]) == (end - 60) * 10**9 and done.get("finishedAt"), done
    assert not done.get("error"), done
    listed = all_terminal(alice, wid)
    ran = in_range(listed, start, end)
    assert sorted(check_schedule_execution(e, sid, {"src": "bf"}) for e in ran) == list(range(start, end, 60)), ran
    assert all(e["status"] == "Completed" for e in ran), ran
    # executionsCompleted follows the executions' ends.
    done = wh.wait_until(lambda: (lambda x: x if count(x, "executionsCompleted") == 10 else None)(
        get_backfill(alice, wid, sid, b["id"])), TIMEOUT, message="executionsCompleted to reach 10")
    m1 = metrics(api_server)
    assert m1.total("weft_schedule_backfill_ticks_total", outcome="started") - \
        m0.total("weft_schedule_backfill_ticks_total", outcome="started") == 10
    assert m1.total("weft_trigger_executions_total", trigger="backfill") - \
        m0.total("weft_trigger_executions_total", trigger="backfill") == 10
    assert m1.total("weft_schedule_backfills_running") == 0

    # The same range again: every tick exists, nothing starts.
    again = wait_backfill(alice, wid, sid, backfill(alice, wid, sid, start, end)["id"])
    assert count(again, "ticksTotal") == 10 and count(again, "ticksExisting") == 10, again
    assert count(again, "ticksDone") == 10, again
    assert len(in_range(executions(alice, wid), start, end)) == 10
    m2 = metrics(api_server)
    assert m2.total("weft_schedule_backfill_ticks_total", outcome="existing") - \
        m1.total("weft_schedule_backfill_ticks_total", outcome="existing") == 10
    assert m2.total("weft_schedule_backfill_ticks_total", outcome="started") == \
        m1.total("weft_schedule_backfill_ticks_total", outcome="started")

    # Overlapping by half: five exist, five start.
    half = wait_backfill(alice, wid, sid, backfill(alice, wid, sid, start + 300, end + 300, 2)["id"])
    assert count(half, "ticksTotal") == 10 and count(half, "ticksExisting") == 5, half
    ran = in_range(all_terminal(alice, wid), start, end + 300)
    ticks = sorted(tick_of(e) for e in ran)
    assert ticks == list(range(start, end + 300, 60)), ticks

    r = alice.rest.get(spath(wid, sid, "/backfills"))
    assert r.status == 200, r
    assert {x["id"] for x in r.json["backfills"]} == {b["id"], again["id"], half["id"]}, r.json
    # A finished backfill cannot be cancelled.
    assert_error(alice.rest.post(spath(wid, sid, f"/backfills/{b['id']}/cancel"), {}), 400, FAILED_PRECONDITION)
    assert_error(alice.rest.get(spath(wid, sid, "/backfills/bkf_nope")), 404, NOT_FOUND)


def test_backfill_bounds(alice, tidy):
    wf = create_wf(alice, NOOP)
    wid = wf["id"]
    sid = create_schedule(alice, wid, tidy, cron=EVERY_MINUTE)["id"]
    start = minute_floor(time.time()) - 30 * 86400
    bad = [
        {"startTime": iso(start), "endTime": iso(start + 10001 * 60)},  # 10001 ticks
        {"startTime": iso(start), "endTime": iso(start + 7 * 86400)},  # 10080 ticks
        {"startTime": iso(start), "endTime": iso(start + 600), "maxConcurrent": 65},
        {"startTime": iso(start), "endTime": iso(start + 600), "maxConcurrent": -1},
        {"startTime": iso(start)},
    ]
    for body in bad:
        assert_error(alice.rest.post(spath(wid, sid, "/backfills"), body), 400, INVALID_ARGUMENT)
    r = alice.rest.get(spath(wid, sid, "/backfills"))
    assert r.status == 200 and not r.json.get("backfills"), r
    assert executions(alice, wid) == []


def test_backfill_respects_max_concurrent(alice, tidy):
    wf = create_wf(alice, delay_wf("1s"))
    wid = wf["id"]
    sid = create_schedule(alice, wid, tidy, cron=EVERY_MINUTE, overlapPolicy="allow")["id"]
    start = minute_floor(time.time()) - 86400
    end = start + 6 * 60
    b = backfill(alice, wid, sid, start, end, max_concurrent=2)
    most = [0]

    def finished():
        most[0] = max(most[0], len(in_range(running(alice, wid), start, end)))
        x = get_backfill(alice, wid, sid, b["id"])
        return x if x["status"] == "Completed" else None

    done = wh.wait_until(finished, 15, interval=0.05, message="a 6-tick backfill of 1 s executions, 2 at once")
    assert most[0] == 2, f"at most 2 at once, and 2 at some point: {most[0]}"
    assert count(done, "ticksDone") == 6, done
    assert len(in_range(all_terminal(alice, wid), start, end)) == 6


def test_cancel_a_running_backfill(api_server, alice, tidy):
    wf = create_wf(alice, delay_wf("1s"))
    wid = wf["id"]
    sid = create_schedule(alice, wid, tidy, cron=EVERY_MINUTE, overlapPolicy="allow")["id"]
    start = minute_floor(time.time()) - 2 * 86400
    end = start + 200 * 60
    b = backfill(alice, wid, sid, start, end, max_concurrent=1)
    assert count(b, "ticksTotal") == 200, b
    most = [0]

    def two_done():
        most[0] = max(most[0], len(in_range(running(alice, wid), start, end)))
        x = get_backfill(alice, wid, sid, b["id"])
        assert x["status"] == "Running", x
        return x if count(x, "ticksDone") >= 2 else None

    wh.wait_until(two_done, TIMEOUT, interval=0.05, message="the backfill to get going")
    assert metric(api_server, "weft_schedule_backfills_running") == 1
    r = alice.rest.post(spath(wid, sid, f"/backfills/{b['id']}/cancel"), {})
    assert r.status == 200, r
    cancelled = wait_backfill(alice, wid, sid, b["id"], ("Cancelled",))
    assert cancelled.get("finishedAt") and count(cancelled, "ticksDone") < 200, cancelled
    assert most[0] == 1, most
    started = len(in_range(executions(alice, wid), start, end))
    assert started < 200, started
    time.sleep(2)  # the window under test: a cancelled backfill starts nothing more
    assert len(in_range(executions(alice, wid), start, end)) == started
    later = get_backfill(alice, wid, sid, b["id"])
    assert later["status"] == "Cancelled" and count(later, "ticksDone") == count(cancelled, "ticksDone"), later
    assert_error(alice.rest.post(spath(wid, sid, f"/backfills/{b['id']}/cancel"), {}), 400, FAILED_PRECONDITION)
    assert metric(api_server, "weft_schedule_backfills_running") == 0
