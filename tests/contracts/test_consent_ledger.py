"""PurposeRegistry and ConsentLedger: purposes with versioned notices, consent by the customer's
own wallet transaction or by a relayed EIP-712 signature, batches that skip what they refuse.

The world of every test: the default Consortium; organisation 1 ("founder", admin accounts[1])
with DATA_STEWARD accounts[2] and RELAYER accounts[4]; organisation 2 ("partner", admin
accounts[3]); a CustomerRegistry, a PurposeRegistry and a ConsentLedger bound to them. Purposes:
"marketing.email" and "marketing.sms" (controller org 1, basis Consent) and "analytics"
(controller org 2, basis LegitimateInterest). Customers: alice and bob with wallets (fresh
eth-account keys, funded so that they can send their own transactions), carol without a wallet,
and dave, erased. Built once per chain (`module_chain`); each test's changes are undone
(`chain.isolated`). Wallets sign typed data exactly as `eth_signTypedData_v4` would
(`Account.sign_typed_data(key, full_message=...)`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from functools import cached_property
from pathlib import Path
from typing import Any

import pytest
import rlp
from eth_account import Account
from eth_account.messages import _hash_eip191_message, encode_typed_data
from eth_tester.exceptions import TransactionFailed
from eth_utils import function_signature_to_4byte_selector, keccak, to_checksum_address
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from web3 import EthereumTesterProvider, Web3
from web3.contract import Contract
from web3.exceptions import ContractLogicError

from tests.contracts.typed_data import (
    CONSENT_CHANGE,
    cid,
    domain,
    labelled_key,
    sign,
    sign_link,
    typed_data,
)

ABI_DIR = Path(__file__).resolve().parents[2] / "abi"
ZERO32 = bytes(32)
FAR_FUTURE = 2**64
# The test ledger accepts deadlines up to FAR_FUTURE (a cap of its own is tested on its own).
MAX_LIFETIME = FAR_FUTURE
RECOVERY_DELAY = 172_800
BATCH_GAS = 15_000_000
CONSENT, CONTRACT, LEGAL_OBLIGATION, LEGITIMATE_INTEREST = range(4)
BY_WALLET, BY_SIGNATURE = 0, 1


def pid(slug: str) -> bytes:
    """A purpose id as the gateway makes one: keccak256 of the slug."""
    return keccak(text=slug)


def notice(label: str) -> bytes:
    return keccak(text=f"notice:{label}")


def wallet_key(label: str | int) -> Any:
    return labelled_key("consent wallet key", label)


def selector(signature: str) -> bytes:
    return function_signature_to_4byte_selector(signature)


EMAIL, SMS, ANALYTICS = pid("marketing.email"), pid("marketing.sms"), pid("analytics")
ERROR_SIGNATURES = {
    "DeadlineExpired": "DeadlineExpired(uint256)",
    "DeadlineTooFar": "DeadlineTooFar(uint256,uint256)",
    "NoticeVersionMismatch": "NoticeVersionMismatch(bytes32,uint64,uint64)",
    "UnknownCustomer": "UnknownCustomer(bytes32)",
    "CustomerIsErased": "CustomerIsErased(bytes32)",
    "CustomerWithoutWallet": "CustomerWithoutWallet(bytes32)",
    "NotCustomerWallet": "NotCustomerWallet(bytes32,address)",
    "InvalidConsentSignature": "InvalidConsentSignature(bytes32,address)",
    "InvalidNonce": "InvalidNonce(bytes32,uint256,uint256)",
    "UnknownPurpose": "UnknownPurpose(bytes32)",
    "PurposeIsRetired": "PurposeIsRetired(bytes32)",
    "UnknownOrganization": "UnknownOrganization(uint64)",
    "OrganizationNotActive": "OrganizationNotActive(uint64)",
    "ExpiryInPast": "ExpiryInPast(uint64)",
    "ExpiryOnRevocation": "ExpiryOnRevocation(uint64)",
}


@dataclass(frozen=True)
class Change:
    """A ConsentChange, as the contract and the wallet see it."""

    customer_id: bytes
    purpose_id: bytes
    org_id: int
    granted: bool
    expires_at: int = 0
    nonce: int = 0
    deadline: int = FAR_FUTURE
    purpose_version: int = 1  # the notice version the customer was shown

    def as_tuple(self) -> tuple[Any, ...]:
        return (
            self.customer_id,
            self.purpose_id,
            self.purpose_version,
            self.org_id,
            self.granted,
            self.expires_at,
            self.nonce,
            self.deadline,
        )

    def as_message(self) -> dict[str, Any]:
        return {
            "customerId": Web3.to_hex(self.customer_id),
            "purposeId": Web3.to_hex(self.purpose_id),
            "purposeVersion": self.purpose_version,
            "orgId": self.org_id,
            "granted": self.granted,
            "expiresAt": self.expires_at,
            "nonce": self.nonce,
            "deadline": self.deadline,
        }


def _artifact(name: str) -> dict[str, Any]:
    path = ABI_DIR / f"{name}.json"
    if not path.is_file():
        pytest.fail(f"{path} is missing; compile the contracts first")
    return dict(json.loads(path.read_text(encoding="utf-8")))


@pytest.fixture(scope="module")
def artifacts() -> dict[str, dict[str, Any]]:
    return {
        name: _artifact(name) for name in ("CustomerRegistry", "PurposeRegistry", "ConsentLedger")
    }


@dataclass
class World:
    chain: Any
    consortium: Contract
    registry: Contract
    purposes: Contract
    ledger: Contract
    ledger_receipt: Any
    accounts: list[str]
    roles: dict[str, bytes]
    admins: dict[int, str]
    wallets: dict[str, Any]
    add_organization: Any
    artifacts: dict[str, dict[str, Any]]

    admin1 = property(lambda self: self.accounts[1])
    steward1 = property(lambda self: self.accounts[2])
    admin2 = property(lambda self: self.accounts[3])
    relayer = property(lambda self: self.accounts[4])
    outsider = property(lambda self: self.accounts[5])

    @property
    def w3(self) -> Web3:
        return self.chain.w3

    @cached_property
    def chain_id(self) -> int:
        return int(self.w3.eth.chain_id)

    @property
    def fns(self) -> Any:
        return self.ledger.functions

    @property
    def pfns(self) -> Any:
        return self.purposes.functions

    def reverts(self, name: str, *args: Any) -> Any:
        return self.chain.reverts(name, *args, abi=self.ledger.abi)

    def purpose_reverts(self, name: str, *args: Any) -> Any:
        return self.chain.reverts(name, *args, abi=self.purposes.abi)

    def send(self, call: Any, sender: str, gas: int = 1_000_000) -> Any:
        return self.chain.transact(call, sender, gas=gas)

    def events(self, name: str, receipt: Any, contract: Contract | None = None) -> list[Any]:
        return self.chain.events(contract or self.ledger, name, receipt)

    def event_names(self, receipt: Any, contract: Contract | None = None) -> list[str]:
        return self.chain.event_names(contract or self.ledger, receipt)

    def timestamp(self, receipt: Any) -> int:
        return int(self.w3.eth.get_block(receipt["blockNumber"])["timestamp"])

    def now(self) -> int:
        return int(self.chain.latest_timestamp())

    # -- EIP-712 -------------------------------------------------------------------------------

    def typed_data(
        self, change: Change, verifying_contract: str | None = None, chain_id: int | None = None
    ) -> dict[str, Any]:
        """The `eth_signTypedData_v4` JSON a wallet is asked to sign."""
        signing_domain = domain(
            "ConsentLedger",
            chain_id if chain_id is not None else self.chain_id,
            verifying_contract or self.ledger.address,
        )
        return typed_data(CONSENT_CHANGE, change.as_message(), signing_domain)

    def digest(self, change: Change) -> bytes:
        """The change's EIP-712 digest computed off-chain by eth-account."""
        return bytes(_hash_eip191_message(encode_typed_data(full_message=self.typed_data(change))))

    def sign(self, change: Change, key: Any, **signing_domain: Any) -> bytes:
        return sign(key, self.typed_data(change, **signing_domain))

    def nonce(self, customer: bytes) -> int:
        return int(self.fns.nonces(customer).call())

    def change(self, customer: str, purpose: bytes = EMAIL, org: int = 1, **fields: Any) -> Change:
        """A change for `customer` at its current nonce and the purpose's current notice version
        (unless given)."""
        fields.setdefault("granted", True)
        fields.setdefault("nonce", self.nonce(cid(customer)))
        fields.setdefault("purpose_version", self.pfns.purposeStatus(purpose).call()[0])
        return Change(cid(customer), purpose, org, **fields)

    # -- the two paths -------------------------------------------------------------------------

    def relay(self, change: Change, key: Any | None = None, signature: bytes | None = None) -> Any:
        if signature is None:
            signature = self.sign(change, key)
        return self.send(self.fns.setConsentBySig(change.as_tuple(), signature), self.relayer)

    def relay_batch(self, changes: list[Change], signatures: list[bytes]) -> Any:
        call = self.fns.setConsentsBySig([c.as_tuple() for c in changes], signatures)
        return self.send(call, self.relayer, gas=BATCH_GAS)

    def send_from_wallet(self, key: Any, call: Any, gas: int = 400_000) -> Any:
        """The customer's wallet signs and sends its own transaction (a raw transaction)."""
        tx = call.build_transaction(
            {
                "from": key.address,
                "nonce": self.w3.eth.get_transaction_count(key.address),
                "gas": gas,
                "chainId": self.chain_id,
            }
        )
        signed = key.sign_transaction(tx)
        receipt = self.w3.eth.wait_for_transaction_receipt(
            self.w3.eth.send_raw_transaction(signed.raw_transaction)
        )
        if receipt["status"] != 1:
            call.call({"from": key.address}, block_identifier=receipt["blockNumber"] - 1)
            raise AssertionError(f"transaction failed without revert data: {receipt}")
        return receipt

    def by_wallet(self, change: Change, key: Any) -> Any:
        return self.send_from_wallet(key, self.fns.setConsent(change.as_tuple()))

    # -- customers -----------------------------------------------------------------------------

    def register(self, label: str | int) -> None:
        call = self.registry.functions.register(cid(label), keccak(text=f"commitment:{label}"))
        self.send(call, self.steward1)

    def sign_link(self, label: str | int, key: Any, nonce: int) -> bytes:
        """`key` signs the CustomerRegistry's LinkWallet authorisation of itself."""
        return sign_link(key, self.chain_id, self.registry.address, cid(label), nonce, FAR_FUTURE)

    def link(self, label: str | int, key: Any) -> None:
        nonce = self.registry.functions.walletNonce(cid(label)).call()
        signature = self.sign_link(label, key, nonce)
        call = self.registry.functions.linkWallet(cid(label), key.address, FAR_FUTURE, signature)
        self.send(call, self.steward1)

    def fund(self, address: str) -> None:
        tx = {"from": self.accounts[0], "to": address, "value": 10**18, "gas": 21_000}
        self.w3.eth.wait_for_transaction_receipt(self.w3.eth.send_transaction(tx))

    # -- governance ----------------------------------------------------------------------------

    def govern(self, proposal_call: Any) -> None:
        """Propose as the founder admin, approve as org 2's admin, execute."""
        consortium = self.consortium.functions
        receipt = self.chain.transact(proposal_call, self.admin1)
        proposal = self.chain.events(self.consortium, "ProposalCreated", receipt)[0]["proposalId"]
        required = consortium.requiredApprovals().call()
        if consortium.approvalCount(proposal).call() < required:
            self.chain.transact(consortium.approve(proposal), self.admin2)
        self.chain.transact(consortium.execute(proposal), self.admin1)

    def suspend(self, org_id: int) -> None:
        self.govern(self.consortium.functions.proposeSuspendOrganization(org_id))


