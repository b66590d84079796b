#!/usr/bin/env python3
"""Peers side by side: the same unary call against four HTTP/2 servers, each driven by two load
generators, in one run, on loopback (127.0.0.1) only.

    python3 loadtest/peers/bench-peers.py [--duration 10] [--rounds 3] [--only weft,nghttpd,...]
    python3 loadtest/peers/bench-peers.py --self-test     # checks of the run verdicts, no server

Servers (each started once by this script, stopped at the end):

  weft          $WEFT_BIN serve --host 127.0.0.1 --port 0 --data-dir OUT_DIR/weft-data  (Health/Check)
  grpc-swift-2  $PEER_BIN --host 127.0.0.1 --port 0, built by loadtest/peers/grpc-swift-2/build.sh;
                skipped with a note when it is not built (this script never builds it)
  grpcio        python3 loadtest/peers/grpcio_health_server.py PORT --mode aio  (Health/Check)
  nghttpd       nghttpd --no-tls --workers=1 -d OUT_DIR/htdocs PORT, GET /ok.txt (a 2-byte file):
                the HTTP/2 ceiling, no gRPC framing and no handler

Load generators, one after the other against each server, the same shape (-c connections x -m
streams, a closed loop of 16 x 32 = 512 calls in flight by default):

  h2load         h2load -t 1 -c 16 -m 32 -D SECONDS --log-file=LAT -d empty.grpc \\
                   -H 'content-type: application/grpc' -H 'te: trailers' URL    (gRPC servers)
                 h2load -t 1 -c 16 -m 32 -D SECONDS --log-file=LAT URL/ok.txt  (nghttpd)
  weft-loadtest  $LOADTEST_BIN run loadtest/scenarios/health-check.yaml (static-get.yaml for nghttpd)
                   --target http://127.0.0.1:PORT --duration SECONDS --warmup 1 --progress 0
                   --connections 16 --streams 32 --concurrency 512 --threads 1 --out RUN.json

Every server gets --warmup seconds of unmeasured h2load before round 1. Each round runs every
server (the order rotated each round), and for each server both tools (which one goes first
alternates each round). Per run: req/s, p50/p99 (h2load: nearest rank over its --log-file; weft-
loadtest: its HdrHistogram), failures, the server's CPU per call ((utime + stime) from
/proc/PID/stat over the tool's whole run / the calls it completed; for weft-loadtest its warm-up
calls are counted, as its warm-up is inside the window), the load generator's own CPU per call
(getrusage of the child), and other load on the machine: the CPU of every other user-space process
(kernel threads such as ksoftirqd are left out: they carry the run's own loopback traffic). A run
is marked contended when a compiler ran or that other load exceeded --contended-cores (0.25).

A run is invalid, and left out of every median and ratio, when the tool exits non-zero, when h2load
reports a failed request, when weft-loadtest reports a failed, unanswered or refused call or an
outcome other than OK (gRPC) / 200 (nghttpd), or when either completes nothing. For Weft, whose
/metrics counts gRPC status per method, each run is also checked against the server's own count
(grpc_server_handled_total of Health/Check before and after: all OK, covering the tool's
successes; see loadtest/README.md, "Invalid runs"). The peers have no /metrics: one call each is
checked by hand with nghttp before the runs (grpc-status 0 and HealthCheckResponse{SERVING}), and
weft-loadtest checks every call's grpc-status itself; h2load sees only HTTP status there.

Printed: the exact commands at the top, then a table per server (both tools side by side, the
ratio weft-loadtest / h2load), each server's req/s relative to nghttpd, Weft against grpc-swift-2
and grpcio, and the target: weft-loadtest / h2load >= --min-ratio (0.80) against nghttpd, "the
harness is not the bottleneck" (PASS/FAIL).

Exit status: 0 the target passed and every run was valid; 1 the target failed or could not be
judged (nghttpd selected but without a valid run of both tools; with --only leaving nghttpd out the
target is n/a), or a run was invalid, or a server failed its check; 2 a usage or
setup error.

Environment: WEFT_BIN (.build/release/weft), LOADTEST_BIN (.build/release/weft-loadtest),
PEER_BIN (/tmp/weft-peer-grpc-swift-2/.build/release/WeftHealthPeer), WEFT_ARGS (appended to
`weft serve`), OUT_DIR (a new /tmp/weft-bench-peers.XXXXXX). Relative default paths are taken
from the repository root.

The machine has 2 cores shared by the server and the load generator (nothing is pinned): absolute
figures include the client's cost; compare the servers and the tools within one run.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import re
import resource
import shlex
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))    # loadtest/peers
LOADTEST = os.path.dirname(HERE)                     # loadtest
REPO = os.path.dirname(LOADTEST)
sys.path.insert(0, LOADTEST)

from h2load_results import (grpc_status_delta, log_durations, nearest_rank, parse_output,  # noqa: E402
                            run_verdict, scrape_metrics, status_note)
from weft_process import WeftProcess, cpu_ticks  # noqa: E402

SERVICE, METHOD = "grpc.health.v1.Health", "Check"
GRPC_PATH = f"/{SERVICE}/{METHOD}"
STATIC_PATH = "/ok.txt"
SERVERS = ("weft", "grpc-swift-2", "grpcio", "nghttpd")
TOOLS = ("h2load", "weft-loadtest")
CLK_TCK = os.sysconf("SC_CLK_TCK")
SERVING_BODY = bytes([0, 0, 0, 0, 2, 0x08, 0x01])   # gRPC frame of HealthCheckResponse{status: SERVING}
COMPILERS = ("swift-build", "swift-frontend", "swiftc", "clang", "clang++", "cc1", "cc1plus")


def log(msg):
    print("[bench-peers] " + msg, file=sys.stderr, flush=True)


def repo_path(env, default):
    """$env as given (relative to the working directory), else `default` relative to the repository."""
    v = os.environ.get(env)
    return v if v else os.path.join(REPO, default)


def rel(path):
    """A path as printed in commands: relative to the working directory when inside it."""
    try:
        r = os.path.relpath(path)
        return r if not r.startswith("..") else path
    except ValueError:
        return path


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def is_debug(path):
    return "/debug/" in os.path.realpath(path) or "/debug/" in path


# ------------------------------------------------------------------ machine load

def compiler_running():
    """A compiler is running right now (state R or D; a sleeping driver or a zombie does not count)."""
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/stat") as f:
                stat = f.read()
            comm = stat[stat.index("(") + 1:stat.rindex(")")]
            state = stat.rsplit(")", 1)[1].split()[0]
        except (OSError, ValueError, IndexError):
            continue
        if state in ("R", "D") and comm in COMPILERS:
            return True
    return False


PF_KTHREAD = 0x00200000


def process_ticks():
    """{pid: utime + stime} of every user-space process (kernel threads left out: ksoftirqd and the
    kworkers carry the loopback traffic of the run itself)."""
    out = {}
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/stat") as f:
                rest = f.read().rsplit(")", 1)[1].split()
            if int(rest[6]) & PF_KTHREAD:          # field 9, flags
                continue
            out[int(pid)] = int(rest[11]) + int(rest[12])
        except (OSError, ValueError, IndexError):
            continue
    return out


def other_cpu_s(before, after, exclude):
    """CPU seconds used between two process_ticks() by user-space processes other than `exclude`
    (processes that started and ended in between are not seen: the compiler poll covers builds)."""
    ticks = 0
    for pid, t in after.items():
        if pid in exclude:
            continue
        ticks += t - before.get(pid, 0) if pid in before else t
    return max(0, ticks) / CLK_TCK


class CompilerWatch:
    """Polls for a running compiler once a second while a run lasts."""

    def __init__(self):
        self.seen = compiler_running()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._thread.start()

    def _poll(self):
        while not self._stop.wait(1.0):
            if not self.seen and compiler_running():
                self.seen = True

    def stop(self):
        self._stop.set()
        self._thread.join()
        self.seen = self.seen or compiler_running()
        return self.seen


def children_cpu_s():
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


# ------------------------------------------------------------------ servers

class Server:
    """One server under test: a process we started, its port and how to call it."""

    def __init__(self, name, kind, status_check, cmd_text):
        self.name = name
        self.kind = kind                  # "grpc" or "static"
        self.status_check = status_check  # "metrics" (Weft), "none" (gRPC peer), "static" (nghttpd)
        self.cmd_text = cmd_text
        self.proc = None
        self.weft = None
        self.port = None
        self.restarts = 0

    @property
    def pid(self):
        return self.weft.pid if self.weft else self.proc.pid

    @property
    def path(self):
        return GRPC_PATH if self.kind == "grpc" else STATIC_PATH

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}{self.path}"

    @property
    def target(self):
        return f"http://127.0.0.1:{self.port}"

    def alive(self):
        return (self.weft.alive() if self.weft else self.proc.poll() is None)

    def stop(self):
        if self.weft:
            self.weft.stop()
            return
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def wait_listening(proc, log_path, timeout=60):
    """The port from a "listening on 127.0.0.1:PORT" line of log_path, or None."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            m = re.search(rb"listening on 127\.0\.0\.1:(\d+)", open(log_path, "rb").read())
        except OSError:
            m = None
        if m:
            return int(m.group(1))
        if proc.poll() is not None:
            return None
        time.sleep(0.1)
    return None


