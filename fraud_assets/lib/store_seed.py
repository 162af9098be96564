"""The online store's seed: customer histories and terminal snapshots as of a day, and the
two npz files of a bundle's ``store/`` folder that carry them.

``customers.npz`` holds the histories in CSR layout (ids, offsets, keys, amounts, small, and
terminals as codes into a table of terminal ids);
``terminals.npz`` the terminal snapshot (ids, column names, float64 matrix).

Numpy only (no Polars): the service reads the seed with it. Building a seed from raw frames
is the batch path's job (``features.batch.store_seed_from_frames``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import numpy as np

from fraud_assets.lib.contracts import BUNDLE_CUSTOMERS_FILE, BUNDLE_TERMINALS_FILE
from fraud_assets.lib.features.definitions import (
    CATEGORICAL_COLUMNS,
    LOOKBACK_DAYS,
    TERMINAL_FEATURES,
    TIE_SLOTS,
    US_PER_DAY,
    ts_to_us,
)
from fraud_assets.lib.features.history import CustomerHistory
from fraud_assets.lib.features.online import online_features


class StoreSeedError(ValueError):
    """Seed files that are inconsistent, or histories that do not fit the seed's day."""


@dataclass(frozen=True)
class StoreSeed:
    """The online store's starting state: histories before ``as_of``, terminals as of it."""

    as_of: date
    customers: dict[str, CustomerHistory]
    terminals: dict[str, dict[str, float]]


def store_day_key(day: date) -> int:
    """History key of the first instant of ``day``: where the seed of a store as of ``day``
    ends and live traffic begins (keys are microseconds * TIE_SLOTS)."""
    return ts_to_us(datetime(day.year, day.month, day.day, tzinfo=UTC)) * TIE_SLOTS


# --------------------------------------------------------------------------------- writer


def histories_from_transactions(
    rows: Iterable[Mapping[str, Any]], categoricals: Sequence[str] = CATEGORICAL_COLUMNS
) -> dict[str, CustomerHistory]:
    """Customer histories built by replaying transactions through ``online_features``.

    That is exactly how the service accumulates state, so a seed built here is what the
    service would hold had it scored these transactions itself. ``rows`` (mappings with ts,
    customer_id, amount and the categoricals) must be sorted by (ts, transaction_id).
    """
    histories: dict[str, CustomerHistory] = {}
    last: tuple[datetime, str] | None = None
    for row in rows:
        order = (row["ts"], str(row.get("transaction_id", "")))
        if last is not None and order < last:
            raise ValueError("rows must be sorted by (ts, transaction_id)")
        last = order
        history = histories.get(row["customer_id"])
        if history is None:
            history = histories[row["customer_id"]] = CustomerHistory()
        online_features(row, history, None, categoricals, update=True)
    return histories


def write_seed(
    store_dir: Path,
    histories: Mapping[str, CustomerHistory],
    terminals: Mapping[str, Mapping[str, float]],
    as_of: date,
) -> None:
    """The seed's two files in ``store_dir`` (an existing folder)."""
    _write_customers(store_dir / BUNDLE_CUSTOMERS_FILE, histories, as_of)
    write_terminals(store_dir / BUNDLE_TERMINALS_FILE, terminals)


def _write_customers(
    target: Path, histories: Mapping[str, CustomerHistory], store_as_of: date
) -> None:
    """CSR arrays, dropping entries no window on or after ``store_as_of`` can reach."""
    start = store_day_key(store_as_of)
    oldest = start - LOOKBACK_DAYS * US_PER_DAY * TIE_SLOTS
    ids: list[str] = []
    offsets = [0]
    keys: list[int] = []
    amounts: list[float] = []
    small: list[int] = []
    terminals: list[str] = []
    for customer_id in sorted(histories):
        h_keys, h_amounts, h_small, h_terminals = histories[customer_id].to_arrays()
        if h_keys and h_keys[-1] >= start:
            raise StoreSeedError(
                f"customer {customer_id!r} has history on or after store_as_of {store_as_of}"
            )
        first = next((i for i, k in enumerate(h_keys) if k > oldest), len(h_keys))
        if first == len(h_keys):
            continue
        ids.append(customer_id)
        keys.extend(h_keys[first:])
        amounts.extend(h_amounts[first:])
        small.extend(h_small[first:])
        terminals.extend(h_terminals[first:])
        offsets.append(len(keys))
    names, codes = np.unique(np.array(terminals, dtype=np.str_), return_inverse=True)
    np.savez(
        target,
        customer_ids=np.array(ids, dtype=np.str_),
        offsets=np.array(offsets, dtype=np.int64),
        keys=np.array(keys, dtype=np.int64),
        amounts=np.array(amounts, dtype=np.float64),
        small=np.array(small, dtype=np.int8),
        terminal_names=names,
        terminal_codes=codes.astype(np.int64),
    )