@pytest.fixture(scope="module")
def base_world(module_chain, add_organization, artifacts) -> World:
    chain = module_chain
    accounts = chain.accounts
    consortium, _ = chain.deploy()
    cfns = consortium.functions
    roles = {name: bytes(cfns[name]().call()) for name in ["ORG_ADMIN", "DATA_STEWARD", "RELAYER"]}
    admins = {1: accounts[1]}
    chain.grant(cfns, roles["DATA_STEWARD"], accounts[2], accounts[1])
    chain.grant(cfns, roles["RELAYER"], accounts[4], accounts[1])
    assert add_organization(chain, consortium, admins, "partner", accounts[3]) == 2
    registry, _ = chain.deploy_artifact(
        artifacts["CustomerRegistry"], consortium.address, RECOVERY_DELAY
    )
    purposes, _ = chain.deploy_artifact(artifacts["PurposeRegistry"], consortium.address)
    ledger, ledger_receipt = chain.deploy_artifact(
        artifacts["ConsentLedger"],
        consortium.address,
        registry.address,
        purposes.address,
        MAX_LIFETIME,
    )
    world = World(
        chain=chain,
        consortium=consortium,
        registry=registry,
        purposes=purposes,
        ledger=ledger,
        ledger_receipt=ledger_receipt,
        accounts=accounts,
        roles=roles,
        admins=admins,
        wallets={"alice": wallet_key("alice"), "bob": wallet_key("bob")},
        add_organization=add_organization,
        artifacts=artifacts,
    )
    pfns = purposes.functions
    world.send(pfns.definePurpose(EMAIL, notice("email v1"), CONSENT), world.admin1)
    world.send(pfns.definePurpose(SMS, notice("sms v1"), CONSENT), world.admin1)
    world.send(
        pfns.definePurpose(ANALYTICS, notice("analytics v1"), LEGITIMATE_INTEREST), world.admin2
    )
    for label in ("alice", "bob", "carol", "dave"):
        world.register(label)
    for label, key in world.wallets.items():
        world.link(label, key)
        world.fund(key.address)
    world.send(registry.functions.erase(cid("dave")), world.steward1)
    return world


def test_error_selectors_are_unique_and_the_batch_knows_them_all(artifacts):
    """Every error of each artifact has its own selector; the errors a batch can reject a change
    with are exactly those a single change can revert with for its content."""
    for name in ("PurposeRegistry", "ConsentLedger"):
        errors = [e for e in artifacts[name]["abi"] if e["type"] == "error"]
        signatures = {f"{e['name']}({','.join(p['type'] for p in e['inputs'])})" for e in errors}
        assert len({selector(s) for s in signatures}) == len(errors)
        if name == "ConsentLedger":
            assert set(ERROR_SIGNATURES.values()) <= signatures


