"""Engine flags of `weft serve` that the README's configuration table
promises, checked on real processes (restarted on one data dir where the
behaviour spans a restart):

* --log-retention-days: entries older than N days are purged at start
  (weft_log_entries_purged_total), newer ones kept; the default keeps them.
* --store-sync full|normal: both run executions; under `full` every commit
  is fsynced, under `normal` only checkpoints are (counted with strace).
* --workers: 0 leaves tasks queued (metrics show the ready backlog) until a
  server with workers runs them; 2 runs at most two http attempts at once.
* --lease-seconds: an in-process attempt's lease in task_queue lasts S
  seconds and is renewed by heartbeats while the attempt runs.
* --worker-drain-timeout: at SIGTERM the in-process workers stop leasing
  and a running attempt that finishes within the timeout is recorded before
  the exit; one that does not is abandoned and runs again after a restart.
* Bad values of these flags stop the start with a usage error.
* Cost of an attempt re-delivered after a crash (docs/COST.md): its start is
  charged once, the lost run's time and request are not.

http tasks call a local threaded http.server (flags_support.Target) that
can hold requests until the test releases them.
"""

from __future__ import annotations

import contextlib
import datetime
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import time

import pytest

import flags_support as fs
import weft_helpers as wh

USAGE_ERROR = 64  # EX_USAGE: swift-argument-parser's exit code for a bad option value


@pytest.fixture(scope="module")
def target():
    t = fs.Target()
    yield t
    t.close()


@pytest.fixture
def restartable(request, tmp_path):
    name = "".join(c if c.isalnum() else "-" for c in request.node.name)[:40]
    r = fs.Restartable(tmp_path, name)
    yield r
    r.teardown()


# ---------------------------------------------------------------------------
# Bad values
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("args, env, message", [
    (["--log-retention-days", "0"], {}, "--log-retention-days must be in 1...36500, got 0"),
    (["--log-retention-days", "week"], {}, "The value 'week' is invalid for '--log-retention-days"),
    ([], {"WEFT_LOG_RETENTION_DAYS": "many"}, "WEFT_LOG_RETENTION_DAYS=many is not a whole number"),
    (["--store-sync", "sometimes"], {}, "--store-sync sometimes: expected one of full, normal"),
    ([], {"WEFT_STORE_SYNC": "off"}, "WEFT_STORE_SYNC=off: expected one of full, normal"),
    (["--workers=-1"], {}, "--workers must be in 0...10000, got -1"),
    (["--lease-seconds", "0"], {}, "--lease-seconds must be in 1...86400, got 0"),
    (["--worker-drain-timeout", "4000"], {}, "--worker-drain-timeout must be in 0...3600, got 4000"),
    ([], {"WEFT_WORKER_DRAIN_TIMEOUT": "soon"}, "WEFT_WORKER_DRAIN_TIMEOUT=soon is not a whole number"),
])
def test_bad_engine_flag_values_stop_the_start(tmp_path, args, env, message):
    res = subprocess.run([str(wh.weft_bin()), "serve", "--port", "0", "--data-dir", str(tmp_path / "data"), *args],
                         capture_output=True, text=True, timeout=30, env={**os.environ, **env})
    assert res.returncode == USAGE_ERROR, (res.returncode, res.stderr)
    assert message in res.stderr, res.stderr
    assert "listening on" not in res.stderr, res.stderr


# ---------------------------------------------------------------------------
# --log-retention-days
# ---------------------------------------------------------------------------


def _purge_ran(srv) -> bool:
    return wh.fetch_metrics(srv).total("weft_store_transaction_duration_seconds_count",
                                       store="logs", operation="purge_logs") >= 1