def write_terminals(target: Path, rows: Mapping[str, Mapping[str, float]]) -> None:
    """Terminal snapshots as one npz file (a bundle's ``terminals.npz``, or a refresh)."""
    ids = sorted(rows)
    matrix = np.array(
        [[float(rows[t].get(c, 0.0)) for c in TERMINAL_FEATURES] for t in ids], dtype=np.float64
    ).reshape(len(ids), len(TERMINAL_FEATURES))
    np.savez(
        target,
        terminal_ids=np.array(ids, dtype=np.str_),
        columns=np.array(TERMINAL_FEATURES, dtype=np.str_),
        features=matrix,
    )


# --------------------------------------------------------------------------------- reader


def read_seed(
    store_dir: Path,
) -> tuple[dict[str, CustomerHistory], dict[str, dict[str, float]]]:
    """Customer histories and terminal snapshots from the files in ``store_dir`` (numpy only,
    no pickles)."""
    with np.load(store_dir / BUNDLE_CUSTOMERS_FILE, allow_pickle=False) as c:
        ids, offsets = c["customer_ids"].tolist(), c["offsets"]
        keys, amounts, small = c["keys"], c["amounts"], c["small"]
        names, codes = c["terminal_names"].tolist(), c["terminal_codes"]
    if len(offsets) != len(ids) + 1 or offsets[-1] != len(keys):
        raise StoreSeedError(f"{BUNDLE_CUSTOMERS_FILE}: offsets do not match the arrays")
    if not len(keys) == len(amounts) == len(small) == len(codes):
        raise StoreSeedError(f"{BUNDLE_CUSTOMERS_FILE}: the entry arrays differ in length")
    if len(codes) and not 0 <= codes.min() <= codes.max() < len(names):
        raise StoreSeedError(f"{BUNDLE_CUSTOMERS_FILE}: terminal codes out of range")
    terminal_list = [names[code] for code in codes.tolist()]
    customers: dict[str, CustomerHistory] = {}
    key_list, amount_list, small_list = keys.tolist(), amounts.tolist(), small.tolist()
    bounds = offsets.tolist()
    for i, customer_id in enumerate(ids):
        lo, hi = bounds[i], bounds[i + 1]
        try:
            customers[customer_id] = CustomerHistory.from_arrays(
                key_list[lo:hi], amount_list[lo:hi], small_list[lo:hi], terminal_list[lo:hi]
            )
        except ValueError:  # the slices have one length: the keys are out of order
            raise StoreSeedError(
                f"{BUNDLE_CUSTOMERS_FILE}: keys of {customer_id!r} are not increasing"
            ) from None
    return customers, read_terminals(store_dir / BUNDLE_TERMINALS_FILE)


def read_terminals(source: Path) -> dict[str, dict[str, float]]:
    """Terminal snapshots from a file ``write_terminals`` wrote."""
    with np.load(source, allow_pickle=False) as t:
        terminal_ids, columns, matrix = t["terminal_ids"].tolist(), t["columns"], t["features"]
    if columns.tolist() != TERMINAL_FEATURES:
        raise StoreSeedError(f"{source.name}: columns differ from TERMINAL_FEATURES")
    return {
        tid: dict(zip(TERMINAL_FEATURES, row, strict=True))
        for tid, row in zip(terminal_ids, matrix.tolist(), strict=True)
    }
