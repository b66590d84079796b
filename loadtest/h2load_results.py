"""Figures of one h2load run: its printed summary and its --log-file.

Shared by bench-health.sh, bench-api.sh (their inline report steps put this
directory on sys.path) and bench-tracing.py.

    from h2load_results import parse_output, log_durations, nearest_rank
    r = parse_output(open("run.out").read())   # req/s, counts, data bytes, mean (µs)
    durs = log_durations("run.lat")            # sorted durations (µs) of the 2xx requests
    p99 = nearest_rank(durs, 0.99)
"""

from __future__ import annotations

import math
import re


def _num(text, pattern, cast=float, default=None):
    m = re.search(pattern, text, re.M)
    return cast(m.group(1)) if m else default


def to_us(value):
    """h2load's '12.34us' / '1.2ms' / '3s' in microseconds (None if not a duration)."""
    m = re.match(r"([\d.]+)(us|ms|s)$", value)
    return float(m.group(1)) * {"us": 1, "ms": 1e3, "s": 1e6}[m.group(2)] if m else None


def parse_output(text):
    """req_per_s (None if absent), total, succeeded (2xx completed in the run), failed (non-2xx and
    errored), codes_2xx (also counts responses cut off at the end of -D), data_bytes, mean_us."""
    r = {"req_per_s": _num(text, r"finished in [\d.]+\w*, ([\d.]+) req/s"),
         "total": _num(text, r"^requests: (\d+) total", int, 0),
         "succeeded": _num(text, r"(\d+) succeeded", int, 0),
         "failed": _num(text, r"(\d+) failed", int, 0),
         "errored": _num(text, r"(\d+) errored", int, 0),
         "codes_2xx": _num(text, r"^status codes: (\d+) 2xx", int, 0),
         "data_bytes": _num(text, r"^traffic: .*, \S+ \((\d+)\) data", int, 0),
         "mean_us": None}
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
