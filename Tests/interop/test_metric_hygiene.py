"""Metric hygiene of a live scrape (docs/METRICS.md "Hygiene"): every family
is documented, names follow Prometheus conventions, label values stay
bounded with more workflows than the cap (the first ones created keep their
names), no label carries an execution, workflow, task or user id, an email,
a URL or a trace id (organization ids are labels of the labelled set only),
and latency histograms resolve sub-millisecond to minutes."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import weft_helpers as wh
from test_engine_api import closed_port, create_wf, execute, uid, wait_status

DOCS = Path(__file__).resolve().parents[2] / "docs" / "METRICS.md"
WORKFLOWS = 30  # over the cap of 10 labelled workflows per organization (--metrics-workflows-per-org)
PER_ORG = 10
FIRST: set = set()  # the names of the first PER_ORG workflows created (set by the fixture)
# What Prometheus sends: OpenMetrics first, the text format as a fallback.
OPENMETRICS_ACCEPT = ("application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,"
                      "text/plain;version=0.0.4;q=0.5,*/*;q=0.1")
OPENMETRICS: dict = {}  # the same scrape as OpenMetrics (set by the fixture)
ID_LIKE = re.compile(r"^(exe|wf|tsk|usr|tex|lse)_|@|://|^[0-9a-f]{32}$|^[0-9a-f]{16}$")


@pytest.fixture(scope="module")
def scraped(tmp_path_factory, protos):
    """A traced server (spans never sampled, so the exporter has nothing to
    send) that ran one execution of each of WORKFLOWS workflows."""
    base = tmp_path_factory.mktemp("hygiene")
    args = wh.API_SERVER_ARGS + ("--otel-endpoint", f"http://127.0.0.1:{closed_port()}", "--trace-sampler", "always_off")
    srv = wh.WeftServer(wh.weft_bin(), base / "data", base / "logs", args=args, name="hygiene")
    srv.start(timeout=30)
    try:
        user = wh.register_and_login(srv, "Hygiene User")
        made = [create_wf(user, [{"key": "a", "name": "A", "action": "noop"}], name=f"hygiene {i} {uid()}")
                for i in range(WORKFLOWS)]
        # Newest first: which names are labelled must not depend on the order executions come in.
        started = [(wf["id"], execute(user, wf["id"])["executionId"]) for wf in reversed(made)]
        for wid, eid in started:
            assert wait_status(user, wid, eid)["status"] == "Completed"
        FIRST.update(wf["name"] for wf in made[:PER_ORG])
        # The text first: its request makes the /metrics route's series, which the second scrape has too.
        text = wh.http_get(srv, "/metrics")[2].decode()
        status, headers, body = wh.http_get(srv, "/metrics", headers={"Accept": OPENMETRICS_ACCEPT})
        assert status == 200, status
        OPENMETRICS.update(content_type=headers.get("content-type"), text=body.decode())
        yield text
    finally:
        wh.finish_servers([srv])  # SIGTERM; fails the teardown unless it exits cleanly


def families(text: str) -> dict[str, str]:
    return {m.group(1): m.group(2) for m in re.finditer(r"^# TYPE (\S+) (\S+)$", text, re.M)}


def documented() -> set[str]:
    return set(re.findall(r"^\| `([a-z0-9_:]+)` \|", DOCS.read_text(), re.M))


def test_every_family_is_documented(scraped):
    missing = sorted(set(families(scraped)) - documented())
    assert not missing, f"metrics exposed but not in docs/METRICS.md: {missing}"


def test_names_follow_conventions(scraped):
    for name, kind in families(scraped).items():
        if kind == "counter":
            assert name.endswith("_total"), name
        else:
            assert not name.endswith("_total"), (name, kind)
        assert not re.search(r"_(milliseconds|microseconds|kilobytes|megabytes|percent)\b", name), name


def test_labels_are_bounded_and_hold_no_ids(scraped):
    metrics = wh.parse_metrics(scraped)
    bad = [(s.name, k, v) for s in metrics.samples for k, v in s.labels.items() if k != "le" and ID_LIKE.search(v)]
    assert not bad, bad
    workflows = {s.labels["workflow"] for s in metrics.select("weft_executions_started_total")}
    # 30 workflows in one organization: the first 10 created keep their names, the rest are "other".
    assert workflows == FIRST | {"other"}, sorted(workflows)
    assert sum(s.value for s in metrics.select("weft_executions_started_total")) >= WORKFLOWS


def test_tracing_pipeline_metrics_exist_when_tracing_is_on(scraped):
    kinds = families(scraped)
    assert kinds.get("weft_trace_spans_dropped_total") == "counter"
    assert kinds.get("weft_trace_export_failures_total") == "counter"


def test_duration_histograms_span_sub_millisecond_to_minutes(scraped):
    metrics = wh.parse_metrics(scraped)
    for name, kind in families(scraped).items():
        if kind != "histogram" or not name.endswith("_seconds"):
            continue
        bounds = sorted({float(s.labels["le"]) for s in metrics.select(f"{name}_bucket") if s.labels["le"] != "+Inf"})
        assert bounds, name
        assert bounds[0] <= 0.00025 and bounds[-1] >= 60, (name, bounds[0], bounds[-1])


def test_openmetrics_exposition_parses_strictly_and_matches_the_text_format(scraped):
    """Asked for OpenMetrics (as Prometheus asks), /metrics answers it: the
    reference parser (prometheus_client's, which rejects anything the spec
    does not allow) reads it whole, and it holds the same families and
    samples as the text format, counters named without `_total`."""
    from prometheus_client.openmetrics.parser import text_string_to_metric_families

    assert (OPENMETRICS["content_type"] or "").startswith("application/openmetrics-text; version=1.0.0"), OPENMETRICS
    text = OPENMETRICS["text"]
    assert text.endswith("# EOF\n"), text[-200:]
    parsed = {f.name: f for f in text_string_to_metric_families(text)}
    kinds = families(scraped)
    want = {name[: -len("_total")] if kind == "counter" else name: kind for name, kind in kinds.items()}
    assert {name: f.type for name, f in parsed.items()} == want
    text_samples = wh.parse_metrics(scraped).samples
    om_samples = [s for f in parsed.values() for s in f.samples]
    # (the scrapes are a moment apart: the same series, not necessarily the same values)
    assert {(s.name, tuple(sorted(s.labels.items()))) for s in om_samples} \
        >= {(s.name, tuple(sorted(s.labels.items()))) for s in text_samples if not s.name.endswith("_created")}