# ------------------------------------------------------------------------------------------------
# PurposeRegistry
# ------------------------------------------------------------------------------------------------


def test_define_purpose_makes_the_admins_org_its_controller_at_version_1(world):
    pfns = world.pfns
    slug = pid("loyalty.profiling")
    receipt = world.send(pfns.definePurpose(slug, notice("p1"), CONTRACT), world.admin2)
    at = world.timestamp(receipt)
    assert world.event_names(receipt, world.purposes) == ["PurposeDefined"]
    assert world.events("PurposeDefined", receipt, world.purposes) == [
        {
            "purposeId": slug,
            "controllerOrg": 2,
            "version": 1,
            "noticeHash": notice("p1"),
            "basis": CONTRACT,
        }
    ]
    assert pfns.purpose(slug).call() == (2, 1, notice("p1"), CONTRACT, True, at)
    assert pfns.purposeStatus(slug).call() == [1, True]
    assert pfns.exists(slug).call()
    assert not pfns.exists(pid("nothing")).call()
    assert pfns.purpose(pid("nothing")).call() == (0, 0, ZERO32, 0, False, 0)
    assert pfns.purposeStatus(pid("nothing")).call() == [0, False]
    assert pfns.consortium().call() == world.consortium.address
    assert bytes(pfns.ORG_ADMIN().call()) == world.roles["ORG_ADMIN"]


def test_lawful_basis_ordinals_are_stable(world, artifacts):
    [enum] = {
        p["internalType"]
        for e in artifacts["PurposeRegistry"]["abi"]
        if e.get("name") == "definePurpose"
        for p in e["inputs"]
        if p["name"] == "basis"
    }
    assert enum == "enum PurposeRegistry.LawfulBasis"
    for basis in (CONSENT, CONTRACT, LEGAL_OBLIGATION, LEGITIMATE_INTEREST):
        slug = pid(f"basis {basis}")
        world.send(world.pfns.definePurpose(slug, notice("x"), basis), world.admin1)
        assert world.pfns.purpose(slug).call()[3] == basis
    with world.purpose_reverts(""):  # the ABI decoder refuses it, with no data
        world.send(world.pfns.definePurpose(pid("bad"), notice("x"), 4), world.admin1)


def test_purpose_registry_refusals(world, artifacts):
    pfns = world.pfns
    org_admin = world.roles["ORG_ADMIN"]
    for account in (world.steward1, world.relayer, world.outsider, world.accounts[0]):
        with world.purpose_reverts("AccessControlUnauthorizedAccount", account, org_admin):
            world.send(pfns.definePurpose(pid("x"), notice("x"), CONSENT), account)
        with world.purpose_reverts("AccessControlUnauthorizedAccount", account, org_admin):
            world.send(pfns.updateNotice(EMAIL, notice("x")), account)
        with world.purpose_reverts("AccessControlUnauthorizedAccount", account, org_admin):
            world.send(pfns.retirePurpose(EMAIL), account)
    with world.purpose_reverts("PurposeAlreadyDefined", EMAIL):
        world.send(pfns.definePurpose(EMAIL, notice("other"), CONSENT), world.admin2)
    with world.purpose_reverts("InvalidPurposeId"):
        world.send(pfns.definePurpose(ZERO32, notice("x"), CONSENT), world.admin1)
    with world.purpose_reverts("InvalidNoticeHash"):
        world.send(pfns.definePurpose(pid("x"), ZERO32, CONSENT), world.admin1)
    with world.purpose_reverts("NotPurposeController", EMAIL, 2):
        world.send(pfns.updateNotice(EMAIL, notice("x")), world.admin2)
    with world.purpose_reverts("NotPurposeController", EMAIL, 2):
        world.send(pfns.retirePurpose(EMAIL), world.admin2)
    with world.purpose_reverts("UnknownPurpose", pid("nothing")):
        world.send(pfns.updateNotice(pid("nothing"), notice("x")), world.admin1)
    with world.purpose_reverts("UnknownPurpose", pid("nothing")):
        world.send(pfns.retirePurpose(pid("nothing")), world.admin1)
    with world.purpose_reverts("InvalidNoticeHash"):
        world.send(pfns.updateNotice(EMAIL, ZERO32), world.admin1)
    with world.purpose_reverts("NoticeUnchanged", EMAIL):
        world.send(pfns.updateNotice(EMAIL, notice("email v1")), world.admin1)
    with world.purpose_reverts("InvalidConsortium", world.outsider):
        world.chain.deploy_artifact(artifacts["PurposeRegistry"], world.outsider)

    # The admin of a suspended organisation is refused until it is reactivated.
    world.suspend(2)
    with world.purpose_reverts("AccessControlUnauthorizedAccount", world.admin2, org_admin):
        world.send(pfns.updateNotice(ANALYTICS, notice("analytics v2")), world.admin2)
    assert pfns.purpose(EMAIL).call()[:3] == (1, 1, notice("email v1"))


def test_update_notice_moves_to_the_next_version_and_retire_ends_the_purpose(world):
    pfns = world.pfns
    receipt = world.send(pfns.updateNotice(EMAIL, notice("email v2")), world.admin1)
    assert world.events("PurposeNoticeUpdated", receipt, world.purposes) == [
        {
            "purposeId": EMAIL,
            "controllerOrg": 1,
            "version": 2,
            "noticeHash": notice("email v2"),
            "basis": CONSENT,
        }
    ]
    assert pfns.purpose(EMAIL).call() == (
        1,
        2,
        notice("email v2"),
        CONSENT,
        True,
        world.timestamp(receipt),
    )
    # Any ORG_ADMIN of the controller organisation may act.
    world.chain.grant(world.consortium, world.roles["ORG_ADMIN"], world.outsider, world.admin1)
    receipt = world.send(pfns.retirePurpose(EMAIL), world.outsider)
    assert world.events("PurposeRetired", receipt, world.purposes) == [
        {"purposeId": EMAIL, "controllerOrg": 1, "version": 2}
    ]
    assert pfns.purpose(EMAIL).call() == (
        1,
        2,
        notice("email v2"),
        CONSENT,
        False,
        world.timestamp(receipt),
    )
    assert pfns.purposeStatus(EMAIL).call() == [2, False]
    assert pfns.exists(EMAIL).call()
    with world.purpose_reverts("PurposeIsRetired", EMAIL):
        world.send(pfns.retirePurpose(EMAIL), world.admin1)
    with world.purpose_reverts("PurposeIsRetired", EMAIL):
        world.send(pfns.updateNotice(EMAIL, notice("email v3")), world.admin1)
    with world.purpose_reverts("PurposeAlreadyDefined", EMAIL):  # ids are never reused
        world.send(pfns.definePurpose(EMAIL, notice("email v3"), CONSENT), world.admin1)


# ------------------------------------------------------------------------------------------------
# ConsentLedger: deployment
# ------------------------------------------------------------------------------------------------