def wait_connectable(proc, port, timeout=20):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return True
        except OSError:
            if proc.poll() is not None:
                return False
            time.sleep(0.1)
    return False


def spawn(cmd, log_path):
    logf = open(log_path, "ab")
    return subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=logf, stderr=logf, start_new_session=True)


def start_server(name, a, out_dir):
    """A started Server, or (None, note) when it is skipped."""
    if name == "weft":
        weft_bin = a.weft_bin
        if not os.access(weft_bin, os.X_OK):
            return None, f"no executable at {weft_bin} (build it: swift build -c release)"
        data = os.path.join(out_dir, "weft-data")
        os.makedirs(data, exist_ok=True)
        extra = shlex.split(os.environ.get("WEFT_ARGS", ""))
        s = Server(name, "grpc", "metrics", shlex.join(
            [rel(weft_bin), "serve", "--host", "127.0.0.1", "--port", "0", "--data-dir", data] + extra))
        try:
            s.weft = WeftProcess(weft_bin, data, extra, out_dir, "peers")
        except SystemExit as e:
            return None, f"weft did not start: {e}"
        s.port = s.weft.port
        return s, None
    if name == "grpc-swift-2":
        peer = a.peer_bin
        if not os.access(peer, os.X_OK):
            return None, (f"no peer binary at {peer}; build it with loadtest/peers/grpc-swift-2/build.sh "
                          "(this script does not build it)")
        cmd = [peer, "--host", "127.0.0.1", "--port", "0"]
        s = Server(name, "grpc", "none", shlex.join(cmd))
        log_path = os.path.join(out_dir, "grpc-swift-2.log")
        s.proc = spawn(cmd, log_path)
        s.port = wait_listening(s.proc, log_path)
        if s.port is None:
            s.stop()
            return None, f"the peer did not print 'listening on 127.0.0.1:PORT' (see {log_path})"
        return s, None
    if name == "grpcio":
        import importlib.util
        missing = [m for m in ("grpc", "grpc_health") if importlib.util.find_spec(m) is None]
        if missing:
            return None, "grpcio or grpcio-health-checking is not installed (no module %s)" % ", ".join(missing)
        script = os.path.join(HERE, "grpcio_health_server.py")
        cmd = [sys.executable, script, "0", "--mode", a.grpcio_mode]
        if a.grpcio_mode == "sync":
            cmd += ["--workers", str(a.grpcio_workers)]
        s = Server(name, "grpc", "none", shlex.join(["python3", rel(script)] + cmd[2:]))
        log_path = os.path.join(out_dir, "grpcio.log")
        s.proc = spawn(cmd, log_path)
        s.port = wait_listening(s.proc, log_path)
        if s.port is None:
            s.stop()
            return None, f"the grpcio server did not print 'listening on 127.0.0.1:PORT' (see {log_path})"
        return s, None
    if name == "nghttpd":
        if not shutil_which("nghttpd"):
            log("nghttpd not found; installing nghttp2-server")
            r = subprocess.run(["apt-get", "install", "-y", "-qq", "nghttp2-server"], stdout=sys.stderr, stderr=sys.stderr)
            if r.returncode != 0:
                subprocess.run(["apt-get", "update", "-qq"], stdout=sys.stderr, stderr=sys.stderr)
                subprocess.run(["apt-get", "install", "-y", "-qq", "nghttp2-server"], stdout=sys.stderr, stderr=sys.stderr)
            if not shutil_which("nghttpd"):
                return None, "nghttpd is missing and nghttp2-server could not be installed"
        docs = os.path.join(out_dir, "htdocs")
        os.makedirs(docs, exist_ok=True)
        with open(os.path.join(docs, "ok.txt"), "w") as f:
            f.write("ok")                                   # the 2-byte static file
        port = free_port()
        cmd = ["nghttpd", "--no-tls", f"--workers={a.nghttpd_workers}", "-d", docs, str(port)]
        s = Server(name, "static", "static", shlex.join(cmd))
        s.proc = spawn(cmd, os.path.join(out_dir, "nghttpd.log"))
        s.port = port
        if not wait_connectable(s.proc, port):
            s.stop()
            return None, f"nghttpd did not accept connections on {port} (see {out_dir}/nghttpd.log)"
        return s, None
    raise ValueError(name)


