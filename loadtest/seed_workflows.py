#!/usr/bin/env python3
"""Seeds a running Weft server with N workflows through the REST API.

    python3 loadtest/seed_workflows.py --port PORT [-n 100000] [--threads 8] [--seed 1]

Registers (or reuses) one user, logs in, then POSTs /workflows from --threads
threads, each on its own keep-alive HTTP/1.1 connection (http.client), and
prints the rate achieved. Loopback only by default; bounded by --timeout.

The content is deterministic for a given --seed (workflow i is generated from
Random("SEED:i"), independent of the thread that sends it) and shaped so that
full-text search has realistic selectivity:

* names like "Nightly invoice reconciliation (EMEA)", descriptions of one or
  two sentences, 1-5 tasks ("Fetch invoices", "Notify Slack", ...) chained by
  dependsOn, all action "noop";
* words are drawn with Zipf-like weights from domain word lists, so a few
  words ("report", "sync", "daily") are in a large share of workflows and the
  tail is rare;
* about a third of the workflows name a customer/project codename drawn
  (Zipf) from 20,000 generated pseudo-words: a long tail of words found in
  only a handful of workflows.

bench-list-search.py imports generate()/doc_tokens() to compute the exact
document frequencies of its queries without asking the server.
"""

from __future__ import annotations

import argparse
import bisect
import http.client
import itertools
import json
import os
import random
import sys
import threading
import time

# ------------------------------------------------------------------ word lists
# Order = popularity: the first entries of each list get the largest Zipf weight.

CADENCES = ["daily", "nightly", "weekly", "hourly", "monthly", "quarterly", "realtime", "on-demand",
            "end-of-day", "biweekly", "annual", "every-15-minutes"]

OBJECTS = [
    "report", "invoice", "customer", "order", "payment", "user", "inventory", "lead", "ticket", "shipment",
    "subscription", "account", "product", "transaction", "refund", "contract", "employee", "campaign",
    "payroll", "vendor", "expense", "forecast", "dashboard", "metric", "log", "backup", "snapshot", "dataset",
    "catalog", "pricing", "quote", "opportunity", "churn", "cohort", "survey", "feedback", "review", "return",
    "warehouse", "supplier", "budget", "ledger", "tax", "compliance", "audit", "certificate", "credential",
    "license", "asset", "incident", "alert", "deployment", "release", "build", "artifact", "container",
    "cluster", "schema", "index", "partition", "embedding", "model", "feature", "experiment", "segment",
    "newsletter", "webhook", "notification", "reminder", "onboarding", "offboarding", "timesheet", "claim",
    "policy", "premium", "loan", "mortgage", "portfolio", "trade", "settlement", "reconciliation-batch",
    "sensor", "telemetry", "firmware", "device", "patient", "appointment", "prescription", "lab-result",
]

PROCESSES = [
    "sync", "export", "import", "reconciliation", "cleanup", "aggregation", "ingestion", "backfill",
    "validation", "enrichment", "deduplication", "archival", "migration", "rollup", "digest", "scoring",
    "approval", "escalation", "rotation", "provisioning", "replication", "compaction", "anonymization",
    "retraining", "forecasting", "billing", "dunning", "fulfillment", "routing", "triage", "sampling",
    "snapshotting", "indexing", "tagging", "classification", "normalization", "translation", "transcoding",
]

SYSTEMS = [
    "Salesforce", "Stripe", "Postgres", "S3", "Snowflake", "BigQuery", "Slack", "Zendesk", "Jira", "HubSpot",
    "NetSuite", "Shopify", "QuickBooks", "Workday", "SAP", "Kafka", "Redshift", "GitHub", "PagerDuty",
    "Datadog", "Okta", "Twilio", "Mailchimp", "Segment", "Airtable", "DynamoDB", "MongoDB", "Elasticsearch",
    "SFTP", "Google Sheets", "Xero", "Marketo", "Intercom", "Braze", "Looker", "Tableau", "Databricks",
    "Confluence", "ServiceNow", "Greenhouse", "BambooHR", "Adyen", "Plaid", "Avalara", "Coupa", "Gong",
]

TEAMS = ["finance", "growth", "data platform", "support", "sales ops", "marketing", "security", "platform",
         "billing", "hr", "legal", "logistics", "risk", "compliance", "infra", "analytics", "product",
         "customer success", "procurement", "treasury"]

