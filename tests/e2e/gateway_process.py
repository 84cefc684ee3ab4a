"""A real gateway (`crm-chaincode serve`) as a separate process, configured by its environment.

Every setting of the given `Settings` is passed as an environment variable, as an operator would
(`crm_gateway.config.settings_environment`), and the process runs in its own folder (no `.env` is
picked up). Its stdout and stderr (uvicorn's access and error logs, the gateway's own loggers, SQL
echo) go to one log file.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
from eth_utils.crypto import keccak

from crm_gateway.config import Settings, settings_environment
from crm_gateway.security.apikeys import create_api_key
from crm_gateway.store.db import make_engine, make_session_factory, upgrade_database


class GatewayProcess:
    def __init__(self, settings: Settings, log: Path, **extra_env: str) -> None:
        self.settings = settings
        self.url = f"http://127.0.0.1:{settings.gateway_port}"
        self.log = log
        self.env = settings_environment(settings, **extra_env)
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        """Start without waiting (see `wait_ready`), so several gateways start together."""
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "crm_gateway.cli", "serve"],
                env=self.env,
                cwd=self.log.parent,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        _STARTED[self.url] = self

    def wait_ready(self, timeout: float = 60) -> None:
        assert self.process is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process.poll() is None, self.log.read_text()[-3000:]
            try:
                if httpx.get(self.url + "/readyz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise AssertionError("gateway did not become ready:\n" + self.log.read_text()[-3000:])

    def client(self, api_key: str | None = None) -> httpx.Client:
        headers = {"X-API-Key": api_key} if api_key else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=30)

    def kill(self) -> None:
        """SIGKILL: the process gets no chance to clean up, as in a crash."""
        assert self.process is not None
        self.process.kill()
        self.process.wait()

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def __enter__(self) -> GatewayProcess:
        self.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()


def api_key(settings: Settings, org_id: int, account: str, role: str) -> str:
    """Issue an API key in the gateway's database (migrated first), as `apikeys create` does."""
    upgrade_database(settings.database_url)
    engine = make_engine(settings.database_url)
    try:
        with make_session_factory(engine)() as session:
            _key, plaintext = create_api_key(session, org_id=org_id, account=account, role=role)
            session.commit()
    finally:
        engine.dispose()
    return plaintext


#: Gateways started by this process, by base URL, so a failed request can show the server's log.
_STARTED: dict[str, GatewayProcess] = {}


def log_tail(response: httpx.Response, size: int = 4000) -> str:
    """The end of the log of the gateway that answered `response` (if this process started it)."""
    origin = f"{response.request.url.scheme}://{response.request.url.netloc.decode()}"
    gateway = _STARTED.get(origin)
    if gateway is None or not gateway.log.exists():
        return ""
    return gateway.log.read_text(errors="replace")[-size:]


def ok(response: httpx.Response, *codes: int) -> dict[str, Any]:
    """The JSON body of a response whose status is one of `codes` (default 200 or 201)."""
    assert response.status_code in (codes or (200, 201)), (
        f"{response.text}\n--- gateway log ---\n{log_tail(response)}"
    )
    body: dict[str, Any] = response.json()
    return body


def events(operation: dict[str, Any], name: str) -> list[dict[str, Any]]:
    """The arguments of the events `name` an operation's receipt carries."""
    return [e["args"] for e in operation["result"]["events"] if e["event"] == name]


def define_purpose(
    gateway: GatewayProcess, admin_key: str, slug: str, basis: str = "contract"
) -> None:
    """Register a processing purpose (reads are gated by the purpose's lawful basis)."""
    with gateway.client(admin_key) as client:
        ok(
            client.post(
                "/v1/purposes?wait=true",
                json={"purpose": slug, "lawful_basis": basis, "notice_text": f"Why: {slug}."},
            )
        )


def wait_for_use(
    gateway: GatewayProcess, key: str, slug: str, org_id: int, timeout: float = 30
) -> None:
    """Until the gateway's read model lets organisation `org_id` use the purpose (a purpose of
    another basis than consent: the customer does not matter)."""
    params = {"customer": "0x" + "00" * 31 + "01", "purpose": slug, "org": org_id}
    deadline = time.monotonic() + timeout
    with gateway.client(key) as client:
        while time.monotonic() < deadline:
            if ok(client.get("/v1/processing/check", params=params), 200)["allowed"]:
                return
            time.sleep(0.1)
    raise AssertionError(f"{gateway.url} never let organisation {org_id} use purpose {slug}")


def wait_for_purpose(gateway: GatewayProcess, key: str, slug: str, timeout: float = 30) -> None:
    """Until the gateway's read model (its indexer) knows the purpose."""
    wanted = "0x" + keccak(text=slug).hex()
    deadline = time.monotonic() + timeout
    with gateway.client(key) as client:
        while time.monotonic() < deadline:
            if any(p["purpose_id"] == wanted for p in ok(client.get("/v1/purposes"), 200)):
                return
            time.sleep(0.1)
    raise AssertionError(f"{gateway.url} never indexed purpose {slug}")