def test_log_retention_purges_entries_older_than_the_flag(restartable):
    first = restartable.start()
    owner = wh.register_and_login(first, "Retention Owner")
    wf = fs.create_wf(owner, [
        {"key": "one", "name": "One", "action": "log", "config": {"message": "line one"}},
        {"key": "two", "name": "Two", "action": "log", "config": {"message": "line two"}, "dependsOn": ["one"]},
    ])
    done = fs.run(owner, wf["id"])
    assert done["status"] == "Completed", done
    eid = done["executionId"]
    restartable.stop_clean(first)  # flushes the log writer

    # Age three entries in DATA_DIR/logs.sqlite: 5 days, 2 days, 20 hours.
    now = fs.utcnow()
    ages = {1: datetime.timedelta(days=5), 2: datetime.timedelta(days=2), 3: datetime.timedelta(hours=20)}
    db = sqlite3.connect(restartable.data / "logs.sqlite")
    try:
        total = db.execute("SELECT COUNT(*) FROM logs WHERE execution_id = ?", (eid,)).fetchone()[0]
        assert total >= 6, total
        for seq, age in ages.items():
            cur = db.execute("UPDATE logs SET created_at = ? WHERE execution_id = ? AND sequence = ?",
                             (fs.store_text(now - age), eid, seq))
            assert cur.rowcount == 1, seq
        db.commit()
    finally:
        db.close()

    # The default (30 days) keeps all of them.
    default = restartable.start()
    wh.wait_until(lambda: _purge_ran(default), 10, message="the retention job to run at start")
    assert fs.metric(default, "weft_log_entries_purged_total") == 0
    assert len(fs.all_logs(fs.on(owner, default), wf["id"], eid)) == total
    restartable.stop_clean(default)

    # One day: the 5- and 2-day-old entries go, at start; the rest stay.
    short = restartable.start("--log-retention-days", "1")
    wh.wait_until(lambda: fs.metric(short, "weft_log_entries_purged_total") == 2, 10,
                  message=lambda: f"weft_log_entries_purged_total == 2 "
                                  f"(is {fs.metric(short, 'weft_log_entries_purged_total')})")
    entries = fs.all_logs(fs.on(owner, short), wf["id"], eid)
    sequences = [int(e["sequence"]) for e in entries]
    assert sequences == list(range(3, total + 1)), sequences
    assert re.search(r"log retention: deleted 2 entries", short.stderr_text()), short.stderr_tail(2000)
    restartable.stop_clean(short)


# ---------------------------------------------------------------------------
# --store-sync
# ---------------------------------------------------------------------------

TWO_NOOPS = [{"key": "a", "name": "A", "action": "noop", "config": {"output": {"v": 1}}},
             {"key": "b", "name": "B", "action": "transform", "dependsOn": ["a"],
              "config": {"output": {"got": "{{ tasks.a.output.v }}"}}}]


@pytest.mark.parametrize("mode", ["full", "normal"])
def test_store_sync_modes_run_executions(server_factory, mode):
    srv = server_factory(*wh.API_SERVER_ARGS, "--store-sync", mode)
    owner = wh.register_and_login(srv, "Sync Owner")
    wf = fs.create_wf(owner, TWO_NOOPS)
    for _ in range(3):
        done = fs.run(owner, wf["id"])
        assert done["status"] == "Completed", done
        assert fs.by_key(done)["b"]["output"] == {"got": 1}, done


def _syncs_during_executions(server_factory, tmp_path, mode: str, n: int) -> int:
    """fsync + fdatasync calls of the server (all threads) while it runs `n`
    executions one after another (each waited for, so no two share a commit)."""
    srv = server_factory(*wh.API_SERVER_ARGS, "--store-sync", mode)
    owner = wh.register_and_login(srv, "Fsync Counter")
    wf = fs.create_wf(owner, TWO_NOOPS)
    assert fs.run(owner, wf["id"])["status"] == "Completed"  # warm up
    out, err = tmp_path / f"strace-{mode}.txt", tmp_path / f"strace-{mode}.err"
    with open(err, "wb") as err_file:
        tracer = subprocess.Popen(["strace", "-f", "-c", "-e", "trace=fsync,fdatasync", "-o", str(out),
                                   "-p", str(srv.pid)], stdout=subprocess.DEVNULL, stderr=err_file)
    try:
        def attached():
            text = err.read_text(errors="replace")
            if tracer.poll() is not None or "Operation not permitted" in text:
                _no_strace(f"strace cannot attach here: {text.strip()[:300]}")
            return "attached" in text

        wh.wait_until(attached, 10, message="strace to attach")
        for _ in range(n):
            assert fs.run(owner, wf["id"])["status"] == "Completed"
    finally:
        tracer.send_signal(signal.SIGINT)  # detach; the summary goes to `out`
        tracer.wait(timeout=20)
    calls = 0
    for line in out.read_text().splitlines():
        fields = line.split()
        if fields and fields[-1] in ("fsync", "fdatasync"):
            calls += int(fields[3])
    return calls