REGIONS = ["EMEA", "US", "APAC", "EU", "UK", "LATAM", "Canada", "DACH", "Nordics", "ANZ", "Japan", "India"]

TASK_VERBS = [
    "fetch", "validate", "transform", "load", "notify", "export", "compute", "filter", "merge", "upload",
    "download", "parse", "archive", "send", "check", "enrich", "deduplicate", "aggregate", "publish",
    "approve", "sign", "encrypt", "decrypt", "compress", "retry", "reconcile", "score", "classify",
    "render", "snapshot", "rotate", "wait for", "poll", "index", "tag", "translate", "summarize",
]

TASK_TARGETS = [
    "rows", "records", "invoices", "orders", "customers", "events", "files", "report", "totals", "payments",
    "results", "errors", "duplicates", "changes", "manifest", "summary", "metrics", "alerts", "tickets",
    "accounts", "balances", "schema", "partitions", "credentials", "keys", "PDF", "CSV", "batch",
    "checksums", "approvals", "signatures", "embeddings", "features", "predictions", "thresholds",
]

FILLER = [
    "the", "and", "to", "from", "for", "of", "into", "with", "on", "all", "new", "each", "every",
    "data", "records", "updated", "latest", "pending", "failed", "open", "active", "stale", "missing",
    "team", "before", "after", "once", "when", "then", "by", "per", "via", "using", "only", "changed",
    "historical", "incremental", "full", "partial", "downstream", "upstream", "raw", "clean", "verified",
    "flagged", "overdue", "duplicate", "high-priority", "large", "small", "critical", "legacy", "external",
]

SENTENCES = [
    "{Verb} {filler} {object} records from {system} and {verb2} them into {system2}.",
    "{Verb} {object} data {filler} {system} every {cadence_word} run.",
    "Keeps {object} {process} in {system} consistent with {system2}.",
    "Owned by the {team} team; pages on-call when {object} {process} fails.",
    "Runs {process} over {filler} {object} rows and posts a digest to {system}.",
    "Replaces the legacy {system} cron job for {object} {process}.",
    "Used by {team} for {region} {object} {process}.",
    "Pulls {filler} {object} changes, {verb2}s them and writes {object2} totals to {system}.",
]

SYLLABLES = ["ka", "lo", "mi", "ra", "ven", "tor", "zu", "bel", "qui", "dra", "nix", "pol", "sar", "tem",
             "vy", "xo", "ul", "fen", "gar", "hal", "jin", "kor", "lum", "mor", "nel", "ost", "pra", "rin",
             "sol", "tal", "ub", "vor", "wex", "yl", "zan", "cre", "dun", "eph", "fro", "gli"]

CODENAME_COUNT = 20_000
CODENAME_SHARE = 0.35


def _weights(n: int, s: float) -> list[float]:
    cum, total = [], 0.0
    for k in range(n):
        total += 1.0 / (k + 1) ** s
        cum.append(total)
    return cum


def _codenames() -> list[str]:
    rng = random.Random("weft-codenames-v1")
    seen, out = set(), []
    while len(out) < CODENAME_COUNT:
        word = "".join(rng.choice(SYLLABLES) for _ in range(rng.choice((2, 3, 3, 4))))
        if word not in seen and len(word) >= 5:
            seen.add(word)
            out.append(word)
    return out


CODENAMES = _codenames()


class _Zipf:
    def __init__(self, items, s=1.0):
        self.items = items
        self.cum = _weights(len(items), s)

    def __call__(self, rng: random.Random):
        return self.items[bisect.bisect_left(self.cum, rng.random() * self.cum[-1])]


Z_CADENCE = _Zipf(CADENCES, 1.1)
Z_OBJECT = _Zipf(OBJECTS, 1.0)
Z_PROCESS = _Zipf(PROCESSES, 1.0)
Z_SYSTEM = _Zipf(SYSTEMS, 1.0)
Z_TEAM = _Zipf(TEAMS, 0.9)
Z_REGION = _Zipf(REGIONS, 1.0)
Z_TVERB = _Zipf(TASK_VERBS, 0.9)
Z_TTARGET = _Zipf(TASK_TARGETS, 0.9)
Z_FILLER = _Zipf(FILLER, 1.0)
Z_SENTENCE = _Zipf(SENTENCES, 0.5)
Z_CODENAME = _Zipf(CODENAMES, 1.0)


def _cap(s: str) -> str:
    return s[:1].upper() + s[1:]


