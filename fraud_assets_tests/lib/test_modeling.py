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
