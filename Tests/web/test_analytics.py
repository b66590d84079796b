"""Browser tests: a workflow's statistics, insights and budget
(#/workflows/:id/stats) and the system-wide trends with the organization
budget (#/analytics), checked against what the REST API answers for the
same questions (docs/ANALYTICS.md)."""

from __future__ import annotations

import re
import uuid
from decimal import ROUND_HALF_UP, Decimal

import pytest
from playwright.sync_api import expect

import weft_helpers as wh
from conftest import PASSWORD, api, expected_http_errors, shot, sign_in

LIVE = 15_000  # ms, for things that depend on the engine or a slow machine
TERMINAL = {"Completed", "Failed", "Cancelled", "TimedOut"}

#: prepare (noop) -> shape (transform) -> report (noop). `shape` reads
#: {{ input.x.y }}: it completes with input {"x": {"y": 1}} and fails at
#: once (a template through a missing field, kind `config`) without input.
TASKS = [
    {"key": "prepare", "name": "Prepare", "action": "noop"},
    {"key": "shape", "name": "Shape", "action": "transform", "dependsOn": ["prepare"],
     "config": {"output": {"v": "{{ input.x.y }}"}}, "retry": {"maxAttempts": 1}},
    {"key": "report", "name": "Report", "action": "noop", "dependsOn": ["shape"]},
]
SUCCEEDS = {"x": {"y": 1}}
RUNS_OK, RUNS_FAILED = 10, 3




def pct(x) -> str:
    """The page's percentage: JavaScript's (x * 100).toFixed(1), half away from zero."""
    return f"{Decimal(float(x) * 100).quantize(Decimal('0.1'), rounding=ROUND_HALF_UP)} %"


def top_shot(page, name):
    """A full-page screenshot from the top (a scrolled page would show the sticky top bar mid-page)."""
    page.evaluate("window.scrollTo(0, 0)")
    shot(page, name)


def kpi(page, key):
    return page.locator(f'[data-kpi="{key}"] .kpi-value')


def field_error(page, label):
    """The error box tied to the control labelled `label` (aria-describedby)."""
    control = page.get_by_label(label, exact=True)
    return page.locator(f'[id="{control.get_attribute("aria-describedby")}"]')


@pytest.fixture(scope="module")
def history(weft, user):
    """A workflow run RUNS_OK times successfully and RUNS_FAILED times with a
    failing task, all ended."""
    wf = api(user, "POST", "/workflows", {"name": f"stats {uuid.uuid4().hex[:6]}", "tasks": TASKS})
    wid = wf["id"]
    ids = [api(user, "POST", f"/workflows/{wid}/execute", {"input": SUCCEEDS}, expect=(202,))["executionId"] for _ in range(RUNS_OK)]
    ids += [api(user, "POST", f"/workflows/{wid}/execute", {}, expect=(202,))["executionId"] for _ in range(RUNS_FAILED)]

    def ended():
        statuses = [api(user, "GET", f"/workflows/{wid}/executions/{e}")["status"] for e in ids]
        return statuses if all(s in TERMINAL for s in statuses) else None

    statuses = wh.wait_until(ended, 30, interval=0.2, message="every execution to end")
    assert statuses.count("Completed") == RUNS_OK and statuses.count("Failed") == RUNS_FAILED, statuses
    # The rollups are written in the transaction that ends each execution.
    stats = api(user, "GET", f"/workflows/{wid}/stats?window=day")
    assert int(stats["finished"]) == RUNS_OK + RUNS_FAILED, stats
    return {"wf": wf, "wid": wid}


def open_stats(page, wid, name):
    page.goto(f"/#/workflows/{wid}/stats")
    expect(page.get_by_role("heading", level=1, name=name)).to_be_visible()
    expect(page.locator(".stats-body")).to_have_attribute("aria-busy", "false", timeout=LIVE)


# ---------------------------------------------------------------------------
# Statistics and insights
# ---------------------------------------------------------------------------


