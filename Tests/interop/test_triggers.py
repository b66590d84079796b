"""Webhook and event triggers (Step 8) on a real `weft serve`: the
TriggerService and EventService over REST (HTTP/1.1 JSON) and gRPC.

* Webhook triggers: create (id `hk_` + 32 hex digits, url /hooks/<id>, the
  secret never echoed by create, get or list), list, get, delete; roles
  (editor creates, viewer 403, stranger 404, no token 401); secret length
  bounds.
* POST /hooks/<id> with no credentials: 202 with the execution, whose input
  is the body, trigger "webhook", triggerId the trigger; a body that is not
  a JSON object 400; unknown or deleted triggers 404.
* Signatures: `sha256=hex(HMAC-SHA256(secret, "<ts>.<body>"))` with the
  timestamp header: valid 202; wrong, missing or malformed 401; a timestamp
  outside the tolerance (default 300 s, or the trigger's own) 401; the exact
  same valid request again 409 naming the earlier execution.  GitHub style
  (timestampHeader "-"): HMAC over the body alone, no replay check.
* The idempotency header: the same value answers the same execution with
  duplicate true.
* Events: workflows of an organization subscribed to an event name (with or
  without a filter over the payload) start on POST /events / gRPC
  PublishEvent; other organizations' subscribers do not; an eventId
  deduplicates; filters and names are validated; no subscribers is 200 with
  no executions.
* Metrics: weft_webhook_requests_total{outcome}, weft_events_published_total
  {outcome}, weft_trigger_executions_total{trigger} as exact deltas (the
  module's tests run one after another on the module's server).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import secrets
import time
import types
import uuid

import grpc
import pytest

import weft_helpers as wh

TIMEOUT = 10
TERMINAL = {"Completed", "Failed", "Cancelled", "TimedOut"}
ERROR_KEYS = {"code", "message", "details"}
INVALID_ARGUMENT, ALREADY_EXISTS, NOT_FOUND, PERMISSION_DENIED, UNAUTHENTICATED = 3, 6, 5, 7, 16
HOOK_ID_RE = re.compile(r"hk_[0-9a-f]{32}")
NOOP = [{"key": "a", "name": "A", "action": "noop"}]


# ---------------------------------------------------------------------------
# Users and helpers
# ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def alice(api_server):
    return wh.register_and_login(api_server, "Alice Hooks")


@pytest.fixture(scope="module")
def bob(api_server):
    """A viewer of alice's shared workflow."""
    return wh.register_and_login(api_server, "Bob Viewer")


@pytest.fixture(scope="module")
def dave(api_server):
    """An editor of alice's shared workflow."""
    return wh.register_and_login(api_server, "Dave Editor")


@pytest.fixture(scope="module")
def carol(api_server):
    """No role near alice; her own organization."""
    return wh.register_and_login(api_server, "Carol Stranger")


@pytest.fixture(scope="module")
def shared_wf(api_server, alice, bob, dave):
    wf = create_wf(alice, "shared hooks target")
    for user, role in ((bob, "viewer"), (dave, "editor")):
        wh.invite_and_accept(api_server, alice.token, user.token, wf["orgId"])
        r = alice.rest.post(f"/workflows/{wf['id']}/collaborators", {"userId": user.id, "role": role})
        assert r.status == 201, r
    return wf


def uid() -> str:
    return uuid.uuid4().hex[:8]


def assert_error(r: wh.RestResponse, status: int, code: int, *fragments: str) -> dict:
    assert r.status == status, r
    assert (r.header("content-type") or "").startswith("application/json"), r.headers
    body = r.json
    assert isinstance(body, dict) and set(body) <= ERROR_KEYS, body
    assert body.get("code") == code, body
    assert isinstance(body.get("message"), str) and body["message"], body
    for fragment in fragments:
        assert fragment in body["message"], (fragment, body)
    return body


def create_wf(user: wh.ApiUser, name: str | None = None, tasks=NOOP) -> dict:
    r = user.rest.post("/workflows", {"name": name or f"hooks {uid()}", "tasks": tasks})
    assert r.status == 201, r
    return r.json


def tpath(wid: str, tid: str = "") -> str:
    return f"/workflows/{wid}/triggers" + (f"/{tid}" if tid else "")


def create_trigger(user: wh.ApiUser, wid: str, **body) -> dict:
    r = user.rest.post(tpath(wid), body)
    assert r.status == 201, r
    return r.json


def executions(user, wid) -> list:
    return wh.all_pages(user.rest, f"/workflows/{wid}/executions", "executions", pageSize=1000)


def get_exec(user, wid, eid) -> dict:
    r = user.rest.get(f"/workflows/{wid}/executions/{eid}")
    assert r.status == 200, r
    return r.json


def wait_done(user, wid, eid) -> dict:
    last = {}

    def check():
        last["e"] = get_exec(user, wid, eid)
        return last["e"] if last["e"]["status"] in TERMINAL else None

    return wh.wait_until(check, TIMEOUT, interval=0.03, message=lambda: f"{eid} to end: {last.get('e')}")


