"""The authenticated-key cache: a key is looked up once per TTL, and a revoked key stops working
within that TTL; unknown keys are never cached."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from crm_gateway.api import deps
from crm_gateway.api.deps import CallerCache, CallerDep
from crm_gateway.api.errors import install_problem_handlers
from crm_gateway.config import Settings
from crm_gateway.security.apikeys import AnyKeyAccount, create_api_key, revoke
from crm_gateway.store.db import make_engine, make_session_factory, session_scope, upgrade_database

ACCOUNT = "0x52908400098527886E0F7030069857D2E4169EE7"


@pytest.fixture
def setup(tmp_path: Path) -> Iterator[tuple[TestClient, Any, str, str]]:
    url = f"sqlite:///{tmp_path / 'crm.db'}"
    upgrade_database(url)
    engine = make_engine(url)
    factory = make_session_factory(engine)
    with session_scope(factory) as session:
        row, key = create_api_key(session, 3, ACCOUNT, "operator")
        key_id = row.id
    app = FastAPI()
    app.state.settings = Settings(database_url=url)
    app.state.session_factory = factory
    app.state.key_check = AnyKeyAccount()  # no chain here: what is tested is the key cache
    install_problem_handlers(app)

    @app.get("/whoami")
    async def whoami(caller: CallerDep) -> dict[str, Any]:
        return {"org_id": caller.org_id, "account": caller.account}

    with TestClient(app) as client:
        yield client, factory, key, key_id
    engine.dispose()


def test_a_key_is_looked_up_once_per_ttl_and_a_revocation_counts_after_it(
    setup: tuple[TestClient, Any, str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    client, factory, key, key_id = setup
    client.app.state.caller_cache = CallerCache(ttl=0.3)  # type: ignore[attr-defined]
    lookups: list[str] = []
    original = deps._lookup

    def counting(session_factory: Any, api_key: str) -> Any:
        lookups.append(api_key)
        return original(session_factory, api_key)

    monkeypatch.setattr(deps, "_lookup", counting)
    headers = {"X-API-Key": key}
    for _ in range(5):
        answer = client.get("/whoami", headers=headers)
        assert answer.status_code == 200, answer.text
        assert answer.json() == {"org_id": 3, "account": ACCOUNT}
    assert len(lookups) == 1
    with session_scope(factory) as session:
        revoke(session, key_id)
    assert client.get("/whoami", headers=headers).status_code == 200  # still cached
    time.sleep(0.35)
    refused = client.get("/whoami", headers=headers)
    assert refused.status_code == 401
    assert refused.json()["detail"] == "invalid API key"
    assert client.get("/whoami", headers=headers).status_code == 401


def test_unknown_keys_are_looked_up_every_time(
    setup: tuple[TestClient, Any, str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    client, _factory, _key, _key_id = setup
    lookups: list[str] = []
    original = deps._lookup
    monkeypatch.setattr(deps, "_lookup", lambda f, k: lookups.append(k) or original(f, k))
    wrong = {"X-API-Key": "crm_" + "A" * 43}
    for _ in range(3):
        assert client.get("/whoami", headers=wrong).status_code == 401
    assert len(lookups) == 3
    assert client.get("/whoami").status_code == 401  # no header: no lookup at all
    assert len(lookups) == 3


def test_the_cache_forgets_entries_after_their_ttl_and_stays_bounded() -> None:
    cache = CallerCache(ttl=60, max_entries=2)
    caller = deps.Caller(api_key_id="k", org_id=1, account=ACCOUNT, role="r")
    cache.put("a", caller)
    cache.put("b", caller)
    assert cache.get("a") is caller
    cache.put("c", caller)  # full: starts again rather than growing
    assert cache.get("a") is None
    assert cache.get("c") is caller
    off = CallerCache(ttl=0)
    off.put("a", caller)
    assert off.get("a") is None
