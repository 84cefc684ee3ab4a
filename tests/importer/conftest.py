"""Fixtures of the import tests: a runtime whose deployer is a DATA_STEWARD, on either chain."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from crm_gateway.config import Settings
from crm_gateway.runtime import Runtime, build_runtime
from crm_gateway.services.access import AccessService, Role
from crm_gateway.services.customers import Actor
from crm_gateway.services.operations import OperationService
from tests.conftest import deploy_unless_embedded, make_settings


def grant_steward(runtime: Runtime) -> Actor:
    """Make the deployer (ORG_ADMIN of organisation 1) a DATA_STEWARD too; the importing actor."""
    deployer = str(runtime.contracts.record.deployer)
    access = AccessService(runtime.contracts)
    if not access.has_role(Role.DATA_STEWARD, deployer):
        operations = OperationService(runtime.session_factory, runtime.pipeline)
        view, _ = operations.submit(
            access.grant(deployer, Role.DATA_STEWARD, deployer),
            api_key_id=None,
            idempotency_key=None,
            payload="grant-steward",
        )
        runtime.pipeline.drain(until=lambda: operations.get_internal(view.id).settled, timeout=30)
        assert operations.get_internal(view.id).status == "confirmed"
    return Actor(api_key_id=None, org_id=access.organization_of(deployer), account=deployer)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def embedded_settings(request: pytest.FixtureRequest, tmp_path: Path) -> Settings:
    """The embedded chain, with SQLite or with a fresh schema of the machine's PostgreSQL."""
    if request.param == "postgres":
        return make_settings(tmp_path, database_url=request.getfixturevalue("postgres_schema_url"))
    return make_settings(tmp_path)


@pytest.fixture
def runtime(embedded_settings: Settings) -> Iterator[Runtime]:
    runtime = build_runtime(embedded_settings)
    yield runtime
    runtime.close()


@pytest.fixture
def steward(runtime: Runtime) -> Actor:
    return grant_steward(runtime)


@pytest.fixture
def anvil_runtime(anvil_settings: Settings, node: Any) -> Iterator[Runtime]:
    deploy_unless_embedded(anvil_settings)
    runtime = build_runtime(anvil_settings)
    yield runtime
    runtime.close()


def settings_env(settings: Settings) -> dict[str, str]:
    """Every setting as an environment variable, as an admin's shell would have them."""
    env: dict[str, str] = {}
    for name, value in settings.model_dump().items():
        if value is not None:
            raw = value.get_secret_value() if hasattr(value, "get_secret_value") else value
            env[name.upper()] = str(raw)
    return env
