"""Training time and peak memory for the default demo's model.

Run: .venv/bin/python benchmarks/bench_training.py
Simulates the demo's window (size 1: 30 days of history + 49 days of features), builds the
training set with the default split (28 train / 7 gap / 14 test days) and trains CatBoost
with the default hyperparameters, as `fraud_model` does (without MLflow).
"""

from __future__ import annotations

import resource
import time
import warnings
from datetime import date, timedelta

import polars as pl

from fraud_assets.lib.features.batch import batch_features
from fraud_assets.lib.features.definitions import (
    LOOKBACK_DAYS,
    available_categoricals,
    feature_columns,
)
from fraud_assets.lib.modeling import CatBoostParams, train_catboost
from fraud_assets.lib.simulation import SimulationConfig, Simulator
from fraud_assets.lib.time_split import SplitConfig, build_training_set

warnings.filterwarnings("ignore", message="Sortedness")
END = date(2026, 3, 31)


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    split = SplitConfig()
    sim = Simulator(SimulationConfig(seed=7, size=1.0))
    first = END - timedelta(days=split.total_days - 1)
    days = [
        first - timedelta(days=LOOKBACK_DAYS) + timedelta(days=i)
        for i in range(split.total_days + LOOKBACK_DAYS)
    ]
    t = time.perf_counter()
    history = pl.concat([sim.transactions(d) for d in days])
    labels = pl.concat([sim.labels(d) for d in days])
    feats = batch_features(history, labels, first, END)
    print(
        f"data: {history.height:,} transactions, features for {feats.height:,} in {time.perf_counter() - t:.1f} s"
    )
    ts = build_training_set(feats, labels, history.select("transaction_id", "is_fraud"), END, split)
    train = ts.filter(pl.col("split") == "train")
    val = ts.filter(pl.col("split") == "validation")
    cats = available_categoricals(history.columns)
    rss_before = peak_rss_mb()
    t = time.perf_counter()
    model = train_catboost(train, val, feature_columns(cats), cats, CatBoostParams())
    elapsed = time.perf_counter() - t
    print(
        f"CatBoost: {train.height:,} train rows ({int(train['label'].sum())} known frauds), "
        f"{val.height:,} validation rows; best iteration {model.get_best_iteration()}; "
        f"trained in {elapsed:.1f} s on 2 threads; peak RSS {peak_rss_mb():,.0f} MB "
        f"(before training {rss_before:,.0f} MB)"
    )


if __name__ == "__main__":
    main()
