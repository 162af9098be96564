"""Champion/challenger traffic routing.

A card (customer_id) always lands in the same bucket: a customer's decisions do not flip
between models from one transaction to the next, and the challenger's results per card are
comparable. The bucket is a stable hash (blake2b), never Python's salted ``hash``, so every
worker and every restart agrees.
"""

from __future__ import annotations

import hashlib

CHAMPION, CHALLENGER, SHADOW = "champion", "challenger", "shadow"
_SCALE = float(2**64)


def bucket(customer_id: str) -> float:
    """A uniform number in [0, 1) fixed by the customer id."""
    digest = hashlib.blake2b(customer_id.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / _SCALE


def route(customer_id: str, *, share: float, mode: str, has_challenger: bool) -> tuple[str, bool]:
    """(variant that answers, whether the challenger also scores in shadow).

    split: a sticky ``share`` of customers is answered by the challenger.
    shadow: the champion always answers; the challenger scores every request for the log.
    """
    if not has_challenger:
        return CHAMPION, False
    if mode == SHADOW:
        return CHAMPION, True
    if share > 0.0 and bucket(customer_id) < share:
        return CHALLENGER, False
    return CHAMPION, False
