"""Smoke runs of the load-test harness, `weft-loadtest` (the binary next to
$WEFT_BIN), against a real `weft serve` on loopback.

Each run is short (`--duration 1 --warmup 0`, a low `--rate` or a small
`--concurrency`) and is judged on the structure of its JSON report and on
errors only -- never on time or throughput, which depend on the machine:

* `run` of every scenario of loadtest/scenarios/ that needs nothing but a
  Weft server (health-check, execute-3task, rest-reads over h1 and h2,
  webhooks, external-workers, http-tasks, mixed, create-workflow): exit 0,
  every call answered and succeeded (no failure, no unanswered call, no
  refusal), percentiles in order, the server's figures present, the
  harness's counts agreeing with the server's metrics; for the execution
  scenarios every execution started was found Completed.  The scenarios
  register their own tenants (Register/Login/CreateApiKey over gRPC): the
  module's `api_server` has open registration (the default) and cheap
  hashing, and `--egress-allow 127.0.0.1` for the http-tasks sink.
* bad input: an unknown rpc, no `load.duration`, a YAML syntax error, a
  `--target` that is not http(s), an unreadable file, a closed port: exit 2
  with a message on stderr that names the problem (and no hang).
* `verify` with a tiny SLO file: all targets met (exit 0), then an
  impossible one (exit 1, MISSED), and the verify.json and per-check report
  written to `--out`.
* `knee` over two tiny rates: exit 0, knee-<scenario>.json with both steps
  within SLO, and a well-formed SVG chart.
* TLS: health-check over https with `--ca-file` and with `--insecure`; a
  certificate the harness does not trust is refused (exit 2).
* A closed-loop run against a peer that closes every connection (h2c to
  the TLS port) fails cleanly: no crash, every call counted as failed.

The module's runs go one after another on the module's server, so the
server-side counters read around a run (users registered) are exact deltas.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import yaml

import tls_certs
import weft_helpers as wh

SCENARIOS = wh.REPO_ROOT / "loadtest" / "scenarios"
# http-tasks.yaml: the harness's HTTP sink listens on 127.0.0.1, which the
# egress guard denies unless allowed (the flag its header comment names).
API_SERVER_EXTRA_ARGS = ("--egress-allow", "127.0.0.1")

# A run of a few seconds; anything near this is a hang.
RUN_TIMEOUT = 120
SHORT = ("--duration", "1", "--warmup", "0", "--progress", "0", "--drain-timeout", "30")
LATENCY_KEYS = {"count", "p50", "p90", "p95", "p99", "p999", "max", "mean"}
# The harness reads these; the suite's environment must not steer it.
HARNESS_ENV = ("WEFT_TARGET", "WEFT_TOKEN", "WEFT_API_KEY")
METRICS_TOKEN = "scrape-loadtest-5c2e91"


# ---------------------------------------------------------------------------
# Running the harness
# ---------------------------------------------------------------------------


def loadtest_bin() -> Path:
    return wh.weft_bin().parent / "weft-loadtest"


@pytest.fixture(scope="module")
def loadtest():
    binary = loadtest_bin()
    if not binary.exists():
        pytest.fail(f"weft-loadtest not found at {binary} (next to $WEFT_BIN); build it (swift build)",
                    pytrace=False)
    return binary


def harness(binary: Path, *args, cwd: Path, timeout: float = RUN_TIMEOUT) -> subprocess.CompletedProcess:
    """Run weft-loadtest; a run that outlives `timeout` is killed and fails the test."""
    cmd = [str(binary), *map(str, args)]
    env = {k: v for k, v in os.environ.items() if k not in HARNESS_ENV}
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=str(cwd), env=env,
                              stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"weft-loadtest did not finish within {timeout}s (a hang): {' '.join(cmd)}\n"
                    f"stdout:\n{_text(exc.stdout)[-3000:]}\nstderr:\n{_text(exc.stderr)[-3000:]}")


def _text(data) -> str:
    if data is None:
        return ""
    return data.decode(errors="replace") if isinstance(data, bytes) else data


def _output(res: subprocess.CompletedProcess) -> str:
    return f"exit {res.returncode}\ncommand: {' '.join(res.args)}\nstdout:\n{res.stdout[-6000:]}\nstderr:\n{res.stderr[-3000:]}"


def run_scenario(binary: Path, srv: wh.WeftServer, tmp_path: Path, scenario: str, *args, target=None) -> dict:
    """`weft-loadtest run` of loadtest/scenarios/<scenario> for a second; exit 0; the JSON report."""
    out = tmp_path / "report.json"
    res = harness(binary, "run", SCENARIOS / scenario, "--target", target or srv.base_url, *SHORT,
                  "--out", out, *args, cwd=tmp_path)
    assert res.returncode == 0, _output(res)
    assert out.exists(), f"no report at {out}\n{_output(res)}"
    report = json.loads(out.read_text())
    report["_output"] = _output(res)  # for assertion messages
    return report


def free_port() -> int:
    """A loopback port that was bound and released: nothing listens on it."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---------------------------------------------------------------------------
