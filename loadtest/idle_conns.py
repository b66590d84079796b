#!/usr/bin/env python3
"""Open N idle HTTP/2 cleartext (h2c, prior knowledge) connections and measure
how much resident memory they cost a server process.

Each connection sends the client preface and an empty SETTINGS frame, waits
for the server's SETTINGS frame, acknowledges it, and then stays idle (PINGs
from the server are answered; nothing else is sent). VmRSS of --pid is read
from /proc before the first connection, once all connections completed the
handshake and settled, and after they were closed.

Example:
  python3 loadtest/idle_conns.py --port 8080 --pid $(pgrep -n weft) -n 1000

Loopback only: --host must be a 127.0.0.0/8 or ::1 address. Standard library
only. Raises the RLIMIT_NOFILE soft limit to the hard limit. The measurement is
valid only if all N connections completed the handshake and were still open
(no close, no GOAWAY) when RSS was read and at the end of the hold; otherwise
"problems" lists why and it exits 1 (the RSS figures then do not describe N
idle connections).
"""

import argparse
import asyncio
import ipaddress
import json
import resource
import struct
import sys
import time

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
T_SETTINGS, T_PING, T_GOAWAY = 0x4, 0x6, 0x7
F_ACK = 0x1


def frame(ftype, flags, stream_id, payload=b""):
    n = len(payload)
    return struct.pack(">BHBBI", n >> 16, n & 0xFFFF, ftype, flags, stream_id & 0x7FFFFFFF) + payload


def rss_kb(pid):
    """VmRSS of pid in kB, or None."""
    if pid is None:
        return None
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def raise_nofile(need):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else max(soft, need)
    if soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < need:
        print("warning: RLIMIT_NOFILE is %d, fewer than the %d descriptors needed; "
              "the server needs a high enough limit too" % (soft, need), file=sys.stderr)
    return soft


class Conn:
    def __init__(self):
        self.reader = None
        self.writer = None
        self.handshaken = asyncio.Event()
        self.closed = False
        self.goaway = False
        self.task = None

    async def open(self, host, port):
        self.reader, self.writer = await asyncio.open_connection(host, port)
        self.writer.write(PREFACE + frame(T_SETTINGS, 0, 0))
        await self.writer.drain()
        self.task = asyncio.ensure_future(self.read_loop())

    async def read_loop(self):
        try:
            while True:
                hdr = await self.reader.readexactly(9)
                length = (hdr[0] << 16) | (hdr[1] << 8) | hdr[2]
                ftype, flags = hdr[3], hdr[4]
                payload = await self.reader.readexactly(length) if length else b""
                if ftype == T_SETTINGS and not flags & F_ACK:
                    self.writer.write(frame(T_SETTINGS, F_ACK, 0))
                    self.handshaken.set()
                elif ftype == T_PING and not flags & F_ACK:
                    self.writer.write(frame(T_PING, F_ACK, 0, payload))
                elif ftype == T_GOAWAY:
                    self.goaway = True
        except (asyncio.IncompleteReadError, ConnectionError, OSError):
            pass
        except asyncio.CancelledError:
            raise
        finally:
            self.closed = True
            self.handshaken.set()  # unblock waiters; they check .closed

    def close(self):
        if self.task:
            self.task.cancel()
        if self.writer:
            try:
                self.writer.close()
            except Exception:
                pass


