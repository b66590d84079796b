"""A small OTLP/HTTP trace receiver (a fake OpenTelemetry collector) for tests.

    with OTLPReceiver() as rx:                      # 127.0.0.1, a free port
        start_server("--otel-endpoint", rx.endpoint)  # spans go to rx.endpoint + "/v1/traces"
        spans = rx.wait_for(lambda spans: [s for s in spans if s.name == "GET"], timeout=10)

`POST /v1/traces` takes an ExportTraceServiceRequest as protobuf
(`application/x-protobuf`, the OTLP/HTTP default) or as OTLP JSON
(`application/json`; ids in hex as the OTLP spec wants), optionally gzipped,
and answers 200 with an empty ExportTraceServiceResponse.  Spans are kept
flattened (`Span`: hex ids, kind name, typed attribute dict, resource
attributes).  `delay` (seconds before answering) and `status` (e.g. 503)
simulate a slow or failing collector; rejected batches are counted, not kept.

`RecordingServer`, the base class, is also usable alone as a target for http
tasks: it records every request (method, path, lower-case headers, body) and
answers 200 `{"ok": true}`.

Only needs the standard library and `opentelemetry-proto`; nothing here
imports pytest except the optional `otlp_receiver` fixture at the end.
"""

from __future__ import annotations

import base64
import gzip
import http.server
import json
import threading
import time
import urllib.parse
from dataclasses import dataclass, field

from google.protobuf import json_format
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2
from opentelemetry.proto.common.v1 import common_pb2
from opentelemetry.proto.trace.v1 import trace_pb2

KIND_NAMES = {v: k.removeprefix("SPAN_KIND_") for k, v in trace_pb2.Span.SpanKind.items()}
STATUS_NAMES = {v: k.removeprefix("STATUS_CODE_") for k, v in trace_pb2.Status.StatusCode.items()}
_HEX_ID_KEYS = {"traceId", "spanId", "parentSpanId", "trace_id", "span_id", "parent_span_id"}


# ---------------------------------------------------------------------------
# Decoded spans
# ---------------------------------------------------------------------------


def any_value(v):
    """The Python value of an OTLP AnyValue (str, bool, int, float, bytes, list, dict or None)."""
    which = v.WhichOneof("value")
    if which is None:
        return None
    if which == "array_value":
        return [any_value(x) for x in v.array_value.values]
    if which == "kvlist_value":
        return attributes(v.kvlist_value.values)
    return getattr(v, which)


def attributes(kvs) -> dict:
    return {kv.key: any_value(kv.value) for kv in kvs}


@dataclass
class Span:
    trace_id: str  # 32 hex
    span_id: str  # 16 hex
    parent_span_id: str  # 16 hex, or "" for a root span
    name: str
    kind: str  # SERVER, CLIENT, INTERNAL, PRODUCER, CONSUMER, UNSPECIFIED
    attributes: dict
    status: str  # UNSET, OK, ERROR
    status_message: str
    start_ns: int
    end_ns: int
    resource: dict  # resource attributes, e.g. {"service.name": "weft"}
    scope: str  # instrumentation scope name
    trace_state: str = ""
    flags: int = 0
    events: list = field(default_factory=list)  # [(name, attributes)]
    links: list = field(default_factory=list)  # [(trace_id, span_id, attributes)]

    def attr(self, key, default=None):
        return self.attributes.get(key, default)

    def describe(self) -> str:
        parent = self.parent_span_id or "-"
        return (f"{self.name!r} {self.kind} trace={self.trace_id} span={self.span_id} parent={parent} "
                f"status={self.status} attrs={self.attributes}")


def flatten(req: trace_service_pb2.ExportTraceServiceRequest) -> list[Span]:
    out = []
    for rs in req.resource_spans:
        resource = attributes(rs.resource.attributes)
        for ss in rs.scope_spans:
            for s in ss.spans:
                out.append(Span(
                    trace_id=s.trace_id.hex(), span_id=s.span_id.hex(), parent_span_id=s.parent_span_id.hex(),
                    name=s.name, kind=KIND_NAMES.get(s.kind, str(s.kind)), attributes=attributes(s.attributes),
                    status=STATUS_NAMES.get(s.status.code, str(s.status.code)), status_message=s.status.message,
                    start_ns=s.start_time_unix_nano, end_ns=s.end_time_unix_nano, resource=resource,
                    scope=ss.scope.name, trace_state=s.trace_state, flags=s.flags,
                    events=[(e.name, attributes(e.attributes)) for e in s.events],
                    links=[(ln.trace_id.hex(), ln.span_id.hex(), attributes(ln.attributes)) for ln in s.links],
                ))
    return out


