"""Helpers of the Step 13 data-growth benchmarks (bench-restart.py,
bench-flat.py): a JSON call to a `weft serve` on loopback, and copies of one
execution's or one workflow's rows made in SQL, so a store holds millions of
them exactly as the server writes them without making them one by one."""

from __future__ import annotations

import json
import sqlite3
import urllib.request

from seed_workflows import login
from weft_process import WeftProcess


def http_json(port: int, method: str, path: str, token: str | None = None, body: dict | None = None,
              timeout: float = 10.0):
    """(status, parsed JSON body) of one REST call."""
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", method=method,
                                     data=None if body is None else json.dumps(body).encode())
    if body is not None:
        request.add_header("content-type", "application/json")
    if token:
        request.add_header("authorization", f"Bearer {token}")
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return response.status, json.loads(response.read() or b"null")


def template_execution(weft: str, data: str, work: str, name: str,
                       args: list[str] = ()) -> tuple[int, dict, dict, str]:
    """The rows to clone: a `weft serve` on `data` (stopped on return) gets a
    user, a 3-task noop workflow a -> b -> c and one ExecuteWorkflow of it.
    Returns (HTTP status of the execute, the workflow, the execute's answer,
    the user's access token)."""
    server = WeftProcess(weft, data, ["--scrypt-log-n", "10", *args], work, "seed")
    try:
        token = login("127.0.0.1", server.port, f"{name}@bench.weft.test", "bench-password-1", name.title())
        tasks = [{"key": k, "name": k, "action": "noop", **({"dependsOn": [d]} if d else {})}
                 for k, d in (("a", None), ("b", "a"), ("c", "b"))]
        _, wf = http_json(server.port, "POST", "/workflows", token, {"name": name, "tasks": tasks})
        status, started = http_json(server.port, "POST", f"/workflows/{wf['id']}/execute", token, {"input": {}})
        return status, wf, started, token
    finally:
        server.stop()


def clone_execution(db_path: str, template: str, n: int, id_prefix: str, queue: bool,
                    finished_at: str | None = None) -> None:
    """Adds n copies of execution `template`: its row, its task rows and,
    with `queue`, its queue items, under ids `id_prefix` + a zero-padded number
    (pick a prefix that sorts where the copies belong among the engine's
    time-ordered ids). `finished_at` (a stored date, "2020-01-01 00:00:00.000")
    replaces the copies' created, started and completed times. One
    transaction, `synchronous = OFF`: seeding."""
    db = sqlite3.connect(db_path)
    db.execute("PRAGMA synchronous = OFF")
    numbers = "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?) "
    width = 26 - len(id_prefix) + len("exe_")   # the engine's ids: exe_ + 26 characters
    exe = f"'{id_prefix}' || printf('%0{width}d', n.i)"
    times = {} if finished_at is None else {c: f"'{finished_at}'" for c in ("created_at", "started_at", "completed_at")}
    tables = [("workflow_executions", {"execution_id": exe, **times}),
              ("task_executions", {"execution_id": exe,
                                   "task_execution_id": f"t.task_execution_id || printf('%0{width}d', n.i)"})]
    if queue:
        tables.append(("task_queue", {"execution_id": exe}))
    db.execute("BEGIN")
    for table, replace in tables:
        # The queue's own id is its autoincrement key: left to SQLite.
        columns = [r[1] for r in db.execute(f"PRAGMA table_info({table})") if not (table == "task_queue" and r[1] == "id")]
        select = ", ".join(replace.get(c, f"t.{c}") for c in columns)
        db.execute(numbers + f"INSERT INTO {table} ({', '.join(columns)}) SELECT {select} FROM n, {table} t "
                   "WHERE t.execution_id = ?", (n, template))
    db.execute("COMMIT")
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.close()


def clone_workflow(db_path: str, template: str, n: int, id_prefix: str) -> None:
    """Adds n copies of workflow `template`: its row (named "<name> <i>"),
    its task rows, its version rows and its search-index entry, under ids
    `id_prefix` + a zero-padded number. One transaction, `synchronous = OFF`."""
    db = sqlite3.connect(db_path)
    db.execute("PRAGMA synchronous = OFF")
    numbers = "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?) "
    width = 26 - len(id_prefix) + len("wf_")   # the server's ids: wf_ + 26 characters
    wf = f"'{id_prefix}' || printf('%0{width}d', n.i)"
    # A workflow's search row has the workflow's `rid` as its rowid.
    (base,) = db.execute("SELECT COALESCE(MAX(rid), 0) FROM workflows").fetchone()
    (search_rowid,) = db.execute("SELECT rid FROM workflows WHERE id = ?", (template,)).fetchone()
    tables = [("workflows", {"rid": f"{base} + n.i", "id": wf, "name": "t.name || ' ' || n.i"}, "id"),
              ("tasks", {"id": f"t.id || printf('%0{width}d', n.i)", "workflow_id": wf}, "workflow_id"),
              ("workflow_versions", {"id": f"t.id || printf('%0{width}d', n.i)", "workflow_id": wf}, "workflow_id")]
    db.execute("BEGIN")
    for table, replace, key in tables:
        columns = [r[1] for r in db.execute(f"PRAGMA table_info({table})")]
        select = ", ".join(replace.get(c, f"t.{c}") for c in columns)
        db.execute(numbers + f"INSERT INTO {table} ({', '.join(columns)}) SELECT {select} FROM n, {table} t "
                   f"WHERE t.{key} = ?", (n, template))
    db.execute(numbers + "INSERT INTO workflow_search (rowid, name, description, task_names) "
               "SELECT ? + n.i, s.name || ' ' || n.i, s.description, s.task_names FROM n, workflow_search s "
               "WHERE s.rowid = ?", (n, base, search_rowid))
    db.execute("COMMIT")
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.close()
