"""The online path: the features of one transaction at a time, from its customer's history
and its terminal's snapshot. Plain Python (no Polars, no numpy): the scoring service runs it
per request, and a parity test holds it equal to the batch path."""

from __future__ import annotations

import bisect
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC
from typing import Any

from fraud_assets.lib.features.definitions import (
    AMOUNT_SCALE,
    CATEGORICAL_COLUMNS,
    CUSTOMER_FEATURES,
    EPOCH,
    NIGHT_HOURS,
    NO_PREVIOUS_SECONDS,
    SMALL_AMOUNT,
    TERMINAL_AMOUNT_MEAN,
    TERMINAL_FEATURES,
    TIE_SLOTS,
    UNKNOWN_CATEGORY,
    US_PER_DAY,
    US_PER_SECOND,
    VELOCITY_SECONDS,
    WINDOWS_DAYS,
    amount_to_mean,
    feature_columns,
    is_small_online,
    prior_zscore,
    terminal_values,
    time_features,
    ts_to_us,
)
from fraud_assets.lib.features.history import CustomerHistory

_DAY_SPANS = tuple(w * US_PER_DAY * TIE_SLOTS for w in WINDOWS_DAYS)  # in key units
_VELOCITY_SPAN = VELOCITY_SECONDS * US_PER_SECOND * TIE_SLOTS
_MEAN_30D = 3 * WINDOWS_DAYS.index(30) + 1  # position of customer_amount_mean_30d
if list(_DAY_SPANS) != sorted(set(_DAY_SPANS)) or _DAY_SPANS[0] <= _VELOCITY_SPAN:
    raise RuntimeError("the online windows are nested: WINDOWS_DAYS must ascend, 1h first")
# online_columns unrolls the day windows (this fails at import if their number changes).
_SPAN_1D, _SPAN_7D, _SPAN_30D = _DAY_SPANS


