"""Champion/challenger traffic routing.

A card (customer_id) always lands in the same bucket: a customer's decisions do not flip
between models from one transaction to the next, and the challenger's results per card are
comparable. The bucket is a stable hash (blake2b), never Python's salted ``hash``, so every
worker and every restart agrees.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

from fraud_assets.lib.contracts import CHALLENGER, CHAMPION, SHADOW

_SCALE = float(2**64)


_BUCKETS: dict[str, float] = {}  # memo: a hash per transaction was ~3% of a batch's CPU
_MAX_MEMO = 1 << 20  # customers remembered at most; then it starts over


def bucket(customer_id: str) -> float:
    """A uniform number in [0, 1) fixed by the customer id."""
    value = _BUCKETS.get(customer_id)
    if value is None:
        digest = hashlib.blake2b(customer_id.encode(), digest_size=8).digest()
        value = int.from_bytes(digest, "big") / _SCALE
        if len(_BUCKETS) >= _MAX_MEMO:
            _BUCKETS.clear()
        _BUCKETS[customer_id] = value
    return value


def route(customer_id: str, *, share: float, mode: str, has_challenger: bool) -> tuple[str, bool]:
    """(variant that answers, whether the challenger also scores in shadow).

    split: a sticky ``share`` of customers is answered by the challenger.
    shadow: the champion always answers; the challenger scores every request for the log.
    """
    answering = answering_variants(
        [customer_id], share=share, mode=mode, has_challenger=has_challenger
    )
    return answering[0], in_shadow(mode=mode, has_challenger=has_challenger)


def in_shadow(*, mode: str, has_challenger: bool) -> bool:
    """Whether the challenger scores every request for the log (it never answers then)."""
    return has_challenger and mode == SHADOW


def answering_variants(
    customer_ids: Iterable[str], *, share: float, mode: str, has_challenger: bool
) -> list[str]:
    """``route``'s answering variant for many customers at once (a batch: no call per row)."""
    if not has_challenger or mode == SHADOW or share <= 0.0:
        return [CHAMPION for _ in customer_ids]
    return [CHALLENGER if b < share else CHAMPION for b in map(bucket, customer_ids)]
