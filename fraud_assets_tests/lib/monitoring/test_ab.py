"""The A/B statistics: fast weighted AP and the split bootstrap's intervals."""

from __future__ import annotations

import math

import numpy as np
import pytest

from fraud_assets.lib.metrics import average_precision
from fraud_assets.lib.monitoring.ab import (
    Sample,
    bootstrap_clustered_ap_difference,
    bootstrap_split,
    fast_average_precision,
)
from fraud_assets_tests.lib.monitoring.helpers import synthetic


def test_fast_average_precision_matches_metrics_with_ties_and_weights() -> None:
    rng = np.random.default_rng(0)
    for n in (7, 60, 500):
        y = (rng.random(n) < 0.2).astype(int)
        y[:2] = [1, 0]
        score = np.round(rng.random(n) + 0.3 * y, 1)  # many ties
        assert fast_average_precision(y, score) == pytest.approx(average_precision(y, score))
        w = np.bincount(rng.integers(0, n, n), minlength=n)
        expanded = average_precision(np.repeat(y, w), np.repeat(score, w))
        assert fast_average_precision(y, score, w.astype(float)) == pytest.approx(expanded)
    assert math.isnan(fast_average_precision(np.zeros(5), np.arange(5.0)))


def test_split_bootstrap_ci_excludes_zero_when_the_challenger_is_clearly_better() -> None:
    y1, s1 = synthetic(2000, 0.5, 11)
    y2, s2 = synthetic(2000, 3.0, 12)
    a = Sample(y1.astype(float), s1, (s1 >= 0.3).astype(float))
    b = Sample(y2.astype(float), s2, (s2 >= 0.3).astype(float))
    diffs = bootstrap_split(a, b, n_boot=300)
    ap = diffs["ap"]
    assert ap.value == pytest.approx(average_precision(y1, s1) - average_precision(y2, s2))
    assert ap.value < 0 and ap.ci_high < 0 and ap.excludes_zero
    assert diffs["recall"].ci_high < 0  # the better model also catches more at its alert rule
    # Fixed seed: the same interval every time.
    assert bootstrap_split(a, b, n_boot=300)["ap"] == ap


def test_split_bootstrap_ci_includes_zero_when_the_variants_are_identical() -> None:
    y1, s1 = synthetic(1500, 1.5, 21)
    y2, s2 = synthetic(1500, 1.5, 22)  # same model, different cards
    a = Sample(y1.astype(float), s1, (s1 >= 0.3).astype(float))
    b = Sample(y2.astype(float), s2, (s2 >= 0.3).astype(float))
    diffs = bootstrap_split(a, b, n_boot=300)
    assert diffs["ap"].ci_low < 0 < diffs["ap"].ci_high
    assert not diffs["ap"].excludes_zero
    assert diffs["recall"].ci_low < 0 < diffs["recall"].ci_high


def _card_days(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    """n transactions on 2000 card-days; a fraud card-day's transactions are all fraud."""
    clusters = rng.integers(0, 2000, n)
    fraud_days = rng.random(2000) < 0.03
    return clusters, fraud_days[clusters].astype(float)


def test_clustered_gain_refuses_noise_and_finds_a_clearly_better_model() -> None:
    rng = np.random.default_rng(3)
    n = 20_000
    clusters, y = _card_days(rng, n)
    signal = y + rng.normal(0, 0.8, n)
    old = signal + rng.normal(0, 0.5, n)
    twin = signal + rng.normal(0, 0.5, n)  # as good as the old one: a retrain on other noise
    better = signal + rng.normal(0, 0.1, n)
    same = bootstrap_clustered_ap_difference(y, twin, old, clusters, n_boot=300)
    assert same.ci_low < 0 < same.ci_high  # a gate on the lower bound refuses it
    perturbed = bootstrap_clustered_ap_difference(
        y, old + rng.normal(0, 0.05, n), old, clusters, n_boot=300
    )
    assert perturbed.ci_low < 0
    gain = bootstrap_clustered_ap_difference(y, better, old, clusters, n_boot=300)
    assert gain.value > 0 and gain.ci_low > 0
    assert gain.value == pytest.approx(
        average_precision(y, better) - average_precision(y, old), abs=1e-12
    )
    # Clusters widen the interval: rows of a card-day move together.
    rows = bootstrap_clustered_ap_difference(y, better, old, np.arange(n), n_boot=300)
    assert gain.ci_high - gain.ci_low > rows.ci_high - rows.ci_low
