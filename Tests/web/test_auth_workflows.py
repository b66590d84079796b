"""Browser tests: sign in / register / sign out (cookie session), the
workflow list (search, paging, last run, next schedule, duplicate, delete,
organization switcher), secrets and collaborators."""

from __future__ import annotations

import re
import uuid

from playwright.sync_api import expect

import weft_helpers as wh
from conftest import PASSWORD, api, expected_http_errors, shot, sign_in

LIVE = 15_000  # ms, for things that depend on the engine or a slow machine


def tag() -> str:
    """A word no other test uses (search matches whole words, the last as a prefix)."""
    return "t" + uuid.uuid4().hex[:8]


def workflow(user, name, description="", org_id=None, tasks=None):
    body = {"name": name, "description": description, "tasks": tasks or [{"key": "a", "name": "A", "action": "noop"}]}
    if org_id:
        body["orgId"] = org_id
    return api(user, "POST", "/workflows", body)


def row(page, wf_id):
    return page.locator(f'tr[data-id="{wf_id}"]')


def confirm(page, button="Delete"):
    dialog = page.get_by_role("dialog")
    expect(dialog).to_be_visible()
    dialog.get_by_role("button", name=button, exact=True).click()
    expect(dialog).to_have_count(0)




def own_org(user):
    return wh.own_org_id(user.rest.server, user.token)


# ---------------------------------------------------------------------------
# Accounts and the cookie session
# ---------------------------------------------------------------------------


def test_register_sign_out_sign_in(page, weft):
    email = wh.unique_email("reg")
    page.goto("/#/register")
    expect(page.get_by_role("heading", level=1, name="Create account")).to_be_visible()
    page.get_by_label("Name").fill("Reggie Tester")
    page.get_by_label("Email").fill(email)
    # The browser checks the server's minimum first.
    page.get_by_label("Password").fill("short")
    page.get_by_role("button", name="Create account").click()
    expect(page.get_by_text("password must be at least 8 characters")).to_be_visible()
    expect(page.get_by_label("Password")).to_have_attribute("aria-invalid", "true")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Create account").click()
    page.wait_for_url("**/#/workflows*")
    expect(page.get_by_role("heading", level=1, name="Workflows")).to_be_visible()
    expect(page.locator("#session .who")).to_have_text("Reggie Tester")
    # A new account has no workflows: the empty state says what to do.
    expect(page.get_by_text("No workflows in Reggie Tester's organization yet.")).to_be_visible()
    expect(page.get_by_role("link", name="New workflow").first).to_be_visible()

    # The session is an httpOnly, SameSite=Strict cookie: scripts never see it.
    assert "weft_session" not in page.evaluate("document.cookie")
    cookies = {c["name"]: c for c in page.context.cookies()}
    assert "weft_session" in cookies, cookies.keys()
    assert cookies["weft_session"]["httpOnly"] is True
    assert cookies["weft_session"]["sameSite"] == "Strict"

    # Sign out: back to the sign-in form, and a page that needs the session sends you there.
    page.get_by_role("button", name="Sign out").click()
    page.wait_for_url("**/#/login*")
    expect(page.get_by_role("heading", level=1, name="Sign in")).to_be_visible()
    assert "weft_session" not in {c["name"] for c in page.context.cookies()}
    page.goto("/#/workflows")
    page.wait_for_url(re.compile(r"#/login\?next=%2Fworkflows$"))
    expect(page.get_by_role("button", name="Sign in")).to_be_visible()

    # A wrong password: the server's answer in the form's error box.
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill("not the password")
    page.get_by_role("button", name="Sign in").click()
    expect(page.locator("form .form-error")).to_have_text("email or password is wrong")
    shot(page, "login")

    # The right one: back where the redirect came from.
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url("**/#/workflows")
    expect(page.get_by_role("heading", level=1, name="Workflows")).to_be_visible()
    cookies = {c["name"]: c for c in page.context.cookies()}
    assert cookies["weft_session"]["httpOnly"] is True
    # GET /users/me without a session (401), the refresh try without a refresh cookie (400), the wrong password (401).
    expected_http_errors(page, 401, 400)