def hook(server, tid: str, body, headers=None, raw: bytes | None = None) -> wh.RestResponse:
    """POST /hooks/<tid> with no credentials at all."""
    data = raw if raw is not None else json.dumps(body).encode()
    return wh.RestClient(server).request("POST", f"/hooks/{tid}", raw=data, headers=headers or {})


def sign(secret: str, payload: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), payload, hashlib.sha256).hexdigest()


def signed_headers(secret: str, body: bytes, ts: int | None = None, **extra) -> dict:
    ts = int(time.time()) if ts is None else ts
    return {"X-Weft-Timestamp": str(ts), "X-Weft-Signature": sign(secret, f"{ts}.".encode() + body), **extra}


def accepted(r: wh.RestResponse) -> dict:
    assert r.status == 202, r
    body = r.json
    assert body["executionId"].startswith("exe_"), body
    return body


def count(obj: dict, key: str) -> int:
    return int(obj.get(key, "0"))


def metric(server, name: str, **labels) -> float:
    return wh.fetch_metrics(server).total(name, **labels)


def ns_between(ts: str, lo: float, hi: float) -> bool:
    return lo - 1 <= wh.rfc3339_nanos(ts) / 1e9 <= hi


def new_secret(n: int = 32) -> str:
    return secrets.token_hex(n)[:n]


# ---------------------------------------------------------------------------
# Webhook triggers
# ---------------------------------------------------------------------------


def test_create_list_get_and_an_unsigned_delivery(api_server, alice, bob):
    wf = create_wf(alice)
    wid = wf["id"]
    before = time.time()
    t = create_trigger(alice, wid, type="webhook", description="ci pushes")
    tid = t["id"]
    assert HOOK_ID_RE.fullmatch(tid), t
    assert t["url"] == f"/hooks/{tid}" and t["type"] == "webhook" and t["workflowId"] == wid, t
    assert t["description"] == "ci pushes" and t["createdBy"] == alice.id, t
    assert not t.get("signed", False), t
    assert before - 2 <= wh.rfc3339_nanos(t["createdAt"]) / 1e9 <= time.time() + 2, t
    assert count(t, "firedCount") == 0 and not t.get("lastFiredAt"), t
    other = create_trigger(alice, wid, type="webhook")
    assert HOOK_ID_RE.fullmatch(other["id"]) and other["id"] != tid, (t, other)

    r = alice.rest.get(tpath(wid, tid))
    assert r.status == 200 and r.json["id"] == tid and r.json["url"] == t["url"], r
    r = alice.rest.get(tpath(wid))
    assert r.status == 200 and {x["id"] for x in r.json["triggers"]} == {tid, other["id"]}, r

    body = {"order": 7, "items": ["a", "b"], "nested": {"x": 1.5, "ok": True}, "note": None}
    first_at = time.time()
    first = accepted(hook(api_server, tid, body))
    # Its tasks are instant: they ran in the commit that started it (Step 13).
    assert first["status"] == "Completed" and not first.get("duplicate", False), first
    done = wait_done(alice, wid, first["executionId"])
    assert done["status"] == "Completed", done
    assert done["input"] == body, done
    assert done["trigger"] == "webhook" and done["triggerId"] == tid, done
    # No idempotency header configured: every delivery is a new execution.
    second = accepted(hook(api_server, tid, {"order": 8}))
    assert second["executionId"] != first["executionId"]
    wait_done(alice, wid, second["executionId"])
    assert {e["executionId"] for e in executions(alice, wid)} == {first["executionId"], second["executionId"]}
    # firedCount is written in batches (at most a second behind), then exact.
    t = wh.wait_until(lambda: (lambda x: x if count(x, "firedCount") >= 2 else None)(alice.rest.get(tpath(wid, tid)).json),
                      5, interval=0.1, message="firedCount to reach 2")
    assert count(t, "firedCount") == 2 and t.get("lastFiredAt"), t
    assert ns_between(t["lastFiredAt"], first_at, time.time() + 1), (t, first_at)
    # A delivery with someone's token is no different (and needs none).
    accepted(wh.RestClient(api_server, bob.token).request("POST", f"/hooks/{tid}", raw=b"{}"))


@pytest.mark.parametrize("raw", [b"[1, 2]", b'"text"', b"42", b"null", b"true", b"not json", b"{\"a\": 1",
                                 b"\xff\xfe"], ids=["array", "string", "number", "null", "bool", "garbage",
                                                    "truncated", "binary"])
def test_a_body_that_is_not_a_json_object_is_400(api_server, alice, raw):
    wf = create_wf(alice)
    tid = create_trigger(alice, wf["id"], type="webhook")["id"]
    assert_error(hook(api_server, tid, None, raw=raw), 400, INVALID_ARGUMENT)
    assert executions(alice, wf["id"]) == []