def _no_strace(why: str):
    """The fsync count needs strace. Where it cannot run (a container without
    ptrace), the test fails unless WEFT_ALLOW_NO_STRACE=1 says to skip it, so
    a CI that cannot count fsyncs does not pass silently."""
    if os.environ.get("WEFT_ALLOW_NO_STRACE") == "1":
        pytest.skip(why)
    pytest.fail(why + " (set WEFT_ALLOW_NO_STRACE=1 to skip this check)", pytrace=False)


def test_store_sync_full_fsyncs_every_commit_and_normal_does_not(server_factory, tmp_path):
    """README: `full` fsyncs every commit, `normal` only at checkpoints. Each
    execution here is at least one commit of its own, so `full` makes at
    least one sync per execution and `normal` far fewer."""
    if shutil.which("strace") is None:
        _no_strace("strace is not installed (Debian package strace; scripts/install-deps.sh installs it)")
    n = 20
    full = _syncs_during_executions(server_factory, tmp_path, "full", n)
    normal = _syncs_during_executions(server_factory, tmp_path, "normal", n)
    assert full >= n, f"--store-sync full: {full} fsync/fdatasync calls for {n} executions (normal: {normal})"
    assert normal <= full // 2, f"--store-sync normal: {normal} syncs, full: {full}"


# ---------------------------------------------------------------------------
# --workers
# ---------------------------------------------------------------------------


def test_workers_zero_leaves_tasks_queued_until_a_server_with_workers(restartable):
    idle = restartable.start("--workers", "0")
    owner = wh.register_and_login(idle, "Idle Owner")
    wf = fs.create_wf(owner, TWO_NOOPS)
    eids = [fs.execute(owner, wf["id"]) for _ in range(3)]

    def backlog():
        m = wh.fetch_metrics(idle)
        return m.total("weft_queue_depth", queue="builtin", state="ready") >= 3 and m

    # Depths are sampled once a second: by then the tasks had time to run.
    m = wh.wait_until(backlog, 10, message="weft_queue_depth{queue=builtin,state=ready} >= 3")
    assert m.total("weft_queue_depth", queue="builtin", state="leased") == 0
    assert m.total("weft_workers", state="busy") == 0
    for eid in eids:
        e = fs.get_exec(owner, wf["id"], eid)
        assert e["status"] == "Running", e
        tasks = fs.by_key(e)
        assert (tasks["a"]["status"], tasks["a"]["attempt"]) == ("Queued", 1), tasks
        assert "startedAt" not in tasks["a"], tasks
        assert tasks["b"]["status"] == "Pending", tasks
    with contextlib.closing(fs.read_only(restartable.data / "weft.sqlite")) as db:
        rows = db.execute("SELECT execution_id, task_key, lease_token FROM task_queue WHERE queue = 'builtin'").fetchall()
    assert sorted(r["execution_id"] for r in rows) == sorted(eids), [dict(r) for r in rows]
    assert all(r["task_key"] == "a" and r["lease_token"] is None for r in rows), [dict(r) for r in rows]
    restartable.stop_clean(idle)

    # The queue is durable: a server with workers runs them.
    busy = restartable.start()
    owner = fs.on(owner, busy)
    for eid in eids:
        done = fs.wait_status(owner, wf["id"], eid)
        assert done["status"] == "Completed", done
        assert fs.by_key(done)["b"]["output"] == {"got": 1}, done


