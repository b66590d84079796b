"""The workflow overview and the versions pages: history, one version, the
diff of two versions and rollback, checked in the browser and against what
the server then stores."""

from __future__ import annotations

import re
import types

import pytest
from playwright.sync_api import expect

from conftest import api, expected_http_errors, shot

OUTPUT_ONLY = {"id", "workflowId", "createdAt", "updatedAt"}


def definition_tasks(tasks):
    """Tasks without their output-only fields (what a rollback must restore)."""
    return [{k: v for k, v in t.items() if k not in OUTPUT_ONLY} for t in tasks]


@pytest.fixture(scope="module")
def flow(user):
    """A workflow with three versions: v1 (labelled "baseline"), v2 (task b's
    config changed), v3 (task d added, edge a -> c removed)."""
    wf = api(user, "POST", "/workflows", {
        "name": "Versioned report",
        "description": "Builds the daily report.",
        "tasks": [
            {"key": "a", "name": "Start", "action": "noop"},
            {"key": "b", "name": "Greet", "action": "log", "config": {"message": "hello v1"}, "dependsOn": ["a"]},
            {"key": "c", "name": "Finish", "action": "log", "config": {"message": "done"}, "dependsOn": ["a", "b"]},
        ],
    })
    wid = wf["id"]
    labelled = api(user, "POST", f"/workflows/{wid}/versions", {"label": "baseline"})
    assert labelled["version"] == 1 and labelled["label"] == "baseline", labelled

    # v2: change task b's config (the GET result sent back carries its etag)
    cur = api(user, "GET", f"/workflows/{wid}")
    for t in cur["tasks"]:
        if t["key"] == "b":
            t["config"] = {"message": "hello v2"}
    v2 = api(user, "PUT", f"/workflows/{wid}", cur)
    assert v2["version"] == 2, v2

    # v3: add task d, remove the edge a -> c
    cur = api(user, "GET", f"/workflows/{wid}")
    for t in cur["tasks"]:
        if t["key"] == "c":
            t["dependsOn"] = ["b"]
    cur["tasks"].append({"key": "d", "name": "Report", "action": "noop", "dependsOn": ["c"]})
    v3 = api(user, "PUT", f"/workflows/{wid}", cur)
    assert v3["version"] == 3, v3

    versions = api(user, "GET", f"/workflows/{wid}/versions")["versions"]
    by_number = {v["version"]: v for v in versions}
    assert sorted(by_number) == [1, 2, 3], versions
    return types.SimpleNamespace(id=wid, v=by_number)


def test_history_lists_every_version_with_its_label(signed_in, flow):
    page = signed_in
    page.goto(f"/#/workflows/{flow.id}/versions")
    expect(page.get_by_role("heading", level=2, name="History")).to_be_visible()
    rows = page.locator(".versions-table tbody tr")
    expect(rows).to_have_count(3)
    # newest first; v3 is current, v1 carries the label
    expect(rows.nth(0)).to_contain_text("v3")
    expect(rows.nth(0)).to_contain_text("current")
    expect(rows.nth(2)).to_contain_text("v1")
    expect(rows.nth(2)).to_contain_text("baseline")
    expect(rows.nth(2)).not_to_contain_text("current")
    expect(rows.nth(0)).to_contain_text("Dana Ops (you)")
    # the default comparison is the two newest versions
    expect(page.get_by_label("Version 2 as A")).to_be_checked()
    expect(page.get_by_label("Version 3 as B")).to_be_checked()
    shot(page, "versions")
    # the same version on both sides is refused before any request
    page.get_by_label("Version 3 as A").check()
    page.get_by_role("button", name="Compare").click()
    expect(page.locator(".compare-bar .form-error")).to_have_text("Pick two different versions to compare.")


def test_view_version_one_shows_its_tasks_and_json(signed_in, flow):
    page = signed_in
    page.goto(f"/#/workflows/{flow.id}/versions")
    page.get_by_role("link", name="View version 1").click()
    page.wait_for_url(re.compile(r".*/versions/ver_[^/?]+$"))
    expect(page.get_by_role("heading", level=2, name="Version 1")).to_be_visible()
    nodes = page.locator("svg.dag .node")
    expect(nodes).to_have_count(3)
    expect(page.locator('svg.dag .node[data-key="d"]')).to_have_count(0)
    expect(page.locator('svg.dag .edge[data-from="a"][data-to="c"]')).to_have_count(1)
    pre = page.locator("pre.def-json")
    expect(pre).to_contain_text('"message": "hello v1"')
    expect(pre).not_to_contain_text('"id"')  # output-only fields are left out
    expect(page.locator(".meta")).to_contain_text("baseline")
    # keyboard: a node opens its config in the side panel, Escape closes it
    node_b = page.locator('svg.dag .node[data-key="b"]')
    node_b.focus()
    page.keyboard.press("Enter")
    panel = page.get_by_role("region", name="Task Greet")
    expect(panel).to_be_visible()
    expect(panel).to_contain_text('"message": "hello v1"')
    shot(page, "version-view")
    page.keyboard.press("Escape")
    expect(panel).to_be_hidden()
    expect(node_b).to_be_focused()


