"""Running and watching, in the browser: the run form (live JSON check, then
POST …/execute), the execution monitor (the DAG turning live, the task
panel, the log with its level filter, Cancel, Re-run, the trace link), the
runs list (filter, auto-refresh) and the phone-sized operations view —
each checked against what the server then stores."""

from __future__ import annotations

import re

import weft_helpers as wh
from playwright.sync_api import expect

from conftest import PASSWORD, api, expected_http_errors, shot, sign_in

TRACE_TEMPLATE = "http://traces.example/trace/{traceId}"
# Tracing on (every request sampled) so executions carry a trace id; the
# collector address is closed, its export failures only reach the server log.
# A small execution cap, so that an input the browser accepts is refused by
# the server (a 400 the run form must show next to the field).
SERVER_ARGS = ("--trace-viewer-url", TRACE_TEMPLATE,
               "--otel-endpoint", "http://127.0.0.1:9", "--trace-sampler", "always_on",
               "--max-execution-bytes", "4096")

LIVE = 20_000  # ms: live things on a slow two-core machine
PHONE_WIDTH = 390




def make_workflow(user, name, delay):
    """a (log, Info) -> b (delay) -> c (log, Warning), reading input.who."""
    return api(user, "POST", "/workflows", {
        "name": name,
        "tasks": [
            {"key": "a", "name": "Greet", "action": "log", "config": {"message": "hello {{ input.who }}", "level": "Info"}},
            {"key": "b", "name": "Wait", "action": "delay", "config": {"duration": delay}, "dependsOn": ["a"]},
            {"key": "c", "name": "Warn", "action": "log",
             "config": {"message": "careful, {{ input.who }}", "level": "Warning"}, "dependsOn": ["b"]},
        ],
    })


def executions(user, wid):
    return api(user, "GET", f"/workflows/{wid}/executions")["executions"]


def execute(user, wid, who="Bo"):
    return api(user, "POST", f"/workflows/{wid}/execute", {"input": {"who": who}}, expect=(202,))["executionId"]


def wait_status(user, wid, eid, *statuses, timeout=30):
    return wh.wait_until(
        lambda: (ex := api(user, "GET", f"/workflows/{wid}/executions/{eid}"))["status"] in statuses and ex,
        timeout, interval=0.2, message=f"execution {eid} never reached {statuses}")


def node(page, key):
    return page.locator(f'.dag g.node[data-key="{key}"]')


def no_horizontal_scroll(page):
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= PHONE_WIDTH, f"the page scrolls sideways: scrollWidth {width}"


