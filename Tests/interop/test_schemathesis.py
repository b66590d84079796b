"""Schemathesis against the REST bridge's own OpenAPI document.

Property-based check that `GET /openapi.json` tells the truth: every request
the document calls valid must be accepted (or refused only for a legitimate
reason: auth, an unknown id, a stale etag, ...), no call may answer 5xx, and
every response must match its documented status, content type and schema.

Two profiles share the code below:

* short (this pytest module): a fixed seed, `SHORT_MAX_EXAMPLES` cases per
  operation, one worker; about 30 s on a 2-core machine.
* long (`loadtest/schemathesis-long.sh`, by hand): the same, bounded by time
  (`--max-time`, 4 minutes by default).

Both start from a seeded server (`seed_fixtures`): a second user owns a
workflow the fuzzing user edits, the fuzzing user owns one, finished
executions, a version, a collaborator and a held lease, and their ids are
given to schemathesis as dictionaries, so generated path ids reach the
handlers' field checks instead of stopping at 404.

Everything schemathesis reports is read from its NDJSON event log, grouped
into distinct failures (operation, check, status, server message with the
values taken out) and compared with `LEGITIMATE_REFUSALS`, the refusals a
JSON schema cannot express (cross-field and state-dependent rules). Any
other failure fails the test, listed with what was sent and answered.

CLI (used by loadtest/schemathesis-long.sh):

    python3 Tests/interop/test_schemathesis.py run [--url URL --token TOKEN | --weft-bin PATH]
        [--max-time 240 | --max-examples 15] [--seed N] [--workers 1] [--no-seed-data] [--out DIR]
    python3 Tests/interop/test_schemathesis.py summarize DIR_OR_NDJSON
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import weft_helpers as wh  # noqa: E402

# ---------------------------------------------------------------------------
# Profiles
# ---------------------------------------------------------------------------

#: Fixed Hypothesis seed: the same schema and server give the same requests.
SEED = 20261204
#: Test cases per operation and phase in the short (pytest) profile.
SHORT_MAX_EXAMPLES = 15
#: Wall-clock bound of the short profile's schemathesis run (a safety net;
#: it normally finishes well within it).
SHORT_TIMEOUT_S = 240
#: The long profile's time budget (`--max-time`).
LONG_MAX_TIME_S = 240
#: Every check schemathesis has (not_a_server_error, status_code_conformance,
#: content_type_conformance, response_schema_conformance,
#: positive_data_acceptance, negative_data_rejection, missing_required_header,
#: ignored_auth, unsupported_method, ...).
CHECKS = "all"
#: Checks left out, and why. `negative_data_rejection` asks the server to
#: refuse whatever the schema does not allow, but the proto3 JSON mapping the
#: bridge implements accepts more than a JSON Schema can say: `null` for any
#: field (its default), lengths the server counts in UTF-8 bytes or in
#: characters rather than code points (the document states them on the safe
#: side), out-of-range days that protobuf normalizes. The issue's bar is the
#: other direction: no schema-valid request refused, every response matching
#: its schema, no 5xx.
EXCLUDED_CHECKS = ["negative_data_rejection"]
#: Operations whose methods belong to a later step: they authenticate, then
#: answer UNIMPLEMENTED (501) by design (docs/API.md). None left: the last,
#: AnalyticsService, landed in Step 10 and is fuzzed like every other.
PLANNED_TAGS: list[str] = []
#: Operations that wait by design: the server streams (WatchExecution,
#: TailLogs) on a running execution until it ends, and PollTask long-polls
#: for up to its `wait` (60 s at most) when no task is ready. Their requests
#: get a short timeout, and a read timeout there is not a failure.
STREAMING_OPERATION_IDS = ["WatchExecution", "TailLogs", "PollTask", "StreamNotifications"]
STREAMING_TIMEOUT_S = 5
STREAMING_LABEL = re.compile(
    r"GET /workflows/\{workflowId\}/executions/\{executionId\}/(watch|logs/tail)|POST /queues/\{queue\}/poll"
    r"|GET /notifications/stream")

#: Refusals of schema-valid requests that are legitimate and cannot be
#: expressed in an OpenAPI 3.0 schema: state-dependent (like a 404 for an
#: unknown id) or cross-field rules. (operation regex, status, server message
#: regex, why). Everything else schemathesis reports is a failure.
LEGITIMATE_REFUSALS = [
    (r"POST /users/refresh", 401, r"refresh token is not valid",
     "state: only a live refresh token of a session refreshes (a schema cannot know one)"),
    (r"POST /users/logout", 400, r"not a login session",
     "the fuzzer calls with an admin API key, which is no session (revoke keys with DELETE /api-keys/{id})"),
    (r"POST /users/me/password", 403, r"an API key cannot change its user's password",
     "the fuzzer calls with an admin API key; a password change needs a login"),
    (r"POST /api-keys", 400,
     r"workflow_ids is required with the execute scope|queues is required with the worker scope"
     r"|expires_at must be in the future",
     "cross-field (scope needs its names) and time-dependent (expiry in the future)"),
    (r"POST /api-keys", 409, r"another API key is bound to client certificate",
     "state: one key per client-certificate name"),
    (r"POST /api-keys", 429, r"API keys already; revoke one first", "state: at most 100 live keys per user"),
    (r"POST /users/login", 429, r"too many failed logins",
     "the failed-login limit: the fuzzer's guesses are failed logins"),
    (r"POST /users/(register|login|refresh)", 429, r"^rate limit: this client address may make \d+ auth calls",
     "the auth route class's rate limit per client address (by design)"),
    (r".*", 400, r"page_token is not valid",
     "opaque page tokens (AIP-158): only a token from the previous page of the same query is valid"),
    (r"POST /workers/(heartbeat|complete|fail)", 400,
     r"lease is no longer held|the lease expired|attempt \d+ of task .* (is|was already) over",
     "FAILED_PRECONDITION: the lease is not (or no longer) held - state, like a 404 for an unknown id"),
    (r"POST /workflows/\{workflowId\}/executions/\{executionId\}/cancel", 400,
     r"already finished .*only a running execution can be cancelled",
     "FAILED_PRECONDITION: the execution has already ended"),
    (r"PUT /workflows/\{workflowId\}", 400, r"differs from the workflow's organization",
     "state: orgId must be the workflow's own organization (workflows do not move)"),
    (r"DELETE /tasks/\{taskId\}", 400, r"cannot be deleted: .* depends? on it",
     "FAILED_PRECONDITION: other tasks depend on it"),
    (r"POST /workflows/\{workflowId\}/collaborators", 400, r"^user \S+ owns workflow",
     "state: the owner cannot also be a collaborator"),
    (r"DELETE /workflows/\{workflowId\}/collaborators/\{userId\}", 400, r"the owner cannot be removed",
     "FAILED_PRECONDITION: the owner cannot leave"),
    (r"(POST|PUT) /(workflows|tasks).*", 400, r"retry\.maxBackoff must not be less than retry\.initialBackoff",
     "cross-field, with defaults: an initialBackoff above the default maxBackoff (60s) needs a maxBackoff"),
    (r"GET /workflows(/\{workflowId\}/executions)?", 400,
     r"^(created|started)_after must be before (created|started)_before$",
     "cross-field: the time window must not be empty (not expressible in OpenAPI 3.0)"),
    (r"(POST|PUT) /(workflows|tasks).*", 400,
     r"dependsOn names .*, which is not a task of this workflow"
     r"|: depends on itself"
     r"|key \".*\" is already used by task #\d+"
     r"|id \S+ is already used by task #\d+"
     r"|the dependencies form a cycle"
     r"|branch task \".*\" must list"
     r"|config\.(then|else) names .*, which is not a task of this workflow"
     r"|reads task \".*\", which (is not a task of this workflow|does not run before it)"
     r"|\(#\d+\): .* at character \d+$"  # a template or condition expression that does not parse
     r"|: id .+ is not a task of workflow \S+ \(leave id empty for a new task\)$",
     "workflow definition semantics: references between tasks, unique keys, acyclicity, templates "
     "(a JSON schema cannot relate array items or parse templates)"),
    (r"(POST|PUT) /(workflows/\{workflowId\}/schedules.*|schedules/preview)", 400,
     r"^cron: |^timezone|^start_at must be before end_at|^jitter must be|^catchup_window must be"
     r"|^input is larger|^(start_at|end_at|after) must be from 1970-01-01 to 9000-01-01",
     "cron and time-zone syntax, and start before end (the server parses them; a JSON schema cannot)"),
    (r"POST /workflows/\{workflowId\}/schedules/\{scheduleId\}/backfills", 400,
     r"^start_time must be before end_time|^end_time must not be in the future|^the range holds more than"
     r"|^(start_time|end_time) must be from 1970-01-01 to 9000-01-01|^a backfill of schedule .* is running",
     "cross-field and time-dependent: a past, non-empty range of at most 10,000 ticks"),
    (r"POST /workflows/\{workflowId\}/schedules/\{scheduleId\}/backfills/\{backfillId\}/cancel", 400,
     r"already finished .*only a running backfill can be cancelled",
     "FAILED_PRECONDITION: the backfill has already ended"),
    (r"POST /workflows/\{workflowId\}/triggers", 400,
     r"is for (event|webhook) triggers|need a signature_secret|^signature_secret must be|is not an HTTP header name"
     r"|^event_name is required|^event name |^filter: |^timestamp_tolerance must be",
     "cross-field: which fields go with which trigger type; header names, filter expressions"),
    (r"POST /workflows/\{workflowId\}/subscriptions", 400,
     r"^events \(e\.g\.|^give events or event_type|^notify_via |^destination |^deadline_seconds is only"
     r"|^execution\.deadline needs|^filter: |^in_app |integration; it cannot deliver",
     "cross-field: events or event_type; the channel decides the destination (an address, a URL or an integration); "
     "filter expressions"),
    (r"POST /workflows/\{workflowId\}/subscriptions", 404, r"^integration \S+ not found on workflow",
     "state: an integration id of this workflow"),
    (r"(POST|PUT) /workflows/\{workflowId\}/integrations.*", 400,
     r"^type is required|^type \d+ is not|^config\.|^config is|^webhook_url|^scheme |^name must be one line"
     r"|^the type of an integration cannot change|^integrations hold secrets",
     "typed settings: which config fields each integration type needs and takes (cross-field)"),
    (r"POST /workflows/\{workflowId\}/integrations/\{integrationId\}/test", 400, r"^destination \(the address",
     "cross-field: an e-mail test needs the address to send to"),
    (r"POST /notifications/read", 400, r"^give ids or all", "cross-field: ids or all, one of them"),
    (r"PUT /orgs/\{orgId\}/notification-templates/\{event\}", 400,
     r"^give at least one of subject, text, html|unknown placeholder|^subject must be one line",
     "template syntax (placeholders), one-line subjects, and at least one part"),
    (r"POST /notification-templates/preview", 400, r"unknown placeholder", "template syntax (placeholders)"),
    (r"GET /(analytics/workflow-executions|workflows/\{workflowId\}/stats|executions/\{executionId\}/prediction)", 400,
     r"^(since|until|from|to|deadline) must be from 1970-01-01 to 9000-01-01$|^since must be before until$"
     r"|^the window is empty: from must be before to$|^trends cover at most \d+ years$|^a window is at most \d+ years long$",
     "the instants the server takes (1970 to 9000, as for schedules) and non-empty windows of at most 5 years "
     "(cross-field)"),
    (r"GET /analytics/workflow-executions|PUT /(workflows/\{workflowId\}|orgs/\{orgId\})/budget", 400,
     r"^time_zone \".*\" is not an IANA time zone",
     "IANA time-zone names: the server's tz database decides (like a schedule's timezone)"),
    (r"GET /analytics/workflow-executions", 400, r"^workflow \S+ is not in organization ",
     "state, cross-field: workflowId must be a workflow of orgId when both are given"),
]

# ---------------------------------------------------------------------------
# Small HTTP client (the long profile may run against any URL)
# ---------------------------------------------------------------------------


def _call(base: str, method: str, path: str, body=None, token: str | None = None, timeout: float = 15.0):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(base.rstrip("/") + path, data=data, method=method)
    if data is not None:
        req.add_header("content-type", "application/json")
    if token:
        req.add_header("authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            raw = resp.read()
            return resp.status, (json.loads(raw) if raw else None)
    except urllib.error.HTTPError as err:
        raw = err.read()
        try:
            return err.code, json.loads(raw)
        except ValueError:
            return err.code, raw.decode(errors="replace")


def _ok(result, *expected):
    status, body = result
    if status not in expected:
        raise RuntimeError(f"seeding failed: HTTP {status}: {body}")
    return body


def admin_key(base: str, token: str) -> str:
    """An admin-scoped API key of the token's user (its secret)."""
    return _ok(_call(base, "POST", "/api-keys", {"name": "schemathesis", "scopes": ["admin"]}, token=token), 201)["secret"]


