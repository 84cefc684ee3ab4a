"""Fixtures for the contract tests: both chains, the Consortium deployment, revert decoding.

Every test that uses `w3` (directly or through `chain`/`consortium`) runs twice: on `embedded`
(one eth-tester chain on py-evm per session, each test undone with `take_snapshot`/
`revert_to_snapshot`) and on `anvil` (one Anvil process per session, started from the npm binary
on a free port and killed at session end, each test undone with `evm_snapshot`/`evm_revert`).
Run `pytest -m "not anvil"` for the embedded chain only.

A module that needs a larger deployment in every test may instead build it once per chain on
`module_chain` (over `module_w3`, undone when the module is done) and undo each test itself with
`chain.isolated()`; such a module must not also use the function-scoped fixtures (`w3`, `chain`,
`consortium`, `add_org`, ...).

`decode_revert` (with `revert_data`) is standalone on purpose, to be lifted into the gateway.
"""

from __future__ import annotations

import ast
import json
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from eth_abi import decode as abi_decode
from eth_tester.exceptions import TransactionFailed
from eth_utils import function_signature_to_4byte_selector, to_checksum_address
from web3 import EthereumTesterProvider, HTTPProvider, Web3
from web3.contract import Contract
from web3.exceptions import ContractLogicError
from web3.logs import DISCARD
from web3.types import TxReceipt

PROJECT_ROOT = Path(__file__).resolve().parents[2]
ABI_DIR = PROJECT_ROOT / "abi"
CONSORTIUM_ARTIFACT = ABI_DIR / "Consortium.json"
ANVIL_BINARY = PROJECT_ROOT / "node_modules/@foundry-rs/anvil-linux-amd64/bin/anvil"

DEFAULT_THRESHOLD_BPS = 5_001
DEFAULT_LIFETIME = 3_600
DEPLOY_GAS = 6_000_000
TX_GAS = 2_000_000

# ------------------------------------------------------------------------------------------------
# Revert decoding (standalone: no pytest, no fixtures)
# ------------------------------------------------------------------------------------------------

_BUILTIN_ERRORS: list[dict[str, Any]] = [
    {"type": "error", "name": "Error", "inputs": [{"name": "message", "type": "string"}]},
    {"type": "error", "name": "Panic", "inputs": [{"name": "code", "type": "uint256"}]},
]


class RevertDecodingError(ValueError):
    """The exception carries no revert data, or data that matches no error of the ABI."""


def _canonical_type(param: dict[str, Any]) -> str:
    """The canonical ABI type of a parameter, expanding tuples (`tuple[2]` -> `(a,b)[2]`)."""
    kind: str = param["type"]
    if kind.startswith("tuple"):
        inner = ",".join(_canonical_type(c) for c in param["components"])
        return f"({inner}){kind[len('tuple') :]}"
    return kind


def _normalize(value: Any) -> Any:
    """Checksum addresses (eth-abi returns them lower-case) and turn lists into tuples."""
    if isinstance(value, str) and len(value) == 42 and value.startswith("0x"):
        try:
            return to_checksum_address(value)
        except ValueError:
            return value
    if isinstance(value, list | tuple):
        return tuple(_normalize(v) for v in value)
    return value


def _as_bytes(value: Any) -> bytes | None:
    """Bytes from raw bytes or a `0x` hex string."""
    if isinstance(value, bytes | bytearray):
        return bytes(value)
    if isinstance(value, str) and value.startswith("0x"):
        try:
            return bytes.fromhex(value[2:])
        except ValueError:
            return None
    return None


def _bytes_literal(value: str) -> bytes | None:
    """Bytes from the Python repr of a bytes object (`b'...'`), as eth-tester's eth_call gives."""
    if len(value) < 3 or value[0] != "b" or value[1] not in "'\"" or value[-1] != value[1]:
        return None
    try:
        parsed = ast.literal_eval(value)
    except (ValueError, SyntaxError):
        return None
    return parsed if isinstance(parsed, bytes) else None


