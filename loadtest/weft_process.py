"""A `weft serve` started by a benchmark script on a free loopback port: the
port is read from its "listening on" log line; SIGTERM on stop (SIGKILL after
a timeout), with a note of how it ended."""

from __future__ import annotations

import importlib.util
import os
import re
import shlex
import signal
import subprocess
import sys
import time


class WeftProcess:
    """A `weft serve` started by the script; stderr goes to OUT_DIR/weft-NAME.log."""

    LEVEL_RE = re.compile(r"^\S+ (warning|error|critical) ", re.M)
    CRASH_RE = re.compile(r"Fatal error|Program crashed|Assertion failed|Precondition failed|panic", re.I)

    def __init__(self, weft_bin, data_dir, args, out_dir, name):
        self.cmd = [weft_bin, "serve", "--host", "127.0.0.1", "--port", "0", "--data-dir", data_dir] + args
        self.log_path = os.path.join(out_dir, f"weft-{name}.log")
        self.log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(self.cmd, stdin=subprocess.DEVNULL, stdout=self.log, stderr=self.log,
                                     start_new_session=True)
        self.pid = self.proc.pid
        self.port = None
        self.exit_note = None
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            m = re.search(rb"listening on 127\.0\.0\.1:(\d+)", open(self.log_path, "rb").read())
            if m:
                self.port = int(m.group(1))
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.1)
        sys.stderr.write(self.text()[-4000:])
        self.stop()
        raise SystemExit(f"weft did not print 'listening on 127.0.0.1:PORT': {shlex.join(self.cmd)}")

    def text(self):
        try:
            return open(self.log_path, errors="replace").read()
        except OSError:
            return ""

    def log_offset(self):
        try:
            return os.path.getsize(self.log_path)
        except OSError:
            return 0

    def log_problems(self, offset=0):
        """(count, first lines) of warning/error/critical lines and crash reports after `offset`."""
        with open(self.log_path, "rb") as f:
            f.seek(offset)
            text = f.read().decode(errors="replace")
        lines = [ln for ln in text.splitlines() if self.LEVEL_RE.match(ln + " ") or self.CRASH_RE.search(ln)]
        return len(lines), lines[:5]

    def alive(self):
        return self.proc.poll() is None

    def died(self):
        """None while running, else a description of the exit."""
        rc = self.proc.poll()
        if rc is None:
            return None
        crash = next((ln.strip() for ln in self.text().splitlines() if self.CRASH_RE.search(ln)), None)
        sig = f" (signal {signal.Signals(-rc).name})" if rc < 0 else ""
        return f"weft exited with status {rc}{sig}" + (f": {crash}" if crash else "")

    def stop(self, timeout=40):
        if self.proc.poll() is None:
            t0 = time.monotonic()
            self.proc.send_signal(signal.SIGTERM)
            try:
                rc = self.proc.wait(timeout=timeout)
                self.exit_note = f"stopped by SIGTERM in {time.monotonic() - t0:.1f} s, exit status {rc}"
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                self.exit_note = f"did not exit within {timeout} s of SIGTERM; killed"
        self.log.close()


def cpu_ticks(pid):
    """User + system CPU of a process in clock ticks (None if unreadable)."""
    if not pid:
        return None
    try:
        with open(f"/proc/{pid}/stat") as f:
            rest = f.read().rsplit(")", 1)[1].split()
        return int(rest[11]) + int(rest[12])  # utime, stime (fields 14, 15)
    except (OSError, IndexError, ValueError):
        return None


def load_bench_executions():
    """bench-executions.py as module `bench_executions` (its statistics and
    machine-load helpers), registered in sys.modules when first loaded, so
    spawned client processes, which re-run a script's top level, find its
    functions."""
    name = "bench_executions"
    if name not in sys.modules:
        path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "bench-executions.py")
        spec = importlib.util.spec_from_file_location(name, path)
        mod = importlib.util.module_from_spec(spec)
        sys.modules[name] = mod
        spec.loader.exec_module(mod)
    return sys.modules[name]
