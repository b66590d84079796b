#!/usr/bin/env python3
"""Step-10 benchmark: analytics queries over a year of executions.

    python3 loadtest/bench-analytics.py                                   # seed 1M + ~1.1M executions, rebuild, measure
    python3 loadtest/bench-analytics.py --data-dir /var/tmp/weft-analytics   # keep the seeded store
    python3 loadtest/bench-analytics.py --data-dir /var/tmp/weft-analytics --reuse   # measure it again
    python3 loadtest/bench-analytics.py --t1-executions 10000 --t2-workflows 20 --requests 100   # quick check

Targets (docs/BENCHMARKS.md, Step 10):

  T1  GET /workflows/{id}/stats of a workflow with 1,000,000 stored executions,
      with window=month and with an explicit from/to covering the whole seeded
      span: p99 under 50 ms;
  T2  GET /analytics/workflow-executions?orgId=ORG&timeZone=Europe/Berlin&since=<a
      year ago> of an organization with 1,000 workflows and a year of data:
      p99 under 100 ms.

Method:

1. `BIN serve --host 127.0.0.1 --port 0 --data-dir DIR --store-sync normal
   --scrypt-log-n 10 --token-ttl 7200` on a fresh data dir; a user registers
   (its organization is made at registration and found with GET /orgs) and
   creates, over REST, one workflow of three noop tasks a -> b -> c and
   --t2-workflows (1,000) workflows of one noop task, all in that organization.
   The server is stopped.
2. Executions are written straight into DIR/weft.sqlite with Python's sqlite3
   (executemany, 100,000 executions per transaction, synchronous=OFF), as the
   engine would have left them (SQLiteMigrations.swift): workflow_executions
   and task_executions rows with time-ordered ids (`exe_`/`tex_` + 10
   characters of creation time + a 16-digit counter), dates as
   "YYYY-MM-DD HH:MM:SS.mmm" UTC, created_at <= started_at <= completed_at,
   task_id = the task's row id, task_key its key, cost columns filled
   (task_executions.cost only when the column exists).
   T1: --t1-executions of the three-task workflow over the --t1-days (30)
   whole hours before the seeding hour, evenly spread with jitter; 95 %
   Completed, 5 % Failed (one task fails, at attempt 1 or 2, the later ones
   Cancelled); 3 % of task runs need a second attempt (about 1 s backoff);
   task times log-normal (median 300 ms), queue waits of a few ms; trigger api
   (70 %) or schedule (30 %); cost about $0.0001 per execution.
   T2: for each one-task workflow --t2-per-day (3) executions a day at random
   times over the --t2-days (365) days before the seeding hour (same
   distributions, task median 1 s).
   Hourly counts of what was written go to DIR/.bench-analytics.json: the
   expected answers are computed from them.
3. `BIN analytics rebuild --data-dir DIR` recomputes the rollups from the
   executions; its wall time and output are printed.
4. The server is started again on DIR; after --warmup (20) unmeasured requests
   per connection, --requests (500) requests of each kind are measured, one at a
   time on one keep-alive HTTP/1.1 connection (http.client), or split over
   --concurrency connections (threads). Latency is client-side, from sending
   the request to the last byte of the body. Printed per kind: p50/p90/p99/max,
   mean, req/s, the server's CPU per request, the server-side mean from
   weft_analytics_query_duration_seconds (when exported).

Sanity of every measured answer (checked after the timing): T1 `finished`,
`completed` and `failed` equal the executions seeded in the answer's
[windowStart, windowEnd) (whole UTC hours; rollups are keyed by the hour an
execution was created); T2 the sum of the daily `started` equals the executions
seeded in [since, now) in the organization: T2's and T1's, since T1's workflow
is in the same organization (int64 values are strings in proto3 JSON; a zero
is omitted). `since` is a whole UTC hour and the seeded data ends before the
seeding hour, so no hourly bucket is cut by a bound.

Verdict per target (strict): PASS only if every request answered 200, every
answer passed the sanity check and the p99 is under the bound (both T1 kinds
for T1); else FAIL. Exit 1 unless both pass.

--reuse measures an existing --data-dir seeded by this script (steps 1 and 2
skipped; step 3 too, unless the rebuild never succeeded on it: a store seeded
with a build that has no `analytics rebuild` is rebuilt by the next run with
--reuse). Seed with the build under test: a store seeded before the migration
that adds task_executions.cost has task costs of 0.

Loopback only; every wait is bounded.
"""

from __future__ import annotations

import argparse
import atexit
import datetime
import json
import math
import os
import platform
import random
import shlex
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import seed_workflows as sw  # noqa: E402
from weft_process import WeftProcess, cpu_ticks, load_bench_executions  # noqa: E402

bx = load_bench_executions()  # pct, CpuWatch, other_build, metric_sum, parse_metrics

CLK_TCK = os.sysconf("SC_CLK_TCK")
HOST = "127.0.0.1"
T1_BOUND_MS = 50.0
T2_BOUND_MS = 100.0
TIME_ZONE = "Europe/Berlin"
MARKER = ".bench-analytics.json"
HOUR_MS = 3_600_000
DAY_MS = 86_400_000
BATCH = 100_000          # executions per transaction
FAIL_P = 0.05            # executions that fail
RETRY_P = 0.03           # task runs that need a second attempt
SCHEDULE_P = 0.30        # executions started by a schedule (the rest: api)
ATTEMPT_DOLLARS = 0.00002
WORKER_SECOND_DOLLARS = 0.00004
RETRY_ERRORS = ["connection reset by peer", "HTTP 503 from upstream", "attempt timed out after 30s"]
FAIL_ERRORS = ["HTTP 500 from upstream", "invalid response: missing field \"id\"", "attempt timed out after 30s"]


def log(msg):
    print(f"[bench-analytics] {msg}", file=sys.stderr, flush=True)