def register_and_login(base: str, name: str) -> tuple[str, str]:
    """A fresh account: (user id, token)."""
    email = f"{name.split()[0].lower()}-{uuid.uuid4().hex[:12]}@example.com"
    password = "correct horse battery"
    user = _ok(_call(base, "POST", "/users/register", {"email": email, "password": password, "name": name}), 201)
    login = _ok(_call(base, "POST", "/users/login", {"email": email, "password": password}), 200)
    return user["id"], login["token"]


# ---------------------------------------------------------------------------
# Seed data and the schemathesis configuration
# ---------------------------------------------------------------------------


@dataclass
class SeedData:
    """Ids that exist on the server, handed to schemathesis as dictionaries."""

    workflow_ids: list[str] = field(default_factory=list)
    task_ids: list[str] = field(default_factory=list)
    execution_ids: list[str] = field(default_factory=list)
    user_ids: list[str] = field(default_factory=list)
    version_ids: list[str] = field(default_factory=list)
    queues: list[str] = field(default_factory=list)
    lease_tokens: list[str] = field(default_factory=list)


def seed_fixtures(base: str, token: str, wait_s: float = 15.0) -> SeedData:
    """Creates what the fuzzed calls can find, for the caller of `token`:

    * W1, owned by another user ("other") with the caller as editor: safe from
      DeleteWorkflow (owner only), so it outlives the run;
    * W2, owned by the caller, with "other" as viewer and a labelled version
      (collaborators must be members of the workflow's organization, so each
      of the two first joins the other's by an accepted invitation);
    * finished executions of W1 (WatchExecution and TailLogs on a running one
      would stream until it ends; finished ones answer at once);
    * a lease on W2's external task (queue "st-q") held by the caller (the
      attempt times out after 3 s, so every execution of W2 ends by itself).
    """
    seed = SeedData(queues=["st-q"])
    other_id, other_token = register_and_login(base, "Other Owner")
    seed.user_ids.append(other_id)
    me = _ok(_call(base, "GET", "/users/me", token=token), 200)

    w1 = _ok(_call(base, "POST", "/workflows", {
        "name": "Schemathesis shared", "description": "owned by another user; the fuzzer edits it",
        "tasks": [
            {"name": "first", "action": "noop", "config": {"output": {"ok": True}}},
            {"name": "second", "action": "log", "config": {"message": "{{ tasks.first.output.ok }}"},
             "dependsOn": ["first"]},
        ]}, token=other_token), 201)
    # Collaborators must be members of the workflow's organization: each
    # joins the other's by accepting an invitation.
    wh.invite_and_accept(base, other_token, token, w1["orgId"])
    _ok(_call(base, "POST", f"/workflows/{w1['id']}/collaborators", {"userId": me["id"], "role": "editor"},
              token=other_token), 201)
    w2 = _ok(_call(base, "POST", "/workflows", {
        "name": "Schemathesis own", "description": "owned by the fuzzer",
        "tasks": [
            {"name": "start", "action": "noop"},
            # Bounded: no execution of this workflow outlives 3 s (a watch on
            # a running execution streams until it ends).
            {"name": "wait", "action": "external", "config": {"queue": "st-q", "input": {"n": 1}},
             "dependsOn": ["start"], "timeout": "3s", "retry": {"maxAttempts": 1}},
        ]}, token=token), 201)
    wh.invite_and_accept(base, token, other_token, w2["orgId"])
    _ok(_call(base, "POST", f"/workflows/{w2['id']}/collaborators", {"userId": other_id, "role": "viewer"},
              token=token), 201)
    version = _ok(_call(base, "POST", f"/workflows/{w2['id']}/versions", {"label": "seed"}, token=token), 201)
    seed.workflow_ids = [w1["id"], w2["id"]]
    seed.task_ids = [t["id"] for t in w1["tasks"] + w2["tasks"]]
    seed.version_ids = ["1", version["id"]]

    for n in range(2):
        started = _ok(_call(base, "POST", f"/workflows/{w1['id']}/execute", {"input": {"n": n}}, token=token), 202)
        seed.execution_ids.append(started["executionId"])
    deadline = time.monotonic() + wait_s
    for exe in seed.execution_ids:
        while True:
            got = _ok(_call(base, "GET", f"/workflows/{w1['id']}/executions/{exe}", token=token), 200)
            if got["status"] in ("Completed", "Failed", "Cancelled", "TimedOut"):
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"seeding failed: execution {exe} still {got['status']} after {wait_s}s")
            time.sleep(0.05)

    _ok(_call(base, "POST", f"/workflows/{w2['id']}/execute", {"input": {"n": 0}}, token=token), 202)
    while time.monotonic() < deadline:
        polled = _ok(_call(base, "POST", "/queues/st-q/poll", {"workerId": "seed", "wait": "1s", "leaseDuration": "3600s"},
                           token=token, timeout=10), 200)
        if polled and polled.get("task"):
            seed.lease_tokens.append(polled["task"]["leaseToken"])
            break
    if not seed.lease_tokens:
        raise RuntimeError("seeding failed: no task on queue st-q")
    return seed


