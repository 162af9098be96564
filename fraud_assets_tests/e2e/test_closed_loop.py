"""The closed loop, driven by a real `dagster-daemon` against a temporary DAGSTER_HOME.

Story: a champion of the default recipe (equal strength: the same iterations and early
stopping as any retraining) is trained on days before S. From S on, the simulator shifts
the traffic (covariate: larger amounts, more online shopping) and a fraud pattern never seen
before appears (night-time digital goods at 2-4x the victim's usual amount). The days are
ingested, gated, featured and monitored day by day (the CLI, as a backfill would) while the
daemon runs the drift sensor:

1. the first post-drift days: PSI > 0.25, the thresholds are recalibrated at once
   (``drift_response``), and retraining *waits*: no post-drift label is mature yet;
2. once FRAUD_DRIFT_RETRAIN_POST_DAYS post-drift days are mature (labels 7 days old) with
   enough labelled frauds: exactly one training run, as of the newest day, with the
   post-drift split; its challenger is judged on later post-drift days against the champion,
   beats it with the card-day bootstrap interval of the AP gain above 0, is promoted, and
   the Bento is rebuilt and smoke-tested with it.

Everything runs in subprocesses with its own environment (settings are read at import), as a
user would run it: the CLI for the days, `dagster-daemon run` for the automation.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

from fraud_assets.lib.contracts import PSI_ALERT
from fraud_assets.lib.processes import DagsterDaemon
from fraud_assets.settings import state_environment

REPO = Path(__file__).resolve().parents[2]
WORKSPACE = REPO / "workspace.yaml"
BIN = Path(sys.executable).parent  # the venv's dagster and dagster-daemon
TIMEOUT_S = 1200

pytestmark = [pytest.mark.slow, pytest.mark.timeout(2400)]


POST_DAYS = 5  # mature post-drift days the retraining waits for
MATURITY_DAYS = 7  # the label maturity (FRAUD_DELAY_DAYS, its default)


def _env(tmp: Path, drift_day: date) -> dict[str, str]:
    start = drift_day.isoformat()
    drift = [
        {"kind": "covariate", "start": start},
        {"kind": "new_fraud_pattern", "start": start, "victims_per_customer_day": 0.01},
    ]
    return (
        os.environ
        | state_environment(tmp)
        | {
            "FRAUD_PARTITIONS_START": (drift_day - timedelta(days=80)).isoformat(),
            "FRAUD_SIM_SIZE": "0.25",
            "FRAUD_SIM_SEED": "11",
            "FRAUD_SIM_DRIFT": json.dumps(drift),
            "FRAUD_TRAIN_DAYS": "14",
            "FRAUD_DELAY_DAYS": str(MATURITY_DAYS),
            "FRAUD_TEST_DAYS": "7",
            "FRAUD_PROMOTION_MIN_AP": "0.05",
            "FRAUD_DRIFT_RETRAIN_POST_DAYS": str(POST_DAYS),
            "FRAUD_DRIFT_RETRAIN_MIN_FRAUDS": "20",
            "PYTHONWARNINGS": "ignore",
        }
    )


def _cli(env: dict[str, str], *args: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "fraud_assets.cli", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
    )
    assert done.returncode == 0, f"cli {args}:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"


def _metadata(instance, asset: str, day: date) -> dict:
    import dagster as dg

    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=dg.AssetKey(asset), asset_partitions=[day.isoformat()]),
        limit=1,
    ).records
    assert records, f"{asset} {day} was never materialized"
    return {k: v.value for k, v in records[0].asset_materialization.metadata.items()}


def _champion(env: dict[str, str]) -> str:
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=env["MLFLOW_TRACKING_URI"])
    return str(client.get_model_version_by_alias("fraud_model", "champion").version)


def _sensor_runs(instance) -> list:
    return [r for r in instance.get_runs() if r.tags.get("dagster/sensor_name")]


def _wait_until(instance, daemon: DagsterDaemon, done, what: str) -> list:
    """The sensor's runs once ``done(runs)`` holds and every one has ended (or the deadline,
    or a dead daemon)."""
    import dagster as dg

    finished = {dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE}
    deadline = time.time() + TIMEOUT_S
    while time.time() < deadline:
        assert daemon.running(), f"dagster-daemon exited:\n{daemon.log_tail()}"
        runs = _sensor_runs(instance)
        if done(runs) and all(r.status in finished for r in runs):
            return runs
        time.sleep(5)
    raise AssertionError(f"no {what} in {TIMEOUT_S} s:\n{daemon.log_tail()}")


def _checks(instance, run_id: str) -> dict[str, bool]:
    import dagster as dg

    return {
        e.get_dagster_event().event_specific_data.check_name: (
            e.get_dagster_event().event_specific_data.passed
        )
        for e in instance.all_logs(run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION)
    }


def test_drift_waits_for_post_drift_labels_then_beats_an_equal_champion(tmp_path: Path) -> None:
    import dagster as dg

    today = datetime.now(UTC).date()
    drift_day = today - timedelta(days=MATURITY_DAYS + POST_DAYS + 2)
    ready_day = drift_day + timedelta(days=MATURITY_DAYS + POST_DAYS - 1)  # POST_DAYS mature
    early_end = drift_day + timedelta(days=3)
    env = _env(tmp_path, drift_day)

    # History: a champion of the default recipe as of the day before the drift.
    _cli(env, "demo", "--days", "28", "--end", (drift_day - timedelta(days=1)).isoformat())
    first_champion = _champion(env)

    log = tmp_path / "daemon.log"
    daemon = DagsterDaemon(WORKSPACE, log_path=log, env=env, cwd=REPO)
    daemon.start()
    try:
        with dg.DagsterInstance.from_config(env["DAGSTER_HOME"]) as instance:
            # 1. The first drifted days: thresholds at once, no retraining (nothing mature).
            _cli(
                env,
                "run",
                "daily_monitoring",
                "--start",
                drift_day.isoformat(),
                "--end",
                early_end.isoformat(),
            )
            assert _metadata(instance, "feature_drift", drift_day)["max_psi"] > PSI_ALERT
            runs = _wait_until(
                instance,
                daemon,
                lambda rs: any(r.tags["dagster/run_key"] == f"recalibrate-{drift_day}" for r in rs),
                "threshold recalibration",
            )
            assert {r.job_name for r in runs} == {"drift_response"}, daemon.log_tail()
            assert all(r.status == dg.DagsterRunStatus.SUCCESS for r in runs)
            time.sleep(40)  # another sensor tick: still waiting for labels
            assert not [r for r in _sensor_runs(instance) if r.job_name == "training"]

            # 2. The days until POST_DAYS post-drift days are mature: one retraining.
            _cli(
                env,
                "run",
                "daily_monitoring",
                "--start",
                (early_end + timedelta(days=1)).isoformat(),
                "--end",
                ready_day.isoformat(),
            )
            runs = _wait_until(
                instance,
                daemon,
                lambda rs: any(r.job_name == "training" for r in rs),
                "drift retraining",
            )
            (retraining,) = [r for r in runs if r.job_name == "training"]
            assert retraining.tags["dagster/run_key"] == f"drift-{drift_day}"
            assert retraining.tags["dagster/partition"] == ready_day.isoformat()
            assert retraining.tags["drift_start"] == drift_day.isoformat()
            assert retraining.status == dg.DagsterRunStatus.SUCCESS, daemon.log_tail()
            split = _metadata(instance, "training_set", ready_day)
            assert split["drift_start"] == drift_day.isoformat()
            test_start = date.fromisoformat(split["test"].split(" .. ")[0])
            train_end = date.fromisoformat(split["train"].split(" .. ")[1])
            assert drift_day <= train_end < test_start  # fitted on post-drift days, judged later

            # Judged on post-drift days against the equal-strength champion: better, with
            # the interval above 0; promoted, packaged, smoke-tested.
            evaluation = _metadata(instance, "model_evaluation", ready_day)
            assert evaluation["ap_gain_over_champion_diff"] > 0, evaluation
            assert evaluation["ap_gain_over_champion_ci_low"] > 0, evaluation
            checks = _checks(instance, retraining.run_id)
            assert checks.get("promotion_gate") is True, checks
            assert checks.get("bento_smoke_test") is True, checks
            new_champion = _champion(env)
            assert int(new_champion) > int(first_champion)
            assert _metadata(instance, "fraud_bento", ready_day)["model_version"] == new_champion
            time.sleep(40)  # and launched once: another tick adds no training run
            assert len([r for r in _sensor_runs(instance) if r.job_name == "training"]) == 1
    finally:
        daemon.stop(timeout=60)