# What every good run's report holds
# ---------------------------------------------------------------------------


def check_latency(lat: dict, count: int, where: str) -> None:
    assert set(lat) == LATENCY_KEYS, f"{where}: latency keys {sorted(lat)}"
    assert lat["count"] == count, f"{where}: latency count {lat['count']} != {count}"
    if count:
        assert 0 <= lat["p50"] <= lat["p90"] <= lat["p95"] <= lat["p99"] <= lat["p999"] <= lat["max"], f"{where}: {lat}"
        assert 0 < lat["mean"] <= lat["max"], f"{where}: {lat}"


def check_phase(phase: dict, outcome: str, where: str) -> None:
    """Every call of the phase answered with `outcome` (gRPC "OK", or an HTTP status)."""
    n = phase["sent"]
    assert phase["succeeded"] == n, f"{where}: {phase['succeeded']} of {n} calls succeeded"
    assert (phase["failed"], phase["unanswered"], phase["refused"]) == (0, 0, 0), \
        f"{where}: failed/unanswered/refused {phase['failed']}/{phase['unanswered']}/{phase['refused']}: " \
        f"{phase['sampleErrors']}"
    assert phase["outcomes"] == ({outcome: n} if n else {}), f"{where}: outcomes {phase['outcomes']}"
    assert phase["errorRate"] == 0 and phase["refusalRate"] == 0, where
    assert phase["sampleErrors"] == [], f"{where}: {phase['sampleErrors']}"
    check_latency(phase["latencyMs"], n, where)
    assert sum(op["succeeded"] for op in phase["operations"]) == n, f"{where}: {phase['operations']}"
    for op in phase["operations"]:
        assert (op["failed"], op["refused"]) == (0, 0), f"{where}: {op}"
        check_latency(op["latencyMs"], op["succeeded"], f"{where} {op['name']}")


def check_report(report: dict, scenario: str, outcome: str) -> dict:
    """The structure of a clean run's report; returns its `total`."""
    msg = report["_output"]
    assert report["scenario"] == scenario, msg
    for key in ("phases", "total", "comparisons", "server", "target", "run", "mode", "latencyBasis"):
        assert key in report, f"no {key!r} in the report\n{msg}"
    assert report["phases"], msg
    for phase in report["phases"]:
        check_phase(phase, outcome, f"phase {phase['name']!r}")
    total = report["total"]
    assert total["sent"] > 0, msg
    check_phase(total, outcome, "total")
    # --warmup 0: every phase is counted.
    assert total["sent"] == sum(p["sent"] for p in report["phases"]), msg
    server = report.get("server")
    assert server is not None, f"no server figures (could the harness not scrape /metrics?)\n{msg}"
    assert server["cpuSeconds"] >= 0 and server["seconds"] > 0, server
    assert server["admissionRejections"] == 0, server
    return total


def comparison(report: dict, what: str) -> dict:
    found = [c for c in report["comparisons"] if c["what"] == what]
    assert len(found) == 1, f"comparison {what!r} in {report['comparisons']}"
    return found[0]


def check_agrees(report: dict, what: str) -> None:
    c = comparison(report, what)
    assert c["agrees"], f"harness and server disagree on {what}: {c}\n{report['_output']}"


def check_executions(report: dict, started: int) -> dict:
    """`started` executions, every one found Completed."""
    ex = report.get("executions")
    assert ex is not None, report["_output"]
    assert ex["total"] == started, f"{ex['total']} executions found, {started} started\n{report['_output']}"
    assert ex["byStatus"] == {"Completed": started}, ex
    assert ex["unfinished"] == 0, ex
    check_latency(ex["latencyMs"], started, "executions")
    check_agrees(report, "executions completed")
    return ex


def users_registered(srv: wh.WeftServer) -> float:
    return wh.fetch_metrics(srv).total("weft_users_registered_total")


# ---------------------------------------------------------------------------
# run
# ---------------------------------------------------------------------------


