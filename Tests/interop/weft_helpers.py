"""Shared helpers for the Weft interop suite.

Nothing in here talks to pytest; fixtures live in conftest.py.  Everything
that touches the network has a timeout so that a misbehaving server can make
a test fail but never make it hang.
"""

from __future__ import annotations

import atexit
import gzip
import http.client
import importlib
import json
import os
import re
import select
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import types
from dataclasses import dataclass, field
from pathlib import Path

INTEROP_DIR = Path(__file__).resolve().parent
REPO_ROOT = INTEROP_DIR.parents[1]
PROTO_DIR = REPO_ROOT / "proto"
GEN_DIR = INTEROP_DIR / "gen"
DEFAULT_BIN = REPO_ROOT / ".build" / "debug" / "weft"
# The main listener's line (not "admin listening on ...").
LISTEN_RE = re.compile(r"(?<!admin )listening on ([0-9.]+):(\d+)")
_CRASH_RE = re.compile(r"Fatal error|Program crashed|Assertion failed|Precondition failed|panic", re.I)

ECHO_SERVICE = "weft.testing.v1.EchoService"
HEALTH_SERVICE = "grpc.health.v1.Health"
# Registers ECHO_SERVICE.  Off by default (the production configuration);
# only servers of tests that call the Echo service pass it.
TEST_SERVICES_FLAG = "--enable-test-services"


def weft_bin() -> Path:
    return Path(os.environ.get("WEFT_BIN", str(DEFAULT_BIN)))


# ---------------------------------------------------------------------------
# Polling
# ---------------------------------------------------------------------------


def _not_ready_yet(exc: BaseException) -> bool:
    """Whether an exception raised by a polled predicate only means "not ready
    yet": a transient connection problem or timeout (OSError covers
    ConnectionError, socket.timeout and TimeoutError), a response cut off
    mid-way, or a gRPC call that was UNAVAILABLE or ran out of time."""
    if isinstance(exc, (OSError, http.client.IncompleteRead)):
        return True
    try:
        import grpc
    except ImportError:  # pragma: no cover - grpcio is a requirement
        return False
    if isinstance(exc, grpc.RpcError) and callable(getattr(exc, "code", None)):
        return exc.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)
    return False


def wait_until(predicate, timeout: float, interval: float = 0.05, message="", exceptions=()):
    """Call predicate() until it returns a truthy value; return that value.

    A falsy value means "not ready yet", and so do transient connection
    errors and timeouts (see _not_ready_yet) and the exception types listed
    in `exceptions`: those are retried until `timeout`.  Anything else the
    predicate raises -- above all an AssertionError, which is a verdict, not
    a "not yet" -- propagates at once.

    Raises AssertionError (with the last value / retried exception) on
    timeout; `message` may be a string or a callable evaluated only on
    timeout.
    """
    allowed = tuple(exceptions)
    deadline = time.monotonic() + timeout
    last = None
    last_exc = None
    while True:
        try:
            last = predicate()
            last_exc = None
            if last:
                return last
        except AssertionError:
            raise
        except Exception as exc:  # noqa: BLE001 - re-raised unless it means "not ready yet"
            if not (isinstance(exc, allowed) or _not_ready_yet(exc)):
                raise
            last_exc = exc
        if time.monotonic() >= deadline:
            detail = f"last value={last!r}" if last_exc is None else f"last error={last_exc!r}"
            if callable(message):
                try:
                    message = message()
                except Exception as exc:  # noqa: BLE001
                    message = f"<message failed: {exc!r}>"
            raise AssertionError(f"timed out after {timeout}s waiting for {message or predicate}: {detail}")
        time.sleep(interval)


# ---------------------------------------------------------------------------
# Server process
# ---------------------------------------------------------------------------

ALL_SERVERS: list["WeftServer"] = []


class ServerExitError(AssertionError):
    """A server did not exit cleanly (see WeftServer.stop_checked)."""


