"""Live performance: how well each variant did once labels arrived, and what it cost.

Input: predictions joined with the labels known so far (``logs.join_labels``): one row per
transaction and variant with ``is_fraud`` (null while unknown) and ``alert`` (decision !=
approve). A/B differences come from ``ab``; undefined values (no labels, one class) are NaN
in the tables and None in the headline.
"""

from __future__ import annotations

import math
from typing import Any

import polars as pl

from fraud_assets.lib.contracts import CHALLENGER, CHAMPION, DECLINE, LOGGED_VARIANTS, SHADOW
from fraud_assets.lib.metrics import average_precision, confusion_at_threshold
from fraud_assets.lib.monitoring import ALL
from fraud_assets.lib.monitoring.ab import (
    BOOTSTRAP_SEED,
    N_BOOT,
    Difference,
    Sample,
    bootstrap_paired,
    bootstrap_split,
)

# --------------------------------------------------------------------------- live performance

PERFORMANCE_SCHEMA: dict[str, pl.DataType] = {
    "variant": pl.String(),
    "rows": pl.Int64(),
    "n_labelled": pl.Int64(),
    "labelled_share": pl.Float64(),
    "n_fraud": pl.Int64(),
    "ap": pl.Float64(),
    "precision_at_alert": pl.Float64(),
    "recall_at_alert": pl.Float64(),
    "alert_rate": pl.Float64(),
    "model_versions": pl.String(),
    # A/B against the champion (null on the champion's row): champion - this variant.
    "comparison": pl.String(),  # "split" (independent bootstrap) or "paired" (shadow)
    "n_compared": pl.Int64(),
    "ap_diff": pl.Float64(),
    "ap_diff_ci_low": pl.Float64(),
    "ap_diff_ci_high": pl.Float64(),
    "recall_diff": pl.Float64(),
    "recall_diff_ci_low": pl.Float64(),
    "recall_diff_ci_high": pl.Float64(),
}


def _variant_row(name: str, frame: pl.DataFrame) -> dict[str, Any]:
    labelled = frame.filter(pl.col("is_fraud").is_not_null())
    y = labelled["is_fraud"].cast(pl.Int8).to_numpy()
    alert = labelled["alert"].cast(pl.Float64).to_numpy()
    confusion = confusion_at_threshold(y, alert, 0.5)  # alert (0/1) >= 0.5: the service's rule
    versions = sorted(v for v in frame["model_version"].unique().to_list() if v is not None)
    return {
        "variant": name,
        "rows": frame.height,
        "n_labelled": labelled.height,
        "labelled_share": labelled.height / frame.height if frame.height else math.nan,
        "n_fraud": int(y.sum()),
        "ap": average_precision(y, labelled["score"].to_numpy()),
        "precision_at_alert": confusion["precision"],
        "recall_at_alert": confusion["recall"],
        "alert_rate": float(frame["alert"].mean()) if frame.height else math.nan,
        "model_versions": ", ".join(versions),
    }


def _comparison_fields(kind: str, n: int, diffs: dict[str, Difference]) -> dict[str, Any]:
    ap, recall = diffs["ap"], diffs["recall"]
    return {
        "comparison": kind,
        "n_compared": n,
        "ap_diff": ap.value,
        "ap_diff_ci_low": ap.ci_low,
        "ap_diff_ci_high": ap.ci_high,
        "recall_diff": recall.value,
        "recall_diff_ci_low": recall.ci_low,
        "recall_diff_ci_high": recall.ci_high,
    }


def live_performance(
    joined: pl.DataFrame, *, n_boot: int = N_BOOT, seed: int = BOOTSTRAP_SEED
) -> pl.DataFrame:
    """One row per variant present (champion first): labelled share, AP, precision and recall
    at the alert rule, and on challenger / shadow rows the A/B difference against the
    champion with its bootstrap interval. Undefined values (no labels, one class) are NaN."""
    labelled = joined.filter(pl.col("is_fraud").is_not_null())
    champ = labelled.filter(pl.col("variant") == CHAMPION)
    rows = []
    for name in LOGGED_VARIANTS:
        frame = joined.filter(pl.col("variant") == name)
        if not frame.height:
            continue
        row = _variant_row(name, frame)
        mine = labelled.filter(pl.col("variant") == name)
        if name == CHALLENGER and champ.height and mine.height:
            diffs = bootstrap_split(Sample.of(champ), Sample.of(mine), n_boot=n_boot, seed=seed)
            row |= _comparison_fields("split", champ.height + mine.height, diffs)
        elif name == SHADOW and mine.height:
            pairs = champ.select("transaction_id", "is_fraud", "score", "alert").join(
                mine.select("transaction_id", "score", "alert"),
                on="transaction_id",
                suffix="_challenger",
            )
            if pairs.height:
                diffs = bootstrap_paired(
                    pairs["is_fraud"].cast(pl.Float64).to_numpy(),
                    pairs["score"].to_numpy(),
                    pairs["score_challenger"].to_numpy(),
                    pairs["alert"].cast(pl.Float64).to_numpy(),
                    pairs["alert_challenger"].cast(pl.Float64).to_numpy(),
                    n_boot=n_boot,
                    seed=seed,
                )
                row |= _comparison_fields("paired", pairs.height, diffs)
        rows.append(row)
    table = (
        pl.DataFrame(rows, schema=PERFORMANCE_SCHEMA)
        if rows
        else pl.DataFrame(schema=PERFORMANCE_SCHEMA)
    )
    return table.with_columns(pl.col(pl.Float64).fill_nan(None))