def test_workers_two_run_at_most_two_http_attempts_at_once(server_factory, target):
    # One organization here: it may hold every slot (the default share is half).
    srv = server_factory(*wh.API_SERVER_ARGS, "--workers", "2", "--org-worker-share", "100")
    owner = wh.register_and_login(srv, "Two Workers")
    tag = fs.uid()
    wf = fs.create_wf(owner, [{"key": "call", "name": "Call", "action": "http",
                               "config": {"url": target.url(f"/hold/{tag}")}}])
    try:
        eids = [fs.execute(owner, wf["id"]) for _ in range(6)]
        wh.wait_until(lambda: target.holding(tag) == 2, 10, message=lambda: f"2 held requests ({target.holding(tag)})")

        def backlog():
            m = wh.fetch_metrics(srv)
            return m.total("weft_queue_depth", queue="builtin", state="ready") == 4 and m

        m = wh.wait_until(backlog, 10, message="weft_queue_depth{queue=builtin,state=ready} == 4")
        assert m.total("weft_queue_depth", queue="builtin", state="leased") == 2
        assert (m.total("weft_workers", state="busy"), m.total("weft_workers", state="idle")) == (2, 0)
        # A second or more has passed with two attempts held: no third started.
        assert target.holding(tag) == 2 and len(target.arrivals(f"/hold/{tag}")) == 2
        statuses = sorted(fs.by_key(fs.get_exec(owner, wf["id"], e))["call"]["status"] for e in eids)
        assert statuses == ["Queued"] * 4 + ["Running"] * 2, statuses
    finally:
        target.release(tag)
    for eid in eids:
        assert fs.wait_status(owner, wf["id"], eid)["status"] == "Completed"
    assert len(target.arrivals(f"/hold/{tag}")) == 6
    assert target.most_held(tag) == 2


# ---------------------------------------------------------------------------
# --lease-seconds
# ---------------------------------------------------------------------------


def test_lease_seconds_bounds_the_lease_and_heartbeats_renew_it(server_factory, target):
    lease = 3
    srv = server_factory(*wh.API_SERVER_ARGS, "--lease-seconds", str(lease))
    owner = wh.register_and_login(srv, "Lease Owner")
    tag = fs.uid()
    wf = fs.create_wf(owner, [{"key": "call", "name": "Call", "action": "http",
                               "config": {"url": target.url(f"/hold/{tag}")}}])
    db = fs.read_only(srv.data_dir / "weft.sqlite")
    try:
        eid = fs.execute(owner, wf["id"])
        wh.wait_until(lambda: target.holding(tag) == 1, 10, message="the held request")

        def row():
            r = db.execute("SELECT lease_token, lease_expires_at, deliveries FROM task_queue "
                           "WHERE execution_id = ? AND task_key = 'call'", (eid,)).fetchone()
            assert r is not None and r["lease_token"], dict(r) if r else None
            return r

        first = row()
        first_expiry = fs.store_time(first["lease_expires_at"])
        left = (first_expiry - fs.utcnow()).total_seconds()
        # Set to now + S when leased, renewed every S/3: between 2S/3 and S ahead.
        assert 1.0 < left <= lease + 0.5, f"lease ends {left:.2f}s from now; --lease-seconds {lease}"

        # Heartbeats every S/3 move the expiry forward while the attempt runs.
        moved = wh.wait_until(lambda: (lambda r: r if fs.store_time(r["lease_expires_at"]) > first_expiry else None)(row()),
                              lease, message="a heartbeat to extend the lease")
        assert moved["lease_token"] == first["lease_token"]
        left = (fs.store_time(moved["lease_expires_at"]) - fs.utcnow()).total_seconds()
        assert 0 < left <= lease + 0.5, left

        # Past the first expiry the attempt still holds its lease: it was not
        # delivered again.
        wh.wait_until(lambda: fs.utcnow() > first_expiry + datetime.timedelta(seconds=0.3), lease + 2)
        now_row = row()
        assert now_row["lease_token"] == first["lease_token"] and now_row["deliveries"] == first["deliveries"]
        assert fs.store_time(now_row["lease_expires_at"]) > fs.utcnow()
        assert len(target.arrivals(f"/hold/{tag}")) == 1
        assert fs.metric(srv, "weft_lease_expiries_total", queue="builtin") == 0
        task = fs.by_key(fs.get_exec(owner, wf["id"], eid))["call"]
        assert (task["status"], task["attempt"]) == ("Running", 1), task
    finally:
        target.release(tag)
        db.close()
    done = fs.wait_status(owner, wf["id"], eid)
    assert done["status"] == "Completed", done
    with contextlib.closing(fs.read_only(srv.data_dir / "weft.sqlite")) as again:
        assert again.execute("SELECT COUNT(*) FROM task_queue WHERE execution_id = ?", (eid,)).fetchone()[0] == 0


