"""The dashboard end to end, as one person uses it (the issue's journey):
register, sign in, build a 3-task workflow in the editor by dragging, save,
add a schedule, run it, watch it complete live, read its logs, see its
statistics, change it, diff the two versions and roll back; then the same
monitoring at phone size with touch (operations, monitor, logs, run, cancel,
re-run). Nothing here provokes an error answer, so any console error at all
fails the journey. Screenshots: journey-*.png."""

from __future__ import annotations

import json
import re
import time

from playwright.sync_api import expect

from conftest import PASSWORD, shot, sign_in
import weft_helpers as wh

LIVE = 20_000


def node(page, key):
    return page.locator(f'.dag g.node[data-key="{key}"]')


def editor_node(page, key):
    return page.locator(f'.ed-node[data-key="{key}"]')


def drag_port(page, src, dst):
    """From src's output port to the middle of dst, with the mouse."""
    port = editor_node(page, src).locator(".ed-port-dot")
    port.scroll_into_view_if_needed()
    box = port.bounding_box()
    sx, sy = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    box = editor_node(page, dst).bounding_box()
    tx, ty = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    page.mouse.move(sx, sy)
    page.mouse.down()
    page.mouse.move((sx + tx) / 2, (sy + ty) / 2 + 20, steps=5)
    page.mouse.move(tx, ty, steps=5)
    page.mouse.up()


def save_version(page, message, name=None):
    page.get_by_role("button", name="Save version…").click()
    dialog = page.get_by_role("dialog")
    if name:
        dialog.get_by_label("Workflow name").fill(name)
    dialog.get_by_label("Version message").fill(message)
    dialog.get_by_role("button", name="Create workflow" if name else "Save version").click()


