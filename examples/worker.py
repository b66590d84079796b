#!/usr/bin/env python3
"""An external worker for Weft, using only the Python standard library.

A task with `"action": "external"` is not run by the server: it waits on a
named queue until a worker leases it, does the work and reports the result.
This worker speaks the REST form of the worker protocol (docs/WORKERS.md):

    POST /queues/{queue}/poll   lease the next task (long poll)
    POST /workers/heartbeat     keep the lease while the task runs
    POST /workers/complete      report the output
    POST /workers/fail          report an error (the task's retry policy decides)

Usage:

    # a worker API key, made once by an admin of the queue's organization
    # (POST /api-keys {"name": "emails worker", "scopes": ["worker"], "queues": ["emails"]})
    export WEFT_API_KEY=wk_...
    python3 examples/worker.py --url https://weft.example.com:8443 --queue emails [--worker-id w1]
                               [--cacert ca.pem] [--once] [--max-tasks N] [--wait 20] [--lease-duration 30]

The work itself is `handle(task, ctx)`; replace it with your own.  The demo
handler echoes the task's input and reacts to a few input fields:

    {"sleepMs": 2000}          sleep first (longer than the lease: heartbeats keep it)
    {"fail": "msg", "kind": "k", "nonRetryable": true}
                               fail with that error (kind and nonRetryable optional)
    {"failUntilAttempt": 3}    fail attempts 1 and 2, succeed on attempt 3 (retries)
    {"sum": [1, 2, 3.5]}       output {"sum": 6.5}
"""

import argparse
import json
import os
import random
import signal
import ssl
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request

# ---------------------------------------------------------------------------
# The work: replace `handle` with your own function.
# ---------------------------------------------------------------------------


class TaskFailed(Exception):
    """Raise from a handler to fail the attempt with an error kind.

    `kind` is matched against the task's retry.retryableErrors; with
    non_retryable=True the task fails for good whatever its retry policy."""

    def __init__(self, message, kind="external", non_retryable=False):
        super().__init__(message)
        self.kind = kind
        self.non_retryable = non_retryable


class TaskContext:
    """What a handler gets besides the task: a log and the lease state."""

    def __init__(self, worker_id):
        self.worker_id = worker_id
        self.log_lines = []                   # sent with complete/fail, shown in the execution log
        self.lease_lost = threading.Event()   # set when the server took the task back

    def log(self, line):
        self.log_lines.append(str(line))


def handle(task, ctx):
    """The demo handler. Returns the output object (a dict) or raises."""
    data = task.get("input") or {}
    attempt = task.get("attempt", 1)

    if "sleepMs" in data:
        # Wait, but stop early if the lease is lost: nobody wants the result.
        ctx.lease_lost.wait(float(data["sleepMs"]) / 1000)
    if "fail" in data:
        raise TaskFailed(str(data["fail"]), data.get("kind", "external"), bool(data.get("nonRetryable", False)))
    if "failUntilAttempt" in data and attempt < int(data["failUntilAttempt"]):
        raise TaskFailed(
            f"attempt {attempt} failed on purpose (succeeds from attempt {data['failUntilAttempt']})",
            data.get("kind", "external"))
    ctx.log(f"worker {ctx.worker_id} ran {task['taskKey']} attempt {attempt}")
    if "sum" in data:
        return {"sum": sum(data["sum"])}
    return dict(data)  # echo


# ---------------------------------------------------------------------------
# The protocol client
# ---------------------------------------------------------------------------


class ApiError(Exception):
    """The server answered with an error: {"code", "message", "details"}."""

    def __init__(self, status, code, message):
        super().__init__(f"HTTP {status} {code}: {message}")
        self.status, self.code, self.message = status, code, message

    @property
    def lease_lost(self):
        # FAILED_PRECONDITION (gRPC code 9, HTTP 400): the lease expired and
        # another worker has the task, or the attempt ended (timeout, cancel).
        return self.code in (9, "FAILED_PRECONDITION")