def test_run_health_check(loadtest, api_server, tmp_path):
    report = run_scenario(loadtest, api_server, tmp_path, "health-check.yaml",
                          "--concurrency", "16", "--connections", "2", "--streams", "8")
    total = check_report(report, "health-check", "OK")
    assert total["sent"] == total["succeeded"] > 0
    assert set(total["outcomes"]) == {"OK"}
    lat = total["latencyMs"]
    assert lat["p50"] <= lat["p99"] <= lat["max"], lat
    assert (report["mode"], report["connections"], report["streams"]) == ("closed", 2, 8), report["_output"]
    assert [p["concurrency"] for p in report["phases"]] == [16]
    assert [op["name"] for op in total["operations"]] == ["health"]
    assert report.get("executions") is None
    check_agrees(report, "gRPC calls answered OK")
    assert report["server"]["grpcHandled"] == {"OK": total["sent"]}, report["server"]["grpcHandled"]


def test_run_execute_3task(loadtest, api_server, tmp_path):
    report = run_scenario(loadtest, api_server, tmp_path, "execute-3task.yaml", "--rate", "50")
    total = check_report(report, "execute-3task", "OK")
    assert report["mode"] == "open" and total["offeredRate"] == 50, report["_output"]
    check_agrees(report, "gRPC calls answered OK")
    ex = check_executions(report, sum(p["sent"] for p in report["phases"]))
    assert ex["latencyMs"]["count"] == ex["total"]
    assert report["server"]["executionsCompleted"] >= ex["total"], report["server"]


@pytest.mark.parametrize("rest", ["h1", "h2"])
def test_run_rest_reads(loadtest, api_server, tmp_path, rest):
    report = run_scenario(loadtest, api_server, tmp_path, "rest-reads.yaml", "--rest", rest, "--rate", "50")
    total = check_report(report, "rest-reads", "200")
    assert sorted(op["name"] for op in total["operations"]) == ["get-workflow", "list-executions", "list-workflows"]


def test_run_webhooks(loadtest, api_server, tmp_path):
    report = run_scenario(loadtest, api_server, tmp_path, "webhooks.yaml", "--rate", "30")
    total = check_report(report, "webhooks", "202")
    check_executions(report, total["sent"])


def test_run_external_workers(loadtest, api_server, tmp_path):
    report = run_scenario(loadtest, api_server, tmp_path, "external-workers.yaml", "--rate", "30")
    total = check_report(report, "external-workers", "OK")
    ex = check_executions(report, total["sent"])
    workers = report.get("externalWorkers")
    assert workers is not None, report["_output"]
    assert workers["workers"] == 8, workers
    assert workers["tasksCompleted"] == ex["total"], workers
    assert workers["errors"] == 0, workers
    assert workers["polls"] >= workers["tasksCompleted"], workers


def test_run_http_tasks(loadtest, api_server, tmp_path):
    report = run_scenario(loadtest, api_server, tmp_path, "http-tasks.yaml", "--rate", "30")
    total = check_report(report, "http-tasks", "OK")
    ex = check_executions(report, total["sent"])
    assert report.get("httpSinkRequests") is not None, report["_output"]
    assert report["httpSinkRequests"] >= ex["byStatus"]["Completed"], report["httpSinkRequests"]


def test_run_mixed_three_tenants(loadtest, api_server, tmp_path):
    before = users_registered(api_server)
    report = run_scenario(loadtest, api_server, tmp_path, "mixed.yaml", "--rate", "40")
    # A mix of gRPC (OK) and REST (200) calls: outcomes are checked as a whole.
    msg = report["_output"]
    total = report["total"]
    assert total["sent"] > 0 and total["succeeded"] == total["sent"], msg
    assert (total["failed"], total["unanswered"], total["refused"]) == (0, 0, 0), f"{total['sampleErrors']}\n{msg}"
    assert set(total["outcomes"]) <= {"OK", "200"} and sum(total["outcomes"].values()) == total["sent"], total["outcomes"]
    check_latency(total["latencyMs"], total["sent"], "total")
    ops = {op["name"]: op for op in total["operations"]}
    assert set(ops) <= {"get-workflow", "list-workflows", "list-executions", "execute", "update-workflow"}, ops
    for op in ops.values():
        assert (op["failed"], op["refused"]) == (0, 0), f"{op}\n{msg}"
    assert report.get("server") is not None and report["server"]["cpuSeconds"] >= 0, msg
    check_agrees(report, "gRPC calls answered OK")
    check_executions(report, ops["execute"]["succeeded"] if "execute" in ops else 0)
    # setup.tenants: 3 -- three users registered for the run.
    assert users_registered(api_server) - before == 3


