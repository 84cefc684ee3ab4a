"""`make bench`: the gateway's performance, each figure against a baseline measured in the same run.

Starts everything itself in a temporary folder: a fresh Anvil, the contracts, and the gateway as
its own process in its production configuration (`crm-chaincode serve`: uvicorn with uvloop and
httptools, log level warning, one worker, since the pipeline and the indexer are threads of that
process). Load comes from autocannon, a separate process on loopback. Writes
`bench/results/<timestamp>.json`, updates the table in BENCHMARKS.md, and prints it.

    .venv/bin/python -m bench.run [--import-rows N] [--quick]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from eth_account import Account
from eth_utils.crypto import keccak

from bench import consents, loadgen, profile, report, scale
from bench.env import Environment
from bench.population import Populator
from bench.scenarios import (
    CHECK_CONNECTIONS,
    Imported,
    Row,
    Ticker,
    check_applied,
    check_url,
    customer_import,
    endpoint_vs_constant,
    gas_per_change,
    percentile,
    post_ok,
    sign_changes,
    staleness,
)
from crm_gateway.chain.membership import join_organization_typed_data, sign_join
from crm_gateway.config import PROJECT_ROOT

GAS_BATCH = 100
STALENESS_WRITES = 50
RELAY_PER_REQUEST = 100
RELAY_CLIENTS = 4
SINGLE_CLIENTS = 16


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--import-rows",
        type=int,
        default=100_000,
        help="rows of the CSV import (default: the issue's 100,000)",
    )
    parser.add_argument("--relay-changes", type=int, default=5_000)
    parser.add_argument("--single-changes", type=int, default=1_000)
    parser.add_argument("--baseline-changes", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=5.0, help="length of each HTTP load")
    parser.add_argument("--quick", action="store_true", help="small sizes: a smoke run")
    args = parser.parse_args(argv)
    if args.quick:
        args.import_rows, args.relay_changes = 2_000, 1_000
        args.single_changes, args.baseline_changes, args.seconds = 200, 50, 2.0
    tick = Ticker()
    started = time.monotonic()
    info = report.machine()
    tick(f"{info['cores']} cores, load average {info['load_average_at_start']}")
    with tempfile.TemporaryDirectory(prefix="crm-bench-") as tmp:
        env = Environment(Path(tmp))
        tick("starting Anvil and deploying the contracts")
        env.start()
        try:
            rows, details, profiled = run_all(env, args, tick)
        finally:
            env.stop()
    runtime = time.monotonic() - started
    path, markdown = report.write(rows, info, profiled, runtime, details)
    print()
    print(markdown)
    print(f"results in {path.relative_to(PROJECT_ROOT)}; BENCHMARKS.md updated")
    return 0


def _join(env: Environment, key: Any, role: str) -> dict[str, Any]:
    """A grant body carrying `key`'s own JoinOrganization signature (organisation 1, nonce 0)."""
    deadline = int(time.time()) + 3600
    typed = join_organization_typed_data(
        chain_id=int(env.chain.w3.eth.chain_id),
        consortium=env.record.contracts["Consortium"].address,
        account=key.address,
        org_id=1,
        role=keccak(text=role),
        nonce=0,
        deadline=deadline,
    )
    signature = sign_join(key, typed)
    return {"role": role, "account": key.address, "deadline": deadline, "signature": signature}


