"""Jobs that span domains.

In-process execution: re-importing the code (mlflow, catboost...) in a process per step costs
far more than these steps do (NOTES-deps: 90 s vs 17 s for a small run).
"""

import dagster as dg
from dagster_mlflow import end_mlflow_on_run_finished

INGESTION = dg.AssetSelection.assets("raw_transactions", "fraud_labels")
FEATURES = INGESTION | dg.AssetSelection.assets("transaction_features")
TRAINING = dg.AssetSelection.assets(
    "training_set",
    "fraud_model",
    "model_evaluation",
    "refit_model",
    "champion_model",
    "online_feature_store",
    "fraud_bento",
    "serving_rollout",
)

daily_ingestion_job = dg.define_asset_job(
    "daily_ingestion",
    selection=INGESTION,
    description="One day: raw transactions and the labels that became known, with quality gates.",
)
daily_features_job = dg.define_asset_job(
    "daily_features",
    selection=FEATURES,
    description="One day: ingestion, quality gates and point-in-time features (run days in order).",
)
features_job = dg.define_asset_job(
    "features",
    selection=dg.AssetSelection.assets("transaction_features"),
    description="Features of one day from already-ingested days (days can run in parallel).",
)
LIVE = dg.AssetSelection.assets("serving_metrics", "live_performance", "business_metrics")
daily_monitoring_job = dg.define_asset_job(
    "daily_monitoring",
    selection=FEATURES
    | dg.AssetSelection.assets("feature_drift", "prediction_drift", "drift_report")
    | LIVE,
    description="One day: ingestion, gates, features, drift against the champion, and what "
    "the service did (latency, errors, traffic; performance on the labels known so far).",
)
live_monitoring_job = dg.define_asset_job(
    "live_monitoring",
    selection=LIVE,
    description="Serving, live performance and business metrics of one day, recomputed as its "
    "labels arrive (fraud is confirmed up to 30 days late).",
)
store_refresh_job = dg.define_asset_job(
    "store_refresh",
    selection=dg.AssetSelection.assets("online_feature_store", "live_terminal_snapshots"),
    description="One day: the online state after it, and its terminal snapshots published to "
    "the running services (fresh terminal risk without a new Bento).",
)
drift_response_job = dg.define_asset_job(
    "drift_response",
    selection=dg.AssetSelection.assets("alert_thresholds"),
    description="A drifted day, at once and without labels: the served thresholds raised to "
    "keep the day's alerts within the review capacity (its own deployment change).",
)
training_job = dg.define_asset_job(
    "training",
    selection=TRAINING,
    hooks={end_mlflow_on_run_finished},
    description="As of a day: time split, CatBoost in MLflow, evaluation and promotion gate, "
    "the refit on the freshest mature data as champion, the Bento with the online store "
    "seed (smoke-tested), and its rollout to the running services.",
)


def all_jobs() -> list:
    from fraud_assets.defs.training.evaluation import rollback_champion

    return [
        daily_ingestion_job,
        daily_features_job,
        features_job,
        daily_monitoring_job,
        live_monitoring_job,
        store_refresh_job,
        drift_response_job,
        training_job,
        rollback_champion,
    ]