def test_register_errors_from_the_server(page, user):
    page.goto("/#/login")
    page.get_by_role("link", name="Create an account").click()
    page.wait_for_url("**/#/register")
    page.get_by_label("Name").fill("Someone Else")
    page.get_by_label("Email").fill(user.email)  # taken
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Create account").click()
    # 409 from the server, next to the field it names.
    email = page.get_by_label("Email")
    expect(email).to_have_attribute("aria-invalid", "true")
    expect(page.get_by_text(f"a user with email {user.email} already exists")).to_be_visible()
    page.get_by_role("link", name="Sign in").click()
    page.wait_for_url("**/#/login")
    expect(page.get_by_role("heading", level=1, name="Sign in")).to_be_visible()
    expected_http_errors(page, 409)


# ---------------------------------------------------------------------------
# The workflow list
# ---------------------------------------------------------------------------


def test_workflow_list_search_duplicate_delete(page, user):
    t = tag()
    alpha = workflow(user, f"Alpha {t}", "the first one")
    beta = workflow(user, f"Beta {t}", "nightly sync")
    gamma = workflow(user, f"Gamma {t}")
    # A schedule on Beta: its next run shows; a run of Alpha: its status shows.
    api(user, "POST", f"/workflows/{beta['id']}/schedules", {"cron": "0 3 * * *", "timezone": "UTC"})
    run = api(user, "POST", f"/workflows/{alpha['id']}/execute", {}, expect=(202,))
    wh.wait_until(
        lambda: api(user, "GET", f"/workflows/{alpha['id']}/executions/{run['executionId']}")["status"] == "Completed",
        timeout=LIVE / 1000, interval=0.2, message="the execution of Alpha completes")

    sign_in(page, user)
    for wf in (alpha, beta, gamma):
        expect(row(page, wf["id"])).to_be_visible()
        expect(row(page, wf["id"]).get_by_role("link", name=wf["name"])).to_have_attribute("href", f"#/workflows/{wf['id']}")
        expect(row(page, wf["id"]).locator('td[data-label="Owner"]')).to_have_text("you")
        expect(row(page, wf["id"]).locator('td[data-label="Version"]')).to_have_text("1")
    expect(row(page, alpha["id"]).locator(".badge")).to_have_text("completed", timeout=LIVE)
    expect(row(page, gamma["id"]).locator('td[data-label="Last run"]')).to_have_text("never run")
    expect(row(page, beta["id"]).locator('td[data-label="Next run"] time')).to_have_text(re.compile(r"^in "))
    expect(row(page, gamma["id"]).locator('td[data-label="Next run"]')).to_have_text("—")
    expect(page.get_by_role("link", name="New workflow")).to_have_attribute("href", "#/workflows/new")
    shot(page, "workflows")

    # Search narrows the list (debounced, server-side full text).
    search = page.get_by_label("Search workflows")
    search.fill(f"beta {t}")
    expect(row(page, alpha["id"])).to_have_count(0)
    expect(row(page, beta["id"])).to_be_visible()
    expect(page.locator("tbody tr")).to_have_count(1)
    expect(page.get_by_role("status").filter(has_text="matching")).to_have_text(re.compile(r"^1 workflow matching"))
    assert "q=beta" in page.url
    search.fill(f"nomatch{t}")
    expect(page.get_by_text(f"No workflow matches “nomatch{t}”.")).to_be_visible()
    search.fill("")
    for wf in (alpha, beta, gamma):
        expect(row(page, wf["id"])).to_be_visible()

    # Duplicate: a new workflow "<name> (copy)" with the same tasks, in the same organization.
    row(page, alpha["id"]).get_by_role("button", name=f"Duplicate Alpha {t}").click()
    copy_link = page.get_by_role("link", name=f"Alpha {t} (copy)")
    expect(copy_link).to_be_visible()
    listed = wh.all_pages(user.rest, "/workflows", "workflows", summary="true")
    copies = [w for w in listed if w["name"] == f"Alpha {t} (copy)"]
    assert len(copies) == 1, [w["name"] for w in listed]
    copy = api(user, "GET", f"/workflows/{copies[0]['id']}")
    assert copy["description"] == "the first one"
    assert copy["orgId"] == alpha["orgId"]
    assert [(x["key"], x["action"]) for x in copy["tasks"]] == [("a", "noop")]
    assert copy["tasks"][0]["id"] != alpha["tasks"][0]["id"]

    # Delete: asks first; Cancel keeps it, Delete removes it (the server agrees).
    row(page, gamma["id"]).get_by_role("button", name=f"Delete Gamma {t}").click()
    confirm(page, "Cancel")
    expect(row(page, gamma["id"])).to_be_visible()
    # Escape closes the question too, and gives focus back to the button.
    row(page, gamma["id"]).get_by_role("button", name=f"Delete Gamma {t}").click()
    expect(page.get_by_role("dialog")).to_be_visible()
    page.keyboard.press("Escape")
    expect(page.get_by_role("dialog")).to_have_count(0)
    expect(row(page, gamma["id"]).get_by_role("button", name=f"Delete Gamma {t}")).to_be_focused()
    row(page, gamma["id"]).get_by_role("button", name=f"Delete Gamma {t}").click()
    confirm(page, "Delete")
    expect(row(page, gamma["id"])).to_have_count(0)
    assert user.rest.request("GET", f"/workflows/{gamma['id']}").status == 404
    expect(row(page, alpha["id"])).to_be_visible()


