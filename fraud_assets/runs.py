"""Running partitioned jobs against the Dagster instance in $DAGSTER_HOME, in process, with
a progress bar: what the CLI's commands (and the benchmarks) are built on.

Every run is a real Dagster run, so everything done from the terminal shows up in the UI
afterwards (runs, materializations, check results).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Sequence
from datetime import date, timedelta
from pathlib import Path

from fraud_assets import settings


def ensure_dagster_home() -> Path:
    """Create $DAGSTER_HOME with the committed instance config (Dagster reads it only there)."""
    home = Path(os.environ.setdefault("DAGSTER_HOME", settings.DAGSTER_HOME))
    home.mkdir(parents=True, exist_ok=True)
    target = home / "dagster.yaml"
    source = settings.PROJECT_ROOT / "dagster.yaml"
    if source.exists() and not target.exists():
        shutil.copyfile(source, target)
    return home


def demo_days(days: int, end: date) -> list[date]:
    return [end - timedelta(days=i) for i in reversed(range(days))]


# Jobs whose partitions read only already-materialized upstream days: safe to run side by side.
PARALLEL_JOBS = ("daily_ingestion", "features")

# Runs keep their full event log in the instance; the terminal gets warnings only.
_QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}


def _run_days(job_name: str, days: list[str]) -> list[tuple[str, bool]]:
    """Worker: execute a partitioned job for some days against $DAGSTER_HOME's instance."""
    import dagster as dg

    quiet_warnings()
    from fraud_assets.definitions import defs

    job = defs.resolve_job_def(job_name)
    out = []
    with dg.DagsterInstance.get() as instance:
        for day in days:
            result = job.execute_in_process(
                instance=instance, partition_key=day, raise_on_error=False, run_config=_QUIET
            )
            out.append((day, result.success))
    return out


def run_partitions(job_name: str, days: Sequence[date], workers: int = 0) -> list[str]:
    """Execute a partitioned job for each day in process, with a progress bar.

    Partitions are independent (each reads only materialized upstream partitions), so with
    `workers` > 1 they run in that many processes, each taking every n-th day. Returns the
    partitions whose run failed (a failed quality gate included).
    """
    from tqdm import tqdm

    workers = workers or settings.CLI_WORKERS
    keys = [d.isoformat() for d in days]
    failed: list[str] = []
    bar = tqdm(total=len(keys), desc=job_name, unit="day")
    if workers <= 1 or len(keys) < 4:
        for key in keys:
            for day, ok in _run_days(job_name, [key]):
                failed += [] if ok else [day]
                bar.update()
    else:
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor, as_completed

        # Small chunks keep the bar moving; spawn avoids forking open SQLite connections.
        chunks = [keys[i : i + 2] for i in range(0, len(keys), 2)]
        with ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn")) as pool:
            futures = [pool.submit(_run_days, job_name, chunk) for chunk in chunks]
            for future in as_completed(futures):
                for day, ok in future.result():
                    failed += [] if ok else [day]
                    bar.update()
    bar.close()
    return sorted(failed)


def quiet_warnings() -> None:
    """Beta/preview notices from Dagster are for developers, not for a demo's terminal."""
    import warnings

    import dagster as dg

    for category in (dg.BetaWarning, dg.PreviewWarning, UserWarning):
        warnings.filterwarnings("ignore", category=category)


def latest_metadata(instance, asset: str, day: date) -> dict:
    """The metadata of an asset partition's latest materialization, read from the instance."""
    import dagster as dg

    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=dg.AssetKey(asset), asset_partitions=[day.isoformat()]),
        limit=1,
    ).records
    if not records:
        return {}
    meta = records[0].asset_materialization.metadata
    return {k: v.value for k, v in meta.items()}
