"""Page weight and speed, measured in the browser (issue targets: first load
under 200 KB transferred; every page interactive in under 1 s).

These tests assert what they measure exists (every page became ready with
its data, every byte was counted) and print the figures; the targets are
judged from the printed figures (docs/BENCHMARKS.md), not asserted here:
time is not a test's business on a shared 2-core machine.

    WEFT_BIN=.build/release/weft python3 -m pytest -q -s Tests/web/test_page_speed.py
"""

from __future__ import annotations

import json

import pytest

from conftest import PASSWORD, SCREENSHOTS, api, wait_until_ended

READY = "main[data-ready]"


def cookie_session(weft, user) -> list[dict]:
    """The dashboard's session cookies, from a real cookie login."""
    r = user.rest.request("POST", "/users/login", {"email": user.email, "password": PASSWORD},
                          headers={"X-Weft-Session": "cookie"}, auth=False)
    assert r.status == 200, r
    cookies = []
    for part in r.header("set-cookie").split(", weft_"):
        name, _, rest = part.removeprefix("weft_").partition("=")
        value = rest.split(";", 1)[0]
        path = "/users/refresh" if name == "refresh" else "/"
        cookies.append({"name": f"weft_{name}", "value": value, "domain": "127.0.0.1", "path": path,
                        "httpOnly": name != "csrf", "sameSite": "Strict"})
    return cookies


@pytest.fixture(scope="module")
def data(weft, user):
    """A workflow with runs and a schedule, so every page has something to show."""
    wf = api(user, "POST", "/workflows", {"name": "speed", "tasks": [
        {"key": "a", "name": "a", "action": "log", "config": {"message": "one"}},
        {"key": "b", "name": "b", "action": "log", "config": {"message": "two"}, "dependsOn": ["a"]},
        {"key": "c", "name": "c", "action": "noop", "dependsOn": ["b"]},
    ]})
    ids = [api(user, "POST", f"/workflows/{wf['id']}/execute", {"input": {"n": i}})["executionId"] for i in range(3)]
    wait_until_ended(user, wf["id"], 3)
    api(user, "POST", f"/workflows/{wf['id']}/schedules", {"cron": "0 * * * *", "timezone": "UTC"})
    return {"wf": wf["id"], "execution": ids[0]}


def ready_ms(page) -> float:
    """When the shown page was drawn with its data: the end of app.js's
    `weft:ready` measure, in ms since the navigation started."""
    page.wait_for_selector(READY, timeout=15_000)
    return page.evaluate("""() => {
        const m = performance.getEntriesByType('measure').filter(e => e.name.startsWith('weft:ready'));
        return m.length ? m[m.length - 1].startTime + m[m.length - 1].duration : -1;
    }""")


def transferred(page) -> dict:
    return page.evaluate("""() => {
        const nav = performance.getEntriesByType('navigation')[0];
        const res = performance.getEntriesByType('resource');
        const sum = (xs, f) => xs.reduce((a, x) => a + f(x), 0);
        return {requests: 1 + res.length, transfer: nav.transferSize + sum(res, r => r.transferSize),
                decoded: nav.decodedBodySize + sum(res, r => r.decodedBodySize)};
    }""")


def test_first_load_weight(browser, weft, user, data):
    ctx = browser.new_context(base_url=weft.url, viewport={"width": 1366, "height": 900})
    try:
        ctx.add_cookies(cookie_session(weft, user))
        page = ctx.new_page()
        page.goto("/#/workflows")
        ms = ready_ms(page)
        page.get_by_role("link", name="speed").wait_for()
        first = transferred(page)
        page.goto("/#/login")  # signed-out first load: a fresh context, no cookies
    finally:
        ctx.close()
    ctx = browser.new_context(base_url=weft.url)
    try:
        page = ctx.new_page()
        page.goto("/#/login")
        page.get_by_role("button", name="Sign in").wait_for()
        login = transferred(page)
    finally:
        ctx.close()
    assert first["transfer"] > 0 and first["decoded"] > first["transfer"], first
    figures = {"workflows_first_load": first, "workflows_first_ready_ms": round(ms, 1), "login_first_load": login}
    print(f"\nfirst load, signed in (#/workflows, cold cache): {first['transfer'] / 1024:.1f} KB transferred "
          f"({first['decoded'] / 1024:.1f} KB decoded) in {first['requests']} requests; ready at {ms:.0f} ms "
          f"— target < 200 KB: {'met' if first['transfer'] < 200 * 1024 else 'MISSED'}")
    print(f"first load, signed out (#/login): {login['transfer'] / 1024:.1f} KB transferred in {login['requests']} requests")
    _record("first_load", figures)