# ---------------------------------------------------------------------------
# Cost of a re-delivered attempt (docs/COST.md)
# ---------------------------------------------------------------------------


def test_attempt_redelivered_after_a_crash_is_charged_once(restartable, target):
    """docs/COST.md: an attempt lost in a crash is charged its start but not
    its run time; its re-run is charged its run time; requests and bytes are
    added when an attempt returns. So after SIGKILL mid-attempt and a
    restart: one attempt, one request (the lost one never returned), the
    re-run's bytes, and worker time of the re-run only."""
    first = restartable.start()
    owner = wh.register_and_login(first, "Crash Payer")
    tag = fs.uid()
    path = f"/hold/{tag}"
    wf = fs.create_wf(owner, [{"key": "call", "name": "Call", "action": "http", "config": {"url": target.url(path)}}])
    try:
        eid = fs.execute(owner, wf["id"])
        wh.wait_until(lambda: target.holding(tag) == 1, 10, message="the first request")
        running = fs.wait_task(owner, wf["id"], eid, "call", {"Running"})
        assert fs.breakdown(running)["taskAttempts"] == 1, running
        # Let the lost run last a second, so charging it would show.
        lost_from = target.arrivals(path)[0]
        wh.wait_until(lambda: time.monotonic() - lost_from >= 1.0, 5)
        first.kill()
        assert first.killed

        restarted_at = time.monotonic()
        second = restartable.start()
        owner = fs.on(owner, second)
        wh.wait_until(lambda: len(target.arrivals(path)) == 2, 15, message="the re-delivered attempt's request")
    finally:
        target.release(tag)
    done = fs.wait_status(owner, wf["id"], eid)
    finished_at = time.monotonic()
    assert done["status"] == "Completed", done
    task = fs.by_key(done)["call"]
    assert task["attempt"] == 1, task
    assert task["output"]["body"] == {"held": tag}, task
    b = fs.breakdown(done)
    assert b["taskAttempts"] == 1, b
    assert b["attemptsDollars"] == pytest.approx(0.000025), b
    assert b["requests"] == 1, b
    assert b["egressBytes"] == len(b'{"held": "%s"}' % tag.encode()), b
    assert 0 < b["workerSeconds"] < 1.0, f"the lost run was charged: {b}"
    assert b["workerSeconds"] <= finished_at - restarted_at + 0.1, b
    assert done["cost"] == pytest.approx(
        b["attemptsDollars"] + b["computeDollars"] + b["requestsDollars"] + b["egressDollars"]), done
    restartable.stop_clean(second)


# ---------------------------------------------------------------------------
# --worker-drain-timeout
# ---------------------------------------------------------------------------


def _task_statuses(db, eid: str) -> dict:
    """Task key -> status of an execution, as committed in the store."""
    return {key: status for key, status in db.execute(
        "SELECT t.key, te.status FROM task_executions te JOIN tasks t ON t.id = te.task_id "
        "WHERE te.execution_id = ?", (eid,)).fetchall()}


