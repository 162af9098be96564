"""Fraud-specific evaluation of a scored test window, the same way for every model.

The operating threshold is chosen on the validation slice (never on the test window) to
maximise expected savings; test metrics are then read at that threshold.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

from fraud_assets.lib.calibration import brier_score
from fraud_assets.lib.metrics import (
    average_precision,
    business_figures,
    card_precision_at_k,
    choose_threshold,
    confusion_at_threshold,
    expected_savings,
    roc_auc,
)
from fraud_assets.lib.schema import SCENARIO


def card_day_clusters(rows: pl.DataFrame) -> np.ndarray:
    """Cluster ids 0 .. k-1 of (customer, day): a card's transactions of one day are not
    independent, so bootstrap intervals resample them together."""
    key = pl.concat_str("customer_id", pl.col("ts").dt.date().cast(pl.String))
    return rows.select(key).to_series().rank("dense").to_numpy() - 1


@dataclass(frozen=True)
class CostModel:
    review_cost: float = 5.0  # analyst time per alert
    false_decline_cost: float = 10.0  # friction / lost business per genuine customer stopped
    decline_precision: float = 0.8  # decline outright only where alerts are this precise
    cp_k: int = 100  # the literature's fixed k (comparable with published figures)
    # Investigators' daily capacity as a share of the day's active cards: the k of the
    # volume-scaled card precision (100 of 5,000 cards is 2%).
    review_share: float = 0.02


def review_capacity(test: pl.DataFrame, share: float) -> int:
    """Cards reviewed a day: ``share`` of the mean number of distinct cards a test day."""
    per_day = test.group_by(pl.col("ts").dt.date()).agg(pl.col("customer_id").n_unique())
    mean_cards = float(per_day["customer_id"].mean() or 0.0)
    return max(1, round(share * mean_cards))


def card_precision_summary(scored: pl.DataFrame, k: int, prefix: str) -> dict[str, float]:
    """CP@k, its ceiling (a perfect ranker's CP@k under the same protocol: some days have
    fewer than k undetected fraudulent cards) and CP@k / ceiling, which compares across
    volumes and datasets."""
    value = card_precision_at_k(scored, k)
    ceiling = card_precision_at_k(scored.with_columns(score=pl.col("is_fraud")), k)
    return {
        prefix: value,
        f"{prefix}_ceiling": ceiling,
        f"{prefix}_normalised": value / ceiling if ceiling > 0 else float("nan"),
    }


def recall_by_scenario(test: pl.DataFrame, score: np.ndarray, threshold: float) -> dict[str, float]:
    """Share of each fraud scenario's test transactions alerted at the threshold (only where
    the source says which scenario made a fraud: the simulator)."""
    if SCENARIO not in test.columns:
        return {}
    frauds = test.with_columns(alert=pl.Series(score) >= threshold).filter(
        pl.col("label") == 1, pl.col(SCENARIO).is_not_null()
    )
    per = frauds.group_by(SCENARIO).agg(pl.col("alert").mean()).sort(SCENARIO)
    return {f"recall_{name}": float(r) for name, r in per.iter_rows()}


def choose_thresholds(
    y: np.ndarray, score: np.ndarray, amount: np.ndarray, costs: CostModel
) -> dict[str, float]:
    """Review threshold: max expected savings. Decline threshold: the lowest score whose
    alerts reach `decline_precision` (and never below the review threshold)."""
    review, savings = choose_threshold(
        y, score, amount, review_cost=costs.review_cost, false_decline_cost=costs.false_decline_cost
    )
    decline = 1.0
    if len(score):
        order = np.argsort(-score, kind="stable")
        tp = np.cumsum(y[order])
        precision = tp / np.arange(1, len(order) + 1)
        ok = np.flatnonzero(precision >= costs.decline_precision)
        if len(ok):
            decline = float(score[order][ok[-1]])
    return {
        "review": float(review),
        "decline": float(max(decline, review)),
        "validation_savings": float(savings),
    }


def evaluate_scores(
    test: pl.DataFrame, score: np.ndarray, threshold: float, costs: CostModel
) -> dict[str, float]:
    """Ranking metrics, CP@k, confusion at the threshold and business figures on `test`.

    `test` needs label, amount, customer_id and ts; `score` is aligned with its rows.
    """
    y = test["label"].to_numpy()
    amount = test["amount"].to_numpy()
    capacity = review_capacity(test, costs.review_share)
    n_days = max(1, test["ts"].dt.date().n_unique())
    scored = test.select(
        day=pl.col("ts").dt.date(), customer_id="customer_id", is_fraud="label"
    ).with_columns(score=pl.Series(score))
    out: dict[str, float] = {
        "auc_roc": roc_auc(y, score),
        "brier": brier_score(y, score),
        "average_precision": average_precision(y, score),
        **card_precision_summary(scored, costs.cp_k, f"card_precision_at_{costs.cp_k}"),
        **card_precision_summary(scored, capacity, "card_precision_at_k"),
        "cp_k": float(capacity),
        "threshold": threshold,
        "expected_savings": expected_savings(
            y,
            score,
            amount,
            threshold,
            review_cost=costs.review_cost,
            false_decline_cost=costs.false_decline_cost,
        ),
    }
    conf = confusion_at_threshold(y, score, threshold)
    out |= {k: float(conf[k]) for k in ("precision", "recall", "false_positive_rate")}
    out |= {k: float(v) for k, v in business_figures(y, score, amount, threshold, n_days).items()}
    return out | recall_by_scenario(test, score, threshold)
