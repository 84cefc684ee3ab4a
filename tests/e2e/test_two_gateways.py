"""Two organisations, two gateways, one chain: one identity per person, each org its own data.

Two `crm-chaincode serve` processes (organisation 1, the founder, and organisation 2), each with
its own SQLite database, keystore and keyring, share one real Anvil node and one `INDEX_KEY` (so
the same person gets the same customer id everywhere). Organisation 2 joins the consortium through
the proposal flow and its admin makes its own account a DATA_STEWARD; every write goes through the
gateways' REST APIs.
"""

from __future__ import annotations

import secrets
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from crm_gateway.chain.anvil import AnvilNode
from crm_gateway.chain.artifacts import Artifacts
from crm_gateway.chain.connection import Chain, connect
from crm_gateway.config import ChainKind, Settings
from crm_gateway.runtime import deploy, open_keystore
from tests.conftest import free_port, make_settings
from tests.e2e.gateway_process import (
    GatewayProcess,
    api_key,
    define_purpose,
    events,
    ok,
    wait_for_purpose,
    wait_for_use,
)

pytestmark = [pytest.mark.anvil, pytest.mark.slow]

ADA_AT_A = {
    "given_name": "Ada",
    "family_name": "Lovelace",
    "email": "Ada.Lovelace@Analytical-Engine.example.com",
    "phone": "+44 20 7946 0001",
}
# The same person as the second organisation knows her: another spelling of the same e-mail.
ADA_AT_B = {
    "given_name": "Augusta Ada",
    "family_name": "King",
    "email": "  ada.lovelace@ANALYTICAL-ENGINE.example.com ",
    "birth_date": "1915-12-10",
}
CHARLES_AT_A = {"given_name": "Charles", "email": "charles@difference-engine.example.com"}


def _settings(root: Path, anvil_port: int, org_id: int, index_key: str, **extra: Any) -> Settings:
    return make_settings(
        root,
        chain_kind=ChainKind.ANVIL,
        anvil_port=anvil_port,
        anvil_state_file=root.parent / "anvil" / "state.json",
        deployments_dir=root.parent / "deployments",  # one chain, one deployment record
        gateway_port=free_port(),
        gateway_org_id=org_id,
        index_key=index_key,
        finality_seconds=0.0,
        **extra,
    )


def _registry(chain: Chain, settings: Settings, address: str) -> Any:
    abi = Artifacts(settings.path(settings.abi_dir))["CustomerRegistry"].abi
    return chain.w3.eth.contract(address=address, abi=abi)


def _db_values(path: Path) -> list[Any]:
    """Every value of every row of every table of a SQLite database."""
    connection = sqlite3.connect(path)
    try:
        tables = [
            name
            for (name,) in connection.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
            )
        ]
        values: list[Any] = []
        for table in tables:
            for row in connection.execute(f'SELECT * FROM "{table}"'):
                values.extend(row)
        return values
    finally:
        connection.close()


