"""Fraud model metrics: ranking quality, card precision@k, cost/benefit, thresholds.

Pure functions over numpy arrays / Polars frames so that training, evaluation and
monitoring read the same numbers from the same code. scikit-learn is imported inside the
functions that need it (the Dagster code location must load fast). Drift (frozen bins, PSI)
lives in `fraud_assets.lib.monitoring.drift`.

Conventions:
- `y_true` is 0/1 (or bool), `score` is higher-is-riskier, an alert is `score >= threshold`.
- Undefined ratios (AUC with one class, precision with no alerts...) are NaN, never a
  silent 0: a quality gate comparing NaN to a floor fails, which is the safe way to fail.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import polars as pl

ArrayLike = np.ndarray | pl.Series | Sequence[Any]

# --------------------------------------------------------------------------- helpers


def _as_array(values: Any) -> np.ndarray:
    if isinstance(values, pl.Series):
        return values.to_numpy()
    if hasattr(values, "to_numpy"):  # pandas Series / arrow arrays
        return np.asarray(values.to_numpy())
    return np.asarray(values)


def as_float(values: Any) -> np.ndarray:
    """Float64 view of numeric values, nulls as NaN (Polars, pandas, numpy or lists)."""
    if isinstance(values, pl.Series):
        if not (values.dtype.is_numeric() or values.dtype == pl.Boolean):
            raise TypeError(f"numeric bins need numeric values, got {values.dtype}")
        return values.cast(pl.Float64).to_numpy()
    if hasattr(values, "to_numpy"):  # pandas: nullable dtypes need an explicit NA value
        try:
            return np.asarray(values.to_numpy(dtype=np.float64, na_value=np.nan))
        except TypeError:
            pass
    arr = np.asarray(values)
    if arr.dtype == object:
        arr = np.array([np.nan if v is None else v for v in arr.tolist()], dtype=np.float64)
    if not (np.issubdtype(arr.dtype, np.number) or arr.dtype == np.bool_):
        raise TypeError(f"numeric bins need numeric values, got {arr.dtype}")
    return arr.astype(np.float64, copy=False)


def _labels_scores(y_true: ArrayLike, score: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    y = _as_array(y_true).astype(bool)
    s = _as_array(score).astype(np.float64)
    if y.shape != s.shape or y.ndim != 1:
        raise ValueError(f"y_true {y.shape} and score {s.shape} must be 1-d and aligned")
    return y, s


def _with_amount(
    y_true: ArrayLike, score: ArrayLike, amount: ArrayLike
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    y, s = _labels_scores(y_true, score)
    a = _as_array(amount).astype(np.float64)
    if a.shape != s.shape:
        raise ValueError(f"amount {a.shape} must be aligned with score {s.shape}")
    return y, s, a


def _ratio(num: float, den: float) -> float:
    return float(num) / float(den) if den else math.nan


# --------------------------------------------------------------------------- ranking


def roc_auc(y_true: ArrayLike, score: ArrayLike) -> float:
    """ROC AUC (sklearn definition); NaN when only one class is present, where it is undefined."""
    y, s = _labels_scores(y_true, score)
    if y.size == 0 or y.all() or not y.any():
        return math.nan
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(y, s))


def average_precision(y_true: ArrayLike, score: ArrayLike) -> float:
    """Average precision (area under the PR curve, sklearn definition): the ranking metric that
    respects the heavy class imbalance of fraud. NaN when only one class is present."""
    y, s = _labels_scores(y_true, score)
    if y.size == 0 or y.all() or not y.any():
        return math.nan
    from sklearn.metrics import average_precision_score

    return float(average_precision_score(y, s))


# --------------------------------------------------------------------------- card precision@k


def card_precision_at_k_per_day(
    df: pl.DataFrame,
    k: int = 100,
    *,
    day_col: str = "day",
    card_col: str = "customer_id",
    score_col: str = "score",
    label_col: str = "is_fraud",
    remove_detected: bool = True,
) -> pl.DataFrame:
    """Card precision@k per test day (Fraud Detection Handbook, ch. 4).

    Investigators check a fixed number of *cards* a day, so each day cards are ranked by
    their highest score that day and the top k are checked; a card is fraudulent if any of
    its transactions that day is. Cards already detected (fraudulent and in an earlier day's
    top k) are blocked, so they are removed from later days. Ties in score are broken by
    card id, so the result is deterministic.

    Returns `day`, `cp_at_k` (fraudulent cards in the top k / k) and `n_fraud_cards` (the
    day's fraudulent cards still undetected), one row per day in order.
    """
    if k <= 0:
        raise ValueError(f"k must be positive, got {k}")
    cards = (
        df.lazy()
        .group_by(day_col, card_col)
        .agg(
            pl.col(score_col).max().alias("_score"),
            pl.col(label_col).cast(pl.Int8).max().fill_null(0).alias("_fraud"),
        )
        .sort(day_col)
        .collect()
    )
    rows: dict[str, list[Any]] = {"day": [], "cp_at_k": [], "n_fraud_cards": []}
    detected: list[Any] = []
    for one_day in cards.partition_by(day_col, maintain_order=True):
        if remove_detected and detected:
            one_day = one_day.filter(~pl.col(card_col).is_in(pl.Series(detected).implode()))
        top = one_day.sort("_score", card_col, descending=[True, False], nulls_last=True).head(k)
        caught = top.filter(pl.col("_fraud") == 1)[card_col].to_list()
        rows["day"].append(one_day[day_col][0])
        rows["cp_at_k"].append(len(caught) / k)
        rows["n_fraud_cards"].append(int(one_day["_fraud"].sum()))
        detected.extend(caught)
    return pl.DataFrame(
        rows,
        schema={"day": cards.schema[day_col], "cp_at_k": pl.Float64, "n_fraud_cards": pl.Int64},
    )


def card_precision_at_k(
    df: pl.DataFrame,
    k: int = 100,
    *,
    day_col: str = "day",
    card_col: str = "customer_id",
    score_col: str = "score",
    label_col: str = "is_fraud",
    remove_detected: bool = True,
) -> float:
    """Mean over test days of the daily card precision@k (see `card_precision_at_k_per_day`):
    what fraction of a day's investigation budget lands on compromised cards. NaN if no days."""
    per_day = card_precision_at_k_per_day(
        df,
        k,
        day_col=day_col,
        card_col=card_col,
        score_col=score_col,
        label_col=label_col,
        remove_detected=remove_detected,
    )
    return float(per_day["cp_at_k"].mean()) if per_day.height else math.nan


# --------------------------------------------------------------------------- cost / benefit


def expected_savings(
    y_true: ArrayLike,
    score: ArrayLike,
    amount: ArrayLike,
    threshold: float,
    *,
    review_cost: float,
    false_decline_cost: float,
) -> float:
    """Money saved by alerting on `score >= threshold`: fraud amounts caught, minus a review
    cost per alert, minus a false-decline cost per genuine transaction stopped. This is what
    the business optimises, unlike AUC."""
    y, s, a = _with_amount(y_true, score, amount)
    alerts = s >= threshold
    caught = float(a[alerts & y].sum())
    n_alerts = int(alerts.sum())
    n_fp = int((alerts & ~y).sum())
    return caught - review_cost * n_alerts - false_decline_cost * n_fp


def choose_threshold(
    y_true: ArrayLike,
    score: ArrayLike,
    amount: ArrayLike,
    *,
    review_cost: float,
    false_decline_cost: float,
    candidates: ArrayLike | None = None,
) -> tuple[float, float]:
    """The alert threshold maximising `expected_savings`, and those savings.

    Default candidates are every distinct score (all the empirical quantiles, so the result
    is the exact optimum) plus "alert on nothing" (a threshold just above the top score,
    savings 0). Savings for all candidates come from one sort and cumulative sums:
    O(n log n), no loop over thresholds. Ties in savings go to the higher threshold (fewer
    alerts for the same money). NaN scores never alert; no scored rows gives (inf, 0.0).
    """
    y, s, a = _with_amount(y_true, score, amount)
    scored = ~np.isnan(s)  # a NaN score never alerts: it adds nothing at any threshold
    y, s, a = y[scored], s[scored], a[scored]
    if s.size == 0:
        return math.inf, 0.0
    order = np.argsort(-s, kind="stable")
    s_desc = s[order]
    y_desc = y[order]
    # Prefix sums with a leading 0: entry m = totals over the m highest scores.
    caught = np.concatenate(([0.0], np.cumsum(np.where(y_desc, a[order], 0.0))))
    fps = np.concatenate(([0], np.cumsum(~y_desc)))
    if candidates is None:
        # Last position of each run of equal scores: alerting at that score takes the run.
        last = np.flatnonzero(np.append(s_desc[1:] != s_desc[:-1], True))
        thresholds = np.concatenate(([np.nextafter(s_desc[0], np.inf)], s_desc[last]))
        n_alerts = np.concatenate(([0], last + 1))
    else:
        thresholds = np.sort(as_float(candidates))[::-1]  # descending: ties -> higher one
        if thresholds.size == 0:
            raise ValueError("candidates is empty")
        # Alerts at t = count of scores >= t; s_desc is descending, search its negation.
        n_alerts = np.searchsorted(-s_desc, -thresholds, side="right")
    savings = caught[n_alerts] - review_cost * n_alerts - false_decline_cost * fps[n_alerts]
    best = int(np.argmax(savings))
    return float(thresholds[best]), float(savings[best])


def confusion_at_threshold(y_true: ArrayLike, score: ArrayLike, threshold: float) -> dict[str, Any]:
    """Confusion counts and rates of the alert rule `score >= threshold`, for reading a model
    at its operating point rather than over all thresholds. Undefined rates are NaN."""
    y, s = _labels_scores(y_true, score)
    alerts = s >= threshold
    tp = int((alerts & y).sum())
    fp = int((alerts & ~y).sum())
    fn = int((~alerts & y).sum())
    tn = int((~alerts & ~y).sum())
    return {
        "precision": _ratio(tp, tp + fp),
        "recall": _ratio(tp, tp + fn),
        "false_positive_rate": _ratio(fp, fp + tn),
        "tp": tp,
        "fp": fp,
        "fn": fn,
        "tn": tn,
        "alerts": tp + fp,
    }


def business_figures(
    y_true: ArrayLike, score: ArrayLike, amount: ArrayLike, threshold: float, n_days: int
) -> dict[str, float | int]:
    """The figures a fraud team reports: money caught and missed, analyst workload (alerts
    per day) and genuine customers stopped (false declines, a count)."""
    if n_days <= 0:
        raise ValueError(f"n_days must be positive, got {n_days}")
    y, s, a = _with_amount(y_true, score, amount)
    alerts = s >= threshold
    return {
        "fraud_amount_caught": float(a[alerts & y].sum()),
        "fraud_amount_missed": float(a[~alerts & y].sum()),
        "alerts_per_day": float(alerts.sum()) / n_days,
        "false_declines": int((alerts & ~y).sum()),
    }
