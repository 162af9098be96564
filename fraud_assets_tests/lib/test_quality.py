from __future__ import annotations

from datetime import date, timedelta

import polars as pl
import pytest

from fraud_assets.lib.quality import RAW_CHECKS, RawQualityConfig, validate_raw_transactions
from fraud_assets.lib.simulation import SimulationConfig, Simulator

DAY = date(2026, 3, 2)


@pytest.fixture(scope="module")
def clean() -> pl.DataFrame:
    return Simulator(SimulationConfig(seed=2, size=0.5)).transactions(DAY)


def _failed(df: pl.DataFrame, **kwargs) -> dict[str, str]:
    outcomes = validate_raw_transactions(df, DAY, **kwargs)
    assert [o.name for o in outcomes] == list(RAW_CHECKS)
    return {o.name: o.summary for o in outcomes if not o.success}


def test_clean_day_passes_every_check(clean: pl.DataFrame) -> None:
    assert _failed(clean, trailing_row_counts=[clean.height] * 7) == {}


def test_nulls_in_keys(clean: pl.DataFrame) -> None:
    bad = clean.with_columns(
        customer_id=pl.when(pl.int_range(pl.len()) < 3).then(None).otherwise(pl.col("customer_id"))
    )
    failed = _failed(bad)
    assert set(failed) == {"keys_not_null"}
    assert "customer_id" in failed["keys_not_null"]
    assert "3 unexpected rows" in failed["keys_not_null"]


def test_negative_and_huge_amounts(clean: pl.DataFrame) -> None:
    bad = clean.with_columns(
        amount=pl.when(pl.int_range(pl.len()) == 0).then(-5.0).otherwise(pl.col("amount"))
    )
    failed = _failed(bad)
    assert set(failed) == {"amount_range"}
    assert "-5.0" in failed["amount_range"]
    huge = clean.with_columns(amount=pl.col("amount") * 0 + 10_000.0)
    assert "amount_range" in _failed(huge, config=RawQualityConfig(amount_cap=5_000))


def test_duplicate_transaction_ids(clean: pl.DataFrame) -> None:
    bad = pl.concat([clean, clean.head(2)])
    failed = _failed(bad)
    assert set(failed) == {"transaction_id_unique"}
    assert clean["transaction_id"][0] in failed["transaction_id_unique"]


def test_rows_from_another_day(clean: pl.DataFrame) -> None:
    bad = clean.with_columns(
        ts=pl.when(pl.int_range(pl.len()) == 5)
        .then(pl.col("ts") + timedelta(days=1))
        .otherwise(pl.col("ts"))
    )
    failed = _failed(bad)
    assert set(failed) == {"ts_in_partition"}
    assert "1 unexpected rows" in failed["ts_in_partition"]


def test_row_count_band_uses_trailing_average(clean: pl.DataFrame) -> None:
    failed = _failed(clean, trailing_row_counts=[clean.height * 3] * 7)
    assert set(failed) == {"row_count_band"}
    assert str(clean.height) in failed["row_count_band"]


def test_label_rate_band(clean: pl.DataFrame) -> None:
    failed = _failed(clean.with_columns(is_fraud=pl.lit(1, pl.Int8)))
    assert set(failed) == {"label_rate_band"}
    assert "observed 1.0" in failed["label_rate_band"]


def test_schema_missing_column_and_wrong_type(clean: pl.DataFrame) -> None:
    failed = _failed(clean.drop("terminal_id"))
    assert "schema" in failed and "terminal_id" not in clean.drop("terminal_id").columns
    failed = _failed(clean.with_columns(amount=pl.col("amount").cast(pl.String)))
    assert "schema" in failed
    assert "amount" in failed["schema"]
