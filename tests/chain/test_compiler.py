"""The compiler: offline, reproducible, and the committed artifacts match the sources."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from crm_gateway.chain.compiler import (
    CompilerError,
    compile_contracts,
    stale_artifacts,
    write_artifacts,
)
from crm_gateway.config import PROJECT_ROOT, Settings


@pytest.fixture(scope="module")
def settings() -> Settings:
    return Settings()


@pytest.fixture
def scratch_project(tmp_path: Path) -> Settings:
    """A copy of contracts/ and abi/ in a temporary folder, compiled with the real node_modules."""
    shutil.copytree(PROJECT_ROOT / "contracts", tmp_path / "contracts")
    shutil.copytree(PROJECT_ROOT / "abi", tmp_path / "abi")
    return Settings(
        contracts_dir=tmp_path / "contracts",
        abi_dir=tmp_path / "abi",
        node_modules_dir=PROJECT_ROOT / "node_modules",
    )


def test_committed_artifacts_are_current(settings: Settings) -> None:
    assert stale_artifacts(settings) == [], "run `crm-chaincode compile` and commit abi/"


def test_artifacts_record_compiler_settings_and_hashes(settings: Settings) -> None:
    data = json.loads((PROJECT_ROOT / "abi" / "Consortium.json").read_text())
    assert data["compiler"]["version"].startswith(settings.solc_version + "+")
    assert data["settings"]["optimizer"] == {"enabled": True, "runs": settings.optimizer_runs}
    assert data["settings"]["evmVersion"] == "cancun"
    assert data["sourceHash"].startswith("0x")
    assert len(data["sourceHash"]) == 66
    # Solidity's preamble stores the free memory pointer: PUSH1 0x80, or PUSH2 0x0180 when the
    # contract has immutables (the Consortium's EIP-712 domain).
    assert data["bytecode"][:4] in {"0x60", "0x61"}
    assert data["deployedBytecode"][:4] in {"0x60", "0x61"}
    assert any(item["type"] == "error" for item in data["abi"])


def test_an_edited_source_makes_its_artifact_stale(scratch_project: Settings) -> None:
    source = scratch_project.contracts_dir / "Consortium.sol"
    source.write_text(source.read_text() + "\n// an edit changes the metadata hash\n")
    assert "Consortium" in stale_artifacts(scratch_project)
    write_artifacts(compile_contracts(scratch_project), scratch_project)
    assert stale_artifacts(scratch_project) == []


def test_a_new_contract_leaves_the_other_artifacts_current(scratch_project: Settings) -> None:
    # An artifact's source hash covers only the sources it is built from, so contracts added
    # side by side (by different people at once) never make each other's artifacts stale.
    (scratch_project.contracts_dir / "Extra.sol").write_text(
        "// SPDX-License-Identifier: MIT\npragma solidity ^0.8.24;\ncontract Extra {}\n"
    )
    assert stale_artifacts(scratch_project) == ["Extra"]


def test_evm_version_is_configurable_and_changes_the_output(scratch_project: Settings) -> None:
    # Prague rather than an older fork: OpenZeppelin 5's Bytes library uses Cancun's MCOPY.
    prague = scratch_project.model_copy(update={"evm_version": "prague"})
    artifact = next(a for a in compile_contracts(prague) if a.contract_name == "Consortium")
    assert artifact.settings["evmVersion"] == "prague"
    assert "Consortium" in stale_artifacts(prague)


def test_a_syntax_error_is_reported_with_its_location(scratch_project: Settings) -> None:
    (scratch_project.contracts_dir / "Broken.sol").write_text(
        "// SPDX-License-Identifier: MIT\npragma solidity ^0.8.24;\ncontract Broken { uint x = }\n"
    )
    with pytest.raises(CompilerError, match=r"Broken\.sol:3"):
        compile_contracts(scratch_project)


def test_imports_outside_node_modules_are_refused(
    scratch_project: Settings, tmp_path: Path
) -> None:
    secret = tmp_path / "secret.sol"
    secret.write_text("// not a contract the build should ever read\n")
    (scratch_project.contracts_dir / "Sneaky.sol").write_text(
        "// SPDX-License-Identifier: MIT\npragma solidity ^0.8.24;\n"
        f'import "{secret}";\ncontract Sneaky {{}}\n'
    )
    with pytest.raises(CompilerError, match="outside node_modules"):
        compile_contracts(scratch_project)


def test_a_missing_solc_package_is_a_clear_error(scratch_project: Settings, tmp_path: Path) -> None:
    empty = scratch_project.model_copy(update={"node_modules_dir": tmp_path / "nothing"})
    with pytest.raises(CompilerError, match="npm ci"):
        compile_contracts(empty, prefer_native=False)