def _sentence(rng: random.Random) -> str:
    verb = Z_TVERB(rng)
    return Z_SENTENCE(rng).format(
        Verb=_cap(verb), verb2=Z_TVERB(rng), filler=Z_FILLER(rng), object=Z_OBJECT(rng), object2=Z_OBJECT(rng),
        system=Z_SYSTEM(rng), system2=Z_SYSTEM(rng), cadence_word=Z_CADENCE(rng), process=Z_PROCESS(rng),
        team=Z_TEAM(rng), region=Z_REGION(rng))


def make_workflow(seed: int, index: int) -> dict:
    """Workflow number `index` (0-based) for `seed`: always the same body."""
    rng = random.Random(f"{seed}:{index}")
    obj, proc = Z_OBJECT(rng), Z_PROCESS(rng)
    shape = rng.random()
    if shape < 0.35:
        name = f"{_cap(Z_CADENCE(rng))} {obj} {proc}"
    elif shape < 0.55:
        name = f"{_cap(obj)} {proc} for {Z_TEAM(rng)}"
    elif shape < 0.75:
        name = f"{_cap(obj)} {proc} ({Z_REGION(rng)})"
    elif shape < 0.9:
        name = f"{Z_SYSTEM(rng)} to {Z_SYSTEM(rng)} {obj} {proc}"
    else:
        name = f"{_cap(Z_CADENCE(rng))} {obj} {proc} v{rng.randint(2, 9)}"
    parts = [_sentence(rng)]
    if rng.random() < 0.5:
        parts.append(_sentence(rng))
    if rng.random() < CODENAME_SHARE:
        code = Z_CODENAME(rng)
        parts.append(rng.choice((f"Requested by customer {_cap(code)}.", f"Part of project {_cap(code)}.",
                                 f"See runbook {code}-{rng.randint(10, 999)}.")))
    if rng.random() < 0.15:
        parts.append(f"Ticket OPS-{rng.randint(1000, 99999)}.")
    description = " ".join(parts)
    tasks, slugs = [], set()
    for _ in range(rng.randint(1, 5)):
        for _attempt in range(10):
            verb, target = Z_TVERB(rng), Z_TTARGET(rng)
            tname = f"{_cap(verb)} {target}"
            if rng.random() < 0.3:
                tname += f" {rng.choice(('in', 'to', 'from'))} {Z_SYSTEM(rng)}"
            slug = "_".join("".join(c if c.isalnum() else " " for c in tname.lower()).split())
            if slug not in slugs:
                break
        else:
            continue
        slugs.add(slug)
        task = {"key": f"t{len(tasks) + 1}", "name": tname, "action": "noop"}
        if tasks:
            task["dependsOn"] = [tasks[-1]["key"]]
        tasks.append(task)
    return {"name": name, "description": description, "tasks": tasks}


def generate(n: int, seed: int):
    for i in range(n):
        yield make_workflow(seed, i)


def doc_tokens(wf: dict) -> set[str]:
    """Tokens as FTS5 unicode61 sees them (ASCII content: lowercase, split on non-alphanumerics)."""
    text = " ".join([wf["name"], wf["description"]] + [t["name"] for t in wf["tasks"]]).lower()
    return set("".join(c if c.isalnum() else " " for c in text).split())


# ------------------------------------------------------------------ HTTP

class Client:
    """One keep-alive HTTP/1.1 connection."""

    def __init__(self, host: str, port: int, token: str | None = None, timeout: float = 30):
        self.host, self.port, self.timeout, self.token = host, port, timeout, token
        self.conn = None

    def request(self, method: str, path: str, body=None, headers=None):
        hdrs = {"accept": "application/json"}
        data = None
        if body is not None:
            data = body if isinstance(body, (bytes, bytearray)) else json.dumps(body).encode()
            hdrs["content-type"] = "application/json"
        if self.token:
            hdrs["authorization"] = "Bearer " + self.token
        hdrs.update(headers or {})
        for attempt in (1, 2):
            if self.conn is None:
                self.conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
            try:
                self.conn.request(method, path, body=data, headers=hdrs)
                resp = self.conn.getresponse()
                payload = resp.read()
                if resp.getheader("connection", "").lower() == "close":
                    self.close()
                return resp.status, payload
            except (ConnectionError, http.client.HTTPException, OSError):
                self.close()
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def close(self):
        if self.conn is not None:
            self.conn.close()
            self.conn = None