def test_run_form_watch_task_logs_trace_and_rerun(signed_in, user):
    page = signed_in
    wf = make_workflow(user, "Watch me", "5s")
    wid = wf["id"]

    page.goto(f"/#/workflows/{wid}/run")
    page.get_by_role("heading", level=1, name="Watch me").wait_for()
    box = page.get_by_label("Input (JSON)")
    # A syntax error is shown as you type, with its line and column...
    box.fill('{\n  "who": "Ada",\n}')
    error = page.locator(".field-error").filter(has_text="Line 3, column 1")
    expect(error).to_be_visible()
    expect(error).to_contain_text("trailing comma")
    expect(box).to_have_attribute("aria-invalid", "true")
    # ...and Run refuses it: nothing reaches the server.
    page.get_by_role("button", name="Run", exact=True).click()
    expect(box).to_be_focused()
    box.fill('["not", "an object"]')
    expect(page.locator(".field-error").filter(has_text="must be a JSON object")).to_be_visible()
    page.get_by_role("button", name="Run", exact=True).click()
    assert executions(user, wid) == []

    box.fill('{\n  "who": "Ada"\n}')
    expect(page.get_by_text("valid JSON object")).to_be_visible()
    expect(box).not_to_have_attribute("aria-invalid", "true")
    shot(page, "run")
    page.get_by_role("button", name="Run", exact=True).click()
    page.wait_for_url(re.compile(r"/executions/exe_"))
    eid = page.url.rsplit("/", 1)[-1]
    stored = api(user, "GET", f"/workflows/{wid}/executions/{eid}")
    assert stored["input"] == {"who": "Ada"} and stored["trigger"] == "api", stored

    # The DAG follows the watch stream: the delay is seen running, then all complete.
    expect(node(page, "b")).to_have_class(re.compile(r"\bst-running\b"), timeout=LIVE)
    expect(page.locator(".mon-status .badge")).to_have_text("running")
    expect(page.locator(".mon-status")).to_have_attribute("aria-live", "polite")
    expect(node(page, "a")).to_have_class(re.compile(r"\bst-completed\b"))
    for key in "abc":
        expect(node(page, key)).to_have_class(re.compile(r"\bst-completed\b"), timeout=LIVE)
    expect(page.locator(".mon-status .badge")).to_have_text("completed", timeout=LIVE)
    expect(page.get_by_role("button", name="Cancel", exact=True)).to_be_disabled()
    assert api(user, "GET", f"/workflows/{wid}/executions/{eid}")["status"] == "Completed"

    # The trace id links to the operator's trace viewer.
    trace_id = api(user, "GET", f"/workflows/{wid}/executions/{eid}")["traceId"]
    assert re.fullmatch(r"[0-9a-f]{32}", trace_id), trace_id
    link = page.locator("a.trace-link")
    expect(link).to_have_text(trace_id)
    expect(link).to_have_attribute("href", TRACE_TEMPLATE.replace("{traceId}", trace_id))
    shot(page, "monitor")

    # A task's panel: attempts, input (its config) and output. Mouse first...
    node(page, "c").click()
    panel = page.locator("section.task-panel")
    expect(panel.get_by_role("heading", name="Task Warn")).to_be_visible()
    expect(panel.locator("pre.task-output")).to_contain_text("careful, Ada")
    expect(panel.locator("pre.task-input")).to_contain_text("{{ input.who }}")
    expect(panel.locator("li.attempt")).to_have_count(1)
    expect(panel.locator("li.attempt").first).to_contain_text("Attempt 1")
    expect(panel.locator("li.attempt").first).to_contain_text("completed")
    expect(panel.locator("li.attempt").first).to_contain_text("built-in")
    shot(page, "monitor-task")
    # ...then the keyboard: Enter on a node opens it, Escape closes and returns.
    node(page, "a").focus()
    page.keyboard.press("Enter")
    expect(panel.get_by_role("heading", name="Task Greet")).to_be_visible()
    expect(panel.locator("pre.task-output")).to_contain_text("hello Ada")
    page.keyboard.press("Escape")
    expect(panel).to_be_hidden()
    expect(node(page, "a")).to_be_focused()

    # The log, then filtered to warnings and above.
    log = page.locator(".log-box")
    expect(log).to_contain_text("hello Ada")
    expect(log).to_contain_text("careful, Ada")
    expect(log).to_contain_text("execution started")
    page.get_by_label("Level").select_option("Warning")
    expect(log.locator(".log-line")).to_have_count(1)
    expect(log).to_contain_text("careful, Ada")
    expect(log).not_to_contain_text("hello Ada")
    expect(log.locator(".log-line .log-level")).to_have_text(["WARN"])
    page.get_by_label("Level").select_option("")
    expect(log).to_contain_text("hello Ada")

    # Re-run: a second execution with the same input, and its monitor.
    page.get_by_role("button", name="Re-run").click()
    page.wait_for_url(lambda url: "/executions/exe_" in url and not url.endswith(eid))
    second = page.url.rsplit("/", 1)[-1]
    runs = executions(user, wid)
    assert {r["executionId"] for r in runs} == {eid, second}, runs
    assert all(r["input"] == {"who": "Ada"} for r in runs), runs
    expect(page.locator("h2#mon-title")).to_contain_text(second)
    expect(node(page, "b")).to_have_class(re.compile(r"\bst-(running|completed)\b"), timeout=LIVE)


