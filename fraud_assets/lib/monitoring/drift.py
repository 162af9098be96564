"""Drift: buckets frozen at training time, PSI against them, and the same PSI in Evidently.

PSI compares shares per bucket, `sum((cur - ref) * ln(cur / ref))`, with shares floored at
`PSI_EPSILON`. Buckets are frozen at training time (reference quantiles, or the top
reference categories), so a drift number means the same thing every day. Above
`contracts.PSI_ALERT` a feature counts as drifted. Evidently is imported inside the function
that needs it (the Dagster code location must load fast).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl

from fraud_assets.lib.contracts import PSI_ALERT
from fraud_assets.lib.metrics import ArrayLike, as_float

PSI_EPSILON = 1e-4  # floor on bucket shares: an empty bucket must not give log(0)
DEFAULT_N_BINS = 10
MAX_CATEGORIES = 50
OTHER = "other"  # bucket label for categories unseen (or rare) in the reference
EVIDENTLY_STATTEST_NAME = "frozen_psi"


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
    x = as_float(values).ravel()
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
        x = as_float(reference).ravel()
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