# ------------------------------------------------------------------ ids and dates as the store writes them

CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_LO3 = [CROCKFORD[i >> 10] + CROCKFORD[(i >> 5) & 31] + CROCKFORD[i & 31] for i in range(1 << 15)]
_MID2 = [CROCKFORD[i >> 5] + CROCKFORD[i & 31] for i in range(1 << 10)]
_hi5 = {}
_day_text = {}


def time_chars(ms):
    """The 10 Crockford base-32 characters of a millisecond time, as IDGenerator writes them."""
    hi = ms >> 25
    h = _hi5.get(hi)
    if h is None:
        h = _hi5[hi] = "".join(CROCKFORD[(hi >> s) & 31] for s in (20, 15, 10, 5, 0))
    return h + _MID2[(ms >> 15) & 1023] + _LO3[ms & 32767]


def make_id(prefix, ms, n):
    """prefix_ + 26 characters: the creation time (sortable) and a 16-digit counter (unique)."""
    return f"{prefix}_{time_chars(ms)}{n:016d}"


def store_date(ms):
    """"YYYY-MM-DD HH:MM:SS.mmm" UTC (StoreDate.text)."""
    day, rest = divmod(ms, DAY_MS)
    prefix = _day_text.get(day)
    if prefix is None:
        prefix = _day_text[day] = datetime.datetime.fromtimestamp(day * 86400, datetime.timezone.utc).strftime("%Y-%m-%d ")
    s, milli = divmod(rest, 1000)
    m, s = divmod(s, 60)
    h, m = divmod(m, 60)
    return f"{prefix}{h:02d}:{m:02d}:{s:02d}.{milli:03d}"