def test_unknown_and_deleted_hooks_are_404(api_server, alice):
    wf = create_wf(alice)
    wid = wf["id"]
    for tid in ("hk_" + "0" * 32, "hk_" + secrets.token_hex(16), "nope", "hk_short"):
        assert_error(hook(api_server, tid, {"a": 1}), 404, NOT_FOUND)
    tid = create_trigger(alice, wid, type="webhook")["id"]
    accepted(hook(api_server, tid, {"a": 1}))
    r = alice.rest.delete(tpath(wid, tid))
    assert (r.status, r.body) == (204, b""), r  # docs/SCHEDULES.md: 204, like the other deletes
    assert_error(hook(api_server, tid, {"a": 2}), 404, NOT_FOUND)
    assert_error(alice.rest.get(tpath(wid, tid)), 404, NOT_FOUND)
    assert_error(alice.rest.delete(tpath(wid, tid)), 404, NOT_FOUND)
    assert len(executions(alice, wid)) == 1
    # A deleted workflow's trigger stops too.
    wf2 = create_wf(alice)
    tid2 = create_trigger(alice, wf2["id"], type="webhook")["id"]
    assert alice.rest.delete(f"/workflows/{wf2['id']}").status == 204
    assert_error(hook(api_server, tid2, {"a": 3}), 404, NOT_FOUND)


def test_signed_trigger(api_server, alice):
    wf = create_wf(alice)
    wid = wf["id"]
    secret = new_secret(40)
    r = alice.rest.post(tpath(wid), {"type": "webhook", "signatureSecret": secret})
    assert r.status == 201, r
    t = r.json
    tid = t["id"]
    assert secret.encode() not in r.body and "signatureSecret" not in t, t
    assert t["signed"] is True, t
    # Header names are matched case-insensitively and shown lower-case (docs/SCHEDULES.md).
    assert t["signatureHeader"] == "x-weft-signature" and t["timestampHeader"] == "x-weft-timestamp", t
    assert t["timestampTolerance"] == "300s", t
    for path in (tpath(wid, tid), tpath(wid)):
        r = alice.rest.get(path)
        assert r.status == 200 and secret.encode() not in r.body, r

    body = json.dumps({"deploy": "v1.2.3"}).encode()
    good = signed_headers(secret, body)
    first = accepted(hook(api_server, tid, None, good, raw=body))
    done = wait_done(alice, wid, first["executionId"])
    assert done["input"] == {"deploy": "v1.2.3"} and done["trigger"] == "webhook" and done["triggerId"] == tid, done

    now = int(time.time())
    other = json.dumps({"deploy": "v6.6.6"}).encode()
    refusals = {
        "wrong secret": signed_headers(new_secret(40), other),
        "signature of another body": {"X-Weft-Timestamp": str(now),
                                      "X-Weft-Signature": sign(secret, f"{now}.".encode() + body)},
        "missing signature": {"X-Weft-Timestamp": str(now)},
        "missing timestamp": {"X-Weft-Signature": sign(secret, f"{now}.".encode() + other)},
        "nothing": {},
        "not hex": {"X-Weft-Timestamp": str(now), "X-Weft-Signature": "sha256=zz"},
        "other algorithm": {"X-Weft-Timestamp": str(now),
                            "X-Weft-Signature": "sha1=" + hmac.new(secret.encode(), f"{now}.".encode() + other,
                                                                   hashlib.sha1).hexdigest()},
        "body alone signed": {"X-Weft-Timestamp": str(now), "X-Weft-Signature": sign(secret, other)},
        "stale": signed_headers(secret, other, ts=now - 1000),
        "future": signed_headers(secret, other, ts=now + 1000),
    }
    for why, headers in refusals.items():
        r = hook(api_server, tid, None, headers, raw=other)
        assert r.status == 401, (why, r)
        assert_error(r, 401, UNAUTHENTICATED)
    # The exact same valid request again: a replay.
    err = assert_error(hook(api_server, tid, None, good, raw=body), 409, ALREADY_EXISTS)
    assert first["executionId"] in err["message"], err
    assert [e["executionId"] for e in executions(alice, wid)] == [first["executionId"]], "only the valid one ran"
    # A new valid signature (new body) is fine.
    fresh = json.dumps({"deploy": "v1.2.4"}).encode()
    accepted(hook(api_server, tid, None, signed_headers(secret, fresh), raw=fresh))


