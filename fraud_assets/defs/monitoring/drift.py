"""feature_drift and prediction_drift: PSI against the champion's frozen training bins."""

from typing import Any

import dagster as dg
import polars as pl

from fraud_assets.defs.partitions import daily_partitions, partition_day
from fraud_assets.lib.contracts import CHAMPION, PSI_ALERT
from fraud_assets.resources.mlflow import ModelRegistry
from fraud_assets.resources.storage import LakeStorage


def _champion_reference(model_registry: ModelRegistry) -> dict[str, Any] | None:
    """The champion's model, feature list and frozen bins, or None before any champion."""
    import mlflow

    champion = model_registry.version(CHAMPION)
    if champion is None:
        return None
    inputs = mlflow.artifacts.load_dict(f"runs:/{champion.run_id}/model_inputs.json")
    bins = mlflow.artifacts.load_dict(f"runs:/{champion.run_id}/reference_bins.json")
    return {"version": str(champion.version), "run_id": champion.run_id, "bins": bins, **inputs}


def _no_champion(context: dg.AssetExecutionContext) -> dg.Output[pl.DataFrame]:
    context.log.warning("no champion model yet: nothing to compare with")
    return dg.Output(
        pl.DataFrame(schema={"feature": pl.String, "psi": pl.Float64, "drifted": pl.Boolean}),
        metadata={"max_psi": 0.0, "champion_version": "none"},
    )


@dg.asset(
    partitions_def=daily_partitions,
    io_manager_key="lake",
    group_name="monitoring",
    code_version="psi-v1",
    kinds={"polars", "evidently"},
    check_specs=[
        dg.AssetCheckSpec(
            "feature_psi_below_alert",
            asset="feature_drift",
            description=f"every feature's PSI <= {PSI_ALERT}",
        )
    ],
    description="PSI of every feature of the day against the champion's training data, with "
    "bins frozen at training time; an Evidently drift report showing the same PSI.",
)
def feature_drift(
    context: dg.AssetExecutionContext,
    model_registry: ModelRegistry,
    transaction_features: pl.DataFrame,
):
    from fraud_assets.lib.monitoring.drift import FrozenBins, psi_table

    day = partition_day(context)
    ref = _champion_reference(model_registry)
    if ref is None:
        yield _no_champion(context)
        yield dg.AssetCheckResult(
            check_name="feature_psi_below_alert", passed=True, description="no champion yet"
        )
        return
    bins = {k: FrozenBins.from_dict(v) for k, v in ref["bins"]["features"].items()}
    bins = {k: b for k, b in bins.items() if k in transaction_features.columns}
    table = psi_table(bins, transaction_features, threshold=PSI_ALERT)
    max_psi = float(table["psi"].max() or 0.0)
    drifted = table.filter("drifted")["feature"].to_list()
    context.log.info(f"{day}: max PSI {max_psi:.3f}; drifted: {drifted or 'none'}")
    yield dg.Output(
        table,
        metadata={
            "max_psi": max_psi,
            "drifted_features": ", ".join(drifted) or "none",
            "n_drifted": len(drifted),
            "champion_version": ref["version"],
            "psi": dg.MetadataValue.md(
                "| feature | PSI |\n|---|---|\n"
                + "\n".join(
                    f"| {f} | {p:.4f} |"
                    for f, p in table.select("feature", "psi").head(10).iter_rows()
                )
            ),
        },
    )
    yield dg.AssetCheckResult(
        check_name="feature_psi_below_alert",
        passed=not drifted,
        severity=dg.AssetCheckSeverity.WARN,
        description=f"max PSI {max_psi:.3f}"
        + (f"; drifted: {', '.join(drifted)}" if drifted else ""),
        metadata={"max_psi": max_psi},
    )


@dg.asset(
    partitions_def=daily_partitions,
    io_manager_key="lake",
    group_name="monitoring",
    code_version="psi-v1",
    kinds={"polars"},
    check_specs=[
        dg.AssetCheckSpec(
            "score_psi_below_alert",
            asset="prediction_drift",
            description=f"score distribution PSI <= {PSI_ALERT}",
        )
    ],
    description="PSI of the champion's score distribution on the day against its training scores.",
)
def prediction_drift(
    context: dg.AssetExecutionContext,
    model_registry: ModelRegistry,
    transaction_features: pl.DataFrame,
):
    from fraud_assets.lib.modeling import predict_catboost
    from fraud_assets.lib.monitoring.drift import FrozenBins, psi

    ref = _champion_reference(model_registry)
    if ref is None:
        yield _no_champion(context)
        yield dg.AssetCheckResult(
            check_name="score_psi_below_alert", passed=True, description="no champion yet"
        )
        return
    model = model_registry.load_model(ref["version"])
    scores = predict_catboost(model, transaction_features, ref["features"])
    value = float(psi(FrozenBins.from_dict(ref["bins"]["score"]), scores))
    frame = pl.DataFrame({"feature": ["score"], "psi": [value], "drifted": [value > PSI_ALERT]})
    yield dg.Output(
        frame,
        metadata={
            "max_psi": value,
            "champion_version": ref["version"],
            "mean_score": float(scores.mean()) if len(scores) else 0.0,
        },
    )
    yield dg.AssetCheckResult(
        check_name="score_psi_below_alert",
        passed=value <= PSI_ALERT,
        severity=dg.AssetCheckSeverity.WARN,
        description=f"score PSI {value:.3f}",
    )


@dg.asset(
    partitions_def=daily_partitions,
    io_manager_key="artifacts",
    group_name="monitoring",
    kinds={"evidently"},
    deps=["feature_drift"],
    description="Evidently HTML drift report for the day (the same frozen-bin PSI as the trigger).",
)
def drift_report(
    context: dg.AssetExecutionContext,
    model_registry: ModelRegistry,
    storage: LakeStorage,
    transaction_features: pl.DataFrame,
) -> dg.Output[str]:
    import mlflow

    from fraud_assets.lib.monitoring.drift import EVIDENTLY_STATTEST_NAME, evidently_psi_stattest
    from fraud_assets.lib.reports.evidently import drift_report_html

    ref = _champion_reference(model_registry)
    if ref is None:
        return dg.Output("", metadata={"report": "no champion yet"})
    reference = pl.read_parquet(
        mlflow.artifacts.download_artifacts(f"runs:/{ref['run_id']}/reference_sample.parquet")
    )
    numeric = [f for f in ref["features"] if f not in ref["categoricals"]]
    path = storage.report_path("feature_drift", f"{context.partition_key}.html")
    evidently_psi_stattest()
    drift_report_html(
        reference,
        transaction_features,
        path,
        numeric=numeric,
        categorical=list(ref["categoricals"]),
        psi_stattest=EVIDENTLY_STATTEST_NAME,
        title=f"Feature drift {context.partition_key} vs champion v{ref['version']}",
    )
    return dg.Output(str(path), metadata={"report": dg.MetadataValue.path(str(path))})
