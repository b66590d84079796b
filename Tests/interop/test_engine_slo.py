"""The engine's SLO signals on a real server (docs/METRICS.md "Service
levels", dashboards/slo.yaml):

* every finished execution is counted with its cause — none (completed),
  task_error, timeout, cancelled, and system (Weft's own failure: here a
  secret whose ciphertext was damaged in the store, which the vault cannot
  open) — so the execution SLO can leave the users' failures out;
* the labelled organizations and workflows are the store's first ones by
  creation, whatever order executions come in, and the same after a restart
  (deterministic across replicas and restarts), each organization capped on
  its own;
* `weft_queue_oldest_ready_age_seconds` grows while nobody takes a ready
  item (no in-process workers), and falls to 0 once it is taken;
* `weft_startup_recovery_seconds` is set once the engine resumed the
  executions the last run left, and `weft_store_bytes` has the store's files.
"""

from __future__ import annotations

import base64
import os
import sqlite3

import pytest

import weft_helpers as wh
from test_engine_api import create_wf, execute, uid, wait_status  # noqa: F401 (uid)

NOOP = [{"key": "a", "name": "A", "action": "noop"}]
SECRETS_ENV = {"WEFT_SECRETS_KEY": base64.b64encode(os.urandom(32)).decode()}


def server(tmp_path, name: str, *args: str, data=None) -> wh.WeftServer:
    return wh.WeftServer(wh.weft_bin(), data or tmp_path / "data", tmp_path / f"logs-{name}",
                         args=(*wh.API_SERVER_ARGS, *args), name=name, env=SECRETS_ENV)


def relogin(srv: wh.WeftServer, user: wh.ApiUser) -> wh.ApiUser:
    """The same account on a restarted server (same data directory)."""
    r = wh.RestClient(srv).post("/users/login", {"email": user.email, "password": user.password})
    assert r.status == 200, r
    token = r.json["token"]
    return wh.ApiUser(user.id, user.email, user.password, user.name, token, user.user, wh.RestClient(srv, token))


def test_every_finished_execution_has_its_cause(tmp_path):
    srv = server(tmp_path, "causes").start(timeout=30)
    try:
        user = wh.register_and_login(srv, "Cause User")
        org = wh.own_org_id(srv, user.token)
        ok = create_wf(user, NOOP, name="causes ok")
        assert wait_status(user, ok["id"], execute(user, ok["id"])["executionId"])["status"] == "Completed"
        # A template naming input that is not there: the task's own error.
        bad = create_wf(user, [{"key": "say", "name": "Say", "action": "log",
                                "config": {"message": "hello {{ input.who.name }}"}}], name="causes template")
        assert wait_status(user, bad["id"], execute(user, bad["id"])["executionId"])["status"] == "Failed"
        slow = create_wf(user, [{"key": "wait", "name": "Wait", "action": "delay", "config": {"duration": "30s"}}],
                         name="causes slow")
        assert wait_status(user, slow["id"], execute(user, slow["id"], timeout="0.3s")["executionId"])["status"] \
            == "TimedOut"
        doomed = execute(user, slow["id"])["executionId"]
        r = user.rest.post(f"/workflows/{slow['id']}/executions/{doomed}/cancel", {"reason": "changed my mind"})
        assert r.status == 200, r
        assert wait_status(user, slow["id"], doomed)["status"] == "Cancelled"
        # A secret the vault cannot open: its ciphertext damaged in the store.
        r = user.rest.post(f"/orgs/{org}/secrets", {"name": "TOKEN", "value": "s3cret-value"})
        assert r.status == 201, r
        with sqlite3.connect(srv.data_dir / "weft.sqlite", timeout=10) as db:
            db.execute("UPDATE secrets SET ciphertext = zeroblob(length(ciphertext)) WHERE org_id = ?", (org,))
        uses = create_wf(user, [{"key": "use", "name": "Use", "action": "transform",
                                 "config": {"output": {"v": "{{ secrets.TOKEN }}"}}}], name="causes secret")
        broken = wait_status(user, uses["id"], execute(user, uses["id"])["executionId"])
        assert broken["status"] == "Failed", broken
        assert "secrets:" in broken.get("error", ""), broken

        m = wh.fetch_metrics(srv)
        by = {(s.labels["workflow"], s.labels["status"], s.labels["cause"]): s.value
              for s in m.select("weft_executions_finished_total", org=org) if s.value}
        assert by == {
            ("causes ok", "Completed", "none"): 1,
            ("causes template", "Failed", "task_error"): 1,
            ("causes slow", "TimedOut", "timeout"): 1,
            ("causes slow", "Cancelled", "cancelled"): 1,
            ("causes secret", "Failed", "system"): 1,
        }, by
    finally:
        wh.finish_servers([srv])


