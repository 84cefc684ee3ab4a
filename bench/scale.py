"""Scenarios of the gateway under an offered rate and on PostgreSQL (the hot-path issue's targets).

* The consent check at an offered 1,000 requests/s: autocannon paces the whole run at that rate
  (`--overallRate`), so the latency is the check's own plus whatever queueing the gateway adds at
  that load, not the 32-connection saturation of the closed-loop run.
* Reading a customer on PostgreSQL: the same read as on SQLite, by a second gateway process of the
  same organisation whose store is a fresh PostgreSQL schema (`BENCH_POSTGRES_URL`, default the
  machine's `postgresql+psycopg://postgres@127.0.0.1:5432/test`); its indexer builds the read model
  from the same chain.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
from sqlalchemy import create_engine, make_url, text

from bench import consents, loadgen
from bench.env import Environment, Gateway, free_port
from bench.scenarios import CHECK_CONNECTIONS, Row, Ticker, endpoint_vs_constant
from crm_gateway.security.apikeys import create_api_key
from crm_gateway.store.db import make_engine, make_session_factory, upgrade_database

#: The offered rate of the open-loop consent check, and its latency target.
OFFERED_CHECKS_PER_SECOND = 1_000
CHECK_P99_TARGET_MS = 10.0
#: The customer read's targets: a share of the constant endpoint and a p99 at 32 connections.
READ_RATIO_TARGET = 0.15
READ_P99_TARGET_MS = 100.0
POSTGRES_URL = os.environ.get(
    "BENCH_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)


def open_loop_check(gateway: Gateway, path: str, headers: dict[str, str], seconds: float) -> Row:
    """The consent check at `OFFERED_CHECKS_PER_SECOND`, its p99 against the target."""
    paced = loadgen.run(
        gateway.url + path,
        connections=CHECK_CONNECTIONS,
        seconds=seconds,
        headers=headers,
        rate=OFFERED_CHECKS_PER_SECOND,
        warmup_seconds=1,
    )
    if paced.non_2xx or paced.errors:
        raise RuntimeError(f"consent checks failed at an offered rate: {paced}")
    return Row(
        "consent check, offered 1,000/s",
        "latency p99",
        paced.p99_ms,
        "ms",
        target=f"≤ {CHECK_P99_TARGET_MS:g} ms",
        met=paced.p99_ms <= CHECK_P99_TARGET_MS,
        note=f"{paced.requests:,} checks in {paced.seconds:g} s ({paced.rps:,.0f}/s achieved of "
        f"{OFFERED_CHECKS_PER_SECOND:,} offered over {CHECK_CONNECTIONS} connections); "
        f"p50 {paced.p50_ms} ms, p90 {paced.p90_ms} ms, max {paced.max_ms} ms",
        details={"load": paced.as_json()},
    )


def customer_read_row(store: str, ours: loadgen.Load, constant: loadgen.Load) -> Row:
    """The customer read against `/healthz`, with both of its targets."""
    ratio = ours.rps / constant.rps
    return Row(
        "customer read, 32 connections",
        f"{store}: requests/s (p99)",
        ours.rps,
        "req/s",
        baseline="GET /healthz",
        baseline_value=constant.rps,
        ratio=ratio,
        target=f"≥ {READ_RATIO_TARGET:g}x and p99 ≤ {READ_P99_TARGET_MS:g} ms",
        met=ratio >= READ_RATIO_TARGET and ours.p99_ms <= READ_P99_TARGET_MS,
        note=f"{store}: GET /v1/customers/{{id}}?purpose=support by a DATA_STEWARD key, p50 "
        f"{ours.p50_ms} ms, p99 {ours.p99_ms} ms (healthz p99 {constant.p99_ms} ms); "
        f"non-2xx answers: {ours.non_2xx}",
        details={"endpoint": ours.as_json(), "healthz": constant.as_json()},
    )


@contextmanager
def postgres_schema() -> Iterator[str]:
    """A URL whose connections live in a fresh PostgreSQL schema, dropped afterwards."""
    schema = f"crm_bench_{uuid.uuid4().hex[:10]}"
    admin = create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE SCHEMA "{schema}"'))
    url = make_url(POSTGRES_URL).update_query_dict({"options": f"-csearch_path={schema}"})
    try:
        yield url.render_as_string(hide_password=False)
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


def customer_read_on_postgres(env: Environment, seconds: float, tick: Ticker) -> Row:
    """A second gateway of the organisation on a fresh PostgreSQL schema: create, then read."""
    with postgres_schema() as url:
        settings = env.settings.model_copy(
            update={"database_url": url, "gateway_port": free_port()}
        )
        upgrade_database(url)
        engine = make_engine(url)
        try:
            with make_session_factory(engine)() as session:
                _key, steward_key = create_api_key(
                    session, org_id=1, account=env.deployer, role="DATA_STEWARD"
                )
                session.commit()
        finally:
            engine.dispose()
        gateway = Gateway(settings, env.root / "gateway-postgres" / "gateway.log")
        gateway.start()
        try:
            with gateway.client(steward_key) as http:
                created = _create_once_indexed(http)
            ours, constant = endpoint_vs_constant(
                gateway,
                f"/v1/customers/{created['customer_id']}?purpose=support",
                headers={"X-API-Key": steward_key},
                seconds=seconds,
                rounds=1,
            )
        finally:
            gateway.stop()
    if ours.non_2xx or ours.errors:
        raise RuntimeError(f"customer reads on PostgreSQL failed: {ours}")
    tick(f"  read on PostgreSQL: {ours.rps:,.0f} req/s, p99 {ours.p99_ms} ms")
    return customer_read_row("PostgreSQL", ours, constant)


def _create_once_indexed(http: httpx.Client, timeout: float = 120) -> dict[str, Any]:
    """Create the customer to read, once the new store's read model knows the steward's role
    (its indexer reads the chain from the first deployment block; until then: 403)."""
    deadline = time.monotonic() + timeout
    body = {"email": "bench.postgres@example.com", "given_name": "Bench"}
    while True:
        response = http.post("/v1/customers?wait=true", json=body)
        if response.status_code == 201:
            answer: dict[str, Any] = response.json()
            return answer
        if response.status_code != 403 or time.monotonic() > deadline:
            raise RuntimeError(f"POST /v1/customers: {response.status_code} {response.text[:500]}")
        time.sleep(0.5)


# --- scale-out: API workers and gateway replicas of one organisation ------------------------------

#: API processes of the worker run, and its target against one.
CHECK_WORKERS = 2
WORKERS_RATIO_TARGET = 1.6
#: Gateway replicas of the relay run (one database, one chain), and its target against one.
RELAY_REPLICAS = 3


def _another(env: Environment, name: str, *, workers: int = 1) -> Gateway:
    """A gateway of the same organisation (same database, keystore and chain) on its own port."""
    settings = env.settings.model_copy(update={"gateway_port": free_port()})
    return Gateway(settings, env.root / name / "gateway.log", workers=workers)


def check_with_workers(
    env: Environment, path: str, headers: dict[str, str], seconds: float, one: loadgen.Load
) -> Row:
    """The consent check against `serve --workers CHECK_WORKERS`, next to one worker's `one`."""
    gateway = _another(env, "gateway-workers", workers=CHECK_WORKERS)
    gateway.start()
    try:
        many = loadgen.run(
            gateway.url + path,
            connections=CHECK_CONNECTIONS,
            seconds=seconds,
            headers=headers,
            warmup_seconds=1,
        )
    finally:
        gateway.stop()
    if many.non_2xx or many.errors:
        raise RuntimeError(f"consent checks failed with {CHECK_WORKERS} workers: {many}")
    ratio = many.rps / one.rps
    return Row(
        "consent check, 32 connections",
        f"requests/s with {CHECK_WORKERS} API workers",
        many.rps,
        "req/s",
        baseline="one worker (the run above)",
        baseline_value=one.rps,
        ratio=ratio,
        target=f"≥ {WORKERS_RATIO_TARGET:g}x one worker",
        met=ratio >= WORKERS_RATIO_TARGET,
        note=f"`crm-chaincode serve --workers {CHECK_WORKERS}` on the same database: p50 "
        f"{many.p50_ms} ms, p99 {many.p99_ms} ms; one worker p99 {one.p99_ms} ms. autocannon "
        "itself runs on the same two cores.",
        details={"load": many.as_json()},
    )