def test_ledger_deployment_binds_its_dependencies_and_the_eip712_domain(world, artifacts):
    fns = world.fns
    assert world.event_names(world.ledger_receipt) == []
    assert fns.consortium().call() == world.consortium.address
    assert fns.customerRegistry().call() == world.registry.address
    assert fns.purposeRegistry().call() == world.purposes.address
    assert bytes(fns.RELAYER().call()) == world.roles["RELAYER"]
    assert bytes(fns.CONSENT_CHANGE_TYPEHASH().call()) == keccak(
        text="ConsentChange(bytes32 customerId,bytes32 purposeId,uint64 purposeVersion,"
        "uint64 orgId,bool granted,uint64 expiresAt,uint256 nonce,uint256 deadline)"
    )
    assert fns.maxSignatureLifetime().call() == MAX_LIFETIME
    fields, name, version, chain_id, verifying, salt, extensions = fns.eip712Domain().call()
    assert (fields, name, version) == (b"\x0f", "ConsentLedger", "1")
    assert (chain_id, verifying, salt, extensions) == (
        world.w3.eth.chain_id,
        world.ledger.address,
        ZERO32,
        [],
    )
    signable = encode_typed_data(full_message=world.typed_data(world.change("alice")))
    assert bytes(fns.DOMAIN_SEPARATOR().call()) == signable.header

    good = [world.consortium.address, world.registry.address, world.purposes.address]
    errors = ["InvalidConsortium", "InvalidCustomerRegistry", "InvalidPurposeRegistry"]
    for position, error in enumerate(errors):
        args = list(good)
        args[position] = world.outsider
        with world.reverts(error, world.outsider):
            world.chain.deploy_artifact(artifacts["ConsentLedger"], *args, MAX_LIFETIME)
    with world.reverts("InvalidSignatureLifetime"):
        world.chain.deploy_artifact(artifacts["ConsentLedger"], *good, 0)


# ------------------------------------------------------------------------------------------------
# ConsentLedger: the two paths
# ------------------------------------------------------------------------------------------------


def _changed(change: Change, version: int, receipt_hash: bytes, method: int, submitter: str):
    return {
        "customerId": change.customer_id,
        "purposeId": change.purpose_id,
        "orgId": change.org_id,
        "granted": change.granted,
        "purposeVersion": version,
        "expiresAt": change.expires_at,
        "nonce": change.nonce,
        "receiptHash": receipt_hash,
        "method": method,
        "submitter": submitter,
    }


def test_the_customers_wallet_grants_and_revokes_with_its_own_transaction(world):
    fns = world.fns
    alice = world.wallets["alice"]
    grant = world.change("alice", expires_at=world.now() + 10_000)
    assert fns.setConsent(grant.as_tuple()).call({"from": alice.address}) == world.digest(grant)
    receipt = world.by_wallet(grant, alice)

    digest = world.digest(grant)
    assert world.event_names(receipt) == ["ConsentChanged"]
    assert world.events("ConsentChanged", receipt) == [
        _changed(grant, 1, digest, BY_WALLET, alice.address)
    ]
    at = world.timestamp(receipt)
    assert fns.consent(cid("alice"), EMAIL, 1).call() == (True, 1, at, grant.expires_at, digest)
    assert fns.nonces(cid("alice")).call() == 1
    assert fns.hasConsent(cid("alice"), EMAIL, 1).call()
    assert not fns.hasConsent(cid("alice"), EMAIL, 2).call()  # another processor
    assert not fns.hasConsent(cid("alice"), SMS, 1).call()  # another purpose
    assert not fns.hasConsent(cid("bob"), EMAIL, 1).call()  # another customer

    revoke = world.change("alice", granted=False)
    receipt = world.by_wallet(revoke, alice)
    assert world.events("ConsentChanged", receipt) == [
        _changed(revoke, 1, world.digest(revoke), BY_WALLET, alice.address)
    ]
    assert fns.consent(cid("alice"), EMAIL, 1).call() == (
        False,
        1,
        world.timestamp(receipt),
        0,
        world.digest(revoke),
    )
    assert not fns.hasConsent(cid("alice"), EMAIL, 1).call()
    assert fns.nonces(cid("alice")).call() == 2


def test_a_relayer_submits_a_change_signed_as_eth_sign_typed_data_v4(world):
    fns = world.fns
    bob = world.wallets["bob"]
    change = world.change("bob", ANALYTICS, 2, deadline=world.now() + 600)
    typed = world.typed_data(change)
    json.dumps(typed)  # what a wallet receives is plain JSON
    signature = Account.sign_typed_data(bob.key, full_message=typed).signature
    assert len(signature) == 65

    call = fns.setConsentBySig(change.as_tuple(), signature)
    assert call.call({"from": world.relayer}) == world.digest(change)
    receipt = world.send(call, world.relayer)
    digest = world.digest(change)
    assert world.events("ConsentChanged", receipt) == [
        _changed(change, 1, digest, BY_SIGNATURE, world.relayer)
    ]
    assert fns.consent(cid("bob"), ANALYTICS, 2).call() == (
        True,
        1,
        world.timestamp(receipt),
        0,
        digest,
    )
    assert fns.hasConsent(cid("bob"), ANALYTICS, 2).call()
    assert fns.nonces(cid("bob")).call() == 1

    # Both paths share the nonce: the wallet's own transaction comes next.
    revoke = world.change("bob", ANALYTICS, 2, granted=False)
    assert revoke.nonce == 1
    world.by_wallet(revoke, bob)
    assert not fns.hasConsent(cid("bob"), ANALYTICS, 2).call()


def test_the_receipt_hash_is_the_eip712_digest_computed_off_chain(world):
    alice = world.wallets["alice"]
    change = world.change("alice", SMS, 2, expires_at=world.now() + 99, deadline=world.now() + 9)
    signable = encode_typed_data(full_message=world.typed_data(change))
    by_hand = keccak(b"\x19\x01" + signable.header + signable.body)
    assert bytes(_hash_eip191_message(signable)) == by_hand
    assert bytes(world.fns.hashConsentChange(change.as_tuple()).call()) == by_hand
    signature = world.sign(change, alice)
    assert Account._recover_hash(by_hand, signature=signature) == alice.address

    # The same change sent by the wallet itself has the same receipt hash.
    with world.chain.isolated():
        receipt = world.by_wallet(change, alice)
        assert world.events("ConsentChanged", receipt)[0]["receiptHash"] == by_hand

    receipt = world.relay(change, signature=signature)
    assert world.events("ConsentChanged", receipt)[0]["receiptHash"] == by_hand
    assert world.fns.consent(cid("alice"), SMS, 2).call()[4] == by_hand


# ------------------------------------------------------------------------------------------------
# ConsentLedger: refusals
# ------------------------------------------------------------------------------------------------


def test_signature_refusals(world):
    fns = world.fns
    alice, bob = world.wallets["alice"], world.wallets["bob"]
    change = world.change("alice")
    valid = world.sign(change, alice)
    # A high-s copy of the valid signature (the same signer, malleated) is refused too.
    order = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
    high_s = (order - int.from_bytes(valid[32:64], "big")).to_bytes(32, "big")
    malleated = valid[:32] + high_s + bytes([55 - valid[64]])
    refused = [
        world.sign(change, bob),  # wrong signer (another customer's wallet)
        world.sign(replace(change, granted=False), alice),  # a signature of another change
        world.sign(replace(change, org_id=2), alice),
        world.sign(replace(change, deadline=FAR_FUTURE - 1), alice),
        world.sign(change, alice, verifying_contract=world.registry.address),  # another contract
        world.sign(change, alice, chain_id=world.w3.eth.chain_id + 1),  # another chain
        valid[:64],  # malformed
        valid + b"\x00",
        b"",
        b"\x01" * 65,
        malleated,
    ]
    for signature in refused:
        with world.reverts("InvalidConsentSignature", cid("alice"), alice.address):
            world.relay(change, signature=signature)
    assert fns.nonces(cid("alice")).call() == 0
    world.relay(change, signature=valid)
    assert fns.nonces(cid("alice")).call() == 1