def test_run_create_workflow(loadtest, api_server, tmp_path):
    report = run_scenario(loadtest, api_server, tmp_path, "create-workflow.yaml", "--rate", "20")
    total = check_report(report, "create-workflow", "OK")
    assert [op["name"] for op in total["operations"]] == ["create-workflow"]
    check_agrees(report, "gRPC calls answered OK")
    assert report.get("executions") is None


# ---------------------------------------------------------------------------
# Bad input: exit 2 and a message naming the problem
# ---------------------------------------------------------------------------

HEALTH_OP = [{"name": "health", "call": "grpc", "rpc": "grpc.health.v1.Health/Check", "request": {}}]

BAD_SCENARIOS = {
    "unknown-rpc": (
        yaml.safe_dump({"name": "bad", "load": {"mode": "closed", "concurrency": 1, "duration": 1},
                        "operations": [{"name": "nope", "call": "grpc", "rpc": "weft.v1.NoService/Nothing",
                                        "request": {}}]}),
        [r"operation nope: unknown rpc weft\.v1\.NoService/Nothing", r"known: .*grpc\.health\.v1\.Health/Check"]),
    "no-duration": (
        yaml.safe_dump({"name": "bad", "load": {"mode": "open", "rate": 5}, "operations": HEALTH_OP}),
        [r"needs a `duration`"]),
    "yaml-syntax": (
        "name: bad\nload: {mode: open, rate: 5\noperations: [\n",
        [r"not valid YAML"]),
    "no-operations-key": (
        yaml.safe_dump({"name": "bad", "load": {"mode": "open", "rate": 5, "duration": 1}}),
        [r"missing `operations`"]),
}


@pytest.mark.parametrize("case", sorted(BAD_SCENARIOS))
def test_bad_scenario_file(loadtest, tmp_path, case):
    text, patterns = BAD_SCENARIOS[case]
    path = tmp_path / f"{case}.yaml"
    path.write_text(text)
    # No server is needed: the file is refused before anything connects.
    res = harness(loadtest, "run", path, "--target", f"http://127.0.0.1:{free_port()}", "--progress", "0",
                  cwd=tmp_path, timeout=30)
    assert res.returncode == 2, _output(res)
    assert f"{case}.yaml" in res.stderr, _output(res)  # the message names the file
    for pattern in patterns:
        assert re.search(pattern, res.stderr), f"{pattern!r} not in stderr\n{_output(res)}"
    assert not (tmp_path / "report.json").exists()


@pytest.mark.parametrize("args, pattern", [
    (["--target", "ftp://x"], r"--target must be http://HOST:PORT or https://HOST:PORT, not ftp://x"),
    (["--target", "http://127.0.0.1:99999"], r"--target: no valid host and port"),
    (["--rest", "h3"], r"--rest must be h1 or h2"),
    (["--api-key", "not-a-key"], r"--api-key: an API key starts with weft_"),
])
def test_bad_options(loadtest, tmp_path, args, pattern):
    res = harness(loadtest, "run", SCENARIOS / "health-check.yaml", *SHORT, *args, cwd=tmp_path, timeout=30)
    assert res.returncode == 2, _output(res)
    assert re.search(pattern, res.stderr), f"{pattern!r} not in stderr\n{_output(res)}"


def test_unreadable_scenario_file(loadtest, tmp_path):
    res = harness(loadtest, "run", tmp_path / "missing.yaml", *SHORT, cwd=tmp_path, timeout=30)
    assert res.returncode == 2, _output(res)
    assert "cannot read the scenario file" in res.stderr and "missing.yaml" in res.stderr, _output(res)


def test_unreachable_target(loadtest, tmp_path):
    port = free_port()
    res = harness(loadtest, "run", SCENARIOS / "health-check.yaml", "--target", f"http://127.0.0.1:{port}", *SHORT,
                  "--out", tmp_path / "report.json", cwd=tmp_path, timeout=60)
    assert res.returncode == 2, _output(res)
    assert "cannot reach" in res.stderr and f"127.0.0.1:{port}" in res.stderr, _output(res)
    assert not (tmp_path / "report.json").exists()


# ---------------------------------------------------------------------------
# verify
# ---------------------------------------------------------------------------