def labelled(srv: wh.WeftServer, org: str) -> set:
    return {s.labels["workflow"] for s in wh.fetch_metrics(srv).select("weft_executions_started_total", org=org)}


def test_labelled_workflows_are_the_first_created_on_every_start(tmp_path):
    args = ("--metrics-orgs", "2", "--metrics-workflows-per-org", "3")
    srv = server(tmp_path, "labels", *args).start(timeout=30)
    try:
        first = wh.register_and_login(srv, "Label First")
        org = wh.own_org_id(srv, first.token)
        made = [create_wf(first, NOOP, name=f"flow {i}") for i in range(6)]
        # Executed newest first: the order executions arrive in must not matter.
        for wf in reversed(made):
            assert wait_status(first, wf["id"], execute(first, wf["id"])["executionId"])["status"] == "Completed"
        assert labelled(srv, org) == {"flow 0", "flow 1", "flow 2", "other"}
        m = wh.fetch_metrics(srv)
        assert m.total("weft_executions_started_total", org=org, workflow="other") == 3
        # A second organization has its own cap; a third (over --metrics-orgs 2) is "other".
        second = wh.register_and_login(srv, "Label Second")
        third = wh.register_and_login(srv, "Label Third")
        for user, name in ((second, "second flow"), (third, "third flow")):
            wf = create_wf(user, NOOP, name=name)
            assert wait_status(user, wf["id"], execute(user, wf["id"])["executionId"])["status"] == "Completed"
        assert labelled(srv, wh.own_org_id(srv, second.token)) == {"second flow"}
        assert wh.own_org_id(srv, third.token) not in {s.labels["org"] for s in wh.fetch_metrics(srv).select("weft_executions_started_total")}
        assert wh.fetch_metrics(srv).total("weft_executions_started_total", org="other", workflow="other") == 1
        # A deleted labelled workflow frees its place for the next by creation.
        assert first.rest.delete(f"/workflows/{made[1]['id']}").status == 204
    finally:
        wh.finish_servers([srv])

    again = server(tmp_path, "labels-again", *args, data=srv.data_dir).start(timeout=30)
    try:
        user = relogin(again, first)
        for wf in reversed(made[2:]):
            assert wait_status(user, wf["id"], execute(user, wf["id"])["executionId"])["status"] == "Completed"
        assert labelled(again, org) == {"flow 2", "flow 3", "other"}, "flow 0 (not run yet) and flow 3 hold the places"
        assert wait_status(user, made[0]["id"], execute(user, made[0]["id"])["executionId"])["status"] == "Completed"
        assert labelled(again, org) == {"flow 0", "flow 2", "flow 3", "other"}
    finally:
        wh.finish_servers([again])


def test_oldest_ready_age_grows_while_nobody_takes_the_work(tmp_path):
    idle = server(tmp_path, "idle", "--workers", "0").start(timeout=30)
    try:
        user = wh.register_and_login(idle, "Queue Age")
        wf = create_wf(user, NOOP, name=f"waits {uid()}")
        eid = execute(user, wf["id"])["executionId"]

        def age():
            return wh.fetch_metrics(idle).total("weft_queue_oldest_ready_age_seconds", queue="builtin")

        first = wh.wait_until(lambda: age() or None, 10, 0.2, message="a ready item's age on the builtin queue")
        # It keeps growing while nobody takes the item (sampled once a second).
        wh.wait_until(lambda: age() >= first + 2, 10, 0.2, message=lambda: f"the age to grow past {first + 2} s (now {age()})")
        assert wh.fetch_metrics(idle).total("weft_queue_depth", queue="builtin", state="ready") == 1
        data = idle.data_dir
    finally:
        wh.finish_servers([idle])

    # With workers the item is taken, the execution resumed by recovery ends, the age falls to 0.
    busy = server(tmp_path, "busy", data=data).start(timeout=30)
    try:
        user = relogin(busy, user)
        assert wait_status(user, wf["id"], eid)["status"] == "Completed"
        wh.wait_until(lambda: wh.fetch_metrics(busy).total("weft_queue_oldest_ready_age_seconds", queue="builtin") == 0,
                      10, 0.2, message="the age back at 0 once the queue is empty")
        m = wh.fetch_metrics(busy)
        [recovery] = m.select("weft_startup_recovery_seconds")
        assert 0 < recovery.value < 30, recovery
        sizes = {s.labels["file"]: s.value for s in m.select("weft_store_bytes")}
        assert set(sizes) == {"weft.sqlite", "weft.sqlite-wal", "logs.sqlite", "logs.sqlite-wal"}, sizes
        assert sizes["weft.sqlite"] > 0 and sizes["logs.sqlite"] > 0, sizes
        assert sizes["weft.sqlite"] <= (data / "weft.sqlite").stat().st_size * 4 + 1, sizes
    finally:
        wh.finish_servers([busy])
