"""Audit through the API on the embedded chain: anchors, inclusion proofs checked in Python and
by the contract, timelines, the AUDITOR's rights (timelines and proofs, never personal data), and
role and key changes in the access log."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from crm_gateway.audit.merkle import leaf_hash, verify_proof
from crm_gateway.runtime import Runtime
from crm_gateway.store.models import AccessLogEntry
from tests.gateway.conftest import DATABASES, wait_until

ALICE = {"given_name": "Alice", "email": "alice@example.com", "phone": "020 7946 0958"}


@pytest.fixture(params=DATABASES)
def gateway_database(request: pytest.FixtureRequest) -> str:
    """Every test here runs on SQLite and on the machine's PostgreSQL."""
    return str(request.param)


@pytest.fixture
def steward(role_key: Callable[[str], dict[str, str]], support_purpose: str) -> dict[str, str]:
    return role_key("DATA_STEWARD")


@pytest.fixture
def auditor(role_key: Callable[[str], dict[str, str]]) -> dict[str, str]:
    return role_key("AUDITOR")


def _create(client: TestClient, headers: dict[str, str], body: dict[str, Any]) -> str:
    response = client.post("/v1/customers?wait=true", json=body, headers=headers)
    assert response.status_code == 201, response.text
    return str(response.json()["customer_id"])


def _anchor(client: TestClient, auditor: dict[str, str]) -> list[dict[str, Any]]:
    response = client.post("/v1/audit/anchors?wait=true", headers=auditor)
    assert response.status_code == 200, response.text
    batches: list[dict[str, Any]] = response.json()["batches"]
    assert all(b["status"] == "anchored" for b in batches), batches
    return batches


def _log(runtime: Runtime, **where: Any) -> list[AccessLogEntry]:
    with runtime.session_factory() as session:
        query = select(AccessLogEntry).order_by(AccessLogEntry.seq)
        for name, value in where.items():
            query = query.where(getattr(AccessLogEntry, name) == value)
        return list(session.scalars(query))


def test_an_inclusion_proof_from_the_api_verifies_in_python_and_in_the_contract(
    client: TestClient, steward: dict[str, str], auditor: dict[str, str], runtime: Runtime
) -> None:
    customer_id = _create(client, steward, ALICE)
    assert client.get(f"/v1/customers/{customer_id}?purpose=support", headers=steward).is_success
    (read,) = _log(runtime, action="read", customer_id=customer_id)

    # Not anchored yet: 409, and the log says so.
    pending = client.get(f"/v1/audit/{read.seq}/proof", headers=auditor)
    assert pending.status_code == 409
    assert pending.json()["type"].endswith("not-anchored")

    (batch,) = _anchor(client, auditor)
    head = _log(runtime)[-1].seq
    assert (batch["first_seq"], batch["last_seq"], batch["count"]) == (1, head, head)
    assert batch["chain_batch_id"] == 1
    assert batch["tx_hash"]
    assert batch["gas_used"] > 0
    # Nothing new: 200 and no batch.
    again = client.post("/v1/audit/anchors", headers=auditor)
    assert (again.status_code, again.json()) == (200, {"batches": []})

    response = client.get(f"/v1/audit/{read.seq}/proof", headers=auditor)
    assert response.status_code == 200, response.text
    proof = response.json()
    entry = proof["entry"]
    assert (entry["seq"], entry["action"], entry["customer_id"]) == (read.seq, "read", customer_id)
    assert entry["purpose"] == "support"
    assert entry["entry_hash"] == read.entry_hash
    assert set(entry) >= {"prev_hash", "entry_hash", "at", "account", "decision"}
    anchor = proof["anchor"]
    assert anchor["contract"] == runtime.contracts["AuditAnchor"].address
    assert (anchor["batch_id"], anchor["tx_hash"]) == (1, batch["tx_hash"])
    assert anchor["block_number"] == batch["block_number"]

    # In Python...
    leaf = bytes.fromhex(proof["leaf"][2:])
    nodes = [bytes.fromhex(node[2:]) for node in proof["proof"]]
    assert leaf == leaf_hash(read.seq, bytes.fromhex(str(read.entry_hash)))
    assert verify_proof(leaf, nodes, bytes.fromhex(proof["root"][2:]))
    # ... in the contract, directly...
    contract = runtime.contracts["AuditAnchor"].functions
    assert contract.verify(1, leaf, nodes).call() is True
    assert contract.batch(1).call()[0] == bytes.fromhex(proof["root"][2:])
    # ... and both through the API.
    checked = client.post(
        "/v1/audit/verify-proof",
        json={"batch_id": 1, "leaf": proof["leaf"], "proof": proof["proof"]},
        headers=steward,
    ).json()
    assert (checked["valid"], checked["python"], checked["contract"]) == (True, True, True)
    assert checked["computed_root"] == checked["root"] == checked["root_on_chain"] == proof["root"]
    by_entry = client.post(
        "/v1/audit/verify-proof",
        json={
            "batch_id": 1,
            "seq": read.seq,
            "entry_hash": read.entry_hash,
            "proof": proof["proof"],
        },
        headers=auditor,
    ).json()
    assert by_entry["valid"] is True
    assert by_entry["leaf"] == proof["leaf"]

    # A forged entry, or a proof for another position, fails both checks.
    forged = client.post(
        "/v1/audit/verify-proof",
        json={
            "batch_id": 1,
            "seq": read.seq,
            "entry_hash": "ab" * 32,
            "proof": proof["proof"],
        },
        headers=auditor,
    ).json()
    assert (forged["valid"], forged["python"], forged["contract"]) == (False, False, False)
    unknown = client.post(
        "/v1/audit/verify-proof",
        json={"batch_id": 9, "leaf": proof["leaf"], "proof": []},
        headers=auditor,
    )
    assert unknown.status_code == 404