def test_nonce_refusals_replay_and_out_of_order(world):
    alice = world.wallets["alice"]
    first = world.change("alice")
    signature = world.sign(first, alice)
    world.relay(first, signature=signature)
    with world.reverts("InvalidNonce", cid("alice"), 1, 0):  # replayed signature
        world.relay(first, signature=signature)
    with world.reverts("InvalidNonce", cid("alice"), 1, 0):  # replayed by the wallet itself
        world.by_wallet(first, alice)
    ahead = world.change("alice", nonce=5)
    with world.reverts("InvalidNonce", cid("alice"), 1, 5):
        world.relay(ahead, alice)
    with world.reverts("InvalidNonce", cid("alice"), 1, 5):
        world.by_wallet(ahead, alice)
    assert world.fns.nonces(cid("alice")).call() == 1


def test_customer_refusals(world):
    alice = world.wallets["alice"]
    cases = [
        ("nobody", "UnknownCustomer"),
        ("dave", "CustomerIsErased"),
        ("carol", "CustomerWithoutWallet"),
    ]
    for label, error in cases:
        change = world.change(label)
        with world.reverts(error, cid(label)):
            world.relay(change, alice)
        with world.reverts(error, cid(label)):
            world.by_wallet(change, alice)

    # The wallet path: only the registered wallet may send; the relayer's account is no wallet.
    change = world.change("alice")
    with world.reverts("NotCustomerWallet", cid("alice"), world.wallets["bob"].address):
        world.by_wallet(change, world.wallets["bob"])
    with world.reverts("NotCustomerWallet", cid("alice"), world.relayer):
        world.send(world.fns.setConsent(change.as_tuple()), world.relayer)


def test_deadline_purpose_organisation_and_expiry_refusals(world):
    alice = world.wallets["alice"]
    now = world.now()
    cases = [
        (world.change("alice", deadline=now - 1), ("DeadlineExpired", now - 1)),
        (world.change("alice", pid("nothing")), ("UnknownPurpose", pid("nothing"))),
        (world.change("alice", granted=False, purpose=ZERO32), ("UnknownPurpose", ZERO32)),
        (world.change("alice", org=0), ("UnknownOrganization", 0)),
        (world.change("alice", org=3, granted=False), ("UnknownOrganization", 3)),
        (world.change("alice", expires_at=now - 1), ("ExpiryInPast", now - 1)),
        (world.change("alice", expires_at=1), ("ExpiryInPast", 1)),
        (
            world.change("alice", granted=False, expires_at=now + 100),
            ("ExpiryOnRevocation", now + 100),
        ),
    ]
    for change, error in cases:
        with world.reverts(*error):
            world.relay(change, alice)
        with world.reverts(*error):
            world.by_wallet(change, alice)
    assert world.fns.nonces(cid("alice")).call() == 0


def test_retired_purposes_and_suspended_organisations_can_only_be_revoked(world):
    fns = world.fns
    alice = world.wallets["alice"]
    world.relay(world.change("alice", SMS), alice)
    world.relay(world.change("alice", ANALYTICS, 2), alice)
    world.send(world.pfns.retirePurpose(SMS), world.admin1)
    world.suspend(2)
    assert not fns.hasConsent(cid("alice"), SMS, 1).call()  # a retired purpose voids consent
    assert fns.hasConsent(cid("alice"), ANALYTICS, 2).call()  # suspension is not the ledger's

    with world.reverts("PurposeIsRetired", SMS):
        world.relay(world.change("alice", SMS), alice)
    with world.reverts("OrganizationNotActive", 2):
        world.relay(world.change("alice", EMAIL, 2), alice)
    with world.reverts("OrganizationNotActive", 2):
        world.by_wallet(world.change("alice", EMAIL, 2), alice)

    # Withdrawal is never harder than granting (GDPR Art. 7(3)).
    world.relay(world.change("alice", SMS, granted=False), alice)
    world.by_wallet(world.change("alice", ANALYTICS, 2, granted=False), alice)
    assert not fns.consent(cid("alice"), SMS, 1).call()[0]
    assert not fns.hasConsent(cid("alice"), ANALYTICS, 2).call()
    assert fns.nonces(cid("alice")).call() == 4


def test_only_relayers_in_force_submit_signed_changes(world):
    relayer = world.roles["RELAYER"]
    alice = world.wallets["alice"]
    change = world.change("alice")
    signature = world.sign(change, alice)
    single = world.fns.setConsentBySig(change.as_tuple(), signature)
    batch = world.fns.setConsentsBySig([change.as_tuple()], [signature])
    for account in (world.outsider, world.admin1, world.steward1):
        with world.reverts("AccessControlUnauthorizedAccount", account, relayer):
            world.send(single, account)
        with world.reverts("AccessControlUnauthorizedAccount", account, relayer):
            world.send(batch, account)
    with world.reverts("AccessControlUnauthorizedAccount", alice.address, relayer):
        world.send_from_wallet(alice, single)  # not even the customer's own wallet
    with world.reverts("LengthMismatch"):
        world.send(world.fns.setConsentsBySig([change.as_tuple()], []), world.relayer)

    # A relayer of organisation 2 stops when its organisation is suspended.
    partner_relayer = world.accounts[6]
    world.chain.grant(world.consortium, relayer, partner_relayer, world.admin2)
    assert single.call({"from": partner_relayer}) == world.digest(change)
    world.suspend(2)
    with world.reverts("AccessControlUnauthorizedAccount", partner_relayer, relayer):
        world.send(single, partner_relayer)
    world.send(single, world.relayer)


# ------------------------------------------------------------------------------------------------
# ConsentLedger: batches
# ------------------------------------------------------------------------------------------------


