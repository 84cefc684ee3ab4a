"""The fast paths of the chain layer agree with eth-account and web3, value for value.

EIP-712 digests and signer recovery (`chain.eip712`), calldata (`chain.calls.call_data`) and
event decoding (`Contracts.decode_log`) replace eth-account's and web3's generic machinery on the
pipeline's and the relayer's hot paths; each is checked here against the library it replaces.
"""

from __future__ import annotations

import random
import secrets
from typing import Any

import pytest
from eth_abi.abi import encode
from eth_account import Account
from eth_account.messages import encode_typed_data
from eth_utils.abi import event_abi_to_log_topic
from eth_utils.crypto import keccak
from web3 import Web3

from crm_gateway.chain.artifacts import Artifacts
from crm_gateway.chain.calls import call_data
from crm_gateway.chain.contracts import Contracts
from crm_gateway.chain.deployments import DeployedContract, DeploymentRecord
from crm_gateway.chain.eip712 import StructHasher, domain_separator, recover_signer
from crm_gateway.chain.jsonable import to_jsonable
from crm_gateway.config import PROJECT_ROOT

LEDGER = "0x5FbDB2315678afecb367f032d93F642f64180aa3"
SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
CHANGE = [
    ("customerId", "bytes32"),
    ("purposeId", "bytes32"),
    ("purposeVersion", "uint64"),
    ("orgId", "uint64"),
    ("granted", "bool"),
    ("expiresAt", "uint64"),
    ("nonce", "uint256"),
    ("deadline", "uint256"),
]
LINK = [
    ("customerId", "bytes32"),
    ("wallet", "address"),
    ("nonce", "uint256"),
    ("deadline", "uint256"),
]


def _typed(name: str, fields: list[tuple[str, str]], message: dict[str, Any]) -> dict[str, Any]:
    return {
        "types": {
            "EIP712Domain": [
                {"name": "name", "type": "string"},
                {"name": "version", "type": "string"},
                {"name": "chainId", "type": "uint256"},
                {"name": "verifyingContract", "type": "address"},
            ],
            name: [{"name": n, "type": t} for n, t in fields],
        },
        "primaryType": name,
        "domain": {"name": "Ledger", "version": "1", "chainId": 31337, "verifyingContract": LEDGER},
        "message": message,
    }


def _eth_account_digest(typed: dict[str, Any]) -> bytes:
    encoded = encode_typed_data(full_message=typed)
    return keccak(b"\x19" + encoded.version + encoded.header + encoded.body)


@pytest.mark.parametrize("seed", range(20))
def test_digests_and_signers_match_eth_account(seed: int) -> None:
    rng = random.Random(seed)
    wallet = Account.create()
    domain = domain_separator("Ledger", "1", 31337, LEDGER)
    change = {
        "customerId": "0x" + rng.randbytes(32).hex(),
        "purposeId": "0x" + rng.randbytes(32).hex(),
        "purposeVersion": rng.randrange(2**64),
        "orgId": rng.randrange(2**64),
        "granted": bool(seed % 2),
        "expiresAt": rng.randrange(2**64),
        "nonce": rng.randrange(2**256),
        "deadline": rng.randrange(2**256),
    }
    link = {
        "customerId": "0x" + rng.randbytes(32).hex(),
        "wallet": Account.create().address,
        "nonce": rng.randrange(2**256),
        "deadline": rng.randrange(2**256),
    }
    for name, fields, message in (("ConsentChange", CHANGE, change), ("LinkWallet", LINK, link)):
        typed = _typed(name, fields, message)
        digest = StructHasher(name, fields, domain).digest(message)
        assert digest == _eth_account_digest(typed)
        signature = Account.sign_typed_data(wallet.key, full_message=typed).signature
        assert recover_signer(digest, signature.to_0x_hex()) == wallet.address
        assert recover_signer(digest, bytes(signature)) == wallet.address


def test_signatures_the_contract_refuses_recover_no_one() -> None:
    wallet = Account.create()
    digest = secrets.token_bytes(32)
    signature = bytes(Account.unsafe_sign_hash(digest, wallet.key).signature)
    r, s, v = signature[:32], int.from_bytes(signature[32:64], "big"), signature[64]
    assert recover_signer(digest, signature) == wallet.address
    # The same signature with the high s (malleable): valid ECDSA, refused by OpenZeppelin.
    high = r + (SECP256K1_N - s).to_bytes(32, "big") + bytes([55 - v])
    assert Account._recover_hash(digest, signature=high) == wallet.address
    assert recover_signer(digest, high) is None
    assert recover_signer(digest, signature[:64] + bytes([v - 27])) is None  # v of 0 or 1
    assert recover_signer(digest, signature[:64]) is None  # 64 bytes
    assert recover_signer(digest, bytes(32) + signature[32:]) is None  # r = 0
    assert recover_signer(digest, "0x" + "11" * 65) is None
    assert recover_signer(secrets.token_bytes(32), signature) != wallet.address


