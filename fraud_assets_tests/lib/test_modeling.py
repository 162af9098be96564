from __future__ import annotations

import polars as pl
import pytest

from fraud_assets.lib.modeling import CatBoostParams, downsample_genuine, refit_iterations


def _rows(n: int, fraud_every: int = 50) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "transaction_id": [f"tx{i}" for i in range(n)],
            "label": [int(i % fraud_every == 0) for i in range(n)],
        }
    )


def test_downsampling_keeps_every_fraud_and_the_share_of_genuine_rows() -> None:
    rows = _rows(20_000)
    kept = downsample_genuine(rows, 0.2)
    assert kept.filter(pl.col("label") == 1).height == rows["label"].sum()
    genuine = kept.filter(pl.col("label") == 0).height / rows.filter(pl.col("label") == 0).height
    assert 0.18 < genuine < 0.22
    # The same rows whatever the order or the rest of the frame.
    again = downsample_genuine(rows.reverse().head(10_000), 0.2)
    assert set(again["transaction_id"]) <= set(kept["transaction_id"])
    assert downsample_genuine(rows, 1.0) is rows


def test_downsampling_rate_is_checked() -> None:
    for bad in (0.0, -0.1, 1.5):
        with pytest.raises(ValueError, match="genuine_sample_rate"):
            CatBoostParams(genuine_sample_rate=bad)


def test_refit_iterations_scale_with_the_data() -> None:
    assert refit_iterations(200, 100_000, 125_000) == 250
    assert refit_iterations(0, 100, 100) == 1
    assert refit_iterations(50, 0, 100) == 50


def test_the_search_runs_its_trials_and_keeps_the_best() -> None:
    import numpy as np

    from fraud_assets.lib.tuning import SEARCH_SPACE, tune_catboost

    rng = np.random.default_rng(0)
    n = 2_000
    x = rng.normal(size=n)
    label = (x + rng.normal(scale=1.0, size=n) > 2.0).astype(np.int8)
    frame = pl.DataFrame({"transaction_id": [f"t{i}" for i in range(n)], "x": x, "label": label})
    train, validation = frame.head(1_500), frame.tail(500)
    seen: list[tuple[int, dict, float]] = []
    base = CatBoostParams(iterations=30, early_stopping_rounds=10)
    best, ap = tune_catboost(
        train, validation, ["x"], [], base, 3, lambda *trial: seen.append(trial)
    )
    assert [t[0] for t in seen] == [0, 1, 2]
    assert ap == max(t[2] for t in seen) and 0 < ap <= 1
    for name, (low, high, _) in SEARCH_SPACE.items():
        assert low <= getattr(best, name) <= high
    assert best.iterations == 30 and best.random_seed == base.random_seed
    with pytest.raises(ValueError, match="trials"):
        tune_catboost(train, validation, ["x"], [], base, 0)
