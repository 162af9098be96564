"""Training time, peak memory and test AP for the default demo's model, with and without
negative downsampling.

Run: .venv/bin/python benchmarks/bench_training.py [--rates 1,0.5,0.2,0.1]
Simulates the demo's window (size 1: 30 days of history + 49 days of features), builds the
training set with the default split (28 train / 7 gap / 14 test days) and trains CatBoost
with the default hyperparameters, as `fraud_model` does (without MLflow), once per share of
genuine training rows kept (`genuine_sample_rate`; 1 = all). Prints each run's time and
its test AP, and the AP difference from the full run with a card-day bootstrap interval.
"""

from __future__ import annotations

import argparse
import resource
import time
import warnings
from datetime import date, timedelta

import polars as pl

from fraud_assets.lib.evaluation import card_day_clusters
from fraud_assets.lib.features.batch import batch_features
from fraud_assets.lib.features.definitions import (
    LOOKBACK_DAYS,
    available_categoricals,
    feature_columns,
)
from fraud_assets.lib.metrics import average_precision
from fraud_assets.lib.modeling import (
    CatBoostParams,
    downsample_genuine,
    predict_catboost,
    train_catboost,
)
from fraud_assets.lib.monitoring.ab import bootstrap_clustered_ap_difference
from fraud_assets.lib.simulation import SimulationConfig, Simulator
from fraud_assets.lib.time_split import SplitConfig, build_training_set

warnings.filterwarnings("ignore", message="Sortedness")
END = date(2026, 3, 31)


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rates", default="1,0.5,0.2,0.1", help="genuine shares to compare")
    args = parser.parse_args()
    rates = [float(r) for r in args.rates.split(",")]
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
    test = ts.filter(pl.col("split") == "test")
    y = test["label"].to_numpy()
    card_days = card_day_clusters(test)
    cats = available_categoricals(history.columns)
    features = feature_columns(cats)
    print(
        f"{train.height:,} train rows ({int(train['label'].sum())} known frauds), "
        f"{val.height:,} validation rows, {test.height:,} test rows ({int(y.sum())} frauds)"
    )
    full_scores = None
    for rate in rates:
        params = CatBoostParams(genuine_sample_rate=rate)
        rows = downsample_genuine(train, rate, params.random_seed).height
        rss_before = peak_rss_mb()
        t = time.perf_counter()
        model = train_catboost(train, val, features, cats, params)
        elapsed = time.perf_counter() - t
        scores = predict_catboost(model, test, features)
        line = (
            f"genuine kept {rate:>4.0%}: {rows:>7,} rows, {model.tree_count_:>3} trees, "
            f"{elapsed:6.1f} s, test AP {average_precision(y, scores):.4f}"
        )
        if full_scores is None:
            full_scores = scores
            line += f"; peak RSS {peak_rss_mb():,.0f} MB (before {rss_before:,.0f} MB)"
        else:
            diff = bootstrap_clustered_ap_difference(y, scores, full_scores, card_days)
            line += f", vs all rows {diff.value:+.4f} (95% CI {diff.ci_low:+.4f} .. {diff.ci_high:+.4f})"
        print(line, flush=True)


if __name__ == "__main__":
    main()
