"""Signed consent changes as wallets make them, and the relaying of many of them through the API.

A change is signed with eth-account's `sign_typed_data` over exactly the typed data that
`GET /v1/consents/typed-data` hands out (what `eth_signTypedData_v4` signs in a wallet), and
relayed with `POST /v1/consents` by a RELAYER key: one change per request, or `{"changes": [...]}`.
"""

from __future__ import annotations

import queue
import sqlite3
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from eth_account import Account
from eth_utils.crypto import keccak

from bench.population import Customer
from crm_gateway.chain.eip712 import consent_change_typed_data

MARKETING = "marketing.email"
MARKETING_ID = "0x" + keccak(text=MARKETING).hex()


def signed_change(
    customer: Customer,
    *,
    chain_id: int,
    ledger: str,
    nonce: int,
    granted: bool = True,
    purpose_id: str = MARKETING_ID,
    purpose_version: int = 1,
    org_id: int = 1,
) -> dict[str, Any]:
    """The body of `POST /v1/consents` for one change, signed by the customer's wallet."""
    message = {
        "customerId": customer.customer_id,
        "purposeId": purpose_id,
        "purposeVersion": purpose_version,
        "orgId": org_id,
        "granted": granted,
        "expiresAt": 0,
        "nonce": nonce,
        "deadline": int(time.time()) + 1800,  # within the ledger's maxSignatureLifetime
    }
    typed = consent_change_typed_data(chain_id, ledger, message)
    signature = Account.sign_typed_data(customer.wallet.key, full_message=typed).signature
    return {
        "customer_id": customer.customer_id,
        "purpose_id": purpose_id,
        "purpose_version": purpose_version,
        "org_id": org_id,
        "granted": granted,
        "expires_at": 0,
        "nonce": nonce,
        "deadline": message["deadline"],
        "signature": signature.to_0x_hex(),
    }


@dataclass(frozen=True)
class Relayed:
    changes: int
    requests: int
    operations: int
    clients: int
    seconds: float  # from the first request sent to the last operation confirmed
    submit_seconds: float  # from the first request sent to the last one answered
    confirmed: int
    failed: int
    transactions: int

    @property
    def changes_per_second(self) -> float:
        return self.changes / self.seconds if self.seconds > 0 else 0.0

    def as_json(self) -> dict[str, Any]:
        return {**self.__dict__, "changes_per_second": round(self.changes_per_second, 1)}


def relay(
    url: str | Sequence[str],
    api_key: str,
    changes: Sequence[dict[str, Any]],
    *,
    per_request: int,
    clients: int,
    database: Path,
    timeout: float = 300,
) -> Relayed:
    """Send `changes` (`per_request` a request, from `clients` concurrent clients, spread over
    the gateways at `url` when there are several) without
    waiting, then wait until every operation is settled; time from first send to last confirmed
    (the watcher's `updated_at` of the last operation)."""
    bodies: queue.Queue[dict[str, Any]] = queue.Queue()
    for start in range(0, len(changes), per_request):
        chunk = list(changes[start : start + per_request])
        bodies.put(chunk[0] if per_request == 1 else {"changes": chunk})
    requests = bodies.qsize()
    ids: list[str] = []
    errors: list[str] = []
    lock = threading.Lock()

    urls = [url] if isinstance(url, str) else list(url)

    def client(index: int) -> None:
        base = urls[index % len(urls)]  # clients spread over the gateways (replicas)
        with httpx.Client(base_url=base, headers={"X-API-Key": api_key}, timeout=120) as http:
            while True:
                try:
                    body = bodies.get_nowait()
                except queue.Empty:
                    return
                response = http.post("/v1/consents", json=body)
                with lock:
                    if response.status_code == 202:
                        ids.append(response.json()["id"])
                    else:
                        errors.append(f"{response.status_code} {response.text[:300]}")

    started = time.time()
    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    submitted = time.time()
    if errors:
        raise RuntimeError(f"{len(errors)} relays refused, first: {errors[0]}")
    statuses = _wait_settled(database, ids, timeout)
    last = max(updated for _status, updated, _tx in statuses)
    return Relayed(
        changes=len(changes),
        requests=requests,
        operations=len(ids),
        clients=clients,
        seconds=last - started,
        submit_seconds=submitted - started,
        confirmed=sum(1 for status, _u, _tx in statuses if status == "confirmed"),
        failed=sum(1 for status, _u, _tx in statuses if status == "failed"),
        transactions=len({tx for _s, _u, tx in statuses}),
    )


def _wait_settled(
    database: Path, ids: Sequence[str], timeout: float
) -> list[tuple[str, float, int | None]]:
    """(status, updated_at as a Unix time, chain transaction id) of each operation, once all
    are confirmed or failed. Read from the gateway's database (read-only), not through the API,
    so that polling takes nothing from the gateway being measured."""
    deadline = time.monotonic() + timeout
    connection = sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=30)
    try:
        while True:
            rows: list[tuple[str, str, int | None]] = []
            for start in range(0, len(ids), 500):
                chunk = ids[start : start + 500]
                marks = ",".join("?" * len(chunk))  # placeholders only: the ids are parameters
                rows += connection.execute(
                    f"SELECT status, updated_at, chain_tx_id FROM operations WHERE id IN ({marks})",  # noqa: S608
                    chunk,
                ).fetchall()
            if len(rows) == len(ids) and all(s in ("confirmed", "failed") for s, _u, _t in rows):
                return [(s, _unix(u), t) for s, u, t in rows]
            if time.monotonic() > deadline:
                done = sum(1 for s, _u, _t in rows if s in ("confirmed", "failed"))
                raise RuntimeError(f"only {done} of {len(ids)} operations settled in {timeout} s")
            time.sleep(0.05)
    finally:
        connection.close()


def _unix(stored: str) -> float:
    """A naive UTC timestamp as SQLite stores it, as a Unix time."""
    return datetime.fromisoformat(stored).replace(tzinfo=UTC).timestamp()


def operation_gas(database: Path, operation_id: str) -> int:
    connection = sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=30)
    try:
        row = connection.execute(
            "SELECT t.gas_used FROM operations o JOIN chain_transactions t ON t.id = o.chain_tx_id"
            " WHERE o.id = ?",
            (operation_id,),
        ).fetchone()
    finally:
        connection.close()
    if row is None or row[0] is None:
        raise RuntimeError(f"operation {operation_id} has no receipt")
    return int(row[0])


def post_and_wait(http: httpx.Client, body: dict[str, Any]) -> dict[str, Any]:
    response = http.post("/v1/consents?wait=true", json=body)
    if response.status_code != 200:
        raise RuntimeError(f"relay failed: {response.status_code} {response.text[:500]}")
    answer: dict[str, Any] = response.json()
    return answer
