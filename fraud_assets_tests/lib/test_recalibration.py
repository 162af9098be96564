"""The review threshold held to a capacity: never above it, never lowered, ties excluded."""

from __future__ import annotations

import numpy as np
import pytest

from fraud_assets.lib.recalibration import alerts_per_day, capacity_threshold, recalibrate


@pytest.mark.parametrize("capacity", [0, 1, 7, 50, 333])
def test_the_raised_threshold_keeps_the_volume_within_capacity(capacity: int) -> None:
    scores = np.random.default_rng(capacity).beta(0.5, 6, size=5_000)  # a drifted day: many high
    review = capacity_threshold(scores, 0.05, capacity)
    assert alerts_per_day(scores, review) <= capacity
    # ... and only as far as needed: a hair lower would exceed it.
    assert alerts_per_day(scores, np.nextafter(review, -np.inf)) > capacity


def test_a_day_within_capacity_keeps_its_thresholds_and_none_is_lowered() -> None:
    scores = np.linspace(0, 1, 1_000)
    assert capacity_threshold(scores, 0.9, capacity=200) == 0.9  # 100 alerts: fine
    assert recalibrate({"review": 0.9, "decline": 0.95}, scores, capacity=200) is None
    assert recalibrate({"review": 0.5, "decline": 0.6}, scores, capacity=200) == {
        "review": pytest.approx(0.8, abs=2e-3),
        "decline": pytest.approx(0.8, abs=2e-3),  # raised with it: a decline is an alert
    }


def test_ties_at_the_cut_are_all_excluded() -> None:
    scores = np.array([0.9] * 10 + [0.1] * 90)
    review = capacity_threshold(scores, 0.05, capacity=5)
    assert review > 0.9 and alerts_per_day(scores, review) == 0


def test_capacity_is_per_day_of_traffic() -> None:
    scores = np.linspace(0, 1, 1_000)  # seven days of traffic
    review = capacity_threshold(scores, 0.0, capacity=10, days=7)
    assert alerts_per_day(scores, review, days=7) <= 10 < alerts_per_day(scores, review - 0.01, 7)


def test_bad_capacity_is_refused() -> None:
    with pytest.raises(ValueError, match="capacity"):
        capacity_threshold([0.5], 0.1, capacity=-1)


def test_a_threshold_stays_a_probability_when_scores_reach_one() -> None:
    scores = np.array([1.0] * 20 + [0.5] * 80)
    review = capacity_threshold(scores, 0.1, capacity=5)
    assert review == 1.0  # the most it can be; the twenty 1.0 scores cannot be excluded