def run_all(
    env: Environment, args: argparse.Namespace, tick: Ticker
) -> tuple[list[Row], dict[str, Any], dict[str, Any] | None]:
    rows: list[Row] = []
    details: dict[str, Any] = {"sizes": vars(args)}
    steward = Account.create()
    env.chain.dev_fund(steward.address, 10**24)
    relayer_key, steward_key = env.keys["relayer"], env.keys["steward"]
    database = env.root / "crm.db"
    profiled: dict[str, Any] | None = None

    with env.serving("gateway") as gateway:
        tick(f"gateway up at {gateway.url} (pid {gateway.pid})")
        with gateway.client(env.keys["admin"]) as admin:
            for role, account in (
                ("RELAYER", env.relayer.address),
                ("DATA_STEWARD", env.deployer),
            ):
                post_ok(admin, "/v1/roles/grants?wait=true", {"role": role, "account": account})
            # The bench's own steward (not in the gateway's keystore) signs its join itself.
            post_ok(admin, "/v1/roles/grants?wait=true", _join(env, steward, "DATA_STEWARD"))
            for slug, basis in ((consents.MARKETING, "consent"), ("support", "contract")):
                post_ok(
                    admin,
                    "/v1/purposes?wait=true",
                    {"purpose": slug, "lawful_basis": basis, "notice_text": f"Why: {slug}."},
                )
        sizes = [
            GAS_BATCH + 2,
            STALENESS_WRITES,
            args.relay_changes,
            args.single_changes,
            args.baseline_changes,
        ]
        tick(f"set-up: {sum(sizes):,} customers with linked wallets, straight on the chain")
        w3 = env.w3()
        registry = w3.eth.contract(
            address=env.address("CustomerRegistry"), abi=env.abi("CustomerRegistry")
        )
        people = Populator(w3, steward, registry, env.chain.chain_id).customers_with_wallets(
            sum(sizes)
        )
        groups = []
        for size in sizes:
            groups.append(people[:size])
            people = people[size:]
        gas_people, stale_people, relay_people, single_people, baseline_people = groups
        tick("set-up: every wallet signs its consent change (eth-account sign_typed_data)")
        relay_changes = sign_changes(env, relay_people)
        single_changes = sign_changes(env, single_people)
        baseline_changes = sign_changes(env, baseline_people)

        # 3. Gas per change: one alone, then a batch of a hundred (first and later changes).
        tick("gas: one change alone and a batch of 100, first and later changes")
        gas = gas_per_change(gateway, relayer_key, env, gas_people[: GAS_BATCH + 1])
        details["gas"] = gas
        for label, g in gas.items():
            rows.append(
                Row(
                    "gas per consent change",
                    f"marginal gas in a batch of {int(g['batch_size'])}, {label}",
                    g["marginal"],
                    "gas",
                    baseline="one change alone",
                    baseline_value=g["single"],
                    ratio=g["ratio"],
                    target="≤ 0.5x single",
                    met=g["ratio"] <= 0.5,
                    note=f"{label}: (batch {g['batch']:,.0f} - single {g['single']:,.0f}) / "
                    f"{int(g['batch_size']) - 1}, from the receipts",
                )
            )

        # 1. Consent check against the constant endpoint.
        # A customer who consents: the check walks the whole decision (consent, purpose,
        # version, expiry) and answers granted.
        checked = gas_people.pop()
        with gateway.client(relayer_key) as http:
            consents.post_and_wait(http, sign_changes(env, [checked])[0])
        customer = checked.customer_id
        tick(f"consent check vs /healthz, {CHECK_CONNECTIONS} connections, 2 rounds each")
        headers = {"X-API-Key": relayer_key}
        check, constant = endpoint_vs_constant(
            gateway, check_url(customer), headers=headers, seconds=args.seconds
        )
        tick(f"  check {check.rps:,.0f} req/s p99 {check.p99_ms} ms; healthz {constant.rps:,.0f}")
        if check.non_2xx or check.errors:
            raise RuntimeError(f"consent checks failed: {check}")
        # Without queueing: one connection, each check sent when the previous one is answered.
        paced = loadgen.run(
            gateway.url + check_url(customer),
            connections=1,
            seconds=args.seconds,
            headers=headers,
        )
        tick(f"  one connection: p50 {paced.p50_ms} ms, p99 {paced.p99_ms} ms")
        tick(f"consent check at an offered {scale.OFFERED_CHECKS_PER_SECOND:,}/s")
        offered = scale.open_loop_check(gateway, check_url(customer), headers, args.seconds)
        tick(f"  p99 {offered.value} ms")
        rows.append(offered)
        details["consent_check"] = {
            "check": check.as_json(),
            "healthz": constant.as_json(),
            "one_connection": paced.as_json(),
        }
        ratio = check.rps / constant.rps
        rows += [
            Row(
                "consent check, 32 connections",
                "requests/s",
                check.rps,
                "req/s",
                baseline="GET /healthz (constant)",
                baseline_value=constant.rps,
                ratio=ratio,
                target="≥ 0.5x baseline",
                met=ratio >= 0.5,
            ),
            Row(
                "consent check, 32 connections",
                "latency p99 (p50)",
                check.p99_ms,
                "ms",
                baseline="GET /healthz p99",
                baseline_value=constant.p99_ms,
                target="≤ 10 ms",
                met=check.p99_ms <= 10,
                note=f"p50 {check.p50_ms} ms (healthz {constant.p50_ms} ms). Closed loop at "
                "saturation: 32 connections each waiting for its answer, so the mean latency is "
                "32 / throughput. One connection alone (no queueing): p50 "
                f"{_ms(paced.p50_ms)}, p99 {_ms(paced.p99_ms)}, {paced.rps:,.0f} req/s.",
            ),
        ]
        out = env.root / "profile.txt"
        if profile.available():
            tick("profiling the consent check under the same load (py-spy)")
            sampler = profile.start(gateway.pid, args.seconds + 3, out)
            time.sleep(1)
            loadgen.run(
                gateway.url + check_url(customer),
                connections=CHECK_CONNECTIONS,
                seconds=args.seconds,
                headers=headers,
            )
            profiled = profile.finish(sampler, out, top=15).as_json()
            profiled["raw_file"] = None

        # 2. Relayed changes until confirmed, with batching.
        tick(
            f"relay: {len(relay_changes):,} signed changes, {RELAY_PER_REQUEST} a request, "
            f"{RELAY_CLIENTS} clients"
        )
        bodies = consents.relay(
            gateway.url,
            relayer_key,
            relay_changes,
            per_request=RELAY_PER_REQUEST,
            clients=RELAY_CLIENTS,
            database=database,
        )
        tick(f"  {bodies.changes_per_second:,.0f} changes/s; checking them on the chain")
        applied = check_applied(env, relay_people, 1)
        tick(
            f"relay: {len(single_changes):,} changes one a request, {SINGLE_CLIENTS} clients "
            "(the pipeline batches them)"
        )
        singles = consents.relay(
            gateway.url,
            relayer_key,
            single_changes,
            per_request=1,
            clients=SINGLE_CLIENTS,
            database=database,
        )
        tick(f"  {singles.changes_per_second:,.0f} changes/s")
        applied += check_applied(env, single_people, 1)
        details["relay"] = {"bodies": bodies.as_json(), "single": singles.as_json()}
        details["relay"]["applied_on_chain"] = applied

        # 5. Read-model staleness.
        tick(f"staleness: {STALENESS_WRITES} writes, polling the read model")
        delays = staleness(gateway, relayer_key, env, stale_people)
        p50, p99 = percentile(delays, 0.5), percentile(delays, 0.99)
        details["staleness_seconds"] = delays
        rows.append(
            Row(
                "read-model staleness",
                "block to readable, p99",
                p99 * 1000,
                "ms",
                target="≤ 1,000 ms",
                met=p99 <= 1.0,
                note=f"{len(delays)} consent transactions broadcast through the gateway, "
                f"`GET /v1/consents/check` polled until it shows each: p50 {p50 * 1000:.0f} ms, "
                f"max {max(delays) * 1000:.0f} ms (indexer polling every "
                f"{env.settings.indexer_poll_seconds:g} s)",
            )
        )

        # 6. Customers through the API, against the constant endpoint.
        tick("customers: read, verify and create vs /healthz")
        with gateway.client(steward_key) as http:
            created = post_ok(
                http,
                "/v1/customers?wait=true",
                {"email": "bench.reader@example.com", "given_name": "Bench"},
                201,
            )
        known = created["customer_id"]
        steward_headers = {"X-API-Key": steward_key}
        customers_details: dict[str, Any] = {}
        for name, path, method, body in (
            ("read", f"/v1/customers/{known}?purpose=support", "GET", None),
            ("verify", f"/v1/customers/{known}/verify", "GET", None),
            (
                "create",
                "/v1/customers",
                "POST",
                '{"email": "bench.[<id>]@example.com", "given_name": "Bench"}',
            ),
        ):
            ours, constant = endpoint_vs_constant(
                gateway,
                path,
                headers=steward_headers,
                seconds=args.seconds,
                rounds=1,
                method=method,
                body=body,
                id_replacement=body is not None,
            )
            customers_details[name] = {"endpoint": ours.as_json(), "healthz": constant.as_json()}
            tick(f"  {name}: {ours.rps:,.0f} req/s, p99 {ours.p99_ms} ms")
            if name == "read":
                rows.append(scale.customer_read_row("SQLite", ours, constant))
                continue
            rows.append(
                Row(
                    "customers through the API",
                    f"{method} {name}: requests/s",
                    ours.rps,
                    "req/s",
                    baseline="GET /healthz",
                    baseline_value=constant.rps,
                    ratio=ours.rps / constant.rps,
                    note=f"{method} {name}: p50 {ours.p50_ms} ms, p99 {ours.p99_ms} ms "
                    f"(healthz p99 {constant.p99_ms} ms); non-2xx answers: {ours.non_2xx}",
                )
            )
        details["customers"] = customers_details

    # 2. Baseline: the same kind of changes, one transaction each (batching off).
    tick(f"relay baseline: {len(baseline_changes)} changes, PIPELINE_MAX_BATCH_ITEMS=1")
    with env.serving("gateway-unbatched", PIPELINE_MAX_BATCH_ITEMS="1") as unbatched:
        baseline = consents.relay(
            unbatched.url,
            relayer_key,
            baseline_changes,
            per_request=1,
            clients=SINGLE_CLIENTS,
            database=database,
        )
    tick(f"  {baseline.changes_per_second:,.1f} changes/s")
    details["relay"]["baseline"] = baseline.as_json()
    applied += check_applied(env, baseline_people, 1)
    details["relay"]["applied_on_chain"] = applied
    expected = len(relay_changes) + len(single_changes) + len(baseline_changes)
    batched_ratio = bodies.changes_per_second / baseline.changes_per_second
    rows += [
        Row(
            "consent changes until confirmed",
            f"changes/s, {RELAY_PER_REQUEST} a request, {RELAY_CLIENTS} clients",
            bodies.changes_per_second,
            "/s",
            baseline="one transaction each",
            baseline_value=baseline.changes_per_second,
            ratio=batched_ratio,
            target="≥ 1,000/s and ≥ 10x",
            met=bodies.changes_per_second >= 1000 and batched_ratio >= 10,
            note=f"{bodies.changes:,} changes in {bodies.transactions} transactions, "
            f"{bodies.seconds:.1f} s from the first request to the last receipt recorded "
            f"(requests all answered after {bodies.submit_seconds:.1f} s); baseline "
            f"{baseline.changes} changes one a request from {SINGLE_CLIENTS} clients with "
            f"PIPELINE_MAX_BATCH_ITEMS=1, {baseline.transactions} transactions; "
            f"{applied:,} of {expected:,} changes found applied on the chain",
        ),
        Row(
            "consent changes until confirmed",
            f"changes/s, one a request, {SINGLE_CLIENTS} clients",
            singles.changes_per_second,
            "/s",
            baseline="one transaction each",
            baseline_value=baseline.changes_per_second,
            ratio=singles.changes_per_second / baseline.changes_per_second,
            note=f"{singles.changes:,} single-change requests batched by the pipeline into "
            f"{singles.transactions} transactions, {singles.seconds:.1f} s",
        ),
    ]
    rows.sort(key=lambda row: _ORDER.index(row.scenario))

    # 4. The CSV import, with the gateway stopped (its own process, as an operator runs it), on a
    # chain of its own that mines blocks the way a consortium network does (see IMPORT_CHAIN).
    tick(
        f"import: {args.import_rows:,} CSV rows with crm-chaincode import, on a fresh chain "
        f"with {IMPORT_CHAIN['anvil_block_time_seconds']:g} s blocks"
    )
    imported = _import_on_its_own_chain(env.root / "import-chain", args.import_rows, tick)
    tick(f"  {imported.rows_per_second:,.0f} rows/s, peak RSS {imported.peak_rss_mb:.0f} MB")
    details["import"] = asdict(imported)
    rows += [
        Row(
            "customer import",
            f"{imported.rows:,} CSV rows: rows/s",
            imported.rows_per_second,
            "rows/s",
            target="≥ 2,000 rows/s",
            met=imported.rows_per_second >= 2000,
            note=f"{imported.imported:,} imported (the rest duplicates and invalid rows, as in "
            f"tests/importer/csvgen.py) in {imported.seconds:.0f} s, "
            f"{imported.wall_seconds:.0f} s with the command's start-up; Anvil mining a block "
            f"every {IMPORT_CHAIN['anvil_block_time_seconds']:g} s of up to "
            f"{IMPORT_CHAIN['anvil_block_gas_limit']:,} gas",
        ),
        Row(
            "customer import",
            "peak RSS of the import process",
            imported.peak_rss_mb,
            "MB",
            target="≤ 500 MB",
            met=imported.peak_rss_mb <= 500,
        ),
    ]
    # Scale-out (one organisation): the check with two API workers, the relay through replicas.
    tick(f"consent check with {scale.CHECK_WORKERS} API workers (serve --workers)")
    workers_row = scale.check_with_workers(env, check_url(customer), headers, args.seconds, check)
    tick(f"  {workers_row.value:,.0f} req/s ({workers_row.ratio:.2f}x one worker)")
    rows.append(workers_row)
    tick(f"relay: {len(relay_changes):,} second changes through {scale.RELAY_REPLICAS} replicas")
    rows.append(
        scale.relay_with_replicas(
            env,
            relayer_key,
            sign_changes(env, relay_people, nonce=1),
            bodies,
            per_request=RELAY_PER_REQUEST,
            clients=RELAY_CLIENTS,
            tick=tick,
        )
    )
    if check_applied(env, relay_people, 2) != len(relay_people):
        raise RuntimeError("a change relayed through the replicas is missing on the chain")
    tick("customer read on PostgreSQL: a second gateway of the organisation on a fresh schema")
    rows.append(scale.customer_read_on_postgres(env, args.seconds, tick))
    rows.sort(key=lambda row: _ORDER.index(row.scenario))
    return rows, details, profiled