async def run(args):
    conns = []
    sem = asyncio.Semaphore(args.concurrency)
    failures = []

    async def one():
        async with sem:
            c = Conn()
            conns.append(c)
            try:
                await asyncio.wait_for(c.open(args.host, args.port), args.timeout)
                await asyncio.wait_for(c.handshaken.wait(), args.timeout)
                if c.closed:
                    failures.append("closed by server during handshake")
            except Exception as e:  # noqa: BLE001 - report any failure
                failures.append("%s: %s" % (type(e).__name__, e))

    out = {"host": args.host, "port": args.port, "pid": args.pid, "connections_requested": args.count}
    out["rss_before_kb"] = rss_kb(args.pid)
    t0 = time.monotonic()
    await asyncio.gather(*(one() for _ in range(args.count)))
    out["handshake_seconds"] = round(time.monotonic() - t0, 3)
    ok = [c for c in conns if c.handshaken.is_set() and not c.closed]
    out["connections_established"] = len(ok)
    if failures:
        out["first_failure"] = failures[0]
        out["failures"] = len(failures)
    await asyncio.sleep(args.settle)
    out["rss_open_kb"] = rss_kb(args.pid)
    open_at_read = sum(1 for c in ok if not c.closed)
    out["connections_open_at_rss_read"] = open_at_read
    await asyncio.sleep(max(0.0, args.hold - args.settle))
    out["rss_end_of_hold_kb"] = rss_kb(args.pid)
    out["connections_open_at_end_of_hold"] = sum(1 for c in ok if not c.closed)
    out["goaway_received"] = sum(1 for c in conns if c.goaway)
    for c in conns:
        c.close()
    await asyncio.sleep(args.after)
    out["rss_after_close_kb"] = rss_kb(args.pid)
    if out["rss_before_kb"] is not None and out["rss_open_kb"] is not None:
        delta = out["rss_open_kb"] - out["rss_before_kb"]
        out["rss_added_kb"] = delta
        if open_at_read:
            out["rss_added_bytes_per_connection"] = round(delta * 1024 / open_at_read)
    problems = []
    if len(ok) < args.count:
        problems.append("%d of %d connections completed the handshake%s" % (
            len(ok), args.count, (" (first failure: %s)" % failures[0]) if failures else ""))
    if open_at_read < len(ok):
        problems.append("%d connections were closed before RSS was read" % (len(ok) - open_at_read))
    elif out["connections_open_at_end_of_hold"] < len(ok):
        problems.append("%d connections were closed during the hold" % (len(ok) - out["connections_open_at_end_of_hold"]))
    if out["goaway_received"]:
        problems.append("GOAWAY received on %d connections" % out["goaway_received"])
    if args.pid is not None and (out["rss_before_kb"] is None or out["rss_open_kb"] is None):
        problems.append("could not read the server's VmRSS (did it exit?)")
    out["problems"] = problems
    out["valid"] = not problems
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description="Open N idle h2c connections and measure a server's RSS.")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("-n", "--count", type=int, default=1000, help="connections to open (default 1000)")
    ap.add_argument("--pid", type=int, help="server process whose VmRSS to report")
    ap.add_argument("--hold", type=float, default=5.0, help="seconds to keep the connections open (default 5)")
    ap.add_argument("--settle", type=float, default=1.0,
                    help="seconds after the last handshake before reading RSS (default 1)")
    ap.add_argument("--after", type=float, default=1.0, help="seconds after closing before the last RSS read")
    ap.add_argument("--concurrency", type=int, default=100, help="handshakes in flight at once (default 100)")
    ap.add_argument("--timeout", type=float, default=10.0, help="per-connection handshake timeout (s)")
    ap.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    args = ap.parse_args(argv)

    try:
        addr = ipaddress.ip_address(args.host)
    except ValueError:
        ap.error("--host must be a literal loopback address")
    if not addr.is_loopback:
        ap.error("--host must be a loopback address (127.0.0.0/8 or ::1)")
    if args.count < 1 or args.count > 60000:
        ap.error("--count must be between 1 and 60000")
    if args.hold > 600:
        ap.error("--hold is capped at 600 s")
    if args.pid is not None and rss_kb(args.pid) is None:
        ap.error("cannot read /proc/%d/status" % args.pid)

    out = {"nofile_limit": raise_nofile(args.count + 64)}
    out.update(asyncio.run(run(args)))
    if args.json:
        print(json.dumps(out))
    else:
        for k, v in out.items():
            print("%-34s %s" % (k, v))
    for p in out["problems"]:
        print("idle_conns: invalid: %s" % p, file=sys.stderr)
    return 0 if out["valid"] else 1


if __name__ == "__main__":
    sys.exit(main())