def _customer_stats(history: CustomerHistory, key: int, amount: float) -> tuple[float, ...]:
    """CUSTOMER_FEATURES (in that order) of the entry ``key``, already in ``history``.

    A window (t - w, t] holds the entries strictly after t - w (whatever their tie rank) up to
    and including this transaction: positions [lo, hi). Counts from two bisects, sums from
    the prefix sums (exact integers), maxima from the max stack (or a scan of the window when
    later entries exist): O(log n) per window, however long the history. The prior normal is
    the longest window without the entry itself: positions [lo, hi - 1).
    """
    keys = history.keys
    win = history.windows()
    hi = bisect.bisect_right(keys, key)
    top = (key // TIE_SLOTS) * TIE_SLOTS + TIE_SLOTS - 1  # last key of this instant
    cu = win.cu
    units_hi = cu[hi]
    out: list[float] = []
    lo = 0
    for span in _DAY_SPANS:  # ascending: the last is the longest window
        lo = bisect.bisect_right(keys, top - span, 0, hi - 1)
        count = float(hi - lo)
        biggest = history.window_max(lo, hi)
        out += (count, float(units_hi - cu[lo]) / count / AMOUNT_SCALE, biggest)
    own, lo_longest = hi - 1, lo
    cl, cq = win.cl, win.cq
    lo = bisect.bisect_right(keys, top - _VELOCITY_SPAN, 0, hi - 1)
    return (
        *out,
        amount_to_mean(amount, out[_MEAN_30D]),
        float(hi - lo),
        float(win.cs[hi] - win.cs[lo]),
        prior_zscore(
            cl[hi] - cl[own], own - lo_longest, cl[own] - cl[lo_longest], cq[own] - cq[lo_longest]
        ),
        (key // TIE_SLOTS - keys[own - 1] // TIE_SLOTS) / US_PER_SECOND
        if own > lo_longest
        else NO_PREVIOUS_SECONDS,
        float(history.terminals[lo_longest:own].count(history.terminals[own])),
        float(len(set(history.terminals[lo_longest:hi]))),
    )


def _customer_window_general(
    history: CustomerHistory, ts_us: int, amount: float, small: int, terminal: str
) -> tuple[float, ...]:
    """CUSTOMER_FEATURES of a transaction at ``ts_us``, which joins ``history`` (then pruned):
    any case (ties, late arrivals, a history without its index yet). ``online_vectors`` runs
    the common case in line and this for the rest."""
    key = history.next_key(ts_us)
    history.add(key, amount, small, terminal)
    stats = _customer_stats(history, key, amount)
    history.prune(ts_us)
    return stats


def online_vectors(
    txs: Sequence[Mapping[str, Any]],
    history_of: Callable[[str], CustomerHistory],
    terminal_of: Callable[[str], Sequence[float]],
    categoricals: Sequence[str],
) -> list[tuple[Any, ...]]:
    """``online_columns`` as one tuple per transaction (``feature_columns`` order)."""
    return list(zip(*online_columns(txs, history_of, terminal_of, categoricals), strict=True))


def online_columns(
    txs: Sequence[Mapping[str, Any]],
    history_of: Callable[[str], CustomerHistory],
    terminal_of: Callable[[str], Sequence[float]],
    categoricals: Sequence[str],
) -> list[Sequence[Any]]:
    """Online features of transactions applied one after the other, as columns (one list per
    feature, in ``feature_columns(categoricals)`` order); each transaction joins its
    customer's history.

    ``history_of(customer_id)``: the customer's (mutable) history; ``terminal_of(terminal_id)``:
    the terminal's ``terminal_values``. THE online implementation: ``online_vector`` (/score),
    ``online_features`` and the service's batches (``online_vectors``) all run this loop, so
    a batch applies its rows exactly as that many single calls would.

    It runs once per scored transaction, where a Python function call costs about as much as
    the arithmetic, so the common case is in line: ``ts_to_us``, ``is_small_online``,
    ``amount_to_mean`` and, for a transaction later than everything its customer did,
    ``_customer_stats`` on the window index that ``CustomerHistory.append_latest`` (add +
    prune) keeps in step. Ties, late arrivals and a history without its index go through
    ``_customer_window_general``. The helpers stay the reference: tests hold both routes to
    the first (per-window) version. What does not depend on the order (time of day, terminal,
    categoricals) is computed column by column after the loop.
    """
    has_channel = "channel" in categoricals
    right, left = bisect.bisect_right, bisect.bisect_left
    amounts: list[float] = []
    stamps: list[int] = []
    stats: list[tuple[float, ...]] = []
    for tx in txs:
        amount = float(tx["amount"])
        ts = tx["ts"]
        if ts.tzinfo is None:  # = ts_to_us(ts)
            ts = ts.replace(tzinfo=UTC)
        delta = ts - EPOCH
        ts_us = (delta.days * 86_400 + delta.seconds) * US_PER_SECOND + delta.microseconds
        # = is_small_online(amount, channel, has_channel)
        small = int(amount < SMALL_AMOUNT and (not has_channel or tx.get("channel") == "online"))
        history = history_of(tx["customer_id"])
        terminal = str(tx["terminal_id"])
        key = ts_us * TIE_SLOTS
        win = history.append_latest(key, amount, small, terminal)
        if win is None:
            customer = _customer_window_general(history, ts_us, amount, small, terminal)
        else:  # appended at the end (and pruned), index in step
            keys = history.keys
            cu, cs, cl, cq, mk, mv = win.cu, win.cs, win.cl, win.cq, win.mk, win.mv
            end = len(keys)
            own = end - 1  # the new entry's position
            # _customer_stats for the last entry, windows unrolled (nested: each bisect
            # searches below the previous window's start)
            top = key + TIE_SLOTS - 1
            lo_h = right(keys, top - _VELOCITY_SPAN, 0, own)
            lo_1 = right(keys, top - _SPAN_1D, 0, lo_h)
            lo_7 = right(keys, top - _SPAN_7D, 0, lo_1)
            lo_30 = right(keys, top - _SPAN_30D, 0, lo_7)
            units_hi = cu[end]
            n_1, n_7, n_30 = float(end - lo_1), float(end - lo_7), float(end - lo_30)
            mean_30 = float(units_hi - cu[lo_30]) / n_30 / AMOUNT_SCALE
            customer = (
                n_1,
                float(units_hi - cu[lo_1]) / n_1 / AMOUNT_SCALE,
                mv[left(mk, keys[lo_1])],
                n_7,
                float(units_hi - cu[lo_7]) / n_7 / AMOUNT_SCALE,
                mv[left(mk, keys[lo_7])],
                n_30,
                mean_30,
                mv[left(mk, keys[lo_30])],
                amount / mean_30 if mean_30 > 0 else 1.0,  # = amount_to_mean
                float(end - lo_h),
                float(cs[end] - cs[lo_h]),
                prior_zscore(
                    cl[end] - cl[own], own - lo_30, cl[own] - cl[lo_30], cq[own] - cq[lo_30]
                ),
                (ts_us - keys[own - 1] // TIE_SLOTS) / US_PER_SECOND
                if own > lo_30
                else NO_PREVIOUS_SECONDS,
                float(history.terminals[lo_30:own].count(terminal)),
                float(len(set(history.terminals[lo_30:end]))),
            )
        amounts.append(amount)
        stamps.append(ts_us)
        stats.append(customer)
    hours = [ts_us // 3_600_000_000 % 24 for ts_us in stamps]  # = time_features, by column
    n_customer, n_terminal = len(CUSTOMER_FEATURES), len(TERMINAL_FEATURES)
    terminals = list(map(terminal_of, [tx["terminal_id"] for tx in txs]))
    return [
        amounts,
        [float(hour) for hour in hours],
        [float((ts_us // US_PER_DAY + 3) % 7 >= 5) for ts_us in stamps],
        [float(hour in NIGHT_HOURS) for hour in hours],
        *(zip(*stats, strict=True) if stats else [()] * n_customer),
        *(zip(*terminals, strict=True) if txs else [()] * n_terminal),
        [
            amount_to_mean(amount, terminal[TERMINAL_AMOUNT_MEAN])
            for amount, terminal in zip(amounts, terminals, strict=True)
        ],
        *(
            [UNKNOWN_CATEGORY if (v := tx.get(c)) is None else str(v) for tx in txs]
            for c in CATEGORICAL_COLUMNS  # column order, whatever order `categoricals` has
            if c in categoricals
        ),
    ]


def online_vector(
    tx: Mapping[str, Any],
    history: CustomerHistory,
    terminal: Sequence[float],
    categoricals: Sequence[str],
    *,
    update: bool = True,
) -> tuple[Any, ...]:
    """``online_features`` of one transaction as a tuple in ``feature_columns(categoricals)``
    order. ``terminal``: the terminal's ``terminal_values``.

    With ``update`` (the scoring path) this is ``online_vectors`` on one transaction; without,
    it computes what the transaction would see and leaves the history as it was.
    """
    if update:
        return online_vectors([tx], lambda _: history, lambda _: terminal, categoricals)[0]
    amount = float(tx["amount"])
    ts_us = ts_to_us(tx["ts"])
    small = is_small_online(amount, tx.get("channel"), "channel" in categoricals)
    key = history.next_key(ts_us)
    history.add(key, amount, small, str(tx["terminal_id"]))
    customer = _customer_stats(history, key, amount)
    history.remove(key)
    cats = [
        UNKNOWN_CATEGORY if (v := tx.get(c)) is None else str(v)
        for c in CATEGORICAL_COLUMNS
        if c in categoricals
    ]
    cross = amount_to_mean(amount, terminal[TERMINAL_AMOUNT_MEAN])
    return (amount, *time_features(ts_us), *customer, *terminal, cross, *cats)


def online_features(
    tx: Mapping[str, Any],
    history: CustomerHistory,
    terminal: Mapping[str, float] | None,
    categoricals: Sequence[str],
    *,
    update: bool = True,
) -> dict[str, Any]:
    """Features of one transaction, from its customer's history and its terminal's snapshot.

    With `update`, the transaction joins the history (so later ones in the day see it).
    `tx` has ts (aware datetime), customer_id, terminal_id, amount and the categoricals.
    Keys in the same column order as the batch path.
    """
    values = online_vector(tx, history, terminal_values(terminal), categoricals, update=update)
    return dict(zip(feature_columns(categoricals), values, strict=True))
