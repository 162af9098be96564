"""Keeps one worker in step with the control plane (``lib/control.py``).

A daemon thread per worker, once a second: switch to the bundle the deployment pointer names
(loaded off the request path, swapped in between two requests, so a rollout or a rollback
fails no request) and decide with the thresholds it sets (a recalibration), take fresher terminal snapshots when the daily refresh published them,
and write this worker's heartbeat (how the rollout asset knows every worker switched).

Why the service follows a pointer rather than the registry alias: the pointer names a
*built and smoke-tested* bundle, which the alias alone does not (it moves before the Bento
is rebuilt and checked); and the pipeline needs no address of any service, so replicas
started later find the current deployment at once.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from datetime import date
from pathlib import Path
from typing import Any

from fraud_assets.lib import control
from fraud_assets.lib.bundle import BundleError
from fraud_assets.lib.contracts import CHALLENGER, CHAMPION
from fraud_assets.serving.scoring import Scorer

logger = logging.getLogger("bentoml.fraud_scoring")


class Follower:
    """The worker's side of rollouts, rollbacks and terminal refreshes."""

    def __init__(
        self, scorer: Scorer, state_root: str | os.PathLike[str], poll_s: float = control.POLL_S
    ) -> None:
        self.scorer, self.state_root, self.poll_s = scorer, Path(state_root), poll_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        # The pointer last acted on: the service acts when the pointer *changes*, so an
        # admin reload or rollback (in memory, on one worker) is not undone every second.
        pointer = control.current_deployment(self.state_root)
        self._acted: tuple[str, str] | None = _version(pointer)
        if pointer is not None and pointer["bundle_id"] == scorer.current.bundle_id:
            scorer.use_thresholds(pointer.get("thresholds"))  # a recalibration in force
        self.last_switch: dict[str, Any] | None = None
        self.error: str | None = None

    def start(self) -> None:
        self.tick()  # before the worker reports ready
        self._thread = threading.Thread(target=self._run, name="control-follower", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        control.retire(self.state_root)

    def _run(self) -> None:
        while not self._stop.wait(self.poll_s):
            try:
                self.tick()
            except Exception:  # never let the thread die: the next tick tries again
                logger.exception("control-plane tick failed")

    def tick(self) -> None:
        self._follow_deployment()
        self._follow_terminals()
        self._beat()

    def _follow_deployment(self) -> None:
        pointer = control.current_deployment(self.state_root)
        if pointer is None or _version(pointer) == self._acted:
            return
        self._acted = _version(pointer)  # tried once: a bundle that fails is not retried
        wanted = pointer["bundle_id"]
        current = self.scorer.current
        if wanted == current.bundle_id:
            if self.scorer.use_thresholds(pointer.get("thresholds")):
                logger.info("thresholds now %s (%s)", pointer.get("thresholds"), pointer["reason"])
            return
        started = time.perf_counter()
        try:
            self.scorer.switch(pointer["bundle"])
        except (BundleError, OSError) as exc:
            self.error = f"{wanted}: {exc}"
            logger.error("deployment %s not loaded, still serving %s: %s", wanted, current, exc)
            return
        self.scorer.use_thresholds(pointer.get("thresholds"))
        self.error = None
        self.last_switch = {
            "from": current.bundle_id,
            "to": wanted,
            "seconds": round(time.perf_counter() - started, 3),
            "at": time.time(),
        }
        logger.info("switched to bundle %s (%s)", wanted, pointer.get("reason"))

    def _follow_terminals(self) -> None:
        store = self.scorer.store
        refresh = getattr(store, "refresh", None)
        if refresh is not None:  # a shared store holds the published snapshots itself
            refresh()
            return
        pointer = control.current_terminals(self.state_root)
        if pointer is None:
            return
        as_of = date.fromisoformat(pointer["as_of"])
        if store.as_of is None or as_of > store.as_of:
            terminals = control.load_published_terminals(self.state_root, pointer)
            store.load_terminals(terminals, as_of)
            logger.info("terminal snapshots refreshed to %s", as_of)

    def _beat(self) -> None:
        dep = self.scorer.current
        control.beat(
            self.state_root,
            {
                "bundle_id": dep.bundle_id,
                "versions": {
                    name: variant.version
                    for name, variant in ((CHAMPION, dep.champion), (CHALLENGER, dep.challenger))
                    if variant is not None
                },
                "store_as_of": self.scorer.store.as_of.isoformat()
                if self.scorer.store.as_of
                else None,
                "last_switch": self.last_switch,
                "error": self.error,
            },
        )


def _version(pointer: dict[str, Any] | None) -> tuple[str, str] | None:
    """What identifies one write of the pointer."""
    return None if pointer is None else (pointer["bundle_id"], pointer["set_at"])
