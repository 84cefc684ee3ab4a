"""Loyalty points through the API: merchants earn and redeem, customers sign, the read model
settles.

The world: organisation 1 (the founder) with a DATA_STEWARD that registers customers and links
their wallets (fresh eth-account keys, funded so that they can send their own transactions), a
MERCHANT key and a RELAYER key; the settlement test adds two more organisations, each with a
MERCHANT of its own.
"""

from __future__ import annotations

import random
import time
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_utils.crypto import keccak
from fastapi.testclient import TestClient
from web3.contract import Contract
from web3.logs import DISCARD

from crm_gateway.chain.fees import fee_fields
from crm_gateway.config import ChainKind
from crm_gateway.runtime import Runtime, build_runtime
from crm_gateway.store.db import session_scope
from crm_gateway.store.models import Operation
from tests.conftest import deploy_unless_embedded, free_port, make_settings
from tests.gateway.conftest import add_organization, events, wait_until

MAX_UINT256 = 2**256 - 1
TX_GAS = 300_000
MERCHANT_ROLE = "0x" + keccak(text="MERCHANT").hex()


@pytest.fixture
def gateway_chain(request: pytest.FixtureRequest) -> str:
    """The chain the gateway runs on; a test parametrizes it (indirectly) to add Anvil."""
    return str(getattr(request, "param", "embedded"))


@pytest.fixture
def runtime(
    tmp_path: Path, gateway_chain: str, request: pytest.FixtureRequest
) -> Iterator[Runtime]:
    if gateway_chain.startswith("embedded"):
        overrides = {}
        if gateway_chain == "embedded-postgres":
            overrides["database_url"] = request.getfixturevalue("postgres_schema_url")
        runtime = build_runtime(make_settings(tmp_path, **overrides))
        yield runtime
        runtime.close()
        return
    from crm_gateway.chain.anvil import AnvilNode

    settings = make_settings(tmp_path, chain_kind=ChainKind.ANVIL, anvil_port=free_port())
    node = AnvilNode(settings)
    node.start()
    try:
        deploy_unless_embedded(settings)
        runtime = build_runtime(settings)
        yield runtime
        runtime.close()
    finally:
        node.stop()


class Person:
    """A registered customer and the key of their linked wallet."""

    def __init__(self, customer_id: str, key: LocalAccount) -> None:
        self.customer_id = customer_id
        self.key = key

    @property
    def wallet(self) -> str:
        return str(self.key.address)