class Consortium:
    """The two running gateways and the keys of their CRM applications."""

    def __init__(self, tmp_path: Path) -> None:
        index_key = secrets.token_hex(32)
        anvil_port = free_port()
        self.a = _settings(tmp_path / "org-a", anvil_port, 1, index_key)
        self.b = _settings(tmp_path / "org-b", anvil_port, 2, index_key)
        self.node = AnvilNode(self.a)
        self.gateway_a = GatewayProcess(self.a, tmp_path / "org-a" / "gateway.log")
        self.gateway_b = GatewayProcess(self.b, tmp_path / "org-b" / "gateway.log")

    def start(self) -> None:
        self.node.start()
        self.chain = connect(self.a)
        record = deploy(self.a, self.chain, open_keystore(self.a)).record
        self.registry = _registry(self.chain, self.a, record.contracts["CustomerRegistry"].address)
        founder = str(record.deployer)
        steward_a = open_keystore(self.a).create().address
        admin_b = open_keystore(self.b).create().address
        for account in (steward_a, admin_b):
            self.chain.dev_fund(account, 10**21)
        self.admin_a = api_key(self.a, 1, founder, "ORG_ADMIN")
        self.steward_a = api_key(self.a, 1, steward_a, "DATA_STEWARD")
        self.admin_b = api_key(self.b, 2, admin_b, "ORG_ADMIN")
        self.steward_b = api_key(self.b, 2, admin_b, "DATA_STEWARD")
        self.gateway_a.start()
        self.gateway_b.start()
        self.gateway_a.wait_ready()
        self.gateway_b.wait_ready()

        with self.gateway_a.client(self.admin_a) as a:
            proposed = ok(
                a.post(
                    "/v1/orgs/proposals?wait=true",
                    json={"kind": "add_organization", "name": "merchant-b", "admin": admin_b},
                )
            )
            proposal = events(proposed, "ProposalCreated")[0]["proposalId"]
            executed = ok(a.post(f"/v1/orgs/proposals/{proposal}/execution?wait=true"))
            assert int(events(executed, "OrganizationAdded")[0]["orgId"]) == 2
            ok(
                a.post(
                    "/v1/roles/grants?wait=true",
                    json={"role": "DATA_STEWARD", "account": steward_a},
                )
            )
        with self.gateway_b.client(self.admin_b) as b:
            ok(
                b.post(
                    "/v1/roles/grants?wait=true", json={"role": "DATA_STEWARD", "account": admin_b}
                )
            )
        # Reads are gated by their purpose: organisation 1 registers `support` and shares it
        # with organisation 2 (a purpose serves its controller and whom it shares it with).
        define_purpose(self.gateway_a, self.admin_a, "support", "contract")
        with self.gateway_a.client(self.admin_a) as a:
            ok(a.post("/v1/purposes/support/shares?wait=true", json={"org_id": 2}))
        wait_for_purpose(self.gateway_a, self.admin_a, "support")
        wait_for_use(self.gateway_b, self.admin_b, "support", 2)

    def stop(self) -> None:
        self.gateway_a.stop()
        self.gateway_b.stop()
        self.node.stop()

    def db_path(self, settings: Settings) -> Path:
        return Path(settings.database_url.removeprefix("sqlite:///"))

    def customer(self, customer_id: str) -> tuple[int, int, list[int]]:
        raw = bytes.fromhex(customer_id[2:])
        status, _at, _wallet, holder_count = self.registry.functions.customer(raw).call()
        holders = sorted(int(o) for o in self.registry.functions.holdersOf(raw).call())
        return int(status), int(holder_count), holders


@pytest.fixture
def consortium(tmp_path: Path) -> Iterator[Consortium]:
    consortium = Consortium(tmp_path)
    try:
        consortium.start()
        yield consortium
    finally:
        consortium.stop()


def _read(client: httpx.Client, customer_id: str) -> httpx.Response:
    return client.get(f"/v1/customers/{customer_id}", params={"purpose": "support"})