class WeftServer:
    """One `weft serve` process on an ephemeral port.

    The command is the production configuration plus `args`: the Echo test
    service is registered only when `args` holds TEST_SERVICES_FLAG (and
    WEFT_ENABLE_TEST_SERVICES is never inherited from the environment).

    A test that SIGKILLs a server on purpose (or otherwise means it to die
    uncleanly) sets `expect_unclean = True`; every other server must pass
    stop_checked() at teardown.
    """

    def __init__(self, binary: Path, data_dir: Path, log_dir: Path, args=(), name: str = "weft", env=None):
        self.binary = Path(binary)
        self.data_dir = Path(data_dir)
        self.log_dir = Path(log_dir)
        self.args = [str(a) for a in args]
        self.name = name
        self.env = dict(env or {})  # merged into os.environ for the child
        self.expect_unclean = False
        # The suite's HTTP targets listen on 127.0.0.1, which the egress
        # guard denies by default: servers allow it unless a test sets its
        # own allowlist (or turns this off to test the guard's defaults).
        self.egress_allow_loopback = True
        self.proc: subprocess.Popen | None = None
        self.host = "127.0.0.1"
        self.port: int | None = None
        self.stderr_path = self.log_dir / f"{name}.stderr.log"
        self.stdout_path = self.log_dir / f"{name}.stdout.log"
        self.started_at: float | None = None
        self.stopped_at: float | None = None
        self.returncode: int | None = None
        self.killed = False
        self._files = []

    # -- lifecycle ---------------------------------------------------------

    @property
    def command(self) -> list[str]:
        return [
            str(self.binary), "serve",
            "--host", "127.0.0.1",
            "--port", "0",
            "--data-dir", str(self.data_dir),
            *self.args,
            *self._egress_args(),
        ]

    def _egress_args(self) -> list[str]:
        own = any(a.startswith("--egress-allow") for a in self.args) or "WEFT_EGRESS_ALLOW" in self.env
        return ["--egress-allow", "127.0.0.1/32"] if self.egress_allow_loopback and not own else []

    @property
    def test_services(self) -> bool:
        return TEST_SERVICES_FLAG in self.args

    @property
    def drain_timeout(self) -> float:
        """The server's --drain-timeout in seconds (flag, environment, default 30)."""
        for i, arg in enumerate(self.args):
            if arg == "--drain-timeout" and i + 1 < len(self.args):
                return float(self.args[i + 1])
            if arg.startswith("--drain-timeout="):
                return float(arg.split("=", 1)[1])
        return float(self._child_env().get("WEFT_DRAIN_TIMEOUT") or 30)

    def start(self, timeout: float = 30.0) -> "WeftServer":
        if not self.binary.exists():
            raise RuntimeError(
                f"weft binary not found at {self.binary} (set WEFT_BIN or build the package first)"
            )
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        err = open(self.stderr_path, "wb")
        out = open(self.stdout_path, "wb")
        self._files = [err, out]
        self.proc = subprocess.Popen(
            self.command,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=err,
            cwd=str(self.data_dir),
            env=self._child_env(),
            start_new_session=True,  # Ctrl-C on pytest must not signal the server directly
        )
        self.started_at = time.monotonic()
        ALL_SERVERS.append(self)
        deadline = time.monotonic() + timeout
        while True:
            m = LISTEN_RE.search(self.stderr_text())
            if m:
                self.host, self.port = m.group(1), int(m.group(2))
                return self
            rc = self.proc.poll()
            if rc is not None:
                self._mark_stopped(rc)
                raise RuntimeError(
                    f"weft exited with code {rc} before listening.\ncommand: {' '.join(self.command)}\n"
                    f"stderr:\n{self.stderr_tail()}\nstdout:\n{self.stdout_tail()}"
                )
            if time.monotonic() >= deadline:
                self.kill()
                raise RuntimeError(
                    f"weft did not print 'listening on' within {timeout}s.\ncommand: {' '.join(self.command)}\n"
                    f"stderr:\n{self.stderr_tail()}"
                )
            time.sleep(0.05)

    def _child_env(self) -> dict:
        env = {**os.environ, **self.env}
        if "WEFT_ENABLE_TEST_SERVICES" not in self.env:
            env.pop("WEFT_ENABLE_TEST_SERVICES", None)  # test services only by TEST_SERVICES_FLAG
        return env

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    @property
    def target(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def send_signal(self, sig: int) -> None:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)

    def wait(self, timeout: float) -> int | None:
        """Wait for exit; return the exit code or None on timeout."""
        assert self.proc is not None
        try:
            rc = self.proc.wait(timeout=max(0.0, timeout))
        except subprocess.TimeoutExpired:
            return None
        self._mark_stopped(rc)
        return rc

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20.0) -> int | None:
        """Graceful stop; SIGKILL after `timeout`. Returns the exit code (None if killed)."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.send_signal(sig)
            rc = self.wait(timeout)
            if rc is None:
                self.kill()
                return None
            return rc
        self._mark_stopped(self.proc.returncode)
        return self.proc.returncode

    def stop_checked(self, timeout: float | None = None) -> None:
        """Teardown: SIGTERM the server (if it still runs) and check that it
        exited cleanly: exit code 0 within `timeout` (default: its drain
        timeout + 15 s), not SIGKILLed, no crash report on stderr.  Raises
        ServerExitError, with the stderr tail, otherwise.  A server marked
        `expect_unclean` is only stopped (SIGKILLed if need be), not checked.
        """
        if self.proc is None:
            return
        if self.expect_unclean:
            self.stop(signal.SIGTERM, timeout=10)
            return
        if timeout is None:
            timeout = self.drain_timeout + 15
        exited_before = self.proc.poll() is not None
        t0 = time.monotonic()
        rc = self.stop(signal.SIGTERM, timeout=timeout)
        took = time.monotonic() - t0
        problems = []
        if self.killed:
            if rc is None and not exited_before:
                problems.append(f"still running {timeout:.0f}s after SIGTERM (a hung drain): SIGKILLed")
            else:
                problems.append("was SIGKILLed (set expect_unclean = True where a test does that on purpose)")
        elif rc != 0:
            how = f"killed by signal {-rc}" if rc is not None and rc < 0 else f"exited with code {rc}"
            when = " before the teardown (while the test ran)" if exited_before else f" {took:.1f}s after SIGTERM"
            problems.append(how + when)
        crash = self.crash_line()
        if crash:
            problems.append(f"crash report on stderr: {crash[:300]}")
        if problems:
            raise ServerExitError(
                f"weft server '{self.name}' (port {self.port}) did not exit cleanly: {'; '.join(problems)}\n"
                f"command: {' '.join(self.command)}\nstderr (tail):\n{self.stderr_tail(6000)}")

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.killed = True
            self.proc.kill()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
        if self.proc is not None and self.proc.poll() is not None:
            self._mark_stopped(self.proc.returncode)

    def _mark_stopped(self, rc):
        if self.stopped_at is None:
            self.stopped_at = time.monotonic()
        self.returncode = rc
        for f in self._files:
            try:
                f.flush()
            except Exception:  # noqa: BLE001
                pass

    def close_files(self):
        for f in self._files:
            try:
                f.close()
            except Exception:  # noqa: BLE001
                pass
        self._files = []

    # -- introspection -----------------------------------------------------

    def stderr_text(self) -> str:
        try:
            return self.stderr_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def stderr_tail(self, limit: int = 12000) -> str:
        text = self.stderr_text()
        if len(text) <= limit:
            return text
        # A Swift crash puts the reason first and pages of backtrace after
        # it; keep the reason visible even when the tail is cut.
        m = _CRASH_RE.search(text)
        if m and m.start() < len(text) - limit // 2:
            start = text.rfind("\n", 0, max(0, m.start() - 200)) + 1
            excerpt = text[start : start + limit // 3]
            return f"[crash excerpt]\n{excerpt}\n...\n[tail]\n{text[-(limit * 2 // 3):]}"
        return "...\n" + text[-limit:]

    def crash_line(self):
        """The first line of stderr that looks like a crash report, if any."""
        for line in self.stderr_text().splitlines():
            if _CRASH_RE.search(line):
                return line.strip()
        return None

    def stdout_tail(self, limit: int = 4000) -> str:
        try:
            text = self.stdout_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""
        return text if len(text) <= limit else "...\n" + text[-limit:]

    def rss_kb(self) -> int:
        with open(f"/proc/{self.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        raise RuntimeError("VmRSS not found")


def finish_servers(servers) -> None:
    """stop_checked() every server (all of them, even after a failure), close
    their log files, then raise one ServerExitError naming every server that
    did not exit cleanly."""
    errors = []
    for srv in servers:
        try:
            srv.stop_checked()
        except ServerExitError as exc:
            errors.append(str(exc))
        finally:
            srv.close_files()
    if errors:
        raise ServerExitError("\n\n".join(errors))


@atexit.register
def _kill_leftover_servers():
    for srv in ALL_SERVERS:
        try:
            srv.kill()
        except Exception:  # noqa: BLE001
            pass


# ---------------------------------------------------------------------------
# Generated protobuf / gRPC stubs
# ---------------------------------------------------------------------------


def _exec_module(name: str, path: Path, replacements: dict[str, str]) -> types.ModuleType:
    src = path.read_text()
    for old, new in replacements.items():
        if old not in src:
            raise RuntimeError(f"expected {old!r} in generated {path}")
        src = src.replace(old, new)
    mod = types.ModuleType(name)
    mod.__file__ = str(path)
    sys.modules[name] = mod
    exec(compile(src, str(path), "exec"), mod.__dict__)  # noqa: S102 - our own generated code
    return mod


# grpc's interop test protos (package grpc.testing), in dependency order.
GRPC_TESTING_PROTOS = (
    "grpc/testing/empty.proto",
    "grpc/testing/messages.proto",
    "grpc/testing/test.proto",
)


def generate_protos(gen_dir: Path = GEN_DIR) -> types.SimpleNamespace:
    """Run grpc_tools.protoc over the repo protos and import the result.

    The echo stubs are imported normally (package weft.testing.v1 from
    gen_dir).  The health stubs are a special case: their Python module path
    would be grpc.health.v1, which is shadowed by the grpcio package, and
    their messages (grpc.health.v1.HealthCheckRequest, ...) are already
    registered in protobuf's default descriptor pool by grpcio-health-checking
    with a slightly different file descriptor (options), which makes a second
    registration fail with "duplicate symbol".  So the generated health_pb2 is
    loaded under a private module name into a private descriptor pool.  The
    wire format is identical, which is the point of testing both.

    Every proto/weft/v1/*.proto is compiled too (the well-known types come
    from grpcio-tools) and exposed as `protos.v1.<name>_pb2` and
    `protos.v1.<name>_pb2_grpc` (e.g. protos.v1.workflows_pb2_grpc), with
    `protos.v1.names` listing the file stems.

    grpc's interop test protos (proto/grpc/testing/{empty,messages,test}.proto,
    package grpc.testing) are exposed as `protos.grpc_testing.<name>_pb2` /
    `<name>_pb2_grpc`.  Like the health stubs their Python path (grpc.testing)
    is shadowed by grpcio, so they are loaded under private module names
    (weft_gen_grpc_testing_*); nothing else registers grpc.testing, so they
    live in the default descriptor pool.
    """
    import shutil

    if gen_dir.exists():
        shutil.rmtree(gen_dir)
    gen_dir.mkdir(parents=True)
    v1_protos = sorted(p.relative_to(PROTO_DIR).as_posix() for p in (PROTO_DIR / "weft" / "v1").glob("*.proto"))
    cmd = [
        sys.executable, "-m", "grpc_tools.protoc",
        "-I", str(PROTO_DIR),
        # google/protobuf/*.proto (well-known types) ship with grpcio-tools.
        "-I", str(_grpc_tools_include_dir()),
        f"--python_out={gen_dir}",
        f"--grpc_python_out={gen_dir}",
        "weft/testing/v1/echo.proto",
        "grpc/health/v1/health.proto",
        *GRPC_TESTING_PROTOS,
        *v1_protos,
    ]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    if res.returncode != 0:
        raise RuntimeError(f"protoc failed ({res.returncode}):\n{res.stdout}\n{res.stderr}")
    if str(gen_dir) not in sys.path:
        sys.path.insert(0, str(gen_dir))
    importlib.invalidate_caches()
    echo_pb2 = importlib.import_module("weft.testing.v1.echo_pb2")
    echo_pb2_grpc = importlib.import_module("weft.testing.v1.echo_pb2_grpc")

    hdir = gen_dir / "grpc" / "health" / "v1"
    health_pb2 = _exec_module(
        "weft_gen_health_pb2",
        hdir / "health_pb2.py",
        {"_descriptor_pool.Default()": "_descriptor_pool.DescriptorPool()"},
    )
    health_pb2_grpc = _exec_module(
        "weft_gen_health_pb2_grpc",
        hdir / "health_pb2_grpc.py",
        {"from grpc.health.v1 import health_pb2 as": "import weft_gen_health_pb2 as"},
    )
    # grpc.testing (grpc's interop test services): private module names, the
    # generated `from grpc.testing import x_pb2` rewritten to them.
    tdir = gen_dir / "grpc" / "testing"
    grpc_testing = types.SimpleNamespace()
    rewrites = {
        f"from grpc.testing import {stem}_pb2 as": f"import weft_gen_grpc_testing_{stem}_pb2 as"
        for stem in ("empty", "messages")
    }
    for rel in GRPC_TESTING_PROTOS:
        stem = Path(rel).stem
        for suffix in ("_pb2", "_pb2_grpc"):
            path = tdir / f"{stem}{suffix}.py"
            src = path.read_text()
            mod = _exec_module(f"weft_gen_grpc_testing_{stem}{suffix}", path,
                               {k: v for k, v in rewrites.items() if k in src})
            setattr(grpc_testing, f"{stem}{suffix}", mod)
    # weft.v1: protos.v1.<name>_pb2 / <name>_pb2_grpc for every proto/weft/v1/<name>.proto.
    v1 = types.SimpleNamespace(names=[])
    for rel in v1_protos:
        stem = Path(rel).stem
        v1.names.append(stem)
        setattr(v1, f"{stem}_pb2", importlib.import_module(f"weft.v1.{stem}_pb2"))
        setattr(v1, f"{stem}_pb2_grpc", importlib.import_module(f"weft.v1.{stem}_pb2_grpc"))
    return types.SimpleNamespace(
        echo_pb2=echo_pb2,
        echo_pb2_grpc=echo_pb2_grpc,
        health_pb2=health_pb2,
        health_pb2_grpc=health_pb2_grpc,
        grpc_testing=grpc_testing,
        v1=v1,
    )


def _grpc_tools_include_dir() -> Path:
    """The directory with google/protobuf/*.proto bundled by grpcio-tools."""
    import grpc_tools

    path = Path(grpc_tools.__file__).resolve().parent / "_proto"
    if not (path / "google" / "protobuf" / "timestamp.proto").exists():
        raise RuntimeError(f"grpcio-tools has no well-known protos under {path}")
    return path


def v1_services(protos) -> dict:
    """{full service name: ServiceDescriptor} of every weft.v1 service."""
    out = {}
    for stem in protos.v1.names:
        mod = getattr(protos.v1, f"{stem}_pb2")
        for svc in mod.DESCRIPTOR.services_by_name.values():
            out[svc.full_name] = svc
    return out


# ---------------------------------------------------------------------------
# gRPC conveniences
# ---------------------------------------------------------------------------


def new_channel(target: str, options=(), compression=None, isolated: bool = True):
    """A grpc channel.  isolated=True forces its own TCP connection.

    grpcio shares subchannels (and therefore connections) between channels
    with identical arguments through a global pool; a local pool guarantees a
    fresh connection, which is what "a fresh channel" means in these tests.
    """
    import grpc

    opts = list(options)
    if isolated:
        opts.append(("grpc.use_local_subchannel_pool", 1))
    return grpc.insecure_channel(target, options=opts, compression=compression)


def assert_still_serving(server: WeftServer, protos, timeout: float = 5.0) -> None:
    """A Health Check on a brand-new connection must answer SERVING."""
    ch = new_channel(server.target)
    try:
        stub = protos.health_pb2_grpc.HealthStub(ch)
        resp = stub.Check(protos.health_pb2.HealthCheckRequest(service=""), timeout=timeout)
        assert resp.status == protos.health_pb2.HealthCheckResponse.SERVING, resp
    finally:
        ch.close()
    assert server.running(), f"server process died (rc={server.proc.poll()})"


def get_stats(echo_stub, protos, timeout: float = 5.0):
    return echo_stub.Stats(protos.echo_pb2.StatsRequest(), timeout=timeout)


# ---------------------------------------------------------------------------
# HTTP/1.1 + Prometheus text format
# ---------------------------------------------------------------------------


def http_get(server: WeftServer, path: str, timeout: float = 5.0, headers: dict | None = None):
    conn = http.client.HTTPConnection(server.host, server.port, timeout=timeout)
    try:
        conn.request("GET", path, headers=headers or {})
        resp = conn.getresponse()
        body = resp.read()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, body
    finally:
        conn.close()


@dataclass
class Sample:
    name: str
    labels: dict
    value: float


@dataclass
class Metrics:
    samples: list = field(default_factory=list)
    types: dict = field(default_factory=dict)
    helps: dict = field(default_factory=dict)

    def select(self, name: str, **labels) -> list:
        return [
            s for s in self.samples
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())
        ]

    def total(self, name: str, **labels) -> float:
        """Sum over all series of `name` whose labels include `labels` (0 if none)."""
        return sum(s.value for s in self.select(name, **labels))

    def type_of(self, name: str):
        if name in self.types:
            return self.types[name]
        if name.endswith("_total"):
            return self.types.get(name[: -len("_total")])
        return None

    def label_values(self) -> set:
        return {v for s in self.samples for v in s.labels.values()}


_SAMPLE_RE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)(?:\s+-?\d+)?\s*$")
_LABEL_RE = re.compile(r'\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*=\s*"((?:[^"\\]|\\.)*)"\s*(,|$)')


def _unescape(v: str) -> str:
    return v.replace("\\n", "\n").replace('\\"', '"').replace("\\\\", "\\")


def parse_metrics(text: str) -> Metrics:
    """Minimal Prometheus text-format (0.0.4) parser; raises ValueError on junk."""
    m = Metrics()
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        if line.startswith("#"):
            parts = line.split(None, 3)
            if len(parts) >= 4 and parts[1] == "TYPE":
                m.types[parts[2]] = parts[3].strip()
            elif len(parts) >= 3 and parts[1] == "HELP":
                m.helps[parts[2]] = parts[3] if len(parts) > 3 else ""
            continue
        sm = _SAMPLE_RE.match(line)
        if not sm:
            raise ValueError(f"line {lineno}: cannot parse sample: {line!r}")
        name, label_text, value = sm.group(1), sm.group(2) or "", sm.group(3)
        labels = {}
        pos = 0
        label_text = label_text.strip()
        while pos < len(label_text):
            lm = _LABEL_RE.match(label_text, pos)
            if not lm:
                raise ValueError(f"line {lineno}: cannot parse labels: {label_text!r}")
            labels[lm.group(1)] = _unescape(lm.group(2))
            pos = lm.end()
        m.samples.append(Sample(name, labels, float(value)))
    return m


def fetch_metrics(server: WeftServer) -> Metrics:
    status, headers, body = http_get(server, "/metrics")
    assert status == 200, (status, body[:500])
    return parse_metrics(body.decode())


# ---------------------------------------------------------------------------
# Raw HTTP/2
# ---------------------------------------------------------------------------

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

FRAME_DATA, FRAME_HEADERS, FRAME_PRIORITY, FRAME_RST_STREAM = 0x0, 0x1, 0x2, 0x3
FRAME_SETTINGS, FRAME_PUSH_PROMISE, FRAME_PING, FRAME_GOAWAY = 0x4, 0x5, 0x6, 0x7
FRAME_WINDOW_UPDATE, FRAME_CONTINUATION = 0x8, 0x9
FLAG_END_STREAM, FLAG_ACK, FLAG_END_HEADERS = 0x1, 0x1, 0x4

NO_ERROR, PROTOCOL_ERROR, INTERNAL_ERROR, FLOW_CONTROL_ERROR = 0x0, 0x1, 0x2, 0x3
REFUSED_STREAM, CANCEL, COMPRESSION_ERROR, ENHANCE_YOUR_CALM = 0x7, 0x8, 0x9, 0xB


def raw_frame(ftype: int, flags: int, stream_id: int, payload: bytes = b"") -> bytes:
    return struct.pack(">I", len(payload))[1:] + bytes([ftype, flags]) + struct.pack(">I", stream_id & 0x7FFFFFFF) + payload


def grpc_message(msg: bytes, compressed: bool = False) -> bytes:
    """Length-prefixed gRPC message."""
    return bytes([1 if compressed else 0]) + struct.pack(">I", len(msg)) + msg


def parse_grpc_messages(data: bytes) -> list[tuple[int, bytes]]:
    out = []
    pos = 0
    while pos < len(data):
        if len(data) - pos < 5:
            raise ValueError(f"truncated gRPC prefix: {data[pos:]!r}")
        flag = data[pos]
        (n,) = struct.unpack(">I", data[pos + 1 : pos + 5])
        if len(data) - pos - 5 < n:
            raise ValueError("truncated gRPC message")
        payload = data[pos + 5 : pos + 5 + n]
        if flag == 1:
            payload = gzip.decompress(payload)
        out.append((flag, payload))
        pos += 5 + n
    return out


class FrameReader:
    """Reads raw HTTP/2 frames from a socket (no HPACK decoding)."""

    def __init__(self, sock: socket.socket):
        self.sock = sock
        self.buf = b""
        self.eof = False

    def next_frame(self, timeout: float):
        """Return (type, flags, stream_id, payload), or None on EOF/reset.

        Raises socket.timeout if nothing complete arrives in `timeout`.
        """
        deadline = time.monotonic() + timeout
        while True:
            if len(self.buf) >= 9:
                length = int.from_bytes(self.buf[:3], "big")
                if len(self.buf) >= 9 + length:
                    ftype, flags = self.buf[3], self.buf[4]
                    sid = int.from_bytes(self.buf[5:9], "big") & 0x7FFFFFFF
                    payload = self.buf[9 : 9 + length]
                    self.buf = self.buf[9 + length :]
                    return ftype, flags, sid, payload
            if self.eof:
                return None
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise socket.timeout("no complete frame")
            # select() instead of settimeout(): another thread may be blocked
            # in sendall() on the same socket and must keep its own timeout.
            readable, _, _ = select.select([self.sock], [], [], remaining)
            if not readable:
                continue
            try:
                chunk = self.sock.recv(65536)
            except (ConnectionResetError, ConnectionAbortedError, BrokenPipeError):
                chunk = b""
            if not chunk:
                self.eof = True
                continue
            self.buf += chunk


def goaway_info(payload: bytes) -> tuple[int, int, bytes]:
    last = int.from_bytes(payload[:4], "big") & 0x7FFFFFFF
    code = int.from_bytes(payload[4:8], "big")
    return last, code, payload[8:]


def await_goaway_or_close(reader: "FrameReader", timeout: float):
    """Read frames until the server sends GOAWAY (returned as goaway_info) or
    closes the connection, for at most `timeout` seconds.

    Returns (goaway or None, closed)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            fr = reader.next_frame(deadline - time.monotonic())
        except socket.timeout:
            break
        if fr is None:
            return None, True
        if fr[0] == FRAME_GOAWAY:
            return goaway_info(fr[3]), False
    return None, False


def raw_handshake(sock: socket.socket, reader: FrameReader, settings: bytes = b"", timeout: float = 5.0):
    """Send preface + SETTINGS, wait for the server SETTINGS and ACK it.

    Returns the server's SETTINGS as a dict {id: value}.
    """
    sock.sendall(PREFACE + raw_frame(FRAME_SETTINGS, 0, 0, settings))
    deadline = time.monotonic() + timeout
    while True:
        fr = reader.next_frame(max(0.01, deadline - time.monotonic()))
        if fr is None:
            raise AssertionError("server closed the connection during the HTTP/2 handshake")
        ftype, flags, sid, payload = fr
        if ftype == FRAME_SETTINGS and not flags & FLAG_ACK:
            sock.sendall(raw_frame(FRAME_SETTINGS, FLAG_ACK, 0))
            return {
                int.from_bytes(payload[i : i + 2], "big"): int.from_bytes(payload[i + 2 : i + 6], "big")
                for i in range(0, len(payload), 6)
            }


@dataclass
class StreamResult:
    headers: list | None = None
    trailers: list | None = None
    data: bytes = b""
    ended: bool = False
    reset_code: int | None = None
    goaway_code: int | None = None
    closed: bool = False
    timed_out: bool = False

    def header(self, name: str):
        for k, v in (self.headers or []):
            if k == name:
                return v
        return None

    def grpc_status(self):
        """grpc-status from the trailers, or from a trailers-only response."""
        for block in (self.trailers, self.headers):
            for k, v in (block or []):
                if k == "grpc-status":
                    return int(v)
        return None

    def grpc_message_text(self):
        for block in (self.trailers, self.headers):
            for k, v in (block or []):
                if k == "grpc-message":
                    return v
        return None


class H2Client:
    """A raw-socket HTTP/2 client driven by the `h2` state machine."""

    def __init__(self, server: WeftServer, timeout: float = 5.0, local_settings: dict | None = None,
                 rcvbuf: int | None = None, connection_window: int | None = None):
        import h2.config
        import h2.connection

        self.server = server
        self.authority = server.target
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        sock.settimeout(timeout)
        sock.connect((server.host, server.port))
        self.sock = sock
        self.conn = h2.connection.H2Connection(
            config=h2.config.H2Configuration(client_side=True, header_encoding="utf-8")
        )
        self.conn.initiate_connection()
        if local_settings:
            self.conn.update_settings(local_settings)
        if connection_window:
            self.conn.increment_flow_control_window(connection_window)
        self.flush()
        self.results: dict[int, StreamResult] = {}
        self.goaway = None  # (error_code, last_stream_id)
        self.closed = False
        self.settings_seen = False

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def flush(self):
        data = self.conn.data_to_send()
        if data:
            self.sock.sendall(data)

    def grpc_headers(self, path: str, extra=()):
        return [
            (":method", "POST"),
            (":scheme", "http"),
            (":path", path),
            (":authority", self.authority),
            ("content-type", "application/grpc"),
            ("te", "trailers"),
            *extra,
        ]

    def start_call(self, path: str, body: bytes | None = None, end_stream: bool = True, extra_headers=(),
                   headers=None) -> int:
        sid = self.conn.get_next_available_stream_id()
        hdrs = headers if headers is not None else self.grpc_headers(path, extra_headers)
        self.conn.send_headers(sid, hdrs, end_stream=(body is None and end_stream))
        if body is not None:
            self.send_data(sid, body, end_stream=end_stream)
        self.flush()
        self.results[sid] = StreamResult()
        return sid

    def send_data(self, sid: int, body: bytes, end_stream: bool):
        # Respect flow control / frame size for well-formed bodies.
        max_frame = self.conn.max_outbound_frame_size
        view = memoryview(body)
        if not body:
            self.conn.send_data(sid, b"", end_stream=end_stream)
        while view:
            chunk = bytes(view[:max_frame])
            view = view[max_frame:]
            self.conn.send_data(sid, chunk, end_stream=end_stream and not view)
        self.flush()

    def pump(self, timeout: float) -> bool:
        """Receive once and process events. Returns False on EOF."""
        import h2.events

        if self.closed:
            return False
        readable, _, _ = select.select([self.sock], [], [], max(0.0, timeout))
        if not readable:
            return True
        try:
            data = self.sock.recv(65536)
        except (ConnectionResetError, ConnectionAbortedError):
            data = b""
        if not data:
            self.closed = True
            for r in self.results.values():
                r.closed = True
            return False
        events = self.conn.receive_data(data)
        for ev in events:
            r = self.results.get(getattr(ev, "stream_id", None) or -1)
            if isinstance(ev, h2.events.ResponseReceived) and r:
                r.headers = list(ev.headers)
            elif isinstance(ev, h2.events.TrailersReceived) and r:
                r.trailers = list(ev.headers)
            elif isinstance(ev, h2.events.DataReceived):
                if r:
                    r.data += ev.data
                if ev.flow_controlled_length:
                    self.conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
            elif isinstance(ev, h2.events.StreamEnded) and r:
                r.ended = True
            elif isinstance(ev, h2.events.StreamReset) and r:
                r.reset_code = int(ev.error_code)
            elif isinstance(ev, h2.events.RemoteSettingsChanged):
                self.settings_seen = True
            elif isinstance(ev, h2.events.ConnectionTerminated):
                self.goaway = (int(ev.error_code), ev.last_stream_id)
                for rr in self.results.values():
                    rr.goaway_code = int(ev.error_code)
        try:
            self.flush()
        except OSError:
            self.closed = True
        return True

    def wait_stream(self, sid: int, timeout: float = 5.0) -> StreamResult:
        """Pump until stream `sid` ends, is reset, or the connection goes away."""
        r = self.results[sid]
        deadline = time.monotonic() + timeout
        while not (r.ended or r.reset_code is not None or self.closed
                   or (self.goaway is not None and sid > self.goaway[1])):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                r.timed_out = True
                break
            if not self.pump(min(remaining, 0.5)):
                break
        return r

    def handshake(self, timeout: float = 5.0):
        """Pump until the server's SETTINGS arrived (h2 ACKs it for us)."""
        deadline = time.monotonic() + timeout
        while not self.settings_seen:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or self.closed:
                raise AssertionError("no SETTINGS from the server")
            self.pump(min(remaining, 0.2))


def h2_settings_of_server(server: WeftServer, timeout: float = 5.0) -> dict:
    """The SETTINGS the server sends first on a new HTTP/2 connection."""
    sock = socket.create_connection((server.host, server.port), timeout=timeout)
    try:
        return raw_handshake(sock, FrameReader(sock), timeout=timeout)
    finally:
        sock.close()


def recv_until_closed(sock: socket.socket, timeout: float) -> tuple[bytes, bool]:
    """Read until EOF or timeout. Returns (data, closed)."""
    deadline = time.monotonic() + timeout
    data = b""
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return data, False
        sock.settimeout(remaining)
        try:
            chunk = sock.recv(65536)
        except socket.timeout:
            return data, False
        except (ConnectionResetError, ConnectionAbortedError):
            return data, True
        if not chunk:
            return data, True
        data += chunk


class BackgroundFrameReader(threading.Thread):
    """Drains a socket in the background, recording RST_STREAM / GOAWAY frames."""

    def __init__(self, sock: socket.socket, reader: FrameReader | None = None):
        super().__init__(daemon=True)
        self.reader = reader or FrameReader(sock)
        self.rst_codes: dict[int, int] = {}
        self.goaways: list[tuple[int, int]] = []  # (last_stream_id, code)
        self.frame_counts: dict[int, int] = {}
        self.closed = threading.Event()
        self.stop_flag = threading.Event()
        self.lock = threading.Lock()

    def run(self):
        while not self.stop_flag.is_set():
            try:
                fr = self.reader.next_frame(0.2)
            except socket.timeout:
                continue
            except (OSError, ValueError):  # socket closed under us
                fr = None
            if fr is None:
                self.closed.set()
                return
            ftype, flags, sid, payload = fr
            with self.lock:
                self.frame_counts[ftype] = self.frame_counts.get(ftype, 0) + 1
                if ftype == FRAME_RST_STREAM:
                    self.rst_codes[sid] = int.from_bytes(payload[:4], "big")
                elif ftype == FRAME_GOAWAY:
                    last, code, _ = goaway_info(payload)
                    self.goaways.append((last, code))

    def stop(self):
        self.stop_flag.set()
        self.join(2)

    def summary(self) -> str:
        with self.lock:
            codes = {}
            for c in self.rst_codes.values():
                codes[c] = codes.get(c, 0) + 1
            return (f"frames={self.frame_counts} rst_codes={codes} goaways={self.goaways} "
                    f"closed={self.closed.is_set()}")


def json_body(body: bytes):
    return json.loads(body.decode())


# ---------------------------------------------------------------------------
# weft.v1 REST API (JSON over HTTP/1.1)
# ---------------------------------------------------------------------------

# The server flag that makes password hashing cheap enough for tests.
API_SERVER_ARGS = ("--scrypt-log-n", "10")

_RFC3339_RE = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(\.\d{1,9})?([Zz]|[+-]\d{2}:\d{2})$"
)


@dataclass
class RestResponse:
    status: int
    headers: dict  # lower-case names; repeated headers joined with ", "
    body: bytes

    @property
    def json(self):
        try:
            return json.loads(self.body.decode())
        except ValueError as exc:
            raise AssertionError(f"response body is not JSON ({exc}): status={self.status} body={self.body[:500]!r}")

    def header(self, name: str):
        return self.headers.get(name.lower())

    def __repr__(self) -> str:
        return f"<{self.status} {self.body[:600]!r}>"


class RestClient:
    """Minimal JSON client for the REST bridge; one connection per request.

    `token` is sent as `authorization: Bearer <token>` unless a call passes
    token=None explicitly (auth=False) or its own authorization header."""

    def __init__(self, server: WeftServer, token: str | None = None, timeout: float = 10.0):
        self.server = server
        self.token = token
        self.timeout = timeout

    def with_token(self, token: str | None) -> "RestClient":
        return RestClient(self.server, token, self.timeout)

    def request(self, method: str, path: str, body=None, *, raw: bytes | None = None, headers=None,
                auth: bool = True, content_type: str | None = "application/json") -> RestResponse:
        hdrs = {}
        data = None
        if raw is not None:
            data = raw
        elif body is not None:
            data = json.dumps(body).encode()
        if data is not None and content_type:
            hdrs["Content-Type"] = content_type
        if auth and self.token:
            hdrs["Authorization"] = f"Bearer {self.token}"
        hdrs.update(headers or {})
        conn = http.client.HTTPConnection(self.server.host, self.server.port, timeout=self.timeout)
        try:
            conn.request(method, path, body=data, headers=hdrs)
            resp = conn.getresponse()
            payload = resp.read()
            merged: dict = {}
            for k, v in resp.getheaders():
                k = k.lower()
                merged[k] = f"{merged[k]}, {v}" if k in merged else v
            return RestResponse(resp.status, merged, payload)
        finally:
            conn.close()

    def get(self, path, **kw):
        return self.request("GET", path, **kw)

    def post(self, path, body=None, **kw):
        return self.request("POST", path, body, **kw)

    def put(self, path, body=None, **kw):
        return self.request("PUT", path, body, **kw)

    def delete(self, path, **kw):
        return self.request("DELETE", path, **kw)


def unique_email(prefix: str = "user") -> str:
    import uuid

    return f"{prefix}-{uuid.uuid4().hex[:12]}@example.com"


@dataclass
class ApiUser:
    id: str
    email: str
    password: str
    name: str
    token: str
    user: dict  # the User JSON returned by register
    rest: RestClient


def all_pages(client: "RestClient", path: str, items: str, max_pages: int = 1000, **params) -> list:
    """Every item of a paginated REST list: follows nextPageToken until it is
    empty (failing if it never is). `items` names the list in each page."""
    import urllib.parse

    out, token = [], ""
    for _ in range(max_pages):
        query = urllib.parse.urlencode(dict(params, **({"pageToken": token} if token else {})))
        r = client.get(path + (f"?{query}" if query else ""))
        assert r.status == 200, r
        page = r.json.get(items, [])
        assert isinstance(page, list), r.json
        out += page
        token = r.json.get("nextPageToken", "")
        if not token:
            return out
    raise AssertionError(f"paging {path} never ended")


def grpc_auth(user: "ApiUser") -> tuple:
    """gRPC metadata carrying the user's bearer token."""
    return (("authorization", f"Bearer {user.token}"),)


def proto_struct(obj: dict):
    """A google.protobuf.Struct holding `obj`."""
    from google.protobuf import struct_pb2

    s = struct_pb2.Struct()
    s.update(obj)
    return s


def register_and_login(server: WeftServer, name: str = "Test User", email: str | None = None,
                       password: str = "correct horse battery") -> ApiUser:
    """Registers a fresh account over REST and logs it in. Like a well-behaved
    client it waits out a 429 of the per-address auth rate limit (20 calls a
    second, burst 40) for its `retry-after`: fixtures that make many users at
    once would otherwise fail on a fast server."""
    anon = RestClient(server)
    email = email or unique_email(name.split()[0].lower())

    def post(path, body):
        deadline = time.monotonic() + 15
        while True:
            r = anon.post(path, body)
            if r.status != 429 or time.monotonic() > deadline:
                return r
            time.sleep(min(2.0, max(0.1, float(r.header("retry-after") or 1))))

    r = post("/users/register", {"email": email, "password": password, "name": name})
    assert r.status == 201, r
    user = r.json
    r = post("/users/login", {"email": email, "password": password})
    assert r.status == 200, r
    token = r.json["token"]
    return ApiUser(user["id"], email, password, name, token, user, RestClient(server, token))


def _rest_at(target, token: str | None) -> RestClient:
    """A RestClient for a WeftServer or a base URL ("http://host:port")."""
    if isinstance(target, str):
        import urllib.parse

        url = urllib.parse.urlsplit(target)
        target = types.SimpleNamespace(host=url.hostname, port=url.port or 80)
    return RestClient(target, token)


def own_org_id(target, token: str) -> str:
    """The id of the caller's own organization (the one registration created:
    GET /orgs lists memberships in the order they were joined)."""
    r = _rest_at(target, token).get("/orgs")
    assert r.status == 200, r
    orgs = r.json.get("organizations", [])
    assert orgs and orgs[0].get("role") == "admin", r.json
    return orgs[0]["id"]


def invite_and_accept(target, admin_token: str, member_token: str, org_id: str | None = None,
                      role: str = "member") -> dict:
    """Joins the member of `member_token` to an organization with consent, the
    only way in: an admin (`admin_token`) invites the member's email into
    `org_id` (default: the admin's own organization) and the member accepts.

    `target` is a WeftServer or a base URL; tokens are those of REST or gRPC
    logins alike.  Collaborators of a workflow must be members of its
    organization, so tests that share a workflow call this first.  Returns
    the accepted Organization JSON (with the member's role); a member who
    already belongs to the organization (a module-scoped user joined by an
    earlier test) is left as is and its Organization entry returned."""
    admin = _rest_at(target, admin_token)
    member = _rest_at(target, member_token)
    org_id = org_id or own_org_id(target, admin_token)
    mine = member.get("/orgs")
    assert mine.status == 200, mine
    for org in mine.json.get("organizations", []):
        if org.get("id") == org_id:
            return org
    me = member.get("/users/me")
    assert me.status == 200, me
    r = admin.post(f"/orgs/{org_id}/invitations", {"email": me.json["email"], "role": role})
    assert r.status == 201, r
    invitation = r.json
    r = member.post(f"/invitations/{invitation['id']}/accept", {})
    assert r.status == 200, r
    assert r.json.get("id") == org_id and r.json.get("role") == role, r.json
    return r.json


def rfc3339_nanos(text: str) -> int:
    """Nanoseconds since the epoch of an RFC 3339 timestamp (exact, unlike datetime)."""
    import calendar

    m = _RFC3339_RE.match(text or "")
    assert m, f"not an RFC 3339 timestamp: {text!r}"
    y, mo, d, h, mi, s, frac, tz = m.groups()
    secs = calendar.timegm((int(y), int(mo), int(d), int(h), int(mi), int(s)))
    if tz not in ("Z", "z"):
        sign = 1 if tz[0] == "+" else -1
        secs -= sign * (int(tz[1:3]) * 3600 + int(tz[4:6]) * 60)
    return secs * 1_000_000_000 + int((frac or ".0")[1:].ljust(9, "0"))
