"""Data-quality suites on Great Expectations 1.x, returned as plain results.

The Dagster side turns each named group of expectations into one blocking asset check, so a
failure in the UI names the check, the expectation and the value it observed. GX is imported
lazily: it costs ~11 s of CPU and the code location must load in seconds.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

import polars as pl

from fraud_assets.lib.schema import NON_NULL_COLUMNS, REQUIRED_TRANSACTION_COLUMNS

# GX's names for the types it observes on pyarrow-backed pandas columns.
_CANONICAL_GX_TYPE = {
    "transaction_id": "str",
    "ts": "datetime",
    "customer_id": "str",
    "terminal_id": "str",
    "amount": "float",
}


@dataclass(frozen=True)
class ExpectationOutcome:
    expectation: str
    column: str | None
    success: bool
    observed: Any
    unexpected_examples: list[Any] = field(default_factory=list)

    def describe(self) -> str:
        where = f" on `{self.column}`" if self.column else ""
        status = "passed" if self.success else "FAILED"
        text = f"{self.expectation}{where} {status}: observed {self.observed}"
        if self.unexpected_examples:
            text += f"; e.g. {self.unexpected_examples[:3]}"
        return text


@dataclass(frozen=True)
class CheckOutcome:
    """One asset check: a named group of expectations."""

    name: str
    description: str
    expectations: list[ExpectationOutcome]

    @property
    def success(self) -> bool:
        return all(e.success for e in self.expectations)

    @property
    def summary(self) -> str:
        failed = [e for e in self.expectations if not e.success]
        return "; ".join(e.describe() for e in (failed or self.expectations))


@dataclass(frozen=True)
class RawQualityConfig:
    amount_cap: float = 50_000.0
    row_count_band: float = 0.5  # allowed relative deviation from the trailing average
    label_rate_min: float = 0.0005
    label_rate_max: float = 0.05


# Each check: its name, what it guards, and a builder of GX expectations for a given day.
RAW_CHECKS: dict[str, str] = {
    "schema": "required columns present with canonical types",
    "keys_not_null": "no nulls in transaction_id, ts, customer_id, terminal_id, amount",
    "transaction_id_unique": "every transaction_id appears once",
    "amount_range": "0 <= amount <= cap",
    "ts_in_partition": "every ts falls inside the partition's day (UTC)",
    "row_count_band": "row count within a band of the trailing average",
    "label_rate_band": "fraud label rate within its band (when the source has labels)",
}


@functools.lru_cache(maxsize=1)
def _gx():
    import great_expectations as gx
    import great_expectations.expectations as gxe
    from great_expectations.data_context.types.base import ProgressBarsConfig

    context = gx.get_context(mode="ephemeral")  # never a file context, even if gx/ exists
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    return gx, gxe, context


def _raw_expectations(
    df: pl.DataFrame,
    day: date,
    config: RawQualityConfig,
    trailing_row_counts: Sequence[int],
) -> dict[str, list[Any]]:
    _, gxe, _ = _gx()
    import pandas as pd

    start = datetime(day.year, day.month, day.day, tzinfo=UTC)
    end = start + timedelta(days=1) - timedelta(microseconds=1)
    present = set(df.columns)
    checks: dict[str, list[Any]] = {name: [] for name in RAW_CHECKS}
    checks["schema"].append(
        gxe.ExpectTableColumnsToMatchSet(
            column_set=list(REQUIRED_TRANSACTION_COLUMNS), exact_match=False
        )
    )
    for col, gx_type in _CANONICAL_GX_TYPE.items():
        if col in present:
            checks["schema"].append(gxe.ExpectColumnValuesToBeOfType(column=col, type_=gx_type))
    for col in NON_NULL_COLUMNS:
        if col in present:
            checks["keys_not_null"].append(gxe.ExpectColumnValuesToNotBeNull(column=col))
    if "transaction_id" in present:
        checks["transaction_id_unique"].append(
            gxe.ExpectColumnValuesToBeUnique(column="transaction_id")
        )
    if "amount" in present:
        checks["amount_range"].append(
            gxe.ExpectColumnValuesToBeBetween(
                column="amount", min_value=0, max_value=config.amount_cap
            )
        )
    if "ts" in present:
        checks["ts_in_partition"].append(
            gxe.ExpectColumnValuesToBeBetween(
                column="ts", min_value=pd.Timestamp(start), max_value=pd.Timestamp(end)
            )
        )
    if trailing_row_counts:
        mean = sum(trailing_row_counts) / len(trailing_row_counts)
        checks["row_count_band"].append(
            gxe.ExpectTableRowCountToBeBetween(
                min_value=int(mean * (1 - config.row_count_band)),
                max_value=int(mean * (1 + config.row_count_band)) + 1,
            )
        )
    if "is_fraud" in present and df.height:
        checks["label_rate_band"].append(
            gxe.ExpectColumnMeanToBeBetween(
                column="is_fraud", min_value=config.label_rate_min, max_value=config.label_rate_max
            )
        )
    return checks


def _to_python(value: Any) -> Any:
    """GX returns numpy scalars and pandas timestamps: make them plain and printable."""
    if hasattr(value, "item") and callable(value.item):
        try:
            return value.item()
        except (ValueError, TypeError):
            pass
    if isinstance(value, list):
        return [_to_python(v) for v in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)


def _outcome(result: Any) -> ExpectationOutcome:
    cfg = result.expectation_config
    info = result.result or {}
    exc = result.exception_info or {}
    if exc.get("raised_exception"):
        observed: Any = f"error: {exc.get('exception_message')}"
    elif "observed_value" in info:
        observed = info["observed_value"]
    else:
        observed = f"{info.get('unexpected_count', 0)} unexpected rows"
    return ExpectationOutcome(
        expectation=cfg.type,
        column=cfg.kwargs.get("column"),
        success=bool(result.success),
        observed=_to_python(observed),
        unexpected_examples=_to_python(list(info.get("partial_unexpected_list") or [])[:5]),
    )


def run_suite(
    df: pl.DataFrame, suite_name: str, groups: dict[str, list[Any]]
) -> dict[str, list[ExpectationOutcome]]:
    """Validate `df` once against every expectation; results regrouped by check name."""
    gx, _, context = _gx()
    expectations = [e for group in groups.values() for e in group]
    out: dict[str, list[ExpectationOutcome]] = {name: [] for name in groups}
    if not expectations:
        return out
    suite = gx.ExpectationSuite(name=suite_name, expectations=expectations)
    source = context.data_sources.add_or_update_pandas(f"{suite_name}_source")
    asset = source.add_dataframe_asset(f"{suite_name}_{id(df)}")
    batch_def = asset.add_batch_definition_whole_dataframe("whole")
    pdf = df.to_pandas(use_pyarrow_extension_array=True)
    result = batch_def.get_batch(batch_parameters={"dataframe": pdf}).validate(suite)
    source.delete_asset(asset.name)
    # GX reorders results: map each back to its check through its configuration.
    by_key = {
        _key(r.expectation_config.type, r.expectation_config.kwargs): r for r in result.results
    }
    for name, group in groups.items():
        for exp in group:
            config = exp.configuration
            out[name].append(_outcome(by_key[_key(config.type, config.kwargs)]))
    return out


def _key(kind: str, kwargs: dict[str, Any]) -> str:
    return kind + repr(sorted((k, repr(v)) for k, v in kwargs.items() if k != "batch_id"))


def validate_raw_transactions(
    df: pl.DataFrame,
    day: date,
    config: RawQualityConfig | None = None,
    trailing_row_counts: Sequence[int] = (),
) -> list[CheckOutcome]:
    """The raw-data gate: one CheckOutcome per entry of RAW_CHECKS."""
    config = config or RawQualityConfig()
    groups = _raw_expectations(df, day, config, trailing_row_counts)
    results = run_suite(df, "raw_transactions", groups)
    outcomes = []
    for name, description in RAW_CHECKS.items():
        exps = results[name]
        if not exps:  # nothing to check (no history yet, no label column): say so
            exps = [ExpectationOutcome("not_applicable", None, True, _why_skipped(name))]
        outcomes.append(CheckOutcome(name, description, exps))
    return outcomes


def _why_skipped(name: str) -> str:
    reasons: dict[str, str] = {
        "row_count_band": "no earlier partitions to compare with",
        "label_rate_band": "source has no label column (or the day is empty)",
    }
    return reasons.get(name, "required column missing (see schema check)")


FEATURE_CHECKS: dict[str, str] = {
    "feature_columns": "exactly the key and feature columns: no truth or label column",
    "features_not_null": "no nulls in any feature",
    "features_finite_and_in_range": "no infinities; counts >= 0, risks in [0, 1], hour in [0, 23], "
    "z-scores finite",
}


def feature_ranges(columns: Sequence[str]) -> dict[str, tuple[float, float]]:
    """Allowed range per numeric feature. A finite upper bound also rejects +inf."""
    from fraud_assets.lib.features.definitions import NUMERIC_FEATURES

    ranges: dict[str, tuple[float, float]] = {}
    for col in NUMERIC_FEATURES:
        if col not in columns:
            continue
        if col == "hour":
            ranges[col] = (0, 23)
        elif col in ("is_weekend", "is_night") or col.startswith("terminal_risk"):
            ranges[col] = (0, 1)
        elif col.startswith("amount_zscore"):  # either side of the customer's normal
            ranges[col] = (-1e12, 1e12)
        else:
            ranges[col] = (0, 1e12)
    return ranges


def feature_profile(df: pl.DataFrame) -> pl.DataFrame:
    """One row per feature: nulls, non-finite values and values out of range.

    Validating this profile (tens of rows) instead of every column of every row keeps the
    gate at tens of milliseconds: GX costs ~60 ms per column expectation.
    """
    ranges = feature_ranges(df.columns)
    rows = []
    for col, (lo, hi) in ranges.items():
        c = pl.col(col)
        rows.append(
            df.select(
                feature=pl.lit(col),
                nulls=c.is_null().sum().cast(pl.Int64),
                non_finite=(~c.is_finite()).sum().cast(pl.Int64),
                out_of_range=((c < lo) | (c > hi)).sum().cast(pl.Int64),
            )
        )
    cats = [c for c, t in df.schema.items() if t == pl.String and c not in ranges]
    for col in cats:
        rows.append(
            df.select(
                feature=pl.lit(col),
                nulls=pl.col(col).is_null().sum().cast(pl.Int64),
                non_finite=pl.lit(0, pl.Int64),
                out_of_range=pl.lit(0, pl.Int64),
            )
        )
    return pl.concat(rows)


def validate_features(df: pl.DataFrame, expected_columns: Sequence[str]) -> list[CheckOutcome]:
    """The feature gate: one CheckOutcome per entry of FEATURE_CHECKS."""
    _, gxe, _ = _gx()
    columns = run_suite(
        df.head(0),
        "transaction_features_columns",
        {
            "feature_columns": [
                gxe.ExpectTableColumnsToMatchSet(
                    column_set=list(expected_columns), exact_match=True
                )
            ]
        },
    )
    profile = feature_profile(df)
    groups = {
        "features_not_null": [
            gxe.ExpectColumnValuesToBeBetween(column="nulls", min_value=0, max_value=0)
        ],
        "features_finite_and_in_range": [
            gxe.ExpectColumnValuesToBeBetween(column="non_finite", min_value=0, max_value=0),
            gxe.ExpectColumnValuesToBeBetween(column="out_of_range", min_value=0, max_value=0),
        ],
    }
    results = run_suite(profile, "transaction_features_profile", groups) | columns
    outcomes = []
    for name, desc in FEATURE_CHECKS.items():
        exps = results[name]
        if name != "feature_columns":
            # Name the offending features rather than the counts GX saw.
            measures = ["nulls"] if name == "features_not_null" else ["non_finite", "out_of_range"]
            bad = profile.filter(pl.any_horizontal(pl.col(m) > 0 for m in measures))
            exps = [
                ExpectationOutcome(
                    e.expectation,
                    e.column,
                    e.success,
                    e.observed if e.success else f"{e.observed} in features",
                    bad.select(
                        pl.format("{}: {}", "feature", pl.concat_str(measures, separator="/"))
                    )
                    .to_series()
                    .to_list(),
                )
                for e in exps
            ]
        outcomes.append(CheckOutcome(name, desc, exps))
    return outcomes