def test_cancel_a_long_run(signed_in, user):
    page = signed_in
    wf = make_workflow(user, "Slow to cancel", "30s")
    wid = wf["id"]
    eid = execute(user, wid)
    page.goto(f"/#/workflows/{wid}/executions/{eid}")
    expect(node(page, "b")).to_have_class(re.compile(r"\bst-running\b"), timeout=LIVE)
    expect(page.locator(".mon-facts")).to_contain_text("not yet")

    page.get_by_role("button", name="Cancel", exact=True).click()
    dialog = page.get_by_role("dialog")
    expect(dialog).to_contain_text(eid)
    dialog.get_by_role("button", name="Cancel run").click()
    expect(page.locator(".mon-status .badge")).to_have_text("cancelled", timeout=LIVE)
    expect(node(page, "c")).to_have_class(re.compile(r"\bst-cancelled\b"), timeout=LIVE)
    expect(page.get_by_role("button", name="Cancel", exact=True)).to_be_disabled()
    assert api(user, "GET", f"/workflows/{wid}/executions/{eid}")["status"] == "Cancelled"
    # The log says so too (the engine writes it at Warning).
    expect(page.locator(".log-box")).to_contain_text("cancelled", timeout=LIVE)

    # "Run with other input" starts the run form from this execution's input.
    page.get_by_role("link", name="Run with other input").click()
    page.wait_for_url(re.compile(r"/run\?from=exe_"))
    expect(page.get_by_label("Input (JSON)")).to_have_value(re.compile(r'"who": "Bo"'))


def test_runs_list_filters_and_refreshes(signed_in, user):
    page = signed_in
    wf = make_workflow(user, "Often run", "6s")
    wid = wf["id"]
    done = execute(user, wid, "one")
    wait_status(user, wid, done, "Completed")
    live = execute(user, wid, "two")

    page.goto(f"/#/workflows/{wid}/runs")
    rows = page.locator(".runs-table tbody tr")
    expect(rows).to_have_count(2)
    row_live = rows.filter(has_text=live)
    expect(row_live).to_contain_text("running")
    expect(rows.filter(has_text=done)).to_contain_text("completed")
    expect(rows.filter(has_text=done)).to_contain_text("api")
    shot(page, "runs")
    # Refreshed every 5 s while a run is going: it turns completed without a reload.
    expect(row_live).to_contain_text("completed", timeout=LIVE)

    page.get_by_label("Status").select_option("Failed")
    expect(page.get_by_text("No failed runs.")).to_be_visible()
    page.get_by_label("Status").select_option("Completed")
    expect(rows).to_have_count(2)

    rows.filter(has_text=done).get_by_role("link").click()
    page.wait_for_url(f"**/executions/{done}")
    expect(page.locator(".mon-status .badge")).to_have_text("completed")
    # An ended execution's log is read in pages (GET …/logs), not tailed.
    expect(page.locator(".log-box")).to_contain_text("careful, one")
    expect(page.locator(".mon-logs")).to_contain_text("the whole log")

    # The operations view works at desktop size too.
    page.goto("/#/ops")
    expect(page.locator(f'li.ops-row[data-execution="{live}"]')).to_contain_text("Often run")
    expect(page.locator("section.ops-group", has=page.get_by_role("heading", name=re.compile("^Succeeded")))
           .locator(f'li.ops-row[data-execution="{done}"]')).to_be_visible()
    shot(page, "ops")


