"""Builders for test Definitions: the real assets and checks, bound to temporary storage."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import dagster as dg

from fraud_assets.defs.ingestion import assets as ingestion_assets
from fraud_assets.defs.ingestion import checks as ingestion_checks
from fraud_assets.resources.io_manager import PolarsParquetIOManagerResource
from fraud_assets.resources.source import TransactionSourceResource
from fraud_assets.resources.storage import LakeStorage, ServingLogs

SMALL_SIM = {"seed": 11, "size": 0.25}  # ~2k transactions a day: fast, still has every scenario


def storage_resources(lake: Path, reports: Path, serving_state: Path) -> dict[str, Any]:
    """The lake IO manager and the storage resources on temporary folders."""
    return {
        "lake": PolarsParquetIOManagerResource(base_path=str(lake)),
        "storage": LakeStorage(data_root=str(lake), reports_root=str(reports)),
        "serving_logs": ServingLogs(state_root=str(serving_state)),
    }


def sim_source(**options: Any) -> TransactionSourceResource:
    return TransactionSourceResource(kind="simulator", options_json=json.dumps(SMALL_SIM | options))


def build_defs(
    lake: Path,
    source: dg.ConfigurableResource | None = None,
    extra_assets: list | None = None,
    serving_state: Path | None = None,
    **quality: float,
) -> dg.Definitions:
    """Ingestion on ``lake``; feedback read from ``serving_state`` (default: beside the lake)."""
    serving_state = serving_state or lake.parent / f"{lake.name}-serving"
    return dg.Definitions(
        assets=[*dg.load_assets_from_modules([ingestion_assets]), *(extra_assets or [])],
        asset_checks=dg.load_asset_checks_from_modules([ingestion_checks]),
        resources={
            "lake": PolarsParquetIOManagerResource(base_path=str(lake)),
            "serving_logs": ServingLogs(state_root=str(serving_state)),
            "source": source or sim_source(),
            "raw_quality": ingestion_checks.RawQualityResource(**quality),
        },
        executor=dg.in_process_executor,
    )


def materialize_day(
    defs: dg.Definitions, instance: dg.DagsterInstance, day: str, selection: str = "*"
):
    job = dg.define_asset_job("t", selection=selection)
    defs = dg.Definitions.merge(defs, dg.Definitions(jobs=[job]))
    return defs.resolve_job_def("t").execute_in_process(
        instance=instance, partition_key=day, raise_on_error=False
    )
