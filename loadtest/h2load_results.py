"""Figures of one h2load run: its printed summary, its --log-file, and whether the calls it
counted as successes really succeeded.

Shared by bench-health.sh, bench-api.sh (their inline report steps put this
directory on sys.path) and bench-tracing.py.

    from h2load_results import parse_output, log_durations, nearest_rank, run_verdict
    r = parse_output(open("run.out").read())   # req/s, counts, data bytes, mean (µs)
    durs = log_durations("run.lat")            # sorted durations (µs) of the 2xx requests
    p99 = nearest_rank(durs, 0.99)
    v = run_verdict(r, before=METRICS_TEXT_0, after=METRICS_TEXT_1,
                    service="grpc.health.v1.Health", method="Check")
    if not v["valid"]: print("invalid:", "; ".join(v["why"]))

h2load counts an HTTP 2xx as a success, but a gRPC error is HTTP 200 with a non-zero
grpc-status in the trailers. So for a gRPC run the server's own count is checked:
/metrics is scraped before and after the run and the delta of
grpc_server_handled_total{grpc_service, grpc_method} by grpc_code must be all OK, and at
least the successes h2load reports. With -D, h2load stops counting the calls still in flight when
the time is up (started - done); the server answers those OK or, when h2load has already gone,
records them as Canceled, so OK + Canceled may exceed h2load's successes by at most that many.
Any other grpc_code, more Canceled than that, or fewer OK than h2load's successes makes the run
invalid.

Command line (for the shell scripts):

    python3 h2load_results.py scrape HOST PORT > before.prom     # GET /metrics (exit 1 if it fails)
    python3 h2load_results.py --self-test                        # checks of the parsing and the verdict
"""

from __future__ import annotations

import collections
import http.client
import math
import re
import sys


def _num(text, pattern, cast=float, default=None):
    m = re.search(pattern, text, re.M)
    return cast(m.group(1)) if m else default


def to_us(value):
    """h2load's '12.34us' / '1.2ms' / '3s' in microseconds (None if not a duration)."""
    m = re.match(r"([\d.]+)(us|ms|s)$", value)
    return float(m.group(1)) * {"us": 1, "ms": 1e3, "s": 1e6}[m.group(2)] if m else None


def parse_output(text):
    """req_per_s (None if absent), total, started, done, succeeded (2xx completed in the run),
    failed (non-2xx and errored), errored, timeout, codes_2xx (also counts responses cut off at the
    end of -D), data_bytes, mean_us; summary_found is False when h2load printed no summary."""
    r = {"req_per_s": _num(text, r"finished in [\d.]+\w*, ([\d.]+) req/s"),
         "total": _num(text, r"^requests: (\d+) total", int, 0),
         "started": _num(text, r"^requests: \d+ total, (\d+) started", int, 0),
         "done": _num(text, r"(\d+) done", int, 0),
         "succeeded": _num(text, r"(\d+) succeeded", int, 0),
         "failed": _num(text, r"(\d+) failed", int, 0),
         "errored": _num(text, r"(\d+) errored", int, 0),
         "timeout": _num(text, r"(\d+) timeout", int, 0),
         "codes_2xx": _num(text, r"^status codes: (\d+) 2xx", int, 0),
         "data_bytes": _num(text, r"^traffic: .*, \S+ \((\d+)\) data", int, 0),
         "mean_us": None,
         "summary_found": re.search(r"^requests: \d+ total", text, re.M) is not None}
    m = re.search(r"^time for request:\s+(\S+)\s+(\S+)\s+(\S+)", text, re.M)  # min max mean sd
    if m:
        r["mean_us"] = to_us(m.group(3))
    return r


def log_durations(path):
    """Sorted per-request durations (µs) of the 2xx rows of an h2load --log-file
    (start µs since epoch, status, duration µs); [] if the file cannot be read."""
    durs = []
    try:
        with open(path) as f:
            for line in f:
                p = line.split("\t")
                if len(p) >= 3 and p[1].startswith("2"):
                    durs.append(int(p[2]))
    except OSError:
        pass
    durs.sort()
    return durs


