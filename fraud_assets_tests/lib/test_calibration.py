"""Platt calibration: class-weighted scores become probabilities, the same way everywhere."""

from __future__ import annotations

import math

import numpy as np
import pytest

from fraud_assets.lib.calibration import (
    Platt,
    brier_score,
    fit_platt,
    reliability_table,
)


def _inflated(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    """1% fraud; true probabilities p, reported as the inflated scores a weighted model gives."""
    p = 1 / (1 + np.exp(-(rng.normal(-5.5, 1.5, n))))
    y = (rng.random(n) < p).astype(int)
    odds = p / (1 - p) * 25  # class weights multiply the odds
    return y, odds / (1 + odds)


def test_calibration_improves_brier_and_keeps_the_ranking() -> None:
    rng = np.random.default_rng(1)
    y_val, raw_val = _inflated(rng, 20_000)
    y_test, raw_test = _inflated(rng, 20_000)
    platt = fit_platt(y_val, raw_val)
    assert platt.a == pytest.approx(1.0, abs=0.15) and platt.b == pytest.approx(
        -math.log(25), abs=0.4
    )
    calibrated = platt.apply_array(raw_test)
    assert brier_score(y_test, calibrated) < brier_score(y_test, raw_test)
    assert np.array_equal(
        np.argsort(calibrated, kind="stable"), np.argsort(raw_test, kind="stable")
    )
    # Reliability: observed fraud rates close to the predicted ones, bin by bin.
    table = reliability_table(y_test, calibrated, n_bins=5)
    assert sum(rows for *_, rows in table) == y_test.size
    predicted, observed, _ = table[-1]
    assert observed == pytest.approx(predicted, abs=0.02)


def test_scalar_and_array_paths_agree_and_identity_is_exact() -> None:
    platt = Platt(0.8, -2.5)
    scores = [0.0, 1e-9, 0.3, 0.5, 0.999999, 1.0]
    assert platt.apply_array(scores).tolist() == [platt.apply(s) for s in scores]
    assert all(0.0 < platt.apply(s) < 1.0 for s in scores)
    assert Platt().apply(0.123456789) == 0.123456789
    assert Platt.from_dict(None) == Platt() == Platt.from_tags({})
    assert Platt.from_tags(platt.to_tags()) == platt
    with pytest.raises(ValueError, match="finite"):
        Platt.from_dict({"a": "nan", "b": 0})


def test_one_class_gives_the_identity() -> None:
    assert fit_platt(np.zeros(10), np.linspace(0, 1, 10)) == Platt()


def test_the_reliability_plot_is_written(tmp_path) -> None:
    from fraud_assets.lib.reports.plots import reliability_png

    rng = np.random.default_rng(2)
    y, raw = _inflated(rng, 5_000)
    out = reliability_png(
        {"raw": (y, raw), "calibrated": (y, fit_platt(y, raw).apply_array(raw))}, tmp_path / "r.png"
    )
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