def _toml_str(value: str) -> str:
    return json.dumps(value)  # a JSON string is a TOML basic string


def write_config(path: Path, seed: SeedData | None, probability: float = 0.75) -> Path:
    """schemathesis.toml: seeded ids as dictionaries, a short `wait` for
    PollTask (a valid long poll would hold a worker for up to 60 s), 501
    allowed for planned services (if any), a short request timeout for the
    server-streaming operations."""
    lines = ["# Written by Tests/interop/test_schemathesis.py", ""]
    lines += ["[cache]", "enabled = false", ""]
    dictionaries = {"short_waits": ["0s", "0.001s", "0.25s"]}
    bindings = {"body.wait": ("short_waits", 1.0)}
    if seed is not None:
        named = {
            "path.workflowId": ("workflow_ids", seed.workflow_ids),
            "path.taskId": ("task_ids", seed.task_ids),
            "path.executionId": ("execution_ids", seed.execution_ids),
            "path.userId": ("user_ids", seed.user_ids),
            "path.versionId": ("version_ids", seed.version_ids),
            "path.queue": ("queues", seed.queues),
            "body.leaseToken": ("lease_tokens", seed.lease_tokens),
        }
        for key, (name, values) in named.items():
            if values:
                dictionaries[name] = values
                bindings[key] = (name, probability)
    for name, values in dictionaries.items():
        lines += [f"[dictionaries.{name}]", "values = [" + ", ".join(_toml_str(v) for v in values) + "]", ""]
    lines.append("[parameters]")
    for key, (name, p) in bindings.items():
        lines.append(f"{_toml_str(key)} = {{ dictionary = {_toml_str(name)}, probability = {p} }}")
    lines.append("")
    if PLANNED_TAGS:
        lines += [
            "[[operations]]",
            "include-tag = [" + ", ".join(_toml_str(t) for t in PLANNED_TAGS) + "]",
            'checks.not_a_server_error.expected-statuses = ["2xx", "3xx", "4xx", "501"]',
            "",
        ]
    lines += [
        "[[operations]]",
        "include-operation-id = [" + ", ".join(_toml_str(t) for t in STREAMING_OPERATION_IDS) + "]",
        f"request-timeout = {STREAMING_TIMEOUT_S}",
        "",
    ]
    path.write_text("\n".join(lines))
    return path