def test_deliver_webhook_over_grpc(api_server, protos, alice):
    pb = protos.v1.triggers_pb2
    wf = create_wf(alice)
    wid = wf["id"]
    plain = create_trigger(alice, wid, type="webhook")["id"]
    secret = new_secret(32)
    signed = create_trigger(alice, wid, type="webhook", signatureSecret=secret)["id"]
    ch = wh.new_channel(api_server.target)
    try:
        stub = protos.v1.triggers_pb2_grpc.TriggerServiceStub(ch)

        def deliver(tid, body: bytes, metadata=()):
            return stub.DeliverWebhook(pb.WebhookDelivery(trigger_id=tid, body=body), metadata=metadata,
                                       timeout=TIMEOUT)

        def refused(code, tid, body: bytes, metadata=()):
            with pytest.raises(grpc.RpcError) as info:
                deliver(tid, body, metadata)
            assert info.value.code() == code, (info.value.code(), info.value.details())
            return info.value.details()

        # No credentials, like POST /hooks/<id>.
        out = deliver(plain, b'{"via": "grpc", "n": 1}')
        assert out.execution_id.startswith("exe_") and not out.duplicate, out
        done = wait_done(alice, wid, out.execution_id)
        assert done["input"] == {"via": "grpc", "n": 1} and done["trigger"] == "webhook", done
        assert done["triggerId"] == plain, done
        C = grpc.StatusCode
        refused(C.INVALID_ARGUMENT, plain, b"[1]")
        refused(C.NOT_FOUND, "hk_" + "0" * 32, b"{}")
        # Signed: the signature headers travel as metadata.
        body = b'{"signed": true}'
        h = signed_headers(secret, body)
        md = tuple((k.lower(), v) for k, v in h.items())
        refused(C.UNAUTHENTICATED, signed, body)
        refused(C.UNAUTHENTICATED, signed, b'{"signed": false}', md)
        first = deliver(signed, body, md)
        assert first.execution_id.startswith("exe_"), first
        assert first.execution_id in refused(C.ALREADY_EXISTS, signed, body, md)
        assert len(executions(alice, wid)) == 2
    finally:
        ch.close()


def test_timestamp_tolerance_of_the_trigger(api_server, alice):
    wf = create_wf(alice)
    secret = new_secret(16)  # the shortest allowed
    t = create_trigger(alice, wf["id"], type="webhook", signatureSecret=secret, timestampTolerance="10s")
    assert t["timestampTolerance"] == "10s", t
    now = int(time.time())
    body = b'{"n": 1}'
    assert_error(hook(api_server, t["id"], None, signed_headers(secret, body, ts=now - 30), raw=body), 401,
                 UNAUTHENTICATED)
    assert_error(hook(api_server, t["id"], None, signed_headers(secret, body, ts=now + 30), raw=body), 401,
                 UNAUTHENTICATED)
    accepted(hook(api_server, t["id"], None, signed_headers(secret, body, ts=now - 5), raw=body))
    body2 = b'{"n": 2}'
    accepted(hook(api_server, t["id"], None, signed_headers(secret, body2, ts=now + 5), raw=body2))
    assert len(executions(alice, wf["id"])) == 2


def test_github_style_signature_over_the_body_alone(api_server, alice):
    wf = create_wf(alice)
    wid = wf["id"]
    secret = new_secret(32)
    t = create_trigger(alice, wid, type="webhook", signatureSecret=secret, signatureHeader="X-Hub-Signature-256",
                       timestampHeader="-")
    assert t["signed"] is True and t["signatureHeader"] == "x-hub-signature-256", t
    body = json.dumps({"ref": "refs/heads/main", "after": "abc123"}).encode()
    headers = {"X-Hub-Signature-256": sign(secret, body), "X-GitHub-Event": "push"}
    one = accepted(hook(api_server, t["id"], None, headers, raw=body))
    done = wait_done(alice, wid, one["executionId"])
    assert done["input"] == json.loads(body), done
    # No timestamp, so no replay window: the same delivery again is another execution.
    two = accepted(hook(api_server, t["id"], None, headers, raw=body))
    assert two["executionId"] != one["executionId"] and not two.get("duplicate", False), (one, two)
    ts = int(time.time())
    for headers in ({"X-Hub-Signature-256": sign(secret, f"{ts}.".encode() + body), "X-Weft-Timestamp": str(ts)},
                    {"X-Weft-Signature": sign(secret, body)},
                    {"X-Hub-Signature-256": sign(secret, body + b" ")},
                    {}):
        assert_error(hook(api_server, t["id"], None, headers, raw=body), 401, UNAUTHENTICATED)
    assert len(executions(alice, wid)) == 2


def test_idempotency_header(api_server, alice):
    wf = create_wf(alice)
    wid = wf["id"]
    t = create_trigger(alice, wid, type="webhook", idempotencyHeader="Idempotency-Key")
    assert t["idempotencyHeader"] == "idempotency-key", t
    key = f"delivery-{uid()}"
    one = accepted(hook(api_server, t["id"], {"n": 1}, {"Idempotency-Key": key}))
    assert not one.get("duplicate", False), one
    again = accepted(hook(api_server, t["id"], {"n": 1}, {"Idempotency-Key": key}))
    assert again["executionId"] == one["executionId"] and again.get("duplicate") is True, again
    # The key decides, not the body.
    third = accepted(hook(api_server, t["id"], {"n": 999}, {"idempotency-key": key}))
    assert third["executionId"] == one["executionId"] and third.get("duplicate") is True, third
    other = accepted(hook(api_server, t["id"], {"n": 2}, {"Idempotency-Key": key + "-b"}))
    assert other["executionId"] != one["executionId"] and not other.get("duplicate", False), other
    assert wait_done(alice, wid, one["executionId"])["input"] == {"n": 1}
    assert len(executions(alice, wid)) == 2
    # The same key on another trigger is another delivery.
    t2 = create_trigger(alice, wid, type="webhook", idempotencyHeader="Idempotency-Key")
    elsewhere = accepted(hook(api_server, t2["id"], {"n": 1}, {"Idempotency-Key": key}))
    assert elsewhere["executionId"] != one["executionId"], elsewhere
    assert len(executions(alice, wid)) == 3


