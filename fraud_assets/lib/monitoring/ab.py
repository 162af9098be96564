"""A/B statistics: champion-minus-challenger differences with bootstrap intervals.

``diff = champion - challenger`` (negative: the challenger is better). Split traffic sends
different cards to each variant: the two populations are resampled independently. Shadow
mode scores the same transactions with both: pairs are resampled together. Bootstraps draw
multinomial row weights over rows sorted once by score, so a draw costs O(n) (cumulative
sums), not a sort.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import polars as pl

N_BOOT = 1000
BOOTSTRAP_SEED = 20260101
CI_LEVEL = 0.95
MIN_VALID_DRAWS = 0.5  # share of bootstrap draws that must have both classes for a CI


@dataclass(frozen=True)
class _RankedScores:
    """Rows sorted once by descending score, with the end of each run of tied scores: enough
    to compute AP under any row weights with cumulative sums (sklearn's definition)."""

    order: np.ndarray
    y: np.ndarray  # float 0/1 in score order
    ends: np.ndarray  # index of the last row of each tie group

    @classmethod
    def of(cls, y_true: np.ndarray, score: np.ndarray) -> _RankedScores:
        s = np.asarray(score, dtype=np.float64)
        order = np.argsort(-s, kind="stable")
        s_sorted = s[order]
        ends = np.append(np.flatnonzero(s_sorted[1:] != s_sorted[:-1]), s.size - 1)
        return cls(order, np.asarray(y_true, dtype=np.float64)[order], ends)

    def ap(self, weights: np.ndarray | None = None) -> float:
        """Average precision with integer row weights (a bootstrap draw); NaN if one class."""
        if self.y.size == 0:
            return math.nan
        w = np.ones_like(self.y) if weights is None else np.asarray(weights)[self.order]
        tps = np.cumsum(w * self.y)[self.ends]
        fps = np.cumsum(w * (1.0 - self.y))[self.ends]
        positives = tps[-1]
        if positives <= 0 or fps[-1] <= 0:
            return math.nan
        predicted = tps + fps
        precision = np.divide(tps, predicted, out=np.zeros_like(tps), where=predicted > 0)
        recall_step = np.diff(tps, prepend=0.0) / positives
        return float(np.sum(recall_step * precision))


def fast_average_precision(
    y_true: np.ndarray, score: np.ndarray, weights: np.ndarray | None = None
) -> float:
    """AP equal to `metrics.average_precision` (on rows repeated by `weights`), in O(n) after
    one sort; used inside bootstraps."""
    return _RankedScores.of(np.asarray(y_true), np.asarray(score)).ap(weights)


def _recall(y: np.ndarray, alert: np.ndarray, w: np.ndarray) -> float:
    positives = float(np.sum(w * y))
    return float(np.sum(w * y * alert)) / positives if positives > 0 else math.nan


@dataclass(frozen=True)
class Difference:
    """champion - challenger for one metric, with a bootstrap percentile interval."""

    value: float
    ci_low: float
    ci_high: float
    n_valid_draws: int

    @property
    def excludes_zero(self) -> bool:
        return bool(self.ci_low > 0 or self.ci_high < 0)


def _draw_weights(rng: np.random.Generator, n: int) -> np.ndarray:
    """How many times each of n rows is drawn in one bootstrap resample of size n."""
    return np.bincount(rng.integers(0, n, n), minlength=n).astype(np.float64)


def _interval(value: float, draws: np.ndarray, n_boot: int, level: float) -> Difference:
    valid = draws[np.isfinite(draws)]
    if math.isnan(value) or valid.size < MIN_VALID_DRAWS * n_boot:
        return Difference(value, math.nan, math.nan, int(valid.size))
    tail = (1.0 - level) / 2.0 * 100.0
    low, high = np.percentile(valid, [tail, 100.0 - tail])
    return Difference(value, float(low), float(high), int(valid.size))


@dataclass(frozen=True)
class Sample:
    """One variant's labelled rows: label, score, alert."""

    y: np.ndarray
    score: np.ndarray
    alert: np.ndarray

    @classmethod
    def of(cls, frame: pl.DataFrame) -> Sample:
        return cls(
            frame["is_fraud"].cast(pl.Float64).to_numpy(),
            frame["score"].cast(pl.Float64).to_numpy(),
            frame["alert"].cast(pl.Float64).to_numpy(),
        )

    def __len__(self) -> int:
        return int(self.y.size)


def bootstrap_split(
    champion: Sample,
    challenger: Sample,
    *,
    n_boot: int = N_BOOT,
    seed: int = BOOTSTRAP_SEED,
    level: float = CI_LEVEL,
) -> dict[str, Difference]:
    """Split traffic: independent populations, each resampled on its own. Returns the
    champion-minus-challenger difference in AP and in recall at the alert rule."""
    rng = np.random.default_rng(seed)
    ranked = (
        _RankedScores.of(champion.y, champion.score),
        _RankedScores.of(challenger.y, challenger.score),
    )
    samples = (champion, challenger)
    ones = [np.ones(len(s)) for s in samples]
    ap_value = ranked[0].ap() - ranked[1].ap()
    recall_value = _recall(champion.y, champion.alert, ones[0]) - _recall(
        challenger.y, challenger.alert, ones[1]
    )
    ap_draws = np.empty(n_boot)
    recall_draws = np.empty(n_boot)
    for b in range(n_boot):
        w = [_draw_weights(rng, len(s)) for s in samples]
        ap_draws[b] = ranked[0].ap(w[0]) - ranked[1].ap(w[1])
        recall_draws[b] = _recall(champion.y, champion.alert, w[0]) - _recall(
            challenger.y, challenger.alert, w[1]
        )
    return {
        "ap": _interval(ap_value, ap_draws, n_boot, level),
        "recall": _interval(recall_value, recall_draws, n_boot, level),
    }


def bootstrap_paired(
    y: np.ndarray,
    champion_score: np.ndarray,
    challenger_score: np.ndarray,
    champion_alert: np.ndarray,
    challenger_alert: np.ndarray,
    *,
    n_boot: int = N_BOOT,
    seed: int = BOOTSTRAP_SEED,
    level: float = CI_LEVEL,
) -> dict[str, Difference]:
    """Shadow mode: both variants scored the same transactions; a draw resamples
    transactions, so both metrics of a draw are computed on the same rows."""
    rng = np.random.default_rng(seed)
    y = np.asarray(y, dtype=np.float64)
    a = _RankedScores.of(y, champion_score)
    b_ = _RankedScores.of(y, challenger_score)
    ca = np.asarray(champion_alert, dtype=np.float64)
    cb = np.asarray(challenger_alert, dtype=np.float64)
    n = y.size
    ones = np.ones(n)
    ap_value = a.ap() - b_.ap()
    recall_value = _recall(y, ca, ones) - _recall(y, cb, ones)
    ap_draws = np.empty(n_boot)
    recall_draws = np.empty(n_boot)
    for i in range(n_boot):
        w = _draw_weights(rng, n)
        ap_draws[i] = a.ap(w) - b_.ap(w)
        recall_draws[i] = _recall(y, ca, w) - _recall(y, cb, w)
    return {
        "ap": _interval(ap_value, ap_draws, n_boot, level),
        "recall": _interval(recall_value, recall_draws, n_boot, level),
    }


def bootstrap_clustered_ap_difference(
    y: np.ndarray,
    new_score: np.ndarray,
    old_score: np.ndarray,
    clusters: np.ndarray,
    *,
    n_boot: int = N_BOOT,
    seed: int = BOOTSTRAP_SEED,
    level: float = CI_LEVEL,
) -> Difference:
    """AP(new) - AP(old) on the same rows, with a paired bootstrap over clusters: a draw
    resamples whole clusters (e.g. card-days, ids 0 .. k-1 per row), so the rows of one card
    on one day, which are not independent, stay together, and both models are scored on the
    same draw. Positive: the new model ranks better."""
    rng = np.random.default_rng(seed)
    y = np.asarray(y, dtype=np.float64)
    new, old = _RankedScores.of(y, new_score), _RankedScores.of(y, old_score)
    groups = np.asarray(clusters, dtype=np.int64)
    k = int(groups.max()) + 1 if groups.size else 0
    value = new.ap() - old.ap()
    draws = np.empty(n_boot)
    for b in range(n_boot):
        w = _draw_weights(rng, k)[groups] if k else np.empty(0)
        draws[b] = new.ap(w) - old.ap(w)
    return _interval(value, draws, n_boot, level)