class Coalition:
    """The API as a merchant, a relayer, a data steward and the customers' wallets use it."""

    def __init__(
        self,
        client: TestClient,
        runtime: Runtime,
        steward: dict[str, str],
        merchant: dict[str, str],
        relayer: dict[str, str],
        merchant_account: str,
    ) -> None:
        self.client, self.runtime = client, runtime
        self.steward, self.merchant, self.relayer = steward, merchant, relayer
        self.merchant_account = merchant_account
        self.token: Contract = runtime.contracts["LoyaltyPoints"]

    # --- customers ----------------------------------------------------------------------------

    def person(self, label: str) -> Person:
        created = self.client.post(
            "/v1/customers?wait=true", json={"email": f"{label}@example.com"}, headers=self.steward
        )
        assert created.status_code == 201, created.text
        customer_id = created.json()["customer_id"]
        key = Account.create()
        typed = self.client.get(
            f"/v1/customers/{customer_id}/wallet/typed-data",
            params={"wallet": key.address},
            headers=self.steward,
        ).json()
        linked = self.client.post(
            f"/v1/customers/{customer_id}/wallet?wait=true",
            json={
                "wallet": key.address,
                "deadline": typed["message"]["deadline"],
                "signature": Account.sign_typed_data(
                    key.key, full_message=typed
                ).signature.to_0x_hex(),
            },
            headers=self.steward,
        )
        assert linked.status_code == 200, linked.text
        self.runtime.chain.dev_fund(key.address, 10**18)
        return Person(customer_id, key)

    # --- API calls ----------------------------------------------------------------------------

    def earn(self, person: Person, amount: int, headers: dict[str, str] | None = None) -> Any:
        return self.client.post(
            "/v1/loyalty/earn?wait=true",
            json={"customer_id": person.customer_id, "amount": amount, "reason": "purchase"},
            headers=headers or self.merchant,
        )

    def own_transaction(self, person: Person, call: Any) -> Any:
        """The person's wallet signs its own call of the token; the API checks and sends it."""
        w3 = self.runtime.chain.w3
        tx = call.build_transaction(
            {
                "from": person.wallet,
                "nonce": w3.eth.get_transaction_count(person.key.address),
                "gas": TX_GAS,
                "chainId": self.runtime.chain.chain_id,
                **fee_fields(w3),
            }
        )
        raw = person.key.sign_transaction(tx).raw_transaction.to_0x_hex()
        return self.client.post(
            "/v1/loyalty/transfer?wait=true", json={"raw": raw}, headers=self.relayer
        )

    def permit_typed(
        self, owner: Person, spender: str, value: int, deadline: int | None = None
    ) -> dict[str, Any]:
        params: dict[str, Any] = {"customer": owner.customer_id, "spender": spender}
        params["value"] = value
        if deadline is not None:
            params["deadline"] = deadline
        response = self.client.get(
            "/v1/loyalty/permit-typed-data", params=params, headers=self.merchant
        )
        assert response.status_code == 200, response.text
        return dict(response.json())

    def balance(self, who: Person | str, **params: Any) -> dict[str, Any]:
        key = who.customer_id if isinstance(who, Person) else who
        response = self.client.get(
            f"/v1/loyalty/{key}/balance", params=params, headers=self.merchant
        )
        assert response.status_code == 200, response.text
        return dict(response.json())

    def points(self, who: Person) -> int:
        """The balance from the read model, once it includes the latest block."""
        head = self.runtime.chain.latest_block()
        wait_until(lambda: (self.balance(who)["as_of_block"] or -1) >= head)
        return int(self.balance(who)["balance"])

    def allowance(self, owner: Person, spender: str) -> int:
        response = self.client.get(
            "/v1/loyalty/allowance",
            params={"owner": owner.customer_id, "spender": spender},
            headers=self.merchant,
        )
        assert response.status_code == 200, response.text
        return int(response.json()["allowance"])

    def operations(self) -> int:
        with self.runtime.session_factory() as session:
            return session.query(Operation).count()


def signature(key: Any, typed: dict[str, Any]) -> str:
    return str(Account.sign_typed_data(key, full_message=typed).signature.to_0x_hex())


@pytest.fixture
def coalition(
    client: TestClient,
    runtime: Runtime,
    role_key: Callable[[str], dict[str, str]],
    issue_key: Callable[[int, str, str], str],
    new_signer: Callable[[], str],
    admin_headers: dict[str, str],
) -> Coalition:
    merchant_account = new_signer()
    granted = client.post(
        "/v1/roles/grants?wait=true",
        json={"role": "MERCHANT", "account": merchant_account},
        headers=admin_headers,
    )
    assert granted.status_code == 200, granted.text
    merchant = {"X-API-Key": issue_key(1, merchant_account, "MERCHANT")}
    return Coalition(
        client,
        runtime,
        role_key("DATA_STEWARD"),
        merchant,
        role_key("RELAYER"),
        merchant_account,
    )