def test_phone_operations(signed_in_phone, user):
    page = signed_in_phone
    quick = make_workflow(user, "Phone quick", "100ms")
    slow = make_workflow(user, "Phone slow", "30s")
    finished = execute(user, quick["id"], "Pat")
    wait_status(user, quick["id"], finished, "Completed")
    running = execute(user, slow["id"], "Sam")
    wait_status(user, slow["id"], running, "Running")

    page.goto("/#/ops")
    page.get_by_role("heading", level=1, name="Operations").wait_for()
    running_row = page.locator(f'li.ops-row[data-execution="{running}"]')
    finished_row = page.locator(f'li.ops-row[data-execution="{finished}"]')
    expect(page.locator("section.ops-group", has=page.get_by_role("heading", name=re.compile("^Running"))).locator(running_row)).to_be_visible()
    expect(page.locator("section.ops-group", has=page.get_by_role("heading", name=re.compile("^Succeeded"))).locator(finished_row)).to_be_visible()
    expect(finished_row).to_contain_text("Phone quick")
    for target in (finished_row.locator("a.ops-main"), finished_row.get_by_role("button", name=re.compile("^Re-run")),
                   running_row.get_by_role("button", name=re.compile("^Cancel"))):
        assert target.bounding_box()["height"] >= 44
    no_horizontal_scroll(page)
    shot(page, "phone-ops")

    # Tap a finished run: its monitor, usable at 390 px.
    finished_row.locator("a.ops-main").tap()
    page.wait_for_url(f"**/executions/{finished}")
    expect(page.locator(".mon-status .badge")).to_have_text("completed")
    for key in "abc":
        expect(node(page, key)).to_have_class(re.compile(r"\bst-completed\b"))
    for name in ("Cancel", "Re-run", "Logs"):
        assert page.get_by_role("button", name=name, exact=True).bounding_box()["height"] >= 44
    # The graph scrolls inside its own box; the task panel is a full-width section under it.
    graph = page.locator(".dag-box").bounding_box()
    assert graph["width"] <= PHONE_WIDTH
    node(page, "b").tap()
    panel = page.locator("section.task-panel")
    expect(panel.get_by_role("heading", name="Task Wait")).to_be_visible()
    graph, pbox = page.locator(".dag-box").bounding_box(), panel.bounding_box()  # both after the scroll
    assert pbox["y"] >= graph["y"] + graph["height"] - 1 and pbox["width"] >= 340, (graph, pbox)
    expect(panel.locator("pre.task-output")).to_contain_text("waitedMs")
    no_horizontal_scroll(page)
    shot(page, "phone-monitor")

    # Logs: readable (monospace 12–13 px, wrapping) and in view after a tap.
    page.get_by_role("button", name="Logs", exact=True).tap()
    log = page.locator(".log-box")
    expect(log).to_contain_text("hello Pat")
    expect(log).to_be_in_viewport()
    style = log.evaluate("el => { const s = getComputedStyle(el); const l = el.querySelector('.log-line'); "
                         "return {size: parseFloat(s.fontSize), family: s.fontFamily, wrap: getComputedStyle(l).whiteSpace} }")
    assert 12 <= style["size"] <= 13 and "mono" in style["family"].lower() and style["wrap"] == "pre-wrap", style
    no_horizontal_scroll(page)
    shot(page, "phone-logs")

    # Back to operations: cancel the running one from its row.
    page.goto("/#/ops")
    running_row.get_by_role("button", name=re.compile("^Cancel")).tap()
    page.get_by_role("dialog").get_by_role("button", name="Cancel run").tap()
    wait_status(user, slow["id"], running, "Cancelled")
    expect(page.locator("section.ops-group", has=page.get_by_role("heading", name=re.compile("^Cancelled"))).locator(running_row)).to_be_visible(timeout=LIVE)

    # Re-run the finished one: a new execution, and its monitor.
    finished_row.get_by_role("button", name=re.compile("^Re-run")).tap()
    page.wait_for_url(lambda url: "/executions/exe_" in url and not url.endswith(finished))
    again = page.url.rsplit("/", 1)[-1]
    assert {r["executionId"] for r in executions(user, quick["id"])} == {finished, again}
    expect(page.locator("h2#mon-title")).to_contain_text(again)
    no_horizontal_scroll(page)


