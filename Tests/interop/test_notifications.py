"""Notifications on a real `weft serve`: integrations, subscriptions,
deliveries, in-app notifications and templates over REST, with real
receivers on loopback (notify_sinks.py): an aiosmtpd server requiring
STARTTLS and AUTH, recording HTTP servers for webhooks and Slack.

The module's server runs with `--public-url` (links in messages) and a
master key (integration secrets are sealed); loopback is allowed by the
egress guard as everywhere in the suite (wh.WeftServer).  Failing
executions come from a `transform` whose template reads a path through a
missing field (no retries), so they fail at once and deterministically.

1. E-mail through an SMTP integration (caCertificate trusting the test CA):
   the `test` action, a certificate the server cannot verify, and a failure
   notification: multipart/alternative, subject with the (non-ASCII)
   workflow name and the error, Message-ID = the delivery id, STARTTLS and
   AUTH; also the server-wide SMTP flags (`--smtp-*`) on a server of its own,
   and an e-mail subscription on a server without SMTP (dead at once).
2. Signed webhooks (HMAC over "<timestamp>.<body>"), headers, body fields;
   a completion subscription beside it.
3. Slack Block Kit.
4. A receiver that is down, then up: retries with the same delivery id;
   5xx / 429 retried; a 400 dead after one attempt; an egress-denied
   destination refused at once; a deleted subscription's pending delivery
   never sent; task.retried / task.failed / started / cancelled / timed_out.
5. SIGKILL while deliveries are in flight: every notification arrives after
   the restart, all delivered.
6. Filters, in-app notifications (list, live stream, mark read), deadline
   alerts (delivered while running, skipped when the execution ended first).
7. Secrets: never in a response, the server's logs or the data directory.
8. Validation, roles, deleting an integration in use (by subscriptions, by
   an `http` task that takes its credentials through config.integration).
9. Templates: override, preview, unknown placeholder, used by the next
   delivery, DELETE restores the built-in.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import re
import secrets
import time
import urllib.parse
import uuid

import pytest

import notify_sinks as ns
import tls_certs
import weft_helpers as wh

PUBLIC_URL = "https://weft.example.test"
TIMEOUT = 15
TERMINAL = {"Completed", "Failed", "Cancelled", "TimedOut"}
INVALID_ARGUMENT, NOT_FOUND, PERMISSION_DENIED, FAILED_PRECONDITION, UNAUTHENTICATED = 3, 5, 7, 9, 16
# Fails at once without input ({{ input.x.y }} reads through a missing
# field), completes with input {"x": {"y": 1}}.
FAILING = [{"key": "shape", "name": "Shape", "action": "transform",
            "config": {"output": {"v": "{{ input.x.y }}"}}, "retry": {"maxAttempts": 1}}]
SUCCEEDS = {"x": {"y": 1}}
NOOP = [{"key": "a", "name": "A", "action": "noop"}]
FAILURE_EVENTS = {"execution.failed", "execution.timed_out", "execution.cancelled"}


# ---------------------------------------------------------------------------
# Servers, users, receivers
# ---------------------------------------------------------------------------


def new_master_key() -> str:
    return base64.b64encode(os.urandom(32)).decode()


def start_server(base, name: str, *args: str, env=None) -> wh.WeftServer:
    binary = wh.weft_bin()
    if not binary.exists():
        pytest.fail(f"weft binary not found at {binary}; build it (swift build) or set WEFT_BIN", pytrace=False)
    srv = wh.WeftServer(binary, base / "data", base / "logs", args=(*wh.API_SERVER_ARGS, *args), name=name,
                        env=env if env is not None else {"WEFT_SECRETS_KEY": new_master_key()})
    try:
        srv.start(timeout=30)
    except RuntimeError as exc:
        pytest.fail(str(exc), pytrace=False)
    return srv


def finish(*servers):
    try:
        wh.finish_servers(servers)
    except wh.ServerExitError as exc:
        pytest.fail(str(exc), pytrace=False)


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    server = start_server(tmp_path_factory.mktemp("notifications"), "notifications", "--public-url", PUBLIC_URL)
    yield server
    finish(server)


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    """A test CA and a server certificate for 127.0.0.1 / localhost."""
    return tls_certs.make_certs(tmp_path_factory.mktemp("notify-pki"))


@pytest.fixture(scope="module")
def alice(srv):
    return wh.register_and_login(srv, "Alice Notify")


@pytest.fixture(scope="module")
def bob(srv):
    """A viewer of alice's shared workflow."""
    return wh.register_and_login(srv, "Bob Viewer")


@pytest.fixture(scope="module")
def carol(srv):
    """No role near alice."""
    return wh.register_and_login(srv, "Carol Stranger")


@pytest.fixture(scope="module")
def shared_wf(srv, alice, bob):
    wf = create_wf(alice, f"shared {uid()}")
    wh.invite_and_accept(srv, alice.token, bob.token, wf["orgId"])
    r = alice.rest.post(f"/workflows/{wf['id']}/collaborators", {"userId": bob.id, "role": "viewer"})
    assert r.status == 201, r
    return wf


@pytest.fixture
def sink():
    s = ns.HookSink()
    yield s
    s.close()


# ---------------------------------------------------------------------------
# REST helpers
# ---------------------------------------------------------------------------


def uid() -> str:
    return uuid.uuid4().hex[:8]


def snake(name: str) -> str:
    return re.sub(r"([A-Z])", lambda m: "_" + m.group(1).lower(), name)


def assert_error(r: wh.RestResponse, status, code: int, *fields: str) -> dict:
    """An error response with `status` (one or a tuple), gRPC `code` and a
    message naming each of `fields` (camelCase or snake_case)."""
    statuses = status if isinstance(status, tuple) else (status,)
    assert r.status in statuses, r
    body = r.json
    assert isinstance(body, dict) and body.get("code") == code, body
    msg = body.get("message", "")
    assert isinstance(msg, str) and msg, body
    for field in fields:
        assert field in msg or snake(field) in msg, (field, body)
    return body


def create_wf(user: wh.ApiUser, name: str | None = None, tasks=FAILING) -> dict:
    r = user.rest.post("/workflows", {"name": name or f"notify {uid()}", "tasks": tasks})
    assert r.status == 201, r
    return r.json


def ipath(wid: str, iid: str = "") -> str:
    return f"/workflows/{wid}/integrations" + (f"/{iid}" if iid else "")


def spath(wid: str, sid: str = "") -> str:
    return f"/workflows/{wid}/subscriptions" + (f"/{sid}" if sid else "")


def create_integration(user: wh.ApiUser, wid: str, **body) -> dict:
    r = user.rest.post(ipath(wid), body)
    assert r.status == 201, r
    return r.json


def try_integration(user: wh.ApiUser, wid: str, iid: str, destination: str = "") -> dict:
    r = user.rest.post(ipath(wid, iid) + "/test", {"destination": destination} if destination else {})
    assert r.status == 200, r
    return r.json


def subscribe(user: wh.ApiUser, wid: str, **body) -> dict:
    r = user.rest.post(spath(wid), body)
    assert r.status == 201, r
    return r.json


def execute(user: wh.ApiUser, wid: str, **body) -> str:
    r = user.rest.post(f"/workflows/{wid}/execute", body)
    assert r.status == 202, r
    return r.json["executionId"]


def get_exec(user: wh.ApiUser, wid: str, eid: str) -> dict:
    r = user.rest.get(f"/workflows/{wid}/executions/{eid}")
    assert r.status == 200, r
    return r.json


def wait_exec(user, wid, eid, statuses=TERMINAL, timeout: float = TIMEOUT) -> dict:
    last = {}

    def check():
        last["e"] = get_exec(user, wid, eid)
        return last["e"] if last["e"]["status"] in statuses else None

    return wh.wait_until(check, timeout, interval=0.03, message=lambda: f"{eid} to end: {last.get('e')}")


def fail_once(user, wid) -> dict:
    done = wait_exec(user, wid, execute(user, wid, input={}))
    assert done["status"] == "Failed" and done.get("error"), done
    return done


def succeed_once(user, wid) -> dict:
    done = wait_exec(user, wid, execute(user, wid, input=SUCCEEDS))
    assert done["status"] == "Completed", done
    return done


def deliveries(user, wid, sid, state: str | None = None) -> list:
    q = {"pageSize": 100, **({"state": state} if state else {})}
    r = user.rest.get(spath(wid, sid) + "/deliveries?" + urllib.parse.urlencode(q))
    assert r.status == 200, r
    return r.json.get("deliveries", [])


def wait_deliveries(user, wid, sid, pred, timeout: float = TIMEOUT, why: str = "") -> list:
    last = {}

    def check():
        last["d"] = deliveries(user, wid, sid)
        return last["d"] if pred(last["d"]) else None

    return wh.wait_until(check, timeout, interval=0.05,
                         message=lambda: f"deliveries of {sid} {why}: {json.dumps(last.get('d'))[:1500]}")


def one_delivered(user, wid, sid, timeout: float = TIMEOUT) -> dict:
    got = wait_deliveries(user, wid, sid, lambda ds: ds and all(d["state"] != "pending" for d in ds), timeout,
                          "to settle")
    assert len(got) == 1, got
    assert got[0]["state"] == "delivered", got
    return got[0]