def test_the_timeline_merges_chain_events_and_access_log_with_proofs(
    client: TestClient, steward: dict[str, str], auditor: dict[str, str], runtime: Runtime
) -> None:
    customer_id = _create(client, steward, ALICE)
    client.get(f"/v1/customers/{customer_id}?purpose=support", headers=steward)
    patched = client.patch(
        f"/v1/customers/{customer_id}?wait=true", json={"given_name": "Alicia"}, headers=steward
    )
    assert patched.status_code == 200, patched.text
    refused = client.get(f"/v1/customers/{customer_id}?purpose=support", headers=auditor)
    assert refused.status_code == 403
    _anchor(client, auditor)
    erased = client.delete(f"/v1/customers/{customer_id}?wait=true", headers=steward)
    assert erased.status_code == 200, erased.text
    block = erased.json()["operation"]["block_number"]
    wait_until(lambda: (runtime.read_model.as_of_block() or 0) >= block)

    response = client.get(f"/v1/customers/{customer_id}/timeline", headers=auditor)
    assert response.status_code == 200, response.text
    timeline = response.json()
    assert timeline["customer_id"] == customer_id
    kinds = [(item["source"], item["type"]) for item in timeline["items"]]
    assert kinds == [
        ("access_log", "create"),
        ("chain", "CustomerRegistered"),
        ("access_log", "read"),
        ("access_log", "update"),
        ("chain", "CommitmentUpdated"),
        ("access_log", "read"),  # the auditor's refused attempt
        ("access_log", "erase"),
        ("chain", "HoldingErased"),
        ("chain", "CustomerErased"),
    ]
    items = timeline["items"]
    for item in items:
        if item["source"] == "chain":
            assert item["proof"]["tx_hash"].startswith("0x")
            assert item["proof"]["block_number"]
            assert item["contract"] == "CustomerRegistry"
    logged = [item for item in items if item["source"] == "access_log"]
    assert logged[-2]["details"]["decision"] == "refused"
    # Entries logged before the anchoring point to their batch and proof; the erasure does not.
    for item in logged[:-1]:
        assert item["proof"]["anchored"] is True
        assert item["proof"]["batch_id"] == 1
        seq = item["proof"]["seq"]
        assert item["proof"]["proof_url"] == f"/v1/audit/{seq}/proof"
        assert client.get(item["proof"]["proof_url"], headers=auditor).status_code == 200
    assert logged[-1]["proof"]["anchored"] is False
    # No personal data anywhere in it.
    text = response.text
    assert "Alice" not in text
    assert "alice@" not in text
    # The phone as given and as stored (E.164); long enough not to turn up inside a random hash.
    assert "7946 0958" not in text
    assert "2079460958" not in text

    # The log itself, filtered by customer, with the same pointers.
    page = client.get(f"/v1/audit/log?customer={customer_id}", headers=auditor).json()
    assert [e["action"] for e in page["entries"]] == [
        "create",
        "read",
        "update",
        "read",
        "erase",
    ]
    assert page["entries"][0]["anchor"]["batch_id"] == 1
    assert page["next_from_seq"] is None
    first_two = client.get("/v1/audit/log?from_seq=1&limit=2", headers=steward).json()
    assert [e["seq"] for e in first_two["entries"]] == [1, 2]
    assert first_two["next_from_seq"] == 3


PII_ENDPOINTS = [
    ("get", "/v1/customers/{id}?purpose=support", None),
    ("get", "/v1/customers/{id}/export", None),
    ("get", "/v1/customers?email=alice@example.com", None),
    ("get", "/v1/customers?phone=020%207946%200958", None),
    ("post", "/v1/customers", {"email": "carol@example.com"}),
    ("patch", "/v1/customers/{id}", {"given_name": "Eve"}),
    ("delete", "/v1/customers/{id}", None),
    (
        "get",
        "/v1/customers/{id}/wallet/typed-data?wallet=0x52908400098527886E0F7030069857D2E4169EE7",
        None,
    ),
]


