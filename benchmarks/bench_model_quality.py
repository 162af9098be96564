"""Model quality on the honest time split, per feature set: what the features buy.

Run: .venv/bin/python benchmarks/bench_model_quality.py [--size 1.0] [--seed 7]
    [--difficulty realistic]
Simulates the demo's window, computes the features once, builds the default split (28 train /
7 gap / 14 test days, cards already known compromised out of the test days) and trains
CatBoost and the logistic baseline on every feature (v3), without v3's additions (the card's
visits to the terminal, the terminal's typical amount: v2), and without v2's as well (the
customer's prior normal, the mature terminal windows: v1), then prints test AUC, AP and
CP@100 for each. Same data, same split, same hyperparameters: the difference is the
features.
"""

from __future__ import annotations

import argparse
import time
import warnings
from datetime import date, timedelta

import polars as pl

from fraud_assets.lib.features.batch import batch_features
from fraud_assets.lib.features.definitions import (
    DEFAULT_MATURITY_DAYS,
    MATURE,
    available_categoricals,
    feature_columns,
    terminal_lookback_days,
)
from fraud_assets.lib.metrics import average_precision, card_precision_at_k, roc_auc
from fraud_assets.lib.modeling import (
    CatBoostParams,
    predict_catboost,
    predict_logistic,
    train_catboost,
    train_logistic,
)
from fraud_assets.lib.simulation import DIFFICULTIES, SimulationConfig, Simulator
from fraud_assets.lib.time_split import SplitConfig, build_training_set

warnings.filterwarnings("ignore", message="Sortedness")
END = date(2026, 3, 31)


def _scores(test: pl.DataFrame, score) -> dict[str, float]:
    scored = test.select(
        day=pl.col("ts").dt.date(), customer_id="customer_id", is_fraud="label"
    ).with_columns(score=pl.Series(score))
    y = test["label"].to_numpy()
    return {
        "auc": roc_auc(y, score),
        "ap": average_precision(y, score),
        "cp@100": card_precision_at_k(scored, 100),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size", type=float, default=1.0)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--difficulty", default="realistic", choices=DIFFICULTIES)
    args = parser.parse_args()
    split = SplitConfig()
    sim = Simulator(SimulationConfig(seed=args.seed, size=args.size, difficulty=args.difficulty))
    first = END - timedelta(days=split.total_days - 1)
    reach = terminal_lookback_days(DEFAULT_MATURITY_DAYS)
    days = [first - timedelta(days=reach - i) for i in range(split.total_days + reach)]
    t = time.perf_counter()
    history = pl.concat([sim.transactions(d) for d in days])
    labels = pl.concat([sim.labels(d) for d in days])
    feats = batch_features(history, labels, first, END)
    print(f"{history.height:,} transactions; features in {time.perf_counter() - t:.1f} s")
    ts = build_training_set(feats, labels, history.select("transaction_id", "is_fraud"), END, split)
    train, val, test = (ts.filter(pl.col("split") == s) for s in ("train", "validation", "test"))
    print(
        f"train {train.height:,} rows ({int(train['label'].sum())} known frauds), "
        f"test {test.height:,} rows ({int(test['label'].sum())} frauds)"
    )
    cats = available_categoricals(history.columns)
    every = feature_columns(cats)
    v3 = {"customer_terminal_tx_count_30d", "terminal_amount_mean_30d"}
    v3 |= {"amount_to_terminal_mean_30d"}
    v2 = {"amount_zscore_to_customer_prior_30d", "customer_seconds_since_previous"}
    sets = {
        "v3 (all)": every,
        "v2": [f for f in every if f not in v3],
        "v1": [f for f in every if f not in v3 and f not in v2 and MATURE not in f],
    }
    print(f"{'features':28}{'model':>10}{'AUC':>9}{'AP':>9}{'CP@100':>9}{'seconds':>9}")
    for name, features in sets.items():
        numeric = [f for f in features if f not in cats]
        for model_name in ("catboost", "logistic"):
            t = time.perf_counter()
            if model_name == "catboost":
                model = train_catboost(train, val, features, cats, CatBoostParams())
                score = predict_catboost(model, test, features)
            else:
                model = train_logistic(train, numeric, cats)
                score = predict_logistic(model, test, features)
            m = _scores(test, score)
            print(
                f"{name:28}{model_name:>10}{m['auc']:>9.4f}{m['ap']:>9.4f}{m['cp@100']:>9.4f}"
                f"{time.perf_counter() - t:>9.1f}"
            )


if __name__ == "__main__":
    main()
