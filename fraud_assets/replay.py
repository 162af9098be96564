"""Operations replay: months of simulated operations under several retraining policies.

``python -m fraud_assets.cli replay --days 90 --out replay/`` runs, in its own folder (its own
Dagster instances, lakes and MLflow stores; nothing outside it, nothing left running):

1. a warm-up: the demo's pipeline up to the day before the replay (28 days of history and a
   champion of the default recipe), then the ingestion of every replay day (the source is
   partition-addressable; nothing downstream reads a day before its turn);
2. each policy on its own copy of that state, day by day through the real jobs: the night
   before day D, the policy's automation acts on the data up to D-1 (``daily``: the training
   job as of D-1, as the retraining schedule would; ``drift``: monitoring of D-1, then the real
   ``drift_sensor`` evaluated on the instance, the runs it requests executed); then D's
   features are computed and D's traffic is scored by the champion in service, at its review
   threshold, as the service would (batch features equal the online ones; the parity tests
   prove it), and compared with the simulator's truth.

Policies: ``static`` (the warm-up champion forever), ``daily``, ``drift``, ``both``. A
retraining here runs the training job up to the champion alias (training set, CatBoost,
evaluation, promotion gate, refit, alias): the Bento build and rollout are left out (about a
minute per retraining; they serve the same model and thresholds), and so is the alert-volume
recalibration, which acts on a running service's deployment pointer.

Per day and policy (``days.csv``): recall at the alert rule (fraud detection rate), false
positive rate, precision, fraud amount caught and missed, alerts, the model version in
service. ``replay.png`` plots them; the summary compares the policies on the days after
each drift (to the next one), as gains over the static model.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import subprocess
import sys
import time
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import polars as pl

POLICIES: dict[str, tuple[bool, bool]] = {  # name -> (retrain daily, act on drift)
    "static": (False, False),
    "daily": (True, False),
    "drift": (False, True),
    "both": (True, True),
}
RETRAIN = ("training_set", "fraud_model", "model_evaluation", "refit_model", "champion_model")
MONITOR = ("feature_drift", "prediction_drift")
WARMUP_DAYS = 28
STATE_PARTS = ("dagster", "data", "mlflow")  # what a policy copies from the warm-up
DAY_FILE = "days.csv"


def default_drifts(first: date, days: int) -> list[dict[str, Any]]:
    """Two scenarios: a covariate shift a quarter in, a new fraud pattern at three fifths."""
    return [
        {"kind": "covariate", "start": (first + timedelta(days=days // 4)).isoformat()},
        {
            "kind": "new_fraud_pattern",
            "start": (first + timedelta(days=3 * days // 5)).isoformat(),
            "victims_per_customer_day": 0.01,
        },
    ]


def environment(root: Path, args: argparse.Namespace, first: date, drifts: list) -> dict:
    from fraud_assets.settings import state_environment

    return (
        dict(os.environ)
        | state_environment(root)
        | {
            "FRAUD_PARTITIONS_START": (first - timedelta(days=WARMUP_DAYS + 40)).isoformat(),
            "FRAUD_SIM_SIZE": str(args.size),
            "FRAUD_SIM_SEED": str(args.seed),
            "FRAUD_SIM_DRIFT": json.dumps(drifts),
            "FRAUD_TRAIN_ITERATIONS": str(args.iterations),
            "FRAUD_TRAIN_DAYS": "14",
            "FRAUD_TEST_DAYS": "7",
            "FRAUD_PROMOTION_MIN_AP": "0.05",
            "PYTHONWARNINGS": "ignore",
        }
    )


def _cli(env: dict[str, str], *args: str) -> None:
    done = subprocess.run([sys.executable, "-m", "fraud_assets.cli", *args], env=env)
    if done.returncode != 0:
        raise SystemExit(f"replay: `cli {' '.join(args)}` failed ({done.returncode})")


def run(args: argparse.Namespace) -> int:
    """The whole replay (the parent process): warm-up, then one subprocess per policy."""
    out = Path(args.out).resolve()
    last = date.today() - timedelta(days=1)
    first = last - timedelta(days=args.days - 1)
    drifts = default_drifts(first, args.days)
    policies = [p.strip() for p in args.policies.split(",") if p.strip()]
    unknown = sorted(set(policies) - set(POLICIES))
    if unknown:
        raise SystemExit(f"unknown policies {unknown}; choose from {sorted(POLICIES)}")
    started = time.perf_counter()
    base = out / "warmup"
    done = base / ".warmed-up"
    if not done.exists():  # a rerun reuses a finished warm-up
        shutil.rmtree(base, ignore_errors=True)
        env = environment(base, args, first, drifts)
        print(f"replay: warm-up to {first - timedelta(days=1)}, drifts {drifts}")
        _cli(env, "demo", "--days", str(WARMUP_DAYS), "--end", str(first - timedelta(days=1)))
        _cli(env, "run", "daily_ingestion", "--start", str(first), "--end", str(last))
        done.write_text(json.dumps(drifts))
    frames = []
    for policy in policies:
        root = out / policy
        shutil.rmtree(root, ignore_errors=True)
        for part in STATE_PARTS:
            shutil.copytree(base / part, root / part)
        env = environment(root, args, first, drifts)
        print(f"replay: policy {policy} over {first} .. {last}")
        command = [sys.executable, "-m", "fraud_assets.replay", policy, str(first), str(last)]
        if subprocess.run(command, env=env).returncode != 0:
            raise SystemExit(f"replay: policy {policy} failed")
        frames.append(pl.read_csv(root / DAY_FILE))
    days = pl.concat(frames)
    days.write_csv(out / DAY_FILE)
    report(days, drifts, out)
    print(f"replay: {time.perf_counter() - started:.0f} s; {out / DAY_FILE}, {out / 'replay.png'}")
    return 0


# ---------------------------------------------------------------------- one policy


def _policy(policy: str, first: date, last: date) -> None:
    """One policy's days, in this process (its environment names its own state)."""
    import dagster as dg
    from tqdm import tqdm

    from fraud_assets.definitions import defs
    from fraud_assets.defs.monitoring.sensors import drift_sensor
    from fraud_assets.runs import ensure_dagster_home, quiet_warnings
    from fraud_assets.settings import DATA_ROOT, REPORTS_ROOT

    ensure_dagster_home()
    quiet_warnings()
    daily, on_drift = POLICIES[policy]
    jobs = [
        dg.define_asset_job("replay_features", selection=["transaction_features"]),
        dg.define_asset_job("replay_monitoring", selection=list(MONITOR)),
        dg.define_asset_job("replay_training", selection=list(RETRAIN)),
    ]
    merged = dg.Definitions.merge(defs, dg.Definitions(jobs=jobs))
    # A promotion gate that keeps the champion is a normal outcome here, not an error to
    # print; every run's full log stays in the policy's instance (`dagster dev` on it).
    quiet = {"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}}
    logging.getLogger("mlflow").setLevel(logging.ERROR)

    def execute(job: str, day: str, **extra: Any) -> bool:
        config = extra.pop("run_config", None) or {}
        result = merged.resolve_job_def(job).execute_in_process(
            instance=instance,
            partition_key=day,
            raise_on_error=False,
            run_config={**quiet, **config},
            **extra,
        )
        return result.success

    from fraud_assets.resources.storage import LakeStorage

    storage = LakeStorage(data_root=DATA_ROOT, reports_root=REPORTS_ROOT)
    rows = []
    cursor: str | None = None
    with dg.DagsterInstance.get() as instance:
        days = [first + timedelta(days=i) for i in range((last - first).days + 1)]
        for day in tqdm(days, desc=policy, unit="day"):
            night = str(day - timedelta(days=1))  # what the automation knows before the day
            actions = []
            if on_drift:
                execute("replay_monitoring", night)
                context = dg.build_sensor_context(
                    instance=instance,
                    cursor=cursor,
                    definitions=defs,
                    resources={"storage": storage},
                )
                tick = drift_sensor.evaluate_tick(context)
                cursor = tick.cursor
                for request in tick.run_requests:
                    if request.job_name == "training":
                        ok = execute(
                            "replay_training",
                            request.partition_key,
                            run_config=request.run_config,
                            tags=request.tags,
                        )
                        actions.append(f"drift retraining ({'ok' if ok else 'kept champion'})")
            if daily and not any(a.startswith("drift") for a in actions):
                ok = execute("replay_training", night, tags={"trigger": "schedule"})
                actions.append(f"daily retraining ({'ok' if ok else 'kept champion'})")
            if not execute("replay_features", str(day)):
                raise SystemExit(f"{policy}: features of {day} failed")
            rows.append(
                {
                    "policy": policy,
                    "day": str(day),
                    **_score_day(day),
                    "actions": "; ".join(actions),
                }
            )
    pl.DataFrame(rows).write_csv(Path(os.environ["FRAUD_DATA_ROOT"]).parent / DAY_FILE)


def _score_day(day: date) -> dict[str, Any]:
    """The day's traffic scored by the champion in service, against the simulator's truth."""
    import numpy as np

    from fraud_assets.defs.deployment.assets import served_variant
    from fraud_assets.lib.calibration import Platt
    from fraud_assets.lib.contracts import CHAMPION
    from fraud_assets.lib.modeling import predict_catboost
    from fraud_assets.resources.mlflow import ModelRegistry
    from fraud_assets.resources.storage import LakeStorage

    storage = LakeStorage.from_settings()
    features = pl.read_parquet(storage.lake_path("transaction_features", f"{day}.parquet"))
    raw = pl.read_parquet(storage.lake_path("raw_transactions", f"{day}.parquet"))
    truth = features.select("transaction_id").join(
        raw.select("transaction_id", "is_fraud", "amount"), on="transaction_id", how="left"
    )
    registry = ModelRegistry.from_settings()
    registry.configure()
    version = registry.version(CHAMPION)
    variant = served_variant(registry, version, fallback={"review": 1.0, "decline": 1.0})
    import mlflow

    inputs = mlflow.artifacts.load_dict(f"runs:/{version.run_id}/model_inputs.json")
    raw_scores = predict_catboost(variant["model"], features, inputs["features"])
    probability = Platt.from_dict(variant["calibration"]).apply_array(raw_scores)
    alert = probability >= variant["thresholds"]["review"]
    fraud = truth["is_fraud"].fill_null(0).to_numpy().astype(bool)
    amount = truth["amount"].to_numpy()
    tp, fp = int((alert & fraud).sum()), int((alert & ~fraud).sum())
    frauds, genuine = int(fraud.sum()), int((~fraud).sum())
    return {
        "transactions": len(fraud),
        "frauds": frauds,
        "alerts": int(alert.sum()),
        "true_positives": tp,
        "false_positives": fp,
        "recall": tp / frauds if frauds else float("nan"),
        "false_positive_rate": fp / genuine if genuine else float("nan"),
        "precision": tp / (tp + fp) if tp + fp else float("nan"),
        "fraud_amount_caught": float(amount[alert & fraud].sum()),
        "fraud_amount_missed": float(amount[~alert & fraud].sum()),
        "model_version": str(version.version),
        "review_threshold": float(variant["thresholds"]["review"]),
        "mean_probability": float(np.mean(probability)) if len(probability) else 0.0,
    }


# ---------------------------------------------------------------------- report


def summary(days: pl.DataFrame, drifts: list[dict[str, Any]]) -> pl.DataFrame:
    """Per drift and policy, over the days from its start to the next drift's (or the end):
    detection rate, false positives, alerts per day, and the gains over the static model in
    percent. The whole regime, not a fixed window: a response takes two weeks or more
    (labels mature first), and the days before it count as much as those after."""
    out = []
    starts = sorted(date.fromisoformat(d["start"]) for d in drifts)
    for drift in drifts:
        start = date.fromisoformat(drift["start"])
        later = [s for s in starts if s > start]
        part = days.filter(pl.col("day") >= str(start))
        if later:
            part = part.filter(pl.col("day") < str(later[0]))
        totals = part.group_by("policy").agg(
            pl.col("true_positives").sum(),
            pl.col("false_positives").sum(),
            pl.col("frauds").sum(),
            pl.col("alerts").mean().alias("alerts_per_day"),
            pl.col("fraud_amount_caught").sum(),
            pl.col("fraud_amount_missed").sum(),
            pl.len().alias("days"),
        )
        totals = totals.with_columns(
            detection_rate=pl.col("true_positives") / pl.col("frauds"),
            drift=pl.lit(f"{drift['kind']} from {drift['start']}"),
        )
        static = totals.filter(pl.col("policy") == "static")
        if static.height:
            rate, fps = static["detection_rate"][0], static["false_positives"][0]
            totals = totals.with_columns(
                detection_gain_pct=(pl.col("detection_rate") / rate - 1) * 100 if rate else None,
                false_positive_change_pct=(pl.col("false_positives") / fps - 1) * 100
                if fps
                else None,
            )
        out.append(totals)
    order = {name: i for i, name in enumerate(POLICIES)}
    frame = pl.concat(out, how="diagonal_relaxed")
    return frame.sort("drift", pl.col("policy").replace_strict(order, return_dtype=pl.Int64))


def report(days: pl.DataFrame, drifts: list[dict[str, Any]], out: Path) -> None:
    from fraud_assets.lib.reports.plots import replay_png

    table = summary(days, drifts)
    table.write_csv(out / "summary.csv")
    replay_png(days, drifts, out / "replay.png")
    with pl.Config(tbl_rows=50, tbl_cols=20, tbl_width_chars=200, float_precision=3):
        print(
            days.select(
                "policy",
                "day",
                "recall",
                "false_positive_rate",
                "precision",
                "alerts",
                "fraud_amount_caught",
                "fraud_amount_missed",
                "model_version",
                "actions",
            )
        )
        print("\nFrom each drift's start to the next one's (or the end):")
        print(
            table.select(
                "drift",
                "policy",
                "detection_rate",
                "detection_gain_pct",
                "false_positives",
                "false_positive_change_pct",
                "alerts_per_day",
                "fraud_amount_caught",
                "fraud_amount_missed",
            )
        )


def main() -> None:
    """Entry of one policy's subprocess: ``python -m fraud_assets.replay POLICY FIRST LAST``."""
    policy, first, last = (
        sys.argv[1],
        date.fromisoformat(sys.argv[2]),
        date.fromisoformat(sys.argv[3]),
    )
    _policy(policy, first, last)


if __name__ == "__main__":
    main()
