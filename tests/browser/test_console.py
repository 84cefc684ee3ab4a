"""The operators' console in Chromium: an API key held in the session, approvals by role."""

from __future__ import annotations

from playwright.sync_api import Page, expect

from crm_gateway.services.access import AccessService, ProposalKind
from tests.browser.conftest import OpenPage, World, only_gateway, screenshot


def _sign_in(page: Page, origin: str, key: str) -> None:
    page.goto(origin + "/console/")
    page.get_by_label("API key").fill(key)
    page.get_by_role("button", name="Sign in").click()
    expect(page.locator("#signin-status")).to_contain_text("Signed in")
    page.wait_for_selector("#proposals table")
    page.wait_for_selector("#chain table")


def _proposal_by_org2(world: World) -> int:
    """Organisation 2 proposes (and so approves) a threshold change; organisation 1 must too."""
    g = world.gateway
    result = g.write(
        AccessService(g.runtime.contracts).propose(
            world.admin2_account, ProposalKind.CHANGE_THRESHOLD, {"threshold_bps": 6000}
        )
    )
    return int(
        next(e["args"]["proposalId"] for e in result["events"] if e["event"] == "ProposalCreated")
    )


def test_an_org_admin_approves_a_proposal_in_the_browser(world: World, open_page: OpenPage) -> None:
    proposal = _proposal_by_org2(world)
    browser = open_page(None)
    page = browser.page
    _sign_in(page, world.gateway.origin, world.admin["X-API-Key"])
    # The key is in the server-side session only: not in any URL the page loaded.
    assert not any(world.admin["X-API-Key"] in url for url in browser.requests)
    assert page.locator("#chain tbody tr").count() >= 1
    expect(page.locator(f'[data-status="{proposal}"]')).to_have_text("pending")
    page.locator(f'[data-approve="{proposal}"]').click()
    expect(page.locator("#proposals-status")).to_contain_text("confirmed")
    expect(page.locator(f'[data-status="{proposal}"]')).to_have_text("ready")
    assert page.locator(f'[data-execute="{proposal}"]').is_visible()
    on_chain = AccessService(world.gateway.runtime.contracts).proposal(proposal)
    assert on_chain["approvals"] == 2
    screenshot(page, "console")
    assert only_gateway(browser.requests, world.gateway.origin) == []


def test_a_key_without_org_admin_sees_no_approve_button_and_the_api_refuses(
    world: World, open_page: OpenPage
) -> None:
    proposal = _proposal_by_org2(world)
    page = open_page(None).page
    _sign_in(page, world.gateway.origin, world.agent["X-API-Key"])
    expect(page.locator(f'[data-status="{proposal}"]')).to_have_text("pending")
    assert page.locator("[data-approve]").count() == 0
    assert "needs ORG_ADMIN" in page.locator("#proposals").inner_text()
    # Called anyway, from the page with the session's CSRF token: the API refuses.
    answer = page.evaluate(
        """async (id) => {
            const session = await (await fetch('/v1/console/session')).json();
            const r = await fetch(`/v1/orgs/proposals/${id}/approvals?wait=true`,
              {method: 'POST', headers: {'X-CSRF-Token': session.csrf_token}});
            return [r.status, await r.json()];
        }""",
        proposal,
    )
    assert answer[0] == 403, answer
    assert AccessService(world.gateway.runtime.contracts).proposal(proposal)["approvals"] == 1
    # And without the token the session cannot write at all.
    status = page.evaluate(
        "async (id) => (await fetch(`/v1/orgs/proposals/${id}/approvals`,"
        " {method: 'POST'})).status",
        proposal,
    )
    assert status == 403


def test_a_bad_key_is_refused(world: World, open_page: OpenPage) -> None:
    page = open_page(None).page
    page.goto(world.gateway.origin + "/console/")
    page.get_by_label("API key").fill("crm_" + "x" * 43)
    page.get_by_role("button", name="Sign in").click()
    expect(page.locator("#signin-status")).to_contain_text("refused")
    assert page.locator("#signed-in").is_hidden()


def test_an_auditor_runs_audit_verify_and_chain_verify(world: World, open_page: OpenPage) -> None:
    page = open_page(None).page
    _sign_in(page, world.gateway.origin, world.auditor["X-API-Key"])
    page.get_by_role("button", name="Run audit verify and chain verify").click()
    expect(page.locator("#verify-status")).to_contain_text("Both intact")
    expect(page.locator('[data-verify="audit verify"]')).to_contain_text("entries")
    expect(page.locator('[data-verify="chain verify"]')).to_contain_text("link back to genesis")
    assert page.locator("#audit table").count() == 1
    page.locator("#audit-h").scroll_into_view_if_needed()
    screenshot(page, "console-audit", section="audit-h")
