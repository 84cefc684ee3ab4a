"""The processing rule, defined once (`ConsentLedger.mayProcess`), answered the same by the gateway.

One walk through the states a purpose and a consent go through (own purpose, another
organisation's, shared, unshared, retired; consent basis without, with, and with an expired
consent). At each step the contract's view, the gateway's processing check from the read model
and from the chain, and `GET /v1/customers/{id}?purpose=` must give the answer the step expects.
"""

from __future__ import annotations

import re
import time
from typing import Any

from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_utils.crypto import keccak

from crm_gateway.indexer.read_model import PROCESSING_ANSWERS
from crm_gateway.services.consent import LawfulBasis, purpose_id
from tests.adversarial.consortium.conftest import Consortium

# The problem type `GET /v1/customers/{id}?purpose=` answers each refusal with.
PROBLEMS = {
    "purpose_not_shared": "purpose-not-shared",
    "purpose_retired": "purpose-retired",
    "no_live_consent": "consent-required",
    "unknown_purpose": "unknown-purpose",
}


class Walk:
    def __init__(self, c: Consortium) -> None:
        self.c = c
        _steward, self.steward = c.role_key("DATA_STEWARD")
        _agent, self.agent = c.role_key("AGENT")
        _relayer, self.relayer = c.role_key("RELAYER")
        self.customer = c.customer(self.steward, "walk@example.com")
        self.wallet: LocalAccount = Account.create()
        self._link()

    def _link(self) -> None:
        c, customer = self.c, self.customer
        typed = c.client.get(
            f"/v1/customers/{customer}/wallet/typed-data",
            params={"wallet": self.wallet.address},
            headers=self.steward,
        ).json()
        signature = Account.sign_typed_data(self.wallet.key, full_message=typed).signature
        body = {
            "wallet": self.wallet.address,
            "deadline": typed["message"]["deadline"],
            "signature": signature.to_0x_hex(),
        }
        linked = c.client.post(
            f"/v1/customers/{customer}/wallet?wait=true", json=body, headers=self.steward
        )
        assert linked.status_code == 200, linked.text

    def consent(self, slug: str, *, expiry: int = 0) -> None:
        """The customer's wallet signs a grant for organisation 1; the relayer submits it."""
        c = self.c
        typed = c.client.get(
            "/v1/consents/typed-data",
            params={
                "customer": self.customer,
                "purpose": slug,
                "org": 1,
                "granted": True,
                "expiry": expiry,
            },
            headers=self.relayer,
        )
        assert typed.status_code == 200, typed.text
        message = typed.json()["message"]
        signature = Account.sign_typed_data(self.wallet.key, full_message=typed.json()).signature
        body: dict[str, Any] = {_snake(k): v for k, v in message.items()}
        body["signature"] = signature.to_0x_hex()
        relayed = c.client.post("/v1/consents?wait=true", json=body, headers=self.relayer)
        assert relayed.status_code == 200, relayed.text

    def answers(self, slug: str) -> dict[str, str]:
        """The contract's, the gateway's (read model, chain) and the read's answer."""
        c = self.c
        c.caught_up()
        pid = purpose_id(slug)
        contract = PROCESSING_ANSWERS[
            int(c.fn("ConsentLedger").mayProcess(self.customer, pid, 1).call())
        ]
        params = {"customer": self.customer, "purpose": slug, "org": 1}
        checks = {}
        for consistency in ("read_model", "chain"):
            checked = c.client.get(
                "/v1/processing/check",
                params={**params, "consistency": consistency},
                headers=self.agent,
            )
            assert checked.status_code == 200, checked.text
            assert checked.json()["allowed"] == (checked.json()["answer"] == "allowed")
            checks[consistency] = checked.json()["answer"]
        read = c.client.get(f"/v1/customers/{self.customer}?purpose={slug}", headers=self.agent)
        if read.status_code == 200:
            assert read.json()["customer_id"] == self.customer
            read_answer = "allowed"
        else:
            assert read.status_code == 403, read.text
            problem = str(read.json()["type"]).rsplit("/", 1)[-1]
            read_answer = {v: k for k, v in PROBLEMS.items()}.get(problem, problem)
        return {"contract": contract, **checks, "read": read_answer}

    def expect(self, slug: str, answer: str) -> None:
        got = self.answers(slug)
        assert got == dict.fromkeys(("contract", "read_model", "chain", "read"), answer), slug


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def test_the_contract_and_the_gateway_give_the_same_answer_at_every_step(
    consortium: Consortium,
) -> None:
    c = consortium
    walk = Walk(c)
    purposes = c.fn("PurposeRegistry")
    org2 = c.org2_admin

    c.define_purpose("org1.support", "contract")
    walk.expect("org1.support", "allowed")  # own purpose, no consent needed
    walk.expect("never.defined", "unknown_purpose")

    anything = purpose_id("org2.anything")
    basis = LawfulBasis.LEGITIMATE_INTEREST.ordinal
    c.send_as(org2, purposes.definePurpose(anything, keccak(text="org2 notice"), basis))
    c.indexed_purpose("org2.anything")
    walk.expect("org2.anything", "purpose_not_shared")  # another organisation's purpose
    c.send_as(org2, purposes.sharePurpose(anything, 1))
    walk.expect("org2.anything", "allowed")  # shared with organisation 1 by its controller
    c.send_as(org2, purposes.unsharePurpose(anything, 1))
    walk.expect("org2.anything", "purpose_not_shared")  # unshared
    c.send_as(org2, purposes.sharePurpose(anything, 1))
    c.send_as(org2, purposes.retirePurpose(anything))
    walk.expect("org2.anything", "purpose_retired")  # shared, but retired

    c.define_purpose("newsletter", "consent")
    walk.expect("newsletter", "no_live_consent")  # consent basis, no consent
    walk.consent("newsletter")
    walk.expect("newsletter", "allowed")  # a live consent

    c.define_purpose("offers", "consent")
    expiry = max(int(c.w3.eth.get_block("latest")["timestamp"]), int(time.time())) + 6
    walk.consent("offers", expiry=expiry)
    walk.expect("offers", "allowed")
    while time.time() < expiry + 1:
        time.sleep(0.2)
    c.mine_at(int(time.time()))  # the chain's clock and the wall clock both past the expiry
    walk.expect("offers", "no_live_consent")  # expired
