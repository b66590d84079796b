#!/usr/bin/env python3
"""Step-7 benchmark: the cost of TLS on the main port.

    python3 loadtest/bench-tls.py [--duration 10] [--rounds 3] [--conns 16] [--streams 32]
        [--handshake-runs 20] [--handshake-conns 64] [--min-ratio 0.70] [--key ec|rsa]

Starts two servers of the same build (`$WEFT_BIN`, default .build/release/weft)
with the same flags, one plaintext (h2c) and one with `--tls-cert/--tls-key`
(a throw-away CA and a localhost/127.0.0.1 certificate: Tests/interop/tls_certs.py
when it is there, else the `openssl` command line; `--key rsa` makes an RSA-2048
self-signed one instead of EC P-256), and measures, in the same run:

1. **throughput**: unary `grpc.health.v1.Health/Check` with h2load, exactly as
   bench-health.sh does it, `-c 16 -m 32` for --duration seconds, --rounds rounds,
   the order of the two servers swapped every round, after --warmup seconds each:

       h2load -t 1 -D 10 -c 16 -m 32 -d empty.grpc -H 'content-type: application/grpc' \\
         -H 'te: trailers' {http,https}://127.0.0.1:PORT/grpc.health.v1.Health/Check

   Each run is checked against the server's own count (`/metrics` before and after,
   read with `--metrics-token`: `grpc_server_handled_total` of Health/Check all `OK`
   and covering h2load's successes; see loadtest/README.md, *Invalid runs*).
   Reported: req/s (median), server CPU per call, and the TLS / plaintext ratio of
   req/s. Target: ratio >= --min-ratio (0.70).
2. **new connections per second**: --handshake-runs runs of
   `h2load -t 1 -c 64 -n 64 -m 1` (64 new connections, one call each) against each
   server; connections/s = connections / h2load's own "finished in" time, summed
   over the runs. For the TLS server every one is a full handshake (each h2load run
   is a new process: no session resumption); `weft_tls_handshakes_total{result="ok"}`
   must have grown by at least that many. The plaintext figure (TCP + HTTP/2
   preface + one call) is printed for reference.

Verdict (strict): PASS if the req/s ratio >= --min-ratio and every run was valid;
else FAIL (exit 1). Handshakes/s are reported, not judged.

Loopback only; every h2load run is bounded by `timeout`.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
import http.client
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "Tests" / "interop"))

from h2load_results import parse_output, run_verdict, status_note  # noqa: E402
from weft_process import WeftProcess, cpu_ticks  # noqa: E402

SERVICE, METHOD = "grpc.health.v1.Health", "Check"
PATH = f"/{SERVICE}/{METHOD}"
NEEDED_FLAGS = ["--tls-cert", "--tls-key", "--metrics-token"]


def make_certs(directory: Path, key_type: str) -> tuple[Path, Path, Path]:
    """(cert, key, CA to verify it) for 127.0.0.1."""
    if key_type == "ec":
        try:
            import tls_certs  # Tests/interop/tls_certs.py

            c = tls_certs.make_certs(directory)
            return c.server_cert, c.server_key, c.ca_cert
        except ImportError:
            pass
    openssl = shutil.which("openssl") or sys.exit("openssl is not installed")
    key, cert = directory / "server.key", directory / "server.crt"
    algo = ["-newkey", "rsa:2048"] if key_type == "rsa" else ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"]
    subprocess.run([openssl, "req", "-x509", *algo, "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "2",
                    "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
                   check=True, capture_output=True, timeout=60)
    return cert, key, cert


def scrape(port, token, ca, tls):
    """GET /metrics with the bearer token (None if it fails)."""
    if tls:
        ctx = ssl.create_default_context(cafile=str(ca))
        conn = http.client.HTTPSConnection("127.0.0.1", port, timeout=15, context=ctx)
    else:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=15)
    try:
        conn.request("GET", "/metrics", headers={"authorization": f"Bearer {token}"})
        resp = conn.getresponse()
        body = resp.read().decode(errors="replace")
        return body if resp.status == 200 else None
    except (OSError, http.client.HTTPException):
        return None
    finally:
        conn.close()


def metric_sum(text, name, **labels):
    total = 0.0
    for line in (text or "").splitlines():
        m = re.match(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)", line)
        if not m or m.group(1) != name:
            continue
        lab = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', m.group(2) or ""))
        if all(lab.get(k) == v for k, v in labels.items()):
            total += float(m.group(3))
    return total


class Server:
    def __init__(self, name, proc: WeftProcess, tls, token, ca):
        self.name, self.proc, self.tls, self.token, self.ca = name, proc, tls, token, ca
        self.url = f"{'https' if tls else 'http'}://127.0.0.1:{proc.port}{PATH}"

    def metrics(self):
        return scrape(self.proc.port, self.token, self.ca, self.tls)


def h2load(server: Server, empty: Path, *args, bound: float):
    cmd = ["timeout", str(int(bound)), "h2load", "-t", "1", *map(str, args), "-d", str(empty),
           "-H", "content-type: application/grpc", "-H", "te: trailers", server.url]
    res = subprocess.run(cmd, capture_output=True, text=True)
    return res.returncode, res.stdout + res.stderr


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--weft-bin", default=os.environ.get("WEFT_BIN", str(HERE.parent / ".build/release/weft")))
    p.add_argument("--duration", type=int, default=10)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--conns", type=int, default=16)
    p.add_argument("--streams", type=int, default=32)
    p.add_argument("--handshake-runs", type=int, default=20)
    p.add_argument("--handshake-conns", type=int, default=64)
    p.add_argument("--min-ratio", type=float, default=0.70)
    p.add_argument("--key", choices=["ec", "rsa"], default="ec", help="server key: EC P-256 or RSA-2048")
    p.add_argument("--server-args", default="", help="more `weft serve` arguments (both servers)")
    a = p.parse_args()

    if not Path(a.weft_bin).exists():
        sys.exit(f"no weft binary at {a.weft_bin} (swift build -c release, or set WEFT_BIN)")
    if not shutil.which("h2load"):
        sys.exit("h2load not found (apt-get install nghttp2-client)")
    help_text = subprocess.run([a.weft_bin, "serve", "--help"], capture_output=True, text=True, timeout=30).stdout
    missing = [f for f in NEEDED_FLAGS if f not in help_text]
    if missing:
        sys.exit(f"{a.weft_bin} does not know {', '.join(missing)} (not a Step-7 build?)")

    out_dir = Path(tempfile.mkdtemp(prefix="weft-bench-tls-"))
    pki = out_dir / "pki"
    pki.mkdir()
    cert, key, ca = make_certs(pki, a.key)
    empty = out_dir / "empty.grpc"
    empty.write_bytes(b"\x00\x00\x00\x00\x00")
    token = os.urandom(16).hex()
    common = ["--metrics-token", token] + a.server_args.split()
    build = "release" if "/release/" in a.weft_bin else ("DEBUG" if "/debug/" in a.weft_bin else "?")
    cert_text = subprocess.run(["openssl", "x509", "-noout", "-text", "-in", str(cert)], capture_output=True,
                               text=True).stdout
    algo = re.search(r"Public Key Algorithm: (\S+)", cert_text)
    print(f"weft {a.weft_bin} ({build} build), {os.cpu_count()} cores, {subprocess.run(['h2load', '--version'], capture_output=True, text=True).stdout.strip()}; "
          f"server key {algo.group(1) if algo else a.key}; out {out_dir}")
    if build == "DEBUG":
        print("note: a debug build: the figures are not the Step-7 verdict")

    procs = []
    try:
        plain = Server("plaintext", WeftProcess(a.weft_bin, str(out_dir / "data-plain"), common, str(out_dir), "plain"),
                       False, token, ca)
        procs.append(plain.proc)
        tls = Server("tls", WeftProcess(a.weft_bin, str(out_dir / "data-tls"),
                                        common + ["--tls-cert", str(cert), "--tls-key", str(key)], str(out_dir), "tls"),
                     True, token, ca)
        procs.append(tls.proc)
        servers = [plain, tls]
        for s in servers:
            if s.metrics() is None:
                sys.exit(f"{s.name}: GET /metrics with the token failed; cannot verify runs")

        # One call each by hand (the negotiated TLS parameters are printed by h2load).
        for s in servers:
            rc, out = h2load(s, empty, "-n", 1, "-c", 1, bound=30)
            proto = "; ".join(x.strip() for x in re.findall(r"^(TLS Protocol:.*|Cipher:.*|Server Temp Key:.*|Application protocol:.*)$", out, re.M))
            print(f"{s.name}: {s.url} pid {s.proc.pid}" + (f" ({proto})" if proto else ""))
            if rc != 0 or "1 succeeded" not in out:
                sys.exit(f"{s.name}: a single Health/Check failed:\n{out}")

        # ---------------------------------------------------------- throughput
        if a.warmup:
            for s in servers:
                h2load(s, empty, "-D", a.warmup, "-c", a.conns, "-m", a.streams, bound=a.warmup + 60)
        rows = []
        for r in range(1, a.rounds + 1):
            order = servers if r % 2 else servers[::-1]
            for s in order:
                before = s.metrics()
                c0 = cpu_ticks(s.proc.pid)
                rc, out = h2load(s, empty, "-D", a.duration, "-c", a.conns, "-m", a.streams, bound=a.duration + 60)
                c1 = cpu_ticks(s.proc.pid)
                after = s.metrics()
                h = parse_output(out)
                v = run_verdict(h, rc, before, after, SERVICE, METHOD)
                cpu_us = ((c1 - c0) / os.sysconf("SC_CLK_TCK") * 1e6 / h["succeeded"]
                          if c0 is not None and c1 is not None and h["succeeded"] else None)
                rows.append({"round": r, "server": s.name, "rps": h["req_per_s"], "cpu_us": cpu_us, "valid": v["valid"],
                             "why": v["why"], "died": s.proc.died()})
                print(f"round {r} {s.name:>9}: {h['req_per_s'] or 0:,.0f} req/s, "
                      f"{'%.1f' % cpu_us if cpu_us else 'n/a'} µs CPU/call; {status_note(v, h)}; "
                      f"{'valid' if v['valid'] else 'INVALID: ' + '; '.join(v['why'])}")

        # ---------------------------------------------------------- new connections
        hs = {}
        for s in servers:
            before = s.metrics()
            conns, seconds, failed = 0, 0.0, 0
            for _ in range(a.handshake_runs):
                rc, out = h2load(s, empty, "-c", a.handshake_conns, "-n", a.handshake_conns, "-m", 1, bound=60)
                h = parse_output(out)
                t = re.search(r"finished in ([\d.]+)(ms|s|us)", out)
                if rc != 0 or not t:
                    failed += 1
                    continue
                seconds += float(t.group(1)) * {"s": 1, "ms": 1e-3, "us": 1e-6}[t.group(2)]
                conns += h["succeeded"]
                failed += h["failed"]
            after = s.metrics()
            handshakes = (metric_sum(after, "weft_tls_handshakes_total", result="ok")
                          - metric_sum(before, "weft_tls_handshakes_total", result="ok"))
            hs[s.name] = {"conns": conns, "seconds": seconds, "failed": failed, "handshakes": handshakes}
    finally:
        for proc in procs:
            proc.stop()

    # -------------------------------------------------------------- report
    print()
    print(f"| server | h2load | req/s (median) | server CPU / call | valid runs | new conns/s (-c {a.handshake_conns} -n {a.handshake_conns} -m 1 x {a.handshake_runs}) |")
    print("|---|---|---:|---:|---:|---:|")
    med = {}
    for s in ("plaintext", "tls"):
        good = [r for r in rows if r["server"] == s and r["valid"] and r["rps"]]
        med[s] = statistics.median(r["rps"] for r in good) if good else None
        cpu = statistics.median(r["cpu_us"] for r in good if r["cpu_us"]) if any(r["cpu_us"] for r in good) else None
        h = hs.get(s, {})
        cps = h["conns"] / h["seconds"] if h.get("seconds") else None
        print(f"| {s} | -c {a.conns} -m {a.streams} | {'%.0f' % med[s] if med[s] else 'n/a'} | "
              f"{'%.1f µs' % cpu if cpu else 'n/a'} | {len(good)}/{sum(1 for r in rows if r['server'] == s)} | "
              f"{'%.0f' % cps if cps else 'n/a'} ({h.get('conns', 0)} conns, {h.get('failed', 0)} failed) |")
    reasons = []
    invalid = [r for r in rows if not r["valid"]]
    for r in invalid:
        reasons.append(f"round {r['round']} {r['server']} invalid: {'; '.join(r['why'])}")
    for r in rows:
        if r["died"]:
            reasons.append(f"{r['server']}: {r['died']}")
    t = hs.get("tls", {})
    if t and t["handshakes"] < t["conns"]:
        reasons.append(f"weft_tls_handshakes_total{{result=ok}} grew by {t['handshakes']:.0f}, "
                       f"fewer than the {t['conns']} connections h2load completed")
    if t and t.get("failed"):
        reasons.append(f"{t['failed']} failed requests/runs in the TLS new-connection runs")
    ratio = med["tls"] / med["plaintext"] if med.get("tls") and med.get("plaintext") else None
    print()
    if t and t.get("seconds"):
        print(f"TLS handshakes: {t['conns'] / t['seconds']:.0f} new TLS connections/s (h2load, {a.handshake_conns} at a time, "
              f"one call each); server counted {t['handshakes']:.0f} ok handshakes for {t['conns']} connections")
    print(f"TLS / plaintext req/s: {'%.3f' % ratio if ratio else 'n/a'} (target >= {a.min_ratio:.2f})")
    if ratio is None or ratio < a.min_ratio:
        reasons.append(f"ratio {'%.3f' % ratio if ratio else 'n/a'} < {a.min_ratio:.2f}")
    for reason in reasons:
        print(f"  - {reason}")
    ok = not reasons
    print(f"VERDICT: {'PASS' if ok else 'FAIL'} (TLS req/s >= {a.min_ratio:.2f} x plaintext at -c {a.conns} -m {a.streams}, "
          f"every run valid)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
