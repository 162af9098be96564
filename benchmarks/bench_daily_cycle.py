"""End-to-end time of one daily cycle on the default demo: ingest, gate, features, drift,
retrain, evaluate, promote, package (Bento build + smoke test).

Run: .venv/bin/python benchmarks/bench_daily_cycle.py [--workdir data/bench_cycle] [--reuse]

Builds the demo's state in its own folder (instance, lake, MLflow, BentoML store; default size
and 60 days, not timed), then runs `python -m fraud_assets.cli cycle` for the next day and
prints the wall time of each job and, from the Dagster instance, of each asset step.
`--reuse` skips the setup when the folder already holds it. The promotion margin is set to
-1 so the timed cycle always reaches the Bento build and smoke test.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from datetime import date, timedelta
from pathlib import Path

from fraud_assets.settings import state_environment

REPO = Path(__file__).resolve().parents[1]
END = date(2026, 6, 30)  # the demo's last day; the timed cycle is the day after


def environment(workdir: Path) -> dict[str, str]:
    return (
        os.environ
        | state_environment(workdir)
        | {
            "PYTHONWARNINGS": "ignore",
            # A challenger one day newer is rarely better than the champion by any margin, and
            # the gate then (rightly) stops before packaging; a margin of -1 lets every cycle
            # reach the Bento build and smoke test, so the timed path is the whole cycle.
            "FRAUD_PROMOTION_MARGIN": "-1",
        }
    )


def cli(env: dict[str, str], *args: str) -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "fraud_assets.cli", *args], cwd=REPO, env=env, check=True)
    return time.perf_counter() - started


def step_times(home: str, day: date) -> list[tuple[str, str, float]]:
    """(job, step, seconds) of the latest run of each job for `day`, from the instance."""
    import dagster as dg

    out = []
    with dg.DagsterInstance.from_config(home) as instance:
        for job in ("daily_monitoring", "training"):
            runs = instance.get_runs(
                dg.RunsFilter(job_name=job, tags={"dagster/partition": day.isoformat()}), limit=1
            )
            for stat in instance.get_run_step_stats(runs[0].run_id) if runs else []:
                if stat.start_time and stat.end_time:
                    out.append((job, stat.step_key, stat.end_time - stat.start_time))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", default=str(REPO / "data" / "bench_cycle"))
    parser.add_argument("--reuse", action="store_true", help="keep an existing setup")
    args = parser.parse_args()
    workdir = Path(args.workdir).resolve()
    env = environment(workdir)
    marker = workdir / ".ready"
    if not (args.reuse and marker.exists()):
        print(f"setup (not timed): demo ending {END} in {workdir}")
        setup = cli(env, "demo", "--end", END.isoformat())
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.write_text(f"{setup:.0f} s\n")
        print(f"setup took {setup:.0f} s")
    day = END + timedelta(days=1)
    total = cli(env, "cycle", "--day", day.isoformat())
    print(f"\n{'job':18}{'step':34}{'seconds':>10}")
    for job, step, seconds in step_times(env["DAGSTER_HOME"], day):
        print(f"{job:18}{step:34}{seconds:>10.1f}")
    print(f"\none daily cycle ({day}), wall time including process start-up: {total:.1f} s")


if __name__ == "__main__":
    main()
