"""Compile the Solidity sources under `contracts/` into artifacts under `abi/`.

The compiler is solc-js from the pinned npm package, driven through Node with an import callback
that resolves `@openzeppelin/...` from `node_modules` only. Where a native `solc` of the same pinned
version is installed (py-solc-x's directory or `PATH`), it is used instead with the same standard
JSON input, so both paths produce the same bytecode. Nothing is ever downloaded.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from crm_gateway.config import Settings

# The import callback refuses anything outside node_modules, so a source cannot read arbitrary
# files from the build machine through an import path.
_SOLCJS_DRIVER = r"""
const path = require('path');
const fs = require('fs');
const nodeModules = path.resolve(process.argv[1]);
const solc = require(path.join(nodeModules, 'solc'));
let input = '';
process.stdin.on('data', (chunk) => { input += chunk; });
process.stdin.on('end', () => {
  const findImports = (importPath) => {
    const resolved = path.resolve(nodeModules, importPath);
    if (!resolved.startsWith(nodeModules + path.sep)) {
      return { error: 'import outside node_modules refused: ' + importPath };
    }
    try {
      return { contents: fs.readFileSync(resolved, 'utf8') };
    } catch (err) {
      return { error: 'not found: ' + importPath };
    }
  };
  const output = solc.compile(input, { import: findImports });
  process.stdout.write(JSON.stringify({ version: solc.version(), output: JSON.parse(output) }));
});
"""


class CompilerError(RuntimeError):
    """The compiler could not be run, or the sources did not compile."""


@dataclass(frozen=True)
class Artifact:
    """One compiled contract, as written to `abi/<Contract>.json`."""

    contract_name: str
    source_name: str
    abi: list[dict[str, Any]]
    bytecode: str
    deployed_bytecode: str
    compiler: dict[str, str]
    settings: dict[str, Any]
    source_hash: str

    @property
    def artifact_hash(self) -> str:
        """A hash of what a deployment depends on: the ABI and the creation bytecode."""
        payload = json.dumps({"abi": self.abi, "bytecode": self.bytecode}, sort_keys=True)
        return "0x" + hashlib.sha256(payload.encode()).hexdigest()

    def to_json(self) -> dict[str, Any]:
        return {
            "contractName": self.contract_name,
            "sourceName": self.source_name,
            "abi": self.abi,
            "bytecode": self.bytecode,
            "deployedBytecode": self.deployed_bytecode,
            "compiler": self.compiler,
            "settings": self.settings,
            "sourceHash": self.source_hash,
            "artifactHash": self.artifact_hash,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Artifact:
        return cls(
            contract_name=data["contractName"],
            source_name=data["sourceName"],
            abi=data["abi"],
            bytecode=data["bytecode"],
            deployed_bytecode=data["deployedBytecode"],
            compiler=data["compiler"],
            settings=data["settings"],
            source_hash=data["sourceHash"],
        )


def compiler_settings(settings: Settings) -> dict[str, Any]:
    """The pinned solc settings; part of every artifact so a reader can reproduce it."""
    return {
        "optimizer": {"enabled": True, "runs": settings.optimizer_runs},
        "evmVersion": settings.evm_version,
        "viaIR": False,
        "metadata": {"bytecodeHash": "ipfs"},
    }


def collect_sources(settings: Settings) -> dict[str, str]:
    """Every `.sol` file under the contracts directory, keyed by its project-relative path."""
    root = settings.path(settings.contracts_dir)
    project = root.parent
    sources = {
        path.relative_to(project).as_posix(): path.read_text(encoding="utf-8")
        for path in sorted(root.rglob("*.sol"))
    }
    if not sources:
        raise CompilerError(f"no Solidity sources found under {root}")
    return sources


def _standard_input(sources: dict[str, str], settings: Settings) -> dict[str, Any]:
    return {
        "language": "Solidity",
        "sources": {name: {"content": text} for name, text in sources.items()},
        "settings": {
            **compiler_settings(settings),
            "outputSelection": {
                "*": {
                    "*": ["abi", "metadata", "evm.bytecode.object", "evm.deployedBytecode.object"]
                }
            },
        },
    }


def _source_hash(
    source_names: Iterable[str], input_sources: dict[str, str], cfg: dict[str, Any]
) -> str:
    """Hash the sources a contract is built from (ours and OpenZeppelin's) plus the settings.

    Only the contract's own import closure counts (the source list of its compiler metadata), so
    adding or editing an unrelated contract leaves its artifact current.
    """
    digest = hashlib.sha256()
    digest.update(json.dumps(cfg, sort_keys=True).encode())
    for name in sorted(source_names):
        digest.update(name.encode())
        digest.update(b"\0")
        digest.update(hashlib.sha256(input_sources.get(name, "").encode()).digest())
    return "0x" + digest.hexdigest()


def _run_solcjs(standard_input: dict[str, Any], settings: Settings) -> tuple[str, dict[str, Any]]:
    node_modules = settings.path(settings.node_modules_dir)
    if not (node_modules / "solc" / "package.json").is_file():
        raise CompilerError(f"solc-js is not installed in {node_modules}; run `npm ci` first")
    if shutil.which(settings.node_binary) is None:
        raise CompilerError(f"Node.js ({settings.node_binary}) is not on PATH")
    completed = subprocess.run(
        [settings.node_binary, "-e", _SOLCJS_DRIVER, str(node_modules)],
        input=json.dumps(standard_input),
        capture_output=True,
        text=True,
        check=False,
    )
    if completed.returncode != 0:
        raise CompilerError(f"solc-js failed: {completed.stderr.strip()}")
    result = json.loads(completed.stdout)
    return f"solc-js {result['version']}", result["output"]


def _native_solc(settings: Settings) -> Path | None:
    """A native solc binary of exactly the pinned version, if one is installed."""
    try:
        import solcx
        from solcx.exceptions import SolcNotInstalled
    except ImportError:  # pragma: no cover - py-solc-x is a declared dependency
        return None
    try:
        return Path(solcx.install.get_executable(settings.solc_version))
    except (SolcNotInstalled, FileNotFoundError):
        pass
    on_path = shutil.which("solc")
    if on_path is None:
        return None
    probe = subprocess.run([on_path, "--version"], capture_output=True, text=True, check=False)
    return Path(on_path) if f"Version: {settings.solc_version}+" in probe.stdout else None


def _run_native(
    binary: Path, standard_input: dict[str, Any], settings: Settings
) -> tuple[str, dict[str, Any]]:
    from solcx.wrapper import solc_wrapper

    # --include-path makes native solc name OpenZeppelin sources `@openzeppelin/...`, exactly as
    # the solc-js import callback does, so the metadata hash and thus the bytecode are identical.
    project = settings.path(settings.contracts_dir).parent
    stdout, _stderr, _args, _proc = solc_wrapper(
        solc_binary=binary,
        stdin=json.dumps(standard_input),
        standard_json=True,
        base_path=str(project),
        include_path=str(settings.path(settings.node_modules_dir)),
    )
    return f"solc {settings.solc_version}+native", json.loads(stdout)


def compile_contracts(settings: Settings, *, prefer_native: bool = True) -> list[Artifact]:
    """Compile every contract and return its artifacts (only deployable contracts)."""
    sources = collect_sources(settings)
    standard_input = _standard_input(sources, settings)
    native = _native_solc(settings) if prefer_native else None
    if native is not None:
        label, output = _run_native(native, standard_input, settings)
    else:
        label, output = _run_solcjs(standard_input, settings)

    errors = [e for e in output.get("errors", []) if e.get("severity") == "error"]
    if errors:
        raise CompilerError("\n".join(e.get("formattedMessage", e["message"]) for e in errors))
    compiler_name, version = label.split(" ", 1)
    if not version.startswith(settings.solc_version + "+"):
        raise CompilerError(
            f"the installed compiler is {version}, but {settings.solc_version} is pinned; "
            "run `npm ci` to install the pinned version"
        )

    all_sources = _all_source_texts(output, sources, settings)
    cfg = compiler_settings(settings)
    artifacts = []
    own_prefix = settings.path(settings.contracts_dir).name + "/"
    for source_name, contracts in sorted(output.get("contracts", {}).items()):
        if not source_name.startswith(own_prefix):
            continue
        for name, compiled in sorted(contracts.items()):
            bytecode = compiled["evm"]["bytecode"]["object"]
            if not bytecode:  # interfaces and abstract contracts
                continue
            artifacts.append(
                Artifact(
                    contract_name=name,
                    source_name=source_name,
                    abi=compiled["abi"],
                    bytecode="0x" + bytecode,
                    deployed_bytecode="0x" + compiled["evm"]["deployedBytecode"]["object"],
                    compiler={"name": compiler_name, "version": version},
                    settings=cfg,
                    source_hash=_source_hash(
                        json.loads(compiled["metadata"])["sources"], all_sources, cfg
                    ),
                )
            )
    _reject_duplicate_names(artifacts)
    return artifacts


def _all_source_texts(
    output: dict[str, Any], sources: dict[str, str], settings: Settings
) -> dict[str, str]:
    node_modules = settings.path(settings.node_modules_dir)
    texts = dict(sources)
    for name in output.get("sources", {}):
        if name not in texts:
            candidate = node_modules / name
            texts[name] = candidate.read_text(encoding="utf-8") if candidate.is_file() else ""
    return texts


def _reject_duplicate_names(artifacts: Iterable[Artifact]) -> None:
    seen: dict[str, str] = {}
    for artifact in artifacts:
        if artifact.contract_name in seen:
            raise CompilerError(
                f"contract name {artifact.contract_name} is defined in both "
                f"{seen[artifact.contract_name]} and {artifact.source_name}"
            )
        seen[artifact.contract_name] = artifact.source_name


def write_artifacts(artifacts: Iterable[Artifact], settings: Settings) -> list[Path]:
    """Write `abi/<Contract>.json` for each artifact and remove artifacts of deleted contracts."""
    abi_dir = settings.path(settings.abi_dir)
    abi_dir.mkdir(parents=True, exist_ok=True)
    written = []
    names = set()
    for artifact in artifacts:
        target = abi_dir / f"{artifact.contract_name}.json"
        target.write_text(json.dumps(artifact.to_json(), indent=2, sort_keys=True) + "\n")
        written.append(target)
        names.add(target.name)
    for stale in abi_dir.glob("*.json"):
        if stale.name not in names:
            stale.unlink()
    return written


def stale_artifacts(settings: Settings) -> list[str]:
    """Names of committed artifacts that differ from a fresh compilation (empty when current)."""
    fresh = {a.contract_name: a.to_json() for a in compile_contracts(settings)}
    abi_dir = settings.path(settings.abi_dir)
    committed = {
        p.stem: json.loads(p.read_text(encoding="utf-8")) for p in sorted(abi_dir.glob("*.json"))
    }
    keys = ("abi", "bytecode", "deployedBytecode", "settings", "sourceHash")
    stale = [
        name
        for name, data in fresh.items()
        if name not in committed or any(committed[name].get(k) != data[k] for k in keys)
    ]
    stale += [name for name in committed if name not in fresh]
    return sorted(stale)
