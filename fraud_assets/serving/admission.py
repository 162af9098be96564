"""What a request may do to the online state, checked before it changes anything.

Schema validation (``schemas``) says a transaction is well formed; these checks say it is
safe to apply. They run on the whole request first, so a refused request changes no state
and a batch is applied entirely or not at all:

- a timestamp too far ahead of the server's clock would prune the card's history (every
  window ends at the newest transaction): refused, naming the field;
- more transactions of one card at one instant than the history's tie slots can order:
  refused instead of failing half-way;
- a retried transaction id whose payload differs from the one answered (or from an earlier
  row of the same batch): 409 naming the fields that differ, not a silent replay.
"""

from __future__ import annotations

import bisect
import os
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from fraud_assets.lib.contracts import LOGGED_TRANSACTION_FIELDS, MAX_CLOCK_AHEAD_ENV
from fraud_assets.lib.features.definitions import TIE_SLOTS, ts_to_us
from fraud_assets.lib.features.history import CustomerHistory
from fraud_assets.lib.online_store import request_fields
from fraud_assets.serving.schemas import RequestError

DEFAULT_MAX_CLOCK_AHEAD = timedelta(days=1)
# The request fields a transaction id stands for (a retry must repeat them exactly), as a
# shared store records them.
fingerprint: Callable[[Mapping[str, Any]], tuple[Any, ...]] = request_fields
# Names the field of row i in an error: "transactions.3.ts" in a batch, "transaction.ts".
Where = Callable[[int, str], str]


def in_batch(i: int, name: str) -> str:
    return f"transactions.{i}.{name}"


def in_single(i: int, name: str) -> str:
    return f"transaction.{name}"


def max_clock_ahead() -> timedelta:
    raw = os.environ.get(MAX_CLOCK_AHEAD_ENV, "").strip()
    if not raw:
        return DEFAULT_MAX_CLOCK_AHEAD
    seconds = float(raw)
    if not seconds >= 0:
        raise ValueError(f"{MAX_CLOCK_AHEAD_ENV} must be a number of seconds >= 0, got {raw!r}")
    return timedelta(seconds=seconds)


def check_clock(txs: Sequence[Mapping[str, Any]], ahead: timedelta, where: Where) -> None:
    """Refuse the request if a transaction is more than `ahead` past the server's clock."""
    if not txs:
        return
    limit = datetime.now(UTC) + ahead
    latest = max(tx["ts"] for tx in txs)
    if latest <= limit:
        return
    i = next(i for i, tx in enumerate(txs) if tx["ts"] > limit)
    raise RequestError(
        422,
        "timestamp_ahead",
        where(i, "ts"),
        f"{txs[i]['ts'].isoformat()} is more than {ahead} ahead of the server's clock "
        f"({limit - ahead:%Y-%m-%dT%H:%M:%SZ}); it would erase the card's recent history",
    )


def check_instants(
    txs: Sequence[Mapping[str, Any]],
    peek: Callable[[str], CustomerHistory | None],
    where: Where,
) -> None:
    """Refuse the request if a card would hold more transactions at one instant than its
    history can order (``TIE_SLOTS - 1``), counting what it holds already."""
    per_instant = Counter((tx["customer_id"], tx["ts"]) for tx in txs)
    for (customer_id, ts), count in per_instant.items():
        history = peek(customer_id)
        held = 0
        base = ts_to_us(ts) * TIE_SLOTS
        if history is not None and history.keys and history.keys[-1] >= base:
            keys = history.keys
            held = bisect.bisect_left(keys, base + TIE_SLOTS) - bisect.bisect_left(keys, base)
        if held + count > TIE_SLOTS - 1:
            i = next(
                i for i, tx in enumerate(txs) if (tx["customer_id"], tx["ts"]) == (customer_id, ts)
            )
            raise RequestError(
                422,
                "too_many_at_instant",
                where(i, "ts"),
                f"card {customer_id!r} would have {held + count} transactions at "
                f"{ts.isoformat()}; at most {TIE_SLOTS - 1} at one instant are ordered",
            )


def check_retries(
    txs: Sequence[Mapping[str, Any]],
    answered: Callable[[str], tuple[Any, ...] | None],
    where: Where,
) -> None:
    """409 if a transaction id comes back with another payload than the one it was answered
    with, or than an earlier row of the same request."""
    seen: dict[str, tuple[Any, ...]] = {}
    for i, tx in enumerate(txs):
        tid = tx["transaction_id"]
        mine = fingerprint(tx)
        first = seen.setdefault(tid, mine)
        before = answered(tid)
        for other in (first, before):
            if other is not None and other != mine:
                differ = [
                    f
                    for f, a, b in zip(LOGGED_TRANSACTION_FIELDS, other, mine, strict=True)
                    if a != b
                ]
                raise RequestError(
                    409,
                    "transaction_id_conflict",
                    where(i, "transaction_id"),
                    f"transaction {tid!r} was already sent with other values of: "
                    + ", ".join(differ),
                )