def test_stats_match_the_api(signed_in, user, history):
    page, wid = signed_in, history["wid"]
    stats = api(user, "GET", f"/workflows/{wid}/stats?window=day")
    open_stats(page, wid, history["wf"]["name"])
    expect(page.locator('nav.tabs a[aria-current="page"]')).to_have_text("Statistics")
    expect(page.get_by_label("Window", exact=True)).to_have_value("day")

    expect(kpi(page, "executions")).to_have_text(str(int(stats["totalExecutions"])))
    expect(kpi(page, "success-rate")).to_have_text(pct(stats["successRate"]))
    expect(kpi(page, "retry-rate")).to_have_text(pct(stats["retryRate"]))
    assert int(stats["totalExecutions"]) == RUNS_OK + RUNS_FAILED
    bars = page.get_by_role("list", name="Executions by status")
    expect(bars.get_by_role("listitem").filter(has_text="Completed")).to_contain_text(f"{int(stats['completed'])} (")
    expect(bars.get_by_role("listitem").filter(has_text="Failed")).to_contain_text(f"{int(stats['failed'])} (")

    # Charts drew SVG: the duration strips (rects, paths) and the per-version bars.
    body = page.locator(".stats-body")
    expect(body.locator("figure.box-strip svg[role=img] rect").first).to_be_visible()
    expect(body.locator("figure.box-strip svg[role=img] path").first).to_be_attached()
    strip = body.get_by_role("img", name=re.compile(r"^Execution duration: p50 "))
    expect(strip).to_be_visible()
    expect(body.locator("figure.bar-chart svg rect.bar").first).to_be_visible()

    # One table row per task, with the API's numbers.
    assert {t["taskKey"] for t in stats["tasks"]} == {"prepare", "shape", "report"}
    for t in stats["tasks"]:
        row = body.locator(f'table.task-stats tr[data-task="{t["taskKey"]}"]')
        expect(row).to_be_visible()
        expect(row.locator('td[data-label="Runs"]')).to_have_text(str(int(t["runs"])))
        expect(row.locator('td[data-label="Failures"]')).to_have_text(str(int(t["failed"])))
    # Sorting: Runs (most first), then again (fewest first).
    runs_header = body.locator("table.task-stats th").filter(has=page.get_by_role("button", name="Runs", exact=True))
    runs_header.get_by_role("button").click()
    expect(runs_header).to_have_attribute("aria-sort", "descending")
    order = sorted(stats["tasks"], key=lambda t: (-int(t["runs"]), t["taskKey"]))
    expect(body.locator("table.task-stats tbody tr")).to_have_count(len(order))
    assert body.locator("table.task-stats tbody tr").evaluate_all("rs => rs.map(r => r.dataset.task)") == [t["taskKey"] for t in order]
    runs_header.get_by_role("button").click()
    expect(runs_header).to_have_attribute("aria-sort", "ascending")
    # Most failing: shape failed RUNS_FAILED of its runs.
    assert stats["mostFailingTasks"] == ["shape"], stats["mostFailingTasks"]
    expect(page.get_by_role("list", name="Tasks by failure rate")).to_contain_text("shape")

    # "Show data" reveals the chart's table.
    fig = body.locator("figure.box-strip").first
    toggle = fig.get_by_role("button", name="Show data")
    toggle.click()
    expect(fig.get_by_role("button", name="Hide data")).to_have_attribute("aria-expanded", "true")
    expect(fig.locator(".chart-data table")).to_be_visible()
    expect(fig.locator(".chart-data table")).to_contain_text(re.compile(r"p95"))
    top_shot(page, "stats")

    # Another window: the page asks the API again.
    page.get_by_label("Window", exact=True).select_option("hour")
    hour = api(user, "GET", f"/workflows/{wid}/stats?window=hour")
    expect(kpi(page, "executions")).to_have_text(str(int(hour["totalExecutions"])))
    assert "window=hour" in page.url
    # One version: the version filter asks for it.
    page.get_by_label("Version", exact=True).select_option("1")
    v1 = api(user, "GET", f"/workflows/{wid}/stats?window=hour&version=1")
    expect(kpi(page, "success-rate")).to_have_text(pct(v1["successRate"]))
    expect(page).to_have_url(re.compile(r"version=1"))
    expect(body.locator("table.task-stats tbody tr")).to_have_count(len(v1["tasks"]))


