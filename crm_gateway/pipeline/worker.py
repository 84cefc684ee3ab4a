"""Run the sender and the watcher in background threads of the gateway (or a CLI command)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from crm_gateway.pipeline.leases import Hold, Leases
from crm_gateway.pipeline.sender import Sender
from crm_gateway.pipeline.watcher import Watcher

log = logging.getLogger(__name__)

WATCHER_LEASE = "watcher"


class PipelineWorker:
    """The sender sends in every process (each for the signers whose lease it holds); the
    watcher runs in the one process holding the `watcher` lease."""

    def __init__(
        self,
        sender: Sender,
        watcher: Watcher,
        *,
        sender_poll: float,
        watcher_poll: float,
        leases: Leases | None = None,
    ) -> None:
        self.sender = sender
        self.watcher = watcher
        self._leases = leases
        self._sender_poll = sender_poll
        self._watcher_poll = watcher_poll
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._threads: list[threading.Thread] = []

    @property
    def running(self) -> bool:
        return any(thread.is_alive() for thread in self._threads)

    def start(self, *, sender: bool = True) -> None:
        """Start the sender and watcher threads (again, after `stop`); a no-op while running.

        Without `sender`, only the watcher runs here: the caller sends (`sender.run_once`).
        """
        if self.running:
            return
        self._stop.clear()
        self._threads = [
            threading.Thread(
                target=self._loop,
                args=(self.watch_once, self._watcher_poll, self._stop),
                name="pipeline-watcher",
                daemon=True,
            ),
        ]
        if sender:
            self._threads.append(
                threading.Thread(
                    target=self._loop,
                    args=(self.sender.run_once, self._sender_poll, self._wake),
                    name="pipeline-sender",
                    daemon=True,
                )
            )
        for thread in self._threads:
            thread.start()

    def watch_once(self) -> int:
        """One round of the watcher, if this process is the organisation's watcher."""
        if self._leases is not None and self._leases.hold(WATCHER_LEASE) is Hold.NOT_HELD:
            return 0
        return self.watcher.run_once()

    def wake(self) -> None:
        """Tell the sender new rows are waiting, so it need not wait for its next poll."""
        self._wake.set()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self._wake.set()
        for thread in self._threads:
            if thread.is_alive():
                thread.join(timeout)

    def _loop(self, step: Callable[[], int], poll: float, idle: threading.Event) -> None:
        while not self._stop.is_set():
            try:
                busy = step() > 0
            except Exception:
                log.exception("pipeline step failed; retrying")
                busy = False
            if not busy:
                idle.wait(poll)
                if idle is self._wake:
                    self._wake.clear()

    def drain(self, *, until: Callable[[], bool], timeout: float) -> bool:
        """Run both steps in the calling thread until `until()` holds (for CLI commands)."""
        import time

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.sender.run_once()
            self.watch_once()
            if until():
                return True
            time.sleep(0.05)
        return False
