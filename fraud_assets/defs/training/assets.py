"""fraud_model (CatBoost evaluated on the test window) and refit_model (the same recipe
refitted on the freshest mature data: the version that is deployed), both tracked in MLflow
as registry versions."""

from datetime import date

import dagster as dg
import polars as pl

from fraud_assets import settings
from fraud_assets.defs.partitions import daily_partitions, partition_day
from fraud_assets.defs.training.registration import Registered, log_and_register, train_window
from fraud_assets.lib.calibration import Platt, brier_score, fit_platt
from fraud_assets.lib.contracts import (
    CHALLENGER,
    EVALUATED_ROLE,
    EVALUATED_VERSION_TAG,
    REFIT_ROLE,
    ROLE_TAG,
    TRAIN_WINDOW_TAG,
)
from fraud_assets.lib.features.definitions import (
    FEATURE_CODE_VERSION,
    available_categoricals,
    feature_columns,
)
from fraud_assets.lib.modeling import (
    CatBoostParams,
    fitted_trees,
    predict_catboost,
    refit_iterations,
    train_catboost,
)
from fraud_assets.lib.versioning import file_hash, git_commit

MODEL_CODE_VERSION = "catboost-v1"
REFIT_CODE_VERSION = "refit-v1"


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
    genuine_sample_rate: float = settings.TRAIN_GENUINE_SAMPLE_RATE
    # Optuna trials over depth, learning rate and L2 before the final fit (0: off); each
    # trial is a nested MLflow run.
    tuning_trials: int = settings.TUNING_TRIALS

    def params(self) -> CatBoostParams:
        return CatBoostParams(**self.model_dump(exclude={"tuning_trials"}))


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


def _lineage(
    context: dg.AssetExecutionContext, day: date, fit_rows: pl.DataFrame, role: str
) -> dict[str, str]:
    """The tags every registry version carries (the run's and the version's)."""
    return {
        "partition": day.isoformat(),
        ROLE_TAG: role,
        TRAIN_WINDOW_TAG: train_window(fit_rows),
        "feature_code_version": FEATURE_CODE_VERSION,
        "requirements_lock_sha256": file_hash(settings.PROJECT_ROOT / "requirements.lock"),
        "git_commit": git_commit(settings.PROJECT_ROOT),
        "dagster_run_id": context.run.run_id,
    }


def _register(
    context: dg.AssetExecutionContext,
    model: object,
    fit_rows: pl.DataFrame,
    features: list[str],
    cats: list[str],
    lineage: dict[str, str],
    calibration: Platt,
    alias: str | None = None,
) -> Registered:
    keys = sorted(fit_rows["ts"].dt.date().cast(pl.String).unique().to_list())
    return log_and_register(
        model,
        fit_rows,
        features,
        cats,
        lineage,
        calibration,
        _input_versions(context, "transaction_features", keys),
        context.resources.model_registry,
        alias=alias,
    )


def _output(value: dict, metrics: dict[str, float]) -> dg.Output[dict]:
    return dg.Output(
        value,
        metadata={
            "model_version": value["version"],
            "mlflow_run_id": value["run_id"],
            "model_uri": value["model_uri"],
            "train_window": value["lineage"][TRAIN_WINDOW_TAG],
            **{k: float(v) for k, v in metrics.items()},
            "lineage": dg.MetadataValue.json(value["lineage"]),
        },
    )


def _tune(
    context: dg.AssetExecutionContext,
    train: pl.DataFrame,
    validation: pl.DataFrame,
    features: list[str],
    cats: list[str],
    params: CatBoostParams,
    trials: int,
) -> CatBoostParams:
    """The search, each trial a child run of the model's MLflow run."""
    import mlflow

    from fraud_assets.lib.tuning import tune_catboost

    def log_trial(number: int, values: dict[str, float], ap: float) -> None:
        with mlflow.start_run(run_name=f"trial {number}", nested=True):
            mlflow.log_params(values)
            mlflow.log_metric("validation_average_precision", ap)
        context.log.info(f"trial {number + 1}/{trials}: {values} -> validation AP {ap:.4f}")

    best, ap = tune_catboost(train, validation, features, cats, params, trials, log_trial)
    context.log.info(f"search done: best validation AP {ap:.4f} with {best.as_dict()}")
    mlflow.log_metric("tuning_best_validation_average_precision", ap)
    return best