@pytest.mark.parametrize("size, ok", [(15, False), (16, True), (256, True), (257, False)])
def test_secret_length_bounds(alice, size, ok):
    wf = create_wf(alice)
    r = alice.rest.post(tpath(wf["id"]), {"type": "webhook", "signatureSecret": "s" * size})
    if ok:
        assert r.status == 201 and r.json["signed"] is True, r
        assert b"s" * size not in r.body, r
    else:
        assert_error(r, 400, INVALID_ARGUMENT)
        r = alice.rest.get(tpath(wf["id"]))
        assert r.status == 200 and not r.json.get("triggers"), r


@pytest.mark.parametrize("body", [{"type": "cron"}, {"type": ""}, {"type": "webhook", "timestampTolerance": "-5s"}],
                         ids=["unknown-type", "no-type", "negative-tolerance"])
def test_bad_trigger_settings_are_400(alice, body):
    wf = create_wf(alice)
    assert_error(alice.rest.post(tpath(wf["id"]), body), 400, INVALID_ARGUMENT)
    r = alice.rest.get(tpath(wf["id"]))
    assert r.status == 200 and not r.json.get("triggers"), r


def test_trigger_roles(api_server, alice, bob, dave, carol, anon, shared_wf):
    wid = shared_wf["id"]
    t = create_trigger(alice, wid, type="webhook")
    tid = t["id"]
    assert_error(bob.rest.post(tpath(wid), {"type": "webhook"}), 403, PERMISSION_DENIED)
    assert_error(bob.rest.post(tpath(wid), {"type": "event", "eventName": "x.y"}), 403, PERMISSION_DENIED)
    assert_error(bob.rest.delete(tpath(wid, tid)), 403, PERMISSION_DENIED)
    for method, path, body in (("POST", tpath(wid), {"type": "webhook"}), ("GET", tpath(wid), None),
                               ("GET", tpath(wid, tid), None), ("DELETE", tpath(wid, tid), None)):
        assert_error(carol.rest.request(method, path, body), 404, NOT_FOUND)
        assert_error(anon.request(method, path, body), 401, UNAUTHENTICATED)
    r = alice.rest.get(tpath(wid))
    assert r.status == 200 and [x["id"] for x in r.json["triggers"]] == [tid], "nothing created or deleted"
    # Viewers read them.
    r = bob.rest.get(tpath(wid))
    assert r.status == 200 and [x["id"] for x in r.json["triggers"]] == [tid], r
    r = bob.rest.get(tpath(wid, tid))
    assert r.status == 200 and r.json["url"] == f"/hooks/{tid}", r
    d = create_trigger(dave, wid, type="webhook")
    assert d["createdBy"] == dave.id, d
    r = dave.rest.delete(tpath(wid, d["id"]))
    assert r.status == 204, r
    accepted(hook(api_server, tid, {"still": "works"}))


def test_webhooks_are_refused_by_the_quota(server_factory):
    srv = server_factory(*wh.API_SERVER_ARGS, "--plan", "one:concurrent_executions=1", "--default-plan", "one")
    user = wh.register_and_login(srv, "Quinn Quota")
    wf = create_wf(user, tasks=[{"key": "wait", "name": "Wait", "action": "delay", "config": {"duration": "30s"}}])
    wid = wf["id"]
    tid = create_trigger(user, wid, type="webhook")["id"]
    refused0 = metric(srv, "weft_webhook_requests_total", outcome="refused")
    first = accepted(hook(srv, tid, {"n": 1}))
    try:
        r = hook(srv, tid, {"n": 2})
        assert_error(r, 429, 8, "concurrent_executions")
        assert re.fullmatch(r"[1-9][0-9]*", r.header("retry-after") or ""), r.headers
        assert metric(srv, "weft_webhook_requests_total", outcome="refused") == refused0 + 1
        assert [e["executionId"] for e in executions(user, wid)] == [first["executionId"]]
    finally:
        r = user.rest.post(f"/workflows/{wid}/executions/{first['executionId']}/cancel", {"reason": "cleanup"})
        assert r.status == 200, r
    # The place is free again.
    second = wh.wait_until(lambda: (lambda r: r.json if r.status == 202 else None)(hook(srv, tid, {"n": 3})), 5)
    r = user.rest.post(f"/workflows/{wid}/executions/{second['executionId']}/cancel", {"reason": "cleanup"})
    assert r.status == 200, r


def _rate_limited_burst(server_factory):
    srv = server_factory(*wh.API_SERVER_ARGS, "--rate-limit", "execute=1/s:2")
    user = wh.register_and_login(srv, "Rita Rate")
    wf = create_wf(user)
    tid = create_trigger(user, wf["id"], type="webhook")["id"]
    m0 = wh.fetch_metrics(srv)
    answers = [hook(srv, tid, {"n": i}) for i in range(4)]
    return srv, user, wf, m0, answers