def test_run_form_shows_server_errors(signed_in, user):
    page = signed_in
    wf = make_workflow(user, "Too big to run", "10ms")
    wid = wf["id"]
    page.goto(f"/#/workflows/{wid}/run")
    box = page.get_by_label("Input (JSON)")
    # Valid JSON the browser cannot know is too large: the server's 400 is shown next to the field.
    box.fill('{"blob": "' + "x" * 5000 + '"}')
    page.get_by_role("button", name="Run", exact=True).click()
    error = page.locator(".field-error").filter(has_text="larger than")
    expect(error).to_be_visible()
    expect(box).to_have_attribute("aria-invalid", "true")
    expect(page).to_have_url(re.compile(r"/run$"))
    assert executions(user, wid) == []
    expected_http_errors(page, 400)

    # Reserved idempotency keys are refused in the browser already.
    box.fill("{}")
    page.get_by_text("More options").click()
    page.get_by_label("Idempotency key (optional)").fill("schedule:tomorrow")
    expect(page.locator(".field-error").filter(has_text="reserved")).to_be_visible()
    page.get_by_label("Timeout (optional)").fill("5 minutes")
    expect(page.locator(".field-error").filter(has_text="30s")).to_be_visible()


def test_viewer_gets_the_servers_no(page, weft, user):
    viewer = wh.register_and_login(weft, name="Vic Viewer", email=wh.unique_email("vic"), password=PASSWORD)
    wh.invite_and_accept(weft, user.token, viewer.token)
    wf = make_workflow(user, "Look, don't touch", "10ms")
    wid = wf["id"]
    done = execute(user, wid)
    wait_status(user, wid, done, "Completed")
    api(user, "POST", f"/workflows/{wid}/collaborators", {"userId": viewer.id, "role": "viewer"})

    sign_in(page, viewer)
    page.goto(f"/#/workflows/{wid}/run")
    expect(page.get_by_text("You are a viewer of this workflow")).to_be_visible()
    page.get_by_role("button", name="Run", exact=True).click()
    expect(page.locator("form .form-error")).to_contain_text(re.compile("permission|viewer|role", re.I))
    assert [r["executionId"] for r in executions(user, wid)] == [done]
    expected_http_errors(page, 403)

    # On the monitor a viewer can watch and read, not cancel or re-run.
    page.goto(f"/#/workflows/{wid}/executions/{done}")
    expect(page.locator(".mon-status .badge")).to_have_text("completed")
    expect(page.get_by_role("button", name="Re-run")).to_be_disabled()
    expect(page.get_by_role("button", name="Cancel", exact=True)).to_be_disabled()
    expect(page.locator(".log-box")).to_contain_text("execution completed")


def test_watch_reconnects_after_a_drop(signed_in, user):
    page = signed_in
    wf = make_workflow(user, "Dropped stream", "4s")
    wid = wf["id"]
    eid = execute(user, wid, "Kim")
    # The first watch and tail requests fail at the network level; the monitor says so and tries again.
    page.route(re.compile(r"/watch$"), lambda route: route.abort(), times=1)
    page.route(re.compile(r"/logs/tail"), lambda route: route.abort(), times=1)
    page.goto(f"/#/workflows/{wid}/executions/{eid}")
    expect(page.locator(".stream-note")).to_contain_text("reconnecting")
    expect(page.locator(".mon-logs")).to_contain_text("reconnecting")
    for key in "abc":
        expect(node(page, key)).to_have_class(re.compile(r"\bst-completed\b"), timeout=LIVE)
    expect(page.locator(".mon-status .badge")).to_have_text("completed", timeout=LIVE)
    expect(page.locator(".stream-note")).to_have_text("")
    expect(page.locator(".log-box")).to_contain_text("careful, Kim")
    page.console_errors[:] = [e for e in page.console_errors if "net::ERR_FAILED" not in e]
