"""The browser side of the gateway: `/portal/`, `/console/`, `/docs` and their `/assets/`.

Every asset is built from npm packages pinned in package-lock.json (`node tools/build-web.mjs`,
run by `make deps`) and served from here; the Content-Security-Policy on these pages allows this
origin only, so a page that tried to load or send anything elsewhere would be stopped by the
browser (and the browser tests record every request to show none is made).
"""

from __future__ import annotations

from pathlib import Path
from typing import Final

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from crm_gateway.api.errors import ServiceUnavailable
from crm_gateway.config import Settings

CONTENT_SECURITY_POLICY: Final = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "font-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; "
    "base-uri 'none'"
)
_BROWSER_PATHS: Final = ("/docs", "/portal", "/console", "/assets")
_DOCS_HTML: Final = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>crm-chaincode gateway: API</title>
<link rel="stylesheet" href="/assets/docs/swagger-ui.css">
<link rel="icon" type="image/png" href="/assets/docs/favicon-32x32.png">
</head>
<body>
<div id="swagger-ui"></div>
<script src="/assets/docs/swagger-ui-bundle.js"></script>
<script src="/assets/docs/docs-init.js"></script>
</body>
</html>
"""

router = APIRouter(include_in_schema=False)


_HEADERS: Final = [
    (b"content-security-policy", CONTENT_SECURITY_POLICY.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"x-frame-options", b"DENY"),
]


class BrowserHeaders:
    """The Content-Security-Policy and its companions on every page and asset for browsers.

    Plain ASGI (not `BaseHTTPMiddleware`): the API's own requests pass through untouched, at the
    cost of one prefix check.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not str(scope["path"]).startswith(_BROWSER_PATHS):
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                names = {name for name, _value in _HEADERS}
                kept = [h for h in message.get("headers", []) if h[0].lower() not in names]
                message = {**message, "headers": kept + _HEADERS}
            await send(message)

        await self.app(scope, receive, with_headers)


def assets_dir(settings: Settings) -> Path:
    return settings.path(settings.web_assets_dir)


def _page(request: Request, name: str) -> FileResponse:
    path = assets_dir(request.app.state.settings) / name
    if not path.is_file():
        raise ServiceUnavailable(
            f"the web assets are not built ({path} is missing): run `make deps` "
            "(or `node tools/build-web.mjs`)"
        )
    return FileResponse(path, media_type="text/html; charset=utf-8")


@router.get("/docs")
async def docs() -> HTMLResponse:
    return HTMLResponse(_DOCS_HTML)


@router.get("/portal")
@router.get("/console")
async def with_slash(request: Request) -> RedirectResponse:
    return RedirectResponse(request.url.path + "/", status_code=308)


@router.get("/portal/")
async def portal(request: Request) -> FileResponse:
    return _page(request, "portal.html")


@router.get("/console/")
async def console(request: Request) -> FileResponse:
    return _page(request, "console.html")


def install_web(app: FastAPI, settings: Settings) -> None:
    """Mount the pages, `/docs` and the built assets, with the browser headers."""
    app.include_router(router)
    directory = assets_dir(settings)
    app.mount("/assets", StaticFiles(directory=directory, check_dir=False), name="assets")
    app.add_middleware(BrowserHeaders)
