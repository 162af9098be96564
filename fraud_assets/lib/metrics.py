"""Fraud metrics: ranking quality, card precision@k, cost/benefit, and PSI with frozen bins.

Pure functions over numpy arrays / Polars frames so that training, evaluation and
monitoring read the same numbers from the same code. scikit-learn and Evidently are
imported inside the functions that need them (the Dagster code location must load fast).

Conventions:
- `y_true` is 0/1 (or bool), `score` is higher-is-riskier, an alert is `score >= threshold`.
- Undefined ratios (AUC with one class, precision with no alerts...) are NaN, never a
  silent 0: a quality gate comparing NaN to a floor fails, which is the safe way to fail.
- PSI compares shares per bucket, `sum((cur - ref) * ln(cur / ref))`, with shares floored at
  `PSI_EPSILON`. Buckets are frozen at training time (reference quantiles, or the top
  reference categories), so a drift number means the same thing every day.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl

PSI_EPSILON = 1e-4  # floor on bucket shares: an empty bucket must not give log(0)
PSI_ALERT = 0.25  # the usual "significant shift" level; drives the drift trigger
DEFAULT_N_BINS = 10
MAX_CATEGORIES = 50
OTHER = "other"  # bucket label for categories unseen (or rare) in the reference
EVIDENTLY_STATTEST_NAME = "frozen_psi"

ArrayLike = np.ndarray | pl.Series | Sequence[Any]

# --------------------------------------------------------------------------- helpers


def _as_array(values: Any) -> np.ndarray:
    if isinstance(values, pl.Series):
        return values.to_numpy()
    if hasattr(values, "to_numpy"):  # pandas Series / arrow arrays
        return np.asarray(values.to_numpy())
    return np.asarray(values)


def _as_float(values: Any) -> np.ndarray:
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


def _as_strings(values: Any) -> pl.Series:
    """Values as a Polars String series (categories are compared by their text)."""
    if isinstance(values, pl.Series):
        s = values
    elif type(values).__module__.partition(".")[0] == "pandas":
        s = pl.from_pandas(values)
    else:
        try:
            s = pl.Series(values)
        except (TypeError, ValueError, pl.exceptions.PolarsError):  # mixed types
            s = pl.Series([None if v is None else str(v) for v in values], dtype=pl.String)
    return s.cast(pl.String).rename("value")


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
        thresholds = np.sort(_as_float(candidates))[::-1]  # descending: ties -> higher one
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


# --------------------------------------------------------------------------- PSI


@dataclass(frozen=True)
class FrozenBins:
    """Buckets of one feature, fixed at training time and stored with the model.

    numeric: `edges` are the interior edges; bucket i holds (edges[i-1], edges[i]], then one
    bucket for null/NaN: len(edges) + 2 shares.
    categorical: one bucket per entry of `categories`, then "other" (anything else), then
    null: len(categories) + 2 shares.
    `reference_share` is the share of the reference data in each bucket, in that order.
    """

    kind: str
    edges: tuple[float, ...] = ()
    categories: tuple[str, ...] = ()
    reference_share: tuple[float, ...] = ()

    def __post_init__(self) -> None:
        if self.kind not in ("numeric", "categorical"):
            raise ValueError(f"kind must be 'numeric' or 'categorical', got {self.kind!r}")
        if self.kind == "numeric" and self.categories:
            raise ValueError("numeric bins have no categories")
        if self.kind == "categorical" and self.edges:
            raise ValueError("categorical bins have no edges")
        if len(self.reference_share) != self.n_buckets:
            raise ValueError(
                f"{self.n_buckets} buckets but {len(self.reference_share)} reference shares"
            )
        if self.edges and np.any(np.diff(self.edges) <= 0):
            raise ValueError("edges must be strictly increasing")

    @property
    def n_buckets(self) -> int:
        return len(self.edges if self.kind == "numeric" else self.categories) + 2

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-serialisable form (lists of floats/strings), to log with the model."""
        return {
            "kind": self.kind,
            "edges": [float(e) for e in self.edges],
            "categories": list(self.categories),
            "reference_share": [float(v) for v in self.reference_share],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FrozenBins:
        return cls(
            kind=str(data["kind"]),
            edges=tuple(float(e) for e in data.get("edges", ())),
            categories=tuple(str(c) for c in data.get("categories", ())),
            reference_share=tuple(float(v) for v in data["reference_share"]),
        )


def _numeric_counts(edges: np.ndarray, values: Any) -> np.ndarray:
    x = _as_float(values).ravel()
    n_nan = int(np.count_nonzero(np.isnan(x)))
    if edges.size <= 64:
        # One vectorised comparison per edge (~5x faster than searchsorted for few edges):
        # count(x <= e) is cumulative over buckets; NaN is never <= e.
        at_most = [np.count_nonzero(x <= e) for e in edges]
        counts = np.diff(np.array([0, *at_most, x.size - n_nan], dtype=np.int64))
    else:
        # NaN sorts after everything: searchsorted puts it in the last value bucket, move it.
        counts = np.bincount(np.searchsorted(edges, x, side="left"), minlength=edges.size + 1)
        counts[-1] -= n_nan
    return np.append(counts, n_nan).astype(np.float64)


def _categorical_counts(categories: tuple[str, ...], values: Any) -> np.ndarray:
    s = _as_strings(values)
    counts = np.zeros(len(categories) + 2, dtype=np.float64)
    counts[-1] = s.null_count()
    vc = s.drop_nulls().value_counts(name="count")
    if vc.height:
        idx = vc["value"].replace_strict(
            list(categories),
            list(range(len(categories))),
            default=len(categories),
            return_dtype=pl.Int64,
        )
        counts[:-1] = np.bincount(
            idx.to_numpy(), weights=vc["count"].to_numpy(), minlength=len(categories) + 1
        )
    return counts


def bin_shares(bins: FrozenBins, values: Any) -> np.ndarray:
    """Share of `values` in each frozen bucket (same order as `bins.reference_share`);
    all zeros for empty input."""
    if bins.kind == "numeric":
        counts = _numeric_counts(np.asarray(bins.edges, dtype=np.float64), values)
    else:
        counts = _categorical_counts(bins.categories, values)
    total = counts.sum()
    return counts / total if total else counts


def freeze_bins(
    reference: Any,
    n_bins: int = DEFAULT_N_BINS,
    categorical: bool = False,
    *,
    max_categories: int = MAX_CATEGORIES,
) -> FrozenBins:
    """Freeze the buckets of one feature from its training (reference) values.

    numeric: interior edges at the reference quantiles 1/n .. (n-1)/n, taken as observed
    values (no interpolation, so every bucket (e[i-1], e[i]] holds reference data) with
    duplicates dropped (a spike such as many zero amounts makes one bucket, not several
    empty ones). Equal reference mass per bucket is what keeps PSI sensitive on heavy-tailed
    amounts, where equal-width bins put nearly everything in the first bin.
    categorical: the `max_categories` most frequent reference values (ties by value);
    the rest, and anything new later, share the "other" bucket.
    Nulls/NaN always have their own bucket.
    """
    if categorical:
        s = _as_strings(reference)
        vc = (
            s.drop_nulls()
            .value_counts(name="count")
            .sort(["count", "value"], descending=[True, False])
        )
        cats = tuple(vc["value"].head(max_categories).to_list())
        counts = _categorical_counts(cats, s)
        bins_kw: dict[str, Any] = {"kind": "categorical", "categories": cats}
    else:
        if n_bins < 1:
            raise ValueError(f"n_bins must be >= 1, got {n_bins}")
        x = _as_float(reference).ravel()
        finite = x[np.isfinite(x)]
        edges = np.empty(0)
        if finite.size and n_bins > 1:
            probs = np.arange(1, n_bins) / n_bins  # exact k/n, unlike linspace
            edges = np.unique(np.quantile(finite, probs, method="inverted_cdf"))
        counts = _numeric_counts(edges, x)
        bins_kw = {"kind": "numeric", "edges": tuple(float(e) for e in edges)}
    total = counts.sum()
    share = counts / total if total else counts
    return FrozenBins(**bins_kw, reference_share=tuple(float(v) for v in share))


def psi_from_shares(reference_share: ArrayLike, current_share: ArrayLike) -> float:
    """PSI = sum((cur - ref) * ln(cur / ref)) with both shares floored at PSI_EPSILON."""
    ref = np.maximum(np.asarray(reference_share, dtype=np.float64), PSI_EPSILON)
    cur = np.maximum(np.asarray(current_share, dtype=np.float64), PSI_EPSILON)
    return float(np.sum((cur - ref) * np.log(cur / ref)))


def psi(bins: FrozenBins, current: Any) -> float:
    """Population stability index of `current` against the frozen reference buckets
    (NaN for empty input). > 0.25 is the usual "significant shift" level."""
    shares = bin_shares(bins, current)
    if not shares.any():
        return math.nan
    return psi_from_shares(bins.reference_share, shares)


def freeze_frame_bins(
    reference: pl.DataFrame,
    *,
    numeric: Sequence[str] = (),
    categorical: Sequence[str] = (),
    n_bins: int = DEFAULT_N_BINS,
) -> dict[str, FrozenBins]:
    """`freeze_bins` for several columns of a training frame, ready for `psi_table`."""
    out = {c: freeze_bins(reference[c], n_bins) for c in numeric}
    out |= {c: freeze_bins(reference[c], categorical=True) for c in categorical}
    return out


def psi_table(
    bins: Mapping[str, FrozenBins], current: pl.DataFrame, *, threshold: float = PSI_ALERT
) -> pl.DataFrame:
    """PSI of every binned feature in `current`: `feature`, `psi`, `drifted` (psi >
    threshold), most drifted first. The drift sensor and the report read this table."""
    missing = [name for name in bins if name not in current.columns]
    if missing:
        raise ValueError(f"current frame lacks binned features: {missing}")
    values = [psi(b, current.get_column(name)) for name, b in bins.items()]
    return (
        pl.DataFrame(
            {"feature": list(bins), "psi": values},
            schema={"feature": pl.String, "psi": pl.Float64},
        )
        .with_columns(drifted=pl.col("psi") > threshold)
        .sort("psi", descending=True, nulls_last=True, maintain_order=True)
    )


# --------------------------------------------------------------------------- Evidently


@functools.cache
def evidently_psi_stattest() -> Any:
    """Register (once) and return an Evidently `StatTest` named "frozen_psi": PSI on bins
    frozen from the report's reference data with `freeze_bins`, so a report shows the same
    number as `psi` (Evidently's own "psi" uses equal-width bins and underestimates drift on
    skewed amounts). Numeric and categorical; drift when PSI > 0.25 unless a threshold is
    given. Evidently drops nulls before calling a stattest, so the null bucket plays no part.
    """
    from evidently.legacy.calculations.stattests.registry import StatTest, register_stattest
    from evidently.legacy.core import ColumnType

    stattest = StatTest(
        name=EVIDENTLY_STATTEST_NAME,
        display_name="PSI (frozen quantile bins)",
        allowed_feature_types=[ColumnType.Numerical, ColumnType.Categorical],
        default_threshold=PSI_ALERT,
    )

    def frozen_psi(
        reference: Any, current: Any, feature_type: Any, threshold: float
    ) -> tuple[float, bool]:
        bins = freeze_bins(reference, categorical=feature_type == ColumnType.Categorical)
        value = psi(bins, current)
        return value, bool(value > threshold)

    register_stattest(stattest, frozen_psi)
    return stattest
