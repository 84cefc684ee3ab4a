"""A consortium with a second, misbehaving organisation, against this gateway (organisation 1).

Organisation 2 is admitted through the proposal flow of organisation 1's gateway; from then on it
acts on the chain directly with its own keys (eth-account, raw transactions), as a member that does
not run our software would. Every test runs on the embedded chain and on a real Anvil.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from eth_account import Account
from eth_account.signers.local import LocalAccount
from fastapi.testclient import TestClient

from crm_gateway.api.app import create_app
from crm_gateway.config import ChainKind, Settings
from crm_gateway.runtime import Runtime
from crm_gateway.security.apikeys import create_api_key
from crm_gateway.services.consent import purpose_id
from tests.conftest import free_port, make_settings
from tests.contracts.conftest import decode_revert
from tests.gateway.conftest import add_organization, wait_until

FUNDS = 10**20


@pytest.fixture(
    params=[
        pytest.param("embedded", id="embedded"),
        pytest.param("anvil", id="anvil", marks=pytest.mark.anvil),
    ]
)
def chain_settings(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Settings]:
    """Organisation 1's gateway settings, on the embedded chain or a real Anvil process (used by
    the `runtime` fixture of tests/conftest.py, which deploys the contracts)."""
    if request.param == "embedded":
        yield make_settings(tmp_path)
        return
    from crm_gateway.chain.anvil import AnvilNode

    settings = make_settings(tmp_path, chain_kind=ChainKind.ANVIL, anvil_port=free_port())
    node = AnvilNode(settings)
    node.start()
    try:
        yield settings
    finally:
        node.stop()


@dataclass(frozen=True)
class Refusal:
    """A custom error the contract reverted with: its name and its arguments, in order."""

    name: str
    args: tuple[Any, ...]


class Consortium:
    """Organisation 1 through its gateway's API; organisation 2 through its own keys."""

    def __init__(self, client: TestClient, runtime: Runtime) -> None:
        self.client, self.runtime = client, runtime
        self.contracts = runtime.contracts
        self.w3 = runtime.chain.w3
        self.errors = [
            item
            for name in _CONTRACTS
            if self._deployed(name)
            for item in self.contracts[name].abi
            if item.get("type") == "error"
        ]
        deployer = str(runtime.contracts.record.deployer)
        self.admin1 = {"X-API-Key": self.issue_key(1, deployer, "ORG_ADMIN")}
        self.org2_admin: LocalAccount = Account.create()
        self.fund(self.org2_admin.address)
        self.org2 = add_organization(client, self.admin1, "org-2", self.org2_admin.address)

    def _deployed(self, name: str) -> bool:
        return self.contracts.record.address_of(name) is not None

    # --- organisation 1, through the API --------------------------------------------------

    def issue_key(self, org_id: int, account: str, role: str) -> str:
        with self.runtime.session_factory() as session:
            _row, plaintext = create_api_key(session, org_id=org_id, account=account, role=role)
            session.commit()
        return plaintext

    def fund(self, address: str) -> None:
        self.runtime.chain.dev_fund(address, FUNDS)  # type: ignore[arg-type]

    def gateway_account(self) -> str:
        """A new account whose key organisation 1's gateway holds (it signs its join)."""
        account = self.runtime.keystore.add(Account.create())
        self.fund(account.address)
        return account.address

    def grant(self, role: str, account: str) -> None:
        granted = self.client.post(
            "/v1/roles/grants?wait=true",
            json={"role": role, "account": account},
            headers=self.admin1,
        )
        assert granted.status_code == 200, granted.text

    def role_key(self, role: str, account: str | None = None) -> tuple[str, dict[str, str]]:
        """An account of organisation 1 holding `role`, and headers of its API key."""
        account = account or self.gateway_account()
        self.grant(role, account)
        wait_until(lambda: self.runtime.read_model.organization_of(account) == 1)
        return account, {"X-API-Key": self.issue_key(1, account, role)}

    def customer(self, steward: dict[str, str], email: str) -> str:
        created = self.client.post(
            "/v1/customers?wait=true", json={"email": email}, headers=steward
        )
        assert created.status_code == 201, created.text
        return str(created.json()["customer_id"])

    def define_purpose(self, slug: str, basis: str) -> str:
        response = self.client.post(
            "/v1/purposes?wait=true",
            json={"purpose": slug, "lawful_basis": basis, "notice_text": f"About {slug}."},
            headers=self.admin1,
        )
        assert response.status_code == 200, response.text
        return self.indexed_purpose(slug)

    def indexed_purpose(self, slug: str) -> str:
        pid = purpose_id(slug)
        wait_until(lambda: self.runtime.read_model.purpose(pid) is not None)
        return pid

    def mine_at(self, timestamp: int) -> None:
        """Mine a block at `timestamp` (eth-tester steps one second a block, whatever the clock;
        Anvil follows the clock): both chains then agree with the wall clock again."""
        w3 = self.w3
        if self.runtime.chain.kind is ChainKind.EMBEDDED:
            with w3.provider._lock:  # type: ignore[attr-defined]
                w3.provider.ethereum_tester.time_travel(timestamp)  # type: ignore[attr-defined]
        else:
            w3.provider.make_request("evm_mine", [timestamp])  # type: ignore[arg-type]

    def caught_up(self) -> None:
        """Wait until the read model has indexed the chain's latest block."""
        head = int(self.w3.eth.block_number)
        wait_until(lambda: (self.runtime.read_model.as_of_block() or 0) >= head)

    # --- organisation 2 (or any key the test holds), straight to the chain --------------------

    def send_as(self, key: LocalAccount, call: Any, gas: int = 1_500_000) -> Any:
        """`key` signs and sends `call` itself; the receipt (asserting it succeeded)."""
        tx = call.build_transaction(
            {
                "from": key.address,
                "nonce": self.w3.eth.get_transaction_count(key.address, "pending"),
                "gas": gas,
                "chainId": int(self.w3.eth.chain_id),
            }
        )
        signed = key.sign_transaction(tx)
        receipt = self.w3.eth.wait_for_transaction_receipt(
            self.w3.eth.send_raw_transaction(signed.raw_transaction)
        )
        assert receipt["status"] == 1, f"{call.fn_name} from {key.address} failed"
        return receipt

    def refusal(self, sender: str, call: Any) -> Refusal:
        """The custom error the contract refuses `call` from `sender` with (an eth_call at the
        latest block: the transaction would revert with exactly this)."""
        # web3 (JSON-RPC) and eth-tester raise different exception types for a revert.
        with pytest.raises(Exception) as info:  # noqa: PT011
            call.call({"from": sender})
        # The contract tests' standalone decoder: it also reads eth-tester's eth_call reverts.
        name, args = decode_revert(info.value, self.errors)
        return Refusal(name, args)

    def fn(self, contract: str) -> Any:
        return self.contracts[contract].functions


_CONTRACTS = ("Consortium", "CustomerRegistry", "PurposeRegistry", "ConsentLedger", "AuditAnchor")


@pytest.fixture
def consortium(runtime: Runtime) -> Iterator[Consortium]:
    with TestClient(create_app(runtime=runtime), raise_server_exceptions=False) as client:
        yield Consortium(client, runtime)
