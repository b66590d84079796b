"""Schedules across crashes and restarts (Step 8): exactly once.

The execution a tick starts and the schedule's advance to the next tick are
one transaction, guarded by the schedule's current next tick; so SIGKILL at
any moment loses no tick and runs none twice.  Ticks that fell due while the
server was down and are late by at most 60 s fire normally, whatever the
catch-up policy (docs: /tmp/step8/SPEC.md "Exactly once").

1. The audit: an every-second schedule (catch-up run_all, window 10 min,
   overlap "allow" so that no tick may legitimately be skipped) on a server
   SIGKILLed three times at random moments (0.3-2.5 s apart; the seed is in
   every message), restarted on the same data dir each time, then stopped
   gracefully (exit 0) and started once more.  Over every execution of the
   workflow: no scheduledTime twice, every whole second between the first and
   the last present, firedCount == the number of executions, missedCount 0,
   every execution Completed (those cut off by a kill resume after the
   restart), one idempotency key per tick.
2. A 3 s graceful downtime with catch-up "skip" and "run_once": every tick
   of the downtime (late by less than 60 s) still runs, once; nothing is
   counted missed.

3. A 70 s downtime with three schedules, catch-up "skip", "run_once" and
   "run_all" (10 min window): every second either ran once or is counted
   missed; skip runs none of the ticks over a minute late, run_once the
   latest of them, run_all all of them.
"""

from __future__ import annotations

import random
import time
import uuid

import pytest

import flags_support as fs
import weft_helpers as wh

TIMEOUT = 15
TERMINAL = {"Completed", "Failed", "Cancelled", "TimedOut"}
NOOP = [{"key": "a", "name": "A", "action": "noop"}]
EVERY_SECOND = "* * * * * *"


@pytest.fixture
def restartable(tmp_path, protos):
    r = fs.Restartable(tmp_path, "schedcrash")
    yield r
    r.teardown()  # SIGKILLed processes are only reaped; every other one must exit 0 on SIGTERM


def count(obj: dict, key: str) -> int:
    return int(obj.get(key, "0"))


def schedule_of(user, wid, sid) -> dict:
    r = user.rest.get(f"/workflows/{wid}/schedules/{sid}")
    assert r.status == 200, r
    return r.json


def executions(user, wid) -> list:
    return wh.all_pages(user.rest, f"/workflows/{wid}/executions", "executions", pageSize=1000)


def tick_of(e: dict) -> int:
    n = wh.rfc3339_nanos(e["scheduledTime"])
    assert n % 10**9 == 0, e
    return n // 10**9


def setup_schedule(srv, **settings):
    owner = wh.register_and_login(srv, "Tick Auditor")
    r = owner.rest.post("/workflows", {"name": f"ticks {uuid.uuid4().hex[:8]}", "tasks": NOOP})
    assert r.status == 201, r
    wid = r.json["id"]
    r = owner.rest.post(f"/workflows/{wid}/schedules", {"cron": EVERY_SECOND, "overlapPolicy": "allow",
                                                        "input": {"audit": True}, **settings})
    assert r.status == 201, r
    return owner, wid, r.json["id"]


def wait_fired(user, wid, sid, at_least: int, why: str) -> dict:
    return wh.wait_until(lambda: (lambda s: s if count(s, "firedCount") >= at_least else None)(
        schedule_of(user, wid, sid)), TIMEOUT, interval=0.1, message=f"firedCount >= {at_least} ({why})")


def audit(user, wid, sid, context: str) -> list:
    """Pause, wait for every execution to end, and check exactly-once.
    Returns the sorted ticks."""
    r = user.rest.post(f"/workflows/{wid}/schedules/{sid}/pause", {"note": "audit"})
    assert r.status == 200 and r.json.get("paused") is True, r

    def ended():
        listed = executions(user, wid)
        return listed if all(e["status"] in TERMINAL for e in listed) else None

    listed = wh.wait_until(ended, TIMEOUT, interval=0.1, message=f"every execution to end ({context})")
    sch = schedule_of(user, wid, sid)
    ticks = sorted(tick_of(e) for e in listed)
    dupes = sorted({t for t in ticks if ticks.count(t) > 1})
    assert not dupes, f"ticks run twice {dupes} ({context})"
    missing = sorted(set(range(ticks[0], ticks[-1] + 1)) - set(ticks))
    assert not missing, f"ticks lost {missing} between {ticks[0]} and {ticks[-1]} ({context})"
    assert count(sch, "firedCount") == len(listed), (sch, len(listed), context)
    assert count(sch, "missedCount") == 0, (sch, context)
    assert count(sch, "skippedCount") == 0, (sch, context)
    keys = [e.get("idempotencyKey") for e in listed]
    assert sorted(keys) == sorted(f"schedule:{sid}:{t * 1000}" for t in ticks), context
    bad = [e for e in listed if e["status"] != "Completed" or e.get("trigger") != "schedule"
           or e.get("triggerId") != sid]
    assert not bad, (bad[:3], context)
    assert ns_of(sch["lastFireAt"]) == ticks[-1], (sch, context)
    return ticks


def ns_of(text: str) -> int:
    return wh.rfc3339_nanos(text) // 10**9