def test_compare_version_one_with_three(signed_in, flow):
    page = signed_in
    page.goto(f"/#/workflows/{flow.id}/versions")
    page.get_by_label("Version 1 as A").check()
    page.get_by_label("Version 3 as B").check()
    page.get_by_role("button", name="Compare").click()
    page.wait_for_url(re.compile(r".*/versions\?a=.+&b=.+"))
    expect(page.get_by_role("heading", level=2, name="Compare version 1 with version 3")).to_be_visible()

    # the union DAG: d added, b changed, a and c unchanged, edge a -> c removed, c -> d added
    expect(page.locator('svg.dag .node[data-key="d"]')).to_have_class(re.compile(r"\badded\b"))
    expect(page.locator('svg.dag .node[data-key="d"]')).to_have_attribute("aria-label", re.compile("added"))
    expect(page.locator('svg.dag .node[data-key="b"]')).to_have_class(re.compile(r"\bchanged\b"))
    expect(page.locator('svg.dag .node[data-key="a"]')).not_to_have_class(re.compile(r"\b(added|removed|changed)\b"))
    expect(page.locator('svg.dag .edge[data-from="a"][data-to="c"]')).to_have_class(re.compile(r"\bremoved\b"))
    expect(page.locator('svg.dag .edge[data-from="c"][data-to="d"]')).to_have_class(re.compile(r"\badded\b"))
    expect(page.locator('svg.dag .edge[data-from="a"][data-to="b"]')).not_to_have_class(re.compile(r"\b(added|removed)\b"))

    # the changes in words
    changes = page.get_by_role("list", name="Changes from A to B")
    expect(changes).to_contain_text('task b: config.message changed from "hello v1" to "hello v2"')
    expect(changes).to_contain_text("task d added (noop)")
    expect(changes).to_contain_text("edge a → c removed")

    # the JSON diff: the changed line once with − (removed) and once with + (added), not by colour alone
    removed = page.locator(".json-diff .dl.del", has_text='"message": "hello v1"')
    added = page.locator(".json-diff .dl.add", has_text='"message": "hello v2"')
    expect(removed).to_have_count(1)
    expect(added).to_have_count(1)
    expect(removed.locator(".mk")).to_contain_text("−")
    expect(added.locator(".mk")).to_contain_text("+")
    shot(page, "version-diff")

    # unified layout: the same two lines, in one pane
    page.get_by_role("button", name="Unified").click()
    expect(page.get_by_role("button", name="Unified")).to_have_attribute("aria-pressed", "true")
    expect(page.locator(".json-diff.unified .dl.del", has_text='"message": "hello v1"')).to_have_count(1)
    expect(page.locator(".json-diff.unified .dl.add", has_text='"message": "hello v2"')).to_have_count(1)
    page.get_by_role("button", name="Side by side").click()  # leave the stored preference as it was
    expect(page.locator(".json-diff.side")).to_be_visible()

    # a node of the diff explains itself in the side panel
    page.locator('svg.dag .node[data-key="b"]').click()
    panel = page.get_by_role("region", name="Task Greet")
    expect(panel).to_contain_text('config.message changed from "hello v1" to "hello v2"')
    expect(panel.get_by_role("heading", name="In version 1")).to_be_visible()
    expect(panel.get_by_role("heading", name="In version 3")).to_be_visible()

    # swapped, the same differences read the other way round
    page.get_by_role("link", name="Swap A and B").click()
    expect(page.get_by_role("heading", level=2, name="Compare version 3 with version 1")).to_be_visible()
    expect(page.locator('svg.dag .node[data-key="d"]')).to_have_class(re.compile(r"\bremoved\b"))
    expect(page.locator('svg.dag .edge[data-from="a"][data-to="c"]')).to_have_class(re.compile(r"\badded\b"))
    expect(page.get_by_role("list", name="Changes from A to B")).to_contain_text("task d removed (was noop)")


def test_diff_stacks_on_a_phone(signed_in_phone, flow):
    page = signed_in_phone
    page.goto(f"/#/workflows/{flow.id}/versions?a={flow.v[1]['id']}&b={flow.v[3]['id']}")
    expect(page.get_by_role("heading", level=2, name="Compare version 1 with version 3")).to_be_visible()
    panes = page.locator(".json-diff.side .diff-pane")
    expect(panes).to_have_count(2)
    a, b = panes.nth(0).bounding_box(), panes.nth(1).bounding_box()
    assert b["y"] >= a["y"] + a["height"] - 1, (a, b)  # B below A, not beside it
    assert b["width"] > 300, b
    overflow = page.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth")
    assert overflow <= 0, f"the page scrolls sideways by {overflow} px"
    shot(page, "version-diff-phone")