def nearest_rank(sorted_vals, q):
    """Nearest-rank percentile of an ascending list (None if empty)."""
    if not sorted_vals:
        return None
    return sorted_vals[min(len(sorted_vals) - 1, max(0, math.ceil(q * len(sorted_vals)) - 1))]


# ------------------------------------------------------------------ the server's gRPC status counts

def scrape_metrics(host, port, timeout=10.0):
    """The text of GET http://HOST:PORT/metrics, or None (not 200, or unreachable)."""
    conn = http.client.HTTPConnection(host, int(port), timeout=timeout)
    try:
        conn.request("GET", "/metrics")
        resp = conn.getresponse()
        body = resp.read()
        return body.decode(errors="replace") if resp.status == 200 else None
    except (OSError, http.client.HTTPException):
        return None
    finally:
        conn.close()


_SAMPLE_RE = re.compile(r"^([A-Za-z_:][A-Za-z0-9_:]*)(?:\{(.*)\})?\s+(\S+)")
_LABEL_RE = re.compile(r'\s*([A-Za-z_][A-Za-z0-9_]*)\s*=\s*"((?:[^"\\]|\\.)*)"\s*,?')


def _samples(metrics, name):
    """(labels, value) of the samples called `name`; `metrics` is exposition text or an object with
    .samples of (name, labels, value) (Tests/interop's parse_metrics)."""
    if metrics is None:
        return
    if isinstance(metrics, str):
        for line in metrics.splitlines():
            if not line.startswith(name):
                continue
            m = _SAMPLE_RE.match(line)
            if not m or m.group(1) != name:
                continue
            labels = {lm.group(1): lm.group(2) for lm in _LABEL_RE.finditer(m.group(2) or "")}
            try:
                yield labels, float(m.group(3))
            except ValueError:
                continue
    else:
        for s in metrics.samples:
            if s.name == name:
                yield s.labels, s.value


def grpc_handled(metrics, service, method):
    """{grpc_code: count} of grpc_server_handled_total for one method (summed over grpc_type)."""
    out = collections.Counter()
    for labels, value in _samples(metrics, "grpc_server_handled_total"):
        if labels.get("grpc_service") == service and labels.get("grpc_method") == method:
            out[labels.get("grpc_code", "?")] += value
    return out


def grpc_status_delta(before, after, service, method):
    """{grpc_code: calls} handled between the two scrapes (codes with a zero delta left out), or None
    when a scrape is missing or the method has no series (then nothing can be verified)."""
    if before is None or after is None:
        return None
    b, a = grpc_handled(before, service, method), grpc_handled(after, service, method)
    if not a:
        return None
    return {code: int(round(a[code] - b.get(code, 0))) for code in a if round(a[code] - b.get(code, 0))}