def revert_data(exc: BaseException) -> bytes | None:
    """The raw revert data carried by `exc` or an exception it was raised from.

    Where it is found:

    - web3 over JSON-RPC (Anvil, Besu, ...): `ContractLogicError`/`ContractCustomError`/
      `ContractPanicError` with the data as hex in `.data`;
    - eth-tester, transactions (`eth_estimateGas`/`eth_sendTransaction`): `TransactionFailed`
      whose context chain holds an exception (py-evm's `Revert`) whose first argument is the raw
      bytes;
    - eth-tester, calls (`eth_call`): `TransactionFailed` whose context chain holds a
      `TransactionFailed` whose first argument is the repr of the raw bytes (`"b'...'"`).

    Only raw data is used: error messages are never matched.
    """
    pending: list[BaseException] = [exc]
    seen: set[int] = set()
    while pending:
        current = pending.pop(0)
        if id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, ContractLogicError):
            data = _as_bytes(current.data)
            if data is not None:
                return data
        for arg in current.args[:1]:
            if isinstance(arg, bytes | bytearray):
                return bytes(arg)
            if isinstance(arg, str) and (literal := _bytes_literal(arg)) is not None:
                return literal
            if isinstance(arg, BaseException):
                pending.append(arg)
        for linked in (current.__cause__, current.__context__):
            if linked is not None:
                pending.append(linked)
    return None


def decode_revert(exc: BaseException, abi: list[dict[str, Any]]) -> tuple[str, tuple[Any, ...]]:
    """Decode the revert of `exc` into `(error name, args)` against the custom errors of `abi`.

    Matches by 4-byte selector; also knows `Error(string)` and `Panic(uint256)`. A bare
    `revert()` decodes to `("", ())`. Addresses come back checksummed, arrays as tuples.
    Raises `RevertDecodingError` if there is no revert data or its selector is unknown.
    """
    data = revert_data(exc)
    if data is None:
        raise RevertDecodingError(f"no revert data in {type(exc).__name__}: {exc}")
    if not data:
        return "", ()
    if len(data) < 4:
        raise RevertDecodingError(f"revert data too short for a selector: 0x{data.hex()}")
    for entry in [*abi, *_BUILTIN_ERRORS]:
        if entry.get("type") != "error":
            continue
        types = [_canonical_type(p) for p in entry.get("inputs", [])]
        signature = f"{entry['name']}({','.join(types)})"
        if function_signature_to_4byte_selector(signature) == data[:4]:
            return entry["name"], _normalize(abi_decode(types, data[4:]))
    raise RevertDecodingError(f"unknown error selector 0x{data[:4].hex()}")


# ------------------------------------------------------------------------------------------------
# Chains
# ------------------------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _rpc(w3: Web3, method: str, params: list[Any] | None = None) -> Any:
    response = w3.provider.make_request(method, params or [])  # type: ignore[arg-type]
    if "error" in response:
        raise RuntimeError(f"{method} failed: {response['error']}")
    return response["result"]