def test_a_batch_applies_what_it_can_and_rejects_the_rest_with_the_single_calls_error(
    world, decode_revert
):
    fns = world.fns
    alice, bob = world.wallets["alice"], world.wallets["bob"]
    retired = pid("retired")
    world.send(world.pfns.definePurpose(retired, notice("retired"), CONSENT), world.admin1)
    world.send(world.pfns.retirePurpose(retired), world.admin1)
    world.suspend(2)
    now = world.now()
    a0 = world.change("alice")
    items: list[tuple[Change, bytes]] = [
        (a0, world.sign(a0, alice)),
        (a0, world.sign(a0, alice)),  # the same again: a replay inside the batch
        (
            replace(a0, nonce=1, purpose_id=SMS),
            world.sign(replace(a0, nonce=1, purpose_id=SMS), bob),
        ),
        (
            replace(a0, nonce=1, purpose_id=SMS),
            world.sign(replace(a0, nonce=1, purpose_id=SMS), alice),
        ),
        (world.change("bob", ANALYTICS, 2, deadline=now - 1), b""),
        (world.change("bob", pid("nothing")), b""),
        (world.change("nobody"), b""),
        (world.change("dave"), b""),
        (world.change("carol"), b""),
        (world.change("bob", org=7), b""),
        (world.change("bob", expires_at=now - 5), b""),
        (world.change("bob", granted=False, expires_at=now + 5), b""),
        (world.change("bob", ANALYTICS, 1, expires_at=now + 10_000), b""),
        (world.change("bob", retired, nonce=1), b""),
        (world.change("bob", EMAIL, 2, nonce=1), b""),
        (world.change("bob", EMAIL, 2, nonce=1, granted=False), b""),  # revoking is allowed
        (
            replace(a0, nonce=2, granted=False),
            world.sign(replace(a0, nonce=2, granted=False), alice),
        ),
    ]
    # Sign what is still unsigned with the customer's wallet (bob's for his, alice's otherwise).
    signed = []
    for change, signature in items:
        if not signature:
            key = bob if change.customer_id == cid("bob") else alice
            signature = world.sign(change, key)
        signed.append((change, signature))

    # What the single call says about each item, one after the other (then undone).
    expected: list[str | bytes] = []
    with world.chain.isolated():
        for change, signature in signed:
            try:
                world.relay(change, signature=signature)
                expected.append("applied")
            except Exception as exc:
                name, _ = decode_revert(exc, world.ledger.abi)
                expected.append(selector(ERROR_SIGNATURES[name]))

    changes = [c for c, _ in signed]
    signatures = [s for _, s in signed]
    call = fns.setConsentsBySig([c.as_tuple() for c in changes], signatures)
    assert call.call({"from": world.relayer}) == expected.count("applied") == 5
    receipt = world.relay_batch(changes, signatures)

    names = world.event_names(receipt)
    assert names == [
        "ConsentChanged" if outcome == "applied" else "ConsentChangeRejected"
        for outcome in expected
    ]
    rejected = world.events("ConsentChangeRejected", receipt)
    assert [r["errorSelector"] for r in rejected] == [e for e in expected if e != "applied"]
    assert [(r["customerId"], r["nonce"]) for r in rejected] == [
        (c.customer_id, c.nonce) for c, e in zip(changes, expected, strict=True) if e != "applied"
    ]
    assert [r["errorSelector"] for r in rejected] == [
        selector(ERROR_SIGNATURES[name])
        for name in [
            "InvalidNonce",
            "InvalidConsentSignature",
            "DeadlineExpired",
            "UnknownPurpose",
            "UnknownCustomer",
            "CustomerIsErased",
            "CustomerWithoutWallet",
            "UnknownOrganization",
            "ExpiryInPast",
            "ExpiryOnRevocation",
            "PurposeIsRetired",
            "OrganizationNotActive",
        ]
    ]
    applied = world.events("ConsentChanged", receipt)
    assert [(e["customerId"], e["purposeId"], e["orgId"], e["granted"]) for e in applied] == [
        (cid("alice"), EMAIL, 1, True),
        (cid("alice"), SMS, 1, True),
        (cid("bob"), ANALYTICS, 1, True),
        (cid("bob"), EMAIL, 2, False),
        (cid("alice"), EMAIL, 1, False),
    ]
    assert all(e["method"] == BY_SIGNATURE and e["submitter"] == world.relayer for e in applied)
    assert [e["receiptHash"] for e in applied] == [
        world.digest(c) for c, e in zip(changes, expected, strict=True) if e == "applied"
    ]
    assert fns.nonces(cid("alice")).call() == 3
    assert fns.nonces(cid("bob")).call() == 2
    assert not fns.hasConsent(cid("alice"), EMAIL, 1).call()
    assert fns.hasConsent(cid("alice"), SMS, 1).call()
    assert fns.hasConsent(cid("bob"), ANALYTICS, 1).call()
    assert fns.consent(cid("bob"), EMAIL, 2).call()[:2] == (False, 1)


def test_a_batch_sent_again_applies_nothing_and_an_empty_batch_is_fine(world):
    alice, bob = world.wallets["alice"], world.wallets["bob"]
    changes = [world.change("alice"), world.change("bob"), world.change("alice", SMS, nonce=1)]
    signatures = [world.sign(c, bob if c.customer_id == cid("bob") else alice) for c in changes]
    first = world.relay_batch(changes, signatures)
    assert world.event_names(first) == ["ConsentChanged"] * 3
    again = world.relay_batch(changes, signatures)
    invalid_nonce = selector(ERROR_SIGNATURES["InvalidNonce"])
    assert world.events("ConsentChangeRejected", again) == [
        {"customerId": c.customer_id, "nonce": c.nonce, "errorSelector": invalid_nonce}
        for c in changes
    ]
    assert world.event_names(world.relay_batch([], [])) == []


# ------------------------------------------------------------------------------------------------
# ConsentLedger: what counts
# ------------------------------------------------------------------------------------------------


def test_has_consent_honours_the_expiry(world):
    fns = world.fns
    alice = world.wallets["alice"]
    expires_at = world.now() + 1_000
    world.relay(world.change("alice", expires_at=expires_at), alice)
    world.relay(world.change("alice", SMS), alice)  # no expiry
    assert fns.hasConsent(cid("alice"), EMAIL, 1).call()
    world.chain.advance_time(500)
    assert fns.hasConsent(cid("alice"), EMAIL, 1).call()
    world.chain.advance_time(600)
    assert world.now() >= expires_at
    assert not fns.hasConsent(cid("alice"), EMAIL, 1).call()
    assert fns.consent(cid("alice"), EMAIL, 1).call()[:1] == (True,)  # stored, but not in force
    assert fns.hasConsent(cid("alice"), SMS, 1).call()

    # Granted again, it counts again.
    world.by_wallet(world.change("alice", expires_at=world.now() + 1_000), alice)
    assert fns.hasConsent(cid("alice"), EMAIL, 1).call()


def test_a_new_notice_version_voids_consent_until_it_is_granted_again(world):
    fns = world.fns
    alice, bob = world.wallets["alice"], world.wallets["bob"]
    world.relay(world.change("alice"), alice)
    world.relay(world.change("bob", SMS), bob)
    world.send(world.pfns.updateNotice(EMAIL, notice("email v2")), world.admin1)

    assert not fns.hasConsent(cid("alice"), EMAIL, 1).call()
    assert fns.consent(cid("alice"), EMAIL, 1).call()[:2] == (True, 1)
    assert fns.hasConsent(cid("bob"), SMS, 1).call()  # another purpose is untouched

    receipt = world.relay(world.change("alice"), alice)
    assert world.events("ConsentChanged", receipt)[0]["purposeVersion"] == 2
    assert fns.consent(cid("alice"), EMAIL, 1).call()[:2] == (True, 2)
    assert fns.hasConsent(cid("alice"), EMAIL, 1).call()


