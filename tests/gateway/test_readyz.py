"""`/readyz` answers anyone: it names no endpoint and no credential."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from web3 import Web3

from crm_gateway.api.app import create_app
from crm_gateway.chain.anvil import AnvilNode, fund_dev_account
from crm_gateway.config import ChainKind
from crm_gateway.runtime import build_runtime, open_keystore
from tests.conftest import (
    RPC_TEST_KEYSTORE_PASSWORD,
    deploy_unless_embedded,
    free_port,
    make_settings,
)


@pytest.mark.anvil
def test_readyz_does_not_show_the_rpc_url_or_its_credentials(tmp_path: Path) -> None:
    node = AnvilNode(make_settings(tmp_path, chain_kind=ChainKind.ANVIL, anvil_port=free_port()))
    node.start()
    try:
        # A provider URL as operators get them: a user and password, and a token in the path.
        secret_url = node.url.replace("http://", "http://crm:hunter2-secret@") + "/?key=tok3n-xyz"
        settings = make_settings(
            tmp_path,
            chain_kind=ChainKind.RPC,
            rpc_url=secret_url,
            keystore_password=RPC_TEST_KEYSTORE_PASSWORD,
        )
        deployer = open_keystore(settings).create()
        fund_dev_account(Web3(Web3.HTTPProvider(node.url)), deployer.address, 10**21)
        deploy_unless_embedded(settings)
        runtime = build_runtime(settings)
        try:
            with TestClient(create_app(runtime=runtime)) as client:
                response = client.get("/readyz")
        finally:
            runtime.close()
    finally:
        node.stop()
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "ready"
    assert body["chain"]["kind"] == "rpc"
    assert "rpc_url" not in body["chain"]
    for secret in ("hunter2-secret", "tok3n-xyz", "crm:", "http://"):
        assert secret not in response.text