@pytest.fixture(scope="session")
def anvil_url() -> Iterator[str]:
    """One Anvil process for the session, on a free port; killed at session end."""
    if not ANVIL_BINARY.is_file():
        pytest.skip(f"Anvil binary not installed at {ANVIL_BINARY} (run `npm ci`)")
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    process = subprocess.Popen(
        [str(ANVIL_BINARY), "--port", str(port), "--silent"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        probe = Web3(HTTPProvider(url, request_kwargs={"timeout": 2}))
        deadline = time.monotonic() + 30
        while not probe.is_connected():
            if process.poll() is not None:
                pytest.fail(f"Anvil exited early with code {process.returncode}")
            if time.monotonic() > deadline:
                pytest.fail("Anvil did not answer within 30 s")
            time.sleep(0.05)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@contextmanager
def undone(w3: Web3) -> Iterator[None]:
    """Undo whatever the block does to the chain: an eth-tester snapshot on the embedded chain,
    `evm_snapshot`/`evm_revert` over JSON-RPC. Nests."""
    if isinstance(w3.provider, EthereumTesterProvider):
        tester = w3.provider.ethereum_tester
        snapshot_id = tester.take_snapshot()
        try:
            yield
        finally:
            tester.revert_to_snapshot(snapshot_id)
        return
    snapshot = _rpc(w3, "evm_snapshot")
    try:
        yield
    finally:
        _rpc(w3, "evm_revert", [snapshot])


@pytest.fixture(scope="session")
def embedded_w3() -> Web3:
    """One eth-tester chain for the session; `w3` undoes each test with a snapshot."""
    return Web3(EthereumTesterProvider())


@pytest.fixture(params=[pytest.param("embedded"), pytest.param("anvil", marks=pytest.mark.anvil)])
def w3(request: pytest.FixtureRequest) -> Iterator[Web3]:
    """A connected Web3 with unlocked dev accounts; whatever a test does is undone after it."""
    if request.param == "embedded":
        web3: Web3 = request.getfixturevalue("embedded_w3")
        tester = web3.provider.ethereum_tester  # type: ignore[attr-defined]
        snapshot_id = tester.take_snapshot()
        try:
            yield web3
        finally:
            tester.revert_to_snapshot(snapshot_id)
        return
    web3 = Web3(HTTPProvider(request.getfixturevalue("anvil_url")))
    snapshot = _rpc(web3, "evm_snapshot")
    try:
        yield web3
    finally:
        _rpc(web3, "evm_revert", [snapshot])


@pytest.fixture(
    scope="module",
    params=[pytest.param("embedded"), pytest.param("anvil", marks=pytest.mark.anvil)],
)
def module_w3(request: pytest.FixtureRequest) -> Iterator[Web3]:
    """Like `w3`, but undone only when the module is done: for a module that deploys once per
    chain and isolates each test itself (`with chain.isolated(): ...`, see `module_chain`).
    A module must use either this or `w3`, never both."""
    if request.param == "embedded":
        web3: Web3 = request.getfixturevalue("embedded_w3")
    else:
        web3 = Web3(HTTPProvider(request.getfixturevalue("anvil_url")))
    with undone(web3):
        yield web3


@pytest.fixture(name="decode_revert", scope="session")
def decode_revert_fixture() -> Callable[
    [BaseException, list[dict[str, Any]]], tuple[str, tuple[Any, ...]]
]:
    """`decode_revert` itself, for tests (test modules cannot import a conftest reliably)."""
    return decode_revert


def load_artifact(name: str) -> dict[str, Any]:
    """The committed `abi/<name>.json`; fails the test if it is missing."""
    path = ABI_DIR / f"{name}.json"
    if not path.is_file():
        pytest.fail(f"{path} is missing; compile the contracts first")
    return dict(json.loads(path.read_text(encoding="utf-8")))


@pytest.fixture(scope="session")
def consortium_artifact() -> dict[str, Any]:
    """The committed `abi/Consortium.json`."""
    return load_artifact("Consortium")


@pytest.fixture(scope="session")
def customer_registry_artifact() -> dict[str, Any]:
    """The committed `abi/CustomerRegistry.json`."""
    return load_artifact("CustomerRegistry")


@dataclass
class Chain:
    """Test helpers bound to one chain and the Consortium artifact."""

    w3: Web3
    artifact: dict[str, Any]

    @property
    def accounts(self) -> list[str]:
        return list(self.w3.eth.accounts)

    @property
    def abi(self) -> list[dict[str, Any]]:
        return list(self.artifact["abi"])

    def deploy(
        self,
        founder_name: str = "founder",
        founder_admin: str | None = None,
        threshold_bps: int = DEFAULT_THRESHOLD_BPS,
        lifetime: int = DEFAULT_LIFETIME,
        sender: str | None = None,
    ) -> tuple[Contract, TxReceipt]:
        """Deploy Consortium (deployer accounts[0], founder admin accounts[1] by default)."""
        factory = self.w3.eth.contract(abi=self.abi, bytecode=self.artifact["bytecode"])
        admin = founder_admin if founder_admin is not None else self.accounts[1]
        constructor = factory.constructor(founder_name, admin, threshold_bps, lifetime)
        deployer = sender or self.accounts[0]
        tx_hash = constructor.transact({"from": deployer, "gas": DEPLOY_GAS})
        receipt = self.w3.eth.wait_for_transaction_receipt(tx_hash)
        if receipt["status"] != 1:
            tx = {"from": deployer, "data": constructor.data_in_transaction}
            self._replay_failure(lambda block: self.w3.eth.call(tx, block), receipt)
        contract = self.w3.eth.contract(address=receipt["contractAddress"], abi=self.abi)
        return contract, receipt

    def deploy_artifact(
        self, artifact: dict[str, Any], *args: Any, sender: str | None = None
    ) -> tuple[Contract, TxReceipt]:
        """Deploy any compiled artifact with constructor `args` (from accounts[0] by default)."""
        factory = self.w3.eth.contract(abi=artifact["abi"], bytecode=artifact["bytecode"])
        constructor = factory.constructor(*args)
        deployer = sender or self.accounts[0]
        tx_hash = constructor.transact({"from": deployer, "gas": DEPLOY_GAS})
        receipt = self.w3.eth.wait_for_transaction_receipt(tx_hash)
        if receipt["status"] != 1:
            tx = {"from": deployer, "data": constructor.data_in_transaction}
            self._replay_failure(lambda block: self.w3.eth.call(tx, block), receipt)
        contract = self.w3.eth.contract(address=receipt["contractAddress"], abi=artifact["abi"])
        return contract, receipt

    def transact(self, call: Any, sender: str, gas: int = TX_GAS) -> TxReceipt:
        """Send a contract call from `sender` and return its receipt; re-raise a revert.

        The gas is given rather than estimated, which is several times faster on eth-tester
        (py-evm estimates by binary search). A failed transaction is replayed as a call on the
        state it ran on, so the revert surfaces exactly as from a direct call.
        """
        receipt = self.w3.eth.wait_for_transaction_receipt(
            call.transact({"from": sender, "gas": gas})
        )
        if receipt["status"] != 1:
            self._replay_failure(
                lambda block: call.call({"from": sender}, block_identifier=block), receipt
            )
        return receipt

    def grant(self, consortium: Any, role: bytes, account: str, admin: str) -> TxReceipt:
        """`admin` grants `role` to `account`; an account of no organisation first agrees to join
        the admin's by its own transaction (`acceptMembership`), as the Consortium requires.
        `consortium` is the contract or its `functions`. Returns the grant's receipt."""
        fns = getattr(consortium, "functions", consortium)
        if fns.organizationOf(account).call() == 0:
            self.transact(fns.acceptMembership(fns.organizationOf(admin).call()), account)
        return self.transact(fns.grantRole(role, account), admin)

    @staticmethod
    def _replay_failure(replay: Callable[[int], Any], receipt: TxReceipt) -> None:
        replay(receipt["blockNumber"] - 1)  # raises the revert of the failed transaction
        raise AssertionError(f"transaction failed without revert data: {receipt}")

    def events(self, contract: Contract, name: str, receipt: TxReceipt) -> list[dict[str, Any]]:
        """The args of every `name` event of `contract` in `receipt`, in log order."""
        event = contract.events[name]()
        return [dict(log["args"]) for log in event.process_receipt(receipt, errors=DISCARD)]

    def event_names(self, contract: Contract, receipt: TxReceipt) -> list[str]:
        """The names of all events of `contract` in `receipt`, in log order."""
        by_topic = {}
        for entry in contract.abi:
            if entry["type"] == "event":
                types = ",".join(_canonical_type(p) for p in entry["inputs"])
                topic = Web3.keccak(text=f"{entry['name']}({types})")
                by_topic[bytes(topic)] = entry["name"]
        return [
            by_topic[bytes(log["topics"][0])]
            for log in receipt["logs"]
            if log["address"] == contract.address
        ]

    def latest_timestamp(self) -> int:
        return int(self.w3.eth.get_block("latest")["timestamp"])

    def advance_time(self, seconds: int) -> None:
        """Move the chain clock forward by `seconds` and mine a block there."""
        if isinstance(self.w3.provider, EthereumTesterProvider):
            tester = self.w3.provider.ethereum_tester
            tester.time_travel(self.latest_timestamp() + seconds)
            tester.mine_blocks(1)
        else:
            _rpc(self.w3, "evm_increaseTime", [seconds])
            _rpc(self.w3, "evm_mine")

    @contextmanager
    def reverts(
        self, name: str, *args: Any, abi: list[dict[str, Any]] | None = None
    ) -> Iterator[None]:
        """Assert that the block raises a revert decoding to custom error `name(*args)`.

        Errors are looked up in `abi` (another contract's), or in the Consortium's by default.
        """
        with pytest.raises((TransactionFailed, ContractLogicError)) as info:
            yield
        assert decode_revert(info.value, self.abi if abi is None else abi) == (name, tuple(args))

    @contextmanager
    def isolated(self) -> Iterator[None]:
        """Undo whatever the block does to the chain (a nested snapshot): per test on a
        `module_chain`, or per hypothesis example inside one test."""
        with undone(self.w3):
            yield


@pytest.fixture
def chain(w3: Web3, consortium_artifact: dict[str, Any]) -> Chain:
    """Helpers bound to the parametrized chain."""
    return Chain(w3, consortium_artifact)


@pytest.fixture(scope="module")
def module_chain(module_w3: Web3, consortium_artifact: dict[str, Any]) -> Chain:
    """Helpers bound to the module-scoped chain (`module_w3`)."""
    return Chain(module_w3, consortium_artifact)


@pytest.fixture
def accounts(chain: Chain) -> list[str]:
    """The chain's unlocked dev accounts (at least ten)."""
    accounts = chain.accounts
    assert len(accounts) >= 10
    return accounts


@pytest.fixture
def deployment(chain: Chain) -> tuple[Contract, TxReceipt]:
    """Consortium with defaults: deployer accounts[0]; org 1 "founder", admin accounts[1]."""
    return chain.deploy()


@pytest.fixture
def consortium(deployment: tuple[Contract, TxReceipt]) -> Contract:
    """The default Consortium deployment."""
    return deployment[0]


@pytest.fixture
def roles(consortium: Contract) -> dict[str, bytes]:
    """Role name -> role id, read from the contract's constants."""
    names = [
        "CONSORTIUM_ADMIN",
        "ORG_ADMIN",
        "DATA_STEWARD",
        "AGENT",
        "MARKETER",
        "AUDITOR",
        "MERCHANT",
        "RELAYER",
    ]
    return {name: bytes(consortium.functions[name]().call()) for name in names}


def add_organization(
    chain: Chain, consortium: Contract, admins: dict[int, str], name: str, admin: str
) -> int:
    """Add organisation `name` (first admin `admin`) through governance; return its id.

    `admins` maps the organisations created so far (at least the founder, 1) to an ORG_ADMIN
    each: the founder's admin proposes and executes, the others approve until the threshold is
    met. The new organisation's admin is added to `admins`.
    """
    fns = consortium.functions
    founder_admin = admins[1]
    receipt = chain.transact(fns.proposeAddOrganization(name, admin), founder_admin)
    proposal_id = chain.events(consortium, "ProposalCreated", receipt)[0]["proposalId"]
    required = fns.requiredApprovals().call()
    for org_id, org_admin in sorted(admins.items()):
        if fns.approvalCount(proposal_id).call() >= required:
            break
        if org_id != 1 and fns.organization(org_id).call()[3]:
            chain.transact(fns.approve(proposal_id), org_admin)
    receipt = chain.transact(fns.execute(proposal_id), founder_admin)
    org_id = int(chain.events(consortium, "OrganizationAdded", receipt)[0]["orgId"])
    admins[org_id] = admin
    return org_id


@pytest.fixture(name="add_organization", scope="session")
def add_organization_fixture() -> Callable[[Chain, Contract, dict[int, str], str, str], int]:
    """`add_organization` itself, for modules on `module_chain` (which cannot use `add_org`)."""
    return add_organization


@pytest.fixture
def add_org(chain: Chain, consortium: Contract, accounts: list[str]) -> Callable[[str, str], int]:
    """Add an organisation through governance, gathering approvals from every active org.

    Proposed by the founder admin (accounts[1]); the admins of the other active organisations
    that the helper itself created approve. Returns the new organisation id.
    """
    admins: dict[int, str] = {1: accounts[1]}

    def _add(name: str, admin: str) -> int:
        return add_organization(chain, consortium, admins, name, admin)

    return _add


@pytest.fixture
def world(base_world: Any) -> Iterator[Any]:
    """The module's `base_world` (each contract's test module builds its own, once); whatever a
    test does to its chain, and to the organisation admins it tracks where it has them, is undone
    after the test."""
    admins = dict(base_world.admins) if hasattr(base_world, "admins") else None
    with base_world.chain.isolated():
        yield base_world
    if admins is not None:
        base_world.admins = admins
