"""`crm-chaincode index`: a rebuild on an empty database equals the incremental read model."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from crm_gateway.cli import app
from crm_gateway.config import Settings, get_settings
from crm_gateway.indexer import ChainIndexer
from crm_gateway.runtime import build_runtime
from crm_gateway.store.db import make_engine, make_session_factory
from tests.indexer.conftest import snapshot, writer_for

pytestmark = pytest.mark.anvil


def _use_database(monkeypatch: pytest.MonkeyPatch, url: str) -> None:
    monkeypatch.setenv("DATABASE_URL", url)
    get_settings.cache_clear()


def test_rebuild_on_an_empty_database_equals_the_incremental_read_model(
    cli_env: CliRunner,
    node: Any,
    anvil_settings: Settings,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    deployed = cli_env.invoke(app, ["deploy"])
    assert deployed.exit_code == 0, deployed.output
    runtime = build_runtime(anvil_settings)
    try:
        writer = writer_for(runtime)
        incremental = ChainIndexer(runtime.contracts, runtime.session_factory, max_block_range=3)
        ids = []
        for step in range(4):  # index after every write: the read model grows event by event
            ids.append(writer.new_customer_id())
            writer.register(ids[-1])
            incremental.run_to_head()
            writer.grant("AGENT" if step % 2 else "AUDITOR")
            incremental.run_to_head()
        writer.update(ids[0], 1)
        writer.erase(ids[1])
        writer.register_batch(4)
        incremental.run_to_head()
        expected = snapshot(runtime)
    finally:
        runtime.close()
    assert expected["rm_customers"]
    assert expected["rm_role_holdings"]

    _use_database(monkeypatch, f"sqlite:///{tmp_path / 'rebuilt.db'}")
    rebuilt = cli_env.invoke(app, ["index", "rebuild"])
    assert rebuilt.exit_code == 0, rebuilt.output
    assert "read model rebuilt up to block" in rebuilt.output
    engine = make_engine(f"sqlite:///{tmp_path / 'rebuilt.db'}")
    try:
        assert snapshot(make_session_factory(engine)) == expected
    finally:
        engine.dispose()

    status = cli_env.invoke(app, ["index", "status"])
    assert status.exit_code == 0, status.output
    assert "0 blocks" in status.output
    assert "CustomerRegistry" in status.output

    _use_database(monkeypatch, f"sqlite:///{tmp_path / 'run.db'}")
    before = cli_env.invoke(app, ["index", "status"])
    assert "none (not indexed yet)" in before.output
    ran = cli_env.invoke(app, ["index", "run", "--until-head"])
    assert ran.exit_code == 0, ran.output
    assert "at the chain head" in ran.output
    engine = make_engine(f"sqlite:///{tmp_path / 'run.db'}")
    try:
        assert snapshot(make_session_factory(engine)) == expected
    finally:
        engine.dispose()
