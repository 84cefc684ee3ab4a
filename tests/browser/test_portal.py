"""The customer's privacy portal in Chromium, with a wallet that signs with a real key."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

from eth_account import Account
from eth_account.messages import encode_defunct
from playwright.sync_api import Locator, Page, Route, expect

from tests.browser.conftest import MARKETING, OpenPage, World, only_gateway, screenshot


def _sign_in(page: Page, origin: str) -> None:
    page.goto(origin + "/portal/")
    page.get_by_role("button", name="Sign in with your wallet").click()
    page.wait_for_selector("#signed-in:not(.hidden)")
    page.wait_for_selector("#consents table")


def _row(page: Page, org_name: str) -> Locator:
    return page.locator("#consents tbody tr", has_text=org_name)


def _agent_read(world: World, customer_id: str) -> int:
    response = world.gateway.http.get(
        f"/v1/customers/{customer_id}", params={"purpose": MARKETING}, headers=world.agent
    )
    return response.status_code


def test_sign_in_grant_revoke_and_the_next_agent_read_is_refused(
    world: World, open_page: OpenPage
) -> None:
    customer_id, wallet = world.customer("dana@example.com")
    origin = world.gateway.origin
    browser = open_page(wallet)
    page = browser.page
    _sign_in(page, origin)
    assert "Signed in as customer" in page.locator("#signin-status").inner_text()
    # Two organisations hold the customer, and the page shows each one's consent.
    assert page.locator("#me tbody tr").count() == 2
    assert _row(page, "founder").count() == 1
    assert _row(page, "Second Org").count() == 1
    assert "dana@example.com" in page.locator("#record").inner_text()

    _row(page, "founder").get_by_role("button", name="Grant").click()
    page.wait_for_selector("#consents-status.ok")
    assert _row(page, "founder").locator("strong").inner_text() == "Granted"
    assert _agent_read(world, customer_id) == 200

    _row(page, "Second Org").get_by_role("button", name="Grant").click()
    expect(page.locator("#consents-status")).to_contain_text("granted")
    _row(page, "founder").get_by_role("button", name="Revoke").click()
    expect(page.locator("#consents-status")).to_contain_text("revoked")
    assert _row(page, "founder").locator("strong").inner_text() == "Revoked"
    assert _row(page, "Second Org").locator("strong").inner_text() == "Granted"
    # The wallet signed typed data for each change, and the gateway relayed it.
    assert [m for m, _ in browser.calls].count("eth_signTypedData_v4") == 3
    assert _agent_read(world, customer_id) == 403
    screenshot(page, "portal-consents", section="consents-h")

    # A receipt downloads as an ISO/IEC TS 27560 record.
    with page.expect_download() as download:
        _row(page, "founder").get_by_role("link", name="Receipt").click()
    receipt = json.loads(Path(download.value.path()).read_text())
    assert receipt["event"]["type"] == "withdrawn"
    assert receipt["data_subject"]["id"] == customer_id

    # Anchor the log; the page checks the refused read's proof against the root it reads
    # from the chain through the wallet (eth_call), and says so.
    world.gateway.post("/v1/audit/anchors?wait=true", world.auditor)
    page.get_by_role("button", name="Check again").click()
    expect(page.locator("#access-status")).to_contain_text("verified")
    refused = page.locator("#access tbody tr", has_text="Refused")
    assert refused.count() >= 1
    assert "Verified" in refused.first.locator(".proof").inner_text()
    assert refused.first.locator("td").nth(3).inner_text() == MARKETING
    assert any(method == "eth_call" for method, _ in browser.calls)
    page.locator("#access-h").scroll_into_view_if_needed()
    screenshot(page, "portal-access-log")

    # Export downloads everything held, as a file.
    with page.expect_download() as download:
        page.get_by_role("link", name="Download my data (JSON)").click()
    exported = json.loads(Path(download.value.path()).read_text())
    assert exported["customer_id"] == customer_id
    assert exported["profile"]["email"] == "dana@example.com"
    assert exported["consents"]["history"]

    assert only_gateway(browser.requests, origin) == []


def test_a_tampered_entry_or_root_is_not_shown_as_verified(
    world: World, open_page: OpenPage
) -> None:
    """The page computes the proof itself: if the gateway's proof is altered in transit the page
    says the proof fails (the check is not the gateway's word)."""
    customer_id, wallet = world.customer("erin@example.com")
    assert _agent_read(world, customer_id) == 403
    world.gateway.post("/v1/audit/anchors?wait=true", world.auditor)
    browser = open_page(wallet)
    page = browser.page

    def tamper(route: Route) -> None:
        response = route.fetch()
        body = response.json()
        for entry in body["entries"]:
            if entry["anchor_proof"]:
                entry["anchor_proof"]["proof"] = ["0x" + "11" * 32, *entry["anchor_proof"]["proof"]]
        route.fulfill(response=response, json=body)

    page.route("**/v1/me/access-log", tamper)
    _sign_in(page, world.gateway.origin)
    expect(page.locator("#access-status")).to_contain_text("entries")
    proofs = page.locator("#access .proof").all_inner_texts()
    assert proofs
    assert not any(p.startswith("Verified") for p in proofs)
    assert any("does not lead to the root" in p for p in proofs)


def test_a_wallet_that_is_not_the_customers_is_refused(world: World, open_page: OpenPage) -> None:
    world.customer("frank@example.com")
    stranger = Account.create()
    page = open_page(stranger).page
    page.goto(world.gateway.origin + "/portal/")
    page.get_by_role("button", name="Sign in with your wallet").click()
    page.wait_for_selector("#signin-status.bad")
    assert "not a customer's registered wallet" in page.locator("#signin-status").inner_text()
    assert page.locator("#signed-in").is_hidden()
    screenshot(page, "portal-refused-wallet", section="signin-h")


def _message(world: World, address: str, nonce: str, issued: datetime, expires: datetime) -> str:
    origin = world.gateway.origin
    return (
        f"{origin.split('://')[1]} wants you to sign in with your Ethereum account:\n{address}\n\n"
        f"Sign in.\n\nURI: {origin}/portal/\nVersion: 1\n"
        f"Chain ID: {world.gateway.runtime.chain.chain_id}\nNonce: {nonce}\n"
        f"Issued At: {issued.isoformat().replace('+00:00', 'Z')}\n"
        f"Expiration Time: {expires.isoformat().replace('+00:00', 'Z')}"
    )


def test_a_replayed_or_expired_sign_in_is_refused(world: World, open_page: OpenPage) -> None:
    _customer_id, wallet = world.customer("gina@example.com")
    browser = open_page(wallet)
    page = browser.page
    posted: list[str] = []
    page.on(
        "request",
        lambda r: (
            posted.append(r.post_data or "")
            if r.url.endswith("/v1/me/session") and r.method == "POST"
            else None
        ),
    )
    _sign_in(page, world.gateway.origin)
    http = world.gateway.http
    # The browser's own message and signature, sent again: its nonce is spent.
    replayed = http.post(
        "/v1/me/session", content=posted[0], headers={"Content-Type": "application/json"}
    )
    assert replayed.status_code == 401
    assert replayed.json()["type"].endswith("/sign-in-refused")
    assert "nonce" in replayed.json()["detail"]

    now = datetime.now(UTC).replace(microsecond=0)
    nonce = http.get("/v1/me/session/nonce").json()["nonce"]
    text = _message(
        world, wallet.address, nonce, now - timedelta(minutes=10), now - timedelta(minutes=5)
    )
    signature = wallet.sign_message(encode_defunct(text=text)).signature.to_0x_hex()
    expired = http.post("/v1/me/session", json={"message": text, "signature": signature})
    assert expired.status_code == 401
    assert "expired" in expired.json()["detail"]

    # The same message, valid in time, for another domain: refused too.
    nonce = http.get("/v1/me/session/nonce").json()["nonce"]
    text = _message(world, wallet.address, nonce, now, now + timedelta(minutes=5)).replace(
        "127.0.0.1", "evil.example", 1
    )
    signature = wallet.sign_message(encode_defunct(text=text)).signature.to_0x_hex()
    other = http.post("/v1/me/session", json={"message": text, "signature": signature})
    assert other.status_code == 401
    assert "evil.example" in other.json()["detail"]


def test_a_write_without_the_csrf_token_is_refused(world: World, open_page: OpenPage) -> None:
    customer_id, wallet = world.customer("hugo@example.com")
    browser = open_page(wallet)
    page = browser.page
    _sign_in(page, world.gateway.origin)
    # A POST with the session cookie but without the token (as a forged cross-site form would
    # send it, if SameSite let the cookie through at all) is refused before anything is read.
    status = page.evaluate(
        """async () => (await fetch('/v1/me/consents', {method: 'POST',
             headers: {'Content-Type': 'application/json'}, body: '{}'})).status"""
    )
    assert status == 403
    body = page.evaluate("async () => (await fetch('/v1/me/session', {method: 'DELETE'})).json()")
    assert body["type"].endswith("/csrf-token-missing")
    # The session still works: nothing was signed out by the forged request.
    assert page.evaluate("async () => (await fetch('/v1/me')).status") == 200
    cookies = page.context.cookies()
    session = next(c for c in cookies if c["name"] == "crm_portal")
    assert session["httpOnly"]
    assert session["sameSite"] == "Strict"
    assert customer_id


def _open_request(world: World, customer_id: str) -> str:
    listed = world.gateway.http.get("/v1/erasure-requests", headers=world.steward).json()
    return next(
        r["id"] for r in listed if r["customer_id"] == customer_id and r["status"] == "requested"
    )


def test_an_erasure_request_is_signed_carried_out_and_shown_done(
    world: World, open_page: OpenPage
) -> None:
    customer_id, wallet = world.customer("ivan@example.com")
    browser = open_page(wallet)
    page = browser.page
    _sign_in(page, world.gateway.origin)
    page.get_by_role("button", name="Ask to erase my data").click()
    expect(page.locator("#erasure-status")).to_contain_text("Erasure requested")
    expect(page.locator("[data-erasure]")).to_have_text("Requested: waiting for the organisation")
    # Only a steward of the organisation sees and carries out the request.
    assert world.gateway.http.get("/v1/erasure-requests", headers=world.agent).status_code == 403
    request_id = _open_request(world, customer_id)
    done = world.gateway.post(f"/v1/erasure-requests/{request_id}/completion", world.steward)
    assert done["status"] in ("in_progress", "done")
    page.get_by_role("button", name="Check status").click()
    expect(page.locator("[data-erasure]")).to_have_text(
        "Done: your record is erased", timeout=20_000
    )
    page.locator("#erasure-h").scroll_into_view_if_needed()
    screenshot(page, "portal-erasure", section="erasure-h")
    # The record is gone for the organisation's own staff.
    exported = world.gateway.http.get(f"/v1/customers/{customer_id}/export", headers=world.steward)
    assert exported.status_code == 410


def test_a_refused_erasure_shows_the_reason(world: World, open_page: OpenPage) -> None:
    customer_id, wallet = world.customer("jo@example.com")
    page = open_page(wallet).page
    _sign_in(page, world.gateway.origin)
    page.get_by_role("button", name="Ask to erase my data").click()
    expect(page.locator("#erasure-status")).to_contain_text("Erasure requested")
    # A second request while one is open is refused.
    page.get_by_role("button", name="Ask to erase my data").click()
    expect(page.locator("#erasure-status")).to_contain_text("already open")
    request_id = _open_request(world, customer_id)
    world.gateway.post(
        f"/v1/erasure-requests/{request_id}/refusal",
        world.steward,
        {"reason": "We must keep invoices for 7 years (tax law)."},
    )
    page.get_by_role("button", name="Check status").click()
    expect(page.locator("#erasure tbody tr")).to_contain_text("Refused")
    expect(page.locator("#erasure tbody tr")).to_contain_text("tax law")