def login(host: str, port: int, email: str, password: str, name: str = "Bench Seeder") -> str:
    """Registers the user if needed (409 = exists), logs in, returns the bearer token."""
    c = Client(host, port)
    try:
        status, body = c.request("POST", "/users/register", {"email": email, "password": password, "name": name})
        if status not in (201, 409):
            raise SystemExit(f"register {email}: HTTP {status}: {body[:300]!r}")
        status, body = c.request("POST", "/users/login", {"email": email, "password": password})
        if status != 200:
            raise SystemExit(f"login {email}: HTTP {status}: {body[:300]!r}")
        return json.loads(body)["token"]
    finally:
        c.close()


def seed(host: str, port: int, token: str, n: int, seed_value: int, threads: int, start: int = 0,
         timeout: float = 3600, progress: bool = True) -> dict:
    """Creates workflows start..start+n-1; returns counts and the rate."""
    counter = itertools.count(start)
    end = start + n
    lock = threading.Lock()
    stats = {"created": 0, "errors": 0, "first_error": None}
    deadline = time.monotonic() + timeout
    step = max(1, n // 10)

    def worker():
        c = Client(host, port, token)
        try:
            while time.monotonic() < deadline:
                with lock:
                    i = next(counter)
                if i >= end:
                    return
                body = json.dumps(make_workflow(seed_value, i)).encode()
                try:
                    status, payload = c.request("POST", "/workflows", body)
                except Exception as e:  # noqa: BLE001 - report and keep going
                    status, payload = 0, repr(e).encode()
                with lock:
                    if status == 201:
                        stats["created"] += 1
                        done = stats["created"]
                        if progress and done % step == 0:
                            el = time.monotonic() - t0
                            print(f"[seed] {done}/{n} created, {done / el:.0f}/s", file=sys.stderr, flush=True)
                    else:
                        stats["errors"] += 1
                        if stats["first_error"] is None:
                            stats["first_error"] = f"workflow #{i}: HTTP {status}: {payload[:300]!r}"
                        if stats["errors"] >= 20 and stats["created"] == 0:
                            return
        finally:
            c.close()

    t0 = time.monotonic()
    ts = [threading.Thread(target=worker, daemon=True) for _ in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(max(0.0, deadline - time.monotonic()) + 5)
    elapsed = time.monotonic() - t0
    stats.update(requested=n, elapsed_s=round(elapsed, 3), rate_per_s=round(stats["created"] / elapsed, 1)
                 if elapsed > 0 else 0.0, threads=threads, timed_out=time.monotonic() >= deadline)
    return stats


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("-n", type=int, default=int(os.environ.get("N", 100_000)), help="workflows to create (default 100000, env N)")
    ap.add_argument("--threads", type=int, default=int(os.environ.get("SEED_THREADS", 8)),
                    help="parallel keep-alive connections (default 8, env SEED_THREADS)")
    ap.add_argument("--seed", type=int, default=int(os.environ.get("SEED", 1)), help="content seed (default 1)")
    ap.add_argument("--start", type=int, default=0, help="index of the first workflow (to extend an earlier seeding)")
    ap.add_argument("--email", default=os.environ.get("SEED_EMAIL", "seed@bench.weft.test"))
    ap.add_argument("--password", default=os.environ.get("SEED_PASSWORD", "bench-password-1"))
    ap.add_argument("--token", help="bearer token to use instead of register/login")
    ap.add_argument("--timeout", type=float, default=3600, help="stop after this many seconds (default 3600)")
    ap.add_argument("--json", action="store_true", help="print the result as JSON on stdout")
    ap.add_argument("--dry-run", action="store_true", help="print 3 sample bodies and exit")
    a = ap.parse_args()
    if a.dry_run:
        for i in range(3):
            print(json.dumps(make_workflow(a.seed, a.start + i), indent=1))
        return 0
    token = a.token or login(a.host, a.port, a.email, a.password)
    r = seed(a.host, a.port, token, a.n, a.seed, a.threads, a.start, a.timeout)
    if a.json:
        print(json.dumps(r))
    print(f"[seed] created {r['created']}/{a.n} workflows in {r['elapsed_s']:.1f} s with {a.threads} connections: "
          f"{r['rate_per_s']:.0f} workflows/s; {r['errors']} errors"
          + (f" (first: {r['first_error']})" if r["first_error"] else "")
          + ("; TIMED OUT" if r["timed_out"] else ""), file=sys.stderr)
    return 0 if r["created"] == a.n else 1


if __name__ == "__main__":
    sys.exit(main())