def wait_for(predicate, timeout=30.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError("timed out")


def no_sideways_scroll(page):
    assert page.evaluate("document.documentElement.scrollWidth") <= 390


def test_journey_desktop_then_phone(browser, weft):
    ctx = browser.new_context(base_url=weft.url, viewport={"width": 1366, "height": 900})
    ctx.set_default_timeout(10_000)
    page = ctx.new_page()
    errors = []
    page.on("console", lambda m: errors.append(f"console.{m.type}: {m.text}") if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(f"pageerror: {e}"))

    # Register, sign out, sign in.
    email = wh.unique_email("journey")
    page.goto("/")
    page.wait_for_url("**/#/login*")
    page.get_by_role("link", name=re.compile("Create an account|Create account|Register", re.I)).click()
    page.get_by_label("Name").fill("Jo Journey")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Create account").click()
    page.get_by_role("heading", level=1, name="Workflows").wait_for()
    assert "weft_session" not in page.evaluate("document.cookie")
    page.get_by_role("button", name="Sign out").click()
    page.wait_for_url("**/#/login*")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.get_by_role("heading", level=1, name="Workflows").wait_for()
    shot(page, "journey-workflows-empty")
    token = wh.RestClient(weft).post("/users/login", {"email": email, "password": PASSWORD}).json["token"]
    rest = wh.RestClient(weft, token)

    # Build three tasks by dragging them from the palette and connecting them.
    page.get_by_role("link", name=re.compile("New workflow")).first.click()
    page.get_by_role("heading", level=1, name="New workflow").wait_for()
    canvas = page.locator(".ed-canvas")
    plan = [("Log", "Greet", "greet"), ("Delay", "Wait", "wait"), ("Log", "Report", "report")]
    for i, (kind, name, key) in enumerate(plan):
        page.get_by_role("button", name=f"Add {kind} task").drag_to(canvas, target_position={"x": 140 + i * 260, "y": 100 + i * 30})
        page.get_by_label("Name", exact=True).fill(name)
        expect(editor_node(page, key)).to_be_visible()
        if kind == "Log":
            page.get_by_label("Message").fill("hello {{ input.who }}" if key == "greet" else "done for {{ input.who }}")
        else:
            page.get_by_label("Duration", exact=True).fill("3s")
    drag_port(page, "greet", "wait")
    drag_port(page, "wait", "report")
    expect(page.locator(".ed-edge")).to_have_count(2)
    shot(page, "journey-editor")
    save_version(page, "first cut", name="Journey")
    page.wait_for_url(re.compile(r"#/workflows/[^/]+/edit$"), timeout=15_000)
    wid = re.search(r"#/workflows/([^/]+)/edit", page.url).group(1)
    wf = rest.get(f"/workflows/{wid}").json
    deps = {t["key"]: t.get("dependsOn", []) for t in wf["tasks"]}
    assert deps == {"greet": [], "wait": ["greet"], "report": ["wait"]}, wf

    # A schedule, with its next fire times previewed before saving.
    page.get_by_role("link", name="Schedules").click()
    page.get_by_role("button", name="Add schedule").click()
    page.get_by_label("Cron expression").fill("0 9 * * 1-5")
    page.get_by_label("Time zone").fill("Europe/Berlin")
    expect(page.get_by_role("list", name="Next fire times").get_by_role("listitem")).to_have_count(5, timeout=LIVE)
    page.get_by_role("button", name="Create schedule").click()
    expect(page.locator("form.auto-form")).to_have_count(0)  # saved: the form closed
    [schedule] = wait_for(lambda: rest.get(f"/workflows/{wid}/schedules").json["schedules"])
    assert schedule["cron"] == "0 9 * * 1-5" and schedule["timezone"] == "Europe/Berlin" and schedule["nextRunAt"]
    shot(page, "journey-schedules")

    # Run with an input; watch the graph complete live; read the logs.
    page.get_by_role("link", name="Run", exact=True).click()
    page.get_by_label("Input (JSON)").fill(json.dumps({"who": "Ada"}))
    page.get_by_role("button", name="Run", exact=True).click()
    page.wait_for_url(re.compile(r"/executions/exe_"))
    eid = page.url.rsplit("/", 1)[-1]
    expect(node(page, "wait")).to_have_class(re.compile(r"\bst-running\b"), timeout=LIVE)
    for key in ("greet", "wait", "report"):
        expect(node(page, key)).to_have_class(re.compile(r"\bst-completed\b"), timeout=LIVE)
    expect(page.locator(".mon-status .badge")).to_have_text("completed", timeout=LIVE)
    log = page.locator(".log-box")
    expect(log).to_contain_text("hello Ada")
    expect(log).to_contain_text("done for Ada")
    assert rest.get(f"/workflows/{wid}/executions/{eid}").json["status"] == "Completed"
    shot(page, "journey-monitor")

    # Its statistics agree with the API.
    page.get_by_role("link", name="Statistics").click()
    stats = rest.get(f"/workflows/{wid}/stats?window=day").json
    assert int(stats["totalExecutions"]) == 1, stats
    expect(page.locator('[data-kpi="executions"] .kpi-value')).to_have_text("1")
    shot(page, "journey-stats")

    # Change a task, save version 2, compare it with version 1, roll back.
    page.get_by_role("link", name="Editor").click()
    editor_node(page, "report").click()
    page.get_by_label("Message").fill("all done, {{ input.who }}")
    save_version(page, "friendlier report")
    wait_for(lambda: rest.get(f"/workflows/{wid}").json["version"] == 2)
    page.get_by_role("link", name="Versions").click()
    page.get_by_label("Version 1 as A").check()
    page.get_by_label("Version 2 as B").check()
    page.get_by_role("button", name="Compare").click()
    expect(page.locator('svg.dag .node[data-key="report"]')).to_have_class(re.compile(r"\bchanged\b"))
    expect(page.locator('svg.dag .node[data-key="greet"]')).not_to_have_class(re.compile(r"\bchanged\b"))
    expect(page.get_by_text(re.compile(r"task report: config\.message changed"))).to_be_visible()
    shot(page, "journey-diff")
    v1 = [v for v in rest.get(f"/workflows/{wid}/versions").json["versions"] if v["version"] == 1][0]
    page.goto(f"/#/workflows/{wid}/versions/{v1['id']}")
    page.get_by_role("button", name="Roll back to this version").click()
    page.get_by_role("dialog").get_by_role("button", name="Roll back").click()
    expect(page.get_by_role("status").filter(has_text="Rolled back")).to_be_visible()
    now = rest.get(f"/workflows/{wid}").json
    assert now["version"] == 3
    assert {t["key"]: t["config"] for t in now["tasks"]}["report"]["message"] == "done for {{ input.who }}"
    assert not errors, errors

    # At phone size, with touch: operations, the monitor, logs, run, cancel, re-run.
    slow = rest.post("/workflows", {"name": "Journey slow", "tasks": [
        {"key": "nap", "name": "Nap", "action": "delay", "config": {"duration": "60s"}}]}).json
    running = rest.post(f"/workflows/{slow['id']}/execute", {"input": {}}).json["executionId"]
    phone_ctx = browser.new_context(base_url=weft.url, viewport={"width": 390, "height": 844}, device_scale_factor=3,
                                    is_mobile=True, has_touch=True)
    phone_ctx.set_default_timeout(10_000)
    phone = phone_ctx.new_page()
    phone.on("console", lambda m: errors.append(f"phone console.{m.type}: {m.text}") if m.type == "error" else None)
    phone.on("pageerror", lambda e: errors.append(f"phone pageerror: {e}"))
    sign_in(phone, type("U", (), {"email": email, "password": PASSWORD}))
    phone.goto("/#/ops")
    phone.get_by_role("heading", level=1, name="Operations").wait_for()
    done_row = phone.locator(f'li.ops-row[data-execution="{eid}"]')
    run_row = phone.locator(f'li.ops-row[data-execution="{running}"]')
    expect(done_row).to_be_visible()
    expect(run_row).to_be_visible()
    no_sideways_scroll(phone)
    shot(phone, "journey-phone-ops")
    done_row.locator("a.ops-main").tap()
    phone.wait_for_url(f"**/executions/{eid}")
    expect(phone.locator(".mon-status .badge")).to_have_text("completed")
    phone.get_by_role("button", name="Logs", exact=True).tap()
    expect(phone.locator(".log-box")).to_contain_text("done for Ada")
    no_sideways_scroll(phone)
    shot(phone, "journey-phone-monitor")
    phone.get_by_role("button", name="Re-run", exact=True).tap()
    phone.wait_for_url(lambda url: "/executions/exe_" in url and not url.endswith(eid))
    again = phone.url.rsplit("/", 1)[-1]
    expect(phone.locator(".mon-status .badge")).to_have_text("completed", timeout=LIVE)
    assert rest.get(f"/workflows/{wid}/executions/{again}").json["input"] == {"who": "Ada"}
    phone.goto(f"/#/workflows/{slow['id']}/executions/{running}")
    phone.get_by_role("button", name="Cancel", exact=True).tap()
    phone.get_by_role("dialog").get_by_role("button", name="Cancel run").tap()
    expect(phone.locator(".mon-status .badge")).to_have_text("cancelled", timeout=LIVE)
    wait_for(lambda: rest.get(f"/workflows/{slow['id']}/executions/{running}").json["status"] == "Cancelled")
    phone.goto(f"/#/workflows/{wid}/run")
    phone.get_by_label("Input (JSON)").fill('{"who": "Bo"}')
    phone.get_by_role("button", name="Run", exact=True).tap()
    phone.wait_for_url(re.compile(r"/executions/exe_"))
    expect(phone.locator(".mon-status .badge")).to_have_text("completed", timeout=LIVE)
    no_sideways_scroll(phone)
    shot(phone, "journey-phone-run")
    phone_ctx.close()
    ctx.close()
    assert not errors, "browser console errors:\n" + "\n".join(errors)
