"""Run the indexer in a background thread of the gateway (started by the app's lifespan)."""

from __future__ import annotations

import logging
import threading
import time

from crm_gateway.indexer.scanner import ChainIndexer
from crm_gateway.pipeline.leases import Hold, Leases

log = logging.getLogger(__name__)

_MAX_BACKOFF_SECONDS = 5.0
LEASE = "indexer"


class IndexerWorker:
    """Steps the indexer: back to back while it has work, every `poll` seconds at the head.

    With `leases`, only the process holding the `indexer` lease steps (one indexer per
    organisation, whatever the number of processes); the others follow the cursor it moves.
    """

    def __init__(self, indexer: ChainIndexer, *, poll: float, leases: Leases | None = None) -> None:
        self.indexer = indexer
        self.poll = poll
        self._leases = leases
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        if self.running:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="indexer", daemon=True)
        self._thread.start()

    def wake(self) -> None:
        """Step now rather than at the next poll (e.g. right after a transaction was mined)."""
        self._wake.set()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self._wake.set()
        thread = self._thread
        if thread is not None and thread.is_alive():
            thread.join(timeout)

    def wait_for_block(self, block: int, timeout: float) -> bool:
        """Block until the read model includes `block` (True) or `timeout` seconds pass."""
        self.wake()
        if self._leads():
            return self.indexer.wait_for_block(block, timeout)
        deadline = time.monotonic() + timeout
        while True:
            current = self.indexer.follow()
            if current is not None and current >= block:
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(min(0.02, self.poll))

    def _leads(self) -> bool:
        return self._leases is None or self._leases.holds(LEASE)

    def _loop(self) -> None:
        failures = 0
        while not self._stop.is_set():
            try:
                if self._leases is not None and self._leases.hold(LEASE) is Hold.NOT_HELD:
                    self.indexer.follow()
                    self._wake.wait(self.poll)
                    self._wake.clear()
                    continue
                busy = self.indexer.step().busy
                failures = 0
            except Exception:
                failures += 1
                log.exception("indexer step failed; retrying")
                busy = False
            if busy:
                continue
            delay = (
                self.poll if failures == 0 else min(_MAX_BACKOFF_SECONDS, self.poll * 2**failures)
            )
            self._wake.wait(delay)
            self._wake.clear()