def relay_with_replicas(
    env: Environment,
    relayer_key: str,
    changes: list[dict[str, object]],
    one: consents.Relayed,
    *,
    per_request: int,
    clients: int,
    tick: Ticker,
) -> Row:
    """The same relay as `one` through `RELAY_REPLICAS` gateway processes at once."""
    gateways = [_another(env, f"replica-{n}") for n in range(RELAY_REPLICAS)]
    for gateway in gateways:
        gateway.start()
    try:
        relayed = consents.relay(
            [g.url for g in gateways],
            relayer_key,
            changes,
            per_request=per_request,
            clients=clients,
            database=env.root / "crm.db",
        )
    finally:
        for gateway in gateways:
            gateway.stop()
    tick(f"  {RELAY_REPLICAS} replicas: {relayed.changes_per_second:,.0f} changes/s")
    ratio = relayed.changes_per_second / one.changes_per_second
    return Row(
        "consent changes until confirmed",
        f"changes/s through {RELAY_REPLICAS} gateway replicas",
        relayed.changes_per_second,
        "/s",
        baseline="one gateway (the run above)",
        baseline_value=one.changes_per_second,
        ratio=ratio,
        target="no fewer than one gateway",
        met=ratio >= 1.0 and relayed.failed == 0,
        note=f"{relayed.changes:,} changes, {per_request} a request from {clients} clients spread "
        f"over {RELAY_REPLICAS} processes on one database (claims and signer leases decide who "
        f"sends): {relayed.confirmed:,} confirmed, {relayed.failed} failed, in "
        f"{relayed.transactions} transactions, {relayed.seconds:.1f} s",
        details={"relay": relayed.as_json()},
    )