@dg.asset(
    partitions_def=daily_partitions,
    io_manager_key="artifacts",
    group_name="training",
    code_version=MODEL_CODE_VERSION,
    kinds={"catboost", "mlflow"},
    # dagster-mlflow is a legacy resource: both are reached through context.resources.
    required_resource_keys={"mlflow", "model_registry"},
    description="CatBoost trained on the training_set's train window as of the day, early "
    "stopping and calibration on its validation slice: the model that model_evaluation "
    "scores on the test window (a registry version with role `evaluated`).",
)
def fraud_model(
    context: dg.AssetExecutionContext, config: TrainingConfig, training_set: pl.DataFrame
) -> dg.Output[dict]:
    day = partition_day(context)
    cats = available_categoricals(training_set.columns)
    features = feature_columns(cats)
    train = training_set.filter(pl.col("split") == "train")
    validation = training_set.filter(pl.col("split") == "validation")
    if train["label"].sum() == 0:
        raise dg.Failure(f"fraud_model {day}: the train window has no known fraud to learn from")
    params = config.params()
    if config.tuning_trials > 0:
        params = _tune(context, train, validation, features, cats, params, config.tuning_trials)
    context.log.info(
        f"training CatBoost on {train.height} rows, early stopping on {validation.height}"
    )
    model = train_catboost(train, validation, features, cats, params)

    mlf = context.resources.mlflow
    lineage = _lineage(context, day, pl.concat([train, validation]), EVALUATED_ROLE)
    mlf.log_params(params.as_dict() | {"n_features": len(features), "categoricals": ",".join(cats)})
    best = model.get_best_score()
    metrics = {
        "train_rows": float(train.height),
        "train_frauds": float(train["label"].sum()),
        "best_iteration": float(fitted_trees(model)),
    }
    if "validation" in best:
        metrics["validation_prauc"] = float(best["validation"].get("PRAUC", 0.0))
    # Class weights inflate the scores: Platt scaling on the validation slice maps them back
    # to probabilities (thresholds and the served fraud_probability use it).
    val_raw = predict_catboost(model, validation, features)
    y_val = validation["label"].to_numpy()
    calibration = fit_platt(y_val, val_raw)
    metrics |= {
        "validation_brier_raw": brier_score(y_val, val_raw),
        "validation_brier": brier_score(y_val, calibration.apply_array(val_raw)),
    }
    mlf.log_metrics(metrics)
    registered = _register(context, model, train, features, cats, lineage, calibration)
    value = {
        "model_name": context.resources.model_registry.model_name,
        "version": registered.version,
        "model_uri": registered.model_uri,
        "run_id": registered.run_id,
        "features": features,
        "categoricals": cats,
        "params": params.as_dict(),
        "best_iteration": int(metrics["best_iteration"]),
        "train_rows": train.height,
        "lineage": lineage,
        "calibration": calibration.to_dict(),
    }
    context.log.info(f"registered v{registered.version} (run {registered.run_id}), evaluated next")
    return _output(value, metrics)


@dg.asset(
    partitions_def=daily_partitions,
    io_manager_key="artifacts",
    group_name="training",
    code_version=REFIT_CODE_VERSION,
    kinds={"catboost", "mlflow"},
    required_resource_keys={"mlflow", "model_registry"},
    description="The evaluated model's recipe (hyperparameters, early-stopped iteration count "
    "scaled to the data, calibration) refitted on the refit window: the freshest days whose "
    "labels are mature. A registry version with role `refit` and alias `challenger`, tagged "
    "with its evaluated sibling; champion_model promotes it when the gate passes. It is never "
    "scored on the test window (it has seen part of it).",
)
def refit_model(
    context: dg.AssetExecutionContext, training_set: pl.DataFrame, fraud_model: dict
) -> dg.Output[dict]:
    import mlflow

    day = partition_day(context)
    refit = training_set.filter(pl.col("split") == "refit")
    if refit.height == 0 or refit["label"].sum() == 0:
        raise dg.Failure(f"refit_model {day}: the refit window has no known fraud to learn from")
    features, cats = fraud_model["features"], fraud_model["categoricals"]
    iterations = refit_iterations(
        fraud_model["best_iteration"], fraud_model["train_rows"], refit.height
    )
    params = CatBoostParams(**(fraud_model["params"] | {"iterations": iterations}))
    context.log.info(
        f"refitting v{fraud_model['version']}'s recipe on {refit.height} rows "
        f"({train_window(refit)}), {iterations} iterations"
    )
    model = train_catboost(refit, refit.clear(), features, cats, params)
    # Same recipe, same class weights: the sibling's calibration (fitted out of sample on
    # its validation slice) carries over; the refit has no unseen mature data to refit it on.
    calibration = Platt.from_dict(fraud_model["calibration"])
    lineage = _lineage(context, day, refit, REFIT_ROLE) | {
        EVALUATED_VERSION_TAG: fraud_model["version"],
        "evaluated_run_id": fraud_model["run_id"],
    }
    metrics = {
        "train_rows": float(refit.height),
        "train_frauds": float(refit["label"].sum()),
        "iterations": float(iterations),
    }
    # A child of the evaluated model's MLflow run: the UI shows the pair together.
    with mlflow.start_run(run_name=f"refit {day}", nested=True):
        mlflow.log_params(params.as_dict())
        mlflow.log_metrics(metrics)
        registered = _register(
            context, model, refit, features, cats, lineage, calibration, alias=CHALLENGER
        )
    value = {
        "model_name": context.resources.model_registry.model_name,
        "version": registered.version,
        "model_uri": registered.model_uri,
        "run_id": registered.run_id,
        "evaluated_version": fraud_model["version"],
        "features": features,
        "categoricals": cats,
        "lineage": lineage,
    }
    context.log.info(
        f"registered refit v{registered.version} (alias {CHALLENGER}) of v{fraud_model['version']}"
    )
    return _output(value, metrics)
