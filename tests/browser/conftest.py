"""A real gateway (uvicorn on a free port, embedded chain, pipeline and indexer running) and the
system's Chromium driven by Playwright, with an EIP-1193 test wallet injected into the page that
signs with a real eth-account key in Python and reads the chain directly (eth_call), never
through the gateway.

Chromium is the system's (`/usr/bin/chromium`, or `$CHROMIUM`); without it every test here is
skipped, saying so. Playwright's own browser downloads are never used.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from eth_account import Account
from eth_account.messages import encode_defunct
from eth_account.signers.local import LocalAccount

from crm_gateway.api.app import create_app
from crm_gateway.config import PROJECT_ROOT
from crm_gateway.pipeline.outbox import ChainWrite
from crm_gateway.runtime import Runtime, build_runtime
from crm_gateway.security.apikeys import create_api_key
from crm_gateway.services.access import AccessService, Role
from crm_gateway.services.consent import purpose_id
from crm_gateway.services.operations import OperationService
from tests.conftest import free_port, make_settings

CHROMIUM = Path(os.environ.get("CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
SCREENSHOTS = PROJECT_ROOT / "docs" / "screenshots"
MARKETING = "marketing.email"

try:
    from playwright.sync_api import Browser, Page, sync_playwright
except ImportError:  # the dev extras are not installed
    NO_BROWSER: str | None = "Playwright for Python is not installed (pip install -e '.[dev]')"
else:
    NO_BROWSER = None
if NO_BROWSER is None and not CHROMIUM.exists():
    NO_BROWSER = (
        f"no Chromium at {CHROMIUM} (install the system's: apt-get install chromium, or set "
        "CHROMIUM=/path/to/chromium); the browser tests need a real browser"
    )
_HERE = Path(__file__).resolve().parent


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip the browser tests, saying why, when there is no browser to drive."""
    if NO_BROWSER is None:
        return
    skip = pytest.mark.skip(reason=NO_BROWSER)
    for item in items:
        if _HERE in Path(str(item.fspath)).resolve().parents:
            item.add_marker(skip)


def _assets() -> Path:
    """The built web assets; built here (offline, from node_modules) when `make deps` has not."""
    built = PROJECT_ROOT / "build" / "web"
    if not (built / "portal.js").exists():
        node = shutil.which("node") or "node"
        subprocess.run(
            [node, str(PROJECT_ROOT / "tools" / "build-web.mjs"), str(built)], check=True
        )
    return built


class Gateway:
    """The gateway of organisation 1 over HTTP, and the runtime behind it for setting up."""

    def __init__(self, runtime: Runtime, origin: str) -> None:
        self.runtime, self.origin = runtime, origin
        self.http = httpx.Client(base_url=origin, timeout=30)
        self.operations = OperationService(runtime.session_factory, runtime.pipeline)

    def key(self, org_id: int, account: str, role: str) -> dict[str, str]:
        with self.runtime.session_factory() as session:
            _row, plaintext = create_api_key(session, org_id=org_id, account=account, role=role)
            session.commit()
        return {"X-API-Key": plaintext}

    def signer(self) -> str:
        account = self.runtime.keystore.add(Account.create())
        self.runtime.chain.dev_fund(account.address, 10**20)
        return str(account.address)

    def write(self, write: ChainWrite) -> dict[str, Any]:
        """Send a chain write straight through the pipeline (what another organisation's own
        gateway would send) and wait until it is mined and indexed."""
        view, _ = self.operations.submit(write, api_key_id=None, idempotency_key=None, payload={})
        deadline = time.monotonic() + 30
        while not view.settled:
            assert time.monotonic() < deadline, f"{write.kind} did not settle"
            time.sleep(0.05)
            view = self.operations.get_internal(view.id)
        assert view.status == "confirmed", view.error
        assert view.block_number is not None
        self.runtime.index_worker.wait_for_block(view.block_number, 30)
        return view.result or {}

    def post(self, path: str, headers: dict[str, str], body: Any = None) -> dict[str, Any]:
        response = self.http.post(path, json=body, headers=headers)
        assert response.status_code in (200, 201), response.text
        return dict(response.json())

    def grant(self, admin: dict[str, str], role: str, account: str | None = None) -> str:
        account = account or self.signer()
        self.post("/v1/roles/grants?wait=true", admin, {"role": role, "account": account})
        return account


