"""Log a fitted CatBoost model into the active MLflow run and register it: what every
registry version carries (lineage tags, calibration, the drift reference, the inputs).

The evaluated model and its refit both go through here, so a served version and an
evaluated one are described the same way.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from typing import Any

import polars as pl

from fraud_assets.lib.calibration import Platt
from fraud_assets.lib.features.definitions import DRIFT_FEATURES_EXCLUDED
from fraud_assets.lib.modeling import predict_catboost
from fraud_assets.resources.mlflow import ModelRegistry

REFERENCE_SAMPLE_ROWS = 50_000


@dataclass(frozen=True)
class Registered:
    version: str
    run_id: str
    model_uri: str


def train_window(fit_rows: pl.DataFrame) -> str:
    """`YYYY-MM-DD..YYYY-MM-DD`: the first and last day of the data a model was fitted on."""
    days = fit_rows["ts"].dt.date()
    return f"{days.min()}..{days.max()}"


def log_and_register(
    model: Any,
    fit_rows: pl.DataFrame,
    features: list[str],
    categoricals: list[str],
    lineage: dict[str, str],
    calibration: Platt,
    input_versions: dict[str, str],
    model_registry: ModelRegistry,
    alias: str | None = None,
) -> Registered:
    """Log the model with its inputs, drift reference and tags into the active MLflow run
    and register it as a new version (optionally moving `alias` to it)."""
    import mlflow

    from fraud_assets.lib.monitoring.drift import freeze_bins, freeze_frame_bins

    run = mlflow.active_run()
    mlflow.set_tags(lineage)
    mlflow.log_dict(
        {
            "features": features,
            "categoricals": categoricals,
            "lineage": lineage,
            "input_data_versions": input_versions,
        },
        "model_inputs.json",
    )
    # Drift monitoring compares later days with the data the model was fitted on: freeze
    # the bins now.
    numeric = [f for f in features if f not in categoricals and f not in DRIFT_FEATURES_EXCLUDED]
    bins = freeze_frame_bins(fit_rows, numeric=numeric, categorical=categoricals)
    scores = predict_catboost(model, fit_rows, features)
    mlflow.log_dict(
        {
            "features": {k: b.to_dict() for k, b in bins.items()},
            "score": freeze_bins(scores).to_dict(),
        },
        "reference_bins.json",
    )
    sample = fit_rows.select(features).sample(min(fit_rows.height, REFERENCE_SAMPLE_ROWS), seed=0)
    with tempfile.TemporaryDirectory() as tmp:  # the reference of the Evidently drift report
        sample.write_parquet(f"{tmp}/reference_sample.parquet")
        mlflow.log_artifact(f"{tmp}/reference_sample.parquet")
    name = model_registry.model_name
    info = mlflow.catboost.log_model(model, name="model", registered_model_name=name)
    version = str(info.registered_model_version)
    client = model_registry.client()
    for key, value in (lineage | calibration.to_tags()).items():
        client.set_model_version_tag(name, version, key, value)
    if alias is not None:
        client.set_registered_model_alias(name, alias, version)
    return Registered(version, run.info.run_id, model_registry.model_uri(version))
