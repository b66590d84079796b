"""Cost per execution (docs/COST.md) on a real `weft serve` with chosen rates:
the breakdown each execution stores and returns over REST and gRPC, retries
and stopped attempts counted, per-type worker-second rates, the metrics, and
bad rates refused at start-up."""

from __future__ import annotations

import json
import subprocess

import pytest

import weft_helpers as wh
from test_engine_api import FAST_RETRY, Target, create_wf, get_exec, run, uid

# Round numbers so every part is easy to predict.
RATES = ("--cost-rate", "attempt=0.001", "--cost-rate", "worker_second=0.5", "--cost-rate", "request=0.01",
         "--cost-rate", "egress_mb=1000", "--cost-rate", "worker_second.delay=2")


@pytest.fixture(scope="module")
def costed(tmp_path_factory, protos):
    base = tmp_path_factory.mktemp("cost")
    srv = wh.WeftServer(wh.weft_bin(), base / "data", base / "logs", args=wh.API_SERVER_ARGS + RATES, name="cost")
    srv.start(timeout=30)
    yield srv
    wh.finish_servers([srv])  # SIGTERM; fails the teardown unless it exits cleanly


@pytest.fixture(scope="module")
def payer(costed):
    return wh.register_and_login(costed, "Payer Cost")


@pytest.fixture(scope="module")
def target():
    t = Target()
    yield t
    t.close()


def breakdown(execution: dict) -> dict:
    b = execution.get("costBreakdown")
    assert b, execution
    # proto3 JSON writes int64 as strings.
    return {k: (int(v) if k in ("taskAttempts", "requests", "egressBytes") else v) for k, v in b.items()}


def test_http_and_noop_execution_is_charged_per_part(payer, target):
    body = {"note": "x" * 1000}
    wf = create_wf(payer, [
        {"key": "call", "name": "Call", "action": "http",
         "config": {"url": target.url(f"/echo/{uid()}"), "method": "POST", "body": body}},
        {"key": "after", "name": "After", "action": "noop", "dependsOn": ["call"]},
    ])
    done = run(payer, wf["id"])
    assert done["status"] == "Completed", done
    b = breakdown(done)
    assert b["taskAttempts"] == 2, b
    assert b["attemptsDollars"] == pytest.approx(0.002), b
    assert b["requests"] == 1 and b["requestsDollars"] == pytest.approx(0.01), b
    sent = len(json.dumps(body, separators=(",", ":")))
    # Sent body plus the echoed JSON body received.
    assert sent + 20 < b["egressBytes"] < sent + 200, b
    assert b["egressDollars"] == pytest.approx(b["egressBytes"] / 1e6 * 1000), b
    # Worker time of both attempts, at 0.5 $/s (the http call takes a few ms).
    assert 0 < b["workerSeconds"] < 2, b
    assert b["computeDollars"] == pytest.approx(b["workerSeconds"] * 0.5), b
    parts = b["attemptsDollars"] + b["computeDollars"] + b["requestsDollars"] + b["egressDollars"]
    assert done["cost"] == pytest.approx(parts), (done["cost"], b)


def test_retries_count_every_attempt_and_request(payer, target):
    wf = create_wf(payer, [{"key": "flaky", "name": "Flaky", "action": "http",
                            "config": {"url": target.url(f"/flaky/{uid()}")},
                            "retry": {"maxAttempts": 3, **FAST_RETRY, "retryableErrors": ["http_5xx"]}}])
    done = run(payer, wf["id"])
    assert done["status"] == "Completed", done
    b = breakdown(done)
    assert b["taskAttempts"] == 2 and b["requests"] == 2, b
    assert b["attemptsDollars"] == pytest.approx(0.002) and b["requestsDollars"] == pytest.approx(0.02), b


def test_per_type_rate_and_stopped_attempts(payer, target):
    # A 300 ms delay at worker_second.delay=2, then an http attempt stopped by
    # its 300 ms timeout (the target answers after 2 s): the stopped attempt's
    # time counts at the default 0.5 $/s.
    wf = create_wf(payer, [
        {"key": "wait", "name": "Wait", "action": "delay", "config": {"duration": "300ms"}},
        {"key": "slow", "name": "Slow", "action": "http", "dependsOn": ["wait"], "timeout": "0.3s",
         "config": {"url": target.url(f"/slow/{uid()}")}},
    ])
    done = run(payer, wf["id"], wait=15)
    assert done["status"] == "Failed", done
    b = breakdown(done)
    assert b["taskAttempts"] == 2, b
    assert 0.6 <= b["workerSeconds"] < 3, b
    # delay: >= 0.3 s at 2 $/s; the timed-out attempt: >= 0.3 s at 0.5 $/s.
    assert b["computeDollars"] >= 0.3 * 2 + 0.3 * 0.5 - 1e-9, b
    # The stopped attempt's request is charged when it returns, after the end.
    # (proto3 JSON leaves out a zero count: no "requests" yet means 0.)
    wh.wait_until(lambda: breakdown(get_exec(payer, wf["id"], done["executionId"])).get("requests", 0) == 1, 10,
                  message="the timed-out attempt's request to be charged")


def test_grpc_get_execution_has_the_same_cost(costed, payer, protos, target):
    wf = create_wf(payer, [{"key": "n", "name": "N", "action": "noop"}])
    done = run(payer, wf["id"])
    v1 = protos.v1
    with wh.new_channel(costed.target) as ch:
        stub = v1.executions_pb2_grpc.ExecutionServiceStub(ch)
        got = stub.GetExecution(
            v1.executions_pb2.GetExecutionRequest(workflow_id=wf["id"], execution_id=done["executionId"]),
            metadata=wh.grpc_auth(payer), timeout=10)
    assert got.cost == pytest.approx(done["cost"])
    assert got.cost_breakdown.task_attempts == 1
    assert got.cost_breakdown.attempts_dollars == pytest.approx(0.001)


def test_cost_metrics(costed, payer):
    name = f"metered {uid()}"
    wf = create_wf(payer, [{"key": "a", "name": "A", "action": "noop"},
                           {"key": "b", "name": "B", "action": "noop", "dependsOn": ["a"]}], name=name)
    totals = [run(payer, wf["id"])["cost"] for _ in range(3)]
    m = wh.fetch_metrics(costed)
    assert m.type_of("weft_cost_dollars_total") == "counter"
    assert m.type_of("weft_execution_cost_dollars") == "histogram"
    by_part = {s.labels["component"]: s.value for s in m.select("weft_cost_dollars_total", workflow=name)}
    assert by_part["attempts"] == pytest.approx(6 * 0.001), by_part
    assert sum(by_part.values()) == pytest.approx(sum(totals)), (by_part, totals)
    # Every finished execution of the server is in the histogram.
    assert m.total("weft_execution_cost_dollars_count") >= 3
    assert m.total("weft_execution_cost_dollars_sum") >= sum(totals) - 1e-12


@pytest.mark.parametrize("rate, fragment", [
    ("attempt=-1", "dollars >= 0"),
    ("attempt", "NAME=DOLLARS"),
    ("cpu=1", "unknown rate \"cpu\""),
    ("worker_second=lots", "NAME=DOLLARS"),
])
def test_bad_rates_are_refused_at_start(tmp_path, rate, fragment):
    res = subprocess.run(
        [str(wh.weft_bin()), "serve", "--port", "0", "--data-dir", str(tmp_path), "--cost-rate", rate],
        capture_output=True, text=True, timeout=30)
    assert res.returncode != 0, res
    assert fragment in res.stderr and rate in res.stderr, res.stderr