def run_verdict(h, rc=0, before=None, after=None, service=None, method=None):
    """Whether one h2load run's figures may be used.

    h: parse_output(...); rc: h2load's exit status (124 = killed by `timeout`). For a gRPC run pass
    the /metrics texts scraped just before and just after it and the method: the run is valid only
    if the server handled every call of the method in that interval with grpc-status OK and its OK
    count lies between h2load's successes and the calls h2load started. Without `service` the run is
    checked on h2load's own counts only (HTTP status: REST, a static file, or a gRPC peer without
    /metrics). Canceled is accepted only for the calls h2load cut off at the end of -D (not in its
    counts): OK + Canceled <= calls started.

    Returns {"valid", "why": [reasons it is not], "grpc_ok", "grpc_other": {code: n} or None,
    "grpc_checked": bool}."""
    why = []
    if rc:
        why.append("h2load exit status %s%s" % (rc, " (killed by timeout)" if rc == 124 else ""))
    if not h.get("summary_found", True):
        why.append("h2load printed no summary")
    if h["failed"]:
        why.append("h2load: %d failed (%d errored, %d timeout)" % (h["failed"], h["errored"], h.get("timeout", 0)))
    if not h["succeeded"]:
        why.append("no successful request")
    out = {"grpc_ok": None, "grpc_other": None, "grpc_checked": False}
    if service:
        d = grpc_status_delta(before, after, service, method)
        if d is None:
            why.append("gRPC status not verified: no grpc_server_handled_total{%s/%s} from /metrics before and "
                       "after the run" % (service, method))
        else:
            ok = d.get("OK", 0)
            other = {c: n for c, n in d.items() if c != "OK"}
            out.update(grpc_ok=ok, grpc_other=other, grpc_checked=True)
            started = h.get("started") or h["total"]
            # Calls h2load cut off at the end of -D (started, never counted) may end Canceled.
            canceled = sum(n for c, n in other.items() if c in ("Canceled", "Cancelled"))
            cut_canceled_ok = canceled and not h["failed"] and ok >= h["succeeded"] and ok + canceled <= started
            errors = {c: n for c, n in other.items() if not (cut_canceled_ok and c in ("Canceled", "Cancelled"))}
            out["grpc_cut_canceled"] = canceled if cut_canceled_ok else 0
            if errors:
                why.append("server answered %s with grpc-status %s (h2load counted them as HTTP 200)" % (
                    method, ", ".join("%s x%d" % (c, n) for c, n in sorted(errors.items()))))
            if ok < h["succeeded"]:
                why.append("server counted %d OK %s calls, fewer than h2load's %d successes" % (
                    ok, method, h["succeeded"]))
            elif started and ok > started:
                why.append("server counted %d OK %s calls, more than the %d h2load started (other clients?)" % (
                    ok, method, started))
    out["valid"] = not why
    out["why"] = why
    return out


def status_note(v, h):
    """One line on what was verified, for the logs."""
    if v["grpc_checked"]:
        cut = max(0, v["grpc_ok"] - h["succeeded"])
        cc = v.get("grpc_cut_canceled") or 0
        other = {c: n for c, n in v["grpc_other"].items() if not (cc and c in ("Canceled", "Cancelled"))}
        return "gRPC status verified from /metrics: %d OK (%d counted by h2load%s)%s, %s" % (
            v["grpc_ok"], h["succeeded"], (" + %d cut off at the end of -D" % cut) if cut else "",
            (", %d Canceled (cut off at the end of -D, not counted)" % cc) if cc else "",
            "no other status" if not other else ", ".join("%s x%d" % (c, n) for c, n in sorted(other.items())))
    return "gRPC status not verified"


# ------------------------------------------------------------------ self-test

_OUT_OK = """\
finished in 2.00s, 32640.00 req/s, 1.18MB/s
requests: 65280 total, 65792 started, 65280 done, 65280 succeeded, 0 failed, 0 errored, 0 timeout
status codes: 65280 2xx, 0 3xx, 0 4xx, 0 5xx
traffic: 2.37MB (2482400) total, 191.94KB (196544) headers (space savings 96.19%), 446.25KB (456960) data
                     min         max         mean         sd        +/- sd
time for request:      159us      1.89ms       420us       258us    92.00%
"""
_M0 = """\
# TYPE grpc_server_handled_total counter
grpc_server_handled_total{grpc_type="unary",grpc_service="grpc.health.v1.Health",grpc_method="Check",grpc_code="OK"} 100
grpc_server_handled_total{grpc_type="unary",grpc_service="weft.v1.UserService",grpc_method="GetCurrentUser",grpc_code="OK"} 0
"""
_M1 = """\
# TYPE grpc_server_handled_total counter
grpc_server_handled_total{grpc_type="unary",grpc_service="grpc.health.v1.Health",grpc_method="Check",grpc_code="OK"} 65892
grpc_server_handled_total{grpc_type="unary",grpc_service="weft.v1.UserService",grpc_method="GetCurrentUser",grpc_code="OK"} 0
grpc_server_handled_total{grpc_type="unary",grpc_service="weft.v1.UserService",grpc_method="GetCurrentUser",grpc_code="Unauthenticated"} 65792
grpc_server_handled_total_other{grpc_service="grpc.health.v1.Health",grpc_method="Check",grpc_code="Internal"} 5
"""


