"""Probability calibration: a class-weighted model's scores are not probabilities.

CatBoost is trained with class weights (fraud is ~1% of rows), which inflates its scores.
Platt scaling on the logit, fitted on the validation slice (later in time than the training
rows, never the test window), maps a raw score s to

    p = 1 / (1 + exp(-(a * logit(s) + b)))

Two numbers per model, applied the same way offline (evaluation, the smoke check) and online
(the service, in plain Python): thresholds, savings and the served `fraud_probability` are
then on a probability scale. The mapping is monotonic, so rankings (AUC, AP, CP@k) do not
change. Polars-free: the scoring service imports it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

_EPS = 1e-12  # keeps logit finite at scores of exactly 0 or 1
TAG_PREFIX = "calibration_"  # registry tags calibration_a, calibration_b


@dataclass(frozen=True)
class Platt:
    a: float = 1.0
    b: float = 0.0  # (1, 0): the identity

    @property
    def identity(self) -> bool:
        return self.a == 1.0 and self.b == 0.0

    def apply(self, score: float) -> float:
        """One score (the service's single-row path); the identity returns it unchanged."""
        if self.identity:
            return score
        s = min(max(score, _EPS), 1.0 - _EPS)
        z = self.a * math.log(s / (1.0 - s)) + self.b
        return 1.0 / (1.0 + math.exp(-z)) if z >= 0 else math.exp(z) / (1.0 + math.exp(z))

    def apply_many(self, scores: Sequence[float]) -> list[float]:
        if self.identity:
            return list(scores)
        apply = self.apply
        return [apply(s) for s in scores]

    def apply_array(self, scores: Any) -> np.ndarray:
        """Offline: the same values as ``apply`` on each element."""
        return np.array(self.apply_many(np.asarray(scores, dtype=np.float64).tolist()))

    def to_dict(self) -> dict[str, float]:
        return {"a": self.a, "b": self.b}

    def to_tags(self) -> dict[str, str]:
        """Registry tags of a model version (``repr``: floats round-trip exactly)."""
        return {f"{TAG_PREFIX}{k}": repr(v) for k, v in self.to_dict().items()}

    @classmethod
    def from_tags(cls, tags: Mapping[str, str] | None) -> Platt:
        """From a model version's tags; a version from before calibration: the identity."""
        tags = tags or {}
        if f"{TAG_PREFIX}a" not in tags:
            return cls()
        return cls.from_dict({k: tags[f"{TAG_PREFIX}{k}"] for k in ("a", "b")})

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any] | None) -> Platt:
        """None (a model or bundle from before calibration) is the identity."""
        if not raw:
            return cls()
        a, b = float(raw["a"]), float(raw["b"])
        if not (math.isfinite(a) and math.isfinite(b)):
            raise ValueError(f"calibration parameters must be finite, got a={a}, b={b}")
        return cls(a, b)


def fit_platt(y: Any, scores: Any) -> Platt:
    """Platt scaling of raw scores on labelled rows (both classes needed, else identity)."""
    from sklearn.linear_model import LogisticRegression

    y = np.asarray(y)
    s = np.clip(np.asarray(scores, dtype=np.float64), _EPS, 1.0 - _EPS)
    if y.size == 0 or np.unique(y).size < 2:
        return Platt()
    logit = np.log(s / (1.0 - s)).reshape(-1, 1)
    fit = LogisticRegression(C=1e6, max_iter=1000).fit(logit, y)  # (almost) unregularised
    return Platt(float(fit.coef_[0, 0]), float(fit.intercept_[0]))


def brier_score(y: Any, probability: Any) -> float:
    """Mean squared error of probabilities against 0/1 labels (lower is better)."""
    y, p = np.asarray(y, dtype=np.float64), np.asarray(probability, dtype=np.float64)
    return float(np.mean((p - y) ** 2)) if y.size else math.nan


def reliability_table(y: Any, probability: Any, n_bins: int = 10) -> list[tuple[float, float, int]]:
    """(mean predicted, observed fraud rate, rows) per bin of equal row counts (quantiles:
    with ~1% fraud, equal-width bins would put almost every row in the first)."""
    y, p = np.asarray(y, dtype=np.float64), np.asarray(probability, dtype=np.float64)
    if not y.size:
        return []
    order = np.argsort(p, kind="stable")
    return [
        (float(p[part].mean()), float(y[part].mean()), int(part.size))
        for part in np.array_split(order, min(n_bins, y.size))
        if part.size
    ]