def slo_file(tmp_path: Path, name: str, targets: dict) -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump({"checks": [{
        "scenario": str(SCENARIOS / "health-check.yaml"), "duration": 1, "warmup": 0, "concurrency": 8,
        "targets": targets}]}))
    return path


def verify(binary: Path, srv: wh.WeftServer, tmp_path: Path, slo: Path, out: Path) -> subprocess.CompletedProcess:
    return harness(binary, "verify", "--slo", slo, "--target", srv.base_url, "--progress", "0",
                   "--drain-timeout", "30", "--out", out, cwd=tmp_path)


def test_verify_all_met(loadtest, api_server, tmp_path):
    slo = slo_file(tmp_path, "slo-ok.yaml", {"error_rate": {"max": 0}, "latency_p99_ms": {"max": 100000}})
    out = tmp_path / "verify-ok"
    res = verify(loadtest, api_server, tmp_path, slo, out)
    assert res.returncode == 0, _output(res)
    assert "SLO verdict: all 2 targets met" in res.stdout, _output(res)
    assert "MISSED" not in res.stdout, _output(res)
    rows = [line.split() for line in res.stdout.splitlines() if line.startswith("health-check ")]
    assert {r[1] for r in rows} == {"error_rate", "latency_p99_ms"} and all(r[-1] == "met" for r in rows), res.stdout
    results = json.loads((out / "verify.json").read_text())
    assert sorted(r["target"] for r in results) == ["error_rate", "latency_p99_ms"], results
    for r in results:
        assert r["scenario"] == "health-check" and r["met"] is True and "why" not in r, r
        assert isinstance(r["measured"], (int, float)) and r["measured"] >= 0, r
    assert next(r for r in results if r["target"] == "error_rate")["measured"] == 0
    # The check's own report, beside verify.json.
    report = json.loads((out / "1-health-check.json").read_text())
    report["_output"] = _output(res)
    total = check_report(report, "health-check", "OK")
    assert [p["concurrency"] for p in report["phases"]] == [8]
    assert next(r for r in results if r["target"] == "latency_p99_ms")["measured"] == total["latencyMs"]["p99"]


def test_verify_missed_target(loadtest, api_server, tmp_path):
    slo = slo_file(tmp_path, "slo-miss.yaml", {"error_rate": {"max": 0}, "throughput_rps": {"min": 1e12}})
    out = tmp_path / "verify-miss"
    res = verify(loadtest, api_server, tmp_path, slo, out)
    assert res.returncode == 1, _output(res)
    assert "MISSED" in res.stdout, _output(res)
    assert "SLO verdict: 1 of 2 targets missed" in res.stdout, _output(res)
    results = {r["target"]: r for r in json.loads((out / "verify.json").read_text())}
    assert set(results) == {"error_rate", "throughput_rps"}, results
    assert results["error_rate"]["met"] is True
    missed = results["throughput_rps"]
    assert missed["met"] is False and missed["why"].startswith("below"), missed
    assert 0 < missed["measured"] < 1e12, missed


def test_verify_unknown_target_name(loadtest, tmp_path):
    slo = slo_file(tmp_path, "slo-bad.yaml", {"latency_p42_ms": {"max": 1}})
    res = harness(loadtest, "verify", "--slo", slo, "--target", f"http://127.0.0.1:{free_port()}", "--progress", "0",
                  cwd=tmp_path, timeout=30)
    assert res.returncode == 2, _output(res)
    assert "unknown target latency_p42_ms" in res.stderr, _output(res)


# ---------------------------------------------------------------------------
# knee
# ---------------------------------------------------------------------------


