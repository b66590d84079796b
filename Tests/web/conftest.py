"""Fixtures for the dashboard tests: a real `weft serve` serving web/, and
headless Chromium (Debian's, driven by Playwright for Python; no browser
download).

* `weft`     (module)   one server per module (`--scrypt-log-n 10`, a secrets
                        master key, the repo's web/ directory), plus the
                        module's SERVER_ARGS
* `user`     (module)   a registered account: .email .password .name .token
                        .rest (a bearer-token REST client for setting things
                        up without the browser)
* `browser`  (session)  the Chromium instance
* `page`     (function) a desktop-sized tab (1366x900); `phone`: 390x844 with
                        touch. Both fail the test on any console error or
                        uncaught page error (`page.console_errors`; a test that
                        provokes an error answer on purpose names its statuses
                        with `expected_http_errors(page, 400)`), and are
                        closed after it.
* `signed_in`, `signed_in_phone` (function) the same, signed in as `user`
                        through the sign-in form.

Helpers: `shot(page, name)` saves a screenshot to $WEFT_SCREENSHOT_DIR
(default Tests/web/screenshots/); `api(user, method, path, body)` is a REST
call that must succeed and returns its JSON; `wait_until_ended(user, id, n)`
waits for a workflow's n executions to end.
"""

from __future__ import annotations

import base64
import os
import re
import shutil
import sys
import time
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
sys.path.insert(0, str(REPO / "Tests" / "interop"))

import weft_helpers as wh  # noqa: E402

WEB_DIR = REPO / "web"
SCREENSHOTS = Path(os.environ.get("WEFT_SCREENSHOT_DIR", HERE / "screenshots"))
PASSWORD = "correct horse battery"


def chromium_path() -> str:
    for name in ("chromium", "chromium-browser"):
        path = shutil.which(name)
        if path:
            return path
    pytest.fail("chromium not found (apt-get install chromium); scripts/install-deps.sh test installs it", pytrace=False)


@pytest.fixture(scope="session")
def playwright_instance():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        yield p


@pytest.fixture(scope="session")
def browser(playwright_instance):
    b = playwright_instance.chromium.launch(
        executable_path=chromium_path(), headless=True,
        args=["--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"])
    yield b
    b.close()


@pytest.fixture(scope="module")
def weft(request, tmp_path_factory):
    binary = wh.weft_bin()
    if not binary.exists():
        pytest.fail(f"weft binary not found at {binary}; build it (swift build) or set WEFT_BIN", pytrace=False)
    name = "web-" + request.module.__name__.rsplit(".", 1)[-1]
    base = tmp_path_factory.mktemp(name)
    args = ("--scrypt-log-n", "10", "--web-dir", str(WEB_DIR), *getattr(request.module, "SERVER_ARGS", ()))
    srv = wh.WeftServer(binary, base / "data", base / "logs", args=args, name=name,
                        env={"WEFT_SECRETS_KEY": base64.b64encode(os.urandom(32)).decode()})
    try:
        srv.start(timeout=30)
    except RuntimeError as exc:
        pytest.fail(str(exc), pytrace=False)
    srv.url = f"http://127.0.0.1:{srv.port}"
    yield srv
    try:
        wh.finish_servers([srv])
    except wh.ServerExitError as exc:
        pytest.fail(str(exc), pytrace=False)


@pytest.fixture(scope="module")
def user(weft):
    return wh.register_and_login(weft, name="Dana Ops", email=wh.unique_email("dana"), password=PASSWORD)


def api(user, method: str, path: str, body=None, expect=(200, 201, 202, 204)):
    """A REST call as `user` that must answer one of `expect`; its JSON (or None)."""
    r = user.rest.request(method, path, body)
    assert r.status in expect, f"{method} {path} -> {r.status} {r.body[:400]!r}"
    return r.json if r.body else None


ENDED = ("Completed", "Failed", "Cancelled", "TimedOut")


def wait_until_ended(user, workflow_id: str, count: int, timeout: float = 30.0) -> list:
    """Waits (through the API) until `workflow_id` has `count` executions,
    all ended; returns them."""
    deadline = time.time() + timeout
    runs = []
    while time.time() < deadline:
        runs = api(user, "GET", f"/workflows/{workflow_id}/executions")["executions"]
        if len(runs) == count and all(r["status"] in ENDED for r in runs):
            return runs
        time.sleep(0.2)
    pytest.fail(f"runs did not end in {timeout} s: {runs}")


def shot(page, name: str) -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


FAILED_LOAD = re.compile(r"Failed to load resource: the server responded with a status of (\d{3})")


def _watch(page):
    """Collects console errors and uncaught exceptions on `page`; any of
    them fails the test at teardown (`_finish`)."""
    page.console_errors = []
    page.on("console", lambda m: page.console_errors.append(f"console.{m.type}: {m.text}") if m.type == "error" else None)
    page.on("pageerror", lambda e: page.console_errors.append(f"pageerror: {e}"))
    return page


def expected_http_errors(page, *statuses):
    """Chromium logs every fetch answered with an error status as a console
    error, which no script can prevent. A test that meets such an answer on
    purpose (a validation 400, a refusal 403, a 409) drops exactly those
    statuses; every other console error still fails the test."""
    def expected(entry):
        m = FAILED_LOAD.search(entry)
        return bool(m) and int(m.group(1)) in statuses
    page.console_errors[:] = [e for e in page.console_errors if not expected(e)]


def _finish(ctx, page):
    errors = list(page.console_errors)
    ctx.close()
    assert not errors, "browser console errors:\n" + "\n".join(errors)


def _context(browser, weft, **kw):
    ctx = browser.new_context(base_url=weft.url, **kw)
    ctx.set_default_timeout(10_000)
    return ctx


@pytest.fixture
def page(browser, weft):
    ctx = _context(browser, weft, viewport={"width": 1366, "height": 900})
    p = _watch(ctx.new_page())
    yield p
    _finish(ctx, p)


PHONE = dict(viewport={"width": 390, "height": 844}, device_scale_factor=3, is_mobile=True, has_touch=True,
             user_agent="Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/150.0 Mobile Safari/537.36")


@pytest.fixture
def phone(browser, weft):
    ctx = _context(browser, weft, **PHONE)
    p = _watch(ctx.new_page())
    yield p
    _finish(ctx, p)


def sign_in(page, user):
    """Signs in through the form and waits for the workflow list."""
    page.goto("/#/login")
    page.get_by_label("Email").fill(user.email)
    page.get_by_label("Password").fill(user.password)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url("**/#/workflows*")
    page.get_by_role("heading", level=1, name="Workflows").wait_for()


@pytest.fixture
def signed_in(page, user):
    sign_in(page, user)
    return page


@pytest.fixture
def signed_in_phone(phone, user):
    sign_in(phone, user)
    return phone