def test_a_grant_is_applied_only_to_the_notice_version_it_names(world):
    """A relayer holding a grant signed for notice v1 cannot apply it once v2 is out: the
    customer never saw v2. Nor can a grant name a version still to come."""
    fns = world.fns
    alice = world.wallets["alice"]
    held_back = world.change("alice")  # signed while EMAIL is at version 1
    signature = world.sign(held_back, alice)
    world.send(world.pfns.updateNotice(EMAIL, notice("email v2")), world.admin1)
    with world.reverts("NoticeVersionMismatch", EMAIL, 2, 1):
        world.relay(held_back, signature=signature)
    with world.reverts("NoticeVersionMismatch", EMAIL, 2, 1):
        world.by_wallet(held_back, alice)
    with world.reverts("NoticeVersionMismatch", EMAIL, 2, 3):
        world.relay(world.change("alice", purpose_version=3), alice)
    batch = world.relay_batch([held_back], [signature])
    assert world.events("ConsentChangeRejected", batch)[0]["errorSelector"] == selector(
        ERROR_SIGNATURES["NoticeVersionMismatch"]
    )
    assert fns.nonces(cid("alice")).call() == 0
    receipt = world.relay(world.change("alice", purpose_version=2), alice)
    assert world.events("ConsentChanged", receipt)[0]["purposeVersion"] == 2
    assert fns.hasConsent(cid("alice"), EMAIL, 1).call()


def test_a_revocation_goes_through_at_any_notice_version_even_when_retired(world):
    fns = world.fns
    alice = world.wallets["alice"]
    world.relay(world.change("alice", SMS), alice)
    world.send(world.pfns.updateNotice(SMS, notice("sms v2")), world.admin1)
    world.send(world.pfns.retirePurpose(SMS), world.admin1)
    for version in (0, 1, 7):
        revoke = world.change("alice", SMS, granted=False, purpose_version=version)
        receipt = world.relay(revoke, alice)
        assert world.events("ConsentChanged", receipt)[0]["purposeVersion"] == 2
    assert not fns.consent(cid("alice"), SMS, 1).call()[0]


def test_a_deadline_too_far_ahead_is_refused(world, artifacts, decode_revert):
    """On a ledger capped at one hour, a signature may not live longer (so a relayer cannot hold
    it back for later); the cap counts from the block that applies the change."""
    alice = world.wallets["alice"]
    capped, _ = world.chain.deploy_artifact(
        artifacts["ConsentLedger"],
        world.consortium.address,
        world.registry.address,
        world.purposes.address,
        3_600,
    )
    assert capped.functions.maxSignatureLifetime().call() == 3_600
    capped_world = replace(world, ledger=capped)

    def refused(attempt: Any, deadline: int) -> None:
        with pytest.raises((TransactionFailed, ContractLogicError)) as info:
            attempt()
        assert decode_revert(info.value, capped.abi) == ("DeadlineTooFar", (deadline, 3_600))

    for granted in (True, False):  # a revocation too: no signature outlives the cap
        too_far = capped_world.change("alice", granted=granted, deadline=world.now() + 4_200)
        refused(lambda change=too_far: capped_world.relay(change, alice), too_far.deadline)
    far = capped_world.change("alice", deadline=FAR_FUTURE)
    refused(lambda: capped_world.by_wallet(far, alice), FAR_FUTURE)
    assert capped.functions.nonces(cid("alice")).call() == 0
    capped_world.relay(capped_world.change("alice", deadline=world.now() + 3_000), alice)
    assert capped.functions.hasConsent(cid("alice"), EMAIL, 1).call()


# ------------------------------------------------------------------------------------------------
# ERC-1271 contract wallets
# ------------------------------------------------------------------------------------------------

# A contract wallet whose isValidSignature(bytes32,bytes) looks at the signature's first byte:
# 0x01 approves (returns the ERC-1271 magic value), 0x03 burns all the gas it is given, anything
# else refuses (returns zero).
_WALLET_RUNTIME = (
    bytes.fromhex("606435")  # 0x00 CALLDATALOAD(0x64): the first word of the signature bytes
    + bytes.fromhex("60f81c80")  # 0x03 SHR 248 (its first byte), DUP1
    + bytes.fromhex("600114601d57")  # 0x07 == 1: JUMPI 0x1d
    + bytes.fromhex("600314602e57")  # 0x0d == 3: JUMPI 0x2e
    + bytes.fromhex("600060005260206000f3")  # 0x13 return bytes32(0)
    + bytes.fromhex("5b631626ba7e60e01b60005260206000f3")  # 0x1d return the magic value
    + bytes.fromhex("5b602e56")  # 0x2e loop forever
)
APPROVE, REFUSE, BURN = b"\x01", b"\x02", b"\x03"


def _deploy_contract_wallet(world: World) -> str:
    assert _WALLET_RUNTIME[0x1D] == _WALLET_RUNTIME[0x2E] == 0x5B
    runtime = _WALLET_RUNTIME
    init = bytes([0x60, len(runtime), 0x80, 0x60, 0x0B, 0x60, 0x00, 0x39, 0x60, 0x00, 0xF3])
    deployer = world.accounts[9]
    w3 = world.w3
    nonce = w3.eth.get_transaction_count(deployer)
    address = to_checksum_address(keccak(rlp.encode([bytes.fromhex(deployer[2:]), nonce]))[12:])
    tx = {"from": deployer, "data": init + runtime, "gas": 200_000}
    receipt = w3.eth.wait_for_transaction_receipt(w3.eth.send_transaction(tx))
    assert receipt["contractAddress"] == address
    return address


def test_contract_wallets_approve_through_erc1271_within_a_gas_limit(world):
    fns = world.fns
    alice = world.wallets["alice"]
    wallet = _deploy_contract_wallet(world)
    world.register("erin")
    world.send(
        world.registry.functions.linkWallet(cid("erin"), wallet, FAR_FUTURE, APPROVE),
        world.steward1,
    )
    assert world.registry.functions.customer(cid("erin")).call()[2] == wallet

    grant = world.change("erin")
    receipt = world.relay(grant, signature=APPROVE)
    assert world.events("ConsentChanged", receipt) == [
        _changed(grant, 1, world.digest(grant), BY_SIGNATURE, world.relayer)
    ]
    assert fns.hasConsent(cid("erin"), EMAIL, 1).call()
    for refused in (REFUSE, b"", world.sign(world.change("erin"), alice)):
        with world.reverts("InvalidConsentSignature", cid("erin"), wallet):
            world.relay(world.change("erin"), signature=refused)
    assert world.fns.ERC1271_GAS_LIMIT().call() == 500_000

    # A wallet that burns all gas costs a batch its allowance and no more: the change is
    # rejected and the next one still applies.
    burnt = world.change("erin", granted=False)
    following = world.change("alice")
    receipt = world.relay_batch([burnt, following], [BURN, world.sign(following, alice)])
    assert world.event_names(receipt) == ["ConsentChangeRejected", "ConsentChanged"]
    assert world.events("ConsentChangeRejected", receipt)[0]["errorSelector"] == selector(
        ERROR_SIGNATURES["InvalidConsentSignature"]
    )
    assert 500_000 < receipt["gasUsed"] < 700_000

    # Too little gas left to give the wallet its whole allowance reverts the transaction rather
    # than reject a change for want of gas (which eth_estimateGas could otherwise settle on).
    call = fns.setConsentsBySig([burnt.as_tuple()], [APPROVE])
    short = {"from": world.relayer, "gas": 400_000}
    failed = world.w3.eth.wait_for_transaction_receipt(call.transact(short))
    assert failed["status"] == 0
    with world.reverts("InsufficientGasForWallet", wallet):
        call.call(short, block_identifier=failed["blockNumber"] - 1)
    receipt = world.send(call, world.relayer, gas=1_000_000)
    assert world.event_names(receipt) == ["ConsentChanged"]
    assert not fns.hasConsent(cid("erin"), EMAIL, 1).call()