def test_insights_match_the_api(signed_in, user, history):
    page, wid = signed_in, history["wid"]
    ins = api(user, "GET", f"/workflows/{wid}/insights?window=week")
    open_stats(page, wid, history["wf"]["name"])
    box = page.locator(".insights-body")
    expect(box).to_have_attribute("aria-busy", "false", timeout=LIVE)
    expected = 1 + (1 if ins.get("bottleneck") else 0) + len(ins["flakyTasks"]) + len(ins["suggestions"]) + len(ins["anomalies"])
    expect(box.locator("article.insight")).to_have_count(expected)
    next_run = box.locator('article.insight[data-kind="next_run"]')
    expect(next_run).to_contain_text(ins["nextRun"]["explanation"])
    if expected == 1:
        expect(box.locator(".insights-empty")).to_be_visible()
    else:
        expect(box.locator(".insights-empty")).to_have_count(0)
    if ins.get("bottleneck"):
        card = box.locator('article.insight[data-kind="bottleneck"]')
        expect(card).to_contain_text(ins["bottleneck"]["taskKey"])
        expect(card).to_contain_text(pct(ins["bottleneck"]["shareOfDuration"]))
    # 13 runs of each task in the window: every task of the definition with
    # >= 10 runs gets a suggestion card, with the server's explanation.
    for sg in ins["suggestions"]:
        card = box.locator('article.insight[data-kind="suggestion"]').filter(has_text=f"Settings for {sg['taskKey']}")
        expect(card).to_contain_text(sg["explanation"])
        expect(card).to_contain_text(pct(sg["attemptFailureRate"]))
    assert {s["taskKey"] for s in ins["suggestions"]} >= {"prepare", "shape"}
    if ins["nextRun"].get("predicted"):
        expect(next_run).to_contain_text(pct(ins["nextRun"]["confidence"]))
    top_shot(page, "insights")


# ---------------------------------------------------------------------------
# Budgets
# ---------------------------------------------------------------------------


def test_workflow_budget_form(signed_in, user, history):
    page, wid = signed_in, history["wid"]
    open_stats(page, wid, history["wf"]["name"])
    card = page.locator("section.budget")
    expect(card.locator(".budget-none")).to_be_visible(timeout=LIVE)
    limit = card.get_by_label("Monthly limit (US $)")

    # Bad limits: the server's message next to the field, nothing stored.
    for bad in ("0", "-5"):
        limit.fill(bad)
        card.get_by_role("button", name="Save budget").click()
        expect(field_error(card, "Monthly limit (US $)")).to_contain_text("monthly_limit_usd must be more than 0", timeout=LIVE)
        expect(limit).to_have_attribute("aria-invalid", "true")
    assert user.rest.get(f"/workflows/{wid}/budget").status == 404
    # A bad zone: its message next to the zone field.
    limit.fill("25")
    card.get_by_label("Time zone of the month").fill("Mars/Olympus")
    card.get_by_role("button", name="Save budget").click()
    expect(field_error(card, "Time zone of the month")).to_contain_text("is not an IANA time zone")
    expect(field_error(card, "Monthly limit (US $)")).to_have_text("")

    card.get_by_label("Time zone of the month").fill("Europe/Berlin")
    card.get_by_role("button", name="Save budget").click()
    expect(card.get_by_role("button", name="Update budget")).to_be_visible(timeout=LIVE)
    stored = api(user, "GET", f"/workflows/{wid}/budget")
    assert stored["monthlyLimitUsd"] == 25 and stored["timeZone"] == "Europe/Berlin", stored
    expect(card.locator('[data-kpi="limit"] .kpi-value')).to_have_text("$25.00")
    expect(card.locator(".budget-status .badge")).to_have_text(
        {"ok": "on track", "forecast_over": "forecast over limit", "over": "over limit"}[stored["status"]])
    expect(card.locator(".explanation")).to_have_text(re.compile(r"spent in " + re.escape(stored["month"])))
    expect(card.get_by_role("img", name=re.compile(r"^Spent .* of a \$25\.00 limit"))).to_be_visible()
    expect(card.locator("figure.budget-bar svg rect.spent")).to_be_attached()
    expect(card.locator("figure.budget-bar svg path.limit")).to_be_attached()
    top_shot(page, "budget")

    # Change, then remove.
    limit.fill("40.5")
    card.get_by_role("button", name="Update budget").click()
    expect(card.locator('[data-kpi="limit"] .kpi-value')).to_have_text("$40.50", timeout=LIVE)
    assert api(user, "GET", f"/workflows/{wid}/budget")["monthlyLimitUsd"] == 40.5
    card.get_by_role("button", name="Remove budget").click()
    dialog = page.get_by_role("dialog")
    dialog.get_by_role("button", name="Remove", exact=True).click()
    expect(card.locator(".budget-none")).to_be_visible(timeout=LIVE)
    assert user.rest.get(f"/workflows/{wid}/budget").status == 404
    expected_http_errors(page, 400)