def shutil_which(cmd):
    import shutil
    return shutil.which(cmd)


def check_server(s, out_dir):
    """None if one call by hand (nghttp) gets the right answer, else why not."""
    if not shutil_which("nghttp"):
        return None if s.kind == "static" else "nghttp not found (apt-get install nghttp2-client): cannot check grpc-status"
    if s.kind == "grpc":
        body = os.path.join(out_dir, "empty.grpc")
        args = ["-d", body, "-H", "content-type: application/grpc", "-H", "te: trailers", s.url]
        try:
            v = subprocess.run(["nghttp", "-v"] + args, capture_output=True, timeout=15)
            b = subprocess.run(["nghttp"] + args, capture_output=True, timeout=15)
        except subprocess.TimeoutExpired:
            return "nghttp timed out"
        text = v.stdout.decode(errors="replace")
        if not re.search(r"grpc-status: 0\b", text):
            return "Health/Check did not answer grpc-status 0"
        if b.stdout != SERVING_BODY:
            return "unexpected Health/Check body %s (want %s)" % (b.stdout.hex(" "), SERVING_BODY.hex(" "))
        return None
    try:
        b = subprocess.run(["nghttp", s.url], capture_output=True, timeout=15)
    except subprocess.TimeoutExpired:
        return "nghttp timed out"
    return None if b.stdout == b"ok" else "GET /ok.txt answered %r" % b.stdout[:40]


# ------------------------------------------------------------------ load generators

def h2load_cmd(s, a, out_dir, seconds, lat=None):
    cmd = ["h2load", "-t", str(a.threads), "-c", str(a.connections), "-m", str(a.streams), "-D", str(seconds)]
    if lat:
        cmd.append(f"--log-file={lat}")
    if s.kind == "grpc":
        cmd += ["-d", os.path.join(out_dir, "empty.grpc"), "-H", "content-type: application/grpc", "-H", "te: trailers"]
    return cmd + [s.url]


def loadtest_cmd(s, a, out_json):
    scenario = os.path.join(LOADTEST, "scenarios", "health-check.yaml" if s.kind == "grpc" else "static-get.yaml")
    return [a.loadtest_bin, "run", scenario, "--target", s.target, "--duration", str(a.duration),
            "--warmup", str(a.lt_warmup), "--progress", "0", "--connections", str(a.connections),
            "--streams", str(a.streams), "--concurrency", str(a.connections * a.streams), "--threads", str(a.threads),
            "--out", out_json]


def scrape(s):
    """Weft's /metrics text (None for the peers, or when the scrape fails)."""
    if s.status_check != "metrics":
        return None
    text = scrape_metrics("127.0.0.1", s.port)
    if text is None:
        log(f"warning: could not read {s.name}'s /metrics; its run cannot be verified")
    return text


def measure(s, cmd, timeout, stdout_path):
    """Runs one tool against s: exit status, server CPU, client CPU, other load, contention."""
    before = scrape(s)
    watch = CompilerWatch()
    exclude = {os.getpid(), s.pid}
    m0, t0, c0, w0 = process_ticks(), cpu_ticks(s.pid), children_cpu_s(), time.monotonic()
    rc = 0
    with open(stdout_path, "wb") as out:
        try:
            rc = subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                timeout=timeout).returncode
        except subprocess.TimeoutExpired:
            rc = 124
    wall = time.monotonic() - w0
    t1, c1, m1 = cpu_ticks(s.pid), children_cpu_s(), process_ticks()
    contended = watch.stop()
    after = scrape(s)
    server_cpu = None if t0 is None or t1 is None else (t1 - t0) / CLK_TCK
    client_cpu = c1 - c0
    other = other_cpu_s(m0, m1, exclude) / wall if wall > 0 else None
    return {"rc": rc, "wall_s": wall, "server_cpu_s": server_cpu, "client_cpu_s": client_cpu,
            "other_cores": other, "compiler_seen": contended, "before": before, "after": after,
            "server_alive": t1 is not None and s.alive()}