def self_test():
    h = parse_output(_OUT_OK)
    assert (h["total"], h["started"], h["done"], h["succeeded"], h["failed"]) == (65280, 65792, 65280, 65280, 0), h
    assert h["req_per_s"] == 32640.0 and h["data_bytes"] == 456960 and h["mean_us"] == 420.0, h
    H, U = ("grpc.health.v1.Health", "Check"), ("weft.v1.UserService", "GetCurrentUser")
    v = run_verdict(h, 0, _M0, _M1, *H)
    assert v["valid"] and v["grpc_ok"] == 65792 and v["grpc_other"] == {}, v        # 512 cut off at -D: fine
    v = run_verdict(h, 0, _M0, _M1, *U)                                            # all UNAUTHENTICATED
    assert not v["valid"] and v["grpc_other"] == {"Unauthenticated": 65792}, v
    assert any("Unauthenticated x65792" in w for w in v["why"]) and any("fewer than" in w for w in v["why"]), v
    # The 512 calls cut off at the end of -D may be answered OK or recorded Canceled, no more.
    cut = _M1.replace('grpc_code="OK"} 65892', 'grpc_code="OK"} 65480').replace(
        "grpc_server_handled_total_other", 'grpc_server_handled_total{grpc_type="unary",grpc_service='
        '"grpc.health.v1.Health",grpc_method="Check",grpc_code="Canceled"} 412\n#')
    v = run_verdict(h, 0, _M0, cut, *H)
    assert v["valid"] and v["grpc_cut_canceled"] == 412 and "412 Canceled" in status_note(v, h), v
    v = run_verdict(h, 0, _M0, cut.replace("} 412", "} 413"), *H)                    # one Canceled too many
    assert not v["valid"] and "Canceled x413" in v["why"][0], v
    v = run_verdict(h, 0, None, _M1, *H)                                           # no scrape: not verified
    assert not v["valid"] and "not verified" in v["why"][0], v
    v = run_verdict(h, 0, _M0, _M0.replace(" 100\n", " 99999999\n"), *H)            # more OK than started
    assert not v["valid"] and "more than" in v["why"][0], v
    v = run_verdict(h, 0, _M0, _M0.replace(" 100\n", " 60000\n"), *H)               # fewer OK than succeeded
    assert not v["valid"] and "fewer than" in v["why"][0], v
    bad = parse_output(_OUT_OK.replace("65280 succeeded, 0 failed, 0 errored", "65000 succeeded, 280 failed, 280 errored"))
    v = run_verdict(bad)                                                          # HTTP-level failures
    assert not v["valid"] and v["why"] == ["h2load: 280 failed (280 errored, 0 timeout)"], v
    assert run_verdict(h)["valid"] and not run_verdict(h, 124)["valid"]
    assert not run_verdict(parse_output(""))["valid"]
    assert nearest_rank([1, 2, 3, 4], 0.5) == 2 and nearest_rank([], 0.5) is None
    print("self-test: h2load summary parsing, gRPC status verdicts OK")
    return 0


def main(argv):
    if argv[:1] == ["--self-test"]:
        return self_test()
    if len(argv) == 3 and argv[0] == "scrape":
        text = scrape_metrics(argv[1], argv[2])
        if text is None:
            print("GET http://%s:%s/metrics failed" % (argv[1], argv[2]), file=sys.stderr)
            return 1
        sys.stdout.write(text)
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
