"""Canonical column contracts shared by every source, the pipeline and the service.

A source may lack the optional categorical columns; downstream code checks for them
instead of inventing values.
"""

from __future__ import annotations

import polars as pl

# Raw transaction: required columns and their canonical types.
REQUIRED_TRANSACTION_COLUMNS: dict[str, pl.DataType] = {
    "transaction_id": pl.String(),
    "ts": pl.Datetime("us", "UTC"),
    "customer_id": pl.String(),
    "terminal_id": pl.String(),
    "amount": pl.Float64(),
}
# Categorical context a source may or may not carry.
OPTIONAL_TRANSACTION_COLUMNS: dict[str, pl.DataType] = {
    "merchant_category": pl.String(),
    "channel": pl.String(),
}
# Ground truth: only the simulator (or a user's labelled files) has it. Never a feature.
SCENARIO = "fraud_scenario"  # which fraud pattern made a transaction (the simulator's)
TRUTH_COLUMNS: dict[str, pl.DataType] = {
    "is_fraud": pl.Int8(),
    SCENARIO: pl.String(),
}
# Label event: a label and the moment it became known (chargeback, investigation...).
LABEL_COLUMNS: dict[str, pl.DataType] = {
    "transaction_id": pl.String(),
    "is_fraud": pl.Int8(),
    "known_at": pl.Datetime("us", "UTC"),
}
# Columns that must be non-null in raw data.
NON_NULL_COLUMNS = ("transaction_id", "ts", "customer_id", "terminal_id", "amount")
ALL_TRANSACTION_COLUMNS = {
    **REQUIRED_TRANSACTION_COLUMNS,
    **OPTIONAL_TRANSACTION_COLUMNS,
    **TRUTH_COLUMNS,
}


def empty_labels() -> pl.DataFrame:
    return pl.DataFrame(schema=LABEL_COLUMNS)


def order_columns(df: pl.DataFrame) -> pl.DataFrame:
    """Canonical column order: required, optional, truth, then anything else."""
    known = [c for c in ALL_TRANSACTION_COLUMNS if c in df.columns]
    rest = [c for c in df.columns if c not in ALL_TRANSACTION_COLUMNS]
    return df.select(known + rest)
