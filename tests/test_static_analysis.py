"""Static analysis: the solc command line over solc-js (`tools/solc`), and Slither as `make slither`
runs it (`tools/slither_check.py` in `.venv-slither`).

The Slither tests need `.venv-slither`, which `make slither` (and so `make lint` and `.ci/run`)
creates; without it they are skipped. The wrapper tests need only Node and node_modules.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from crm_gateway.chain.compiler import _run_solcjs, _standard_input
from crm_gateway.config import PROJECT_ROOT, Settings

ROOT = PROJECT_ROOT
SOLC = ROOT / "tools" / "solc"
SLITHER_PY = ROOT / ".venv-slither" / "bin" / "python"
FIXTURES = "tests/fixtures/slither"
TX_ORIGIN = f"{FIXTURES}/TxOriginAuth.sol"

needs_node = pytest.mark.skipif(
    shutil.which("node") is None or not (ROOT / "node_modules" / "solc").is_dir(),
    reason="Node.js and node_modules/solc are needed (make deps)",
)
needs_slither = pytest.mark.skipif(
    not (ROOT / ".venv-slither" / "bin" / "slither").is_file(),
    reason=".venv-slither is absent: run `make slither` (or `make lint`) to create it",
)


@pytest.fixture(scope="module")
def settings() -> Settings:
    return Settings()


@pytest.fixture(scope="module")
def checker() -> ModuleType:
    """tools/slither_check.py (standard library only, so it imports in the project's venv too)."""
    spec = importlib.util.spec_from_file_location("slither_check", ROOT / "tools/slither_check.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def solc(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(SOLC), *args], input=stdin, capture_output=True, text=True, cwd=ROOT, timeout=300
    )


def slither_check(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(SLITHER_PY), "tools/slither_check.py", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=900,
    )


def _tail(result: subprocess.CompletedProcess[str]) -> str:
    return (result.stdout + result.stderr)[-6000:]


# --- tools/solc ----------------------------------------------------------------------------------


@needs_node
def test_version_is_printed_like_native_solc(settings: Settings) -> None:
    result = solc("--version")
    assert result.returncode == 0
    first, second = result.stdout.splitlines()
    assert first == "solc, the solidity compiler commandline interface"
    assert second.startswith(f"Version: {settings.solc_version}+commit.")


@needs_node
def test_standard_json_builds_the_bytecode_of_the_compiler_driver(settings: Settings) -> None:
    """The same input through the wrapper (OpenZeppelin found by --include-path, as native solc
    does) and through crm_gateway's solc-js driver gives the same bytecode (same source names, so
    the same metadata hash)."""
    name = "contracts/Probe.sol"
    source = (
        "// SPDX-License-Identifier: Apache-2.0\npragma solidity ^0.8.24;\n"
        'import {ERC20, ERC20Permit} from "@openzeppelin/contracts/token/ERC20/extensions/'
        'ERC20Permit.sol";\n'
        'contract Probe is ERC20Permit { constructor() ERC20("P", "P") ERC20Permit("P") {} }\n'
    )
    standard_input = _standard_input({name: source}, settings)
    _label, expected = _run_solcjs(standard_input, settings)
    result = solc(
        "--standard-json",
        "--base-path",
        ".",
        "--include-path",
        "node_modules",
        stdin=json.dumps(standard_input),
    )
    assert result.returncode == 0, result.stderr
    output = json.loads(result.stdout)
    assert [e for e in output.get("errors", []) if e["severity"] == "error"] == []
    bytecode = output["contracts"][name]["Probe"]["evm"]["bytecode"]["object"]
    assert bytecode
    assert bytecode == expected["contracts"][name]["Probe"]["evm"]["bytecode"]["object"]
    assert any(source.startswith("@openzeppelin/contracts/") for source in output["sources"])


@needs_node
def test_standard_json_reads_urls_like_crytic_compile_sends_them() -> None:
    standard_input = {
        "language": "Solidity",
        "sources": {TX_ORIGIN: {"urls": [TX_ORIGIN]}},
        "settings": {"outputSelection": {"*": {"*": ["abi"], "": ["ast"]}}},
    }
    result = solc("--standard-json", "--allow-paths", str(ROOT), stdin=json.dumps(standard_input))
    assert result.returncode == 0
    output = json.loads(result.stdout)
    assert output.get("errors", []) == []
    assert "TxOriginAuth" in output["contracts"][TX_ORIGIN]


@needs_node
def test_files_outside_the_allowed_paths_are_refused(tmp_path: Path) -> None:
    secret = tmp_path / "secret.sol"
    secret.write_text("// not for the compiler\n")
    standard_input = {
        "language": "Solidity",
        "sources": {"a.sol": {"content": f'import "{secret}";\n'}},
        "settings": {"outputSelection": {"*": {"*": ["abi"]}}},
    }
    result = solc("--standard-json", stdin=json.dumps(standard_input))
    assert result.returncode == 0  # like native solc: errors are in the JSON output
    messages = [e["message"] for e in json.loads(result.stdout)["errors"]]
    assert any("File outside of allowed directories" in m for m in messages), messages


@needs_node
def test_combined_json_has_what_crytic_compile_reads(settings: Settings) -> None:
    result = solc(
        TX_ORIGIN,
        "--combined-json",
        "abi,ast,bin,bin-runtime,srcmap,srcmap-runtime,userdoc,devdoc,hashes,compact-format",
        "--optimize",
        "--optimize-runs",
        "200",
        "--evm-version",
        "cancun",
        "--allow-paths",
        f".,{ROOT / FIXTURES}",
    )
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["version"].startswith(settings.solc_version + "+commit.")
    contract = data["contracts"][f"{TX_ORIGIN}:TxOriginAuth"]
    assert isinstance(contract["abi"], list)
    assert contract["hashes"] == {
        "owner()": "8da5cb5b",
        "setValue(uint256)": "55241077",
        "value()": "3fa4f245",
    }
    assert contract["bin"]
    assert contract["bin-runtime"]
    assert contract["srcmap"]
    assert contract["srcmap-runtime"]
    assert isinstance(contract["userdoc"], dict)
    assert isinstance(contract["devdoc"], dict)
    assert data["sourceList"] == [TX_ORIGIN]
    assert data["sources"][TX_ORIGIN]["id"] == 0
    assert data["sources"][TX_ORIGIN]["AST"]["nodeType"] == "SourceUnit"


@needs_node
def test_combined_json_applies_remappings(tmp_path: Path) -> None:
    source = tmp_path / "UsesContext.sol"
    source.write_text(
        "// SPDX-License-Identifier: Apache-2.0\npragma solidity ^0.8.24;\n"
        'import {Context} from "@openzeppelin/contracts/utils/Context.sol";\n'
        "contract UsesContext is Context {}\n"
    )
    result = solc(
        "@openzeppelin/=node_modules/@openzeppelin/",
        str(source),
        "--combined-json",
        "abi,ast",
        "--allow-paths",
        f".,{tmp_path}",
    )
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert "node_modules/@openzeppelin/contracts/utils/Context.sol" in data["sourceList"]
    assert f"{source.as_posix()}:UsesContext" in data["contracts"]


@needs_node
def test_combined_json_fails_like_native_solc_on_a_compile_error(tmp_path: Path) -> None:
    broken = tmp_path / "Broken.sol"
    broken.write_text("pragma solidity ^0.8.24;\ncontract Broken { function f( }\n")
    result = solc(str(broken), "--combined-json", "abi,ast", "--allow-paths", str(tmp_path))
    assert result.returncode == 1
    assert result.stdout == ""
    assert "ParserError" in result.stderr


@needs_node
def test_unknown_options_are_refused() -> None:
    result = solc("--bin", "contracts/Consortium.sol")
    assert result.returncode == 1
    assert "unrecognised option '--bin'" in result.stderr


# --- the gate in tools/slither_check.py ----------------------------------------------------------


def test_accepted_findings_match_without_line_numbers(checker: Any) -> None:
    accepted = checker.load_accepted()
    assert accepted["findings"], "every accepted finding has a detector, a finding and a reason"
    entry = accepted["findings"][0]
    moved = {
        "check": entry["detector"],
        "impact": "Medium",
        "description": entry["finding"].replace(" - ", " (contracts/x/Y.sol#901-950)\n\t- ", 1),
    }
    assert checker.gate([moved], accepted) == 0
    edited = {**moved, "description": moved["description"] + " && somethingElse"}
    assert checker.gate([edited], accepted) == 1
    low = {"check": "timestamp", "impact": "Low", "description": "anything"}
    assert checker.gate([low], accepted) == 0


def test_production_sources_leave_out_contracts_test(checker: Any) -> None:
    sources = checker.production_sources([ROOT / "contracts"])
    assert ROOT / "contracts" / "Consortium.sol" in sources
    assert not [s for s in sources if s.is_relative_to(ROOT / "contracts" / "test")]


# --- Slither itself ------------------------------------------------------------------------------


@needs_slither
def test_slither_catches_the_planted_tx_origin_check(tmp_path: Path) -> None:
    report = tmp_path / "report.json"
    result = slither_check("analyze", TX_ORIGIN, "--json", str(report))
    assert result.returncode != 0, _tail(result)
    findings = json.loads(report.read_text())["results"]["detectors"]
    tx_origin = [f for f in findings if f["check"] == "tx-origin"]
    assert len(tx_origin) == 1, [f["check"] for f in findings]
    assert tx_origin[0]["impact"] == "Medium"
    assert "TxOriginAuth.setValue(uint256)" in tx_origin[0]["description"]
    assert "NOT ACCEPTED [Medium] tx-origin" in result.stdout


@needs_slither
def test_slither_passes_on_the_production_contracts() -> None:
    result = slither_check("analyze")
    assert result.returncode == 0, _tail(result)
    assert " 0 not accepted." in result.stdout


@needs_slither
def test_slither_check_erc_problems_fail_the_check() -> None:
    result = slither_check(
        "erc",
        "--file",
        f"{FIXTURES}/NonConformantToken.sol",
        "--contract",
        "NonConformantToken",
        "--erc",
        "ERC20",
    )
    assert result.returncode == 1, _tail(result)
    assert "NonConformantToken ERC20: NOT conformant" in result.stdout
    assert "transfer(address,uint256) -> () should return bool" in result.stdout