PAGES = [
    ("workflows", "/#/workflows"), ("overview", "/#/workflows/{wf}"), ("editor", "/#/workflows/{wf}/edit"),
    ("runs", "/#/workflows/{wf}/runs"), ("run", "/#/workflows/{wf}/run"),
    ("monitor", "/#/workflows/{wf}/executions/{execution}"), ("versions", "/#/workflows/{wf}/versions"),
    ("schedules", "/#/workflows/{wf}/schedules"), ("triggers", "/#/workflows/{wf}/triggers"),
    ("notifications", "/#/workflows/{wf}/notifications"), ("collaborators", "/#/workflows/{wf}/collaborators"),
    ("stats", "/#/workflows/{wf}/stats"), ("analytics", "/#/analytics"), ("secrets", "/#/secrets"), ("organization", "/#/organization"), ("ops", "/#/ops"),
    ("new workflow", "/#/workflows/new"),
]


def test_every_page_interactive(browser, weft, user, data):
    """Each page opened three ways: a first visit (a full load with the
    page's modules not yet in the HTTP cache), a full load later (a bookmark,
    a reload: modules revalidated with 304s) and an in-app navigation (modules
    loaded, only the page's data fetched)."""
    ctx = browser.new_context(base_url=weft.url, viewport={"width": 1366, "height": 900})
    rows = []
    try:
        ctx.add_cookies(cookie_session(weft, user))
        page = ctx.new_page()
        errors = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        cold = {}
        for name, template in PAGES:  # first visits, empty HTTP cache: also what warms it
            page.goto("about:blank")
            page.goto(template.format(**data))
            cold[name] = ready_ms(page)
        for name, template in PAGES:
            url = template.format(**data)
            page.goto("about:blank")
            page.goto(url)
            full = ready_ms(page)
            # In-app: from another page, a hash change (what a click on a link does).
            page.evaluate("location.hash = '#/workflows'")
            page.wait_for_selector('main[data-ready="/workflows"]')
            page.evaluate(f"location.hash = {json.dumps(url[1:])}")
            page.wait_for_selector(f'main[data-ready="{url[2:]}"]')
            inapp = page.evaluate("""() => { const m = performance.getEntriesByType('measure').filter(e => e.name.startsWith('weft:ready'));
                return m[m.length - 1].duration; }""")
            rows.append((name, cold[name], full, inapp))
        assert not errors, errors
    finally:
        ctx.close()
    assert len(rows) == len(PAGES) and all(first > 0 and full > 0 and inapp >= 0 for _, first, full, inapp in rows)
    worst = max(max(row[1:]) for row in rows)
    print("\npage            first visit (ms)   full load (ms)   in-app (ms)")
    for name, first, full, inapp in rows:
        print(f"{name:<15} {first:>16.0f} {full:>16.0f} {inapp:>13.0f}")
    print(f"slowest: {worst:.0f} ms — target < 1000 ms: {'met' if worst < 1000 else 'MISSED'}")
    _record("pages", {name: {"first_visit_ms": round(first, 1), "full_ms": round(full, 1), "in_app_ms": round(inapp, 1)}
                      for name, first, full, inapp in rows})


def _record(key: str, value) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / "figures.json"
    figures = json.loads(path.read_text()) if path.exists() else {}
    figures[key] = value
    path.write_text(json.dumps(figures, indent=2))