# ---------------------------------------------------------------------------
# Running schemathesis
# ---------------------------------------------------------------------------


def schemathesis_version() -> str:
    import importlib.metadata

    return importlib.metadata.version("schemathesis")


@dataclass
class RunResult:
    returncode: int
    elapsed_s: float
    out_dir: Path
    ndjson: Path | None
    report: dict | None
    stdout: str
    command: list[str]


def run_schemathesis(base: str, token: str, out_dir: Path, *, config: Path, seed: int = SEED,
                     max_examples: int | None = None, max_time: int | None = None, workers: int = 1,
                     timeout_s: float | None = None, extra: list[str] | None = None) -> RunResult:
    """Runs the schemathesis CLI against `base`/openapi.json; its reports
    (NDJSON events, JSON summary, JUnit) land in `out_dir`."""
    out_dir.mkdir(parents=True, exist_ok=True)
    for old in list(out_dir.glob("*.ndjson")) + list(out_dir.glob("*.json")):
        old.unlink()
    cmd = [
        sys.executable, "-m", "schemathesis.cli", "--no-color", "--config-file", str(config),
        "run", base.rstrip("/") + "/openapi.json",
        "--header", f"Authorization: Bearer {token}",
        "--checks", CHECKS,
        "--exclude-checks", ",".join(EXCLUDED_CHECKS),
        "--seed", str(seed),
        "--workers", str(workers),
        "--continue-on-failure",
        "--generation-database", "none",
        "--request-timeout", "20",
        "--suppress-health-check", "all",
        "--report", "ndjson,json,junit",
        "--report-dir", str(out_dir),
        "--output-truncate", "true",
    ]
    if max_examples is not None:
        cmd += ["--max-examples", str(max_examples)]
    if max_time is not None:
        cmd += ["--max-time", str(max_time)]
    cmd += list(extra or [])
    started = time.monotonic()
    proc = subprocess.Popen(cmd, cwd=out_dir, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    try:
        stdout, _ = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        stdout, _ = proc.communicate()
        stdout += f"\n[killed after {timeout_s}s]"
    elapsed = time.monotonic() - started
    ndjson = max(out_dir.glob("*.ndjson"), key=lambda p: p.stat().st_mtime, default=None)
    reports = sorted(out_dir.glob("json-*.json"), key=lambda p: p.stat().st_mtime)
    report = json.loads(reports[-1].read_text()) if reports else None
    shown = [c if not c.startswith("Authorization:") else "Authorization: Bearer [token]" for c in cmd]
    return RunResult(proc.returncode, elapsed, out_dir, ndjson, report, stdout, shown)


# ---------------------------------------------------------------------------
# Reading the NDJSON event log
# ---------------------------------------------------------------------------


def _text(payload) -> str:
    if payload is None:
        return ""
    if isinstance(payload, dict) and "$base64" in payload:
        raw = base64.b64decode(payload["$base64"])
        try:
            return raw.decode()
        except UnicodeDecodeError:
            return repr(raw)
    return payload if isinstance(payload, str) else json.dumps(payload)


@dataclass
class Failure:
    check: str
    code: str
    title: str
    detail: str  # schemathesis' message
    operation: str
    phase: str
    scenario: str
    method: str
    url: str
    body: str
    status: int | None
    response: str

    @property
    def server_message(self) -> str:
        try:
            message = json.loads(self.response).get("message")
            return message if isinstance(message, str) else ""
        except (ValueError, AttributeError):
            return ""

    @property
    def request_line(self) -> str:
        parts = urllib.parse.urlsplit(self.url)
        target = parts.path + (f"?{parts.query}" if parts.query else "")
        return f"{self.method} {target}" + (f"  {self.body}" if self.body else "")


@dataclass
class RunError:
    kind: str
    label: str
    type: str
    message: str

    @property
    def accepted(self) -> str | None:
        if self.type == "ReadTimeout" and STREAMING_LABEL.fullmatch(self.label):
            return "a server stream on a running execution lasts until it ends (by design)"
        return None

    def __str__(self) -> str:
        return f"{self.kind} {self.type} in {self.label or '?'}: {self.message}"


def read_failures(ndjson: Path) -> tuple[list[Failure], list[RunError]]:
    """Every failed check of every test case, and errors (crashes, network)."""
    failures: list[Failure] = []
    errors: list[RunError] = []
    with open(ndjson) as events:
        for line in events:
            event = json.loads(line)
            kind, data = next(iter(event.items())) if len(event) == 1 else ("?", event)
            if "Error" in kind:
                value = data.get("value") if isinstance(data, dict) else None
                value = value if isinstance(value, dict) else {}
                errors.append(RunError(kind, str(data.get("label") or "") if isinstance(data, dict) else "",
                                       str(value.get("type") or ""), str(value.get("message") or json.dumps(data)[:1500])))
                continue
            if kind != "ScenarioFinished":
                continue
            recorder = data.get("recorder") or {}
            for case_id, checks in (recorder.get("checks") or {}).items():
                for check in checks:
                    if check.get("status") == "success":
                        continue
                    info = (check.get("failure_info") or {}).get("failure") or {}
                    interaction = (recorder.get("interactions") or {}).get(case_id) or {}
                    request = interaction.get("request") or {}
                    response = interaction.get("response") or {}
                    case = ((recorder.get("cases") or {}).get(case_id) or {}).get("value") or {}
                    meta = case.get("meta") or {}
                    phase = meta.get("phase") or {}
                    failures.append(Failure(
                        check=check.get("name", "?"), code=info.get("code", "?"), title=info.get("title", "?"),
                        detail=info.get("message") or "", operation=info.get("operation") or recorder.get("label", "?"),
                        phase=phase.get("name") or data.get("phase", "?"),
                        scenario=(phase.get("data") or {}).get("description") or "",
                        method=request.get("method", case.get("method", "?")), url=request.get("uri", ""),
                        body=_text(request.get("body")), status=response.get("status_code"),
                        response=_text(response.get("content"))))
    return failures, errors


_NORMALIZE = [
    # Messages that quote arbitrary (generated) text first: their values may
    # hold quotes or parentheses.
    (re.compile(r"^(\w+) in the request \(.*\) differs from the one in the path \(.*\)$", re.S),
     r"\1 in the request (…) differs from the one in the path (…)"),
    (re.compile(r"^id .* in the body differs from the path \(.*\)$", re.S), "id … in the body differs from the path (…)"),
    (re.compile(r"^(\w+) must be (.*) \(got .*\)$", re.S), r"\1 must be \2 (got …)"),
    (re.compile(r"^email .* is not a valid address$", re.S), "email … is not a valid address"),
    (re.compile(r'"(?:[^"\\]|\\.)*"'), '"…"'),
    (re.compile(r"\b(?:usr|wf|tsk|exe|ver|tex)_[0-9A-Za-z]+"), "<id>"),
    (re.compile(r"\((?:[^()]|\([^()]*\))*\)"), "(…)"),
    (re.compile(r"(?<![\w.])(?<!RFC )-?\d+(?:\.\d+)?(?:e[+-]?\d+)?(?![\w.])"), "N"),
]


def normalize(message: str) -> str:
    """The message with values taken out, so one rule is one group."""
    out = message
    if out.startswith("invalid weft.v1."):
        # Decode errors: keep the field path, drop the value and any list index.
        out = re.sub(r"\[\d+\]", "[]", out)
    for pattern, replacement in _NORMALIZE:
        out = pattern.sub(replacement, out)
    return out


def guess_field(message: str) -> str:
    m = re.match(r"invalid weft\.v1\.\w+: ([\w\[\].]+): ", message)
    if m:
        return re.sub(r"\[\d+\]", "[]", m.group(1))
    m = re.match(r"(\w+) in the request \(", message)
    if m:
        return m.group(1) + " (body vs path)"
    m = re.match(r"id \S+ in the body differs", message)
    if m:
        return "id (body vs path)"
    m = re.match(r"([a-z][a-z0-9_]*|[a-z][A-Za-z0-9]*) (?:\"(?:[^\"\\\\]|\\\\.)*\" |owner )?"
                 r"(is required|must|is longer|is not|is out of range|holds|cannot)\b", message)
    if m and m.group(1) not in ("a", "the", "an"):
        return wh_camel(m.group(1))
    m = re.match(r"(?:workflow|task #\d+[^:]*:|task \"[^\"]*\" \(#\d+\):) ?(name|description|key|timeout|retry\.\w+|config(?:\.\w+)?)\b",
                 message)
    if m:
        return "tasks[]." + m.group(1) if message.startswith("task") else m.group(1)
    return ""


def wh_camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


@dataclass
class Group:
    operation: str
    check: str
    code: str
    status: int | None
    key: str
    cases: list[Failure]
    legitimate: str | None = None  # why, when LEGITIMATE_REFUSALS covers it

    @property
    def example(self) -> Failure:
        return min(self.cases, key=lambda f: len(f.request_line))


def group_failures(failures: list[Failure]) -> list[Group]:
    groups: dict[tuple, Group] = {}
    for f in failures:
        message = f.server_message
        if f.check == "positive_data_acceptance" or (message and f.status and f.status >= 400):
            key = normalize(message) if message else f.title
        else:  # a check about the response: what schemathesis says is wrong with it
            where = re.search(r"Schema at (\S+?):?\s", f.detail)
            key = f.title + ": " + normalize(f.detail.split("\n", 1)[0].split("  Validated against")[0]) + (
                f" at {where.group(1)}" if where else "")
        gid = (f.operation, f.check, f.status, key)
        if gid not in groups:
            groups[gid] = Group(f.operation, f.check, f.code, f.status, key, [])
        groups[gid].cases.append(f)
    result = sorted(groups.values(), key=lambda g: (g.operation.split(" ", 1)[-1], g.operation, g.check, g.key))
    for g in result:
        g.legitimate = legitimate_reason(g)
    return result


def legitimate_reason(g: Group) -> str | None:
    if g.check != "positive_data_acceptance":
        return None
    message = g.example.server_message
    for op_re, status, msg_re, why in LEGITIMATE_REFUSALS:
        # DOTALL: generated names and ids may hold newlines and any character.
        if g.status == status and re.fullmatch(op_re, g.operation) and re.search(msg_re, message, re.S):
            return why
    return None


def _clip(text: str, limit: int) -> str:
    text = text.replace("\n", " ")
    return text if len(text) <= limit else text[: limit - 1] + "…"


def format_groups(groups: list[Group], limit: int = 260) -> str:
    lines = []
    for n, g in enumerate(groups, 1):
        ex = g.example
        lines.append(f"{n:3}. {g.code} {g.check}: {g.operation} -> {g.status}  ({len(g.cases)} case(s), {ex.phase})")
        field_name = guess_field(ex.server_message)
        if field_name:
            lines.append(f"       field:  {field_name}")
        lines.append(f"       sent:   {_clip(ex.request_line, limit)}")
        lines.append(f"       answer: {_clip(ex.response or '(no body)', limit)}")
        if g.check != "positive_data_acceptance" and ex.detail:
            lines.append(f"       check:  {_clip(ex.detail, limit)}")
    return "\n".join(lines)


def summarize(result_or_ndjson, *, verbose_legitimate: bool = True) -> tuple[str, list[Group], list[RunError]]:
    """A human summary: unexpected failures first, then the accepted ones."""
    ndjson = result_or_ndjson.ndjson if isinstance(result_or_ndjson, RunResult) else Path(result_or_ndjson)
    failures, all_errors = read_failures(ndjson)
    errors = [e for e in all_errors if not e.accepted]
    groups = group_failures(failures)
    bad = [g for g in groups if not g.legitimate]
    ok = [g for g in groups if g.legitimate]
    out = []
    if isinstance(result_or_ndjson, RunResult) and result_or_ndjson.report:
        r = result_or_ndjson.report
        ops, cases = r.get("operations", {}), r.get("test_cases", {})
        out.append(
            f"schemathesis {r.get('schemathesis_version')} seed={r.get('seed')} "
            f"ran {r.get('running_time', 0):.0f}s: operations tested {ops.get('tested')}/{ops.get('selected')}, "
            f"{cases.get('generated')} test cases, {len(failures)} failing checks in {len(groups)} distinct groups")
    out.append(f"== {len(bad)} distinct failure(s) ==")
    out.append(format_groups(bad) if bad else "(none)")
    if errors:
        out.append(f"== {len(errors)} error(s) ==")
        out += [_clip(str(e), 600) for e in errors]
    if ok and verbose_legitimate:
        out.append(f"== {len(ok)} accepted refusal(s) (LEGITIMATE_REFUSALS) ==")
        out += [f"  - {g.operation} -> {g.status}: {_clip(g.example.server_message, 140)}  [{g.legitimate}]" for g in ok]
    accepted_errors = [e for e in all_errors if e.accepted]
    if accepted_errors and verbose_legitimate:
        out.append(f"== {len(accepted_errors)} accepted error(s) ==")
        out += [f"  - {_clip(str(e), 200)}  [{e.accepted}]" for e in accepted_errors]
    return "\n".join(out), bad, errors


# ---------------------------------------------------------------------------
# The pytest test (short profile)
# ---------------------------------------------------------------------------


def test_openapi_document_holds_under_schemathesis(api_server, tmp_path):
    import pytest

    try:
        import schemathesis  # noqa: F401
    except ImportError:
        pytest.fail("schemathesis is not installed: pip install -r Tests/interop/requirements.txt", pytrace=False)
    base = api_server.base_url
    user_id, token = register_and_login(base, "Schemathesis Fuzzer")
    seed = seed_fixtures(base, token)
    config = write_config(tmp_path / "schemathesis.toml", seed)
    # An admin API key, not the login: the fuzzed Logout and ChangePassword
    # would otherwise end the session the run depends on.
    key = admin_key(base, token)
    result = run_schemathesis(base, key, tmp_path / "report", config=config, max_examples=SHORT_MAX_EXAMPLES,
                              timeout_s=SHORT_TIMEOUT_S)
    assert result.ndjson is not None and result.report is not None, (
        f"schemathesis produced no report (exit {result.returncode}):\n{result.stdout[-6000:]}")
    assert result.report["operations"]["tested"] == result.report["operations"]["selected"] > 40, result.report["operations"]
    assert api_server.running, "the server died during the run"
    text, bad, errors = summarize(result)
    (tmp_path / "summary.txt").write_text(text + "\n")
    if bad or errors:
        pytest.fail(
            f"schemathesis (seed {SEED}, {SHORT_MAX_EXAMPLES} cases per operation, {result.elapsed_s:.0f}s) found "
            f"{len(bad)} distinct failure(s) and {len(errors)} error(s); reproduce with "
            f"`loadtest/schemathesis-long.sh --max-examples {SHORT_MAX_EXAMPLES}`.\n\n{text}", pytrace=False)


# ---------------------------------------------------------------------------
# CLI (long profile)
# ---------------------------------------------------------------------------


def _main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="seed a server, run schemathesis, print the distinct failures")
    run.add_argument("--url", help="a running server (default: start one from --weft-bin)")
    run.add_argument("--token", help="bearer token for --url (default: register a fresh user)")
    run.add_argument("--weft-bin", default=str(wh.weft_bin()), help="weft binary to start when no --url")
    run.add_argument("--max-time", type=int, default=None, help=f"seconds (default {LONG_MAX_TIME_S} unless --max-examples)")
    run.add_argument("--max-examples", type=int, default=None)
    run.add_argument("--seed", type=int, default=SEED)
    run.add_argument("--workers", type=int, default=1)
    run.add_argument("--no-seed-data", action="store_true", help="do not create workflows/executions to fuzz")
    run.add_argument("--out", default=None, help="report directory (default: a temp dir)")
    summ = sub.add_parser("summarize", help="group the failures of an NDJSON report")
    summ.add_argument("report", help="an .ndjson file or a directory holding one")
    args = parser.parse_args(argv)

    if args.command == "summarize":
        path = Path(args.report)
        if path.is_dir():
            path = max(path.glob("*.ndjson"), key=lambda p: p.stat().st_mtime)
        text, bad, errors = summarize(path)
        print(text)
        return 1 if bad or errors else 0

    out = Path(args.out or tempfile.mkdtemp(prefix="weft-schemathesis-"))
    out.mkdir(parents=True, exist_ok=True)
    server = None
    try:
        if args.url:
            base = args.url.rstrip("/")
            token = args.token or register_and_login(base, "Schemathesis Fuzzer")[1]
        else:
            base_dir = Path(tempfile.mkdtemp(prefix="weft-schemathesis-server-"))
            server = wh.WeftServer(Path(args.weft_bin), base_dir / "data", base_dir / "logs",
                                   args=wh.API_SERVER_ARGS, name="schemathesis")
            server.start(timeout=30)
            base = server.base_url
            print(f"started {args.weft_bin} on {base} (logs in {base_dir / 'logs'})", flush=True)
            token = register_and_login(base, "Schemathesis Fuzzer")[1]
        seed = None if args.no_seed_data else seed_fixtures(base, token)
        config = write_config(out / "schemathesis.toml", seed)
        max_time = args.max_time if args.max_time is not None else (None if args.max_examples else LONG_MAX_TIME_S)
        bounds = ([f"max-time {max_time}s"] if max_time else []) + (
            [f"max-examples {args.max_examples}"] if args.max_examples else [])
        print(f"schemathesis {schemathesis_version()} against {base}/openapi.json: seed {args.seed}, "
              f"{', '.join(bounds)}, reports in {out}", flush=True)
        key = token if token.startswith("wk_") else admin_key(base, token)
        result = run_schemathesis(base, key, out, config=config, seed=args.seed, max_examples=args.max_examples,
                                  max_time=max_time, workers=args.workers,
                                  timeout_s=(max_time or 600) * 2 + 120)
        (out / "schemathesis.stdout.txt").write_text(result.stdout)
        print("command: " + shlex.join(result.command), flush=True)
        if result.ndjson is None:
            print(result.stdout[-8000:])
            return 2
        text, bad, errors = summarize(result)
        (out / "summary.txt").write_text(text + "\n")
        print(text)
        print(f"\nwall time {result.elapsed_s:.0f}s, schemathesis exit {result.returncode}; "
              f"full output: {out / 'schemathesis.stdout.txt'}; summary: {out / 'summary.txt'}")
        if server is not None and not server.running:
            print("the server died during the run; see its logs")
            return 3
        return 1 if bad or errors else 0
    finally:
        if server is not None:
            server.stop(signal.SIGTERM, timeout=20)
            server.close_files()


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