def test_one_identity_two_holders_and_each_organisation_sees_only_its_own_record(
    consortium: Consortium,
) -> None:
    c = consortium
    with (
        c.gateway_a.client(c.steward_a) as a,
        c.gateway_b.client(c.steward_b) as b,
        c.gateway_a.client(c.steward_b) as b_key_at_a,
        c.gateway_b.client(c.steward_a) as a_key_at_b,
    ):
        ada = ok(a.post("/v1/customers?wait=true", json=ADA_AT_A), 201)["customer_id"]
        assert c.customer(ada) == (1, 1, [1])
        joined = ok(b.post("/v1/customers?wait=true", json=ADA_AT_B), 201)
        assert joined["customer_id"] == ada  # the same person: the same id, joined not duplicated
        assert events(joined["operation"], "HolderJoined")[0]["orgId"] == 2
        assert c.customer(ada) == (1, 2, [1, 2])

        # Each gateway reads its own organisation's record of her.
        at_a = ok(_read(a, ada))["profile"]
        at_b = ok(_read(b, ada))["profile"]
        assert (at_a["given_name"], at_a["phone"]) == ("Ada", "+442079460001")
        assert "birth_date" not in at_a
        assert (at_b["given_name"], at_b["birth_date"]) == ("Augusta Ada", "1915-12-10")
        assert "phone" not in at_b

        # API keys are per gateway: each organisation's key is unknown to the other's gateway.
        for refused in (_read(b_key_at_a, ada), _read(a_key_at_b, ada)):
            assert refused.status_code == 401, refused.text
            assert refused.headers["content-type"].startswith("application/problem+json")

        # A person only organisation 1 holds is not known at all to organisation 2's gateway.
        charles = ok(a.post("/v1/customers?wait=true", json=CHARLES_AT_A), 201)["customer_id"]
        assert _read(b, charles).status_code == 404
        assert ok(b.get("/v1/customers", params={"email": CHARLES_AT_A["email"]})) == {
            "customer_ids": []
        }

        # Each holder commits to its own record: an update at A leaves B's holding alone.
        ok(a.patch(f"/v1/customers/{ada}?wait=true", json={"family_name": "King"}))
        for gateway, version in ((a, 2), (b, 1)):
            verified = ok(gateway.get(f"/v1/customers/{ada}/verify"))
            assert (verified["intact"], verified["version"]) == (True, version)
        export_b = ok(b.get(f"/v1/customers/{ada}/export"))
        assert sorted(export_b["on_chain"]["holders"]) == [1, 2]
        assert export_b["profile"]["given_name"] == "Augusta Ada"

    # Organisation 2's database holds nothing of organisation 1's records: none of A's sealed
    # bytes (ciphertext, nonce, wrapped key), and no row for the person only A knows.
    sealed_at_a = _sealed(c.db_path(c.a))
    assert len(sealed_at_a) == 2 * 3, "A's database holds Ada's and Charles's sealed records"
    b_values = _db_values(c.db_path(c.b))
    b_blob = b"\x00".join(v if isinstance(v, bytes) else str(v).encode() for v in b_values)
    b_file = c.db_path(c.b).read_bytes() + _wal(c.db_path(c.b))
    for blob in sealed_at_a:
        assert blob not in b_blob
        assert blob not in b_file
    assert _record_ids(c.db_path(c.b)) == {ada}  # B's own record of Ada, nothing of Charles

    # Erasure by organisation 2 removes its holding only: the identity stays active for A.
    with c.gateway_a.client(c.steward_a) as a, c.gateway_b.client(c.steward_b) as b:
        erased = ok(b.delete(f"/v1/customers/{ada}?wait=true"))
        assert events(erased["operation"], "HoldingErased")[0]["orgId"] == 2
        assert not events(erased["operation"], "CustomerErased")
        assert c.customer(ada) == (1, 1, [1])
        assert _read(b, ada).status_code == 410
        assert ok(_read(a, ada))["profile"]["family_name"] == "King"
        assert ok(a.get(f"/v1/customers/{ada}/verify"))["intact"] is True

        # She comes back to organisation 2: it joins her identity again (still active, held by
        # organisation 1) instead of making the consortium a second identity for her.
        returned = ok(b.post("/v1/customers?wait=true", json=ADA_AT_B), 201)
        assert returned["customer_id"] == ada
        assert c.customer(ada) == (1, 2, [1, 2])
        again = ok(_read(b, ada))
        assert (again["version"], again["profile"]["given_name"]) == (1, "Augusta Ada")
        assert ok(b.get(f"/v1/customers/{ada}/verify"))["intact"] is True


def _sealed(database: Path) -> set[bytes]:
    """The ciphertexts, nonces and wrapped keys of a gateway's customer records."""
    connection = sqlite3.connect(database)
    try:
        rows = connection.execute("SELECT ciphertext, nonce, wrapped_key FROM customer_records")
        return {value for row in rows for value in row if value is not None}
    finally:
        connection.close()


def _record_ids(database: Path) -> set[str]:
    connection = sqlite3.connect(database)
    try:
        return {row[0] for row in connection.execute("SELECT customer_id FROM customer_records")}
    finally:
        connection.close()


def _wal(database: Path) -> bytes:
    wal = database.with_name(database.name + "-wal")
    return wal.read_bytes() if wal.exists() else b""