# ------------------------------------------------------------------------------------------------
# The Hyperledger Fabric token-erc-20 sample, through the API
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "gateway_chain",
    [
        "embedded",
        pytest.param("embedded-postgres", marks=pytest.mark.postgres),
        pytest.param("anvil", marks=pytest.mark.anvil),
    ],
    indirect=True,
)
def test_fabric_token_erc20_sample_through_the_api(coalition: Coalition) -> None:
    """The Fabric sample's numbers, with its roles mapped onto the coalition:

    * the sample's **minter** is customer A's wallet: Fabric mints to the caller's own account;
      here points are only ever issued by a MERCHANT (`POST /v1/loyalty/earn` with a merchant's
      API key) to the wallet of a registered customer, so "mint 5000 to the minter" is a
      merchant earning 5000 to A;
    * the **recipient** is customer B's wallet; "transfer 100" is A's own signed `transfer`
      transaction, checked and broadcast by `POST /v1/loyalty/transfer`;
    * the **spender** is customer C's wallet (under RegisteredOnly any account may hold an
      allowance, but the gateway relays transactions of customer wallets only); "approve 500" is
      A's EIP-2612 permit for C (`GET /permit-typed-data`, signed offline, relayed by a RELAYER
      key with `POST /v1/loyalty/permits`), and "the spender transfers 100 from the minter to the
      recipient" is C's own signed `transferFrom(A, B, 100)` transaction;
    * "a mint by a non-merchant fails": `POST /earn` with a key whose account is not a MERCHANT
      (403, AccessControlUnauthorizedAccount, nothing queued), and a customer's own `earn`
      transaction, which the API refuses to relay and the token refuses on-chain.
    """
    world, token = coalition, coalition.token
    a, b, c = (world.person(label) for label in ("minter", "recipient", "spender"))

    # Mint 5000 to the minter.
    minted = world.earn(a, 5000)
    assert minted.status_code == 200, minted.text
    assert events(minted.json(), "PointsEarned")[0]["amount"] == 5000
    assert world.points(a) == 5000

    # Transfer 100 to the recipient: 4900 / 100.
    moved = world.own_transaction(a, token.functions.transfer(b.wallet, 100))
    assert moved.status_code == 200, moved.text
    assert moved.json()["status"] == "confirmed"
    assert [e["event"] for e in moved.json()["events"]] == ["Transfer"]
    assert (world.points(a), world.points(b)) == (4900, 100)

    # Approve the spender for 500 (by the minter's permit, relayed).
    typed = world.permit_typed(a, c.wallet, 500)
    approved = world.client.post(
        "/v1/loyalty/permits?wait=true",
        json={
            "owner": a.customer_id,
            "spender": c.wallet,
            "value": 500,
            "deadline": typed["message"]["deadline"],
            "signature": signature(a.key.key, typed),
        },
        headers=world.relayer,
    )
    assert approved.status_code == 200, approved.text
    assert events(approved.json(), "Approval") == [
        {"owner": a.wallet, "spender": c.wallet, "value": 500}
    ]
    assert world.allowance(a, c.wallet) == 500

    # The spender transfers 100 from the minter to the recipient.
    spent = world.own_transaction(c, token.functions.transferFrom(a.wallet, b.wallet, 100))
    assert spent.status_code == 200, spent.text
    assert (world.points(a), world.points(b)) == (4800, 200)
    assert world.allowance(a, c.wallet) == 400
    assert world.points(c) == 0
    assert token.functions.totalSupply().call() == 5000

    # A mint by a non-merchant fails, and nothing is queued.
    before = world.operations()
    refused = world.earn(a, 5000, headers=world.relayer)
    assert refused.status_code == 403, refused.text
    assert refused.json()["error"]["name"] == "AccessControlUnauthorizedAccount"
    assert refused.json()["error"]["args"]["neededRole"] == MERCHANT_ROLE
    own_mint = world.own_transaction(a, token.functions.earn(a.wallet, 5000, bytes(32)))
    assert own_mint.status_code == 400, own_mint.text
    assert world.operations() == before
    assert token.functions.totalSupply().call() == 5000

    # The history of each side, from the read model.
    history = world.client.get(
        f"/v1/loyalty/{a.customer_id}/history", headers=world.merchant
    ).json()
    assert [(m["kind"], m["direction"], m["amount"]) for m in history["movements"]] == [
        ("earn", "in", 5000),
        ("transfer", "out", 100),
        ("transfer", "out", 100),
    ]
    assert history["movements"][0]["org_id"] == 1
    assert history["movements"][0]["merchant"] == world.merchant_account

    settled = world.client.get(
        "/v1/loyalty/settlement", params={"period": "day"}, headers=world.merchant
    ).json()
    assert [(o["org_id"], o["issued"], o["redeemed"], o["net"]) for o in settled["totals"]] == [
        (1, 5000, 0, 5000)
    ]
    assert len(settled["periods"]) == 1

    # The projection is a function of the stored events: rebuilt, it answers the same.
    before_rebuild = [world.balance(p) for p in (a, b, c)]
    with session_scope(world.runtime.session_factory) as session:
        world.runtime.index_worker.indexer.rebuild_projections(session)
    assert [world.balance(p) for p in (a, b, c)] == before_rebuild
    rebuilt = world.client.get(f"/v1/loyalty/{a.customer_id}/history", headers=world.merchant)
    assert rebuilt.json()["movements"] == history["movements"]


# ------------------------------------------------------------------------------------------------
# Permits: accepted once; replayed, expired or foreign ones refused before anything is queued
# ------------------------------------------------------------------------------------------------