class Client:
    def __init__(self, url, token, org_id="", cafile=None):
        self.url = url.rstrip("/")
        self.token = token
        self.org_id = org_id
        # https: verify the server against the system's CAs, or this file's.
        self.context = ssl.create_default_context(cafile=cafile) if url.startswith("https:") else None

    def post(self, path, body, timeout=30.0):
        """POST a JSON body and return the decoded JSON answer.

        Raises ApiError for error answers and OSError (URLError, timeouts,
        connection resets) when the server cannot be reached."""
        request = urllib.request.Request(
            self.url + path, data=json.dumps(body).encode(), method="POST",
            headers={"Content-Type": "application/json", "Authorization": f"Bearer {self.token}"})
        try:
            with urllib.request.urlopen(request, timeout=timeout, context=self.context) as response:
                text = response.read()
        except urllib.error.HTTPError as err:
            try:
                payload = json.loads(err.read() or b"{}")
            except ValueError:
                payload = {}
            raise ApiError(err.code, payload.get("code"), payload.get("message", err.reason)) from None
        return json.loads(text or b"{}")

    def poll(self, queue, worker_id, wait, lease):
        path = "/queues/" + urllib.parse.quote(queue, safe="") + "/poll"
        body = {"workerId": worker_id, "wait": seconds(wait), "leaseDuration": seconds(lease)}
        if self.org_id:
            body["orgId"] = self.org_id  # the queue's organization; default: the caller's own
        return self.post(path, body, timeout=wait + 30).get("task")  # None: no task within the wait

    def heartbeat(self, token, lease):
        return self.post("/workers/heartbeat", {"leaseToken": token, "leaseDuration": seconds(lease)})

    def complete(self, token, output, log_lines):
        return self.post("/workers/complete", {"leaseToken": token, "output": output, "logLines": log_lines})

    def fail(self, token, error, kind, non_retryable, log_lines):
        return self.post("/workers/fail", {"leaseToken": token, "error": error, "kind": kind,
                                           "nonRetryable": non_retryable, "logLines": log_lines})


def seconds(value):
    """A proto3 JSON duration: 2.5 -> "2.5s"."""
    return f"{value:g}s"