# ------------------------------------------------------------------------------------------------
# A model of hasConsent
# ------------------------------------------------------------------------------------------------

_CUSTOMERS = ("alice", "bob")
_PURPOSES = (EMAIL, SMS)
_ORGS = (1, 2)
_change_step = st.tuples(
    st.just("change"),
    st.sampled_from(_CUSTOMERS),
    st.sampled_from(_PURPOSES),
    st.sampled_from(_ORGS),
    st.booleans(),
    st.sampled_from([None, 300, 1_300]),  # expiry, seconds from now (offsets keep off the
    st.sampled_from(["wallet", "relay", "batch"]),  # 500 s clock steps by 200 s at least)
)
_step = st.one_of(
    _change_step,
    _change_step,
    _change_step,
    st.tuples(st.just("notice"), st.sampled_from(_PURPOSES)),
    st.tuples(st.just("advance"), st.sampled_from([500, 1_000])),
)


@settings(
    max_examples=8,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(steps=st.lists(_step, min_size=1, max_size=10))
def test_random_grant_and_revoke_sequences_match_a_model(world, steps):
    """Grants (with or without expiry) and revocations by both paths and in batches, notice
    updates and the passing of time: `hasConsent` agrees with a Python model throughout."""
    fns = world.fns
    with world.chain.isolated():
        clock = 0
        versions = dict.fromkeys(_PURPOSES, 1)
        notices = dict.fromkeys(_PURPOSES, 1)
        nonces = dict.fromkeys(_CUSTOMERS, 0)
        model: dict[tuple[str, bytes, int], tuple[bool, int, int | None]] = {}
        pending: list[tuple[Change, bytes]] = []

        def flush() -> None:
            if pending:
                receipt = world.relay_batch([c for c, _ in pending], [s for _, s in pending])
                assert world.event_names(receipt) == ["ConsentChanged"] * len(pending)
                pending.clear()

        def expected(customer: str, purpose: bytes, org: int) -> bool:
            granted, version, expires = model.get((customer, purpose, org), (False, 0, None))
            live = expires is None or clock < expires
            return granted and version == versions[purpose] and live

        for step in steps:
            if step[0] == "change":
                _, customer, purpose, org, granted, expiry, via = step
                if not granted:
                    expiry = None
                expires_at = 0 if expiry is None else world.now() + expiry
                change = Change(
                    cid(customer),
                    purpose,
                    org,
                    granted,
                    expires_at,
                    nonces[customer],
                    purpose_version=versions[purpose],
                )
                key = world.wallets[customer]
                if via != "batch":
                    flush()
                if via == "wallet":
                    world.by_wallet(change, key)
                elif via == "relay":
                    world.relay(change, key)
                else:
                    pending.append((change, world.sign(change, key)))
                nonces[customer] += 1
                expires = None if expiry is None else clock + expiry
                model[(customer, purpose, org)] = (granted, versions[purpose], expires)
            else:
                flush()
                if step[0] == "notice":
                    purpose = step[1]
                    notices[purpose] += 1
                    text = notice(f"{purpose.hex()} v{notices[purpose]}")
                    world.send(world.pfns.updateNotice(purpose, text), world.admin1)
                    versions[purpose] += 1
                else:
                    world.chain.advance_time(step[1])
                    clock += step[1]
            if step[0] == "change" and not pending:  # the changed consent
                got = fns.hasConsent(change.customer_id, change.purpose_id, change.org_id).call()
                assert got == expected(customer, purpose, org), step
            elif step[0] != "change":  # every consent
                for customer in _CUSTOMERS:
                    for purpose in _PURPOSES:
                        for org in _ORGS:
                            got = fns.hasConsent(cid(customer), purpose, org).call()
                            assert got == expected(customer, purpose, org), step
        flush()
        for customer in _CUSTOMERS:
            assert fns.nonces(cid(customer)).call() == nonces[customer]
            for purpose in _PURPOSES:
                for org in _ORGS:
                    assert fns.hasConsent(cid(customer), purpose, org).call() == expected(
                        customer, purpose, org
                    )


# ------------------------------------------------------------------------------------------------
# Gas
# ------------------------------------------------------------------------------------------------


def test_gas_single_changes_and_batches(world):
    """Gas of one change alone (by the wallet's own transaction, by a relayed signature) and the
    marginal gas per change in a batch of 100, `(gas(batch of 100) - gas(batch of 1)) / 99`,
    for first changes (new storage) and for later changes (storage already written). The table
    is printed with `-s`; budgets have some headroom. The embedded chain (same gas schedule, but
    slower) runs batches of 25 instead: the marginal gas per change does not depend on it."""
    anvil = not isinstance(world.w3.provider, EthereumTesterProvider)
    n = 100 if anvil else 25
    labels = [f"gas {i}" for i in range(n + 3)]
    keys = [wallet_key(label) for label in labels]
    registry = world.registry.functions
    world.send(
        registry.registerBatch([cid(x) for x in labels], [keccak(text=x) for x in labels]),
        world.steward1,
        gas=BATCH_GAS,
    )
    link_hashes = [
        registry.linkWallet(
            cid(label), key.address, FAR_FUTURE, world.sign_link(label, key, 0)
        ).transact({"from": world.steward1, "gas": 200_000})
        for label, key in zip(labels, keys, strict=True)
    ]  # sent back to back, checked at the end
    assert all(world.w3.eth.get_transaction_receipt(h)["status"] == 1 for h in link_hashes)
    world.fund(keys[0].address)

    def measure(granted: bool) -> dict[str, float]:
        nonce = 0 if granted else 1
        changes = [world.change(label, granted=granted, nonce=nonce) for label in labels]
        signed = [world.sign(c, k) for c, k in zip(changes, keys, strict=True)]
        wallet = world.by_wallet(changes[0], keys[0])["gasUsed"]
        single = world.relay(changes[1], signature=signed[1])["gasUsed"]
        one = world.relay_batch(changes[2:3], signed[2:3])
        many = world.relay_batch(changes[3:], signed[3:])
        assert world.event_names(many) == ["ConsentChanged"] * n
        marginal = (many["gasUsed"] - one["gasUsed"]) / (n - 1)
        return {
            "wallet": wallet,
            "signature": single,
            "batch of 1": one["gasUsed"],
            "batch of n": many["gasUsed"],
            "marginal": marginal,
            "ratio": marginal / single,
        }

    first = measure(True)  # first change of each customer: nonce and consent words are new
    later = measure(False)  # the same customers revoke: every word is rewritten
    print(f"\ngas on {'anvil' if anvil else 'embedded'}:")
    for name, row in (("first change", first), ("later change", later)):
        print(
            f"  {name}: wallet tx {row['wallet']}, relayed signature {row['signature']}, "
            f"batch of 1 {row['batch of 1']}, batch of {n} {row['batch of n']} "
            f"-> marginal {row['marginal']:.0f}/change = {row['ratio']:.2f} x single"
        )
    assert later["ratio"] <= 0.5
    assert first["ratio"] <= 0.7  # floored by three zero-to-non-zero SSTOREs (3 x 22,100)
    assert later["signature"] < 95_000
    assert first["signature"] < 150_000
