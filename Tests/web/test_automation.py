"""The automation pages: schedules (live preview, pause/resume, edit,
delete), webhook and event triggers (a signed delivery to the URL the page
shows starts an execution), notifications (an integration's test reaches a
local sink; a subscription's deliveries are listed)."""

from __future__ import annotations

import hashlib
import hmac
import json
import queue
import re
import threading
import time
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from playwright.sync_api import expect

from conftest import api, expected_http_errors, shot

# Integrations deliver to a sink on 127.0.0.1 (the egress guard refuses
# loopback addresses unless re-opened).
SERVER_ARGS = ("--egress-allow", "127.0.0.1")

LIVE = 15_000  # ms: previews, deliveries and other live things on a slow machine


def make_workflow(user, name: str) -> dict:
    return api(user, "POST", "/workflows", {
        "name": f"{name} {int(time.time() * 1000) % 10_000_000}",
        "tasks": [{"name": "step", "action": "noop", "config": {"output": {"ok": True}}}],
    })


def schedules_of(user, wf_id: str) -> list:
    return api(user, "GET", f"/workflows/{wf_id}/schedules")["schedules"]


def open_page(page, wf: dict, tab: str):
    page.goto(f"/#/workflows/{wf['id']}/{tab}")
    expect(page.get_by_role("heading", level=1, name=wf["name"])).to_be_visible()
    expect(page.get_by_role("navigation", name="Workflow").get_by_role("link", name=tab.capitalize())).to_have_attribute("aria-current", "page")




def row(page, text: str):
    return page.get_by_role("row").filter(has_text=text)


def confirm(page, name="Delete"):
    dlg = page.get_by_role("dialog")
    expect(dlg).to_be_visible()
    dlg.get_by_role("button", name=name, exact=True).click()
    expect(dlg).to_have_count(0)


# ---------------------------------------------------------------- schedules

def test_schedules(signed_in, user):
    page = signed_in
    wf = make_workflow(user, "scheduled")
    open_page(page, wf, "schedules")
    expect(page.get_by_text("No schedules yet.")).to_be_visible()

    # Add: the next five fire times are previewed while typing, before saving.
    page.get_by_role("button", name="Add schedule").click()
    form = page.locator("form.auto-form")
    expect(form.get_by_role("heading", name="New schedule")).to_be_visible()
    cron = page.get_by_label("Cron expression")
    zone = page.get_by_label("Time zone")
    expect(zone).not_to_have_value("")  # defaults to the browser's zone
    cron.fill("*/5 * * * *")
    zone.fill("Europe/Berlin")
    times = page.get_by_role("list", name="Next fire times").get_by_role("listitem")
    expect(times).to_have_count(5, timeout=LIVE)
    # The preview is the server's, in Berlin's wall-clock time, every 5 minutes.
    expect(form.get_by_text("Normalized: 0 */5 * * * *")).to_be_visible(timeout=LIVE)
    stamps = times.locator("time").evaluate_all("els => els.map(e => e.getAttribute('datetime'))")
    assert len(stamps) == 5
    for s in stamps:
        assert re.search(r"T\d\d:\d\d:00(\.\d+)?\+0[12]:00$", s), s
        assert int(s[14:16]) % 5 == 0, s
    shot(page, "schedule-form")

    page.get_by_role("button", name="Create schedule").click()
    expect(form).to_have_count(0)
    listed = row(page, "*/5 * * * *")
    expect(listed).to_be_visible()
    expect(listed).to_contain_text("Europe/Berlin")
    expect(listed).to_contain_text("active")
    expect(listed.locator("td[data-label='Next fire'] time")).to_have_attribute("datetime", re.compile(r"^\d{4}-"))
    expect(listed.locator("td[data-label='Next fire']")).to_contain_text(re.compile(r"in \d+ (s|min)|\d s ago"))
    [saved] = schedules_of(user, wf["id"])
    assert saved["cron"] == "*/5 * * * *" and saved["timezone"] == "Europe/Berlin"
    assert saved["paused"] is False and saved["nextRunAt"]
    assert saved["overlapPolicy"] == "skip" and saved["catchupPolicy"] == "run_once"
    shot(page, "schedules")

    # A bad expression: the server's message next to the cron field, nothing created.
    page.get_by_role("button", name="Add schedule").click()
    cron = page.get_by_label("Cron expression")
    cron.fill("61 * * * *")
    page.get_by_label("Time zone").fill("UTC")
    with page.expect_response(lambda r: r.url.endswith(f"/workflows/{wf['id']}/schedules") and r.request.method == "POST") as answer:
        page.get_by_role("button", name="Create schedule").click()
    assert answer.value.status == 400
    expect(cron).to_have_attribute("aria-invalid", "true")
    expect(cron).to_have_accessible_description(re.compile(r'cron: minute field "61" is out of range 0-59'))
    assert len(schedules_of(user, wf["id"])) == 1
    # An unknown zone goes next to the time zone field (the live preview says so).
    page.get_by_label("Time zone").fill("Mars/Base")
    cron.fill("*/5 * * * *")
    expect(page.get_by_label("Time zone")).to_have_accessible_description(re.compile(r'unknown time zone "Mars/Base"'), timeout=LIVE)
    page.get_by_role("button", name="Cancel").click()
    expect(page.locator("form.auto-form")).to_have_count(0)

    # Pause and resume.
    listed.get_by_role("button", name="Pause").click()
    expect(listed).to_contain_text("paused")
    expect(listed).to_contain_text("none while paused")
    [paused] = schedules_of(user, wf["id"])
    assert paused["paused"] is True and "nextRunAt" not in paused
    listed.get_by_role("button", name="Resume").click()
    expect(listed).to_contain_text("active")
    [resumed] = schedules_of(user, wf["id"])
    assert resumed["paused"] is False and resumed["nextRunAt"]

    # Edit the expression (the form starts with the saved values).
    listed.get_by_role("button", name="Edit").click()
    expect(page.get_by_role("heading", name="Edit schedule")).to_be_visible()
    cron = page.get_by_label("Cron expression")
    expect(cron).to_have_value("*/5 * * * *")
    expect(page.get_by_label("Time zone")).to_have_value("Europe/Berlin")
    cron.fill("0 9 * * MON-FRI")
    expect(page.get_by_text("Normalized: 0 0 9 * * MON-FRI")).to_be_visible(timeout=LIVE)
    expect(page.get_by_role("list", name="Next fire times").get_by_role("listitem")).to_have_count(5)
    page.get_by_role("button", name="Save changes").click()
    edited_row = row(page, "0 9 * * MON-FRI")
    expect(edited_row).to_be_visible()
    expect(row(page, "*/5 * * * *")).to_have_count(0)
    [edited] = schedules_of(user, wf["id"])
    assert edited["id"] == saved["id"] and edited["cron"] == "0 9 * * MON-FRI" and edited["timezone"] == "Europe/Berlin"

    # Delete, after confirming.
    edited_row.get_by_role("button", name="Delete").click()
    confirm(page)
    expect(page.get_by_text("No schedules yet.")).to_be_visible()
    assert schedules_of(user, wf["id"]) == []
    expected_http_errors(page, 400)  # the bad cron and time zone, on purpose


