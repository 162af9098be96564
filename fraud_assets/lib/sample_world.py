"""A small simulated world with two tiny CatBoost models, and bundles made from it: what the
serving tests, the live A/B test and the serving benchmark score against.

In the package (not in the tests) so a benchmark or a notebook builds the same bundle.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import polars as pl

from fraud_assets.lib.bundle import write_bundle
from fraud_assets.lib.features.batch import batch_features, store_seed_from_frames
from fraud_assets.lib.features.definitions import available_categoricals, feature_columns
from fraud_assets.lib.features.history import CustomerHistory
from fraud_assets.lib.simulation import SimulationConfig, Simulator

FIRST_DAY = date(2026, 2, 1)
DAYS = 35
THRESHOLDS = {"review": 0.3, "decline": 0.7}


@dataclass
class World:
    """Simulated history, the last day's batch features, and two trained models."""

    history: pl.DataFrame
    labels: pl.DataFrame
    last_day: date
    categoricals: list[str]
    features: list[str]
    day_features: pl.DataFrame  # batch_features of last_day (the parity reference)
    champion: Any
    challenger: Any
    seed_histories: dict[str, CustomerHistory]
    seed_terminals: dict[str, dict[str, float]]


def train_model(
    frame: pl.DataFrame, features: list[str], categoricals: list[str], seed: int
) -> Any:
    from catboost import CatBoostClassifier

    model = CatBoostClassifier(
        iterations=50,
        depth=4,
        random_seed=seed,
        thread_count=2,
        allow_writing_files=False,
        verbose=False,
        auto_class_weights="SqrtBalanced",
    )
    model.fit(
        frame.select(features).to_pandas(),
        frame["is_fraud"].to_numpy(),
        cat_features=categoricals,
    )
    return model


def build_world(seed: int = 5, size: float = 0.13) -> World:
    """~35 simulated days (~1100 transactions a day), features, two 50-tree models."""
    sim = Simulator(SimulationConfig(seed=seed, size=size))
    days = [FIRST_DAY + timedelta(days=i) for i in range(DAYS)]
    full = pl.concat([sim.day_with_label_times(d) for d in days])
    history = full.drop("known_at")
    labels = full.select("transaction_id", "is_fraud", "known_at")
    last_day = days[-1]
    categoricals = available_categoricals(history.columns)
    features = feature_columns(categoricals)
    train = batch_features(history, labels, days[1], days[-2]).join(
        history.select("transaction_id", "is_fraud"), on="transaction_id"
    )
    histories, terminals = store_seed_from_frames(history, labels, last_day)
    return World(
        history=history,
        labels=labels,
        last_day=last_day,
        categoricals=categoricals,
        features=features,
        day_features=batch_features(history, labels, last_day),
        champion=train_model(train, features, categoricals, seed=1),
        challenger=train_model(train, features, categoricals, seed=2),
        seed_histories=histories,
        seed_terminals=terminals,
    )


def write_world_bundle(
    world: World,
    path: Path,
    *,
    share: float = 0.3,
    mode: str = "split",
    versions: tuple[str, str] = ("1", "2"),
    challenger: bool = True,
    calibration: dict[str, float] | None = None,
) -> Path:
    """A bundle of the world's models; ``calibration`` (Platt a, b) for both, else none."""
    variants: dict[str, dict[str, Any]] = {
        "champion": {
            "model": world.champion,
            "version": versions[0],
            "thresholds": THRESHOLDS,
            "calibration": calibration,
        }
    }
    if challenger:
        variants["challenger"] = {
            "model": world.challenger,
            "version": versions[1],
            "thresholds": THRESHOLDS,
            "calibration": calibration,
        }
    return write_bundle(
        path,
        model_name="fraud_model",
        features=world.features,
        categoricals=world.categoricals,
        variants=variants,
        traffic={"challenger_share": share, "mode": mode},
        customer_histories=world.seed_histories,
        terminal_rows=world.seed_terminals,
        store_as_of=world.last_day,
    )
