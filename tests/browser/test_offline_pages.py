"""`/docs`, `/portal/` and `/console/` load everything from the gateway: nothing from elsewhere."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import OpenPage, World, only_gateway, screenshot


def test_docs_render_swagger_ui_from_the_gateway_only(world: World, open_page: OpenPage) -> None:
    browser = open_page(None)
    page = browser.page
    response = page.goto(world.gateway.origin + "/docs")
    assert response is not None
    csp = response.headers["content-security-policy"]
    assert "default-src 'none'" in csp
    assert "script-src 'self'" in csp
    assert "http" not in csp
    # Swagger UI renders the gateway's own OpenAPI, with the portal's endpoints in it.
    expect(page.locator(".swagger-ui .info .title")).to_contain_text("crm-chaincode gateway")
    expect(page.locator(".opblock-tag-section").first).to_be_visible()
    assert page.get_by_text("/v1/me/consents").count() >= 1
    screenshot(page, "docs", full_page=False)
    assert only_gateway(browser.requests, world.gateway.origin) == []
    assert any(url.endswith("/openapi.json") for url in browser.requests)


@pytest.mark.parametrize("path", ["/portal/", "/console/"])
def test_pages_load_only_from_the_gateway(world: World, open_page: OpenPage, path: str) -> None:
    browser = open_page(None)
    page = browser.page
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    response = page.goto(world.gateway.origin + path)
    assert response is not None
    assert response.ok
    assert response.headers["content-security-policy"].startswith("default-src 'none'")
    page.wait_for_load_state("networkidle")
    assert only_gateway(browser.requests, world.gateway.origin) == []
    assert any(url.endswith(".js") for url in browser.requests)
    # No CSP violation or script error on load (a 401 for "not signed in yet" is expected).
    assert not [e for e in errors if "401" not in e], errors


def test_a_phone_width_page_needs_no_sideways_scrolling(world: World, open_page: OpenPage) -> None:
    page = open_page(None).page
    page.set_viewport_size({"width": 360, "height": 740})
    page.goto(world.gateway.origin + "/portal/")
    width = page.evaluate("() => document.documentElement.scrollWidth")
    assert width <= 360
    button = page.get_by_role("button", name="Sign in with your wallet")
    button.focus()
    assert page.evaluate("() => document.activeElement.id") == "signin-button"