# ----------------------------------------------------------------- triggers

def deliver(url: str, secret: str | None, payload: dict):
    body = json.dumps(payload, separators=(",", ":")).encode()
    headers = {"content-type": "application/json"}
    if secret:
        ts = str(int(time.time()))
        sig = hmac.new(secret.encode(), ts.encode() + b"." + body, hashlib.sha256).hexdigest()
        headers.update({"X-Weft-Timestamp": ts, "X-Weft-Signature": "sha256=" + sig})
    req = urllib.request.Request(url, data=body, method="POST", headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, json.load(r)
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"{}")


def test_triggers(signed_in, user, weft):
    page = signed_in
    wf = make_workflow(user, "hooked")
    open_page(page, wf, "triggers")
    expect(page.get_by_text("No triggers yet.")).to_be_visible()

    # A signed webhook: its URL and how to sign are shown once created.
    secret = "whsec_test_5d2c8e1a9b7f4360"
    page.get_by_role("button", name="Add trigger").click()
    expect(page.get_by_label("Type", exact=True)).to_have_value("webhook")
    page.get_by_label("Description (optional)").fill("orders from the shop")
    page.get_by_label("Signing secret (optional)", exact=True).fill("too short")
    page.get_by_role("button", name="Create trigger").click()
    expect(page.get_by_label("Signing secret (optional)", exact=True)).to_have_accessible_description(re.compile("16 to 256 bytes"))
    page.get_by_label("Signing secret (optional)", exact=True).fill(secret)
    page.get_by_role("button", name="Create trigger").click()
    created = page.get_by_role("region", name="Webhook trigger created")
    expect(created).to_be_visible()
    url_field = created.get_by_label("Hook URL")
    expect(url_field).to_have_value(re.compile(re.escape(weft.url) + r"/hooks/hk_[0-9a-f]{32}$"))
    url = url_field.input_value()
    expect(created).to_contain_text("x-weft-signature: sha256=")
    expect(created).to_contain_text("x-weft-timestamp")
    expect(created.get_by_label("Signing secret (shown only now)")).to_have_value(secret)
    created.get_by_role("button", name="Copy").first.click()
    expect(created.get_by_role("status").first).to_have_text(re.compile("Copied|Selected"))
    [trigger] = api(user, "GET", f"/workflows/{wf['id']}/triggers")["triggers"]
    assert trigger["type"] == "webhook" and trigger["signed"] is True and url.endswith(trigger["url"])
    assert secret not in json.dumps(trigger)
    expect(row(page, "orders from the shop")).to_contain_text("Signed: x-weft-signature")

    # The URL works: a signed POST starts an execution; an unsigned one is refused.
    status, _ = deliver(url, None, {"orderId": "A-0"})
    assert status == 401
    status, answer = deliver(url, secret, {"orderId": "A-1001", "amount": 250})
    assert status == 202, answer
    executions = api(user, "GET", f"/workflows/{wf['id']}/executions")["executions"]
    started = [e for e in executions if e["executionId"] == answer["executionId"]]
    assert started and started[0]["trigger"] == "webhook" and started[0]["triggerId"] == trigger["id"]
    created.get_by_role("button", name="Done").click()
    expect(created).to_have_count(0)

    # Without the Clipboard API the Copy button selects the URL instead (no console error).
    page.evaluate("Object.defineProperty(navigator, 'clipboard', {value: undefined, configurable: true})")
    listed = row(page, "orders from the shop")
    listed.get_by_role("button", name="Copy").click()
    expect(listed.get_by_role("status")).to_have_text(re.compile("Copied|Selected"))
    selected = page.evaluate("() => { const e = document.activeElement; return e.value.slice(e.selectionStart, e.selectionEnd); }")
    assert selected == url

    # An event trigger; the server's filter error lands next to the filter.
    page.get_by_role("button", name="Add trigger").click()
    page.get_by_label("Type", exact=True).select_option("event")
    page.get_by_label("Event name").fill("order.created")
    page.get_by_label("Filter (optional)").fill("event.amount >")
    page.get_by_role("button", name="Create trigger").click()
    expect(page.get_by_label("Filter (optional)")).to_have_accessible_description(re.compile("^filter: "))
    page.get_by_label("Filter (optional)").fill("event.amount > 100")
    page.get_by_role("button", name="Create trigger").click()
    expect(page.get_by_role("region", name="Event trigger created")).to_be_visible()
    expect(row(page, "order.created")).to_contain_text("event.amount > 100")
    triggers = api(user, "GET", f"/workflows/{wf['id']}/triggers")["triggers"]
    assert sorted(t["type"] for t in triggers) == ["event", "webhook"]
    shot(page, "triggers")

    # Delete the webhook: its URL stops working.
    row(page, "orders from the shop").get_by_role("button", name="Delete").click()
    confirm(page)
    expect(row(page, "orders from the shop")).to_have_count(0)
    assert [t["type"] for t in api(user, "GET", f"/workflows/{wf['id']}/triggers")["triggers"]] == ["event"]
    status, _ = deliver(url, secret, {"orderId": "A-1002"})
    assert status == 404
    expected_http_errors(page, 400)  # the bad filter, on purpose