#: The import's chain: Anvil mining a block a second with room for many batches, as a QBFT or
#: Raft network does. With automine every batch is a block, and Anvil 1.7 (the newest on npm)
#: rebuilds its whole state trie for every block (foundry-rs/foundry#15715, fixed after it), so a
#: 100,000-row import became quadratic in Anvil's CPU (216 rows/s against ~670 this way).
IMPORT_CHAIN: dict[str, Any] = {
    "anvil_block_time_seconds": 1.0,
    "anvil_block_gas_limit": 300_000_000,
}


def _import_on_its_own_chain(root: Path, rows: int, tick: Ticker) -> Imported:
    """`customer_import` on a fresh chain configured as `IMPORT_CHAIN`, whose deployer holds
    DATA_STEWARD (granted through the gateway, as an admin would)."""
    env = Environment(root, **IMPORT_CHAIN)
    env.start()
    try:
        with env.serving("import-setup") as gateway, gateway.client(env.keys["admin"]) as admin:
            grant = {"role": "DATA_STEWARD", "account": env.deployer}
            post_ok(admin, "/v1/roles/grants?wait=true", grant)
        return customer_import(env, rows, tick)
    finally:
        env.stop()


def _ms(value: float) -> str:
    """autocannon counts whole milliseconds."""
    return "< 1 ms" if value < 1 else f"{value:g} ms"


_ORDER = [
    "consent check, 32 connections",
    "consent check, offered 1,000/s",
    "consent changes until confirmed",
    "gas per consent change",
    "customer import",
    "read-model staleness",
    "customer read, 32 connections",
    "customers through the API",
]


if __name__ == "__main__":
    sys.exit(main())