def test_webhooks_are_rate_limited_per_address(server_factory):
    srv, user, wf, m0, answers = _rate_limited_burst(server_factory)
    statuses = [r.status for r in answers]
    assert statuses[:2] == [202, 202] and 429 in statuses[2:], answers
    for r in answers:
        if r.status == 429:
            assert_error(r, 429, 8)
            assert re.fullmatch(r"[1-9][0-9]*", r.header("retry-after") or ""), r.headers
    m1 = wh.fetch_metrics(srv)
    limited = m1.total("weft_rate_limited_total", **{"class": "execute"}) - \
        m0.total("weft_rate_limited_total", **{"class": "execute"})
    assert limited == statuses.count(429), limited
    assert len(executions(user, wf["id"])) == statuses.count(202)


def test_rate_limited_webhooks_count_as_refused(server_factory):
    srv, user, wf, m0, answers = _rate_limited_burst(server_factory)
    refused = sum(r.status == 429 for r in answers)
    assert refused >= 1, answers
    m1 = wh.fetch_metrics(srv)
    delta = m1.total("weft_webhook_requests_total", outcome="refused") - \
        m0.total("weft_webhook_requests_total", outcome="refused")
    assert delta == refused, (delta, refused)


# ---------------------------------------------------------------------------
# Events
# ---------------------------------------------------------------------------


def publish(user, **body) -> dict:
    r = user.rest.post("/events", body)
    assert r.status == 200, r
    out = r.json
    assert out.get("eventId"), out
    assert isinstance(out.get("executionIds", []), list), out
    return out


@pytest.fixture
def shop(api_server):
    """A fresh organization with three workflows: `big` (order.created with
    a filter amount > 100), `all` (order.created, no filter), `ship`
    (order.shipped); and another organization subscribed to order.created."""
    erin = wh.register_and_login(api_server, "Erin Events")
    mallory = wh.register_and_login(api_server, "Mallory Elsewhere")
    wfs = {k: create_wf(erin, f"events {k} {uid()}") for k in ("big", "all", "ship")}
    trig = {
        "big": create_trigger(erin, wfs["big"]["id"], type="event", eventName="order.created",
                              filter="event.amount > 100"),
        "all": create_trigger(erin, wfs["all"]["id"], type="event", eventName="order.created"),
        "ship": create_trigger(erin, wfs["ship"]["id"], type="event", eventName="order.shipped"),
    }
    foreign = create_wf(mallory, f"events foreign {uid()}")
    create_trigger(mallory, foreign["id"], type="event", eventName="order.created")
    return types.SimpleNamespace(erin=erin, mallory=mallory, wfs=wfs, trig=trig, foreign=foreign)


def ids_of(user, wf) -> set:
    return {e["executionId"] for e in executions(user, wf["id"])}


def test_events_start_every_matching_subscriber(api_server, shop):
    erin, wfs = shop.erin, shop.wfs
    t = shop.trig["big"]
    assert t["type"] == "event" and t["eventName"] == "order.created" and t["filter"] == "event.amount > 100", t
    assert not t.get("url"), t

    payload = {"amount": 500, "order": "o-1", "lines": [{"sku": "a", "qty": 2}]}
    out = publish(erin, name="order.created", payload=payload)
    assert not out.get("duplicate", False), out
    started = set(out["executionIds"])
    assert len(started) == 2, out
    big, allwf = ids_of(erin, wfs["big"]), ids_of(erin, wfs["all"])
    assert len(big) == 1 and len(allwf) == 1 and big | allwf == started, (out, big, allwf)
    assert ids_of(erin, wfs["ship"]) == set(), "another event name"
    assert ids_of(shop.mallory, shop.foreign) == set(), "another organization's subscriber"
    for wf in (wfs["big"], wfs["all"]):
        (eid,) = ids_of(erin, wf)
        done = wait_done(erin, wf["id"], eid)
        assert done["status"] == "Completed" and done["input"] == payload, done
        assert done["trigger"] == "event" and done["triggerId"] == f"order.created/{out['eventId']}", done

    # The filter leaves out a small order.
    small = publish(erin, name="order.created", payload={"amount": 50})
    assert len(small["executionIds"]) == 1 and small["eventId"] != out["eventId"], small
    assert ids_of(erin, wfs["all"]) == allwf | set(small["executionIds"])
    assert ids_of(erin, wfs["big"]) == big

    # No subscribers: fine, nothing starts.
    none = publish(erin, name="nobody.listens", payload={"amount": 500})
    assert none.get("executionIds", []) == [], none
    assert publish(erin, name="order.shipped", payload={})["executionIds"] == list(ids_of(erin, wfs["ship"]))