def run_h2load(s, a, out_dir, tag):
    lat = None if a.no_h2load_log else os.path.join(out_dir, tag + ".lat")
    cmd = h2load_cmd(s, a, out_dir, a.duration, lat)
    out_path = os.path.join(out_dir, tag + ".out")
    m = measure(s, cmd, a.duration + 60, out_path)
    h = parse_output(open(out_path, errors="replace").read())
    if s.status_check == "metrics":
        v = run_verdict(h, m["rc"], m["before"], m["after"], SERVICE, METHOD)
        note = status_note(v, h)
    else:
        v = run_verdict(h, m["rc"])
        note = ("gRPC status not verified (no /metrics)" if s.status_check == "none"
                else "static file: HTTP status only")
    why = list(v["why"])
    durs = log_durations(lat) if lat else []
    if lat:
        try:
            os.remove(lat)
        except OSError:
            pass
    p50, p99 = nearest_rank(durs, 0.50), nearest_rank(durs, 0.99)
    calls = h["succeeded"]
    return row(s, "h2load", m, why, note, calls,
               req_per_s=h["req_per_s"], p50_ms=None if p50 is None else p50 / 1000,
               p99_ms=None if p99 is None else p99 / 1000, failed=h["failed"], succeeded=h["succeeded"])


def run_loadtest(s, a, out_dir, tag):
    out_json = os.path.join(out_dir, tag + ".json")
    cmd = loadtest_cmd(s, a, out_json)
    out_path = os.path.join(out_dir, tag + ".out")
    if os.path.exists(out_json):
        os.remove(out_json)           # never read a report of an earlier run
    m = measure(s, cmd, a.duration + a.lt_warmup + 120, out_path)
    why = []
    if m["rc"]:
        tail = open(out_path, errors="replace").read().strip().splitlines()[-1:] or [""]
        why.append("weft-loadtest exit status %s%s%s" % (m["rc"], " (killed by timeout)" if m["rc"] == 124 else "",
                                                         (": " + tail[0][:200]) if tail[0] else ""))
    try:
        rep = json.load(open(out_json))
        total = rep["total"]
    except (OSError, ValueError, KeyError) as e:
        if not why:
            why.append(f"no readable JSON report ({e})")
        return row(s, "weft-loadtest", m, why, "", 0, req_per_s=None, p50_ms=None, p99_ms=None, failed=None,
                   succeeded=0)
    v = loadtest_verdict(rep, s.kind, s.status_check, m["before"], m["after"])
    why += v["why"]
    lat = total.get("latencyMs") or {}
    return row(s, "weft-loadtest", m, why, v["note"], v["calls"], req_per_s=total.get("throughputPerSecond"),
               p50_ms=lat.get("p50"), p99_ms=lat.get("p99"), failed=v["failed"], succeeded=total.get("succeeded", 0))


def loadtest_verdict(rep, kind, status_check, before=None, after=None):
    """Whether a weft-loadtest JSON report's figures may be used: {"why": [reasons not], "note",
    "calls": successful calls of every phase (warm-up included), "failed": calls not OK}.

    kind "grpc" wants every outcome OK, "static" every outcome 200, in every phase (the warm-up
    too); no failed, unanswered or refused call; at least one success. status_check "metrics": the
    /metrics texts before and after the run must show Health/Check handled all OK, at least as many
    as the harness's successes and no more than it sent."""
    why = []
    total = rep["total"]
    phases = rep.get("phases") or [total]
    ok_label = "OK" if kind == "grpc" else "200"
    bad = {}
    failed = 0
    for p in phases:   # the warm-up too: a failure anywhere makes the run invalid
        failed += p.get("failed", 0) + p.get("unanswered", 0) + p.get("refused", 0)
        for k, n in (p.get("outcomes") or {}).items():
            if k != ok_label and n:
                bad[k] = bad.get(k, 0) + n
    if total.get("failed") or total.get("unanswered") or total.get("refused"):
        why.append("weft-loadtest: %d failed, %d unanswered, %d refused" % (
            total.get("failed", 0), total.get("unanswered", 0), total.get("refused", 0)))
    elif failed:
        why.append("weft-loadtest: %d calls failed in the warm-up" % failed)
    if bad:
        why.append("weft-loadtest outcomes other than %s: %s%s" % (
            ok_label, ", ".join("%s x%d" % kv for kv in sorted(bad.items())),
            ("; e.g. " + total["sampleErrors"][0][:160]) if total.get("sampleErrors") else ""))
    if not total.get("succeeded"):
        why.append("no successful call")
    all_ok = sum(p.get("succeeded", 0) for p in phases)
    all_sent = sum(p.get("sent", 0) for p in phases)
    if status_check == "metrics":
        d = grpc_status_delta(before, after, SERVICE, METHOD)
        if d is None:
            why.append("gRPC status not verified: no grpc_server_handled_total{%s/%s} from /metrics before and "
                       "after the run" % (SERVICE, METHOD))
            note = "gRPC status not verified"
        else:
            ok = d.get("OK", 0)
            other = {c: n for c, n in d.items() if c != "OK"}
            if other:
                why.append("server answered %s with grpc-status %s" % (
                    METHOD, ", ".join("%s x%d" % kv for kv in sorted(other.items()))))
            if ok < all_ok:
                why.append("server counted %d OK %s calls, fewer than weft-loadtest's %d successes" % (ok, METHOD, all_ok))
            elif all_sent and ok > all_sent:
                why.append("server counted %d OK %s calls, more than the %d weft-loadtest sent (other clients?)" % (
                    ok, METHOD, all_sent))
            note = "gRPC status verified from /metrics: %d OK (%d counted by weft-loadtest, warm-up included)%s" % (
                ok, all_ok, "" if not other else ", " + ", ".join("%s x%d" % kv for kv in sorted(other.items())))
    else:
        note = ("grpc-status of every call checked by weft-loadtest (no /metrics)" if kind == "grpc"
                else "static file: HTTP status checked by weft-loadtest")
    return {"why": why, "note": note, "calls": all_ok, "failed": max(failed, sum(bad.values()))}