def test_viewer_sees_the_servers_refusal(browser_viewer, user, history):
    page, viewer = browser_viewer
    wid = history["wid"]
    open_stats(page, wid, history["wf"]["name"])
    card = page.locator("section.budget")
    expect(card).to_contain_text("You are a viewer")
    card.get_by_label("Monthly limit (US $)").fill("10")
    card.get_by_role("button", name="Save budget").click()
    refusal = viewer.rest.put(f"/workflows/{wid}/budget", {"monthlyLimitUsd": 10})
    assert refusal.status == 403, refusal
    expect(card.locator(".form-error")).to_have_text(refusal.json["message"], timeout=LIVE)
    assert user.rest.get(f"/workflows/{wid}/budget").status == 404
    expected_http_errors(page, 403)


@pytest.fixture
def browser_viewer(page, weft, user, history):
    viewer = wh.register_and_login(weft, name="Vic Viewer", email=wh.unique_email("vic"), password=PASSWORD)
    wh.invite_and_accept(weft, user.token, viewer.token, history["wf"]["orgId"])
    api(user, "POST", f"/workflows/{history['wid']}/collaborators", {"userId": viewer.id, "role": "viewer"})
    sign_in(page, viewer)
    return page, viewer


# ---------------------------------------------------------------------------
# Trends and the organization budget
# ---------------------------------------------------------------------------


def trend_total(user, zone, **params):
    q = "&".join(f"{k}={v}" for k, v in {"timeZone": zone, **params}.items())
    t = api(user, "GET", f"/analytics/workflow-executions?{q}")
    return t, sum(int(p["started"]) for p in t["daily"])


def test_trends_match_the_api(signed_in, user, history):
    page = signed_in
    page.goto("/#/analytics")
    expect(page.get_by_role("heading", level=1, name="Analytics")).to_be_visible()
    body = page.locator(".trends-body")
    expect(body).to_have_attribute("aria-busy", "false", timeout=LIVE)
    zone = page.evaluate("Intl.DateTimeFormat().resolvedOptions().timeZone")
    trends, total = trend_total(user, zone)
    assert total >= RUNS_OK + RUNS_FAILED and trends["scope"] == "visible"
    expect(kpi(page, "trend-total")).to_have_text(str(total))
    # The charts: bars per status (their data table sums to the total), lines.
    executions = body.get_by_role("img", name=re.compile(r"finished executions over"))
    expect(executions).to_be_visible()
    expect(body.locator("figure.bar-chart svg rect.bar").first).to_be_visible()
    expect(body.locator("figure.line-chart svg path.line").first).to_be_attached()
    expect(body.locator("figure.line-chart")).to_have_count(2)
    expect(body.locator("figure.bar-chart")).to_have_count(2)
    totals = body.locator("figure.bar-chart").first.locator(".chart-data tbody tr td:last-child").all_text_contents()
    assert sum(int(x) for x in totals) == total, totals
    # Keyboard: focusing a chart shows its tooltip for the last period.
    body.locator("figure.bar-chart svg").first.focus()
    expect(body.locator("figure.bar-chart .chart-tip").first).to_contain_text(trends["daily"][-1]["period"])
    page.keyboard.press("Home")
    expect(body.locator("figure.bar-chart .chart-tip").first).to_contain_text(trends["daily"][0]["period"])
    top_shot(page, "analytics")

    # Filters ask the API the same question.
    page.get_by_label("Final status", exact=True).select_option("Failed")
    _, failed = trend_total(user, zone, status="Failed")
    assert failed >= RUNS_FAILED
    expect(kpi(page, "trend-total")).to_have_text(str(failed), timeout=LIVE)
    assert "status=Failed" in page.url
    page.get_by_label("Final status", exact=True).select_option("")
    page.get_by_label("Workflow", exact=True).select_option(history["wid"])
    _, one = trend_total(user, zone, workflowId=history["wid"])
    expect(kpi(page, "trend-total")).to_have_text(str(one), timeout=LIVE)
    expect(kpi(page, "trend-workflows")).to_have_text("1")
    page.get_by_label("Period", exact=True).select_option("monthly")
    expect(kpi(page, "trend-total")).to_have_text(str(one))
    page.get_by_label("Workflow", exact=True).select_option("")
    # Organization-wide (the user is the admin of their own organization).
    org = history["wf"]["orgId"]
    page.get_by_label(re.compile(r"^Organization-wide")).check()
    _, whole = trend_total(user, zone, orgId=org)
    expect(kpi(page, "trend-total")).to_have_text(str(whole), timeout=LIVE)
    expect(body).to_contain_text("the whole organization")
    # A range the server refuses: its message next to the field.
    page.get_by_label("From (day)").fill("2026-05-02")
    page.get_by_label("To (day, included)").fill("2026-04-01")
    page.get_by_role("button", name="Apply").click()
    expect(field_error(page, "From (day)")).to_contain_text("since must be before until", timeout=LIVE)
    # An empty range: the empty state.
    page.get_by_label("From (day)").fill("2001-01-01")
    page.get_by_label("To (day, included)").fill("2001-01-02")
    page.get_by_role("button", name="Apply").click()
    expect(body.locator(".trends-empty")).to_be_visible(timeout=LIVE)
    expect(kpi(page, "trend-total")).to_have_text("0")
    expected_http_errors(page, 400, 404)  # the refused range; the organization has no budget