def test_rollback_through_the_ui(signed_in, user, flow):
    page = signed_in
    page.goto(f"/#/workflows/{flow.id}/versions/{flow.v[1]['id']}")
    expect(page.get_by_role("heading", level=2, name="Version 1")).to_be_visible()
    page.get_by_role("button", name="Roll back to this version").click()
    dialog = page.get_by_role("dialog")
    expect(dialog).to_contain_text("Roll back to version 1?")
    dialog.get_by_role("button", name="Roll back").click()
    expect(page.get_by_role("status").filter(has_text="Rolled back")).to_contain_text(
        "version 4 is now current, a copy of version 1")
    expect(page.get_by_role("heading", level=2, name="Version 4")).to_contain_text("current")
    expect(page.locator(".meta")).to_contain_text("rollback to version 1")

    wf = api(user, "GET", f"/workflows/{flow.id}")
    assert wf["version"] == 4, wf
    assert definition_tasks(wf["tasks"]) == definition_tasks(flow.v[1]["tasks"]), wf["tasks"]
    versions = api(user, "GET", f"/workflows/{flow.id}/versions")["versions"]
    assert versions[0]["version"] == 4 and versions[0]["label"] == "rollback to version 1", versions[0]

    # the history now has four versions, v4 current
    page.get_by_role("link", name="All versions").click()
    rows = page.locator(".versions-table tbody tr")
    expect(rows).to_have_count(4)
    expect(rows.nth(0)).to_contain_text("current")
    expect(rows.nth(0)).to_contain_text("rollback to version 1")


def test_label_the_current_version_in_the_ui(signed_in, user, flow):
    page = signed_in
    page.goto(f"/#/workflows/{flow.id}/versions")
    field = page.get_by_label("Label the current version (v4)")
    expect(field).to_have_value("rollback to version 1")
    field.fill("  restored baseline  ")
    page.get_by_role("button", name="Save label").click()
    expect(page.get_by_role("status").filter(has_text="labelled")).to_contain_text("Version 4 labelled “restored baseline”.")
    expect(page.locator(".versions-table tbody tr").nth(0)).to_contain_text("restored baseline")
    versions = api(user, "GET", f"/workflows/{flow.id}/versions")["versions"]
    assert versions[0]["version"] == 4 and versions[0]["label"] == "restored baseline", versions[0]


def test_overview_shows_the_dag_runs_and_schedules(signed_in, user, flow):
    page = signed_in
    run = api(user, "POST", f"/workflows/{flow.id}/execute", {"input": {}}, expect=(200, 201, 202))
    eid = run["executionId"]
    api(user, "POST", f"/workflows/{flow.id}/schedules",
        {"cron": "0 9 * * *", "timezone": "UTC", "description": "morning report"})
    wf = api(user, "GET", f"/workflows/{flow.id}")

    page.goto(f"/#/workflows/{flow.id}")
    expect(page.get_by_role("heading", level=1, name="Versioned report")).to_be_visible()
    expect(page.get_by_text("Builds the daily report.")).to_be_visible()
    expect(page.locator("svg.dag .node")).to_have_count(len(wf["tasks"]))
    run_link = page.locator(f'.run-list a[href="#/workflows/{flow.id}/executions/{eid}"]')
    expect(run_link).to_be_visible()
    expect(page.locator(".run-list li").first.locator(".badge")).to_have_text(
        re.compile(r"pending|running|completed|failed"))
    schedules = page.locator(".sched-list")
    expect(schedules).to_contain_text("0 9 * * *")
    expect(schedules).to_contain_text("morning report")
    expect(schedules).to_contain_text("next:")
    for name in ("Edit", "Versions", "Statistics"):
        expect(page.locator(".quick-links").get_by_role("link", name=name)).to_be_visible()
    # a task's config in the side panel, by keyboard
    page.locator('svg.dag .node[data-key="b"]').focus()
    page.keyboard.press("Enter")
    panel = page.get_by_role("region", name="Task Greet")
    expect(panel).to_contain_text('"message": "hello v1"')  # rolled back to v1 by the test before
    shot(page, "overview")
    panel.get_by_role("button", name="Close Task Greet").click()
    expect(panel).to_be_hidden()


def test_unknown_workflow_shows_the_servers_message(signed_in, user):
    page = signed_in
    r = user.rest.get("/workflows/wf_01NOSUCHWORKFLOW0000000000")
    assert r.status == 404, r
    page.goto("/#/workflows/wf_01NOSUCHWORKFLOW0000000000")
    expect(page.get_by_role("heading", level=1, name="Workflow not found")).to_be_visible()
    expect(page.get_by_role("alert")).to_have_text(r.json["message"])
    page.goto("/#/workflows/wf_01NOSUCHWORKFLOW0000000000/versions")
    expect(page.get_by_role("heading", level=1, name="Workflow not found")).to_be_visible()
    expect(page.get_by_role("alert")).to_have_text(r.json["message"])
    expected_http_errors(page, 404)  # the two unknown-workflow answers, on purpose