def row(s, tool, m, why, note, calls, **fig):
    if not m["server_alive"]:
        why = why + ["the server exited during the run"]
    r = {"server": s.name, "tool": tool, **fig,
         "server_cpu_us_per_call": (m["server_cpu_s"] * 1e6 / calls) if calls and m["server_cpu_s"] is not None else None,
         "client_cpu_us_per_call": (m["client_cpu_s"] * 1e6 / calls) if calls else None,
         "server_cores": (m["server_cpu_s"] / m["wall_s"]) if m["server_cpu_s"] is not None and m["wall_s"] else None,
         "client_cores": m["client_cpu_s"] / m["wall_s"] if m["wall_s"] else None,
         "other_cores": m["other_cores"], "compiler_seen": m["compiler_seen"], "rc": m["rc"],
         "valid": not why, "why": why, "status_note": note}
    return r


# ------------------------------------------------------------------ report

def med(rows, key):
    v = [r[key] for r in rows if r.get(key) is not None]
    return statistics.median(v) if v else None


def fmt(v, spec=".0f", unit=""):
    return "n/a" if v is None else format(v, spec) + unit


def rfmt(v):
    """A ratio: two decimals from 0.1 to 10, else 3 significant digits (0.0141, 1.03, 34.9)."""
    if v is None:
        return "n/a"
    return format(v, ".2f") if 0.1 <= v < 10 else format(v, ".3g")


def ratio(x, y):
    return None if x is None or not y else x / y


