"""fraud_model (CatBoost, tracked in MLflow, a new registry version per training) and
model_evaluation (fraud metrics for challenger, champion and a logistic baseline)."""

import tempfile

import dagster as dg
import polars as pl

from fraud_assets import settings
from fraud_assets.defs.partitions import daily_partitions, partition_day
from fraud_assets.lib.contracts import CHALLENGER
from fraud_assets.lib.features.definitions import (
    DRIFT_FEATURES_EXCLUDED,
    FEATURE_CODE_VERSION,
    available_categoricals,
    feature_columns,
)
from fraud_assets.lib.modeling import CatBoostParams, train_catboost
from fraud_assets.lib.versioning import file_hash, git_commit

MODEL_CODE_VERSION = "catboost-v1"


_DEFAULT = CatBoostParams()  # the defaults live there; the launchpad shows and edits them


class TrainingConfig(dg.Config):
    """CatBoost hyperparameters (editable in the launchpad)."""

    iterations: int = settings.TRAIN_ITERATIONS
    learning_rate: float = _DEFAULT.learning_rate
    depth: int = _DEFAULT.depth
    l2_leaf_reg: float = _DEFAULT.l2_leaf_reg
    auto_class_weights: str = _DEFAULT.auto_class_weights
    early_stopping_rounds: int = _DEFAULT.early_stopping_rounds
    thread_count: int = _DEFAULT.thread_count
    random_seed: int = _DEFAULT.random_seed

    def params(self) -> CatBoostParams:
        return CatBoostParams(**self.model_dump())


def _input_versions(
    context: dg.AssetExecutionContext, asset: str, keys: list[str]
) -> dict[str, str]:
    """Data version of each upstream partition, read from the instance."""
    out: dict[str, str] = {}
    records = context.instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=dg.AssetKey(asset), asset_partitions=keys),
        limit=len(keys) * 5,
    ).records
    for record in records:
        mat = record.asset_materialization
        if mat is not None and mat.partition not in out and "data_version" in mat.metadata:
            out[mat.partition] = str(mat.metadata["data_version"].value)
    return dict(sorted(out.items()))


def _categoricals(df: pl.DataFrame) -> list[str]:
    return available_categoricals(df.columns)


@dg.asset(
    partitions_def=daily_partitions,
    io_manager_key="artifacts",
    group_name="training",
    code_version=MODEL_CODE_VERSION,
    kinds={"catboost", "mlflow"},
    # dagster-mlflow is a legacy resource: both are reached through context.resources.
    required_resource_keys={"mlflow", "model_registry"},
    description="CatBoost trained on the training_set as of the day; a new MLflow registry "
    "version (alias `challenger`) with its data, code and environment versions.",
)
def fraud_model(
    context: dg.AssetExecutionContext, config: TrainingConfig, training_set: pl.DataFrame
) -> dg.Output[dict]:
    import mlflow

    day = partition_day(context)
    cats = _categoricals(training_set)
    features = feature_columns(cats)
    train = training_set.filter(pl.col("split") == "train")
    validation = training_set.filter(pl.col("split") == "validation")
    if train["label"].sum() == 0:
        raise dg.Failure(f"fraud_model {day}: the train window has no known fraud to learn from")
    params = config.params()
    context.log.info(
        f"training CatBoost on {train.height} rows, early stopping on {validation.height}"
    )
    model = train_catboost(train, validation, features, cats, params)

    mlf = context.resources.mlflow
    model_registry = context.resources.model_registry
    name = model_registry.model_name
    run = mlflow.active_run()
    feature_keys = sorted(training_set["ts"].dt.date().cast(pl.String).unique().to_list())
    fitted_on = pl.concat([train, validation])["ts"].dt.date()
    lineage = {
        "partition": day.isoformat(),
        "feature_partitions": f"{feature_keys[0]}..{feature_keys[-1]}",
        # The first and last day of the data the model was fitted on (train + validation).
        "train_window": f"{fitted_on.min()}..{fitted_on.max()}",
        "feature_code_version": FEATURE_CODE_VERSION,
        "requirements_lock_sha256": file_hash(settings.PROJECT_ROOT / "requirements.lock"),
        "git_commit": git_commit(settings.PROJECT_ROOT),
        "dagster_run_id": context.run.run_id,
    }
    mlf.set_tags(lineage)
    mlf.log_params(params.as_dict() | {"n_features": len(features), "categoricals": ",".join(cats)})
    best = model.get_best_score()
    metrics = {
        "train_rows": float(train.height),
        "train_frauds": float(train["label"].sum()),
        "best_iteration": float(model.get_best_iteration() or params.iterations),
    }
    if "validation" in best:
        metrics["validation_prauc"] = float(best["validation"].get("PRAUC", 0.0))
    mlf.log_metrics(metrics)
    mlf.log_dict(
        {
            "features": features,
            "categoricals": cats,
            "lineage": lineage,
            "input_data_versions": _input_versions(context, "transaction_features", feature_keys),
        },
        "model_inputs.json",
    )
    # Drift monitoring compares later days with the training data: freeze the bins now.
    from fraud_assets.lib.calibration import brier_score, fit_platt
    from fraud_assets.lib.modeling import predict_catboost
    from fraud_assets.lib.monitoring.drift import freeze_bins, freeze_frame_bins

    # Class weights inflate the scores: Platt scaling on the validation slice maps them back
    # to probabilities (thresholds and the served fraud_probability use it).
    val_raw = predict_catboost(model, validation, features)
    calibration = fit_platt(validation["label"].to_numpy(), val_raw)
    briers = {
        "validation_brier_raw": brier_score(validation["label"].to_numpy(), val_raw),
        "validation_brier": brier_score(
            validation["label"].to_numpy(), calibration.apply_array(val_raw)
        ),
    }
    mlf.log_metrics(briers)
    metrics |= briers
    numeric = [f for f in features if f not in cats and f not in DRIFT_FEATURES_EXCLUDED]
    bins = freeze_frame_bins(train, numeric=numeric, categorical=cats)
    train_scores = predict_catboost(model, train, features)
    mlf.log_dict(
        {
            "features": {k: b.to_dict() for k, b in bins.items()},
            "score": freeze_bins(train_scores).to_dict(),
        },
        "reference_bins.json",
    )
    sample = train.select(features).sample(min(train.height, 50_000), seed=0)
    with tempfile.TemporaryDirectory() as tmp:  # the reference of the Evidently drift report
        sample.write_parquet(f"{tmp}/reference_sample.parquet")
        mlflow.log_artifact(f"{tmp}/reference_sample.parquet")
    info = mlflow.catboost.log_model(model, name="model", registered_model_name=name)
    version = str(info.registered_model_version)
    client = model_registry.client()
    client.set_registered_model_alias(name, CHALLENGER, version)
    for key, value in lineage.items():
        client.set_model_version_tag(name, version, key, value)
    for key, value in calibration.to_tags().items():
        client.set_model_version_tag(name, version, key, value)
    value = {
        "model_name": name,
        "version": version,
        "model_uri": model_registry.model_uri(version),
        "run_id": run.info.run_id,
        "features": features,
        "categoricals": cats,
        "params": params.as_dict(),
        "lineage": lineage,
        "calibration": calibration.to_dict(),
    }
    context.log.info(f"registered {name} version {version} (run {run.info.run_id})")
    return dg.Output(
        value,
        metadata={
            "model_version": version,
            "mlflow_run_id": run.info.run_id,
            "model_uri": value["model_uri"],
            **{k: float(v) for k, v in metrics.items()},
            "lineage": dg.MetadataValue.json(lineage),
        },
    )