def rfc3339(ms):
    return datetime.datetime.fromtimestamp(ms / 1000, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_rfc3339_ms(text):
    """Milliseconds since the epoch of an RFC 3339 timestamp (fractions of any length)."""
    if not text:
        return None
    t = text.strip()
    zone = ""
    if t.endswith("Z") or t.endswith("z"):
        t, zone = t[:-1], "+00:00"
    elif len(t) > 6 and t[-6] in "+-" and t[-3] == ":":
        t, zone = t[:-6], t[-6:]
    frac = ""
    if "." in t:
        t, frac = t.split(".", 1)
    dt = datetime.datetime.fromisoformat(t + zone)
    ms = int(dt.timestamp()) * 1000
    if frac:
        ms += int((frac + "000")[:3])
    return ms


def i64(v):
    """A proto3 JSON int64 (a string; omitted when 0)."""
    return int(v) if v not in (None, "") else 0


# ------------------------------------------------------------------ execution rows

class Writer:
    """Generates executions as the engine leaves them and writes them with executemany."""

    def __init__(self, db, rng, user_id, has_task_cost):
        self.db, self.rng, self.user_id = db, rng, user_id
        self.has_task_cost = has_task_cost
        self.counter = 0
        self.exec_rows, self.task_rows = [], []
        self.exec_sql = ("INSERT INTO workflow_executions (execution_id, workflow_id, workflow_version, status, input, "
                         "error, trigger, cost, created_by, created_at, started_at, completed_at, priority, "
                         "cost_task_attempts, cost_attempts_dollars, cost_worker_seconds, cost_compute_dollars, "
                         "scheduled_at) VALUES (?,?,?,?,'{}',?,?,?,?,?,?,?,0,?,?,?,?,?)")
        cols = "task_execution_id, task_id, task_key, execution_id, status, attempt, error, started_at, completed_at"
        if has_task_cost:
            self.task_sql = f"INSERT INTO task_executions ({cols}, cost) VALUES (?,?,?,?,?,?,?,?,?,?)"
        else:
            self.task_sql = f"INSERT INTO task_executions ({cols}) VALUES (?,?,?,?,?,?,?,?,?)"
        self.written = 0
        self.in_txn = 0

    def execution(self, workflow_id, version, tasks, created, task_median_ms, sigma):
        """One finished execution of a chain of `tasks` [(task_id, key)] created at `created` (ms);
        returns True if it completed, False if it failed."""
        rng = self.rng
        self.counter += 1
        exec_id = make_id("exe", created, self.counter)
        mu = math.log(task_median_ms)
        failing = rng.randrange(len(tasks)) if rng.random() < FAIL_P else -1
        ready = created
        attempts_total, worker_s, error = 0, 0.0, None
        rows = self.task_rows
        for i, (task_id, key) in enumerate(tasks):
            self.counter += 1
            tex_id = make_id("tex", created, self.counter)
            if failing >= 0 and i > failing:
                # Waiting tasks of a failed execution are cancelled.
                row = (tex_id, task_id, key, exec_id, "Cancelled", 0, None, None, store_date(ready))
                rows.append(row + (0.0,) if self.has_task_cost else row)
                continue
            start = ready + int(rng.lognormvariate(1.4, 0.8))          # queue wait, median ~4 ms
            run1 = max(1, int(rng.lognormvariate(mu, sigma)))
            if i == failing:
                attempt = 2 if rng.random() < 0.5 else 1
            else:
                attempt = 2 if rng.random() < RETRY_P else 1
            run_ms, end, task_error = run1, start + run1, None
            if attempt == 2:
                backoff = int(1000 * (0.8 + 0.4 * rng.random()))
                run2 = max(1, int(rng.lognormvariate(mu, sigma)))
                end += backoff + int(rng.lognormvariate(1.4, 0.8)) + run2
                run_ms += run2
                task_error = rng.choice(RETRY_ERRORS)
            status = "Completed"
            if i == failing:
                status, task_error = "Failed", rng.choice(FAIL_ERRORS)
                error = f'task "{key}" failed: {task_error}'
            cost = attempt * ATTEMPT_DOLLARS + run_ms / 1000 * WORKER_SECOND_DOLLARS
            attempts_total += attempt
            worker_s += run_ms / 1000
            row = (tex_id, task_id, key, exec_id, status, attempt, task_error, store_date(start), store_date(end))
            rows.append(row + (cost,) if self.has_task_cost else row)
            ready = end
        completed = ready + 1 + rng.randrange(3)
        trigger, scheduled = "api", None
        if rng.random() < SCHEDULE_P:
            trigger, scheduled = "schedule", store_date(created - 5 - rng.randrange(45))
        attempts_dollars = attempts_total * ATTEMPT_DOLLARS
        compute_dollars = worker_s * WORKER_SECOND_DOLLARS
        self.exec_rows.append((
            exec_id, workflow_id, version, "Completed" if failing < 0 else "Failed", error, trigger,
            attempts_dollars + compute_dollars, self.user_id, store_date(created), store_date(created + rng.randrange(2)),
            store_date(completed), attempts_total, attempts_dollars, worker_s, compute_dollars, scheduled))
        if len(self.exec_rows) >= 20_000:
            self.flush()
        return failing < 0

    def flush(self, commit=False):
        if self.exec_rows:
            if not self.in_txn:
                self.db.execute("BEGIN")
            self.db.executemany(self.exec_sql, self.exec_rows)
            self.db.executemany(self.task_sql, self.task_rows)
            self.in_txn += len(self.exec_rows)
            self.written += len(self.exec_rows)
            self.exec_rows, self.task_rows = [], []
        if self.in_txn and (commit or self.in_txn >= BATCH):
            self.db.execute("COMMIT")
            self.in_txn = 0


def table_columns(db, table):
    """[(name, notnull, default)] of a table."""
    return [(r[1], r[3], r[4]) for r in db.execute(f"PRAGMA table_info({table})")]


def check_columns(db, table, written):
    """Every NOT NULL column without a default must be one this script writes."""
    cols = table_columns(db, table)
    missing = [c for c, notnull, default in cols if notnull and default is None and c not in written]
    if missing:
        raise SystemExit(f"{table} has NOT NULL columns without a default that this script does not write: {missing} "
                         "(a newer schema? extend Writer)")
    others = [c for c, _, _ in cols if c not in written]
    return [c for c, _, _ in cols], others


EXEC_COLS = {"execution_id", "workflow_id", "workflow_version", "status", "input", "error", "trigger", "cost",
             "created_by", "created_at", "started_at", "completed_at", "priority", "cost_task_attempts",
             "cost_attempts_dollars", "cost_worker_seconds", "cost_compute_dollars", "scheduled_at"}
TASK_COLS = {"task_execution_id", "task_id", "task_key", "execution_id", "status", "attempt", "error", "started_at",
             "completed_at", "cost"}


def seed_sqlite(data_dir, plan, a):
    """Step 2: writes the executions; returns the manifest (hourly counts) and timings."""
    path = os.path.join(data_dir, "weft.sqlite")
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA busy_timeout = 10000")
    journal = db.execute("PRAGMA journal_mode").fetchone()[0]
    db.execute("PRAGMA synchronous = OFF")
    db.execute("PRAGMA cache_size = -1048576")   # 1 GiB
    db.execute("PRAGMA temp_store = MEMORY")
    migrations = [r[0] for r in db.execute("SELECT identifier FROM grdb_migrations ORDER BY rowid")]
    exec_cols, exec_other = check_columns(db, "workflow_executions", EXEC_COLS)
    task_cols, task_other = check_columns(db, "task_executions", TASK_COLS)
    has_task_cost = "cost" in task_cols
    triggers = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'trigger' "
                                         "AND tbl_name IN ('workflow_executions', 'task_executions')")]
    log(f"schema: migrations {', '.join(migrations)}; journal_mode {journal}; task_executions.cost "
        f"{'present' if has_task_cost else 'ABSENT (task costs not written)'}; left to their defaults: "
        f"workflow_executions {exec_other}, task_executions {task_other}"
        + (f"; SQL triggers on them: {triggers}" if triggers else ""))
    existing = db.execute("SELECT count(*) FROM workflow_executions").fetchone()[0]
    if existing:
        raise SystemExit(f"{path} already holds {existing} executions; seed a fresh data dir")
    user_id = db.execute("SELECT id FROM users WHERE email = ?", (plan["email"],)).fetchone()[0]

    def task_rows(wf):
        rows = db.execute("SELECT id, key FROM tasks WHERE workflow_id = ? AND deleted_at IS NULL ORDER BY position",
                          (wf,)).fetchall()
        version = db.execute("SELECT version FROM workflows WHERE id = ?", (wf,)).fetchone()[0]
        return [(r[0], r[1]) for r in rows], version

    t1_tasks, t1_version = task_rows(plan["t1_workflow"])
    if [k for _, k in t1_tasks] != ["a", "b", "c"]:
        raise SystemExit(f"T1 workflow tasks in the store: {t1_tasks}")
    t2 = []
    for wf in plan["t2_workflows"]:
        tasks, version = task_rows(wf)
        if len(tasks) != 1:
            raise SystemExit(f"workflow {wf}: {len(tasks)} tasks in the store, expected 1")
        t2.append((wf, version, tasks))

    rng = random.Random(f"weft-analytics-{a.seed}")
    w = Writer(db, rng, user_id, has_task_cost)
    end = plan["span_end_ms"]
    t1_hours, t2_hours = {}, {}

    # T1: evenly spread over the span, with jitter (creation times ascending).
    n1 = a.t1_executions
    t1_start = end - a.t1_days * DAY_MS
    t0 = time.monotonic()
    step = max(1, n1 // 10)
    span = end - t1_start
    for i in range(n1):
        created = t1_start + int((i + rng.random()) * span / n1)
        ok = w.execution(plan["t1_workflow"], t1_version, t1_tasks, created, 300, 0.5)
        c = t1_hours.setdefault(created // HOUR_MS, [0, 0])
        c[0 if ok else 1] += 1
        if (i + 1) % step == 0:
            w.flush()
            log(f"T1: {i + 1}/{n1} executions, {(i + 1) / (time.monotonic() - t0):.0f}/s")
    w.flush(commit=True)
    t1_s = time.monotonic() - t0

    # T2: day by day (oldest first), PER_DAY at random times for each workflow, ascending within the day.
    t0 = time.monotonic()
    t2_start = end - a.t2_days * DAY_MS
    whole, frac = int(a.t2_per_day), a.t2_per_day - int(a.t2_per_day)
    n2 = 0
    for d in range(a.t2_days):
        day0 = t2_start + d * DAY_MS
        todo = []
        for wf, version, tasks in t2:
            for _ in range(whole + (1 if frac and rng.random() < frac else 0)):
                todo.append((day0 + rng.randrange(DAY_MS), wf, version, tasks))
        todo.sort(key=lambda x: x[0])
        for created, wf, version, tasks in todo:
            w.execution(wf, version, tasks, created, 1000, 0.6)
            h = created // HOUR_MS
            t2_hours[h] = t2_hours.get(h, 0) + 1
        n2 += len(todo)
        if (d + 1) % max(1, a.t2_days // 10) == 0:
            log(f"T2: day {d + 1}/{a.t2_days}, {n2} executions, {n2 / (time.monotonic() - t0):.0f}/s")
    w.flush(commit=True)
    t2_s = time.monotonic() - t0

    t0 = time.monotonic()
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    ck_s = time.monotonic() - t0
    got1 = db.execute("SELECT count(*) FROM workflow_executions WHERE workflow_id = ?", (plan["t1_workflow"],)).fetchone()[0]
    total = db.execute("SELECT count(*) FROM workflow_executions").fetchone()[0]
    tasks_total = db.execute("SELECT count(*) FROM task_executions").fetchone()[0]
    db.close()
    if got1 != n1 or total != n1 + n2:
        raise SystemExit(f"store holds {total} executions ({got1} of T1); written {n1} + {n2}")
    return {
        "t1_hours": {str(h): c for h, c in sorted(t1_hours.items())},
        "t2_hours": {str(h): c for h, c in sorted(t2_hours.items())},
        "t1_executions": n1, "t2_executions": n2, "task_executions": tasks_total,
        "t1_span_ms": [t1_start, end], "t2_span_ms": [t2_start, end],
        "task_cost_written": has_task_cost, "migrations_at_seeding": migrations,
        "timings_s": {"t1": round(t1_s, 1), "t2": round(t2_s, 1), "checkpoint": round(ck_s, 1)},
    }


# ------------------------------------------------------------------ step 1: REST

def create_workflows(port, token, org_id, n_t2, threads=8):
    """The T1 workflow (a -> b -> c) and n_t2 one-task workflows; returns their ids."""
    retry = {"maxAttempts": 2, "initialBackoff": "1s"}
    c = sw.Client(HOST, port, token)
    body = {"name": "Analytics bench: a-b-c", "description": "Step-10 benchmark workflow (T1).",
            "tasks": [{"key": "a", "name": "Fetch rows", "action": "noop", "retry": retry},
                      {"key": "b", "name": "Transform rows", "action": "noop", "dependsOn": ["a"], "retry": retry},
                      {"key": "c", "name": "Load rows", "action": "noop", "dependsOn": ["b"], "retry": retry}]}
    status, payload = c.request("POST", "/workflows", body)
    c.close()
    if status != 201:
        raise SystemExit(f"POST /workflows (T1): HTTP {status}: {payload[:300]!r}")
    wf = json.loads(payload)
    if wf.get("orgId") != org_id:
        raise SystemExit(f"the T1 workflow landed in organization {wf.get('orgId')!r}, not {org_id}")
    t1 = wf["id"]

    ids = [None] * n_t2
    errors = []
    lock = threading.Lock()
    nxt = iter(range(n_t2))

    def worker():
        cl = sw.Client(HOST, port, token)
        try:
            while True:
                with lock:
                    i = next(nxt, None)
                if i is None or errors:
                    return
                b = {"name": f"Analytics bench workflow {i:04d}", "description": "Step-10 benchmark workflow (T2).",
                     "tasks": [{"key": "run", "name": "Run", "action": "noop", "retry": retry}]}
                st, pl = cl.request("POST", "/workflows", b)
                if st != 201:
                    with lock:
                        errors.append(f"workflow {i}: HTTP {st}: {pl[:300]!r}")
                    return
                d = json.loads(pl)
                if d.get("orgId") != org_id:
                    with lock:
                        errors.append(f"workflow {i} landed in organization {d.get('orgId')!r}")
                    return
                ids[i] = d["id"]
        finally:
            cl.close()

    ts = [threading.Thread(target=worker, daemon=True) for _ in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(600)
    if errors or any(x is None for x in ids):
        raise SystemExit("creating workflows failed: " + (errors[0] if errors else "timed out"))
    return t1, ids


def own_org(port, token):
    c = sw.Client(HOST, port, token)
    try:
        status, body = c.request("GET", "/orgs")
    finally:
        c.close()
    if status != 200:
        raise SystemExit(f"GET /orgs: HTTP {status}: {body[:300]!r}")
    orgs = json.loads(body).get("organizations", [])
    if not orgs or orgs[0].get("role") != "admin":
        raise SystemExit(f"GET /orgs: no organization the user administers: {orgs}")
    return orgs[0]["id"]


# ------------------------------------------------------------------ step 4: measuring

def metrics(port):
    c = sw.Client(HOST, port)
    try:
        status, body = c.request("GET", "/metrics")
        return bx.parse_metrics(body.decode(errors="replace")) if status == 200 else None
    except Exception:  # noqa: BLE001 - optional figure
        return None
    finally:
        c.close()


def measure(port, token, path, requests, conc, warmup, max_seconds, pid):
    """`requests` GETs of `path` over `conc` keep-alive connections (after `warmup` each);
    returns latencies (s), statuses, the distinct 200 bodies with their counts, CPU, wall."""
    lats, statuses, bodies = [], {}, {}
    errors = []
    lock = threading.Lock()
    start = {}
    cut = [False]

    def at_start():
        start["m0"] = metrics(port)
        start["busy"] = bx.other_build()
        start["c0"], start["t0"] = cpu_ticks(pid), time.perf_counter()

    barrier = threading.Barrier(conc + 1, action=at_start)

    def client(n):
        c = sw.Client(HOST, port, token, timeout=max_seconds + 30)
        mine, st, bd = [], {}, {}
        try:
            for _ in range(warmup):
                c.request("GET", path)
            barrier.wait()
            end = time.monotonic() + max_seconds
            for _ in range(n):
                if time.monotonic() > end:
                    cut[0] = True
                    break
                t0 = time.perf_counter()
                try:
                    status, body = c.request("GET", path)
                except Exception as e:  # noqa: BLE001 - counted
                    status, body = 0, repr(e).encode()
                dt = time.perf_counter() - t0
                st[status] = st.get(status, 0) + 1
                if status == 200:
                    mine.append(dt)
                    bd[body] = bd.get(body, 0) + 1
                elif len(errors) < 3:
                    errors.append(f"HTTP {status}: {body[:300]!r}")
        except threading.BrokenBarrierError:
            return
        except Exception as e:  # noqa: BLE001 - the warm-up failed
            errors.append(f"{e!r}")
            barrier.abort()
        finally:
            c.close()
            with lock:
                lats.extend(mine)
                for k, v in st.items():
                    statuses[k] = statuses.get(k, 0) + v
                for k, v in bd.items():
                    bodies[k] = bodies.get(k, 0) + v

    share = [requests // conc + (1 if i < requests % conc else 0) for i in range(conc)]
    threads = [threading.Thread(target=client, args=(share[i],), daemon=True) for i in range(conc)]
    for t in threads:
        t.start()
    try:
        barrier.wait(timeout=max_seconds + 120)
    except threading.BrokenBarrierError:
        raise SystemExit(f"GET {path}: warm-up failed: {errors[:1]}")
    for t in threads:
        t.join(max_seconds + 60)
    wall = time.perf_counter() - start["t0"]
    c1 = cpu_ticks(pid)
    m1 = metrics(port)
    return {"lats": sorted(lats), "statuses": statuses, "bodies": bodies, "errors": errors, "wall": wall,
            "cpu_ticks": None if start["c0"] is None or c1 is None else c1 - start["c0"],
            "m0": start["m0"], "m1": m1, "truncated": cut[0], "contended": start["busy"] or bx.other_build()}


def hours_sum(hours, lo_ms, hi_ms, idx=None):
    """Executions in hourly buckets whose start is in [lo_ms, hi_ms)."""
    total = 0
    for h, c in hours.items():
        if lo_ms <= int(h) * HOUR_MS < hi_ms:
            total += c if idx is None else c[idx]
    return total


def check_stats(body, manifest, fallback_window):
    """Problems with one T1 answer (empty list when right)."""
    d = json.loads(body)
    ws, we = parse_rfc3339_ms(d.get("windowStart")), parse_rfc3339_ms(d.get("windowEnd"))
    problems = []
    if ws is None or we is None:
        problems.append("no windowStart/windowEnd in the answer")
        ws, we = fallback_window
    hours = manifest["t1_hours"]
    want = {"completed": hours_sum(hours, ws, we, 0), "failed": hours_sum(hours, ws, we, 1)}
    want["finished"] = want["completed"] + want["failed"]
    for k, v in want.items():
        if i64(d.get(k)) != v:
            problems.append(f"{k} {i64(d.get(k))}, seeded {v} in [{rfc3339(ws)}, {rfc3339(we)})")
    return problems, d


def check_trends(body, manifest, since_ms):
    d = json.loads(body)
    hi = 1 << 62
    want = hours_sum({h: c[0] + c[1] for h, c in manifest["t1_hours"].items()}, since_ms, hi) \
        + hours_sum(manifest["t2_hours"], since_ms, hi)
    got = sum(i64(p.get("started")) for p in d.get("daily", []))
    problems = [] if got == want else [f"sum of daily started {got}, seeded {want} since {rfc3339(since_ms)}"]
    notes = []
    for k in ("monthly", "yearly"):
        s = sum(i64(p.get("started")) for p in d.get(k, []))
        if s != want:
            notes.append(f"sum of {k} started {s} (seeded {want})")
    if d.get("timeZone") not in (None, TIME_ZONE):
        notes.append(f"timeZone {d.get('timeZone')!r}")
    return problems, notes, d, want


# ------------------------------------------------------------------ main

def parse_args(argv=None):
    ap = argparse.ArgumentParser(description="Step-10 analytics latency: stats (T1) and trends (T2).",
                                 formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    ap.add_argument("--bin", default=os.environ.get("WEFT_BIN", ".build/release/weft"),
                    help="weft binary (env WEFT_BIN; default .build/release/weft)")
    ap.add_argument("--data-dir", help="data dir to seed (must be new or empty) or, with --reuse, to measure; "
                                       "kept (default: OUT_DIR/data, removed at exit unless --keep)")
    ap.add_argument("--reuse", action="store_true", help="measure --data-dir as seeded by an earlier run (skip steps 1-3)")
    ap.add_argument("--seed-only", action="store_true", help="stop after step 2 (seeding)")
    ap.add_argument("--keep", action="store_true", help="keep the default data dir")
    ap.add_argument("--out-dir", default=os.environ.get("OUT_DIR"), help="server logs (default: new /tmp/weft-bench-analytics.*)")
    ap.add_argument("--requests", type=int, default=500, help="measured requests per kind (default 500)")
    ap.add_argument("--concurrency", type=int, default=1, help="connections (threads) sharing them (default 1)")
    ap.add_argument("--warmup", type=int, default=20, help="unmeasured requests per connection and kind (default 20)")
    ap.add_argument("--max-seconds", type=float, default=300, help="bound per kind (default 300)")
    ap.add_argument("--t1-executions", type=int, default=1_000_000)
    ap.add_argument("--t1-days", type=int, default=30, help="span of T1's executions (default 30)")
    ap.add_argument("--t2-workflows", type=int, default=1000)
    ap.add_argument("--t2-per-day", type=float, default=3.0, help="executions per T2 workflow and day (default 3)")
    ap.add_argument("--t2-days", type=int, default=365, help="span of T2's executions (default 365)")
    ap.add_argument("--seed", type=int, default=1, help="random seed of the generated executions")
    ap.add_argument("--sync", default=os.environ.get("SYNC", "normal"), help="--store-sync of the server (default normal)")
    ap.add_argument("--server-args", default=os.environ.get("WEFT_ARGS", ""), help="more `weft serve` arguments")
    ap.add_argument("--rebuild-timeout", type=float, default=3600)
    ap.add_argument("--json", help="write every figure to this file")
    a = ap.parse_args(argv)
    if a.reuse and not a.data_dir:
        ap.error("--reuse needs --data-dir")
    if a.concurrency < 1 or a.requests < 1:
        ap.error("--concurrency and --requests must be at least 1")
    if a.t1_days > 365 or a.t1_days < 1 or a.t2_days < 1:
        ap.error("--t1-days must be 1-365, --t2-days at least 1")
    return a


def main(argv=None):
    a = parse_args(argv)
    print("command: " + shlex.join([sys.executable] + sys.argv if argv is None else argv), flush=True)
    if not os.access(a.bin, os.X_OK):
        raise SystemExit(f"no executable at {a.bin} (build with: swift build -c release)")
    out_dir = a.out_dir or tempfile.mkdtemp(prefix="weft-bench-analytics.", dir="/tmp")
    os.makedirs(out_dir, exist_ok=True)
    data_dir = a.data_dir or os.path.join(out_dir, "data")
    keep = a.keep or bool(a.data_dir)
    marker = os.path.join(data_dir, MARKER)
    server = None
    result = {"command": [sys.executable] + sys.argv, "bin": a.bin, "data_dir": data_dir}

    def cleanup():
        if server:
            server.stop()
        if not keep:
            shutil.rmtree(data_dir, ignore_errors=True)
    atexit.register(cleanup)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    serve_args = ["--store-sync", a.sync, "--scrypt-log-n", "10", "--token-ttl", "7200"] + shlex.split(a.server_args)

    if a.reuse:
        if not os.path.exists(marker):
            raise SystemExit(f"{data_dir} has no {MARKER}: not seeded (completely) by this script")
        plan = json.load(open(marker))
        log(f"reusing {data_dir}: {plan['manifest']['t1_executions']} T1 + {plan['manifest']['t2_executions']} T2 "
            f"executions, {len(plan['t2_workflows'])} T2 workflows, seeded {plan['seeded_at']}")
    else:
        if os.path.isdir(data_dir) and os.listdir(data_dir):
            raise SystemExit(f"{data_dir} is not empty: pass a new --data-dir, or --reuse to measure it")
        os.makedirs(data_dir, exist_ok=True)
        # ---- step 1
        email, password = "analytics@bench.weft.test", "bench-password-1"
        t0 = time.monotonic()
        server = WeftProcess(a.bin, data_dir, serve_args, out_dir, "analytics-seed")
        log(f"step 1: weft pid {server.pid}, port {server.port}: {shlex.join(server.cmd)}")
        token = sw.login(HOST, server.port, email, password, "Analytics Bench")
        org_id = own_org(server.port, token)
        t1_wf, t2_wfs = create_workflows(server.port, token, org_id, a.t2_workflows)
        rest_s = time.monotonic() - t0
        server.stop()
        log(f"step 1: organization {org_id}, T1 workflow {t1_wf}, {len(t2_wfs)} T2 workflows in {rest_s:.1f} s; "
            f"server {server.exit_note}")
        server = None
        now_ms = int(time.time() * 1000)
        plan = {"email": email, "password": password, "org_id": org_id, "t1_workflow": t1_wf, "t2_workflows": t2_wfs,
                # The data ends at the start of the current hour: no bucket is cut by a bound later.
                "span_end_ms": now_ms // HOUR_MS * HOUR_MS, "rebuilt": False}
        # ---- step 2
        t0 = time.monotonic()
        manifest = seed_sqlite(data_dir, plan, a)
        seed_s = time.monotonic() - t0
        size_mb = sum(os.path.getsize(os.path.join(data_dir, f)) for f in os.listdir(data_dir)
                      if f.startswith("weft.sqlite")) / 1e6
        n = manifest["t1_executions"] + manifest["t2_executions"]
        print(f"seeding: REST (user, organization, {1 + len(t2_wfs)} workflows) {rest_s:.1f} s; SQLite {seed_s:.1f} s for "
              f"{n} executions and {manifest['task_executions']} task executions ({n / seed_s:.0f} executions/s; "
              f"T1 {manifest['timings_s']['t1']} s, T2 {manifest['timings_s']['t2']} s, checkpoint "
              f"{manifest['timings_s']['checkpoint']} s); weft.sqlite* {size_mb:.0f} MB", flush=True)
        plan.update(manifest=manifest, seeded_at=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                    seed=a.seed, seeding_s={"rest": round(rest_s, 1), "sqlite": round(seed_s, 1)}, seeded_with=a.bin)
        json.dump(plan, open(marker, "w"))
        result["seeding_s"] = plan["seeding_s"]
    manifest = plan["manifest"]
    result["manifest_totals"] = {k: manifest[k] for k in ("t1_executions", "t2_executions", "task_executions")}
    if a.seed_only:
        print(f"seeded {data_dir} (--seed-only: no rebuild, no measurement)")
        if not keep:
            print("note: the data dir is removed at exit (pass --data-dir or --keep to keep it)")
        return 0

    # ---- step 3
    if not plan.get("rebuilt"):
        cmd = [a.bin, "analytics", "rebuild", "--data-dir", data_dir]
        log("step 3: " + shlex.join(cmd))
        t0 = time.monotonic()
        try:
            r = subprocess.run(cmd, capture_output=True, text=True, timeout=a.rebuild_timeout)
        except subprocess.TimeoutExpired:
            raise SystemExit(f"{shlex.join(cmd)} did not finish in {a.rebuild_timeout:.0f} s")
        rebuild_s = time.monotonic() - t0
        out = (r.stdout + r.stderr).strip()
        print(f"rebuild: `{shlex.join(cmd)}` exit {r.returncode} in {rebuild_s:.1f} s"
              + (":\n    " + "\n    ".join(out.splitlines()[-15:]) if out else ""), flush=True)
        if r.returncode != 0:
            print("VERDICT: FAIL (analytics rebuild failed; nothing measured)")
            return 1
        plan["rebuilt"] = True
        plan["rebuild_s"] = round(rebuild_s, 1)
        json.dump(plan, open(marker, "w"))
        result["rebuild_s"] = rebuild_s
    else:
        log(f"step 3 skipped: rebuilt earlier in {plan.get('rebuild_s')} s")

    # ---- step 4
    server = WeftProcess(a.bin, data_dir, serve_args, out_dir, "analytics")
    log(f"step 4: weft pid {server.pid}, port {server.port}: {shlex.join(server.cmd)}")
    log_off = server.log_offset()
    token = sw.login(HOST, server.port, plan["email"], plan["password"])
    wf = plan["t1_workflow"]
    t1_lo, t1_hi = manifest["t1_span_ms"]
    from_ms = t1_lo // HOUR_MS * HOUR_MS
    to_ms = -(-t1_hi // HOUR_MS) * HOUR_MS
    now_ms = int(time.time() * 1000)
    since_ms = (now_ms - 365 * DAY_MS) // HOUR_MS * HOUR_MS
    q = urllib.parse.quote
    kinds = [
        ("T1", "stats window=month", f"/workflows/{wf}/stats?window=month", T1_BOUND_MS),
        ("T1", "stats from/to (whole span)", f"/workflows/{wf}/stats?from={q(rfc3339(from_ms))}&to={q(rfc3339(to_ms))}",
         T1_BOUND_MS),
        ("T2", f"trends org, {TIME_ZONE}, since a year", f"/analytics/workflow-executions?orgId={q(plan['org_id'])}"
         f"&timeZone={q(TIME_ZONE)}&since={q(rfc3339(since_ms))}", T2_BOUND_MS),
    ]
    rows = []
    for target, label, path, bound in kinds:
        log(f"{target} {label}: GET {path}")
        r = measure(server.port, token, path, a.requests, a.concurrency, a.warmup, a.max_seconds, server.pid)
        lats = r["lats"]
        ms = lambda v: None if v is None else v * 1e3  # noqa: E731
        problems, notes, first = [], [], None
        for body, count in r["bodies"].items():
            if target == "T1":
                month = (now_ms - 30 * DAY_MS) // HOUR_MS * HOUR_MS, -(-int(time.time() * 1000) // HOUR_MS) * HOUR_MS
                fallback = month if "window=month" in path else (from_ms, to_ms)
                p, d = check_stats(body, manifest, fallback)
                if first is None:
                    first = {k: d.get(k) for k in ("windowStart", "windowEnd", "finished", "completed", "failed",
                                                   "successRate", "p50Duration", "p99Duration", "totalCost", "retryRate")}
            else:
                p, nt, d, want = check_trends(body, manifest, since_ms)
                notes += [x for x in nt if x not in notes]
                if first is None:
                    first = {"daily points": len(d.get("daily", [])), "monthly points": len(d.get("monthly", [])),
                             "started (sum of daily)": sum(i64(x.get("started")) for x in d.get("daily", [])),
                             "seeded": want, "workflows": d.get("workflows"), "scope": d.get("scope"),
                             "bytes": len(body)}
            problems += [f"{x} ({count} answers)" for x in p if x not in problems]
        non200 = {k: v for k, v in r["statuses"].items() if k != 200}
        sm0 = bx.metric_sum(r["m0"], "weft_analytics_query_duration_seconds_sum",
                            query="stats" if target == "T1" else "trends")
        sm1 = bx.metric_sum(r["m1"], "weft_analytics_query_duration_seconds_sum",
                            query="stats" if target == "T1" else "trends")
        cm0 = bx.metric_sum(r["m0"], "weft_analytics_query_duration_seconds_count",
                            query="stats" if target == "T1" else "trends")
        cm1 = bx.metric_sum(r["m1"], "weft_analytics_query_duration_seconds_count",
                            query="stats" if target == "T1" else "trends")
        server_mean = ((sm1 - (sm0 or 0)) / (cm1 - (cm0 or 0)) * 1e3
                       if sm1 is not None and cm1 is not None and cm1 - (cm0 or 0) > 0 else None)
        row = {"target": target, "what": label, "path": path, "bound_ms": bound, "ok": len(lats),
               "statuses": {str(k): v for k, v in sorted(r["statuses"].items())},
               "p50_ms": ms(bx.pct(lats, 0.50)), "p90_ms": ms(bx.pct(lats, 0.90)), "p99_ms": ms(bx.pct(lats, 0.99)),
               "max_ms": ms(lats[-1] if lats else None), "mean_ms": ms(sum(lats) / len(lats)) if lats else None,
               "req_per_s": len(lats) / r["wall"] if r["wall"] > 0 else None,
               "server_cpu_ms_per_req": (r["cpu_ticks"] / CLK_TCK * 1e3 / len(lats))
               if r["cpu_ticks"] is not None and lats else None,
               "server_mean_ms": server_mean, "problems": problems, "notes": notes, "errors": r["errors"],
               "non200": non200, "truncated": r["truncated"], "contended": r["contended"], "first_answer": first}
        row["pass"] = bool(lats) and not non200 and not problems and not r["truncated"] \
            and len(lats) == a.requests and row["p99_ms"] < bound
        rows.append(row)
        log(f"{target} {label}: {len(lats)} x 200, p99 {row['p99_ms'] or 0:.2f} ms"
            + (f", non-200 {non200}" if non200 else "") + (f", WRONG: {problems[0]}" if problems else ""))
        if not server.alive():
            break
    died = server.died()
    n_problems, first_problems = server.log_problems(log_off)
    server.stop()
    server_note = server.exit_note
    server = None

    # ---- report
    fmt = lambda v, s=".2f", unit=" ms": "n/a" if v is None else format(v, s) + unit  # noqa: E731
    print()
    print(f"Weft analytics latency, {datetime.date.today().isoformat()}, {platform.machine()}, {os.cpu_count()} cores, "
          f"{a.bin}; T1 workflow {manifest['t1_executions']} executions over {(t1_hi - t1_lo) / DAY_MS:.0f} days, "
          f"organization {len(plan['t2_workflows']) + 1} workflows, {manifest['t1_executions'] + manifest['t2_executions']} "
          f"executions; {a.requests} requests per kind on {a.concurrency} keep-alive HTTP/1.1 connection(s) after "
          f"{a.warmup} warm-up each; client-side latency (Python http.client).")
    if "debug" in a.bin:
        print("note: a debug build: the figures are not the Step-10 verdict")
    print()
    print("| target | request | n | p50 | p90 | p99 | max | mean | server mean | req/s | server CPU / req | bound | answers right | pass |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|:---:|:---:|")
    for r in rows:
        print(f"| {r['target']} | {r['what']} | {r['ok']}" + (f" ({sum(r['non200'].values())} non-200)" if r["non200"] else "")
              + f" | {fmt(r['p50_ms'])} | {fmt(r['p90_ms'])} | {fmt(r['p99_ms'])} | {fmt(r['max_ms'])} | {fmt(r['mean_ms'])} "
              f"| {fmt(r['server_mean_ms'])} | {fmt(r['req_per_s'], '.0f', '')} | {fmt(r['server_cpu_ms_per_req'])} "
              f"| < {r['bound_ms']:.0f} ms | {'n/a' if not r['ok'] else 'yes' if not r['problems'] else '**no**'} "
              f"| {'yes' if r['pass'] else '**no**'} |")
    print()
    for r in rows:
        print(f"{r['target']} {r['what']}: GET {r['path']}")
        print(f"    first answer: {json.dumps(r['first_answer'])}")
        for p in r["problems"]:
            print(f"    WRONG: {p}")
        for nt in r["notes"]:
            print(f"    note: {nt}")
        if r["non200"]:
            print(f"    statuses {r['statuses']}; first errors: {r['errors'][:2]}")
        if r["truncated"]:
            print(f"    cut short by --max-seconds {a.max_seconds:.0f}")
        if r["contended"]:
            print("    contended: a compiler ran during the measurement; rerun on an idle machine")
    if n_problems:
        print(f"server log: {n_problems} warning/error lines, first: {first_problems[:2]}")
    if died:
        print(f"server: {died}")
    print(f"server: {server_note}")
    print()
    verdicts = {}
    for target, bound in (("T1", T1_BOUND_MS), ("T2", T2_BOUND_MS)):
        mine = [r for r in rows if r["target"] == target]
        reasons = []
        if not mine or (target == "T1" and len(mine) < 2):
            reasons.append("not measured (the server died?)")
        for r in mine:
            if r["non200"]:
                reasons.append(f"{r['what']}: non-200 answers {r['non200']}")
            if r["problems"]:
                reasons.append(f"{r['what']}: wrong answers ({r['problems'][0]})")
            if r["ok"] != a.requests and not r["non200"]:
                reasons.append(f"{r['what']}: {r['ok']} of {a.requests} requests")
            if r["p99_ms"] is not None and r["p99_ms"] >= bound:
                reasons.append(f"{r['what']}: p99 {r['p99_ms']:.2f} ms >= {bound:.0f} ms")
        if died:
            reasons.append(died)
        verdicts[target] = not reasons
        p99s = ", ".join(f"{r['what']} p99 {fmt(r['p99_ms'])}" for r in mine)
        print(f"{target}: {'PASS' if not reasons else 'FAIL'} ({p99s}; bound {bound:.0f} ms)"
              + ("" if not reasons else ": " + "; ".join(reasons)))
    ok = all(verdicts.values())
    print(f"VERDICT: {'PASS' if ok else 'FAIL'}" + (" (contended)" if any(r["contended"] for r in rows) else ""))
    result.update(rows=rows, verdicts=verdicts, server_log_problems=n_problems)
    if a.json:
        json.dump(result, open(a.json, "w"), indent=1, default=str)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