def test_a_permit_signed_offline_redeems_once_and_tampered_ones_are_refused(
    coalition: Coalition,
) -> None:
    world = coalition
    carol = world.person("carol")
    assert world.earn(carol, 1000).status_code == 200

    def redeem(typed: dict[str, Any], key: Any = None, wait: bool = True) -> Any:
        message = typed["message"]
        return world.client.post(
            f"/v1/loyalty/redeem?wait={str(wait).lower()}",
            json={
                "customer_id": carol.customer_id,
                "amount": message["value"],
                "reason": "order 4711",
                "deadline": message["deadline"],
                "signature": signature(key or carol.key.key, typed),
                "nonce": message["nonce"],
            },
            headers=world.merchant,
        )

    typed = world.permit_typed(carol, world.merchant_account, 300)
    assert typed["domain"]["verifyingContract"] == world.token.address
    assert typed["message"]["nonce"] == 0
    accepted = redeem(typed)
    assert accepted.status_code == 200, accepted.text
    assert events(accepted.json(), "PointsRedeemed")[0]["amount"] == 300
    assert world.points(carol) == 700
    assert world.token.functions.nonces(carol.wallet).call() == 1

    expired = world.permit_typed(carol, world.merchant_account, 300, int(time.time()) - 60)
    foreign = world.permit_typed(carol, world.merchant_account, 300)
    cases = [
        ("replayed", typed, None, "ERC2612InvalidSigner"),
        ("expired", expired, None, "ERC2612ExpiredSignature"),
        ("signed by another key", foreign, Account.create().key, "ERC2612InvalidSigner"),
    ]
    before = world.operations()
    for label, tampered, key, error in cases:
        refused = redeem(tampered, key, wait=False)
        assert refused.status_code == 422, (label, refused.text)
        assert refused.headers["content-type"] == "application/problem+json"
        assert refused.json()["error"]["name"] == error, label
    assert world.operations() == before
    assert world.token.functions.balanceOf(carol.wallet).call() == 700

    # The same refusals when the permit is relayed on its own (approve by signature).
    for label, tampered, key, error in cases:
        message = tampered["message"]
        refused = world.client.post(
            "/v1/loyalty/permits",
            json={
                "owner": carol.wallet,
                "spender": message["spender"],
                "value": message["value"],
                "deadline": message["deadline"],
                "signature": signature(key or carol.key.key, tampered),
            },
            headers=world.relayer,
        )
        assert refused.status_code == 422, (label, refused.text)
        assert refused.json()["error"]["name"] == error, label
    assert world.operations() == before