def _nan_to_none(value: Any) -> Any:
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def headline(performance: pl.DataFrame) -> dict[str, Any]:
    """The numbers the UI plots and the drift sensor reads (None where undefined).

    `live_ap_champion` / `n_labelled`: the champion's AP and the labelled rows it is computed
    on. The A/B keys come from the challenger row with the most compared rows (split traffic
    or shadow); `ab_mode` says which ("none" without a challenger)."""

    def value(variant: str, column: str) -> Any:
        hit = performance.filter(pl.col("variant") == variant)
        return _nan_to_none(hit[column][0]) if hit.height else None

    out: dict[str, Any] = {
        "live_ap_champion": value(CHAMPION, "ap"),
        "n_labelled": int(value(CHAMPION, "n_labelled") or 0),
        "n_labelled_total": int(
            performance.filter(pl.col("variant") != SHADOW)["n_labelled"].sum() or 0
        ),
        "labelled_share_champion": value(CHAMPION, "labelled_share"),
        "precision_at_alert_champion": value(CHAMPION, "precision_at_alert"),
        "recall_at_alert_champion": value(CHAMPION, "recall_at_alert"),
    }
    compared = performance.filter(pl.col("comparison").is_not_null()).sort(
        "n_compared", descending=True, maintain_order=True
    )
    if not compared.height:
        return out | {"ab_mode": "none"}
    best = compared.row(0, named=True)
    name = best["variant"]
    out |= {
        "ab_mode": best["comparison"],
        "live_ap_challenger": _nan_to_none(best["ap"]),
        "n_labelled_challenger": int(best["n_labelled"]),
        "precision_at_alert_challenger": _nan_to_none(best["precision_at_alert"]),
        "recall_at_alert_challenger": _nan_to_none(best["recall_at_alert"]),
        "ab_n_compared": int(best["n_compared"]),
        "challenger_row": name,
    }
    for key in (
        "ap_diff",
        "ap_diff_ci_low",
        "ap_diff_ci_high",
        "recall_diff",
        "recall_diff_ci_low",
        "recall_diff_ci_high",
    ):
        out[key] = _nan_to_none(best[key])
    return out


# --------------------------------------------------------------------------- business metrics

BUSINESS_SCHEMA: dict[str, pl.DataType] = {
    "variant": pl.String(),
    "rows": pl.Int64(),
    "n_labelled": pl.Int64(),
    "n_fraud": pl.Int64(),
    "alerts": pl.Int64(),
    "alert_rate": pl.Float64(),
    "declines": pl.Int64(),
    "fraud_caught": pl.Int64(),
    "fraud_amount_caught": pl.Float64(),
    "fraud_missed": pl.Int64(),
    "fraud_amount_missed": pl.Float64(),
    "false_declines": pl.Int64(),
    "false_decline_amount": pl.Float64(),
}


def business_metrics(joined: pl.DataFrame) -> pl.DataFrame:
    """Money and customers, per variant and for all answered traffic (`variant == "all"`,
    champion + challenger; shadow rows are what the challenger *would* have done, never part
    of the total). Fraud caught: alerted (review or decline) and fraud; missed: approved and
    fraud; false declines: declined and genuine (count and amount). Unlabelled rows count in
    alerts and the alert rate only."""
    fraud = pl.col("is_fraud") == 1
    genuine = pl.col("is_fraud") == 0
    alert = pl.col("alert")
    decline = pl.col("decision") == DECLINE
    amount = pl.col("amount").fill_null(0.0)

    def figures() -> list[pl.Expr]:
        return [
            pl.len().cast(pl.Int64).alias("rows"),
            pl.col("is_fraud").is_not_null().sum().cast(pl.Int64).alias("n_labelled"),
            fraud.sum().cast(pl.Int64).alias("n_fraud"),
            alert.sum().cast(pl.Int64).alias("alerts"),
            alert.cast(pl.Float64).mean().alias("alert_rate"),
            decline.sum().cast(pl.Int64).alias("declines"),
            (alert & fraud).sum().cast(pl.Int64).alias("fraud_caught"),
            amount.filter(alert & fraud).sum().cast(pl.Float64).alias("fraud_amount_caught"),
            (~alert & fraud).sum().cast(pl.Int64).alias("fraud_missed"),
            amount.filter(~alert & fraud).sum().cast(pl.Float64).alias("fraud_amount_missed"),
            (decline & genuine).sum().cast(pl.Int64).alias("false_declines"),
            amount.filter(decline & genuine).sum().cast(pl.Float64).alias("false_decline_amount"),
        ]

    per_variant = (
        joined.group_by("variant")
        .agg(figures())
        .with_columns(
            _order=pl.col("variant").replace_strict(list(LOGGED_VARIANTS), [0, 1, 2], default=3)
        )
        .sort("_order", "variant")
        .drop("_order")
    )
    total = (
        joined.filter(pl.col("variant") != SHADOW)
        .select(figures())
        .with_columns(pl.lit(ALL).alias("variant"))
    )
    return (
        pl.concat([total.select(list(BUSINESS_SCHEMA)), per_variant.select(list(BUSINESS_SCHEMA))])
        .cast(BUSINESS_SCHEMA)
        .with_columns(pl.col(pl.Float64).fill_nan(None))
    )
