"""No plaintext personal data anywhere but in the caller's response.

A real gateway process (`crm-chaincode serve`, LOG_LEVEL=debug, SQL echo on) on a real Anvil
registers customers with distinctive values, updates, reads, looks up, exports and erases them
(and refuses bad input carrying such values). Then three scans look for every value, in its
typed, normalised and lower-case forms, as UTF-8, as JSON-escaped text and as hex text:

* the chain: every transaction's input and every log's topics and data, in every block (plus
  unkeyed SHA-256 / keccak-256 digests of the e-mail and phone, which a dictionary reverses);
* the database: every value of every row of every table (from `sqlite_master`), and the raw
  database and WAL files (free pages included);
* the gateway's whole log output (uvicorn's access and error logs, its own loggers, SQL echo).

Each scanner proves it can fail: it finds a value planted where it looks (a scratch table, a
transaction carrying the e-mail, the HTTP response that legitimately holds the profile).
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, quote_plus

import httpx
import pytest
from eth_account import Account
from eth_utils.crypto import keccak

from crm_gateway.chain.anvil import AnvilNode
from crm_gateway.chain.connection import Chain, connect
from crm_gateway.config import ChainKind, Settings
from crm_gateway.runtime import deploy, open_keystore
from tests.conftest import free_port, make_settings
from tests.e2e.gateway_process import (
    GatewayProcess,
    api_key,
    define_purpose,
    ok,
    wait_for_purpose,
)

pytestmark = pytest.mark.anvil

ZEBEDIAH = {
    "given_name": "Zebediah",
    "family_name": "Quixote-Wójcikowska",
    "email": "Zebediah.Quixote@Quixotic-Mail.example.com",
    "phone": "020 7946 0461",
    "birth_date": "1931-07-13",
    "postal_address": {
        "lines": ["77 Xylophone Terrace", "Flat Quasar"],
        "city": "Llanfairpwllgwyngyll",
        "region": "Ynys Môn",
        "postcode": "zx9 4qw",
        "country": "GB",
    },
    "custom_attributes": {"loyalty_code": "Marmalade-Zeppelin-8841", "shoe": "Octarine Brogue"},
}
PERPETUA = {
    "given_name": "Perpetua",
    "family_name": "Thistlewaite",
    "email": "perpetua.thistlewaite@Bramblecombe.example.org",
    "phone": "+44 20 7946 0773",
    "birth_date": "1947-03-29",
}
ERASED = {
    "given_name": "Ignatius",
    "family_name": "Fotheringay",
    "email": "Ignatius.Fotheringay@Quillmere.example.net",
    "phone": "+44 20 7946 0829",
}
PATCH = {
    "family_name": "Vanderquack",
    "postal_address": {"lines": ["12 Zanzibar Mews"], "city": "Puddletown", "country": "GB"},
}
REFUSED = {  # never stored: the phone is invalid, so the whole request is refused
    "given_name": "Ottoline",
    "family_name": "Wrexham-Pelly",
    "email": "ottoline.pelly@Gazebo-Post.example.com",
    "phone": "12",
}

# Normalised forms the gateway makes of the values above (also searched for).
NORMALISED = [
    "+442079460461",
    "+442079460773",
    "+442079460829",
    "ZX9 4QW",
    "Zebediah.Quixote@quixotic-mail.example.com",
]


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)
    elif isinstance(value, str):
        yield value


def _distinctive() -> list[str]:
    """Every personal value used (country codes aside), with the parts that identify alone."""
    values = [
        v
        for profile in (ZEBEDIAH, PERPETUA, ERASED, PATCH, REFUSED)
        for v in _strings(profile)
        if len(v) > 2 and v != "12"
    ]
    values += NORMALISED
    values += [v.split("@")[0] for v in values if "@" in v]  # local parts on their own
    values += [v.strip().replace(" ", "") for v in values if v.startswith(("0", "+"))]
    return sorted(set(values))


@dataclass
class Needles:
    """Byte patterns to look for, each labelled with the value it betrays."""

    patterns: dict[bytes, str] = field(default_factory=dict)

    @classmethod
    def of(cls, values: Iterable[str], *, digests: Iterable[str] = ()) -> Needles:
        needles = cls()
        for value in values:
            for form in {value, value.lower(), value.upper()}:
                text_forms = {
                    form,
                    json.dumps(form)[1:-1],  # \u00f3 escapes
                    quote(form, safe=""),  # URL-encoded, as in a query string
                    quote_plus(form),
                }
                for text in text_forms:
                    raw = text.encode("utf-8")
                    needles.add(raw, value)
                    needles.add(raw.hex().encode(), f"{value} (hex)")
        for value in digests:  # unkeyed digests are as good as the value to a dictionary
            for digest in (hashlib.sha256(value.encode()).digest(), keccak(text=value)):
                needles.add(digest, f"digest of {value}")
                needles.add(digest.hex().encode(), f"hex digest of {value}")
        return needles

    def add(self, pattern: bytes, label: str) -> None:
        self.patterns.setdefault(pattern, label)

    def find(self, haystack: bytes) -> set[str]:
        lowered = haystack.lower()
        return {
            label
            for pattern, label in self.patterns.items()
            if pattern in haystack or pattern.lower() in lowered
        }


# --- the three scanners ------------------------------------------------------------------------


def scan_chain(chain: Chain, needles: Needles) -> dict[str, set[str]]:
    """Findings per `block/tx` (input) and `block/tx/log` (topics and data), every block."""
    w3 = chain.w3
    findings: dict[str, set[str]] = {}
    for number in range(w3.eth.block_number + 1):
        block = w3.eth.get_block(number, full_transactions=True)
        for tx in block["transactions"]:
            where = f"block {number} tx {tx['hash'].hex()}"
            if found := needles.find(bytes(tx["input"])):
                findings[where + " input"] = found
            receipt = w3.eth.get_transaction_receipt(tx["hash"])
            for log in receipt["logs"]:
                blob = b"".join(bytes(t) for t in log["topics"]) + bytes(log["data"])
                if found := needles.find(blob):
                    findings[f"{where} log {log['logIndex']}"] = found
    return findings


def _as_bytes(value: Any) -> bytes:
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value)
    return str(value).encode("utf-8")


def scan_sqlite(database: Path, needles: Needles) -> dict[str, set[str]]:
    """Findings per `table.column` over every row of every table, and in the raw files."""
    findings: dict[str, set[str]] = {}
    connection = sqlite3.connect(database)
    try:
        tables = [
            name
            for (name,) in connection.execute("SELECT name FROM sqlite_master WHERE type='table'")
        ]
        assert "customer_records" in tables
        for table in tables:
            cursor = connection.execute(f'SELECT * FROM "{table}"')
            columns = [d[0] for d in cursor.description]
            for row in cursor:
                for column, value in zip(columns, row, strict=True):
                    if value is not None and (found := needles.find(_as_bytes(value))):
                        findings.setdefault(f"{table}.{column}", set()).update(found)
    finally:
        connection.close()
    for suffix in ("", "-wal", "-journal"):
        path = database.with_name(database.name + suffix)
        if path.exists() and (found := needles.find(path.read_bytes())):
            findings[f"file {path.name}"] = found
    return findings


def scan_log(log: Path, needles: Needles) -> set[str]:
    return needles.find(log.read_bytes())


# --- the scenario ------------------------------------------------------------------------------


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return make_settings(
        tmp_path,
        chain_kind=ChainKind.ANVIL,
        anvil_port=free_port(),
        gateway_port=free_port(),
        finality_seconds=0.0,
    )


@pytest.fixture
def node(settings: Settings) -> Iterator[AnvilNode]:
    anvil = AnvilNode(settings)
    anvil.start()
    yield anvil
    anvil.stop()


def _exercise(gateway: GatewayProcess, steward: str) -> tuple[str, httpx.Response]:
    """Every customer operation; the id of the customer kept and one legitimate response."""
    with gateway.client(steward) as client:
        zeb = ok(client.post("/v1/customers?wait=true", json=ZEBEDIAH), 201)["customer_id"]
        ok(client.post("/v1/customers", json=PERPETUA, headers={"Idempotency-Key": "p-1"}), 202)
        again = client.post("/v1/customers", json=PERPETUA, headers={"Idempotency-Key": "p-1"})
        assert again.headers.get("Idempotent-Replayed") == "true", again.text
        gone = ok(client.post("/v1/customers?wait=true", json=ERASED), 201)["customer_id"]

        refused = client.post("/v1/customers", json=REFUSED)
        assert refused.status_code == 422
        assert REFUSED["family_name"] not in refused.text  # input is never echoed
        duplicate = client.post("/v1/customers", json={"email": ZEBEDIAH["email"].upper()})
        assert duplicate.status_code == 409
        assert ok(client.patch(f"/v1/customers/{zeb}?wait=true", json=PATCH))

        read = client.get(f"/v1/customers/{zeb}", params={"purpose": "support"})
        ok(read)
        for query in (
            {"email": ZEBEDIAH["email"]},
            {"email": PERPETUA["email"].lower()},
            {"phone": ZEBEDIAH["phone"]},
            {"phone": "+442079460773"},
        ):
            assert ok(client.get("/v1/customers", params=query))["customer_ids"], query
        assert ok(client.get(f"/v1/customers/{zeb}/verify"))["intact"] is True
        export = ok(client.get(f"/v1/customers/{zeb}/export"))
        assert export["profile"]["family_name"] == PATCH["family_name"]
        ok(client.delete(f"/v1/customers/{gone}?wait=true"))
        assert client.get(f"/v1/customers/{gone}", params={"purpose": "support"}).status_code == 410
        # Let the pipeline settle Perpetua's registration before the gateway stops.
        perpetua = ok(client.get("/v1/customers", params={"email": PERPETUA["email"]}))
        [perpetua_id] = perpetua["customer_ids"]
        assert ok(client.get(f"/v1/customers/{perpetua_id}/verify"))["intact"] is True
    return zeb, read


def test_no_plaintext_personal_data_on_chain_in_the_database_or_in_the_logs(
    settings: Settings, node: AnvilNode, tmp_path: Path
) -> None:
    chain = connect(settings)
    record = deploy(settings, chain, open_keystore(settings)).record
    steward_account = open_keystore(settings).create().address
    chain.dev_fund(steward_account, 10**21)
    admin = api_key(settings, 1, str(record.deployer), "ORG_ADMIN")
    steward = api_key(settings, 1, steward_account, "DATA_STEWARD")
    log = tmp_path / "gateway" / "gateway.log"
    with GatewayProcess(settings, log, LOG_LEVEL="debug", DATABASE_ECHO="true") as gateway:
        gateway.wait_ready()
        with gateway.client(admin) as client:
            ok(
                client.post(
                    "/v1/roles/grants?wait=true",
                    json={"role": "DATA_STEWARD", "account": steward_account},
                )
            )
        define_purpose(gateway, admin, "support", "contract")
        wait_for_purpose(gateway, admin, "support")
        customer_id, response = _exercise(gateway, steward)
    values = _distinctive()
    digests = [
        ZEBEDIAH["email"].lower(),
        PERPETUA["email"].lower(),
        ERASED["email"].lower(),
        "+442079460461",
        "+442079460773",
        "+442079460829",
    ]
    needles = Needles.of(values, digests=digests)

    # The scanners can fail: the legitimate response holds the profile ...
    in_response = needles.find(response.content)
    assert {"Zebediah", "Vanderquack", "1931-07-13", "Marmalade-Zeppelin-8841"} <= in_response
    assert "+442079460461" in in_response

    # ... the log scanner reads the debug output (SQL echo, access log) ...
    log_text = log.read_text(errors="replace")
    assert "INSERT INTO customer_records" in log_text, log_text[-2000:]
    assert "GET /v1/customers?" in log_text
    assert Needles.of([customer_id]).find(log.read_bytes())

    # ... the chain scanner reads inputs and logs (the customer id is in the events' topics),
    # and finds a value planted in a transaction's input.
    id_needles = Needles()
    id_needles.add(bytes.fromhex(customer_id[2:]), "customer id")
    assert any("log" in where for where in scan_chain(chain, id_needles))
    planter = Account.create()
    chain.dev_fund(planter.address, 10**18)
    signed = planter.sign_transaction(
        {
            "to": Account.create().address,
            "data": b"self-check:" + ZEBEDIAH["email"].lower().encode(),
            "value": 0,
            "gas": 100_000,
            "maxFeePerGas": 2 * chain.w3.eth.gas_price + 1,
            "maxPriorityFeePerGas": 1,
            "nonce": 0,
            "chainId": chain.chain_id,
        }
    )
    planted_tx = chain.w3.eth.send_raw_transaction(signed.raw_transaction)
    planted_block = chain.w3.eth.wait_for_transaction_receipt(planted_tx)["blockNumber"]
    on_chain = scan_chain(chain, needles)
    planted_at = f"block {planted_block} tx {planted_tx.hex()} input"
    assert on_chain.pop(planted_at) >= {ZEBEDIAH["email"]}  # the scanner sees a planted value
    # The real assertions, on what the gateway wrote: the chain ...
    assert on_chain == {}, on_chain

    # ... the gateway's log output ...
    assert scan_log(log, needles) == set(), _context(log_text, needles)

    # ... and the database, rows and raw files (free pages included).
    database = Path(settings.database_url.removeprefix("sqlite:///"))
    assert scan_sqlite(database, needles) == {}
    # The database scanner finds values planted in a scratch table (and in the file).
    connection = sqlite3.connect(database)
    with connection:
        connection.execute("CREATE TABLE zz_self_check (note TEXT, blob BLOB)")
        connection.execute(
            "INSERT INTO zz_self_check VALUES (?, ?)",
            ("Octarine Brogue", b"77 xylophone terrace"),
        )
    connection.close()
    planted = scan_sqlite(database, needles)
    assert planted.pop("zz_self_check.note") == {"Octarine Brogue"}
    assert planted.pop("zz_self_check.blob") == {"77 Xylophone Terrace"}
    assert planted
    assert all(found <= {"Octarine Brogue", "77 Xylophone Terrace"} for found in planted.values())


def _context(text: str, needles: Needles) -> str:
    """The log lines that betray a value (for the failure message)."""
    lines = [line for line in text.splitlines() if needles.find(line.encode())]
    return "\n".join(lines[:20])
