#!/usr/bin/env python3
"""A Python grpcio peer for loadtest/peers/bench-peers.py: grpc.health.v1.Health/Check over
plaintext HTTP/2 (h2c) on loopback, answering SERVING, with the stock servicer of
grpcio-health-checking (no code of our own on the call path).

    python3 loadtest/peers/grpcio_health_server.py PORT [--mode aio|sync] [--workers N]

PORT 0 lets the OS choose. Once bound it prints "listening on 127.0.0.1:PORT" on stderr (the
line bench-health.sh and bench-peers.py read). Runs until SIGTERM or SIGINT.

  --mode aio   grpc.aio server (asyncio, one Python thread runs the handlers; the default)
  --mode sync  grpc.server(ThreadPoolExecutor(max_workers=--workers)), the classic server
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
import threading
from concurrent import futures

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

HOST = "127.0.0.1"  # loopback only

# One connection may carry many concurrent streams (the benchmark uses 32 per connection).
OPTIONS = [("grpc.max_concurrent_streams", 1000), ("grpc.so_reuseport", 0)]


def announce(port):
    sys.stderr.write("listening on %s:%d\n" % (HOST, port))
    sys.stderr.flush()


def run_sync(port, workers):
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=workers), options=OPTIONS)
    servicer = health.HealthServicer()
    servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    bound = server.add_insecure_port("%s:%d" % (HOST, port))
    if not bound:
        raise SystemExit("could not bind %s:%d" % (HOST, port))
    server.start()
    announce(bound)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()
    server.stop(grace=1).wait()


async def run_aio(port):
    server = grpc.aio.server(options=OPTIONS)
    servicer = health.aio.HealthServicer()
    await servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    bound = server.add_insecure_port("%s:%d" % (HOST, port))
    if not bound:
        raise SystemExit("could not bind %s:%d" % (HOST, port))
    await server.start()
    announce(bound)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await server.stop(grace=1)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("port", type=int, help="port on 127.0.0.1 (0: any free port)")
    ap.add_argument("--mode", choices=("aio", "sync"), default="aio")
    ap.add_argument("--workers", type=int, default=8, help="thread pool size for --mode sync (default 8)")
    a = ap.parse_args()
    if a.mode == "sync":
        run_sync(a.port, a.workers)
    else:
        asyncio.run(run_aio(a.port))
    return 0


if __name__ == "__main__":
    sys.exit(main())