def test_writes_the_token_would_refuse_are_refused_with_its_error(coalition: Coalition) -> None:
    world, token = coalition, coalition.token
    dave, erin = world.person("dave"), world.person("erin")
    assert world.earn(dave, 50).status_code == 200
    stranger = Account.create()
    world.runtime.chain.dev_fund(stranger.address, 10**18)
    before = world.operations()

    def refused(response: Any, status: int, name: str) -> dict[str, Any]:
        assert response.status_code == status, response.text
        assert response.json()["error"]["name"] == name
        return dict(response.json()["error"]["args"])

    body = {"wallet": stranger.address, "amount": 10, "reason": "purchase"}
    args = refused(
        world.client.post("/v1/loyalty/earn", json=body, headers=world.merchant),
        422,
        "WalletNotRegistered",
    )
    assert args == {"wallet": stranger.address}
    body = {"customer_id": dave.customer_id, "amount": 0, "reason": "purchase"}
    refused(
        world.client.post("/v1/loyalty/earn", json=body, headers=world.merchant), 422, "ZeroAmount"
    )
    body = {"customer_id": dave.customer_id, "amount": 10, "reason": "order"}
    args = refused(
        world.client.post("/v1/loyalty/redeem", json=body, headers=world.merchant),
        422,
        "ERC20InsufficientAllowance",
    )
    assert args == {"spender": world.merchant_account, "allowance": 0, "needed": 10}

    # Customers' own transactions: beyond the balance, to an unregistered wallet, to 0x0.
    args = refused(
        world.own_transaction(dave, token.functions.transfer(erin.wallet, 51)),
        422,
        "ERC20InsufficientBalance",
    )
    assert args == {"sender": dave.wallet, "balance": 50, "needed": 51}
    args = refused(
        world.own_transaction(dave, token.functions.transfer(stranger.address, 1)),
        422,
        "TransferNotAllowed",
    )
    assert args["to"] == stranger.address
    refused(
        world.own_transaction(dave, token.functions.transfer("0x" + "00" * 20, 1)),
        422,
        "ERC20InvalidReceiver",
    )
    refused(
        world.own_transaction(erin, token.functions.transferFrom(dave.wallet, erin.wallet, 1)),
        422,
        "ERC20InsufficientAllowance",
    )
    assert world.operations() == before
    assert token.functions.balanceOf(dave.wallet).call() == 50

    # A survey answered: rewarded once per action hash.
    survey = {"customer_id": erin.customer_id, "amount": 25, "action": "survey:2025-q4:erin"}
    rewarded = world.client.post(
        "/v1/loyalty/rewards?wait=true", json=survey, headers=world.merchant
    )
    assert rewarded.status_code == 200, rewarded.text
    action_hash = "0x" + keccak(text="survey:2025-q4:erin").hex()
    assert events(rewarded.json(), "ActionRewarded")[0]["actionHash"] == action_hash
    args = refused(
        world.client.post("/v1/loyalty/rewards", json=survey, headers=world.merchant),
        422,
        "ActionAlreadyRewarded",
    )
    assert args == {"actionHash": action_hash, "orgId": 1}
    assert world.points(erin) == 25
    history = world.client.get(f"/v1/loyalty/{erin.wallet}/history", headers=world.merchant)
    assert [(m["kind"], m["reason"]) for m in history.json()["movements"]] == [
        ("reward", action_hash)
    ]

    # The consent path for customers' own transactions takes the token's too.
    w3 = world.runtime.chain.w3
    tx = token.functions.transfer(dave.wallet, 5).build_transaction(
        {
            "from": erin.wallet,
            "nonce": w3.eth.get_transaction_count(erin.key.address),
            "gas": TX_GAS,
            "chainId": world.runtime.chain.chain_id,
            **fee_fields(w3),
        }
    )
    raw = erin.key.sign_transaction(tx).raw_transaction.to_0x_hex()
    sent = world.client.post("/v1/transactions/raw", json={"raw": raw}, headers=world.relayer)
    assert sent.status_code == 202, sent.text
    assert w3.eth.wait_for_transaction_receipt(sent.json()["tx_hash"])["status"] == 1
    again = world.client.post("/v1/transactions/raw", json={"raw": raw}, headers=world.relayer)
    assert again.json()["tx_hash"] == sent.json()["tx_hash"]  # the same bytes: answered as is
    assert (world.points(erin), world.points(dave)) == (20, 55)


# ------------------------------------------------------------------------------------------------
# Settlement over 1,000 events of three merchants; read-model balances against balanceOf
# ------------------------------------------------------------------------------------------------


def _three_merchants(
    world: Coalition,
    admin_headers: dict[str, str],
    issue_key: Callable[[int, str, str], str],
    new_signer: Callable[[], str],
    gateway_of: Callable[[int], TestClient],
) -> dict[int, LocalAccount]:
    """Organisations 2 and 3 (the third approved by both), a MERCHANT key in each of the three."""
    client = world.client
    admins = {1: admin_headers}
    partner_admin = new_signer()
    partner = add_organization(client, admin_headers, "partner", partner_admin)
    admins[partner] = {"X-API-Key": issue_key(partner, partner_admin, "ORG_ADMIN")}
    shop_admin = new_signer()
    proposed = client.post(
        "/v1/orgs/proposals?wait=true",
        json={"kind": "add_organization", "name": "shop", "admin": shop_admin},
        headers=admin_headers,
    )
    proposal_id = events(proposed.json(), "ProposalCreated")[0]["proposalId"]
    approval = f"/v1/orgs/proposals/{proposal_id}/approvals?wait=true"
    partner_gateway = gateway_of(partner)
    assert partner_gateway.post(approval, headers=admins[partner]).status_code == 200
    executed = partner_gateway.post(
        f"/v1/orgs/proposals/{proposal_id}/execution?wait=true", headers=admins[partner]
    )
    shop = int(events(executed.json(), "OrganizationAdded")[0]["orgId"])
    admins[shop] = {"X-API-Key": issue_key(shop, shop_admin, "ORG_ADMIN")}
    merchants = {}
    for org_id, headers in admins.items():
        account = world.runtime.keystore.add(Account.create())
        world.runtime.chain.dev_fund(account.address, 10**20)
        gateway = client if org_id == 1 else gateway_of(org_id)
        granted = gateway.post(
            "/v1/roles/grants?wait=true",
            json={"role": "MERCHANT", "account": account.address},
            headers=headers,
        )
        assert granted.status_code == 200, granted.text
        merchants[org_id] = account
    return merchants