# ------------------------------------------------------------ notifications

class Sink:
    """A local HTTP receiver: every POST is queued as (headers, body)."""

    def __init__(self):
        self.received: queue.Queue = queue.Queue()
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                sink.received.put(({k.lower(): v for k, v in self.headers.items()}, body))
                self.send_response(204)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/weft-hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def next(self, event: str, timeout: float = 30):
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            assert left > 0, f"the sink received no {event!r}"
            headers, body = self.received.get(timeout=left)
            if headers.get("x-weft-event") == event:
                return headers, body

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def sink():
    s = Sink()
    yield s
    s.close()


def test_notifications(signed_in, user, sink):
    page = signed_in
    wf = make_workflow(user, "notified")
    open_page(page, wf, "notifications")
    expect(page.get_by_text("No subscriptions yet.")).to_be_visible()
    expect(page.get_by_text("No integrations yet.")).to_be_visible()
    base = f"/workflows/{wf['id']}"

    # A webhook integration to the local sink; its secret goes in a password input.
    secret = "whsec_notify_5d2c8e1a9b7f4360"
    page.get_by_role("button", name="Add integration").click()
    expect(page.get_by_label("Type", exact=True)).to_have_value("webhook")
    page.get_by_label("Name", exact=True).fill("sink")
    page.get_by_label("Webhook URL").fill(sink.url)
    signing = page.get_by_label("Signing secret", exact=True)
    expect(signing).to_have_attribute("type", "password")
    signing.fill(secret)
    page.get_by_role("button", name="Create integration").click()
    listed = row(page, "sink")
    expect(listed).to_be_visible()
    expect(listed).to_contain_text("http://127.0.0.1:")
    [integration] = api(user, "GET", f"{base}/integrations")["integrations"]
    assert integration["type"] == "webhook" and sorted(integration["secretFields"]) == ["signingSecret", "webhookUrl"]
    assert secret not in json.dumps(integration) and secret not in page.content()

    # Test: the sink gets a signed test message and the page says it worked.
    listed.get_by_role("button", name="Test").click()
    headers, body = sink.next("test")
    expected = "sha256=" + hmac.new(secret.encode(), headers["x-weft-timestamp"].encode() + b"." + body, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(headers["x-weft-signature"], expected)
    result = page.locator(".test-result")
    expect(result).to_contain_text("Test succeeded", timeout=LIVE)
    expect(result).to_contain_text("status 204")

    # Edit keeps the sealed secrets when their inputs stay empty.
    listed.get_by_role("button", name="Edit").click()
    expect(page.get_by_label("Type", exact=True)).to_be_disabled()
    expect(page.get_by_label("Signing secret", exact=True)).to_have_value("")
    page.get_by_label("Name", exact=True).fill("sink 2")
    page.get_by_role("button", name="Save changes").click()
    expect(row(page, "sink 2")).to_be_visible()
    [integration] = api(user, "GET", f"{base}/integrations")["integrations"]
    assert integration["name"] == "sink 2" and sorted(integration["secretFields"]) == ["signingSecret", "webhookUrl"]

    # A subscription to completions through the integration; a bad filter first.
    page.get_by_role("button", name="Add subscription").click()
    page.get_by_role("button", name="None", exact=True).click()
    page.get_by_label("execution.completed").check()
    page.get_by_label("Channel", exact=True).select_option("webhook")
    page.get_by_label("Integration", exact=True).select_option(integration["id"])
    expect(page.get_by_label("Webhook URL")).to_be_hidden()
    page.get_by_label("Filter (optional)").fill("event.durationMs >")
    page.get_by_role("button", name="Create subscription").click()
    expect(page.get_by_label("Filter (optional)")).to_have_accessible_description(re.compile("^filter: "))
    assert api(user, "GET", f"{base}/subscriptions")["subscriptions"] == []
    page.get_by_label("Filter (optional)").fill("")
    page.get_by_role("button", name="Create subscription").click()
    sub_row = row(page, "execution.completed")
    expect(sub_row).to_be_visible()
    expect(sub_row).to_contain_text("via sink 2")
    [sub] = api(user, "GET", f"{base}/subscriptions")["subscriptions"]
    assert sub["events"] == ["execution.completed"] and sub["notifyVia"] == "webhook" and sub["integrationId"] == integration["id"]

    # A run completes: the sink hears of it and the deliveries list shows it.
    run = api(user, "POST", f"{base}/execute", {"input": {}}, expect=(202,))
    headers, body = sink.next("execution.completed")
    assert json.loads(body)["executionId"] == run["executionId"]
    sub_row.get_by_role("button", name="Deliveries").click()
    panel = page.get_by_role("region", name=re.compile("^Deliveries"))
    expect(panel.get_by_role("row").filter(has_text=run["executionId"])).to_contain_text("delivered", timeout=LIVE)
    shot(page, "notifications")

    # Delete the subscription, then the integration (no longer in use).
    sub_row.get_by_role("button", name="Delete").click()
    confirm(page)
    expect(page.get_by_text("No subscriptions yet.")).to_be_visible()
    assert api(user, "GET", f"{base}/subscriptions")["subscriptions"] == []
    row(page, "sink 2").get_by_role("button", name="Delete").click()
    confirm(page)
    expect(page.get_by_text("No integrations yet.")).to_be_visible()
    assert api(user, "GET", f"{base}/integrations")["integrations"] == []
    expected_http_errors(page, 400)  # the bad filter, on purpose


# -------------------------------------------------------------------- phone

def test_automation_pages_on_a_phone(signed_in_phone, user):
    page = signed_in_phone
    wf = make_workflow(user, "phone")
    api(user, "POST", f"/workflows/{wf['id']}/schedules", {"cron": "0 9 * * MON-FRI", "timezone": "Europe/Berlin"})
    api(user, "POST", f"/workflows/{wf['id']}/triggers", {"type": "webhook"})
    for tab in ("schedules", "triggers", "notifications"):
        open_page(page, wf, tab)
        if tab == "schedules":
            expect(row(page, "0 9 * * MON-FRI")).to_be_visible()
            page.get_by_role("button", name="Add schedule").click()
            page.get_by_label("Cron expression").fill("@daily")
            expect(page.get_by_role("list", name="Next fire times").get_by_role("listitem")).to_have_count(5, timeout=LIVE)
        elif tab == "triggers":
            expect(page.get_by_label("Hook URL")).to_be_visible()
        else:
            page.get_by_role("button", name="Add subscription").click()
            expect(page.get_by_label("execution.failed")).to_be_checked()
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= 390, f"{tab}: the page scrolls sideways ({width} px)"
        shot(page, f"{tab}-phone")