def test_an_event_id_starts_its_workflows_once(api_server, shop):
    erin, wfs = shop.erin, shop.wfs
    event_id = f"evt-{uid()}"
    first = publish(erin, name="order.created", payload={"amount": 700}, eventId=event_id)
    assert first["eventId"] == event_id and len(first["executionIds"]) == 2 and not first.get("duplicate"), first
    again = publish(erin, name="order.created", payload={"amount": 700}, eventId=event_id)
    assert again.get("duplicate") is True and sorted(again["executionIds"]) == sorted(first["executionIds"]), again
    # Even with another payload, the id decides.
    third = publish(erin, name="order.created", payload={"amount": 1}, eventId=event_id)
    assert third.get("duplicate") is True and sorted(third["executionIds"]) == sorted(first["executionIds"]), third
    assert len(ids_of(erin, wfs["big"])) == 1 and len(ids_of(erin, wfs["all"])) == 1


FILTERS = {  # the examples of docs/SCHEDULES.md
    "de": 'event.country == "DE" && !event.test',
    "gold": 'event.customer.tier == "gold" || event.amount >= 1000',
    "sku": 'event.items[0].sku == "SKU-1"',
    "big": "event.amount > 100",
}
PAYLOADS = [  # payload, the filters it passes (a missing path is null: false)
    ({"country": "DE", "amount": 5}, {"de"}),
    ({"country": "DE", "test": True, "customer": {"tier": "gold"}}, {"gold"}),
    ({"amount": 1000, "items": [{"sku": "SKU-1"}, {"sku": "SKU-2"}]}, {"gold", "sku", "big"}),
    ({"country": "FR", "amount": 101, "items": [{"sku": "SKU-2"}]}, {"big"}),
    ({}, set()),
]


def test_event_filters(api_server):
    user = wh.register_and_login(api_server, "Fiona Filters")
    wfs = {}
    for key, expression in FILTERS.items():
        wfs[key] = create_wf(user, f"filter {key} {uid()}")
        t = create_trigger(user, wfs[key]["id"], type="event", eventName="order.placed", filter=expression)
        assert t["filter"] == expression, t
    owner_of = {}
    for payload, passes in PAYLOADS:
        out = publish(user, name="order.placed", payload=payload)
        started = set(out.get("executionIds", []))
        for key, wf in wfs.items():
            for e in executions(user, wf["id"]):
                owner_of.setdefault(e["executionId"], key)
        assert {owner_of[e] for e in started} == passes and len(started) == len(passes), (payload, out, owner_of)


def test_event_trigger_validation(alice):
    wf = create_wf(alice)
    wid = wf["id"]
    bad = [
        {"type": "event", "eventName": "order.created", "filter": "event.amount >"},
        {"type": "event", "eventName": "order.created", "filter": "(((event.amount"},
        {"type": "event", "eventName": "order.created", "filter": "event.amount > > 1"},
        {"type": "event", "eventName": "order created"},
        {"type": "event", "eventName": ""},
        {"type": "event"},
        {"type": "event", "eventName": "a" * 129},
        {"type": "event", "eventName": "ordér.created"},
    ]
    for body in bad:
        assert_error(alice.rest.post(tpath(wid), body), 400, INVALID_ARGUMENT)
    r = alice.rest.get(tpath(wid))
    assert r.status == 200 and not r.json.get("triggers"), r
    for name in ("a" * 128, "A.b_c:d/e-f.9", "x"):
        assert create_trigger(alice, wid, type="event", eventName=name)["eventName"] == name


def test_publish_needs_a_member(api_server, shop, carol, anon):
    org_id = shop.wfs["all"]["orgId"]
    assert_error(anon.post("/events", {"name": "order.created", "payload": {"amount": 500}}), 401, UNAUTHENTICATED)
    r = carol.rest.post("/events", {"name": "order.created", "payload": {"amount": 500}, "orgId": org_id})
    assert r.status in (403, 404), r
    assert_error(r, r.status, PERMISSION_DENIED if r.status == 403 else NOT_FOUND)
    assert_error(shop.erin.rest.post("/events", {"payload": {"amount": 1}}), 400, INVALID_ARGUMENT)
    assert_error(shop.erin.rest.post("/events", {"name": "bad name!", "payload": {}}), 400, INVALID_ARGUMENT)
    # carol publishing into her own organization starts nothing of erin's.
    mine = publish(carol, name="order.created", payload={"amount": 500})
    assert mine.get("executionIds", []) == [], mine
    for wf in shop.wfs.values():
        assert ids_of(shop.erin, wf) == set(), wf


