"""The one entry point: every asset, check, job and schedule, with resources bound.

Resources come from settings (environment variables with embedded defaults), so the same
code runs on the embedded default and on production infrastructure.
"""

from __future__ import annotations

import json

import dagster as dg

from fraud_assets import settings
from fraud_assets.defs import jobs
from fraud_assets.defs.ingestion import assets as ingestion_assets
from fraud_assets.defs.ingestion import checks as ingestion_checks
from fraud_assets.resources.io_manager import PolarsParquetIOManagerResource
from fraud_assets.resources.source import TransactionSourceResource


def default_source() -> TransactionSourceResource:
    options: dict = {}
    if settings.SOURCE == "simulator":
        options = {"seed": settings.SIM_SEED, "size": settings.SIM_SIZE}
        if settings.SIM_DRIFT:
            options["drift"] = json.loads(settings.SIM_DRIFT)
    return TransactionSourceResource(
        kind=settings.SOURCE, options_json=json.dumps(options), config_file=settings.SOURCE_CONFIG
    )


def default_resources() -> dict:
    return {
        "lake": PolarsParquetIOManagerResource(base_path=settings.DATA_ROOT),
        "source": default_source(),
        "raw_quality": ingestion_checks.RawQualityResource(),
    }


defs = dg.Definitions(
    assets=dg.load_assets_from_modules([ingestion_assets]),
    asset_checks=dg.load_asset_checks_from_modules([ingestion_checks]),
    jobs=jobs.all_jobs(),
    resources=default_resources(),
    executor=dg.in_process_executor,
)