def test_an_auditor_reads_timelines_logs_and_proofs_but_no_personal_data(
    client: TestClient, steward: dict[str, str], auditor: dict[str, str], runtime: Runtime
) -> None:
    customer_id = _create(client, steward, ALICE)
    _anchor(client, auditor)
    assert client.get(f"/v1/customers/{customer_id}/timeline", headers=auditor).status_code == 200
    assert client.get("/v1/audit/log", headers=auditor).status_code == 200
    assert client.get("/v1/audit/1/proof", headers=auditor).status_code == 200
    assert client.get("/v1/audit/anchors", headers=auditor).status_code == 200
    before = len(_log(runtime))
    for method, path, body in PII_ENDPOINTS:
        url = path.format(id=customer_id)
        response = client.request(method.upper(), url, json=body, headers=auditor)
        assert response.status_code == 403, (method, url, response.text)
        assert "Alice" not in response.text
        assert "alice@" not in response.text
    # Every refusal is in the access log.
    refused = [e for e in _log(runtime)[before:] if e.decision == "refused"]
    assert len(refused) == len(PII_ENDPOINTS)
    assert len({e.account for e in refused}) == 1  # the auditor's account
    # The steward keeps reading: the refusals changed nothing.
    read = client.get(f"/v1/customers/{customer_id}?purpose=support", headers=steward)
    assert read.status_code == 200


@pytest.mark.parametrize("role", ["AGENT", "MARKETER"])
def test_audit_reads_need_auditor_or_steward(
    client: TestClient, role_key: Callable[[str], dict[str, str]], role: str
) -> None:
    headers = role_key(role)
    assert client.get("/v1/audit/log", headers=headers).status_code == 403
    assert client.get("/v1/audit/1/proof", headers=headers).status_code == 403
    assert client.get(f"/v1/customers/0x{'11' * 32}/timeline", headers=headers).status_code == 403
    assert client.post("/v1/audit/anchors", headers=headers).status_code == 403


def test_only_auditors_anchor(
    client: TestClient, steward: dict[str, str], runtime: Runtime
) -> None:
    response = client.post("/v1/audit/anchors", headers=steward)
    assert response.status_code == 403
    assert response.json()["required_roles"] == ["AUDITOR"]


def test_role_and_key_changes_are_in_the_log(
    client: TestClient,
    admin_headers: dict[str, str],
    role_key: Callable[[str], dict[str, str]],
    new_signer: Callable[[], str],
    runtime: Runtime,
) -> None:
    account = new_signer()
    granted = client.post(
        "/v1/roles/grants?wait=true",
        json={"role": "AGENT", "account": account},
        headers=admin_headers,
    )
    assert granted.status_code == 200, granted.text
    revoked = client.post(
        "/v1/roles/revocations?wait=true",
        json={"role": "AGENT", "account": account},
        headers=admin_headers,
    )
    assert revoked.status_code == 200, revoked.text
    agent = role_key("AGENT")
    refused = client.post(
        "/v1/roles/grants", json={"role": "AUDITOR", "account": account}, headers=agent
    )
    assert refused.status_code == 403

    changes = [
        (e.action, e.decision, e.reason)
        for e in _log(runtime)
        if e.action in {"role_grant", "role_revoke"} and account in (e.reason or "")
    ]
    assert changes[:2] == [
        ("role_grant", "allowed", f"AGENT to {account}"),
        ("role_revoke", "allowed", f"AGENT from {account}"),
    ]
    assert changes[2][:2] == ("role_grant", "refused")
    assert changes[2][2].startswith(f"AUDITOR to {account}: ")
    # Keys issued (by the fixtures, through `create_api_key`) are logged by id, never the key.
    issued = _log(runtime, action="apikey_create")
    assert issued
    assert all("crm_" not in (e.reason or "") for e in issued)
    assert all(e.customer_id is None for e in issued)


def test_the_worker_anchors_with_the_auditor_key_the_gateway_holds(
    client: TestClient, role_key: Callable[[str], dict[str, str]], runtime: Runtime
) -> None:
    worker = runtime.anchor_worker
    assert worker.running  # started with the app; its first round waits a full interval
    assert runtime.anchor_signer() is None
    assert worker.run_once() == 0  # no AUDITOR in the keystore: nothing is anchored
    role_key("AUDITOR")
    signer = runtime.anchor_signer()
    assert signer is not None
    assert worker.run_once() == 1

    def anchored() -> bool:
        runtime.anchorer.refresh()
        return [b.status for b in runtime.anchorer.batches()] == ["anchored"]

    wait_until(anchored)
    (batch,) = runtime.anchorer.batches()
    assert batch.operation_id
    # The next round finds only the entries logged since (here: none).
    assert worker.run_once() == 0