def _settled_from_events(
    token: Contract, receipts: list[Any], block_time: Callable[[int], datetime]
) -> dict[tuple[date, int], list[int]]:
    """Per (UTC day, organisation): [issued, redeemed], recomputed from the token's events in
    the receipts (eth-tester's `eth_getLogs` over a thousand blocks takes minutes)."""
    figures: dict[tuple[date, int], list[int]] = {}
    for receipt in receipts:
        for event, column in (
            (token.events.PointsEarned, 0),
            (token.events.ActionRewarded, 0),
            (token.events.PointsRedeemed, 1),
        ):
            for log in event().process_receipt(receipt, errors=DISCARD):
                day = block_time(log["blockNumber"]).date()
                pair = figures.setdefault((day, log["args"]["orgId"]), [0, 0])
                pair[column] += log["args"]["amount"]
    return figures


def travel(runtime: Runtime, moment: datetime) -> None:
    """Make the next block's timestamp `moment` (development chains only)."""
    w3, timestamp = runtime.chain.w3, int(moment.timestamp())
    if runtime.chain.kind is ChainKind.EMBEDDED:
        with w3.provider._lock:  # type: ignore[attr-defined]
            w3.provider.ethereum_tester.time_travel(timestamp)  # type: ignore[attr-defined]
    else:
        w3.provider.make_request("evm_setNextBlockTimestamp", [timestamp])  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "gateway_chain", ["embedded", pytest.param("anvil", marks=pytest.mark.anvil)], indirect=True
)
def test_settlement_of_1000_events_of_three_merchants_equals_the_events(
    gateway_of: Callable[[int], TestClient],
    coalition: Coalition,
    admin_headers: dict[str, str],
    issue_key: Callable[[int, str, str], str],
    new_signer: Callable[[], str],
) -> None:
    """1,000 earn/reward/redeem calls of three merchant organisations over four days, sent
    straight to the chain from the merchants' keys (the pipeline would add nothing but time), on
    the embedded chain and on Anvil: the settlement endpoint, per day and over windows, equals the
    sums recomputed from the events and the token's own per-organisation totals; the read
    model's balances, now and at a past block, equal `balanceOf`."""
    world, token = coalition, coalition.token
    w3 = world.runtime.chain.w3
    merchants = _three_merchants(world, admin_headers, issue_key, new_signer, gateway_of)
    people = [world.person(f"shopper{i}") for i in range(4)]
    for person in people:
        for merchant in merchants.values():
            approved = world.own_transaction(
                person, token.functions.approve(merchant.address, MAX_UINT256)
            )
            assert approved.status_code == 200, approved.text

    chain_id = world.runtime.chain.chain_id
    fees = fee_fields(w3)
    nonces = {org: w3.eth.get_transaction_count(m.address) for org, m in merchants.items()}
    rng = random.Random(20251126)
    balances: Counter[str] = Counter()
    start = w3.eth.block_number + 1
    first_day = datetime.fromtimestamp(w3.eth.get_block("latest")["timestamp"], UTC).date()
    midnight = datetime.combine(first_day + timedelta(days=1), datetime.min.time(), UTC)
    receipts: list[Any] = []
    sent: list[Any] = []
    embedded = world.runtime.chain.kind is ChainKind.EMBEDDED

    def collect() -> None:
        while len(receipts) < len(sent):
            receipts.append(w3.eth.wait_for_transaction_receipt(sent[len(receipts)]))

    if not embedded:  # Anvil: index the 1,000 blocks afterwards, in two eth_getLogs ranges
        world.runtime.index_worker.stop()
    started = time.monotonic()
    for i in range(1000):
        if i % 250 == 0 and i:  # four days: 250 calls on each
            collect()
            travel(world.runtime, midnight + timedelta(days=i // 250 - 1, hours=9))
        org = rng.choice(sorted(merchants))
        person = rng.choice(people)
        amount = rng.randint(1, 500)
        kind = rng.choice(["earn", "earn", "reward", "redeem", "redeem"])
        if kind == "redeem" and balances[person.wallet] == 0:
            kind = "earn"
        if kind == "redeem":
            amount = min(amount, balances[person.wallet])
            balances[person.wallet] -= amount
            data = token.encode_abi("redeem", [person.wallet, amount, keccak(text="checkout")])
        else:
            balances[person.wallet] += amount
            data = (
                token.encode_abi("earn", [person.wallet, amount, keccak(text="purchase")])
                if kind == "earn"
                else token.encode_abi("reward", [person.wallet, amount, keccak(text=f"act {i}")])
            )
        tx = {
            "to": token.address,
            "data": data,
            "gas": TX_GAS,
            "nonce": nonces[org],
            "chainId": chain_id,
            **fees,
        }
        nonces[org] += 1
        sent.append(
            w3.eth.send_raw_transaction(merchants[org].sign_transaction(tx).raw_transaction)
        )
        if embedded:  # right away: eth-tester finds a receipt by walking back from the head
            receipts.append(w3.eth.get_transaction_receipt(sent[-1]))
    collect()
    head = w3.eth.block_number
    elapsed = time.monotonic() - started
    world.runtime.index_worker.start()
    assert all(r["status"] == 1 for r in receipts)

    def settlement(**params: Any) -> dict[str, Any]:
        response = world.client.get("/v1/loyalty/settlement", params=params, headers=world.merchant)
        assert response.status_code == 200, response.text
        return dict(response.json())

    wait_until(lambda: (settlement()["as_of_block"] or -1) >= head, timeout=60)
    indexed = time.monotonic() - started - elapsed
    print(f"1,000 calls mined in {elapsed:.1f} s, indexed {indexed:.1f} s later")

    times: dict[int, datetime] = {}

    def block_time(number: int) -> datetime:
        if number not in times:
            times[number] = datetime.fromtimestamp(w3.eth.get_block(number)["timestamp"], UTC)
        return times[number]

    expected = _settled_from_events(token, receipts, block_time)
    assert len({day for day, _org in expected}) == 4
    assert {org for _day, org in expected} == set(merchants)

    by_day = settlement(period="day")
    got = {
        (date.fromisoformat(p["start"]), o["org_id"]): [o["issued"], o["redeemed"]]
        for p in by_day["periods"]
        for o in p["organizations"]
    }
    assert got == expected
    for row in by_day["totals"]:
        org = row["org_id"]
        on_chain = (token.functions.issued(org).call(), token.functions.redeemed(org).call())
        assert (row["issued"], row["redeemed"]) == on_chain
        assert row["net"] == row["issued"] - row["redeemed"]
    assert {row["name"] for row in by_day["totals"]} == {"founder", "partner", "shop"}

    # A window of two whole days, in total and per ISO week.
    window_start, window_end = midnight + timedelta(days=1), midnight + timedelta(days=3)
    window: Counter[tuple[int, int]] = Counter()
    for (day, org), (issued, redeemed) in expected.items():
        if window_start.date() <= day < window_end.date():
            window[(org, 0)] += issued
            window[(org, 1)] += redeemed
    total = settlement(
        **{"from": window_start.isoformat(), "to": window_end.isoformat(), "period": "total"}
    )
    assert {
        (row["org_id"], column): row[key]
        for row in total["totals"]
        for column, key in ((0, "issued"), (1, "redeemed"))
    } == {key: value for key, value in window.items()}
    weekly = settlement(period="week")
    for row in weekly["totals"]:
        assert (
            sum(
                o["issued"]
                for p in weekly["periods"]
                for o in p["organizations"]
                if o["org_id"] == row["org_id"]
            )
            == row["issued"]
        )

    # Balances: the read model against balanceOf, now and at a block in the middle.
    middle = (start + head) // 2
    for person in people:
        now = world.balance(person)
        assert now["balance"] == token.functions.balanceOf(person.wallet).call()
        assert now["balance"] == balances[person.wallet]
        past = world.balance(person, as_of_block=middle)
        chain = world.balance(person, as_of_block=middle, consistency="chain")
        assert past["balance"] == chain["balance"], person.wallet
        assert past["block"] == chain["block"] == middle
    ahead = world.client.get(
        f"/v1/loyalty/{people[0].wallet}/balance",
        params={"as_of_block": head + 1000},
        headers=world.merchant,
    )
    assert ahead.status_code == 409