def ns_of(ts: str) -> float:
    return wh.rfc3339_nanos(ts) / 1e9


def norm(text: str) -> str:
    return " ".join(text.split())


def signature(secret: str, timestamp: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()


def link_of(eid: str) -> str:
    return f"{PUBLIC_URL}/executions/{eid}"


def html_escape(text: str) -> str:
    return (text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")
            .replace("'", "&#39;"))


def slack_escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def email_config(smtp: ns.SmtpSink, pki, username: str, password: str | None, **extra) -> dict:
    config = {"host": "127.0.0.1", "port": smtp.port, "username": username, "from": "alerts@example.com",
              "caCertificate": pki.ca_cert.read_text(), **extra}
    if password is not None:
        config["password"] = password
    return config


# ---------------------------------------------------------------------------
# 1. E-mail
# ---------------------------------------------------------------------------


def test_email_through_an_smtp_integration(srv, alice, pki):
    password = "smtp-pass-" + secrets.token_hex(8)
    smtp = ns.SmtpSink(pki.server_cert, pki.server_key, {"weft-smtp": password})
    try:
        name = f"Überwachung ✓ & <Co> {uid()}"
        wf = create_wf(alice, name)
        wid = wf["id"]
        integ = create_integration(alice, wid, type="email", name="ops mail",
                                   config=email_config(smtp, pki, "weft-smtp", password, heloName="weft.test"))
        iid = integ["id"]
        assert integ["type"] == "email" and integ["name"] == "ops mail" and integ["workflowId"] == wid, integ
        assert integ["secretFields"] == ["password"], integ
        assert "password" not in integ["config"] and integ["config"]["host"] == "127.0.0.1", integ
        assert integ["config"]["port"] == smtp.port and integ["config"]["from"] == "alerts@example.com", integ
        assert integ["createdBy"] == alice.id and integ.get("createdAt") and integ.get("updatedAt"), integ

        # The test action sends a real message.
        res = try_integration(alice, wid, iid, "first-test@example.com")
        assert res.get("ok") is True and res.get("statusCode") == 250, res
        assert int(res.get("latencyMs", "0")) >= 0 and res.get("detail"), res
        [tm] = smtp.wait(1, rcpt="first-test@example.com", why="(the test action)")
        assert tm["tls"] and tm["login"] == "weft-smtp", tm
        assert "test" in str(tm["msg"]["subject"]).lower(), tm["msg"]["subject"]

        # Without the CA the server cannot verify the certificate: not ok, nothing sent.
        untrusted = create_integration(
            alice, wid, type="email", name="no ca",
            config={k: v for k, v in email_config(smtp, pki, "weft-smtp", password).items() if k != "caCertificate"})
        res = try_integration(alice, wid, untrusted["id"], "untrusted@example.com")
        assert not res.get("ok", False) and res.get("detail"), res
        assert smtp.received("untrusted@example.com") == [], "a message went out over an unverified connection"
        # A wrong password: the server's 535 is reported, nothing is sent.
        wrong = create_integration(alice, wid, type="email", name="wrong pw",
                                   config=email_config(smtp, pki, "weft-smtp", "not-" + password))
        res = try_integration(alice, wid, wrong["id"], "wrong-pw@example.com")
        assert not res.get("ok", False) and res.get("statusCode") == 535, res
        assert smtp.received("wrong-pw@example.com") == []
        # tls "required" is the default: the saved settings say so or leave it out.
        assert untrusted["config"].get("tls", "required") == "required", untrusted

        sub = subscribe(alice, wid, eventType="failure", notifyVia="email", destination="ops@example.com",
                        integrationId=iid)
        assert sub["eventType"] == "failure" and sub["notifyVia"] == "email", sub
        assert sub["destination"] == "ops@example.com" and sub["integrationId"] == iid, sub
        assert set(sub["events"]) == FAILURE_EVENTS and sub["userId"] == alice.id and sub["workflowId"] == wid, sub

        done = fail_once(alice, wid)
        eid, error = done["executionId"], done["error"]
        [m] = smtp.wait(1, rcpt="ops@example.com", why="(the failure notification)")
        d = one_delivered(alice, wid, sub["id"])
        assert d["id"].startswith("dlv_") and d["channel"] == "email" and d["event"] == "execution.failed", d
        assert d["executionId"] == eid and d["subscriptionId"] == sub["id"] and d["workflowId"] == wid, d
        assert d["attempts"] == 1 and d.get("deliveredAt"), d
        assert [(a["attempt"], a["outcome"], a.get("statusCode")) for a in d["attemptLog"]] == [(1, "delivered", 250)], d

        msg = m["msg"]
        subject = str(msg["subject"])
        assert subject.startswith("[Weft] ") and name in subject, subject
        assert norm(error) in norm(subject), (subject, error)
        assert msg["Message-ID"] == f"<{d['id']}@weft>", msg["Message-ID"]
        assert msg["X-Weft-Delivery-Id"] == d["id"], msg.items()
        sender = msg["From"].addresses[0]
        assert (sender.display_name, sender.addr_spec) == ("Weft", "alerts@example.com"), msg["From"]
        assert [a.addr_spec for a in msg["To"].addresses] == ["ops@example.com"], msg["To"]
        assert m["mail_from"] == "alerts@example.com" and m["rcpt_tos"] == ["ops@example.com"], m
        assert msg.get_content_type() == "multipart/alternative", msg.get_content_type()
        assert [p.get_content_type() for p in msg.iter_parts()] == ["text/plain", "text/html"], list(msg.iter_parts())
        plain = msg.get_body(("plain",)).get_content()
        html = msg.get_body(("html",)).get_content()
        assert name in plain and eid in plain and link_of(eid) in plain, plain
        assert norm(error) in norm(plain), (plain, error)
        assert html_escape(name) in html and name not in html, html  # values are escaped in HTML
        assert html_escape(error) in html and f'href="{link_of(eid)}"' in html and eid in html, html
        # The session: STARTTLS, then AUTH with the integration's credentials.
        assert m["tls"] and m["authenticated"] and m["login"] == "weft-smtp", m
        assert m["helo"] == "weft.test", m["helo"]
        ok_auths = [a for a in smtp.auths if a[3]]
        assert ok_auths and all(a[0] in ("PLAIN", "LOGIN") and a[4] for a in ok_auths), smtp.auths
        assert all(a[1] == "weft-smtp" and a[2] == password for a in ok_auths), [a[:2] for a in smtp.auths]
        time.sleep(0.5)  # nothing else may follow
        assert len(smtp.received("ops@example.com")) == 1
    finally:
        smtp.close()


def test_server_wide_smtp_flags(tmp_path, pki):
    """--smtp-* configure the server's own relay: e-mail subscriptions
    without an integration go through it (STARTTLS verified with
    --smtp-ca-file, AUTH with the password read from --smtp-password-file)."""
    password = "relay-pw-" + secrets.token_hex(10)
    smtp = ns.SmtpSink(pki.server_cert, pki.server_key, {"relay-user": password})
    pw_file = tmp_path / "smtp-password"
    pw_file.write_text(password)
    server = None
    try:
        server = start_server(tmp_path / "srv", "notify-smtp-flags", "--public-url", PUBLIC_URL,
                              "--smtp-host", "127.0.0.1", "--smtp-port", str(smtp.port),
                              "--smtp-username", "relay-user", "--smtp-password-file", str(pw_file),
                              "--smtp-from", "weft@example.com", "--smtp-tls", "required",
                              "--smtp-ca-file", str(pki.ca_cert))
        user = wh.register_and_login(server, "Relay User")
        wf = create_wf(user, f"relayed {uid()}")
        sub = subscribe(user, wf["id"], eventType="failure", notifyVia="email", destination="oncall@example.com")
        assert not sub.get("integrationId"), sub
        done = fail_once(user, wf["id"])
        [m] = smtp.wait(1, rcpt="oncall@example.com")
        d = one_delivered(user, wf["id"], sub["id"])
        msg = m["msg"]
        assert m["mail_from"] == "weft@example.com" and msg["From"].addresses[0].addr_spec == "weft@example.com", m
        assert m["tls"] and m["login"] == "relay-user", m
        assert msg["Message-ID"] == f"<{d['id']}@weft>" and wf["name"] in str(msg["subject"]), msg.items()
        assert done["executionId"] in msg.get_body(("plain",)).get_content()
        logs = server.stderr_text() + server.stdout_tail(10**9)
        assert password not in logs, "the SMTP password is in the server's log"
    finally:
        if server is not None:
            finish(server)
        smtp.close()


def test_email_without_any_smtp_server_is_dead_at_once(srv, alice):
    """The module's server has no --smtp-host: an e-mail subscription
    without an integration cannot be delivered, and says why."""
    wf = create_wf(alice)
    sub = subscribe(alice, wf["id"], eventType="failure", notifyVia="email", destination="nobody@example.com")
    fail_once(alice, wf["id"])
    [d] = wait_deliveries(alice, wf["id"], sub["id"], lambda ds: ds and ds[0]["state"] != "pending")
    assert d["state"] == "dead" and d["attempts"] == 1, d
    assert "smtp" in d.get("lastError", "").lower(), d
    assert d["attemptLog"][0]["outcome"] in ("refused", "dead"), d


# ---------------------------------------------------------------------------
# 2. Webhooks, 3. Slack
# ---------------------------------------------------------------------------


def test_signed_webhook_delivery(srv, alice, sink):
    secret = "whsec-" + secrets.token_hex(16)
    name = f"webhooked {uid()}"
    wf = create_wf(alice, name)
    wid = wf["id"]
    integ = create_integration(alice, wid, type="webhook", name="ops hook", webhookUrl=sink.url("/hooks/ops"),
                               config={"signingSecret": secret})
    assert integ["type"] == "webhook" and integ["webhookUrl"] == f"http://127.0.0.1:{sink.port}/…", integ
    assert set(integ["secretFields"]) == {"signingSecret", "webhookUrl"}, integ
    assert "signingSecret" not in integ.get("config", {}), integ
    sub = subscribe(alice, wid, events=["execution.failed"], notifyVia="webhook", integrationId=integ["id"])
    assert sub["events"] == ["execution.failed"] and sub["integrationId"] == integ["id"], sub
    assert not sub.get("destination"), sub
    completion = subscribe(alice, wid, eventType="completion", notifyVia="webhook",
                           destination=sink.url("/plain/completion"))
    assert completion["events"] == ["execution.completed"], completion

    t0 = time.time()
    done = fail_once(alice, wid)
    eid = done["executionId"]
    [rec] = sink.wait(1, path="/hooks/ops")
    d = one_delivered(alice, wid, sub["id"])
    h, body = rec["headers"], rec["json"]
    assert rec["method"] == "POST" and h.get("content-type", "").startswith("application/json"), rec
    ts = h["x-weft-timestamp"]
    assert t0 - 5 <= int(ts) <= time.time() + 5, h
    assert h["x-weft-signature"] == signature(secret, ts, rec["body"]), h
    assert h["x-weft-signature"] != signature("wrong" + secret, ts, rec["body"])
    assert h["x-weft-event"] == "execution.failed" and h["x-weft-attempt"] == "1", h
    assert h["x-weft-delivery-id"] == body["deliveryId"] == d["id"] and d["id"].startswith("dlv_"), (h, body, d)

    assert body["event"] == "execution.failed" and body["subscriptionId"] == sub["id"], body
    assert body["workflowId"] == wid and body["executionId"] == eid, body
    assert body["link"] == link_of(eid), body
    assert name in body["subject"] and norm(done["error"]) in norm(body["subject"]), body
    assert eid in body["text"], body
    assert t0 - 5 <= ns_of(body["createdAt"]) <= time.time() + 5, body
    data = body["data"]
    assert data["event"] == "execution.failed" and data["workflowId"] == wid and data["workflowName"] == name, data
    assert data["executionId"] == eid and data["status"] == "Failed" and data["trigger"] == "api", data
    assert data["error"] == done["error"], (data, done)
    assert ns_of(data["startedAt"]) <= ns_of(data["at"]) and isinstance(data["durationMs"], (int, float)), data
    assert data["durationMs"] >= 0, data

    assert d["channel"] == "webhook" and d["event"] == "execution.failed" and d["executionId"] == eid, d
    assert d["attempts"] == 1 and d.get("deliveredAt") and not d.get("lastError"), d
    [a] = d["attemptLog"]
    assert (a["attempt"], a["outcome"], a["statusCode"]) == (1, "delivered", 200), a
    assert int(a.get("durationMs", "0")) >= 0 and a.get("at"), a
    assert deliveries(alice, wid, sub["id"], state="delivered") == [d]
    assert deliveries(alice, wid, sub["id"], state="pending") == []

    # A completion subscription hears nothing of a failure ...
    assert deliveries(alice, wid, completion["id"]) == [] and sink.posts("/plain/completion") == []
    # ... and one unsigned POST of a success, which the failure-only one ignores.
    ok = succeed_once(alice, wid)
    [c] = sink.wait(1, path="/plain/completion")
    assert "x-weft-signature" not in c["headers"], c["headers"]
    assert c["headers"]["x-weft-event"] == "execution.completed", c["headers"]
    assert c["json"]["executionId"] == ok["executionId"] and c["json"]["data"]["status"] == "Completed", c["json"]
    one_delivered(alice, wid, completion["id"])
    time.sleep(0.5)
    assert len(sink.posts("/hooks/ops")) == 1, "one POST per event"
    assert len(deliveries(alice, wid, sub["id"])) == 1


def test_slack_block_kit(srv, alice, sink):
    token = secrets.token_hex(12)
    name = f"Nightly <report> & co {uid()}"
    wf = create_wf(alice, name)
    wid = wf["id"]
    r = alice.rest.post(ipath(wid), {"type": "slack", "name": "ops slack",
                                     "webhookUrl": sink.url(f"/services/T0001/B0001/{token}"),
                                     "config": {"channel": "#ops-alerts", "username": "weft-bot"}})
    assert r.status == 201 and token.encode() not in r.body, r
    integ = r.json
    assert integ["webhookUrl"] == f"http://127.0.0.1:{sink.port}/…" and integ["secretFields"] == ["webhookUrl"], integ
    assert integ["config"] == {"channel": "#ops-alerts", "username": "weft-bot"}, integ
    sub = subscribe(alice, wid, eventType="failure", notifyVia="slack", integrationId=integ["id"])

    done = fail_once(alice, wid)
    eid, error = done["executionId"], done["error"]
    [rec] = sink.wait(1, prefix="/services/")
    assert rec["path"] == f"/services/T0001/B0001/{token}", rec["path"]
    d = one_delivered(alice, wid, sub["id"])
    assert d["channel"] == "slack" and d["attemptLog"][0]["statusCode"] == 200, d
    assert "x-weft-signature" not in rec["headers"], rec["headers"]
    b = rec["json"]
    assert b["channel"] == "#ops-alerts" and b["username"] == "weft-bot", b
    # The fallback text is the subject (mrkdwn may escape &, < and >).
    assert name in b["text"] or slack_escape(name) in b["text"], b["text"]
    assert norm(error)[:60] in norm(b["text"]) or slack_escape(norm(error)[:60]) in norm(b["text"]), b["text"]
    blocks = b["blocks"]
    types = [blk["type"] for blk in blocks]
    assert types[0] == "header" and types[-1] == "context", types
    header = blocks[0]["text"]
    assert header["type"] == "plain_text" and header["text"].startswith("[Weft] ") and name in header["text"], header
    assert len(header["text"]) <= 150, header
    [facts] = [blk for blk in blocks if blk["type"] == "section" and "fields" in blk]
    fields = [f["text"] for f in facts["fields"]]
    assert "*Status*\nFailed" in fields and "*Trigger*\napi" in fields, fields
    assert any(f.startswith("*Duration*\n") for f in fields) and f"*Execution*\n{eid}" in fields, fields
    [err] = [blk for blk in blocks if blk["type"] == "section" and blk.get("text", {}).get("text", "").startswith("*Error*")]
    assert err["text"]["type"] == "mrkdwn" and slack_escape(error) in err["text"]["text"], (err, error)
    [actions] = [blk for blk in blocks if blk["type"] == "actions"]
    [button] = actions["elements"]
    assert button["type"] == "button" and button["url"] == link_of(eid), button
    context = blocks[-1]["elements"][0]["text"]
    assert slack_escape(name) in context and "<report>" not in context, context


# ---------------------------------------------------------------------------
# 4. Retries, dead letters
# ---------------------------------------------------------------------------


def test_a_receiver_that_is_down_then_up_gets_the_same_delivery(srv, alice):
    port = ns.free_port()
    wf = create_wf(alice)
    wid = wf["id"]
    sub = subscribe(alice, wid, eventType="failure", notifyVia="webhook",
                    destination=f"http://127.0.0.1:{port}/late")
    done = fail_once(alice, wid)
    [d] = wait_deliveries(
        alice, wid, sub["id"],
        lambda ds: ds and ds[0]["attempts"] >= 2 and ds[0]["state"] == "pending" and ds[0].get("lastError"),
        timeout=10, why="to have failed twice")
    assert d["executionId"] == done["executionId"] and d.get("nextAttemptAt"), d
    assert all(a["outcome"] == "failed" for a in d["attemptLog"]), d
    assert ns_of(d["nextAttemptAt"]) >= ns_of(d["attemptLog"][-1]["at"]), d
    late = ns.HookSink(port=port)
    try:
        [rec] = late.wait(1, path="/late", timeout=15, why="after the receiver came up")
        final = wait_deliveries(alice, wid, sub["id"], lambda ds: ds and ds[0]["state"] != "pending")
        [f] = final
        n = int(rec["headers"]["x-weft-attempt"])
        assert rec["headers"]["x-weft-delivery-id"] == d["id"] == f["id"] == rec["json"]["deliveryId"], (rec, d, f)
        assert f["state"] == "delivered" and f["attempts"] == n and n >= 3, (f, n)
        outcomes = [a["outcome"] for a in f["attemptLog"]]
        assert outcomes == ["failed"] * (n - 1) + ["delivered"], f
        assert f["attemptLog"][-1]["statusCode"] == 200 and f.get("deliveredAt"), f
        time.sleep(0.3)
        assert len(late.posts()) == 1
    finally:
        late.close()


def test_5xx_and_429_are_retried_a_400_is_dead_after_one_attempt(srv, alice):
    answers = {"/flaky": [503, 429], "/refuses": []}

    def respond(rec):
        queue = answers.get(rec["path"])
        if rec["path"] == "/refuses":
            return 400, 0
        return (queue.pop(0) if queue else 200), 0

    sink = ns.HookSink(respond=respond)
    try:
        wf = create_wf(alice)
        wid = wf["id"]
        flaky = subscribe(alice, wid, eventType="failure", notifyVia="webhook", destination=sink.url("/flaky"))
        refuses = subscribe(alice, wid, eventType="failure", notifyVia="webhook", destination=sink.url("/refuses"))
        fail_once(alice, wid)
        [dead] = wait_deliveries(alice, wid, refuses["id"], lambda ds: ds and ds[0]["state"] != "pending")
        assert dead["state"] == "dead" and dead["attempts"] == 1, dead
        assert [(a["attempt"], a["outcome"], a["statusCode"]) for a in dead["attemptLog"]] == [(1, "dead", 400)], dead
        assert "400" in dead.get("lastError", ""), dead
        [ok] = wait_deliveries(alice, wid, flaky["id"], lambda ds: ds and ds[0]["state"] != "pending", timeout=12)
        assert ok["state"] == "delivered" and ok["attempts"] == 3, ok
        assert [(a["outcome"], a["statusCode"]) for a in ok["attemptLog"]] == \
            [("failed", 503), ("failed", 429), ("delivered", 200)], ok
        ids = {r["headers"]["x-weft-delivery-id"] for r in sink.posts("/flaky")}
        assert ids == {ok["id"]} and [r["headers"]["x-weft-attempt"] for r in sink.posts("/flaky")] == ["1", "2", "3"]
        # The 400 was not retried (a retry would have come within a second).
        time.sleep(1.5)
        assert len(sink.posts("/refuses")) == 1
        assert deliveries(alice, wid, refuses["id"]) == [dead]
        assert deliveries(alice, wid, refuses["id"], state="dead") == [dead]
        assert deliveries(alice, wid, refuses["id"], state="delivered") == []
        assert_error(alice.rest.get(spath(wid, refuses["id"]) + "/deliveries?state=lost"), 400, INVALID_ARGUMENT,
                     "state")
    finally:
        sink.close()


def test_an_egress_denied_destination_is_refused_at_once(srv, alice):
    """The module's server allows only 127.0.0.1/32: a private address is
    refused by the egress guard, never retried."""
    wf = create_wf(alice)
    sub = subscribe(alice, wf["id"], eventType="failure", notifyVia="webhook", destination="http://10.255.255.1/hook")
    fail_once(alice, wf["id"])
    [d] = wait_deliveries(alice, wf["id"], sub["id"], lambda ds: ds and ds[0]["state"] != "pending")
    assert d["state"] == "dead" and d["attempts"] == 1, d
    assert d["attemptLog"][0]["outcome"] == "refused" and "egress" in d.get("lastError", ""), d


def test_deleting_a_subscription_stops_its_pending_deliveries(srv, alice):
    sink = ns.HookSink(respond=lambda rec: (503, 0))
    try:
        wf = create_wf(alice)
        wid = wf["id"]
        sub = subscribe(alice, wid, eventType="failure", notifyVia="webhook", destination=sink.url("/gone"))
        fail_once(alice, wid)
        wait_deliveries(alice, wid, sub["id"], lambda ds: ds and ds[0]["attempts"] >= 1, why="a first attempt")
        r = alice.rest.delete(spath(wid, sub["id"]))
        assert (r.status, r.body) == (204, b""), r
        sink.respond = lambda rec: (200, 0)
        sent = len(sink.posts("/gone"))
        time.sleep(2.5)  # longer than the backoff after one or two failed attempts
        assert len(sink.posts("/gone")) == sent, "a deleted subscription's delivery went out"
        assert_error(alice.rest.get(spath(wid, sub["id"]) + "/deliveries"), 404, NOT_FOUND)
        assert all(s["id"] != sub["id"] for s in alice.rest.get(spath(wid)).json.get("subscriptions", []))
    finally:
        sink.close()


def test_task_and_lifecycle_events(srv, alice, sink):
    retried_twice = [{**FAILING[0], "retry": {"maxAttempts": 2, "initialBackoff": "0.05s", "jitter": 0}}]
    wf = create_wf(alice, tasks=retried_twice)
    wid = wf["id"]
    tasks = subscribe(alice, wid, events=["task.retried", "task.failed"], notifyVia="webhook",
                      destination=sink.url("/task"))
    life = subscribe(alice, wid, eventType="any", notifyVia="webhook", destination=sink.url("/life"))
    assert set(life["events"]) == {"execution.started", "execution.completed"} | FAILURE_EVENTS, life
    done = fail_once(alice, wid)
    eid = done["executionId"]
    by_event = {r["json"]["event"]: r for r in sink.wait(2, path="/task")}
    assert set(by_event) == {"task.retried", "task.failed"}, by_event.keys()
    retried = by_event["task.retried"]["json"]["data"]
    assert (retried["task"], retried["attempt"], retried["status"]) == ("shape", 1, "Retrying"), retried
    failed = by_event["task.failed"]["json"]["data"]
    assert (failed["task"], failed["attempt"], failed["status"]) == ("shape", 2, "Failed") and failed["error"], failed
    assert retried["executionId"] == failed["executionId"] == eid, (retried, failed)
    assert len({r["headers"]["x-weft-delivery-id"] for r in by_event.values()}) == 2
    by_event = {r["json"]["event"]: r["json"] for r in sink.wait(2, path="/life")}
    assert set(by_event) == {"execution.started", "execution.failed"}, by_event.keys()
    assert by_event["execution.started"]["data"]["status"] == "Running", by_event
    assert by_event["execution.failed"]["data"]["status"] == "Failed", by_event

    # Cancelled and timed out are "failure" events too.
    slow = create_wf(alice, tasks=[{"key": "nap", "name": "Nap", "action": "delay", "config": {"duration": "5s"}}])
    sub = subscribe(alice, slow["id"], eventType="failure", notifyVia="webhook", destination=sink.url("/ended"))
    cancelled = execute(alice, slow["id"])
    r = alice.rest.post(f"/workflows/{slow['id']}/executions/{cancelled}/cancel", {"reason": "enough"})
    assert r.status == 200, r
    timed_out = execute(alice, slow["id"], timeout="0.3s")
    assert wait_exec(alice, slow["id"], timed_out)["status"] == "TimedOut"
    got = {r["json"]["executionId"]: r["json"] for r in sink.wait(2, path="/ended")}
    assert (got[cancelled]["event"], got[cancelled]["data"]["status"]) == ("execution.cancelled", "Cancelled"), got
    assert (got[timed_out]["event"], got[timed_out]["data"]["status"]) == ("execution.timed_out", "TimedOut"), got
    wait_deliveries(alice, slow["id"], sub["id"], lambda ds: len(ds) == 2 and all(d["state"] == "delivered" for d in ds))


# ---------------------------------------------------------------------------
# 5. SIGKILL during dispatch
# ---------------------------------------------------------------------------


def test_sigkill_while_deliveries_are_in_flight_loses_none(tmp_path):
    n = 20
    delay = 3.0
    sink = ns.HookSink(respond=lambda rec: (200, delay))
    env = {"WEFT_SECRETS_KEY": new_master_key()}
    started = []

    def boot(tag):
        srv = wh.WeftServer(wh.weft_bin(), tmp_path / "data", tmp_path / "logs", args=wh.API_SERVER_ARGS,
                            name=f"notify-crash-{tag}", env=env)
        started.append(srv)
        srv.start(timeout=30)
        return srv

    try:
        first = boot("first")
        user = wh.register_and_login(first, "Crash Notify")
        wf = create_wf(user, f"crashy {uid()}")
        wid = wf["id"]
        sub = subscribe(user, wid, eventType="failure", notifyVia="webhook", destination=sink.url("/slow"))
        eids = [execute(user, wid, input={}) for _ in range(n)]
        sink.wait(n // 2, path="/slow", timeout=10, why="(in flight before the kill)")
        t_kill = time.time()
        first.expect_unclean = True
        first.kill()
        assert first.killed
        in_flight = sink.posts("/slow")
        second = boot("second")
        user = wh.ApiUser(user.id, user.email, user.password, user.name, user.token, user.user,
                          wh.RestClient(second, user.token))
        for eid in eids:
            assert wait_exec(user, wid, eid)["status"] == "Failed"
        final = wait_deliveries(user, wid, sub["id"],
                                lambda ds: len(ds) == n and all(d["state"] == "delivered" for d in ds),
                                timeout=30, why=f"all {n} delivered after the restart")
        by_exec = {d["executionId"]: d["id"] for d in final}
        assert set(by_exec) == set(eids) and len(set(by_exec.values())) == n, final
        recs = sink.posts("/slow")
        # A request the kill cut off in the middle of its body is no delivery.
        cut = [r for r in recs if r["json"] is None]
        assert all(r["at"] <= t_kill + 0.5 for r in cut), "a request after the restart had a broken body"
        recs = [r for r in recs if r["json"] is not None]
        seen: dict[str, set] = {}
        for r in recs:
            seen.setdefault(r["json"]["executionId"], set()).add(r["headers"]["x-weft-delivery-id"])
        assert set(seen) == set(eids), f"executions never notified: {set(eids) - set(seen)}"
        assert all(seen[e] == {by_exec[e]} for e in eids), "one delivery id per execution, on every attempt"
        # Whatever was not answered before the kill arrived again after it.
        answered_before = {r["headers"]["x-weft-delivery-id"] for r in in_flight
                           if r["answered_at"] is not None and r["answered_at"] < t_kill}
        after = {r["headers"]["x-weft-delivery-id"] for r in recs if r["at"] > t_kill}
        missing = set(by_exec.values()) - answered_before - after
        assert not missing, f"{len(missing)} deliveries never completed: {sorted(missing)[:5]}"
        assert len(in_flight) >= n // 2 and len(recs) > n, (len(in_flight), len(recs))
    finally:
        for srv in started:
            if srv.killed:
                srv.expect_unclean = True
        sink.close()
        finish(*started)


# ---------------------------------------------------------------------------
# 6. Filters, in-app, deadlines
# ---------------------------------------------------------------------------


def test_filters_choose_events(srv, alice, sink):
    wf = create_wf(alice)
    wid = wf["id"]
    everything = subscribe(alice, wid, eventType="failure", notifyVia="webhook", destination=sink.url("/f/all"))
    scheduled = subscribe(alice, wid, eventType="failure", notifyVia="webhook", destination=sink.url("/f/schedule"),
                          filter='event.trigger == "schedule"')
    api = subscribe(alice, wid, eventType="failure", notifyVia="webhook", destination=sink.url("/f/api"),
                    filter='event.trigger == "api" && event.status == "Failed"')
    assert scheduled["filter"] == 'event.trigger == "schedule"', scheduled
    done = fail_once(alice, wid)
    for sub, path in ((everything, "/f/all"), (api, "/f/api")):
        [rec] = sink.wait(1, path=path)
        assert rec["json"]["executionId"] == done["executionId"], rec
        one_delivered(alice, wid, sub["id"])
    time.sleep(1.0)  # the window in which the filtered-out one must stay silent
    assert deliveries(alice, wid, scheduled["id"]) == [] and sink.posts("/f/schedule") == []
    listed = alice.rest.get(spath(wid))
    assert listed.status == 200, listed
    assert {s["id"] for s in listed.json["subscriptions"]} == {everything["id"], scheduled["id"], api["id"]}, listed.json


def test_in_app_notifications_list_stream_and_read(srv, alice):
    ina = wh.register_and_login(srv, "Ina App")
    name = f"in app {uid()}"
    wf = create_wf(ina, name)
    wid = wf["id"]
    sub = subscribe(ina, wid, eventType="failure", notifyVia="in_app")
    assert sub["notifyVia"] == "in_app" and not sub.get("destination") and sub["userId"] == ina.id, sub
    r = ina.rest.get("/notifications?unreadOnly=true")
    assert r.status == 200 and r.json.get("notifications", []) == [] and int(r.json.get("unreadCount", "0")) == 0, r

    stream = ns.NdjsonStream(srv, "/notifications/stream", ina.token)
    try:
        time.sleep(0.5)  # the stream is open before the event (nothing is sent until a notification)
        done = fail_once(ina, wid)
        t_done = time.time()
        wh.wait_until(lambda: stream.messages(), 10, message=lambda: f"a live notification ({stream.error!r})")
        assert stream.status == 200 and stream.headers.get("content-type", "").startswith("application/x-ndjson"), \
            stream.headers
        [live] = stream.messages()
        assert stream.items[0][0] - t_done < 5, "the notification arrived live"
        d = one_delivered(ina, wid, sub["id"])
        assert live["deliveryId"] == d["id"] and d["channel"] == "in_app", (live, d)
        assert live["executionId"] == done["executionId"] and live["workflowId"] == wid, live
        assert live["event"] == "execution.failed" and name in live["title"], live
        assert done["executionId"] in live["body"] and live["link"] == link_of(done["executionId"]), live
        assert live.get("id") and not live.get("read", False) and live.get("createdAt"), live

        r = ina.rest.get("/notifications?unreadOnly=true")
        assert r.status == 200 and int(r.json["unreadCount"]) == 1, r
        assert [x["id"] for x in r.json["notifications"]] == [live["id"]], r.json
        listed = r.json["notifications"][0]
        assert {k: v for k, v in listed.items() if k != "createdAt"} == \
            {k: v for k, v in live.items() if k != "createdAt"}, (listed, live)
        assert abs(ns_of(listed["createdAt"]) - ns_of(live["createdAt"])) < 0.002, (listed, live)

        second = fail_once(ina, wid)
        wh.wait_until(lambda: len(stream.messages()) == 2, 10, message="the second live notification")
        newer = stream.messages()[1]
        assert newer["executionId"] == second["executionId"], newer
        r = ina.rest.get("/notifications")
        assert [x["id"] for x in r.json["notifications"]] == [newer["id"], live["id"]], r.json  # newest first
        assert int(r.json["unreadCount"]) == 2, r.json

        r = ina.rest.post("/notifications/read", {"ids": [live["id"]]})
        assert r.status == 200 and int(r.json.get("marked", "0")) == 1, r
        r = ina.rest.get("/notifications?unreadOnly=true")
        assert int(r.json["unreadCount"]) == 1 and [x["id"] for x in r.json["notifications"]] == [newer["id"]], r.json
        r = ina.rest.get("/notifications")
        first = {x["id"]: x for x in r.json["notifications"]}[live["id"]]
        assert first["read"] is True and first.get("readAt"), first
        # Again: nothing left to mark; someone else's ids mark nothing.
        assert int(ina.rest.post("/notifications/read", {"ids": [live["id"]]}).json.get("marked", "0")) == 0
        r = alice.rest.post("/notifications/read", {"ids": [newer["id"]]})
        assert r.status == 200 and int(r.json.get("marked", "0")) == 0, r
        assert int(ina.rest.get("/notifications").json["unreadCount"]) == 1
        r = ina.rest.post("/notifications/read", {"all": True})
        assert r.status == 200 and int(r.json.get("marked", "0")) == 1, r
        r = ina.rest.get("/notifications?unreadOnly=true")
        assert int(r.json.get("unreadCount", "0")) == 0 and r.json.get("notifications", []) == [], r.json
        assert_error(ina.rest.post("/notifications/read", {}), 400, INVALID_ARGUMENT)
        assert_error(ina.rest.post("/notifications/read", {"ids": [live["id"]], "all": True}), 400, INVALID_ARGUMENT)
        assert_error(wh.RestClient(srv).get("/notifications"), 401, UNAUTHENTICATED)
        # Alice has none of these.
        assert all(x["workflowId"] != wid for x in alice.rest.get("/notifications").json.get("notifications", []))
        assert len(stream.messages()) == 2 and stream.error is None
    finally:
        stream.close()


def test_deadline_alerts(srv, alice, sink):
    slow = create_wf(alice, f"slow {uid()}", [{"key": "nap", "name": "Nap", "action": "delay",
                                                "config": {"duration": "4s"}}])
    quick = create_wf(alice, f"quick {uid()}", NOOP)
    s_slow = subscribe(alice, slow["id"], events=["execution.deadline"], deadlineSeconds=1, notifyVia="webhook",
                       destination=sink.url("/deadline/slow"))
    assert s_slow["deadlineSeconds"] == 1 and s_slow["events"] == ["execution.deadline"], s_slow
    s_quick = subscribe(alice, quick["id"], events=["execution.deadline"], deadlineSeconds=1, notifyVia="webhook",
                        destination=sink.url("/deadline/quick"))
    t0 = time.time()
    e_slow = execute(alice, slow["id"])
    e_quick = execute(alice, quick["id"])
    try:
        [rec] = sink.wait(1, path="/deadline/slow", timeout=8)
        assert get_exec(alice, slow["id"], e_slow)["status"] == "Running", "the alert came while it still ran"
        assert 0.95 <= rec["at"] - t0 < 4, f"alerted {rec['at'] - t0:.2f}s after the start (deadline 1 s)"
        b = rec["json"]
        assert b["event"] == "execution.deadline" and b["executionId"] == e_slow, b
        assert rec["headers"]["x-weft-event"] == "execution.deadline", rec["headers"]
        assert b["data"]["durationMs"] >= 1000 and slow["name"] in b["subject"], b
        d = one_delivered(alice, slow["id"], s_slow["id"])
        assert d["event"] == "execution.deadline" and d["id"] == b["deliveryId"], d

        assert wait_exec(alice, quick["id"], e_quick)["status"] == "Completed"
        [skipped] = wait_deliveries(alice, quick["id"], s_quick["id"], lambda ds: ds and ds[0]["state"] != "pending",
                                    timeout=8, why="the moot alert to settle")
        assert skipped["state"] == "skipped" and skipped["executionId"] == e_quick, skipped
        assert skipped["attemptLog"][-1]["outcome"] == "skipped", skipped
        assert sink.posts("/deadline/quick") == []
        assert deliveries(alice, quick["id"], s_quick["id"], state="skipped") == [skipped]
    finally:
        alice.rest.post(f"/workflows/{slow['id']}/executions/{e_slow}/cancel", {"reason": "test over"})


# ---------------------------------------------------------------------------
# 7. Secrets
# ---------------------------------------------------------------------------


def test_secrets_never_leave_the_vault(srv, alice, pki, sink):
    tag = secrets.token_hex(5)
    sign1 = f"sign1-{tag}-{secrets.token_hex(10)}"
    sign2 = f"sign2-{tag}-{secrets.token_hex(10)}"
    url_token = f"urltok{tag}{secrets.token_hex(8)}"
    slack_token = f"slacktok{tag}{secrets.token_hex(8)}"
    smtp_pass = f"smtppw-{tag}-{secrets.token_hex(8)}"
    bearer = f"bearer-{tag}-{secrets.token_hex(8)}"
    basic_pw = f"basicpw-{tag}-{secrets.token_hex(8)}"
    api_value = f"apikey-{tag}-{secrets.token_hex(8)}"
    all_secrets = [sign1, sign2, url_token, slack_token, smtp_pass, bearer, basic_pw, api_value]
    responses: list[wh.RestResponse] = []

    def call(r: wh.RestResponse, status: int = 200) -> dict:
        responses.append(r)
        assert r.status == status, r
        return r.json if r.body else {}

    smtp = ns.SmtpSink(pki.server_cert, pki.server_key, {"mailer": smtp_pass})
    try:
        wf = create_wf(alice, f"secretive {uid()}")
        wid = wf["id"]
        made = {
            "hook": call(alice.rest.post(ipath(wid), {"type": "webhook", "name": "hook",
                                                      "webhookUrl": sink.url(f"/in/{url_token}"),
                                                      "config": {"signingSecret": sign1}}), 201),
            "slack": call(alice.rest.post(ipath(wid), {"type": "slack", "name": "slack",
                                                       "webhookUrl": sink.url(f"/services/{slack_token}")}), 201),
            "mail": call(alice.rest.post(ipath(wid), {"type": "smtp", "name": "mail",
                                                      "config": email_config(smtp, pki, "mailer", smtp_pass)}), 201),
            "bearer": call(alice.rest.post(ipath(wid), {"type": "http_auth", "name": "bearer",
                                                        "config": {"scheme": "bearer", "token": bearer}}), 201),
            "basic": call(alice.rest.post(ipath(wid), {"type": "http_auth", "name": "basic",
                                                       "config": {"scheme": "basic", "username": "svc",
                                                                  "password": basic_pw}}), 201),
            "apikey": call(alice.rest.post(ipath(wid), {"type": "http_auth", "name": "apikey",
                                                        "config": {"scheme": "api_key", "header": "X-Api-Key",
                                                                   "value": api_value}}), 201),
        }
        fields = {k: set(v["secretFields"]) for k, v in made.items()}
        assert fields == {"hook": {"signingSecret", "webhookUrl"}, "slack": {"webhookUrl"}, "mail": {"password"},
                          "bearer": {"token"}, "basic": {"password"}, "apikey": {"value"}}, fields
        assert made["mail"]["type"] == "email", made["mail"]  # "smtp" is an alias of email
        assert made["basic"]["config"] == {"scheme": "basic", "username": "svc"}, made["basic"]
        assert made["apikey"]["config"] == {"scheme": "api_key", "header": "X-Api-Key"}, made["apikey"]
        ids = {k: v["id"] for k, v in made.items()}
        assert len(set(ids.values())) == 6
        listed = call(alice.rest.get(ipath(wid)))
        assert {x["id"] for x in listed["integrations"]} == set(ids.values()), listed
        for key, iid in ids.items():
            got = call(alice.rest.get(ipath(wid, iid)))
            assert got == made[key], (got, made[key])

        # The test action of each; the receivers see the real secrets.
        res = call(alice.rest.post(ipath(wid, ids["hook"]) + "/test", {}))
        assert res.get("ok") is True and res.get("statusCode") == 200, res
        [t1] = sink.wait(1, path=f"/in/{url_token}")
        assert t1["headers"]["x-weft-event"] == "test", t1["headers"]
        assert t1["headers"]["x-weft-signature"] == signature(sign1, t1["headers"]["x-weft-timestamp"], t1["body"])
        res = call(alice.rest.post(ipath(wid, ids["slack"]) + "/test", {}))
        assert res.get("ok") is True, res
        sink.wait(1, path=f"/services/{slack_token}")
        res = call(alice.rest.post(ipath(wid, ids["mail"]) + "/test", {"destination": "sec@example.com"}))
        assert res.get("ok") is True, res
        smtp.wait(1, rcpt="sec@example.com")
        assert any(a[2] == smtp_pass and a[3] for a in smtp.auths), "the server logged in with the stored password"
        for key, header in (("bearer", "Authorization"), ("basic", "Authorization"), ("apikey", "X-Api-Key")):
            res = call(alice.rest.post(ipath(wid, ids[key]) + "/test", {}))
            assert res.get("ok") is True and header in res.get("detail", ""), (key, res)

        # PUT without the secrets keeps them; the type cannot change.
        upd = call(alice.rest.put(ipath(wid, ids["hook"]), {"name": "hook renamed", "config": {}}))
        assert upd["name"] == "hook renamed" and set(upd["secretFields"]) == {"signingSecret", "webhookUrl"}, upd
        assert upd["webhookUrl"] == f"http://127.0.0.1:{sink.port}/…" and upd["createdAt"] == made["hook"]["createdAt"]
        assert ns_of(upd["updatedAt"]) >= ns_of(made["hook"]["updatedAt"]), upd
        call(alice.rest.post(ipath(wid, ids["hook"]) + "/test", {}))
        t2 = sink.wait(2, path=f"/in/{url_token}")[1]
        assert t2["headers"]["x-weft-signature"] == signature(sign1, t2["headers"]["x-weft-timestamp"], t2["body"])
        call(alice.rest.put(ipath(wid, ids["hook"]), {"name": "hook", "config": {"signingSecret": sign2}}))
        call(alice.rest.post(ipath(wid, ids["hook"]) + "/test", {}))
        t3 = sink.wait(3, path=f"/in/{url_token}")[2]
        assert t3["headers"]["x-weft-signature"] == signature(sign2, t3["headers"]["x-weft-timestamp"], t3["body"])
        assert t3["headers"]["x-weft-signature"] != signature(sign1, t3["headers"]["x-weft-timestamp"], t3["body"])
        mail_cfg = {k: v for k, v in email_config(smtp, pki, "mailer", None).items()}
        upd = call(alice.rest.put(ipath(wid, ids["mail"]), {"name": "mail", "config": mail_cfg}))
        assert upd["secretFields"] == ["password"], upd
        n_auth = len(smtp.auths)
        res = call(alice.rest.post(ipath(wid, ids["mail"]) + "/test", {"destination": "sec2@example.com"}))
        assert res.get("ok") is True, res
        assert [a[2] for a in smtp.auths[n_auth:] if a[3]] == [smtp_pass], "the kept password was used"
        r = alice.rest.put(ipath(wid, ids["hook"]), {"type": "slack", "name": "hook", "config": {}})
        responses.append(r)
        assert_error(r, 400, INVALID_ARGUMENT, "type")

        # A real delivery through the integration.
        sub = call(alice.rest.post(spath(wid), {"eventType": "failure", "notifyVia": "webhook",
                                                "integrationId": ids["hook"]}), 201)
        fail_once(alice, wid)
        sink.wait(4, path=f"/in/{url_token}")
        one_delivered(alice, wid, sub["id"])
        responses.append(alice.rest.get(spath(wid, sub["id"]) + "/deliveries"))
        responses.append(alice.rest.get(spath(wid)))
        responses.append(alice.rest.get(ipath(wid)))
    finally:
        smtp.close()

    for r in responses:
        for s in all_secrets:
            assert s.encode() not in r.body, f"a secret ({s[:12]}…) in a response: {r}"
    logs = srv.stderr_text() + srv.stdout_tail(10**9)
    for s in all_secrets:
        assert s not in logs, f"a secret ({s[:12]}…) in the server's log"
    files = [p for p in srv.data_dir.rglob("*") if p.is_file()]
    assert any(p.name.endswith(".sqlite") or ".sqlite" in p.name for p in files), files
    for p in files:
        data = p.read_bytes()
        for s in all_secrets:
            assert s.encode() not in data, f"a secret ({s[:12]}…) in the raw bytes of {p.name}"


# ---------------------------------------------------------------------------
# 8. Validation, roles, deleting what is in use
# ---------------------------------------------------------------------------


HOOK_URL = "http://127.0.0.1:9/hook"
GOOD_SECRET = "s" * 24


@pytest.mark.parametrize("body, fields", [
    ({"events": ["execution.exploded"], "notifyVia": "webhook", "destination": HOOK_URL}, ["execution.exploded"]),
    ({"events": ["test"], "notifyVia": "webhook", "destination": HOOK_URL}, ["test"]),
    ({"eventType": "failure", "notifyVia": "email", "destination": "not-an-address"}, ["not-an-address"]),
    ({"eventType": "failure", "notifyVia": "email"}, ["destination"]),
    ({"eventType": "failure", "notifyVia": "webhook", "destination": "ftp://example.com/x"}, ["destination"]),
    ({"eventType": "failure", "notifyVia": "webhook", "destination": "http://u:p@example.com/x"}, ["destination"]),
    ({"eventType": "failure", "notifyVia": "webhook"}, ["destination"]),
    ({"eventType": "failure", "notifyVia": "webhook", "destination": HOOK_URL, "filter": "event.trigger =="},
     ["filter"]),
    ({"events": ["execution.deadline"], "notifyVia": "webhook", "destination": HOOK_URL}, ["deadlineSeconds"]),
    ({"events": ["execution.failed"], "deadlineSeconds": 5, "notifyVia": "webhook", "destination": HOOK_URL},
     ["deadlineSeconds"]),
    ({"notifyVia": "webhook", "destination": HOOK_URL}, ["events"]),
    ({"eventType": "failure", "destination": HOOK_URL}, ["notifyVia"]),
    ({"eventType": "failure", "notifyVia": "pigeon", "destination": HOOK_URL}, ["notifyVia"]),
    ({"eventType": "failure", "notifyVia": "webhook", "destination": HOOK_URL, "colour": "red"}, ["colour"]),
    ({"eventType": "failure", "notifyVia": "in_app", "destination": "someone@example.com"}, ["destination"]),
], ids=["unknown-event", "test-event", "not-an-address", "no-address", "ftp-url", "url-credentials", "no-url",
        "filter-syntax", "deadline-without-seconds", "seconds-without-deadline", "no-events", "no-channel",
        "unknown-channel", "unknown-field", "in-app-destination"])
def test_bad_subscriptions_are_400_naming_the_field(srv, alice, body, fields):
    wf = create_wf(alice)
    assert_error(alice.rest.post(spath(wf["id"]), body), 400, INVALID_ARGUMENT, *fields)
    assert alice.rest.get(spath(wf["id"])).json.get("subscriptions", []) == []


EMAIL_OK = {"host": "127.0.0.1", "port": 2525, "from": "alerts@example.com"}


@pytest.mark.parametrize("body, fields", [
    ({"type": "webhook", "webhookUrl": HOOK_URL, "config": {"signingSecret": GOOD_SECRET, "colour": "red"}},
     ["colour"]),
    ({"type": "webhook", "webhookUrl": HOOK_URL, "config": {}}, ["signingSecret"]),
    ({"type": "webhook", "webhookUrl": HOOK_URL, "config": {"signingSecret": "short"}}, ["signingSecret"]),
    ({"type": "webhook", "webhookUrl": HOOK_URL, "config": {"signingSecret": "x" * 257}}, ["signingSecret"]),
    ({"type": "webhook", "webhookUrl": "ftp://example.com/x", "config": {"signingSecret": GOOD_SECRET}},
     ["webhookUrl"]),
    ({"type": "slack", "webhookUrl": "not a url"}, ["webhookUrl"]),
    ({"type": "slack"}, ["webhookUrl"]),
    ({"type": "slack", "webhookUrl": HOOK_URL, "config": {"icon": ":x:"}}, ["icon"]),
    ({"type": "email", "config": {k: v for k, v in EMAIL_OK.items() if k != "host"}}, ["host"]),
    ({"type": "email", "config": {**EMAIL_OK, "from": "nobody"}}, ["from"]),
    ({"type": "email", "config": {**EMAIL_OK, "tls": "sometimes"}}, ["tls"]),
    ({"type": "email", "config": {**EMAIL_OK, "port": 70000}}, ["port"]),
    ({"type": "email", "config": {**EMAIL_OK, "caCertificate": "not a certificate"}}, ["caCertificate"]),
    ({"type": "email", "config": {**EMAIL_OK, "password": "pw"}}, ["username"]),
    ({"type": "email", "config": {**EMAIL_OK, "verifyCertificate": "yes"}}, ["verifyCertificate"]),
    ({"type": "http_auth", "config": {"scheme": "digest"}}, ["scheme"]),
    ({"type": "http_auth", "config": {"scheme": "bearer"}}, ["token"]),
    ({"type": "http_auth", "config": {"scheme": "basic", "username": "a:b", "password": "x"}}, ["username"]),
    ({"type": "http_auth", "config": {"scheme": "api_key", "header": "Bad Header", "value": "v"}}, ["header"]),
    ({"config": {}}, ["type"]),
    ({"type": "carrier_pigeon"}, ["type"]),
    ({"type": "slack", "webhookUrl": HOOK_URL, "name": "two\nlines"}, ["name"]),
], ids=["unknown-config-key", "no-signing-secret", "short-signing-secret", "long-signing-secret", "ftp-url",
        "bad-url", "no-url", "slack-unknown-key", "email-no-host", "email-bad-from", "email-bad-tls",
        "email-bad-port", "email-bad-ca", "email-password-without-user", "email-verify-not-bool",
        "auth-unknown-scheme", "bearer-without-token", "basic-colon-user", "api-key-bad-header", "no-type",
        "unknown-type", "two-line-name"])
def test_bad_integrations_are_400_naming_the_field(srv, alice, body, fields):
    wf = create_wf(alice)
    assert_error(alice.rest.post(ipath(wf["id"]), body), 400, INVALID_ARGUMENT, *fields)
    assert alice.rest.get(ipath(wf["id"])).json.get("integrations", []) == []


def test_roles_and_unknown_workflows(srv, alice, bob, carol, shared_wf):
    wid = shared_wf["id"]
    hook = {"type": "webhook", "name": "h", "webhookUrl": HOOK_URL, "config": {"signingSecret": GOOD_SECRET}}
    integ = create_integration(alice, wid, **hook)
    sub = subscribe(alice, wid, eventType="failure", notifyVia="webhook", destination=HOOK_URL)
    # A viewer reads, but cannot create anything that sends outside.
    assert_error(bob.rest.post(ipath(wid), hook), 403, PERMISSION_DENIED)
    assert_error(bob.rest.post(spath(wid), {"eventType": "failure", "notifyVia": "webhook", "destination": HOOK_URL}),
                 403, PERMISSION_DENIED)
    assert_error(bob.rest.post(spath(wid), {"eventType": "failure", "notifyVia": "webhook",
                                            "integrationId": integ["id"]}), 403, PERMISSION_DENIED)
    assert_error(bob.rest.put(ipath(wid, integ["id"]), {"name": "mine", "config": {}}), 403, PERMISSION_DENIED)
    assert_error(bob.rest.delete(ipath(wid, integ["id"])), 403, PERMISSION_DENIED)
    assert_error(bob.rest.post(ipath(wid, integ["id"]) + "/test", {}), 403, PERMISSION_DENIED)
    assert_error(bob.rest.delete(spath(wid, sub["id"])), 403, PERMISSION_DENIED)
    r = bob.rest.get(ipath(wid))
    assert r.status == 200 and [x["id"] for x in r.json["integrations"]] == [integ["id"]], r
    assert bob.rest.get(spath(wid, sub["id"]) + "/deliveries").status == 200
    # ... and may have themselves told in-app, and drop that subscription again.
    mine = subscribe(bob, wid, eventType="failure", notifyVia="in_app")
    assert mine["userId"] == bob.id, mine
    r = bob.rest.delete(spath(wid, mine["id"]))
    assert r.status == 204, r
    # Strangers and unknown workflows: 404; no token: 401.
    for user in (carol,):
        assert_error(user.rest.get(ipath(wid)), 404, NOT_FOUND)
        assert_error(user.rest.get(ipath(wid, integ["id"])), 404, NOT_FOUND)
        assert_error(user.rest.post(ipath(wid), hook), 404, NOT_FOUND)
        assert_error(user.rest.get(spath(wid)), 404, NOT_FOUND)
        assert_error(user.rest.get(spath(wid, sub["id"]) + "/deliveries"), 404, NOT_FOUND)
        assert_error(user.rest.post(spath(wid), {"eventType": "failure", "notifyVia": "in_app"}), 404, NOT_FOUND)
    for path in (ipath("wf_doesnotexist"), spath("wf_doesnotexist")):
        assert_error(alice.rest.get(path), 404, NOT_FOUND)
    assert_error(alice.rest.post(ipath("wf_doesnotexist"), hook), 404, NOT_FOUND)
    assert_error(alice.rest.post(spath("wf_doesnotexist"), {"eventType": "failure", "notifyVia": "in_app"}),
                 404, NOT_FOUND)
    assert_error(alice.rest.get(ipath(wid, "int_doesnotexist")), 404, NOT_FOUND)
    assert_error(alice.rest.get(spath(wid, "sub_doesnotexist") + "/deliveries"), 404, NOT_FOUND)
    anon = wh.RestClient(srv)
    assert_error(anon.get(ipath(wid)), 401, UNAUTHENTICATED)
    assert_error(anon.post(spath(wid), {"eventType": "failure", "notifyVia": "in_app"}), 401, UNAUTHENTICATED)
    # An integration of another workflow cannot be used here.
    other = create_wf(alice)
    assert_error(alice.rest.post(spath(other["id"]), {"eventType": "failure", "notifyVia": "webhook",
                                                      "integrationId": integ["id"]}), 404, NOT_FOUND, integ["id"])
    # An integration delivers only its own channel.
    assert_error(alice.rest.post(spath(wid), {"eventType": "failure", "notifyVia": "slack",
                                              "integrationId": integ["id"]}), 400, INVALID_ARGUMENT, integ["id"])


def test_deleting_an_integration_in_use_is_refused(srv, alice):
    wf = create_wf(alice)
    wid = wf["id"]
    integ = create_integration(alice, wid, type="webhook", name="h", webhookUrl=HOOK_URL,
                               config={"signingSecret": GOOD_SECRET})
    iid = integ["id"]
    s1 = subscribe(alice, wid, eventType="failure", notifyVia="webhook", integrationId=iid)
    s2 = subscribe(alice, wid, events=["execution.completed"], notifyVia="webhook", integrationId=iid)
    body = assert_error(alice.rest.delete(ipath(wid, iid)), (400, 409), FAILED_PRECONDITION)
    assert s1["id"] in body["message"] and s2["id"] in body["message"], body
    assert alice.rest.get(ipath(wid, iid)).status == 200
    assert alice.rest.delete(spath(wid, s1["id"])).status == 204
    body = assert_error(alice.rest.delete(ipath(wid, iid)), (400, 409), FAILED_PRECONDITION)
    assert s2["id"] in body["message"] and s1["id"] not in body["message"], body
    assert alice.rest.delete(spath(wid, s2["id"])).status == 204
    assert_error(alice.rest.delete(spath(wid, s2["id"])), 404, NOT_FOUND)
    assert alice.rest.get(spath(wid)).json.get("subscriptions", []) == []
    r = alice.rest.delete(ipath(wid, iid))
    assert r.status == 204, r
    assert_error(alice.rest.get(ipath(wid, iid)), 404, NOT_FOUND)
    assert_error(alice.rest.delete(ipath(wid, iid)), 404, NOT_FOUND)


def test_an_http_auth_integration_lends_a_task_its_credentials_and_stays_while_used(srv, alice, sink):
    """An `http` task names an http_auth integration (config.integration):
    the request carries its header, the execution shows no secret, and the
    integration cannot be deleted while the workflow's tasks use it."""
    token = "tok-" + secrets.token_hex(12)
    wf = create_wf(alice, tasks=NOOP)
    wid = wf["id"]
    integ = create_integration(alice, wid, type="http_auth", name="api", config={"scheme": "bearer", "token": token})
    tasks = [{"key": "call", "name": "Call", "action": "http", "retry": {"maxAttempts": 1},
              "config": {"url": sink.url("/api/call"), "method": "POST", "integration": integ["id"]}}]
    r = alice.rest.put(f"/workflows/{wid}", {"name": wf["name"], "tasks": tasks})
    assert r.status == 200, r
    done = wait_exec(alice, wid, execute(alice, wid))
    assert done["status"] == "Completed", done
    [rec] = sink.posts("/api/call")
    assert rec["headers"].get("authorization") == f"Bearer {token}", rec["headers"]
    r = alice.rest.get(f"/workflows/{wid}/executions/{done['executionId']}")
    logs = alice.rest.get(f"/workflows/{wid}/executions/{done['executionId']}/logs?pageSize=1000")
    assert token.encode() not in r.body and token.encode() not in logs.body, (r, logs)
    body = assert_error(alice.rest.delete(ipath(wid, integ["id"])), (400, 409), FAILED_PRECONDITION)
    assert "call" in body["message"], body
    r = alice.rest.put(f"/workflows/{wid}", {"name": wf["name"], "tasks": NOOP})
    assert r.status == 200, r
    assert alice.rest.delete(ipath(wid, integ["id"])).status == 204


# ---------------------------------------------------------------------------
# 9. Templates
# ---------------------------------------------------------------------------


def test_templates_override_preview_and_restore(srv, sink):
    tina = wh.register_and_login(srv, "Tina Templates")  # her own organization: overrides touch no other test
    org = wh.own_org_id(srv, tina.token)
    tpath = f"/orgs/{org}/notification-templates"
    r = tina.rest.get(tpath)
    assert r.status == 200, r
    builtin = {t["event"]: t for t in r.json["templates"]}
    assert {"execution.failed", "execution.completed", "execution.started", "execution.deadline", "task.failed",
            "schedule.tick_missed"} <= set(builtin), builtin.keys()
    failed_builtin = builtin["execution.failed"]
    assert not failed_builtin.get("custom", False) and "{{workflow.name}}" in failed_builtin["subject"].replace(" ", ""), \
        failed_builtin

    name = f"templated {uid()}"
    wf = create_wf(tina, name)
    wid = wf["id"]
    sub = subscribe(tina, wid, eventType="failure", notifyVia="webhook", destination=sink.url("/t"))
    past = fail_once(tina, wid)
    [before] = sink.wait(1, path="/t")
    assert norm(before["json"]["subject"]) != norm(f"{name} broke: {past['error']}"), before["json"]

    override = {"subject": "{{workflow.name}} broke: {{execution.error}}"}
    r = tina.rest.put(f"{tpath}/execution.failed", override)
    assert r.status == 200, r
    put = r.json
    assert put["event"] == "execution.failed" and put["custom"] is True and put["subject"] == override["subject"], put
    assert put["text"] == failed_builtin["text"] and put["html"] == failed_builtin["html"], put  # parts left empty
    listed = {t["event"]: t for t in tina.rest.get(tpath).json["templates"]}
    assert listed["execution.failed"]["custom"] is True and listed["execution.failed"]["subject"] == override["subject"]
    assert not listed["execution.completed"].get("custom", False)

    # Preview against the past execution, with the override and with drafts.
    r = tina.rest.post("/notification-templates/preview", {"executionId": past["executionId"],
                                                          "event": "execution.failed"})
    assert r.status == 200, r
    assert r.json["subject"] == f"{name} broke: {past['error']}", (r.json, past["error"])
    assert past["executionId"] in r.json["text"], r.json
    r = tina.rest.post("/notification-templates/preview", {
        "executionId": past["executionId"], "event": "execution.failed",
        "subject": "{{execution.id}} via {{execution.trigger}}", "text": "<{{workflow.name}}>", "channel": "webhook"})
    assert r.status == 200, r
    assert r.json["subject"] == f"{past['executionId']} via api" and r.json["text"] == f"<{name}>", r.json
    payload = json.loads(r.json["payload"])
    assert payload["subject"] == r.json["subject"] and payload["executionId"] == past["executionId"], payload
    assert payload["link"] == link_of(past["executionId"]), payload
    r = tina.rest.post("/notification-templates/preview", {"executionId": past["executionId"],
                                                          "event": "execution.failed", "channel": "slack"})
    assert r.status == 200, r
    assert json.loads(r.json["payload"])["blocks"][0]["text"]["text"] == f"{name} broke: {past['error']}"[:150]
    assert_error(tina.rest.post("/notification-templates/preview", {
        "executionId": past["executionId"], "event": "execution.failed", "subject": "{{execution.nope}}"}),
        400, INVALID_ARGUMENT, "execution.nope")
    assert_error(tina.rest.post("/notification-templates/preview", {
        "executionId": past["executionId"], "event": "execution.failed", "channel": "pigeon"}),
        400, INVALID_ARGUMENT, "pigeon")
    assert_error(tina.rest.post("/notification-templates/preview", {"executionId": "exe_doesnotexist",
                                                                   "event": "execution.failed"}), 404, NOT_FOUND)
    outsider = wh.register_and_login(srv, "Outsider Templates")
    assert_error(outsider.rest.post("/notification-templates/preview", {"executionId": past["executionId"],
                                                                       "event": "execution.failed"}), 404, NOT_FOUND)
    # Only the organization's admins change its templates.
    r = outsider.rest.put(f"{tpath}/execution.failed", {"subject": "hijacked {{workflow.name}}"})
    assert r.status in (403, 404), r

    # Unknown placeholders and events are refused; nothing changes.
    assert_error(tina.rest.put(f"{tpath}/execution.failed", {"subject": "{{workflow.nmae}} broke"}),
                 400, INVALID_ARGUMENT, "workflow.nmae")
    assert_error(tina.rest.put(f"{tpath}/execution.failed", {"text": "{{ secrets.TOKEN }}"}),
                 400, INVALID_ARGUMENT, "secrets.TOKEN")
    assert_error(tina.rest.put(f"{tpath}/execution.exploded", {"subject": "x"}), 400, INVALID_ARGUMENT,
                 "execution.exploded")
    assert {t["event"]: t for t in tina.rest.get(tpath).json["templates"]} == listed

    # The next delivery uses the override.
    nxt = fail_once(tina, wid)
    recs = sink.wait(2, path="/t")
    after = [x for x in recs if x["json"]["executionId"] == nxt["executionId"]]
    assert len(after) == 1 and after[0]["json"]["subject"] == f"{name} broke: {nxt['error']}", after

    # DELETE restores the built-in, for listing and delivery.
    r = tina.rest.delete(f"{tpath}/execution.failed")
    assert r.status == 204, r
    restored = {t["event"]: t for t in tina.rest.get(tpath).json["templates"]}["execution.failed"]
    assert restored == failed_builtin, (restored, failed_builtin)
    assert_error(tina.rest.delete(f"{tpath}/execution.failed"), 404, NOT_FOUND)
    last = fail_once(tina, wid)
    recs = sink.wait(3, path="/t")
    [again] = [x for x in recs if x["json"]["executionId"] == last["executionId"]]
    assert again["json"]["subject"] != f"{name} broke: {last['error']}", again["json"]
    assert again["json"]["subject"] == before["json"]["subject"].replace(past["error"], last["error"]), \
        (again["json"]["subject"], before["json"]["subject"])
    wait_deliveries(tina, wid, sub["id"], lambda ds: len(ds) == 3 and all(d["state"] == "delivered" for d in ds),
                    why="all three delivered")