def report(a, servers, skipped, failed_checks, rows, versions):
    out = []
    p = out.append
    valid = [r for r in rows if r["valid"]]
    invalid = [r for r in rows if not r["valid"]]
    names = [s for s in SERVERS if s in {r["server"] for r in rows}]
    stat = {}
    for s in names:
        for t in TOOLS:
            g = [r for r in valid if r["server"] == s and r["tool"] == t]
            g_all = [r for r in rows if r["server"] == s and r["tool"] == t]
            stat[s, t] = {k: med(g, k) for k in ("req_per_s", "p50_ms", "p99_ms", "server_cpu_us_per_call",
                                                 "client_cpu_us_per_call", "server_cores", "client_cores", "other_cores")}
            stat[s, t]["runs"] = len(g)
            stat[s, t]["all_runs"] = len(g_all)
            stat[s, t]["failed"] = sum(r.get("failed") or 0 for r in g_all)
            stat[s, t]["contended"] = sum(1 for r in g if contended(r, a))
    p("")
    p("## Results (medians over the valid runs)")
    p("")
    p("| server | h2load req/s | weft-loadtest req/s | weft-loadtest / h2load | h2load p50 / p99 | weft-loadtest p50 / p99 "
      "| failed (h2load / weft-loadtest) | server CPU / call (h2load / weft-loadtest) | valid runs |")
    p("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for s in names:
        h, lt = stat[s, "h2load"], stat[s, "weft-loadtest"]
        p("| %s | %s | %s | %s | %s / %s ms | %s / %s ms | %d / %d | %s / %s µs | %d/%d, %d/%d |" % (
            s, fmt(h["req_per_s"]), fmt(lt["req_per_s"]), fmt(ratio(lt["req_per_s"], h["req_per_s"]), ".2f"),
            fmt(h["p50_ms"], ".2f"), fmt(h["p99_ms"], ".2f"), fmt(lt["p50_ms"], ".2f"), fmt(lt["p99_ms"], ".2f"),
            h["failed"], lt["failed"], fmt(h["server_cpu_us_per_call"], ".1f"), fmt(lt["server_cpu_us_per_call"], ".1f"),
            h["runs"], h["all_runs"], lt["runs"], lt["all_runs"]))
    p("")
    p("`failed`: failed calls over all runs (h2load: non-2xx or errored; weft-loadtest: failed, unanswered, refused or")
    p("not OK). `valid runs`: valid/all for h2load, then for weft-loadtest. Server CPU per call = the server's utime +")
    p("stime over the tool's run / the calls completed (weft-loadtest's warm-up included in both).")
    p("")
    p("Cost of the load generators (same runs):")
    p("")
    p("| server | tool | client CPU / call | client cores | server cores | other processes (cores) | contended runs |")
    p("|---|---|---:|---:|---:|---:|---:|")
    for s in names:
        for t in TOOLS:
            x = stat[s, t]
            p("| %s | %s | %s µs | %s | %s | %s | %d/%d |" % (
                s, t, fmt(x["client_cpu_us_per_call"], ".1f"), fmt(x["client_cores"], ".2f"), fmt(x["server_cores"], ".2f"),
                fmt(x["other_cores"], ".2f"), x["contended"], x["runs"]))
    p("")
    if "nghttpd" in names:
        p("Relative to nghttpd (the HTTP/2 ceiling: a static file, no gRPC framing, no handler), same tool:")
        p("")
        p("| server | req/s ÷ nghttpd (h2load) | req/s ÷ nghttpd (weft-loadtest) | server CPU / call ÷ nghttpd (h2load) |")
        p("|---|---:|---:|---:|")
        for s in names:
            p("| %s | %s | %s | %s |" % (
                s, rfmt(ratio(stat[s, "h2load"]["req_per_s"], stat["nghttpd", "h2load"]["req_per_s"])),
                rfmt(ratio(stat[s, "weft-loadtest"]["req_per_s"], stat["nghttpd", "weft-loadtest"]["req_per_s"])),
                rfmt(ratio(stat[s, "h2load"]["server_cpu_us_per_call"],
                          stat["nghttpd", "h2load"]["server_cpu_us_per_call"]))))
        p("")
    peers = [x for x in ("grpc-swift-2", "grpcio") if x in names]
    if "weft" in names and peers:
        p("Weft against the gRPC peers (same call, same tool; req/s > 1 and CPU / call < 1 favour Weft):")
        p("")
        p("| comparison | req/s ratio (h2load) | req/s ratio (weft-loadtest) | server CPU / call ratio (h2load / weft-loadtest) |")
        p("|---|---:|---:|---:|")
        for x in peers:
            p("| weft ÷ %s | %s | %s | %s / %s |" % (
                x, rfmt(ratio(stat["weft", "h2load"]["req_per_s"], stat[x, "h2load"]["req_per_s"])),
                rfmt(ratio(stat["weft", "weft-loadtest"]["req_per_s"], stat[x, "weft-loadtest"]["req_per_s"])),
                rfmt(ratio(stat["weft", "h2load"]["server_cpu_us_per_call"], stat[x, "h2load"]["server_cpu_us_per_call"])),
                rfmt(ratio(stat["weft", "weft-loadtest"]["server_cpu_us_per_call"],
                          stat[x, "weft-loadtest"]["server_cpu_us_per_call"]))))
        p("")
    p("Per run:")
    p("")
    p("| round | server | tool | req/s | p50 | p99 | server CPU / call | client CPU / call | other processes (cores) | valid |")
    p("|---:|---|---|---:|---:|---:|---:|---:|---:|---|")
    for r in rows:
        p("| %d | %s | %s | %s | %s ms | %s ms | %s µs | %s µs | %s%s | %s |" % (
            r["round"], r["server"], r["tool"], fmt(r["req_per_s"]), fmt(r["p50_ms"], ".2f"), fmt(r["p99_ms"], ".2f"),
            fmt(r["server_cpu_us_per_call"], ".1f"), fmt(r["client_cpu_us_per_call"], ".1f"), fmt(r["other_cores"], ".2f"),
            " (compiler)" if r["compiler_seen"] else "", "yes" if r["valid"] else "**no**"))
    p("")
    if invalid:
        p("**%d invalid run(s), left out of every median and ratio above:**" % len(invalid))
        for r in invalid:
            p("* round %d, %s, %s (%s req/s as the tool counted): %s" % (
                r["round"], r["server"], r["tool"], fmt(r["req_per_s"]), "; ".join(r["why"])))
        p("")
    for s in names:
        sv = servers.get(s)
        if sv is None:
            continue
        if sv.status_check == "metrics":
            p("* %s: gRPC status checked for every run of both tools from its /metrics (grpc_server_handled_total of "
              "Health/Check by grpc_code: all OK, covering the tool's successes)." % s)
        elif sv.status_check == "none":
            p("* %s: no /metrics. h2load runs count HTTP 200 only (**gRPC status not verified per run**; one call was "
              "checked by hand with nghttp before the runs: grpc-status 0, SERVING); weft-loadtest checks every "
              "call's grpc-status itself." % s)
        else:
            p("* %s: a static file, no gRPC status: both tools count HTTP 2xx/200." % s)
    for name, why in skipped:
        p("* %s: **skipped**: %s." % (name, why))
    for name, why in failed_checks:
        p("* %s: **failed its check by hand and was not measured**: %s." % (name, why))
    restarted = [s.name for s in servers.values() if s.restarts]
    if restarted:
        p("* restarted after exiting unexpectedly: %s." % ", ".join(restarted))
    if any(contended(r, a) for r in valid):
        p("* contended runs: a compiler was running or other user-space processes used more than %.2f cores during them; "
          "rerun on an idle machine before quoting figures." % a.contended_cores)
    if not a.no_h2load_log:
        p("* h2load writes its --log-file (for p50/p99), which costs it a little throughput; --no-h2load-log "
          "measures it without (then no h2load percentiles).")
    p("* h2load req/s = calls completed / its own elapsed time; weft-loadtest req/s = successful calls / the "
      "measured phase (%s s), its %s s warm-up left out." % (a.duration, a.lt_warmup))
    p("")
    # The target: the harness is not the bottleneck against the fastest server.
    target = None
    if "nghttpd" in names:
        target = ratio(stat["nghttpd", "weft-loadtest"]["req_per_s"], stat["nghttpd", "h2load"]["req_per_s"])
    if target is None:
        verdict = "n/a" if "nghttpd" not in a.only else "FAIL (not measured)"
        p("Target: weft-loadtest / h2load against nghttpd >= %.2f: %s%s" % (
            a.min_ratio, verdict, " (nghttpd not selected)" if "nghttpd" not in a.only else
            " (no valid run of both tools against nghttpd)"))
    else:
        verdict = "PASS" if target >= a.min_ratio else "FAIL"
        p("Target: weft-loadtest / h2load against nghttpd = %.2f (>= %.2f: the harness is not the bottleneck): %s" % (
            target, a.min_ratio, verdict))
    if versions.get("debug"):
        p("Note: %s — debug build(s); these figures are for checking the script only, not to be recorded."
          % versions["debug"])
    bad = bool(invalid) or bool(failed_checks) or verdict.startswith("FAIL")
    if invalid:
        p("Exit status 1: %d invalid run(s)." % len(invalid))
    return "\n".join(out), verdict, bad


def contended(r, a):
    return bool(r.get("compiler_seen")) or (r.get("other_cores") or 0) > a.contended_cores


# ------------------------------------------------------------------ self-test

def self_test():
    def metrics(ok, other=None):
        lines = ['grpc_server_handled_total{grpc_type="unary",grpc_service="%s",grpc_method="%s",grpc_code="OK"} %d'
                 % (SERVICE, METHOD, ok)]
        for code, n in (other or {}).items():
            lines.append('grpc_server_handled_total{grpc_type="unary",grpc_service="%s",grpc_method="%s",'
                         'grpc_code="%s"} %d' % (SERVICE, METHOD, code, n))
        return "\n".join(lines) + "\n"

    def rep(ok=1000, warm=100, outcomes=None, failed=0, unanswered=0, warm_failed=0, label="OK"):
        total = {"sent": ok + failed + unanswered, "succeeded": ok, "failed": failed, "unanswered": unanswered,
                 "refused": 0, "outcomes": outcomes or {label: ok}, "throughputPerSecond": ok / 2.0,
                 "latencyMs": {"p50": 1.0, "p99": 2.0}, "sampleErrors": []}
        warmup = {"name": "warm-up", "sent": warm + warm_failed, "succeeded": warm, "failed": warm_failed,
                  "unanswered": 0, "refused": 0, "outcomes": {label: warm, **({"transport": warm_failed} if warm_failed else {})}}
        return {"total": total, "phases": [warmup, dict(total, name="concurrency 512")]}

    v = loadtest_verdict(rep(), "grpc", "none")
    assert not v["why"] and v["calls"] == 1100 and v["failed"] == 0, v
    v = loadtest_verdict(rep(), "grpc", "metrics", metrics(5), metrics(5 + 1100))
    assert not v["why"] and "1100 OK" in v["note"], v
    v = loadtest_verdict(rep(), "grpc", "metrics", metrics(5), metrics(5 + 1000))       # server saw fewer OK
    assert any("fewer than" in w for w in v["why"]), v
    v = loadtest_verdict(rep(), "grpc", "metrics", metrics(0), metrics(1100, {"Internal": 3}))
    assert any("Internal x3" in w for w in v["why"]), v
    v = loadtest_verdict(rep(), "grpc", "metrics", None, metrics(1100))                  # no scrape
    assert any("not verified" in w for w in v["why"]), v
    v = loadtest_verdict(rep(outcomes={"OK": 990, "NotFound": 10}), "grpc", "none")
    assert any("NotFound x10" in w for w in v["why"]) and v["failed"] == 10, v
    v = loadtest_verdict(rep(failed=4, outcomes={"OK": 1000, "transport": 4}), "grpc", "none")
    assert any("4 failed" in w for w in v["why"]), v
    v = loadtest_verdict(rep(unanswered=2), "grpc", "none")
    assert any("2 unanswered" in w for w in v["why"]), v
    v = loadtest_verdict(rep(warm_failed=3), "grpc", "none")                             # only the warm-up failed
    assert any("warm-up" in w for w in v["why"]), v
    v = loadtest_verdict(rep(label="200"), "static", "static")
    assert not v["why"] and "static" in v["note"], v
    v = loadtest_verdict(rep(label="200", outcomes={"200": 990, "404": 10}), "static", "static")
    assert any("404 x10" in w for w in v["why"]), v
    v = loadtest_verdict(rep(ok=0, warm=0), "grpc", "none")
    assert any("no successful call" in w for w in v["why"]), v
    assert rfmt(0.01412) == "0.0141" and rfmt(1) == "1.00" and rfmt(34.85) == "34.9" and rfmt(None) == "n/a"
    print("self-test: weft-loadtest report verdicts and ratio formatting OK")
    return 0


# ------------------------------------------------------------------ main

def parse_args(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 epilog="See the module docstring (head -60 %s) and loadtest/README.md." % rel(__file__))
    ap.add_argument("--duration", type=float, default=10, help="measured seconds per run and tool (default 10)")
    ap.add_argument("--rounds", type=int, default=3, help="rounds; medians over them (default 3)")
    ap.add_argument("--only", default=",".join(SERVERS),
                    help="comma-separated servers, of %s (default all)" % ",".join(SERVERS))
    ap.add_argument("--warmup", type=float, default=2, help="unmeasured h2load seconds per server before round 1 (default 2)")
    ap.add_argument("--lt-warmup", type=float, default=1, help="weft-loadtest --warmup of every run (default 1)")
    ap.add_argument("--connections", type=int, default=16, help="connections of both tools (h2load -c; default 16)")
    ap.add_argument("--streams", type=int, default=32, help="streams per connection of both tools (h2load -m; default 32)")
    ap.add_argument("--threads", type=int, default=1, help="h2load -t and weft-loadtest --threads (default 1)")
    ap.add_argument("--min-ratio", type=float, default=0.80, help="target weft-loadtest / h2load against nghttpd (0.80)")
    ap.add_argument("--grpcio-mode", choices=("aio", "sync"), default="aio", help="the grpcio server (default aio)")
    ap.add_argument("--grpcio-workers", type=int, default=8, help="thread pool of --grpcio-mode sync (default 8)")
    ap.add_argument("--nghttpd-workers", type=int, default=1, help="nghttpd --workers (default 1)")
    ap.add_argument("--no-h2load-log", action="store_true", help="no h2load --log-file (no h2load p50/p99)")
    ap.add_argument("--contended-cores", type=float, default=0.25,
                    help="mark a run contended when other processes used more than this many cores (default 0.25)")
    ap.add_argument("--out-dir", default=os.environ.get("OUT_DIR"), help="logs and raw results (default a new /tmp dir)")
    ap.add_argument("--json", help="write every run and the medians here")
    a = ap.parse_args(argv)
    a.only = [x.strip() for x in a.only.split(",") if x.strip()]
    unknown = [x for x in a.only if x not in SERVERS]
    if unknown or not a.only:
        ap.error("--only: unknown server(s) %s; choose from %s" % (", ".join(unknown) or "(none)", ",".join(SERVERS)))
    if a.duration <= 0 or a.rounds < 1 or a.connections < 1 or a.streams < 1 or a.threads < 1:
        ap.error("--duration, --rounds, --connections, --streams and --threads must be positive")
    if a.duration != int(a.duration):
        ap.error("--duration: whole seconds (h2load -D)")
    a.duration = int(a.duration)
    a.lt_warmup = int(a.lt_warmup) if a.lt_warmup == int(a.lt_warmup) else a.lt_warmup
    a.weft_bin = repo_path("WEFT_BIN", ".build/release/weft")
    a.loadtest_bin = repo_path("LOADTEST_BIN", ".build/release/weft-loadtest")
    a.peer_bin = os.environ.get("PEER_BIN") or "/tmp/weft-peer-grpc-swift-2/.build/release/WeftHealthPeer"
    return a


def main(argv):
    if argv[:1] == ["--self-test"]:
        return self_test()
    a = parse_args(argv)
    if not shutil_which("h2load"):
        log("error: h2load not found (apt-get install -y nghttp2-client)")
        return 2
    if not os.access(a.loadtest_bin, os.X_OK):
        hint = ""
        dbg = os.path.join(REPO, ".build/debug/weft-loadtest")
        if os.access(dbg, os.X_OK):
            hint = f"; a debug build is at {rel(dbg)} (LOADTEST_BIN={rel(dbg)}: slower, to check the script only)"
        log(f"error: no weft-loadtest at {a.loadtest_bin} (swift build -c release --product weft-loadtest){hint}")
        return 2
    out_dir = a.out_dir or tempfile.mkdtemp(prefix="weft-bench-peers.", dir="/tmp")
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, "empty.grpc"), "wb") as f:
        f.write(b"\0\0\0\0\0")   # gRPC frame: uncompressed, 0-byte HealthCheckRequest
    try:
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    except (ValueError, OSError):
        pass

    servers, skipped, failed_checks = {}, [], []
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(130))
    try:
        for name in a.only:
            s, why = start_server(name, a, out_dir)
            if s is None:
                log(f"skipping {name}: {why}")
                skipped.append((name, why))
                continue
            servers[name] = s
            log(f"{name}: pid {s.pid}, {s.url}")
        time.sleep(0.5)
        for name, s in list(servers.items()):
            why = check_server(s, out_dir)
            if why:
                log(f"{name}: check by hand FAILED: {why}; not measured")
                failed_checks.append((name, why))
                s.stop()
                del servers[name]
            else:
                log(f"{name}: " + ("Health/Check -> grpc-status 0, SERVING" if s.kind == "grpc" else "GET /ok.txt -> ok"))
        if not servers:
            log("error: no server to benchmark")
            return 2

        debug = [rel(b) for b in (a.loadtest_bin, a.weft_bin if "weft" in servers else None) if b and is_debug(b)]
        versions = {"h2load": subprocess.run(["h2load", "--version"], capture_output=True, text=True).stdout.strip(),
                    "debug": ", ".join(debug)}
        header = [
            "# Peers side by side: grpc.health.v1.Health/Check over h2c, and GET /ok.txt (nghttpd, the HTTP/2 ceiling)",
            "",
            "%s, %s, %s; %d cores **shared by the server and the load generator** (nothing pinned, loopback only): "
            "every figure includes the load generator's own CPU, so compare servers and tools within one run."
            % (datetime.datetime.now().strftime("%Y-%m-%d %H:%M"), platform.machine(), versions["h2load"], os.cpu_count()),
            "%d round(s) × %d s per tool and server, -c %d -m %d (closed loop, %d calls in flight), %s s of h2load "
            "warm-up per server before round 1; medians over the valid runs. Raw results: %s"
            % (a.rounds, a.duration, a.connections, a.streams, a.connections * a.streams, fmt(a.warmup, "g"), out_dir),
        ]
        if debug:
            header.append("**DEBUG build(s): %s. Checking the script only: do not record these figures.**" % ", ".join(debug))
        header += ["", "Commands:", "", "```sh"]
        for name, s in servers.items():
            header.append(f"# {name} (pid {s.pid}, port {s.port})")
            header.append(s.cmd_text)
        for name, s in servers.items():
            header.append(f"# {name}: h2load, then weft-loadtest")
            lat = None if a.no_h2load_log else os.path.join(out_dir, f"rN-{name}-h2load.lat")
            header.append(shlex.join(h2load_cmd(s, a, out_dir, a.duration, lat)))
            header.append(shlex.join(rel(x) if i in (0, 2) else x
                                     for i, x in enumerate(loadtest_cmd(s, a, os.path.join(out_dir, f"rN-{name}-weft-loadtest.json")))))
        header.append("```")
        print("\n".join(header), flush=True)

        if a.warmup > 0:
            for name, s in servers.items():
                log(f"warm-up {name}: h2load {fmt(a.warmup, 'g')} s")
                w = max(1, int(round(a.warmup)))
                subprocess.run(h2load_cmd(s, a, out_dir, w), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               timeout=w + 60)

        rows = []
        order = list(servers)
        total_runs = a.rounds * len(order) * 2
        log("%d runs of %d s (+ weft-loadtest's %s s warm-up): about %d s" % (
            total_runs, a.duration, a.lt_warmup, total_runs * (a.duration + 1) + a.rounds * len(order) * a.lt_warmup))
        for rnd in range(1, a.rounds + 1):
            k = (rnd - 1) % len(order)
            for name in order[k:] + order[:k]:
                s = servers[name]
                tools = TOOLS if rnd % 2 else tuple(reversed(TOOLS))
                for tool in tools:
                    if not s.alive():
                        log(f"warning: {name} is gone; restarting it")
                        s.stop()
                        ns, why = start_server(name, a, out_dir)
                        why = why if ns is None else check_server(ns, out_dir)
                        if why:
                            if ns is not None:
                                ns.stop()
                            log(f"error: could not restart {name}: {why}")
                            raise SystemExit(2)
                        ns.restarts = s.restarts + 1
                        servers[name] = s = ns
                    tag = f"r{rnd}-{name}-{tool}"
                    log(f"round {rnd}: {name} with {tool}, {a.duration} s")
                    r = (run_h2load if tool == "h2load" else run_loadtest)(s, a, out_dir, tag)
                    r["round"] = rnd
                    rows.append(r)
                    log("  %s req/s, p50 %s ms, p99 %s ms, server CPU %s µs/call; %s; %s" % (
                        fmt(r["req_per_s"]), fmt(r["p50_ms"], ".2f"), fmt(r["p99_ms"], ".2f"),
                        fmt(r["server_cpu_us_per_call"], ".1f"), r["status_note"],
                        "valid" if r["valid"] else "INVALID: " + "; ".join(r["why"])))

        text, verdict, bad = report(a, servers, skipped, failed_checks, rows, versions)
        print(text, flush=True)
        with open(os.path.join(out_dir, "results.json"), "w") as f:
            json.dump({"rows": rows, "verdict": verdict, "skipped": skipped, "failed_checks": failed_checks}, f, indent=1)
        if a.json:
            with open(a.json, "w") as f:
                json.dump({"rows": rows, "verdict": verdict, "skipped": skipped, "failed_checks": failed_checks,
                           "args": {k: v for k, v in vars(a).items()}}, f, indent=1)
        log(f"logs and raw results in {out_dir}")
        return 1 if bad else 0
    finally:
        for s in servers.values():
            s.stop()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