def test_publish_event_over_grpc(api_server, protos, shop):
    pb = protos.v1.triggers_pb2
    ch = wh.new_channel(api_server.target)
    try:
        events = protos.v1.triggers_pb2_grpc.EventServiceStub(ch)
        triggers = protos.v1.triggers_pb2_grpc.TriggerServiceStub(ch)
        md = wh.grpc_auth(shop.erin)
        # A trigger made over gRPC, seen over REST.
        made = triggers.CreateTrigger(pb.CreateTriggerRequest(workflow_id=shop.wfs["ship"]["id"], type="event",
                                                              event_name="order.created",
                                                              filter="event.amount >= 500"),
                                      metadata=md, timeout=TIMEOUT)
        assert made.type == "event" and made.event_name == "order.created" and made.id, made
        r = shop.erin.rest.get(tpath(shop.wfs["ship"]["id"], made.id))
        assert r.status == 200 and r.json["filter"] == "event.amount >= 500", r

        req = pb.PublishEventRequest(name="order.created", payload=wh.proto_struct({"amount": 500, "via": "grpc"}),
                                     event_id=f"g-{uid()}")
        out = events.PublishEvent(req, metadata=md, timeout=TIMEOUT)
        assert out.event_id == req.event_id and len(out.execution_ids) == 3 and not out.duplicate, out
        again = events.PublishEvent(req, metadata=md, timeout=TIMEOUT)
        assert again.duplicate and sorted(again.execution_ids) == sorted(out.execution_ids), again
        started = set()
        for wf in shop.wfs.values():
            started |= ids_of(shop.erin, wf)
        assert started == set(out.execution_ids), (started, out)
        for wf in shop.wfs.values():
            (eid,) = ids_of(shop.erin, wf)
            done = wait_done(shop.erin, wf["id"], eid)
            assert done["input"] == {"amount": 500, "via": "grpc"}, done
            assert done["trigger"] == "event" and done["triggerId"] == f"order.created/{req.event_id}", done
        with pytest.raises(grpc.RpcError) as info:
            events.PublishEvent(req, timeout=TIMEOUT)
        assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED, info.value
        with pytest.raises(grpc.RpcError) as info:
            triggers.CreateTrigger(pb.CreateTriggerRequest(workflow_id=shop.wfs["ship"]["id"], type="event",
                                                           event_name="x", filter="event.amount >"),
                                   metadata=md, timeout=TIMEOUT)
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT, info.value
        listed = triggers.ListTriggers(pb.ListTriggersRequest(workflow_id=shop.wfs["ship"]["id"]), metadata=md,
                                       timeout=TIMEOUT)
        assert {t.id for t in listed.triggers} == {shop.trig["ship"]["id"], made.id}, listed
    finally:
        ch.close()


# ---------------------------------------------------------------------------
# Metrics
# ---------------------------------------------------------------------------


def test_trigger_metrics(api_server, alice):
    wf = create_wf(alice)
    wid = wf["id"]
    secret = new_secret(24)
    signed = create_trigger(alice, wid, type="webhook", signatureSecret=secret)["id"]
    keyed = create_trigger(alice, wid, type="webhook", idempotencyHeader="Idempotency-Key")["id"]
    create_trigger(alice, wid, type="event", eventName=f"metrics.{uid()}")
    event_name = create_trigger(alice, create_wf(alice)["id"], type="event", eventName=f"m.{uid()}")["eventName"]
    m0 = wh.fetch_metrics(api_server)

    body = b'{"m": 1}'
    good = signed_headers(secret, body)
    accepted(hook(api_server, signed, None, good, raw=body))  # accepted
    assert hook(api_server, signed, None, good, raw=body).status == 409  # replayed
    assert hook(api_server, signed, None, {**good, "X-Weft-Signature": sign("x" * 16, body)}, raw=body).status == 401
    assert hook(api_server, signed, None, signed_headers(secret, body, ts=int(time.time()) - 1000), raw=body) \
        .status == 401  # stale
    assert hook(api_server, signed, None, {"X-Weft-Timestamp": str(int(time.time()))}, raw=body).status == 401  # bad_signature (missing)
    assert hook(api_server, keyed, {"k": 1}, {"Idempotency-Key": "one"}).status == 202  # accepted
    assert hook(api_server, keyed, {"k": 1}, {"Idempotency-Key": "one"}).status == 202  # duplicate
    assert hook(api_server, keyed, None, raw=b"[]").status == 400  # bad_body
    assert hook(api_server, "hk_" + "f" * 32, {"x": 1}).status == 404  # not_found
    publish(alice, name=event_name, payload={"a": 1}, eventId=f"m-{uid()}")
    ev = publish(alice, name=event_name, payload={"a": 1})
    assert publish(alice, name=event_name, payload={"a": 1}, eventId=ev["eventId"]).get("duplicate") is True

    m1 = wh.fetch_metrics(api_server)

    def delta(name, **labels):
        return m1.total(name, **labels) - m0.total(name, **labels)

    expected = {"accepted": 2, "duplicate": 1, "not_found": 1, "bad_signature": 2, "stale": 1, "replayed": 1,
                "bad_body": 1, "refused": 0}
    got = {k: delta("weft_webhook_requests_total", outcome=k) for k in expected}
    assert got == expected, got
    assert m1.select("weft_webhook_requests_total", outcome="accepted"), "the series exists"
    assert m1.select("weft_webhook_requests_total", outcome="bad_signature"), "the series exists"
    assert m1.type_of("weft_webhook_requests_total") == "counter"
    assert delta("weft_events_published_total", outcome="published") == 2
    assert delta("weft_events_published_total", outcome="duplicate") == 1
    assert delta("weft_trigger_executions_total", trigger="webhook") == 2
    assert delta("weft_trigger_executions_total", trigger="event") == 2