def describe(spans) -> str:
    """One line per span, for assertion messages."""
    spans = list(spans)
    if not spans:
        return "  (no spans received)"
    return "\n".join("  " + s.describe() for s in spans)


def _hex_ids_to_base64(obj):
    """OTLP JSON carries ids as hex; proto3 JSON (json_format) wants base64."""
    if isinstance(obj, dict):
        return {k: (base64.b64encode(bytes.fromhex(v)).decode() if k in _HEX_ID_KEYS and isinstance(v, str)
                    else _hex_ids_to_base64(v)) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_hex_ids_to_base64(v) for v in obj]
    return obj


def decode_request(body: bytes, content_type: str) -> trace_service_pb2.ExportTraceServiceRequest:
    req = trace_service_pb2.ExportTraceServiceRequest()
    if content_type.split(";")[0].strip().lower() == "application/json":
        json_format.ParseDict(_hex_ids_to_base64(json.loads(body)), req, ignore_unknown_fields=True)
    else:
        req.ParseFromString(body)
    return req


def encode_request(spans: list[dict], resource: dict | None = None) -> bytes:
    """A serialized ExportTraceServiceRequest built by hand (for tests of receivers).

    Each span is a dict: trace_id / span_id / parent_span_id (hex), name, kind
    (a name such as "SERVER"), attributes (str/bool/int/float values), start_ns, end_ns."""
    def kvs(d):
        out = []
        for k, v in (d or {}).items():
            kv = common_pb2.KeyValue(key=k)
            if isinstance(v, bool):
                kv.value.bool_value = v
            elif isinstance(v, int):
                kv.value.int_value = v
            elif isinstance(v, float):
                kv.value.double_value = v
            else:
                kv.value.string_value = str(v)
            out.append(kv)
        return out

    req = trace_service_pb2.ExportTraceServiceRequest()
    rs = req.resource_spans.add()
    rs.resource.attributes.extend(kvs(resource))
    ss = rs.scope_spans.add()
    ss.scope.name = "hand-built"
    for d in spans:
        s = ss.spans.add()
        s.trace_id = bytes.fromhex(d["trace_id"])
        s.span_id = bytes.fromhex(d["span_id"])
        s.parent_span_id = bytes.fromhex(d.get("parent_span_id", ""))
        s.name = d["name"]
        s.kind = trace_pb2.Span.SpanKind.Value("SPAN_KIND_" + d.get("kind", "INTERNAL"))
        s.start_time_unix_nano = d.get("start_ns", 1)
        s.end_time_unix_nano = d.get("end_ns", 2)
        s.attributes.extend(kvs(d.get("attributes")))
    return req.SerializeToString()


# ---------------------------------------------------------------------------
# Servers
# ---------------------------------------------------------------------------


