"""The measurements of `make bench`, each against its baseline in the same run (see run.py)."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx
from eth_account.signers.local import LocalAccount

from bench import consents, loadgen
from bench.env import Environment, Gateway, environment
from bench.population import Customer

CHECK_CONNECTIONS = 32


@dataclass
class Row:
    """One line of the results table."""

    scenario: str
    measured: str
    value: float
    unit: str
    baseline: str | None = None
    baseline_value: float | None = None
    ratio: float | None = None
    target: str | None = None
    met: bool | None = None  # None: reported, no target
    note: str = ""
    details: dict[str, Any] = field(default_factory=dict)


# --- 1 and 6: HTTP endpoints under autocannon, against the constant endpoint ---------------------


def endpoint_vs_constant(
    gateway: Gateway,
    path: str,
    *,
    headers: dict[str, str],
    seconds: float,
    rounds: int = 2,
    method: str = "GET",
    body: str | None = None,
    id_replacement: bool = False,
) -> tuple[loadgen.Load, loadgen.Load]:
    """The endpoint and `/healthz` loaded alternately (`rounds` times each, same connections and
    duration), so that both see the same machine; the best round of each is kept (the machine
    is shared: the best round is the one least disturbed by others)."""
    ours: list[loadgen.Load] = []
    constant: list[loadgen.Load] = []
    for _ in range(rounds):
        constant.append(
            loadgen.run(
                gateway.url + "/healthz",
                connections=CHECK_CONNECTIONS,
                seconds=seconds,
                warmup_seconds=1,
            )
        )
        ours.append(
            loadgen.run(
                gateway.url + path,
                connections=CHECK_CONNECTIONS,
                seconds=seconds,
                headers=headers,
                method=method,
                body=body,
                id_replacement=id_replacement,
                warmup_seconds=1,
            )
        )
    return max(ours, key=lambda r: r.rps), max(constant, key=lambda r: r.rps)


def check_url(customer: str, purpose: str = consents.MARKETING) -> str:
    return f"/v1/consents/check?customer={customer}&purpose={purpose}&org=1"


# --- 2: relayed consent changes until confirmed ------------------------------------------------


def sign_changes(env: Environment, customers: Sequence[Customer], nonce: int = 0) -> list[Any]:
    ledger = env.address("ConsentLedger")
    return [
        consents.signed_change(c, chain_id=env.chain.chain_id, ledger=ledger, nonce=nonce)
        for c in customers
    ]


def check_applied(env: Environment, customers: Sequence[Customer], nonce: int) -> int:
    """How many of `customers` have a consent nonce of at least `nonce` on-chain."""
    from crm_gateway.chain.calls import call_many

    w3 = env.w3()
    ledger = w3.eth.contract(address=env.address("ConsentLedger"), abi=env.abi("ConsentLedger"))
    nonces = call_many(
        w3, ledger, "nonces", [(bytes.fromhex(c.customer_id[2:]),) for c in customers]
    )
    return sum(1 for (n,) in nonces if int(n) >= nonce)


# --- 3: gas per change --------------------------------------------------------------------------


def gas_per_change(
    gateway: Gateway, relayer_key: str, env: Environment, customers: Sequence[Customer]
) -> dict[str, dict[str, float]]:
    """Gas of one change alone in a transaction and of a batch of len(customers) - 1 changes,
    for first changes (new storage) and later changes (the same customers revoking)."""
    single, batch = customers[0], customers[1:]
    database = env.root / "crm.db"
    out: dict[str, dict[str, float]] = {}
    with gateway.client(relayer_key) as http:
        for label, nonce, granted in (("first change", 0, True), ("later change", 1, False)):
            ledger = env.address("ConsentLedger")
            one = consents.signed_change(
                single, chain_id=env.chain.chain_id, ledger=ledger, nonce=nonce, granted=granted
            )
            many = [
                consents.signed_change(
                    c, chain_id=env.chain.chain_id, ledger=ledger, nonce=nonce, granted=granted
                )
                for c in batch
            ]
            alone = consents.operation_gas(database, consents.post_and_wait(http, one)["id"])
            together = consents.operation_gas(
                database, consents.post_and_wait(http, {"changes": many})["id"]
            )
            n = len(many)
            marginal = (together - alone) / (n - 1)
            out[label] = {
                "single": alone,
                "batch": together,
                "batch_size": n,
                "marginal": marginal,
                "ratio": marginal / alone,
            }
    return out


# --- 5: read-model staleness -------------------------------------------------------------------


def staleness(
    gateway: Gateway, key: str, env: Environment, customers: Sequence[Customer]
) -> list[float]:
    """For each customer, its own wallet's `setConsent` transaction is broadcast through
    `POST /v1/transactions/raw` (Anvil mines it before answering) and `GET /v1/consents/check`
    is polled until the read model shows the consent: the seconds from just before the
    broadcast to the first answer that shows it (so a slight over-estimate)."""
    from web3 import Web3

    w3 = Web3()
    ledger = w3.eth.contract(address=env.address("ConsentLedger"), abi=env.abi("ConsentLedger"))
    for customer in customers:  # the wallets pay for their own transactions
        env.chain.dev_fund(customer.wallet.address, 10**18)
    delays: list[float] = []
    with gateway.client(key) as http:
        for customer in customers:
            raw = _own_consent_transaction(ledger, customer.wallet, customer, env.chain.chain_id)
            started = time.perf_counter()
            sent = http.post("/v1/transactions/raw", json={"raw": raw})
            if sent.status_code != 202:
                raise RuntimeError(
                    f"raw transaction refused: {sent.text[:300]}\n{gateway.tail()[-1500:]}"
                )
            deadline = started + 30
            while True:
                answer = http.get(check_url(customer.customer_id)).json()
                if answer["granted"]:
                    delays.append(time.perf_counter() - started)
                    break
                if time.perf_counter() > deadline:
                    raise RuntimeError("a consent never reached the read model")
                time.sleep(0.002)
    return delays


def _own_consent_transaction(
    ledger: Any, wallet: LocalAccount, customer: Customer, chain_id: int
) -> str:
    change = (
        bytes.fromhex(customer.customer_id[2:]),
        bytes.fromhex(consents.MARKETING_ID[2:]),
        1,  # purposeVersion: the notice the customer was shown (the purpose's first)
        1,  # orgId
        True,
        0,
        0,
        int(time.time()) + 600,  # within the ledger's maxSignatureLifetime
    )
    tx = ledger.functions.setConsent(change).build_transaction(
        {
            "from": wallet.address,
            "nonce": 0,
            "gas": 300_000,
            "chainId": chain_id,
            "maxFeePerGas": 10**11,
            "maxPriorityFeePerGas": 10**9,
        }
    )
    return "0x" + bytes(wallet.sign_transaction(tx).raw_transaction).hex()


def percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return 0.0
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


# --- 4: the CSV import --------------------------------------------------------------------------


@dataclass(frozen=True)
class Imported:
    rows: int
    imported: int
    seconds: float  # the importer's own elapsed time (reading the file to the last batch mined)
    wall_seconds: float  # the whole command, start-up included
    rows_per_second: float
    peak_rss_mb: float
    generated_seconds: float


def customer_import(env: Environment, rows: int, log: Callable[[str], None]) -> Imported:
    """`crm-chaincode import` of a generated Salesforce-style export (5% duplicates, 2% invalid
    rows: tests/importer/csvgen.py) as its own process, the way an operator runs it; its peak
    resident memory is the child's `ru_maxrss` (from `wait4`)."""
    from tests.importer.csvgen import generate

    csv_path = env.root / "import" / "customers.csv"
    csv_path.parent.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    generate(csv_path, rows)
    generated = time.monotonic() - started
    log(f"  generated {rows:,} CSV rows in {generated:.1f} s")
    report_path = csv_path.with_suffix(".report.json")
    command = [
        sys.executable,
        "-m",
        "crm_gateway.cli",
        "import",
        str(csv_path),
        "--report",
        str(report_path),
    ]
    started = time.monotonic()
    process = subprocess.Popen(
        command,
        env=environment(env.settings),
        cwd=csv_path.parent,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    _pid, status, usage = os.wait4(process.pid, 0)
    wall = time.monotonic() - started
    stderr = process.stderr.read().decode(errors="replace") if process.stderr else ""
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise RuntimeError(f"import failed ({process.returncode}): {stderr[-2000:]}")
    report = json.loads(report_path.read_text())
    return Imported(
        rows=int(report["counts"]["rows"]),
        imported=int(report["counts"]["imported"]),
        seconds=float(report["elapsed_seconds"]),
        wall_seconds=wall,
        rows_per_second=float(report["rows_per_second"]),
        peak_rss_mb=usage.ru_maxrss / 1024,  # kilobytes on Linux
        generated_seconds=generated,
    )


# --- helpers ------------------------------------------------------------------------------------


def post_ok(http: httpx.Client, path: str, body: Any, *codes: int) -> dict[str, Any]:
    response = http.post(path, json=body)
    if response.status_code not in (codes or (200, 201)):
        raise RuntimeError(f"POST {path}: {response.status_code} {response.text[:500]}")
    answer: dict[str, Any] = response.json()
    return answer


def mean(values: Sequence[float]) -> float:
    return statistics.fmean(values) if values else 0.0


class Ticker:
    """Prints progress with the time since the start of the run."""

    def __init__(self) -> None:
        self.started = time.monotonic()
        self._lock = threading.Lock()

    def __call__(self, message: str) -> None:
        with self._lock:
            print(f"[{time.monotonic() - self.started:6.1f}s] {message}", flush=True)
