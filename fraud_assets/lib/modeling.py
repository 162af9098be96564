"""Model fitting and scoring: CatBoost (the product) and a logistic-regression baseline.

CatBoost and scikit-learn are imported inside the functions: they are slow to import and the
code location must load fast.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import polars as pl


@dataclass(frozen=True)
class CatBoostParams:
    iterations: int = 600
    learning_rate: float = 0.08
    depth: int = 6
    l2_leaf_reg: float = 3.0
    # Fraud is ~1% of rows: weight positives up (sqrt keeps probabilities less distorted).
    auto_class_weights: str = "SqrtBalanced"
    early_stopping_rounds: int = 60
    thread_count: int = 2
    random_seed: int = 0
    # Share of genuine training rows kept (frauds are all kept): training time falls with
    # it; the validation slice is never sampled, so early stopping and calibration see the
    # real class balance. 1.0 = off. benchmarks/bench_training.py measures the AP it costs.
    genuine_sample_rate: float = 1.0

    def __post_init__(self) -> None:
        if not 0 < self.genuine_sample_rate <= 1:
            raise ValueError(
                f"genuine_sample_rate must be in (0, 1], got {self.genuine_sample_rate}"
            )

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def to_pandas_features(df: pl.DataFrame, features: Sequence[str]):
    return df.select(features).to_pandas()


def downsample_genuine(rows: pl.DataFrame, rate: float, seed: int = 0) -> pl.DataFrame:
    """Every fraud and a `rate` share of the genuine rows, chosen by a hash of the
    transaction id (the same rows whatever the frame's order or size)."""
    if rate >= 1:
        return rows
    keep = pl.col("transaction_id").hash(seed) % 1_000_000 < int(rate * 1_000_000)
    return rows.filter((pl.col("label") == 1) | keep)


def train_catboost(
    train: pl.DataFrame,
    validation: pl.DataFrame,
    features: Sequence[str],
    categoricals: Sequence[str],
    params: CatBoostParams,
):
    """Fit with early stopping on the (later in time) validation slice; genuine train rows
    downsampled by ``params.genuine_sample_rate``."""
    from catboost import CatBoostClassifier, Pool

    train = downsample_genuine(train, params.genuine_sample_rate, params.random_seed)

    def pool(df: pl.DataFrame) -> Pool:
        return Pool(
            to_pandas_features(df, features),
            label=df["label"].to_numpy(),
            cat_features=list(categoricals),
        )

    p = params.as_dict()
    model = CatBoostClassifier(
        iterations=p["iterations"],
        learning_rate=p["learning_rate"],
        depth=p["depth"],
        l2_leaf_reg=p["l2_leaf_reg"],
        auto_class_weights=p["auto_class_weights"],
        od_type="Iter",
        od_wait=p["early_stopping_rounds"],
        eval_metric="PRAUC",
        thread_count=p["thread_count"],
        random_seed=p["random_seed"],
        allow_writing_files=False,
        verbose=False,
    )
    has_val = validation.height > 0 and validation["label"].n_unique() > 1
    model.fit(pool(train), eval_set=pool(validation) if has_val else None, use_best_model=has_val)
    return model


def fitted_trees(model: Any) -> int:
    """Trees in the fitted model: the early-stopped count when a validation set was used."""
    return int(model.tree_count_)


def refit_iterations(trees: int, fitted_rows: int, refit_rows: int) -> int:
    """Iterations for a refit without a validation set: the early-stopped count, scaled with
    the data (more rows support more trees at the same learning rate; the usual heuristic
    when the validation slice is folded back in)."""
    if fitted_rows <= 0:
        return max(1, trees)
    return max(1, round(trees * refit_rows / fitted_rows))


def predict_catboost(model: Any, df: pl.DataFrame, features: Sequence[str]) -> np.ndarray:
    if df.height == 0:
        return np.empty(0)
    return model.predict_proba(to_pandas_features(df, features))[:, 1]


def train_logistic(train: pl.DataFrame, numeric: Sequence[str], categoricals: Sequence[str]):
    """The baseline a fraud team would try first: scaled numeric + one-hot categoricals."""
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    pre = ColumnTransformer(
        [
            ("num", StandardScaler(), list(numeric)),
            *(
                [("cat", OneHotEncoder(handle_unknown="ignore"), list(categoricals))]
                if categoricals
                else []
            ),
        ]
    )
    model = Pipeline(
        [("pre", pre), ("lr", LogisticRegression(max_iter=500, class_weight="balanced"))]
    )
    model.fit(to_pandas_features(train, [*numeric, *categoricals]), train["label"].to_numpy())
    return model


def predict_logistic(model: Any, df: pl.DataFrame, features: Sequence[str]) -> np.ndarray:
    if df.height == 0:
        return np.empty(0)
    return model.predict_proba(to_pandas_features(df, features))[:, 1]