def test_workflow_names_are_text_not_markup(page, user):
    evil = workflow(user, f'<img src=x id=pwned> {tag()}')
    sign_in(page, user)
    expect(row(page, evil["id"]).get_by_role("link")).to_have_text(evil["name"])
    expect(page.locator("#pwned")).to_have_count(0)


def test_load_more_pages_through_the_list(page, weft):
    lena = wh.register_and_login(weft, name="Lena Paging")
    for i in range(55):
        workflow(lena, f"Paged {i:02d}")
    sign_in(page, lena)
    expect(page.locator("tbody tr")).to_have_count(50)
    expect(page.get_by_role("link", name="Paged 54")).to_be_visible()  # newest first
    expect(page.get_by_role("link", name="Paged 00")).to_have_count(0)
    page.get_by_role("button", name="Load more").click()
    expect(page.locator("tbody tr")).to_have_count(55)
    expect(page.get_by_role("link", name="Paged 00")).to_be_visible()
    expect(page.get_by_role("button", name="Load more")).to_be_hidden()


def test_org_switcher_changes_the_list(page, weft, user):
    t = tag()
    carol = wh.register_and_login(weft, name="Carol Member")
    dana_org = own_org(user)
    carol_org = own_org(carol)
    wh.invite_and_accept(weft, user.token, carol.token)
    home = workflow(carol, f"Carol home {t}")
    shared = workflow(carol, f"Carol in Dana org {t}", org_id=dana_org)
    assert shared["orgId"] == dana_org and home["orgId"] == carol_org
    # Dana's workflow, shared with Carol as a viewer: listed in Dana's org with Dana as owner.
    danas = workflow(user, f"Dana shares {t}", org_id=dana_org)
    api(user, "POST", f"/workflows/{danas['id']}/collaborators", {"userId": carol.id, "role": "viewer"})

    sign_in(page, carol)
    switcher = page.get_by_label("Organization")
    expect(switcher.locator("option")).to_have_count(2)
    expect(switcher).to_have_value(carol_org)
    expect(row(page, home["id"])).to_be_visible()
    expect(row(page, shared["id"])).to_have_count(0)
    expect(row(page, danas["id"])).to_have_count(0)

    switcher.select_option(dana_org)
    expect(row(page, shared["id"])).to_be_visible()
    expect(row(page, danas["id"])).to_be_visible()
    expect(row(page, home["id"])).to_have_count(0)
    expect(row(page, danas["id"]).locator('td[data-label="Owner"]')).to_have_text("Dana Ops")
    expect(row(page, danas["id"]).get_by_role("button", name=f"Delete Dana shares {t}")).to_be_disabled()
    # The choice is remembered.
    page.reload()
    expect(page.get_by_label("Organization")).to_have_value(dana_org)
    expect(row(page, shared["id"])).to_be_visible()

    # A viewer sees who has access, but the owner-only controls are off, with the reason.
    page.goto(f"/#/workflows/{danas['id']}/collaborators")
    expect(page.get_by_role("heading", level=1, name=danas["name"])).to_be_visible()
    expect(page.get_by_text("Only the workflow’s owner can add collaborators")).to_be_visible()
    expect(page.get_by_role("button", name="Add collaborator")).to_be_disabled()
    expect(page.get_by_role("button", name="Leave this workflow")).to_be_visible()