def test_sigkill_loses_and_duplicates_no_tick(restartable):
    seed = random.randrange(1 << 30)
    rng = random.Random(seed)
    srv = restartable.start(tag="-first")
    owner, wid, sid = setup_schedule(srv, catchupPolicy="run_all", catchupWindow="600s")
    wait_fired(owner, wid, sid, 2, "before the first kill")
    downtimes = []
    for i in range(3):
        time.sleep(rng.uniform(0.3, 2.5))  # the random moment of the kill is the thing under test
        t_kill = time.time()
        srv.expect_unclean = True
        srv.kill()  # SIGKILL
        assert srv.killed
        srv = restartable.start(tag=f"-after-kill-{i + 1}")
        downtimes.append((t_kill, time.time()))
        owner = fs.on(owner, srv)
    # Let the last process run a few ticks, then stop it gracefully.
    fired = count(schedule_of(owner, wid, sid), "firedCount")
    wait_fired(owner, wid, sid, fired + 3, f"after the last restart (seed {seed})")
    t_stop = time.time()
    restartable.stop_clean(srv)  # SIGTERM: exit 0, no crash report
    srv = restartable.start(tag="-after-stop")
    downtimes.append((t_stop, time.time()))
    owner = fs.on(owner, srv)
    fired = count(schedule_of(owner, wid, sid), "firedCount")
    wait_fired(owner, wid, sid, fired + 2, f"after the graceful restart (seed {seed})")
    ticks = audit(owner, wid, sid, f"seed {seed}, downtimes {downtimes}")
    # The downtimes lie inside the audited span: their ticks were checked too.
    assert ticks[0] < downtimes[0][0] and downtimes[-1][1] < ticks[-1], (ticks[0], ticks[-1], downtimes, seed)
    assert len(ticks) >= 8, (ticks, seed)


@pytest.mark.parametrize("policy", ["skip", "run_once"])
def test_ticks_late_by_less_than_a_minute_all_fire(restartable, policy):
    srv = restartable.start(tag="-first")
    owner, wid, sid = setup_schedule(srv, catchupPolicy=policy)
    wait_fired(owner, wid, sid, 2, "before the stop")
    restartable.stop_clean(srv)
    t_down = time.time()
    time.sleep(3)  # the downtime under test
    srv = restartable.start(tag="-restart")
    t_up = time.time()
    owner = fs.on(owner, srv)
    wh.wait_until(lambda: any(tick_of(e) > t_up + 1 for e in executions(owner, wid)), TIMEOUT, interval=0.1,
                  message="ticks after the restart")
    ticks = audit(owner, wid, sid, f"catchupPolicy {policy}")
    during = [t for t in ticks if t_down < t < t_up]
    assert len(during) >= 3, f"the ticks of the 3 s downtime ran: {during} (down {t_down:.3f}-{t_up:.3f})"


def test_catch_up_after_more_than_a_minute_down_follows_each_policy(restartable):
    """Down for 70 s: the ticks more than 60 s late follow each schedule's
    catch-up policy. Whatever the policy, every second from the first tick to
    the last either ran once or is counted in missedCount."""
    srv = restartable.start(tag="-first")
    owner = wh.register_and_login(srv, "Catch Up")
    made = {}
    for name, settings in (("skip", {"catchupPolicy": "skip"}), ("run_once", {"catchupPolicy": "run_once"}),
                           ("run_all", {"catchupPolicy": "run_all", "catchupWindow": "600s"})):
        r = owner.rest.post("/workflows", {"name": f"catch up {name} {uuid.uuid4().hex[:6]}", "tasks": NOOP})
        assert r.status == 201, r
        wid = r.json["id"]
        r = owner.rest.post(f"/workflows/{wid}/schedules", {"cron": EVERY_SECOND, "overlapPolicy": "allow", **settings})
        assert r.status == 201, r
        made[name] = (wid, r.json["id"])
    for wid, sid in made.values():
        wait_fired(owner, wid, sid, 2, "before the stop")
    restartable.stop_clean(srv)
    time.sleep(70)  # the downtime under test: more than the 60 s grace
    srv = restartable.start(tag="-restart")
    t_up = time.time()
    owner = fs.on(owner, srv)
    for wid, _ in made.values():
        wh.wait_until(lambda: any(tick_of(e) > t_up + 1 for e in executions(owner, wid)), TIMEOUT, interval=0.1,
                      message="ticks after the restart")
    results = {}
    for name, (wid, sid) in made.items():
        r = owner.rest.post(f"/workflows/{wid}/schedules/{sid}/pause", {})
        assert r.status == 200, r
    for name, (wid, sid) in made.items():
        listed = wh.wait_until(
            lambda: (lambda l: l if all(e["status"] in TERMINAL for e in l) else None)(executions(owner, wid)),
            TIMEOUT, interval=0.1, message=f"{name}: every execution to end")
        ticks = sorted(tick_of(e) for e in listed)
        assert len(ticks) == len(set(ticks)), f"{name}: a tick ran twice"
        missing = sorted(set(range(ticks[0], ticks[-1] + 1)) - set(ticks))
        sch = schedule_of(owner, wid, sid)
        assert count(sch, "missedCount") == len(missing), (name, sch, missing)
        assert count(sch, "firedCount") == len(ticks), (name, sch)
        # Ticks run more than 60 s after their time: the catch-up policy's.
        late = sorted(tick_of(e) for e in listed if wh.rfc3339_nanos(e["createdAt"]) / 1e9 - tick_of(e) > 60)
        results[name] = (ticks, missing, late)
    ticks, missing, late = results["run_all"]
    assert not missing, f"run_all with a 10 min window runs every tick: {missing}"
    assert len(late) >= 5, f"run_all ran the overdue ticks late: {late}"
    ticks, missing, late = results["skip"]
    assert len(missing) >= 5 and not late, f"skip runs none of the ticks over a minute late: {missing}, {late}"
    assert missing == list(range(missing[0], missing[-1] + 1)), missing  # one run of seconds
    ticks, missing, late = results["run_once"]
    assert len(missing) >= 4, missing
    assert missing == list(range(missing[0], missing[-1] + 1)), missing
    # Exactly one overdue tick ran, the latest: right after the missed ones.
    assert late == [missing[-1] + 1], (late, missing)
