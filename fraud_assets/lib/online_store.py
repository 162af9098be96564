"""Online feature state: what the scoring service reads and updates per transaction.

The interface is small on purpose (Dagster's project_ml shape: one interface, a local and a
shared implementation):

- ``EmbeddedStore``: in-process dicts, seeded from a bundle's npz files and updated in place
  by every scored transaction. Exact only when ONE process scores all traffic, which is why
  the service runs a single worker with this backend.
- A Redis backend implements the same interface for several workers/replicas: ``history``
  reads the customer's entries, ``save`` writes them back (with a 31-day TTL),
  ``terminal_values`` reads a hash written by the ``online_feature_store`` asset,
  ``load_seed`` bulk-loads a bundle's seed with a pipeline. It is not implemented yet; the
  embedded store is the default.

Thread-safety: each method is safe on its own; a read-modify-write sequence (history ->
online_features -> save) must hold ``store.lock`` so concurrent transactions of one customer
are applied one at a time, in order.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterable
from datetime import date
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from fraud_assets.lib.bundle import read_store_seed
from fraud_assets.lib.features.definitions import terminal_values
from fraud_assets.lib.features.history import CustomerHistory
from fraud_assets.lib.store_seed import store_day_key


@runtime_checkable
class OnlineStore(Protocol):
    """Per-customer histories and per-terminal snapshots for the online feature path."""

    backend: str
    lock: threading.RLock

    def history(self, customer_id: str) -> CustomerHistory:
        """The customer's history (an empty one for a customer never seen)."""
        ...

    def peek(self, customer_id: str) -> CustomerHistory | None:
        """The history if the customer has one; never creates it."""
        ...

    def save(self, customer_id: str, history: CustomerHistory) -> None:
        """Persist a history after ``online_features`` updated it (no-op when in process)."""
        ...

    def save_many(self, customer_ids: Iterable[str]) -> None:
        """``save`` the histories of these customers after a batch updated them (one round
        trip for a shared store; the iterable is not even read when in process)."""
        ...

    def terminal_values(self, terminal_id: str) -> tuple[float, ...]:
        """The terminal's snapshot for the store's day as ``definitions.terminal_values``
        (zeros for an unknown terminal)."""
        ...

    def load_seed(self, bundle_path: str | os.PathLike[str]) -> None:
        """(Re)seed from a bundle, keeping what live traffic added since the seed's day."""
        ...

    def stats(self) -> dict[str, Any]:
        """Sizes and provenance, for /models and monitoring."""
        ...


_UNKNOWN_TERMINAL = terminal_values(None)


class EmbeddedStore:
    """In-process store: plain dicts, updated in place by the scoring path."""

    backend = "embedded"

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self._customers: dict[str, CustomerHistory] = {}
        self._terminals: dict[str, dict[str, float]] = {}
        # The same snapshots as tuples in TERMINAL_FEATURES order, built once per seed: the
        # scoring hot path reads a terminal per transaction.
        self._terminal_values: dict[str, tuple[float, ...]] = {}
        self.as_of: date | None = None
        self.seeded_from: str | None = None
        self._created = 0

    def history(self, customer_id: str) -> CustomerHistory:
        history = self._customers.get(customer_id)
        if history is None:
            with self.lock:
                history = self._customers.get(customer_id)
                if history is None:
                    history = self._customers[customer_id] = CustomerHistory()
                    self._created += 1
        return history

    def peek(self, customer_id: str) -> CustomerHistory | None:
        """The card's history if it has one (creates nothing: for checks before a write)."""
        return self._customers.get(customer_id)

    def save(self, customer_id: str, history: CustomerHistory) -> None:
        """Nothing to do: ``history`` is the live object held in the dict."""

    def save_many(self, customer_ids: Iterable[str]) -> None:
        """Nothing to do (see ``save``)."""

    def terminal_values(self, terminal_id: str) -> tuple[float, ...]:
        values = self._terminal_values.get(terminal_id)
        return _UNKNOWN_TERMINAL if values is None else values

    def load_seed(self, bundle_path: str | os.PathLike[str]) -> None:
        """Replace state before the seed's day by the seed; keep live entries from that day on.

        The seed holds every transaction before ``as_of`` (the batch pipeline's truth, which
        also covers traffic this process never saw); entries the service added on or after
        ``as_of`` are its own traffic and are carried over, so a daily reseed loses nothing.
        """
        seed = read_store_seed(bundle_path)  # the slow part, outside the lock
        vectors = {t: terminal_values(snap) for t, snap in seed.terminals.items()}
        start = store_day_key(seed.as_of)
        customers = seed.customers
        with self.lock:
            for customer_id, live in self._customers.items():
                merged = customers.get(customer_id)
                if merged is None:
                    merged = CustomerHistory()
                if merged.extend(live, since=start):  # live traffic from the seed's day on
                    customers[customer_id] = merged
            self._customers = customers
            self._terminals = seed.terminals
            self._terminal_values = vectors
            self.as_of = seed.as_of
            self.seeded_from = str(Path(bundle_path))
            self._created = 0

    def stats(self) -> dict[str, Any]:
        with self.lock:
            return {
                "backend": self.backend,
                "as_of": self.as_of.isoformat() if self.as_of else None,
                "seeded_from": self.seeded_from,
                "customers": len(self._customers),
                "customers_created_since_seed": self._created,
                "history_rows": sum(len(h.keys) for h in self._customers.values()),
                "terminals": len(self._terminals),
            }