def test_workflow_list_on_a_phone(signed_in_phone, user):
    page = signed_in_phone
    wf = workflow(user, f"Phone {tag()}")
    page.reload()
    expect(row(page, wf["id"])).to_be_visible()
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    box = row(page, wf["id"]).get_by_role("button", name=f"Delete {wf['name']}").bounding_box()
    assert box and box["height"] >= 44, box
    shot(page, "workflows-phone")
    for path, heading, name in ((f"/#/workflows/{wf['id']}/collaborators", wf["name"], "collaborators-phone"),
                                ("/#/secrets", "Secrets", "secrets-phone")):
        page.goto(path)
        expect(page.get_by_role("heading", level=1, name=heading)).to_be_visible()
        expect(page.locator("main table, main .empty").first).to_be_visible()
        assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth"), path
        shot(page, name)


# ---------------------------------------------------------------------------
# Secrets
# ---------------------------------------------------------------------------


def test_secrets_add_replace_delete(signed_in, user):
    page = signed_in
    org = own_org(user)
    name = f"API_TOKEN_{uuid.uuid4().hex[:6].upper()}"
    value = "s3cret-" + uuid.uuid4().hex
    page.get_by_role("link", name="Secrets").click()
    page.wait_for_url("**/#/secrets")
    expect(page.get_by_role("heading", level=1, name="Secrets")).to_be_visible()
    expect(page.locator("main")).not_to_contain_text("null")

    # A bad name: the browser's copy of the server's rule, next to the field.
    page.get_by_label("Name", exact=True).fill("1bad")
    page.get_by_label("Value", exact=True).fill(value)
    page.get_by_role("button", name="Add secret").click()
    expect(page.get_by_text("must be letters, digits and '_', starting with a letter")).to_be_visible()
    expect(page.get_by_label("Name", exact=True)).to_have_attribute("aria-invalid", "true")

    page.get_by_label("Name", exact=True).fill(name)
    expect(page.get_by_label("Value", exact=True)).to_have_attribute("type", "password")
    page.get_by_role("button", name="Add secret").click()
    expect(page.locator(f'tr[data-name="{name}"]')).to_be_visible()
    stored = api(user, "GET", f"/orgs/{org}/secrets")["secrets"]
    assert [s["version"] for s in stored if s["name"] == name] == [1]
    assert value not in page.content()

    # The same name again: the server's 409, by the name field.
    page.get_by_label("Name", exact=True).fill(name)
    page.get_by_label("Value", exact=True).fill("another-value")
    page.get_by_role("button", name="Add secret").click()
    expect(page.get_by_text(f"has a secret {name}; update it instead")).to_be_visible()
    expected_http_errors(page, 409)
    shot(page, "secrets")

    # Replace the value: version 2.
    page.get_by_role("button", name=f"Replace value of {name}").click()
    dialog = page.get_by_role("dialog")
    dialog.get_by_label("New value").fill("new-" + value)
    dialog.get_by_role("button", name="Save value").click()
    expect(dialog).to_have_count(0)
    expect(page.locator(f'tr[data-name="{name}"] td[data-label="Version"]')).to_have_text("2")
    stored = api(user, "GET", f"/orgs/{org}/secrets")["secrets"]
    assert [s["version"] for s in stored if s["name"] == name] == [2]

    page.get_by_role("button", name=f"Delete {name}").click()
    confirm(page, "Delete")
    expect(page.locator(f'tr[data-name="{name}"]')).to_have_count(0)
    stored = api(user, "GET", f"/orgs/{org}/secrets")["secrets"]
    assert name not in [s["name"] for s in stored]