def test_only_static_struct_fields_are_taken() -> None:
    with pytest.raises(ValueError, match="static"):
        StructHasher("Note", [("text", "string")], bytes(32))


def _contract(name: str) -> Any:
    abi = Artifacts(PROJECT_ROOT / "abi")[name].abi
    return Web3().eth.contract(address=Web3.to_checksum_address(LEDGER), abi=abi)


def test_calldata_matches_web3() -> None:
    ledger, registry = _contract("ConsentLedger"), _contract("CustomerRegistry")
    changes = [
        ["0x" + secrets.token_hex(32), "0x" + secrets.token_hex(32), 1, 7, True, 0, n, 2**40]
        for n in range(5)
    ]
    signatures = ["0x" + secrets.token_hex(65) for _ in changes]
    ids = ["0x" + secrets.token_hex(32) for _ in range(3)]
    wallet = Account.create().address
    for call, args in (
        (ledger.functions.setConsentsBySig, [changes, signatures]),
        (ledger.functions.setConsentBySig, [changes[0], signatures[0]]),
        (registry.functions.registerBatch, [ids, ids]),
        (registry.functions.linkWallet, [ids[0], wallet, 2**40, signatures[0]]),
    ):
        bound = call(*args)
        assert call_data(bound.abi, args) == bound._encode_transaction_data()
    bound = registry.functions.registerBatch(ids, ids)
    with pytest.raises((ValueError, TypeError)):
        call_data(bound.abi, [ids, ["not hex"]])
    with pytest.raises((ValueError, TypeError)):
        call_data(bound.abi, [ids])


def _random_value(kind: str, rng: random.Random) -> Any:
    if kind == "address":
        return Web3.to_checksum_address("0x" + rng.randbytes(20).hex())
    if kind == "bool":
        return rng.random() < 0.5
    if kind.startswith("uint"):
        return rng.randrange(2 ** int(kind[4:] or 256))
    if kind.startswith("int"):
        bits = int(kind[3:] or 256)
        return rng.randrange(-(2 ** (bits - 1)), 2 ** (bits - 1))
    if kind == "bytes":
        return rng.randbytes(rng.randrange(0, 80))
    if kind == "string":
        return "".join(rng.choice("abcé€ ") for _ in range(rng.randrange(0, 40)))
    if kind.startswith("bytes"):
        return rng.randbytes(int(kind[5:]))
    raise AssertionError(f"no generator for {kind}")


def test_every_event_of_every_contract_decodes_as_web3_decodes_it() -> None:
    artifacts = Artifacts(PROJECT_ROOT / "abi")
    names = artifacts.names()
    record = DeploymentRecord(
        chain_id=31337,
        contracts={
            name: DeployedContract(
                address=Web3.to_checksum_address("0x" + keccak(text=name)[:20].hex()),
                tx_hash="0x" + "00" * 32,
                block_number=1,
                artifact_hash="",
                migration="",
            )
            for name in names
        },
    )

    class _Chain:
        w3 = Web3()
        chain_id = 31337

    contracts = Contracts(_Chain(), artifacts, record)  # type: ignore[arg-type]
    rng = random.Random(5)
    checked = 0
    for name in names:
        contract = contracts[name]
        for item in artifacts[name].abi:
            if item.get("type") != "event" or item.get("anonymous"):
                continue
            for _ in range(3):
                values = {i["name"]: _random_value(i["type"], rng) for i in item["inputs"]}
                topics = [event_abi_to_log_topic(item)] + [
                    encode([i["type"]], [values[i["name"]]]) for i in item["inputs"] if i["indexed"]
                ]
                data = encode(
                    [i["type"] for i in item["inputs"] if not i["indexed"]],
                    [values[i["name"]] for i in item["inputs"] if not i["indexed"]],
                )
                log = {
                    "address": contract.address,
                    "topics": [Web3.to_bytes(t) for t in topics],
                    "data": data,
                    "blockNumber": 1,
                    "blockHash": bytes(32),
                    "transactionHash": bytes(32),
                    "transactionIndex": 0,
                    "logIndex": 0,
                    "removed": False,
                }
                by_web3 = contract.events[item["name"]]().process_log(log)
                expected = {"contract": name, "event": item["name"]}
                expected["args"] = to_jsonable(dict(by_web3["args"]))
                assert contracts.decode_log(log) == expected
                raw = {**log, "topics": ["0x" + t.hex() for t in topics], "data": "0x" + data.hex()}
                assert contracts.decode_log(raw) == expected
                checked += 1
    assert checked > 60
    unknown = {"address": LEDGER, "topics": [bytes(32)], "data": b""}
    assert contracts.decode_log(unknown) is None