def test_knee_two_steps(loadtest, api_server, tmp_path):
    out = tmp_path / "knee"
    # Generous bounds: this checks the mechanics, not the machine (a tiny
    # step's completions/arrivals ratio moves with single executions).
    res = harness(loadtest, "knee", SCENARIOS / "execute-1task.yaml", "--rates", "20 40", "--duration", "1",
                  "--warmup", "0", "--max-p99-ms", "10000", "--min-completion", "0.5", "--progress", "0",
                  "--drain-timeout", "30",
                  "--target", api_server.base_url, "--out", out, cwd=tmp_path)
    assert res.returncode == 0, _output(res)
    knee = json.loads((out / "knee-execute-1task.json").read_text())
    assert knee["scenario"] == "execute-1task" and knee["maxP99Ms"] == 10000, knee
    steps = knee["steps"]
    assert [s["offeredRate"] for s in steps] == [20, 40], knee
    for step in steps:
        assert step["withinSLO"] is True and step["misses"] == [], f"{step}\n{_output(res)}"
        assert step["throughput"] > 0 and 0 <= step["p50Ms"] <= step["p99Ms"], step
    assert knee["knee"] == 40, knee
    # Every step was within SLO: the knee lies above the rates tried.
    assert "knee: not reached — every step was within SLO, up to 40/s offered" in res.stdout, _output(res)
    # Each step's own report.
    for rate in (20, 40):
        report = json.loads((out / f"knee-execute-1task-{rate}.json").read_text())
        report["_output"] = _output(res)
        total = check_report(report, "execute-1task", "OK")
        assert total["offeredRate"] == rate
        check_executions(report, total["sent"])
    svg_path = out / "knee-execute-1task.svg"
    svg = svg_path.read_text()
    assert "<svg" in svg
    root = ET.parse(svg_path).getroot()  # well-formed XML
    assert root.tag in ("svg", "{http://www.w3.org/2000/svg}svg"), root.tag


def test_knee_bad_rates(loadtest, tmp_path):
    res = harness(loadtest, "knee", SCENARIOS / "execute-1task.yaml", "--rates", "fast", "--progress", "0",
                  "--target", f"http://127.0.0.1:{free_port()}", "--out", tmp_path / "knee", cwd=tmp_path, timeout=30)
    assert res.returncode == 2, _output(res)
    assert "--rates needs positive numbers" in res.stderr, _output(res)


# ---------------------------------------------------------------------------
# TLS
# ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    return tls_certs.make_certs(tmp_path_factory.mktemp("pki"))


def test_run_health_check_over_tls(loadtest, server_factory, certs, tmp_path):
    # /metrics on a TLS listener needs the scrape token (docs/SECURITY.md).
    srv = server_factory("--tls-cert", str(certs.server_cert), "--tls-key", str(certs.server_key),
                         "--metrics-token", METRICS_TOKEN, *wh.API_SERVER_ARGS)
    target = f"https://127.0.0.1:{srv.port}"
    shape = ("--concurrency", "4", "--connections", "1", "--streams", "4")
    for trust in (["--ca-file", str(certs.ca_cert)], ["--insecure"]):
        report = run_scenario(loadtest, srv, tmp_path, "health-check.yaml", *shape, *trust,
                              "--metrics-token", METRICS_TOKEN, target=target)
        assert report["target"] == target, report["_output"]
        check_report(report, "health-check", "OK")
        check_agrees(report, "gRPC calls answered OK")
    # Without the token the load still runs; the report has no server figures and says why.
    report = run_scenario(loadtest, srv, tmp_path, "health-check.yaml", *shape, "--ca-file", str(certs.ca_cert),
                          target=target)
    assert report["total"]["sent"] == report["total"]["succeeded"] > 0, report["_output"]
    assert report.get("server") is None and report["comparisons"] == [], report["_output"]
    assert "--metrics-token" in report["_output"]
    # A certificate it cannot verify (signed by another CA): refused, exit 2.
    res = harness(loadtest, "run", SCENARIOS / "health-check.yaml", "--target", target, *SHORT,
                  "--concurrency", "1", "--ca-file", certs.untrusted_ca_cert, cwd=tmp_path, timeout=60)
    assert res.returncode == 2, _output(res)
    assert "cannot reach" in res.stderr, _output(res)


def test_plaintext_run_against_a_tls_port_fails_cleanly(loadtest, server_factory, certs, tmp_path):
    """h2c to a TLS port: the server answers "this port speaks TLS" and closes.
    The harness must report that (exit 2, or a report with every call
    failed), not crash."""
    srv = server_factory("--tls-cert", str(certs.server_cert), "--tls-key", str(certs.server_key),
                         *wh.API_SERVER_ARGS)
    out = tmp_path / "report.json"
    res = harness(loadtest, "run", SCENARIOS / "health-check.yaml", "--target", f"http://127.0.0.1:{srv.port}",
                  *SHORT, "--concurrency", "1", "--connections", "1", "--streams", "1", "--out", out,
                  cwd=tmp_path, timeout=60)
    assert res.returncode in (0, 2), f"crashed or failed oddly\n{_output(res)}"
    if res.returncode == 2:
        assert "weft-loadtest:" in res.stderr, _output(res)
    else:
        total = json.loads(out.read_text())["total"]
        assert total["succeeded"] == 0 and total["failed"] + total["unanswered"] == total["sent"], total
