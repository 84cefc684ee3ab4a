"""Anchor the access log periodically in a background thread of the gateway."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from crm_gateway.audit.anchoring import Anchorer
from crm_gateway.pipeline.leases import Hold, Leases
from crm_gateway.services.errors import DomainError

log = logging.getLogger(__name__)

LEASE = "anchor"


class AnchorWorker:
    """Every `interval` seconds: settle pending batches, then anchor the new entries, signed by
    the account `signer()` names (None: no AUDITOR key in this gateway's keystore, so the worker
    only settles; anchoring on demand still works with an AUDITOR API key). With `leases`, a
    round runs only in the process holding the `anchor` lease: one per organisation."""

    def __init__(
        self,
        anchorer: Anchorer,
        *,
        interval: float,
        signer: Callable[[], str | None],
        leases: Leases | None = None,
    ) -> None:
        self.anchorer = anchorer
        self._leases = leases
        self.interval = interval
        self.signer = signer
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._warned = False

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        if self.running or not self.anchorer.deployed:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="audit-anchor", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        thread = self._thread
        if thread is not None and thread.is_alive():
            thread.join(timeout)

    def run_once(self) -> int:
        """One round: settle, then anchor; how many batches were queued."""
        self.anchorer.refresh()
        signer = self.signer()
        if signer is None:
            if not self._warned:
                log.warning(
                    "no AUDITOR account of this organisation in the keystore: the access log "
                    "is not anchored periodically (set AUDIT_ANCHOR_ACCOUNT)"
                )
                self._warned = True
            return 0
        return len(self.anchorer.anchor(signer))

    def _loop(self) -> None:
        # The first round waits a full interval: a gateway that restarts often must not anchor
        # a handful of entries at every start.
        while not self._stop.wait(self.interval):
            try:
                if self._leases is not None and self._leases.hold(LEASE) is Hold.NOT_HELD:
                    continue
                self.run_once()
            except DomainError as refusal:
                log.warning("audit anchoring refused: %s", refusal.detail)
            except Exception:
                log.exception("audit anchoring failed; retrying at the next interval")