def test_secrets_read_only_for_members(page, weft, user):
    mia = wh.register_and_login(weft, name="Mia Member")
    wh.invite_and_accept(weft, user.token, mia.token)
    dana_org = own_org(user)
    api(user, "POST", f"/orgs/{dana_org}/secrets", {"name": f"SHARED_{uuid.uuid4().hex[:6].upper()}", "value": "shared-value"})
    sign_in(page, mia)
    page.get_by_label("Organization").select_option(dana_org)
    page.goto("/#/secrets")
    expect(page.get_by_text("only its admins can add, replace or delete secrets")).to_be_visible()
    expect(page.get_by_role("button", name="Add secret")).to_be_disabled()
    expect(page.locator("tbody tr").first).to_be_visible()
    expect(page.get_by_role("button", name=re.compile("^Delete SHARED_")).first).to_be_disabled()


# ---------------------------------------------------------------------------
# Collaborators
# ---------------------------------------------------------------------------


def test_collaborators_add_change_remove(signed_in, weft, user):
    page = signed_in
    bob = wh.register_and_login(weft, name="Bob Viewer")
    wh.invite_and_accept(weft, user.token, bob.token)
    stranger = wh.register_and_login(weft, name="Stan Stranger")  # not in Dana's organization
    wf = workflow(user, f"Shared {tag()}")
    path = f"/workflows/{wf['id']}/collaborators"
    page.goto(f"/#{path}")
    expect(page.get_by_role("heading", level=1, name=wf["name"])).to_be_visible()
    expect(page.get_by_role("link", name="Collaborators")).to_have_attribute("aria-current", "page")
    expect(page.locator("main")).not_to_contain_text("null")
    owner_row = page.locator(f'tr[data-user-id="{user.id}"]')
    expect(owner_row).to_contain_text("owner")

    # Someone outside the organization: refused, with the reason by the field.
    who = page.get_by_label("Email or user id")
    who.fill(stranger.email)
    page.get_by_role("button", name="Add collaborator").click()
    expect(page.get_by_text("invite them to the organization first")).to_be_visible()
    expect(who).to_have_attribute("aria-invalid", "true")
    who.fill(stranger.id)
    page.get_by_role("button", name="Add collaborator").click()
    expect(page.get_by_text(f"no member {stranger.id} in organization")).to_be_visible()
    expected_http_errors(page, 404)

    # Bob, by email, as a viewer.
    who.fill(bob.email)
    page.get_by_label("Role", exact=True).select_option("viewer")
    page.get_by_role("button", name="Add collaborator").click()
    bob_row = page.locator(f'tr[data-user-id="{bob.id}"]')
    expect(bob_row).to_contain_text("Bob Viewer")
    roles = {c["userId"]: c["role"] for c in api(user, "GET", path)["collaborators"]}
    assert roles[bob.id] == "viewer"
    shot(page, "collaborators")

    # Viewer -> editor.
    select = page.get_by_label("Role of Bob Viewer")
    expect(select).to_have_value("viewer")
    select.select_option("editor")
    expect(page.locator(".toast").filter(has_text="Bob Viewer is now editor")).to_be_visible()
    wh.wait_until(lambda: {c["userId"]: c["role"] for c in api(user, "GET", path)["collaborators"]}.get(bob.id) == "editor",
                  timeout=10, message="Bob is an editor")

    # Remove.
    page.get_by_role("button", name="Remove Bob Viewer").click()
    confirm(page, "Remove")
    expect(bob_row).to_have_count(0)
    assert bob.id not in [c["userId"] for c in api(user, "GET", path)["collaborators"]]
