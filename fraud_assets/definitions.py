"""The one entry point: every asset, check, job and schedule, with resources bound.

Resources come from settings (environment variables with embedded defaults), so the same
code runs on the embedded default and on production infrastructure.
"""

import json

import dagster as dg

from fraud_assets import settings
from fraud_assets.defs import automation, jobs
from fraud_assets.defs.deployment import assets as deployment_assets
from fraud_assets.defs.deployment import serving as deployment_serving
from fraud_assets.defs.deployment import smoke_test
from fraud_assets.defs.features import assets as feature_assets
from fraud_assets.defs.ingestion import assets as ingestion_assets
from fraud_assets.defs.ingestion import checks as ingestion_checks
from fraud_assets.defs.monitoring import drift as monitoring_drift
from fraud_assets.defs.monitoring import live as monitoring_live
from fraud_assets.defs.monitoring.sensors import drift_sensor
from fraud_assets.defs.training import assets as training_assets
from fraud_assets.defs.training import evaluation
from fraud_assets.resources.bento import BentoBuilder
from fraud_assets.resources.io_manager import PolarsParquetIOManagerResource
from fraud_assets.resources.mlflow import ModelRegistry, mlflow_resource
from fraud_assets.resources.source import TransactionSourceResource
from fraud_assets.resources.storage import LakeStorage, ServingLogs

ASSET_MODULES = [
    ingestion_assets,
    feature_assets,
    training_assets,
    evaluation,
    deployment_assets,
    deployment_serving,
    monitoring_drift,
    monitoring_live,
]
CHECK_MODULES = [ingestion_checks, evaluation, smoke_test]


def default_source() -> TransactionSourceResource:
    options: dict = {}
    if settings.SOURCE == "simulator":
        options = {
            "seed": settings.SIM_SEED,
            "size": settings.SIM_SIZE,
            "difficulty": settings.SIM_DIFFICULTY,
        }
        if settings.SIM_DRIFT:
            options["drift"] = json.loads(settings.SIM_DRIFT)
    return TransactionSourceResource(
        kind=settings.SOURCE, options_json=json.dumps(options), config_file=settings.SOURCE_CONFIG
    )


def default_resources() -> dict:
    """Every resource, from settings: the one place infrastructure is chosen."""
    storage = LakeStorage.from_settings()
    model_registry = ModelRegistry.from_settings()
    return {
        "lake": PolarsParquetIOManagerResource(base_path=storage.data_root),
        "artifacts": dg.FilesystemIOManager(base_dir=str(storage.work_dir("artifacts"))),
        "storage": storage,
        "serving_logs": ServingLogs.from_settings(),
        "source": default_source(),
        "raw_quality": ingestion_checks.RawQualityResource(),
        "promotion": evaluation.PromotionConfig(),
        "model_registry": model_registry,
        "mlflow": mlflow_resource(model_registry),
        "bento_builder": BentoBuilder.from_settings(),
    }


defs = dg.Definitions(
    assets=dg.load_assets_from_modules(ASSET_MODULES),
    asset_checks=dg.load_asset_checks_from_modules(CHECK_MODULES),
    jobs=jobs.all_jobs(),
    schedules=[
        automation.daily_pipeline_schedule,
        automation.daily_retraining_schedule,
        automation.live_refresh_schedule,
        automation.store_refresh_schedule,
    ],
    sensors=[drift_sensor],
    resources=default_resources(),
    executor=dg.in_process_executor,
)
