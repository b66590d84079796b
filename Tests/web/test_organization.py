"""Joining an organization from the dashboard: an admin invites by email on
the Organization page, the invitee accepts there, and the organization
switcher then holds it (selected)."""

from __future__ import annotations

from playwright.sync_api import expect

from conftest import PASSWORD, api, expected_http_errors, shot, sign_in
import weft_helpers as wh


def test_invite_accept_and_switch(browser, weft, user, signed_in):
    page = signed_in
    invitee = wh.register_and_login(weft, name="Ines Invitee", email=wh.unique_email("ines"), password=PASSWORD)
    [home] = api(user, "GET", "/orgs")["organizations"]

    page.get_by_role("link", name="Organization").click()
    page.get_by_role("heading", level=1, name="Organization").wait_for()
    expect(page.get_by_role("heading", name=f"Members of {home['name']}")).to_be_visible()
    expect(page.get_by_text("Dana Ops (you)")).to_be_visible()
    # A bad address: the server's message next to the field, nothing sent.
    page.get_by_label("Email to invite").fill("not-an-address")
    page.get_by_role("button", name="Send invitation").click()
    expect(page.get_by_label("Email to invite")).to_have_attribute("aria-invalid", "true")
    assert api(user, "GET", f"/orgs/{home['id']}/invitations")["invitations"] == []
    expected_http_errors(page, 400)
    page.get_by_label("Email to invite").fill(invitee.email)
    page.get_by_role("button", name="Send invitation").click()
    sent = page.get_by_role("table", name="Sent invitations")
    expect(sent).to_contain_text(invitee.email)
    expect(sent).to_contain_text("pending")
    shot(page, "organization-admin")

    ctx = browser.new_context(base_url=weft.url, viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True)
    try:
        other = ctx.new_page()
        errors = []
        other.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        sign_in(other, invitee)
        other.get_by_role("link", name="Organization").tap()
        accept = other.get_by_role("button", name=f"Accept {home['name']}")
        accept.tap()
        expect(other.get_by_role("combobox", name="Organization")).to_have_value(home["id"])
        expect(other.get_by_role("heading", name=f"Members of {home['name']}")).to_be_visible()
        expect(other.get_by_text("No pending invitations.")).to_be_visible()
        shot(other, "organization-joined-phone")
        assert not errors, errors
    finally:
        ctx.close()
    members = {m["email"]: m["role"] for m in api(user, "GET", f"/orgs/{home['id']}/members")["members"]}
    assert members[invitee.email] == "member", members
    page.reload()
    expect(page.get_by_role("table", name="Sent invitations")).to_contain_text("accepted")
