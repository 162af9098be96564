"""Alert-volume recalibration: thresholds that keep the review queue within capacity.

Drift can push a model's scores up across the board (a new fraud pattern, a new merchant
mix): at the thresholds chosen on pre-drift data, the review queue then grows past what the
analysts can work, and alerts nobody looks at catch nothing. Labels take weeks; the volume is
known at once. So on a drifted day the review threshold is raised, only as far as needed, to
the lowest value at which the day's traffic would have raised at most ``capacity`` alerts
per day; it is never lowered here (a quiet day is no evidence that a lower threshold is
safe: that is the retraining's job, with labels). Plain numpy: no Dagster.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np


def alerts_per_day(probabilities: Any, review: float, days: float = 1.0) -> float:
    """Transactions at or above the review threshold, per day of traffic."""
    scores = np.asarray(probabilities, dtype=float)
    return float(np.count_nonzero(scores >= review)) / days


def capacity_threshold(
    probabilities: Any, review: float, capacity: float, days: float = 1.0
) -> float:
    """The lowest threshold >= ``review`` at which these scores (``days`` of traffic) raise at
    most ``capacity`` alerts per day. Ties at the cut are all excluded, so the volume may
    come out below capacity but never above it (except for scores of exactly 1.0, which
    no probability threshold excludes)."""
    if capacity < 0 or days <= 0:
        raise ValueError(f"capacity must be >= 0 and days > 0, got {capacity} and {days}")
    scores = np.asarray(probabilities, dtype=float)
    allowed = math.floor(capacity * days)
    if np.count_nonzero(scores >= review) <= allowed:
        return review
    # The (allowed+1)-th highest score must fall below the threshold: just above it (but a
    # probability threshold stops at 1: scores of exactly 1.0 cannot be excluded).
    cut = np.partition(scores, scores.size - allowed - 1)[scores.size - allowed - 1]
    return max(review, min(1.0, float(np.nextafter(cut, np.inf))))


def recalibrate(
    thresholds: Mapping[str, float], probabilities: Any, capacity: float, days: float = 1.0
) -> dict[str, float] | None:
    """New ``{"review", "decline"}`` thresholds for this traffic, or None if the current ones
    already keep it within capacity. A decline threshold below the new review threshold is
    raised to it (every decline is also an alert)."""
    review = capacity_threshold(probabilities, thresholds["review"], capacity, days)
    if review == thresholds["review"]:
        return None
    return {"review": review, "decline": max(float(thresholds["decline"]), review)}