def say(*parts):
    print(time.strftime("%H:%M:%S"), *parts, file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------
# The worker loop
# ---------------------------------------------------------------------------


class Stop(Exception):
    """Raised by the signal handler to abandon a poll in progress."""


class Worker:
    def __init__(self, client, queue, worker_id, wait, lease, handler=handle):
        self.client, self.queue, self.worker_id = client, queue, worker_id
        self.wait, self.lease, self.handler = wait, lease, handler
        self.stopping = False
        self.polling = False
        self.handled = 0

    def stop(self, signum, _frame):
        if self.stopping:  # a second signal: leave now
            raise SystemExit(128 + signum)
        self.stopping = True  # (no printing here: the handler may interrupt a print)
        if self.polling:
            # Leave the long poll now. A task the server leased to us at this
            # very moment goes to another worker when its lease expires.
            raise Stop()

    def run(self, once=False, max_tasks=0):
        backoff = 0.5
        while not self.stopping:
            try:
                task = self.poll()
            except Stop:
                break
            except ApiError as err:
                if err.status < 500 and err.status != 429:
                    say(f"worker {self.worker_id}: poll refused: {err}")  # bad token, bad arguments
                    return 2
                say(f"worker {self.worker_id}: poll failed: {err}; retrying in {backoff:.1f}s")
                backoff = self.pause(backoff)
                continue
            except (OSError, ValueError) as err:  # server down or restarting
                say(f"worker {self.worker_id}: cannot reach the server ({err}); retrying in {backoff:.1f}s")
                backoff = self.pause(backoff)
                continue
            backoff = 0.5
            if task:
                self.process(task)
                self.handled += 1
            if once or (max_tasks and self.handled >= max_tasks):
                break
        say(f"worker {self.worker_id}: stopped after {self.handled} task(s)")
        return 0

    def poll(self):
        self.polling = True  # a signal now raises Stop, see stop()
        try:
            return self.client.poll(self.queue, self.worker_id, self.wait, self.lease)
        finally:
            self.polling = False

    def pause(self, backoff):
        """Sleep `backoff` (with jitter) and return the next, doubled up to 30 s."""
        deadline = time.monotonic() + backoff * random.uniform(0.5, 1.0)
        while not self.stopping and time.monotonic() < deadline:
            time.sleep(0.1)
        return min(backoff * 2, 30.0)

    def process(self, task):
        token = task["leaseToken"]
        say(f"worker {self.worker_id}: got {task['taskKey']} of {task['executionId']} attempt {task['attempt']}")
        ctx = TaskContext(self.worker_id)
        done = threading.Event()
        beat = threading.Thread(target=self.heartbeat, args=(token, ctx, done), daemon=True)
        beat.start()
        try:
            output = self.handler(task, ctx)
            if not isinstance(output, dict):
                output = {"result": output}  # the output must be a JSON object
            failure = None
        except Exception as err:  # noqa: BLE001 - any handler error fails the attempt
            failure = (str(err) or type(err).__name__, getattr(err, "kind", "external"),
                       getattr(err, "non_retryable", False))
        finally:
            done.set()
            beat.join()
        if ctx.lease_lost.is_set():
            say(f"worker {self.worker_id}: lease lost; dropping the result of {task['taskKey']}")
            return
        if failure is None:
            self.send(lambda: self.client.complete(token, output, ctx.log_lines), "completed", task)
        else:
            error, kind, non_retryable = failure
            self.send(lambda: self.client.fail(token, error, kind, non_retryable, ctx.log_lines),
                      f"failed ({kind}): {error}", task)

    def heartbeat(self, token, ctx, done):
        """Extends the lease every lease/3 until the handler returns."""
        while not done.wait(self.lease / 3):
            try:
                self.client.heartbeat(token, self.lease)
            except ApiError as err:
                if err.lease_lost:
                    ctx.lease_lost.set()
                    return
                say(f"worker {self.worker_id}: heartbeat refused: {err}")
            except (OSError, ValueError) as err:
                say(f"worker {self.worker_id}: heartbeat failed ({err}); will retry")

    def send(self, report, outcome, task):
        """Reports the result; retries while the server is unreachable. The
        lease may lapse meanwhile: the server then answers FAILED_PRECONDITION
        and the task runs again elsewhere (at-least-once delivery)."""
        backoff = 0.5
        while True:
            try:
                report()
                say(f"worker {self.worker_id}: {task['taskKey']} {outcome}")
                return
            except ApiError as err:
                if err.lease_lost:
                    say(f"worker {self.worker_id}: lease lost; result of {task['taskKey']} dropped")
                else:
                    say(f"worker {self.worker_id}: result of {task['taskKey']} refused: {err}")
                return
            except (OSError, ValueError) as err:
                if self.stopping and backoff > 8:
                    say(f"worker {self.worker_id}: giving up reporting {task['taskKey']}: {err}")
                    return
                say(f"worker {self.worker_id}: cannot report ({err}); retrying in {backoff:.1f}s")
                time.sleep(backoff * random.uniform(0.5, 1.0))
                backoff = min(backoff * 2, 30.0)


def main(argv=None):
    parser = argparse.ArgumentParser(description="Run Weft external tasks of one queue.")
    parser.add_argument("--url", default="http://127.0.0.1:8080", help="the Weft server")
    parser.add_argument("--key", default=os.environ.get("WEFT_API_KEY"),
                        help="a worker API key (scope worker, naming this queue), made by a user who may poll it "
                             "(default: $WEFT_API_KEY)")
    parser.add_argument("--token", default=os.environ.get("WEFT_TOKEN"),
                        help="instead of a key: an access token of such a user (default: $WEFT_TOKEN); "
                             "it expires in minutes, so keys suit long-running workers")
    parser.add_argument("--cacert", default=os.environ.get("WEFT_CACERT"),
                        help="CA certificate file to verify an https server with (default: the system's CAs)")
    parser.add_argument("--org", default=os.environ.get("WEFT_ORG", ""),
                        help="the organization whose queue it is (default: $WEFT_ORG, else the token's own organization)")
    parser.add_argument("--queue", required=True, help="the queue named in the tasks' config.queue")
    parser.add_argument("--worker-id", default=f"py-{os.getpid()}", help="shown in the server's logs")
    parser.add_argument("--once", action="store_true", help="poll once, run the task if one came, exit")
    parser.add_argument("--max-tasks", type=int, default=0, help="exit after this many tasks (0: no limit)")
    parser.add_argument("--wait", type=float, default=20.0, help="long-poll wait in seconds (0-60)")
    parser.add_argument("--lease-duration", type=float, default=30.0, help="lease in seconds (1-3600)")
    args = parser.parse_args(argv)
    credential = args.key or args.token
    if not credential:
        parser.error("--key (or $WEFT_API_KEY) or --token (or $WEFT_TOKEN) is required")

    worker = Worker(Client(args.url, credential, args.org, args.cacert), args.queue, args.worker_id, args.wait,
                    args.lease_duration)
    signal.signal(signal.SIGTERM, worker.stop)
    signal.signal(signal.SIGINT, worker.stop)
    say(f"worker {args.worker_id}: polling queue {args.queue!r} at {args.url}")
    return worker.run(once=args.once, max_tasks=args.max_tasks)


if __name__ == "__main__":
    sys.exit(main())
