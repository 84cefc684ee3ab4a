"""A project-owned Anvil node: start, health-check, stop, and adopt one left running.

`AnvilNode` runs the Anvil binary from the pinned npm package (`node_modules/@foundry-rs/
anvil-linux-amd64/bin/anvil`) with ``--state FILE --state-interval N`` so the chain survives a
restart. Next to the state file it keeps ``anvil.pid`` (which process serves that state, on which
host, port and chain id) and ``anvil.log`` (everything Anvil prints). A node found running from an
earlier start -- ``make run`` twice, or a gateway that was killed -- is adopted rather than started
again, so two Anvils never write the same state file.

Everything Anvil-specific lives in this module (including `fund_dev_account`, which uses
``anvil_setBalance``); the ``rpc`` chain kind must never import it.

What Anvil 1.5.1 keeps across a restart (measured on this binary, 2026-11; see the test module
and the commands in the project report)
---------------------------------------------------------------------------------------------
* The state file is written (a) every ``--state-interval`` seconds, whether or not anything
  changed, and (b) on SIGTERM and on SIGINT before exiting with code 0 (a few ms for a small
  chain). It is NOT written on SIGKILL. The file is rewritten in place (``open(O_TRUNC)`` and
  ``write``; no temporary file, no rename, no fsync), so a crash in the middle of a dump can leave
  a truncated file, which Anvil then refuses to load (exit code 2, "failed to parse json file").
  `start` checks the file first, says so in one sentence, and keeps ``<state>.bak``, a copy of
  the last state file that loaded.
* After a SIGTERM restart the chain is identical: same block numbers and block hashes, same
  latest block and timestamp, balances and nonces, contract code and storage; transactions by
  hash, receipts (status, block number/hash, logs) and ``eth_getLogs`` (by range and by block
  hash) all answer as before, and the next block extends the old head (its parent hash is the old
  head's hash). An indexer and a receipt watcher can rely on this. Except block 0: each load
  makes a new genesis block (stamped with the loaded head's time) beside the dumped ones, and
  ``eth_getBlockByNumber(0)`` answers any of them; block 1 still names the original as its
  parent, which is served by hash (`crm_gateway.chain.genesis`; `chain verify` relies on that).
* Not restored: state *at historical blocks*. ``eth_getBalance``/``eth_call`` at an older block
  fail with ``BlockOutOfRangeError`` after a restart unless Anvil runs with
  ``--preserve-historical-states`` (setting ``ANVIL_PRESERVE_HISTORICAL_STATES``; it makes the
  file roughly 15x larger: 517 blocks took 13.6 MB instead of 0.84 MB). Also not restored:
  transactions still pending in the mempool (only possible with a block time): they are gone
  after a restart, even a clean one; their nonces are free again.
* After SIGKILL the chain comes back as of the last interval dump: a consistent prefix of the
  chain (blocks up to some N, with matching balances and nonces). Everything mined after that
  dump -- up to ``--state-interval`` seconds of blocks -- is lost: its transactions and receipts
  answer ``null`` and the next blocks reuse those numbers with DIFFERENT hashes. A watcher must
  treat "receipt seen earlier, now null" as lost and resubmit (a re-sent signed transaction gets
  the same hash); an indexer must compare block hashes and rewind, as for a reorg. With no dump
  yet (first seconds of a new chain), the whole chain is lost.
* The chain id comes from ``--chain-id`` on the command line, not from the state file, so a state
  file can be loaded under another chain id; `start` refuses to adopt a node answering with a
  different chain id.
* If the state file's directory does not exist Anvil starts anyway and silently never writes the
  state; `start` creates the directory first.
* Anvil logs every JSON-RPC method name (``RUST_LOG`` does not filter it); the log is moved to
  ``anvil.log.1`` at a start when it has grown past 10 MiB.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import IO, TYPE_CHECKING, Any, Final, Self

import httpx

from crm_gateway.config import PROJECT_ROOT, Settings, get_settings

if TYPE_CHECKING:
    from web3 import Web3

__all__ = ["AnvilError", "AnvilNode", "fund_dev_account"]

LOG_ROTATE_BYTES: Final = 10 * 1024 * 1024
_LOG_TAIL_LINES: Final = 15
_POLL_SECONDS: Final = 0.05
_LOG_HEADER: Final = "--- crm-chaincode starts Anvil at "
_ADDRESS_RE: Final = re.compile(r"0x[0-9a-fA-F]{40}")
# A node listening on a wildcard address is reached through loopback.
_WILDCARD_HOSTS: Final = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}  # noqa: S104


class AnvilError(RuntimeError):
    """Anvil could not be started, reached or stopped; the message says what to do."""


class _Unset:
    pass


_UNSET: Final = _Unset()


class AnvilNode:
    """One Anvil process serving one state file.

    Build it from `Settings` (``AnvilNode(settings)``) or pass any of the keyword arguments to
    override a setting. `start` either launches Anvil or adopts the one already serving this state
    file; `stop` ends it cleanly (SIGTERM, so Anvil writes its state, then SIGKILL after
    ``timeout``), whether launched or adopted; `kill` ends it with SIGKILL, as a crash would.
    Anvil runs in its own session, so Ctrl-C in a terminal reaches the gateway, which then stops
    the node in order, rather than both at once.
    """

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        binary: Path | str | None = None,
        host: str | None = None,
        port: int | None = None,
        state_file: Path | str | None = None,
        chain_id: int | None = None,
        state_interval: int | None = None,
        block_time: float | _Unset | None = _UNSET,
        preserve_historical_states: bool | None = None,
        start_timeout: float | None = None,
        log_file: Path | str | None = None,
    ) -> None:
        s = settings if settings is not None else get_settings()
        self.binary = _resolve(s, binary if binary is not None else s.anvil_binary)
        self.host = host if host is not None else s.anvil_host
        self.port = port if port is not None else s.anvil_port
        self.state_file = _resolve(s, state_file if state_file is not None else s.anvil_state_file)
        self.chain_id = chain_id if chain_id is not None else s.anvil_chain_id
        self.state_interval = (
            state_interval if state_interval is not None else s.anvil_state_interval_seconds
        )
        self.block_time = (
            s.anvil_block_time_seconds if isinstance(block_time, _Unset) else block_time
        )
        self.block_gas_limit = s.anvil_block_gas_limit
        self.preserve_historical_states = (
            preserve_historical_states
            if preserve_historical_states is not None
            else s.anvil_preserve_historical_states
        )
        self.start_timeout = (
            start_timeout if start_timeout is not None else s.anvil_start_timeout_seconds
        )
        self.log_file = (
            _resolve(s, log_file) if log_file is not None else self.state_file.parent / "anvil.log"
        )
        self.pid_file = self.state_file.parent / "anvil.pid"
        self.backup_file = self.state_file.with_name(self.state_file.name + ".bak")
        self._process: subprocess.Popen[bytes] | None = None
        self._adopted_pid: int | None = None

    # --- properties ------------------------------------------------------------------------

    @property
    def url(self) -> str:
        """The JSON-RPC URL of the node (a wildcard listen address is reached via loopback)."""
        host = _loopback_for(self.host)
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{self.port}"

    @property
    def pid(self) -> int | None:
        """The process id of the node this object started or adopted, while it runs."""
        if self._process is not None:
            return self._process.pid
        return self._adopted_pid

    @property
    def adopted(self) -> bool:
        """True when `start` attached to a node left running by an earlier start."""
        return self._adopted_pid is not None

    @property
    def is_running(self) -> bool:
        """True while the node this object started or adopted is alive."""
        if self._process is not None:
            return self._process.poll() is None
        if self._adopted_pid is not None:
            return _pid_alive(self._adopted_pid)
        return False

    def command(self) -> list[str]:
        """The Anvil command line `start` runs."""
        cmd = [
            str(self.binary),
            "--host",
            self.host,
            "--port",
            str(self.port),
            "--chain-id",
            str(self.chain_id),
            "--state",
            str(self.state_file),
            "--state-interval",
            str(self.state_interval),
        ]
        if self.block_time is not None:
            cmd += ["--block-time", f"{self.block_time:g}"]
        if self.block_gas_limit is not None:
            cmd += ["--gas-limit", str(self.block_gas_limit)]
        if self.preserve_historical_states:
            cmd.append("--preserve-historical-states")
        return cmd

    # --- lifecycle -------------------------------------------------------------------------

    def start(self) -> Self:
        """Start Anvil (or adopt the one serving this state file) and wait until it is healthy."""
        if self.is_running:
            return self
        self._process = None
        self._adopted_pid = None
        self._check_binary()
        self.state_file.parent.mkdir(parents=True, exist_ok=True)
        if self._adopt_earlier_node():
            return self
        if _port_in_use(self.host, self.port):
            raise AnvilError(
                f"port {self.port} on {self.host} is already in use by another process; "
                "set ANVIL_PORT to a free port"
            )
        self._check_state_file()
        self._launch()
        try:
            self.wait_until_healthy(self.start_timeout)
        except BaseException:
            self._abort_start()
            raise
        return self

    def wait_until_healthy(self, timeout: float | None = None) -> None:
        """Wait until ``eth_chainId`` answers with the configured chain id, or raise AnvilError."""
        timeout = self.start_timeout if timeout is None else timeout
        deadline = time.monotonic() + timeout
        while True:
            if self._process is not None and self._process.poll() is not None:
                tail = self.log_tail()
                raise AnvilError(
                    f"Anvil exited with code {self._process.returncode} while starting: "
                    f"{_key_line(tail)} (log: {self.log_file})\n{tail}"
                )
            if self._adopted_pid is not None and not _pid_alive(self._adopted_pid):
                raise AnvilError(f"the Anvil process {self._adopted_pid} is no longer running")
            try:
                answered = _chain_id(self.url, timeout=1.0)
            except (httpx.HTTPError, ValueError, KeyError, TypeError):
                answered = None
            if answered is not None:
                if answered != self.chain_id:
                    raise AnvilError(
                        f"the node at {self.url} reports chain id {answered}, "
                        f"not the configured ANVIL_CHAIN_ID={self.chain_id}"
                    )
                return
            if time.monotonic() >= deadline:
                raise AnvilError(
                    f"Anvil did not answer on {self.url} within {timeout:g} s "
                    f"(log: {self.log_file})\n{self.log_tail()}"
                )
            time.sleep(_POLL_SECONDS)

    def wait(self, timeout: float | None = None) -> int | None:
        """Block until the node exits, or ``timeout`` seconds pass.

        Returns the exit code of a node this object started once it has exited; None on timeout
        and for an adopted node (its exit code belongs to another parent).
        """
        if self._process is not None:
            try:
                return self._process.wait(timeout)
            except subprocess.TimeoutExpired:
                return None
        if self._adopted_pid is not None:
            deadline = None if timeout is None else time.monotonic() + timeout
            while _pid_alive(self._adopted_pid):
                if deadline is not None and time.monotonic() >= deadline:
                    break
                time.sleep(0.2)
        return None

    def stop(self, timeout: float = 15.0) -> None:
        """Stop the node cleanly: SIGTERM (Anvil writes its state), wait, then SIGKILL."""
        if self._process is not None:
            if self._process.poll() is None:
                self._process.terminate()
                try:
                    self._process.wait(timeout)
                except subprocess.TimeoutExpired:
                    self._process.kill()
                    self._process.wait()
            pid = self._process.pid
        elif self._adopted_pid is not None:
            pid = self._adopted_pid
            _signal_and_wait(pid, signal.SIGTERM, timeout)
            if _pid_alive(pid):
                _signal_and_wait(pid, signal.SIGKILL, 5.0)
        else:
            return
        self._remove_pid_file(pid)
        self._process = None
        self._adopted_pid = None

    def kill(self) -> None:
        """End the node with SIGKILL, as a crash would (state since the last dump is lost).

        The pid file is left behind, as after a real crash; the next `start` sees it is stale.
        """
        if self._process is not None:
            if self._process.poll() is None:
                self._process.kill()
            self._process.wait()
        elif self._adopted_pid is not None:
            _signal_and_wait(self._adopted_pid, signal.SIGKILL, 5.0)
        self._process = None
        self._adopted_pid = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "running" if self.is_running else "stopped"
        return f"AnvilNode({self.url}, chain_id={self.chain_id}, {self.state_file}, {state})"

    def log_tail(self, lines: int = _LOG_TAIL_LINES) -> str:
        """The last non-empty lines of the log since the last start ('' when there are none)."""
        try:
            with self.log_file.open("rb") as fh:
                fh.seek(0, os.SEEK_END)
                size = fh.tell()
                fh.seek(max(0, size - 8192))
                text = fh.read().decode("utf-8", "replace")
        except OSError:
            return ""
        kept = [line.rstrip() for line in text.splitlines() if line.strip()]
        starts = [i for i, line in enumerate(kept) if line.startswith(_LOG_HEADER)]
        if starts:
            kept = kept[starts[-1] + 1 :]
        return "\n".join(kept[-lines:])

    # --- internals -------------------------------------------------------------------------

    def _check_binary(self) -> None:
        if not self.binary.is_file():
            raise AnvilError(
                f"the Anvil binary {self.binary} is missing; run `npm ci` in {PROJECT_ROOT} "
                "to install it from package.json"
            )
        if not os.access(self.binary, os.X_OK):
            raise AnvilError(
                f"the Anvil binary {self.binary} is not executable; run `npm ci` in "
                f"{PROJECT_ROOT} to reinstall it"
            )

    def _check_state_file(self) -> None:
        """Refuse a damaged state file in one sentence; keep a copy of a good one."""
        if not self.state_file.exists():
            return
        try:
            with self.state_file.open("rb") as fh:
                json.load(fh)
        except (ValueError, OSError):
            hint = (
                f"restore {self.backup_file} (the copy taken at the last good start) or delete it"
                if self.backup_file.exists()
                else "delete it"
            )
            raise AnvilError(
                f"the Anvil state file {self.state_file} is damaged (not valid JSON, probably cut "
                f"short by a crash while Anvil was writing it); {hint} to start again"
            ) from None
        shutil.copy2(self.state_file, self.backup_file)

    def _launch(self) -> None:
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(OSError):
            if self.log_file.stat().st_size > LOG_ROTATE_BYTES:
                self.log_file.replace(self.log_file.with_name(self.log_file.name + ".1"))
        cmd = self.command()
        log: IO[bytes]
        with self.log_file.open("ab") as log:
            stamp = datetime.now(UTC).isoformat(timespec="seconds")
            log.write(f"{_LOG_HEADER}{stamp}: {' '.join(cmd)}\n".encode())
            log.flush()
            self._process = subprocess.Popen(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.state_file.parent,
                start_new_session=True,
            )
        self._write_pid_file(self._process.pid)

    def _abort_start(self) -> None:
        process = self._process
        if process is not None:
            if process.poll() is None:
                process.kill()
            process.wait()
            self._remove_pid_file(process.pid)
        self._process = None

    def _write_pid_file(self, pid: int) -> None:
        record = {
            "pid": pid,
            "host": self.host,
            "port": self.port,
            "chain_id": self.chain_id,
            "state_file": str(self.state_file),
            "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        tmp = self.pid_file.with_name(self.pid_file.name + ".tmp")
        tmp.write_text(json.dumps(record) + "\n", encoding="utf-8")
        tmp.replace(self.pid_file)

    def _read_pid_file(self) -> dict[str, Any] | None:
        try:
            record = json.loads(self.pid_file.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        if not isinstance(record, dict) or not isinstance(record.get("pid"), int):
            return None
        return record

    def _remove_pid_file(self, pid: int) -> None:
        record = self._read_pid_file()
        if record is not None and record["pid"] == pid:
            self.pid_file.unlink(missing_ok=True)

    def _adopt_earlier_node(self) -> bool:
        """Attach to the Anvil an earlier start left serving this state file, if any.

        Returns False when there is none (no pid file, or its process is gone, or the pid now
        belongs to another program); raises when there is one that cannot be adopted, since a
        second Anvil on the same state file would overwrite it.
        """
        record = self._read_pid_file()
        if record is None:
            return False
        pid: int = record["pid"]
        if not _is_anvil_serving(pid, self.state_file):
            return False
        where = f"{record.get('host')}:{record.get('port')}"
        if (record.get("host"), record.get("port")) != (self.host, self.port):
            raise AnvilError(
                f"an Anvil started earlier for {self.state_file} is still running (pid {pid}) "
                f"on {where}, not {self.host}:{self.port}; stop it (kill {pid}) or use "
                "another ANVIL_STATE_FILE"
            )
        self._adopted_pid = pid
        try:
            self.wait_until_healthy(min(self.start_timeout, 5.0))
        except AnvilError as exc:
            self._adopted_pid = None
            raise AnvilError(
                f"an Anvil started earlier for {self.state_file} is still running (pid {pid}) on "
                f"{where} but cannot be adopted ({exc}); stop it (kill {pid}) and start again"
            ) from None
        return True


def fund_dev_account(w3_or_url: Web3 | str, address: str, wei: int) -> None:
    """Set ``address``'s balance to ``wei`` on an Anvil node (``anvil_setBalance``).

    Anvil-specific: for development chains only, never for the ``rpc`` chain kind.
    """
    if not _ADDRESS_RE.fullmatch(address):
        raise ValueError(f"not a 20-byte hex address: {address!r}")
    if wei < 0:
        raise ValueError("wei must not be negative")
    params: list[Any] = [address, hex(wei)]
    if isinstance(w3_or_url, str):
        response = _rpc(w3_or_url, "anvil_setBalance", params, timeout=10.0)
    else:
        from web3.types import RPCEndpoint

        response = dict(w3_or_url.provider.make_request(RPCEndpoint("anvil_setBalance"), params))
    if response.get("error"):
        raise AnvilError(f"anvil_setBalance failed for {address}: {response['error']}")


# --- helpers -------------------------------------------------------------------------------


def _resolve(settings: Settings, value: Path | str) -> Path:
    return settings.path(Path(value))


def _key_line(tail: str) -> str:
    """The line of a log tail that best says why Anvil stopped."""
    lines = tail.splitlines()
    errors = [line.strip() for line in lines if "error" in line.lower()]
    if errors:
        return errors[-1]
    return lines[-1].strip() if lines else "it printed nothing"


def _loopback_for(host: str) -> str:
    return _WILDCARD_HOSTS.get(host, host)


def _rpc(url: str, method: str, params: Sequence[Any], *, timeout: float) -> dict[str, Any]:
    payload = {"jsonrpc": "2.0", "id": 1, "method": method, "params": list(params)}
    response = httpx.post(url, json=payload, timeout=timeout)
    response.raise_for_status()
    body = response.json()
    if not isinstance(body, dict):
        raise ValueError(f"unexpected JSON-RPC answer from {url}: {body!r}")
    return body


def _chain_id(url: str, *, timeout: float) -> int:
    body = _rpc(url, "eth_chainId", [], timeout=timeout)
    return int(body["result"], 16)


def _pid_alive(pid: int) -> bool:
    """True when ``pid`` exists and is not a zombie."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return True
    # The state letter follows the parenthesised command name, which may itself hold spaces.
    return stat.rpartition(")")[2].split()[:1] != ["Z"]


def _is_anvil_serving(pid: int, state_file: Path) -> bool:
    """True when ``pid`` is alive and is an Anvil started with ``--state state_file``."""
    if not _pid_alive(pid):
        return False
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    args = [a.decode("utf-8", "replace") for a in argv if a]
    if not args or Path(args[0]).name != "anvil":
        return False
    target = state_file.resolve()
    return any(
        a == "--state" and i + 1 < len(args) and Path(args[i + 1]).resolve() == target
        for i, a in enumerate(args)
    )


def _signal_and_wait(pid: int, sig: signal.Signals, timeout: float) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)
    deadline = time.monotonic() + timeout
    while _pid_alive(pid) and time.monotonic() < deadline:
        time.sleep(_POLL_SECONDS)


def _port_in_use(host: str, port: int) -> bool:
    """True when something listens on (or has bound) ``host:port``."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    target = _loopback_for(host)
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.settimeout(0.5)
        if probe.connect_ex((target, port)) == 0:
            return True
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            return exc.errno == errno.EADDRINUSE
    return False
