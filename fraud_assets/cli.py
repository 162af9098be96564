"""Command line: `python -m fraud_assets.cli demo | ...`.

Runs go through a real Dagster instance in $DAGSTER_HOME, so everything the CLI does shows
up in the Dagster UI afterwards (runs, materializations, check results).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
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


# Runs keep their full event log in the instance; the terminal gets warnings only.
_QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}


def run_partitions(job_name: str, days: Sequence[date], instance=None) -> list[str]:
    """Execute a partitioned job for each day in process, with a progress bar.

    Returns the partitions whose run failed (a failed quality gate included).
    """
    import dagster as dg
    from tqdm import tqdm

    from fraud_assets.definitions import defs

    instance = instance or dg.DagsterInstance.get()
    job = defs.resolve_job_def(job_name)
    failed = []
    for day in tqdm(days, desc=job_name, unit="day"):
        result = job.execute_in_process(
            instance=instance,
            partition_key=day.isoformat(),
            raise_on_error=False,
            run_config=_QUIET,
        )
        if not result.success:
            failed.append(day.isoformat())
    return failed


def _quiet_warnings() -> None:
    """Beta/preview notices from Dagster are for developers, not for a demo's terminal."""
    import warnings

    import dagster as dg

    for category in (dg.BetaWarning, dg.PreviewWarning, UserWarning):
        warnings.filterwarnings("ignore", category=category)


def cmd_demo(args: argparse.Namespace) -> int:
    ensure_dagster_home()
    _quiet_warnings()
    end = date.fromisoformat(args.end) if args.end else settings.demo_end()
    days = demo_days(args.days, end)
    print(
        f"fraud_assets demo: {days[0]} .. {days[-1]} ({len(days)} days), source={settings.SOURCE}"
    )
    failed = run_partitions("daily_ingestion", days)
    if failed:
        print(f"quality gates failed for {len(failed)} partitions: {', '.join(failed)}")
        return 1
    print(f"ingested {len(days)} daily partitions into {settings.DATA_ROOT}; all checks passed")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="fraud-assets", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="materialize the demo range end to end")
    demo.add_argument("--days", type=int, default=settings.DEMO_DAYS)
    demo.add_argument("--end", help="last day (YYYY-MM-DD); default yesterday")
    demo.set_defaults(func=cmd_demo)
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