def _sigterm(srv) -> float:
    srv.send_signal(signal.SIGTERM)
    return time.monotonic()


def test_worker_drain_lets_a_running_attempt_finish_before_the_exit(restartable, target):
    first = restartable.start("--worker-drain-timeout", "20")
    owner = wh.register_and_login(first, "Drain Owner")
    tag = fs.uid()
    path = f"/hold/{tag}"
    wf = fs.create_wf(owner, [{"key": "call", "name": "Call", "action": "http", "config": {"url": target.url(path)}},
                              {"key": "after", "name": "After", "action": "http", "dependsOn": ["call"],
                               "config": {"url": target.url(f"/ok/{tag}")}}])
    try:
        eid = fs.execute(owner, wf["id"])
        wh.wait_until(lambda: target.holding(tag) == 1, 10, message="the held request")
        _sigterm(first)
        wh.wait_until(lambda: "workers: stopped leasing" in first.stderr_text(), 10,
                      message="the pool's drain to start")
        # The drain waits for the attempt: the server is still up.
        assert first.running(), first.stderr_tail(2000)
    finally:
        target.release(tag)
    rc = first.wait(20)
    assert rc == 0, f"exit {rc}\n{first.stderr_tail(3000)}"
    assert "workers: drained 1 attempt(s)" in first.stderr_text(), first.stderr_tail(2000)

    # Its outcome was committed before the exit; the next task was not started
    # by the stopping pool, and runs after the restart.
    with contextlib.closing(fs.read_only(first.data_dir / "weft.sqlite")) as db:
        rows = _task_statuses(db, eid)
    assert rows["call"] == "Completed", rows
    assert rows["after"] in ("Pending", "Queued"), rows
    assert target.arrivals(f"/ok/{tag}") == []

    second = restartable.start()
    owner = fs.on(owner, second)
    done = fs.wait_status(owner, wf["id"], eid)
    assert done["status"] == "Completed", done
    tasks = fs.by_key(done)
    assert tasks["call"]["attempt"] == 1 and tasks["after"]["attempt"] == 1, tasks
    assert len(target.arrivals(path)) == 1, "the drained attempt ran again"
    assert len(target.arrivals(f"/ok/{tag}")) == 1
    restartable.stop_clean(second)


def test_worker_drain_deadline_abandons_the_attempt_and_a_restart_runs_it_again(restartable, target):
    first = restartable.start("--worker-drain-timeout", "1")
    owner = wh.register_and_login(first, "Abandon Owner")
    tag = fs.uid()
    path = f"/hold/{tag}"
    wf = fs.create_wf(owner, [{"key": "call", "name": "Call", "action": "http", "config": {"url": target.url(path)}}])
    try:
        eid = fs.execute(owner, wf["id"])
        wh.wait_until(lambda: target.holding(tag) == 1, 10, message="the held request")
        sent = _sigterm(first)
        rc = first.wait(15)
        took = time.monotonic() - sent
        assert rc == 0, f"exit {rc}\n{first.stderr_tail(3000)}"
        assert took >= 0.9, f"exited {took:.2f}s after SIGTERM, before the 1 s worker drain deadline"
        assert "workers: drain deadline (1.0 seconds) passed with 1 attempt(s) running" in first.stderr_text(), \
            first.stderr_tail(2000)
        with contextlib.closing(fs.read_only(first.data_dir / "weft.sqlite")) as db:
            status = _task_statuses(db, eid)["call"]
        assert status == "Running", f"the abandoned attempt's state is {status}"

        second = restartable.start()
        owner = fs.on(owner, second)
        # Recovery releases the dead process's lease at once: the attempt runs again.
        wh.wait_until(lambda: len(target.arrivals(path)) == 2, 15, message="the abandoned attempt to run again")
    finally:
        target.release(tag)
    done = fs.wait_status(owner, wf["id"], eid)
    assert done["status"] == "Completed", done
    assert fs.by_key(done)["call"]["attempt"] == 1, done
    restartable.stop_clean(second)
