from __future__ import annotations

from datetime import date, timedelta

import polars as pl
import pytest

from fraud_assets.lib.features.batch import batch_features
from fraud_assets.lib.features.definitions import (
    FEATURE_ROW_KEYS,
    available_categoricals,
    feature_columns,
)
from fraud_assets.lib.quality import FEATURE_CHECKS, validate_features
from fraud_assets.lib.schema import empty_labels
from fraud_assets.lib.simulation import SimulationConfig, Simulator

DAY = date(2026, 3, 10)


@pytest.fixture(scope="module")
def feats() -> pl.DataFrame:
    sim = Simulator(SimulationConfig(seed=1, size=0.1))
    days = [DAY - timedelta(days=i) for i in range(5, -1, -1)]
    return batch_features(pl.concat([sim.transactions(d) for d in days]), empty_labels(), DAY)


def _expected(df: pl.DataFrame) -> list[str]:
    return [*FEATURE_ROW_KEYS, *feature_columns(available_categoricals(df.columns))]


def _failed(df: pl.DataFrame, expected: list[str]) -> dict[str, str]:
    out = validate_features(df, expected)
    assert [o.name for o in out] == list(FEATURE_CHECKS)
    return {o.name: o.summary for o in out if not o.success}


def test_clean_features_pass(feats: pl.DataFrame) -> None:
    assert _failed(feats, _expected(feats)) == {}


def test_truth_column_in_the_vector_fails(feats: pl.DataFrame) -> None:
    bad = feats.with_columns(is_fraud=pl.lit(0, pl.Int8))
    failed = _failed(bad, _expected(feats))
    assert set(failed) == {"feature_columns"}
    assert "is_fraud" in failed["feature_columns"]


def test_nulls_infinities_and_ranges_name_the_feature(feats: pl.DataFrame) -> None:
    first = pl.int_range(pl.len()) == 0
    bad = feats.with_columns(
        customer_amount_mean_7d=pl.when(first)
        .then(None)
        .otherwise(pl.col("customer_amount_mean_7d")),
        customer_amount_max_1d=pl.when(first)
        .then(float("inf"))
        .otherwise(pl.col("customer_amount_max_1d")),
        terminal_risk_7d=pl.when(first).then(1.5).otherwise(pl.col("terminal_risk_7d")),
    )
    failed = _failed(bad, _expected(feats))
    assert set(failed) == {"features_not_null", "features_finite_and_in_range"}
    assert "customer_amount_mean_7d" in failed["features_not_null"]
    assert "customer_amount_max_1d" in failed["features_finite_and_in_range"]
    assert "terminal_risk_7d" in failed["features_finite_and_in_range"]