@dataclass
class World:
    gateway: Gateway
    admin: dict[str, str]
    admin2_account: str
    steward: dict[str, str]
    agent: dict[str, str]
    auditor: dict[str, str]
    marketing: str
    customers: list[tuple[str, LocalAccount]] = field(default_factory=list)

    def customer(self, email: str) -> tuple[str, LocalAccount]:
        """A customer of organisation 1 with a linked wallet, also held by organisation 2."""
        g = self.gateway
        created = g.post("/v1/customers?wait=true", self.steward, {"email": email})
        customer_id = str(created["customer_id"])
        wallet: LocalAccount = Account.create()
        typed = g.http.get(
            f"/v1/customers/{customer_id}/wallet/typed-data",
            params={"wallet": wallet.address},
            headers=self.steward,
        ).json()
        signature = Account.sign_typed_data(wallet.key, full_message=typed).signature.to_0x_hex()
        g.post(
            f"/v1/customers/{customer_id}/wallet?wait=true",
            self.steward,
            {
                "wallet": wallet.address,
                "deadline": typed["message"]["deadline"],
                "signature": signature,
            },
        )
        # Organisation 2 holds the same person (its own gateway registers the shared id).
        g.write(
            ChainWrite(
                "customers.register",
                "CustomerRegistry",
                "register",
                [customer_id, "0x" + "22" * 32],
                self.steward2,
            )
        )
        return customer_id, wallet

    steward2: str = ""


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    assets = _assets()
    tmp = tmp_path_factory.mktemp("browser")
    port = free_port()
    origin = f"http://127.0.0.1:{port}"
    settings = make_settings(
        tmp,
        public_url=origin,
        web_assets_dir=assets,
        audit_anchor_enabled=False,
        gateway_port=port,
    )
    runtime = build_runtime(settings)
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(runtime=runtime), host="127.0.0.1", port=port, log_level="warning"
        )
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline, "the gateway did not start"
        time.sleep(0.05)
    try:
        g = Gateway(runtime, origin)
        admin = g.key(1, str(runtime.contracts.record.deployer), "ORG_ADMIN")
        # Organisation 2, admitted through the proposal flow (one member: one approval).
        admin2 = g.signer()
        proposed = g.post(
            "/v1/orgs/proposals?wait=true",
            admin,
            {"kind": "add_organization", "name": "Second Org", "admin": admin2},
        )
        pid = next(
            e["args"]["proposalId"]
            for e in proposed["result"]["events"]
            if e["event"] == "ProposalCreated"
        )
        g.post(f"/v1/orgs/proposals/{pid}/execution?wait=true", admin)
        access = AccessService(runtime.contracts, keystore=runtime.keystore)
        steward2 = g.signer()
        g.write(access.grant(admin2, Role.DATA_STEWARD, steward2))
        steward = g.key(1, g.grant(admin, "DATA_STEWARD"), "DATA_STEWARD")
        agent = g.key(1, g.grant(admin, "AGENT"), "AGENT")
        auditor = g.key(1, g.grant(admin, "AUDITOR"), "AUDITOR")
        g.grant(admin, "RELAYER")  # the portal's relayer: a keystore account holding RELAYER
        marketing = g.post(
            "/v1/purposes?wait=true",
            admin,
            {"purpose": MARKETING, "lawful_basis": "consent", "notice_text": "Our e-mails."},
        )
        del marketing
        world = World(g, admin, admin2, steward, agent, auditor, purpose_id(MARKETING))
        world.steward2 = steward2
        deadline = time.monotonic() + 20
        while runtime.read_model.purpose(world.marketing) is None:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        yield world
    finally:
        server.should_exit = True
        thread.join(10)
        runtime.close()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield launched
        launched.close()