class RecordingServer:
    """A threaded HTTP/1.1 server on 127.0.0.1 that records every request.

    `handle(method, path, headers, body)` returns (status, content_type, body);
    the default answers 200 {"ok": true}.  `requests` holds dicts with method,
    path, query, headers (lower-case names) and body."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0):
        self.lock = threading.Condition()
        self.requests: list[dict] = []
        self.closed = threading.Event()
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as real collectors

            def log_message(self, *args):
                pass

            def _any(self):
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length) if length else b""
                url = urllib.parse.urlsplit(self.path)
                headers = {k.lower(): v for k, v in self.headers.items()}
                with owner.lock:
                    owner.requests.append({"method": self.command, "path": url.path, "query": url.query,
                                           "headers": headers, "body": body})
                    owner.lock.notify_all()
                status, ctype, payload = owner.handle(self.command, url.path, headers, body)
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", ctype)
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    if self.command != "HEAD":
                        self.wfile.write(payload)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = _any

        self.httpd = http.server.ThreadingHTTPServer((host, port), Handler)
        self.httpd.daemon_threads = True
        self.host, self.port = self.httpd.server_address[:2]
        self.thread = threading.Thread(target=self.httpd.serve_forever, name=type(self).__name__, daemon=True)
        self.thread.start()

    def handle(self, method: str, path: str, headers: dict, body: bytes):
        return 200, "application/json", b'{"ok": true}'

    @property
    def endpoint(self) -> str:
        return f"http://{self.host}:{self.port}"

    def url(self, path: str) -> str:
        return self.endpoint + path

    def requests_to(self, path: str) -> list[dict]:
        with self.lock:
            return [r for r in self.requests if r["path"] == path]

    def close(self):
        if self.closed.is_set():
            return
        self.closed.set()  # wakes handlers sleeping in a delay
        self.httpd.shutdown()
        self.httpd.server_close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class OTLPReceiver(RecordingServer):
    """A fake OTLP/HTTP collector; see the module docstring.

    `delay` and `status` may be changed while it runs.  `batches` counts the
    accepted export requests, `rejected` the ones answered with `status`."""

    def __init__(self, delay: float = 0.0, status: int = 200, host: str = "127.0.0.1", port: int = 0):
        self.delay = delay
        self.status = status
        self._spans: list[Span] = []
        self.batches = 0
        self.rejected = 0
        self.errors: list[str] = []  # bodies that did not decode
        super().__init__(host, port)

    def handle(self, method, path, headers, body):
        if path != "/v1/traces":
            return 404, "text/plain", b"only /v1/traces here\n"
        if method != "POST":
            return 405, "text/plain", b"POST only\n"
        ctype = headers.get("content-type", "")
        is_json = ctype.split(";")[0].strip().lower() == "application/json"
        if self.delay:
            self.closed.wait(self.delay)
        try:
            if headers.get("content-encoding", "").lower() == "gzip":
                body = gzip.decompress(body)
            spans = flatten(decode_request(body, ctype))
        except Exception as exc:  # noqa: BLE001 - a bad body is the sender's bug: 400 and recorded
            with self.lock:
                self.errors.append(f"{ctype}: {exc!r}: {body[:200]!r}")
            return 400, "text/plain", f"cannot decode ExportTraceServiceRequest: {exc}\n".encode()
        with self.lock:
            if self.status != 200:
                self.rejected += 1
                self.lock.notify_all()
                return self.status, "text/plain", b"collector unavailable\n"
            self.batches += 1
            self._spans.extend(spans)
            self.lock.notify_all()
        if is_json:
            return 200, "application/json", b"{}"
        return 200, "application/x-protobuf", trace_service_pb2.ExportTraceServiceResponse().SerializeToString()

    def spans(self) -> list[Span]:
        with self.lock:
            return list(self._spans)

    def trace(self, trace_id: str) -> list[Span]:
        return [s for s in self.spans() if s.trace_id == trace_id]

    def clear(self):
        with self.lock:
            self._spans.clear()

    def wait_for(self, predicate, timeout: float = 10.0, message: str = ""):
        """Wait until predicate(spans) is truthy and return its value; on timeout
        raise AssertionError listing every span received."""
        __tracebackhide__ = True  # pytest: the failure is the caller's line
        deadline = time.monotonic() + timeout
        with self.lock:
            while True:
                value = predicate(list(self._spans))
                if value:
                    return value
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self.lock.wait(min(remaining, 0.25))
            received = describe(self._spans)
            errors = "".join(f"\n  undecodable export: {e}" for e in self.errors)
        raise AssertionError(
            f"timed out after {timeout}s waiting for spans{': ' + message if message else ''}\n"
            f"receiver {self.endpoint}: {self.batches} batches accepted, {self.rejected} rejected; "
            f"spans received:\n{received}{errors}")


try:  # the fixture is optional: the receiver itself does not need pytest
    import pytest
except ImportError:  # pragma: no cover
    pytest = None

if pytest is not None:
    @pytest.fixture
    def otlp_receiver():
        """An OTLPReceiver for one test (import this name into a test module)."""
        with OTLPReceiver() as rx:
            yield rx