def test_organization_budget(signed_in, user, history):
    page = signed_in
    org = history["wf"]["orgId"]
    page.goto("/#/analytics")
    card = page.locator("section.budget")
    expect(card.get_by_role("heading", name=re.compile(r"^Organization budget"))).to_be_visible()
    expect(card.locator(".budget-none")).to_be_visible(timeout=LIVE)
    card.get_by_label("Monthly limit (US $)").fill("-1")
    card.get_by_role("button", name="Save budget").click()
    expect(field_error(card, "Monthly limit (US $)")).to_contain_text("monthly_limit_usd must be more than 0", timeout=LIVE)
    card.get_by_label("Monthly limit (US $)").fill("1000")
    card.get_by_label("Time zone of the month").fill("UTC")
    card.get_by_role("button", name="Save budget").click()
    expect(card.locator('[data-kpi="limit"] .kpi-value')).to_have_text("$1000.00", timeout=LIVE)
    stored = api(user, "GET", f"/orgs/{org}/budget")
    assert stored["monthlyLimitUsd"] == 1000 and stored["timeZone"] == "UTC" and stored["scope"] == "organization", stored
    card.get_by_role("button", name="Remove budget").click()
    page.get_by_role("dialog").get_by_role("button", name="Remove", exact=True).click()
    expect(card.locator(".budget-none")).to_be_visible(timeout=LIVE)
    assert user.rest.get(f"/orgs/{org}/budget").status == 404
    expected_http_errors(page, 400, 404)


# ---------------------------------------------------------------------------
# Phone size
# ---------------------------------------------------------------------------


def test_stats_on_a_phone(phone, user, history):
    sign_in(phone, user)
    open_stats(phone, history["wid"], history["wf"]["name"])
    stats = api(user, "GET", f"/workflows/{history['wid']}/stats?window=day")
    expect(kpi(phone, "executions")).to_have_text(str(int(stats["totalExecutions"])))
    expect(phone.locator("figure.box-strip svg rect").first).to_be_visible()
    expect(phone.locator("figure.bar-chart svg rect.bar").first).to_be_visible()
    # Charts are drawn at the phone's width (1 unit = 1 px), not scaled down.
    width = phone.locator("figure.bar-chart svg").first.evaluate("s => s.viewBox.baseVal.width")
    assert 200 <= width <= 390, width
    assert phone.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1")
    save = phone.get_by_role("button", name="Save budget")
    expect(save).to_be_visible(timeout=LIVE)
    box = save.bounding_box()
    assert box and box["height"] >= 44, box
    top_shot(phone, "phone-stats")
    phone.goto("/#/analytics")
    expect(phone.locator(".trends-body")).to_have_attribute("aria-busy", "false", timeout=LIVE)
    expect(phone.locator("figure.bar-chart svg rect.bar").first).to_be_visible()
    assert phone.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1")
    expect(phone.locator("section.budget .budget-none")).to_be_visible(timeout=LIVE)
    top_shot(phone, "phone-analytics")
    expected_http_errors(phone, 404)  # the organization has no budget