_WALLET_JS = """
window.ethereum = {
  isTestWallet: true,
  async request({ method, params }) {
    const answer = JSON.parse(await window.__testWallet(method, JSON.stringify(params ?? [])));
    if (answer.error) {
      const error = new Error(answer.error.message);
      error.code = answer.error.code;
      throw error;
    }
    return answer.result;
  },
};
"""


@dataclass
class BrowserPage:
    page: Page
    requests: list[str]
    calls: list[tuple[str, Any]]


def _wallet_answer(runtime: Runtime, account: LocalAccount, method: str, params: list[Any]) -> Any:
    if method in ("eth_accounts", "eth_requestAccounts"):
        return [account.address]
    if method == "eth_chainId":
        return hex(runtime.chain.chain_id)
    if method == "personal_sign":
        message, _address = params
        signed = account.sign_message(encode_defunct(hexstr=message))
        return signed.signature.to_0x_hex()
    if method == "eth_signTypedData_v4":
        _address, typed = params
        data = json.loads(typed) if isinstance(typed, str) else typed
        return Account.sign_typed_data(account.key, full_message=data).signature.to_0x_hex()
    if method == "eth_call":
        call, block = params
        return runtime.chain.w3.eth.call(
            {"to": call["to"], "data": call["data"]}, block
        ).to_0x_hex()
    raise ValueError(f"the test wallet does not do {method}")


OpenPage = Callable[[LocalAccount | None], BrowserPage]


@pytest.fixture
def open_page(browser: Browser, world: World) -> Iterator[OpenPage]:
    """A new browser context and page with a test wallet of `account` injected (or none), that
    records every request the page makes and every wallet call."""
    contexts = []

    def make(account: LocalAccount | None) -> BrowserPage:
        context = browser.new_context(
            accept_downloads=True, viewport={"width": 1100, "height": 900}
        )
        contexts.append(context)
        page = context.new_page()
        recorded = BrowserPage(page, [], [])
        page.on("request", lambda request: recorded.requests.append(request.url))
        if account is not None:

            def wallet(_source: Any, method: str, params: str) -> str:
                args = json.loads(params)
                recorded.calls.append((method, args))
                try:
                    result = _wallet_answer(world.gateway.runtime, account, method, args)
                except Exception as exc:
                    return json.dumps({"error": {"code": 4001, "message": str(exc)}})
                return json.dumps({"result": result})

            page.expose_binding("__testWallet", wallet)
            page.add_init_script(_WALLET_JS)
        return recorded

    yield make
    for context in contexts:
        context.close()


def only_gateway(requests: list[str], origin: str) -> list[str]:
    """The requests that went anywhere but the gateway (data: URLs stay in the page)."""
    return [
        url for url in requests if not (url.startswith(origin + "/") or url.startswith("data:"))
    ]


def screenshot(
    page: Page, name: str, *, full_page: bool = True, section: str | None = None
) -> None:
    """A screenshot of the page: into docs/screenshots/ (the README shows them) when
    UPDATE_SCREENSHOTS=1, else into a temporary folder (so a test run leaves the tree clean)."""
    folder = SCREENSHOTS if os.environ.get("UPDATE_SCREENSHOTS") == "1" else _scratch()
    folder.mkdir(parents=True, exist_ok=True)
    path = str(folder / f"{name}.png")
    if section is not None:  # just the <section> with this heading id
        page.locator(f"section:has(#{section})").screenshot(path=path)
    else:
        page.screenshot(path=path, full_page=full_page)


def _scratch() -> Path:
    import tempfile

    return Path(tempfile.gettempdir()) / "crm-chaincode-screenshots"
