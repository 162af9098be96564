"""Command line: `python -m fraud_assets.cli demo | ...`.

Runs go through a real Dagster instance in $DAGSTER_HOME, so everything the CLI does shows
up in the Dagster UI afterwards (runs, materializations, check results).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from datetime import date, timedelta
from pathlib import Path

from fraud_assets import settings
from fraud_assets.lib.contracts import BASELINE, CHALLENGER, CHAMPION
from fraud_assets.lib.features.definitions import LOOKBACK_DAYS
from fraud_assets.runs import (
    PARALLEL_JOBS,
    demo_days,
    ensure_dagster_home,
    latest_metadata,
    quiet_warnings,
    run_partitions,
)


def print_headline(meta: dict) -> None:
    rows = [
        ("AUC ROC", "auc_roc"),
        ("Average precision", "average_precision"),
        ("Card precision@100", "card_precision_at_100"),
        ("Card precision@k", "card_precision_at_k"),
        ("  / its ceiling", "card_precision_at_k_normalised"),
        ("Precision @ threshold", "precision"),
        ("Recall @ threshold", "recall"),
    ]
    models = [m for m in (CHALLENGER, CHAMPION, BASELINE) if f"{m}_auc_roc" in meta]
    print(f"{'':24}" + "".join(f"{m:>20}" for m in models))
    for label, key in rows:
        print(f"{label:24}" + "".join(f"{meta[f'{m}_{key}']:>20.4f}" for m in models))
    if "cp_k" in meta:
        print(f"(k = {meta['cp_k']:.0f} cards a day: the review capacity)")
    scenarios = sorted(k for k in meta if k.startswith("recall_"))
    if scenarios:
        print("challenger recall by fraud scenario (at the review threshold):")
        for key in scenarios:
            print(f"  {key.removeprefix('recall_'):22}{meta[key]:>20.4f}")
    gain = "ap_gain_over_" + BASELINE
    if f"{gain}_diff" in meta:
        print(
            f"AP gain over the {BASELINE}: {meta[f'{gain}_diff']:+.4f} "
            f"(95% CI {meta[f'{gain}_ci_low']:+.4f} .. {meta[f'{gain}_ci_high']:+.4f})"
        )
    for key in (
        "threshold_review",
        "threshold_decline",
        "fraud_amount_caught",
        "fraud_amount_missed",
        "alerts_per_day",
    ):
        if key in meta:
            print(f"{key:24}{meta[key]:>20.4f}")
    for key in ("classification_report", "precision_recall_plot"):
        if key in meta:
            print(f"{key}: {meta[key]}")


def run_pipeline(end: date, feature_days: int, instance=None) -> int:
    """Ingest the warm-up window, then features for `feature_days`, then train as of `end`."""
    import dagster as dg

    instance = instance or dg.DagsterInstance.get()
    from fraud_assets.defs.features.assets import REACH_DAYS  # the features' history

    days = demo_days(feature_days + REACH_DAYS, end)
    print(f"ingesting {days[0]} .. {days[-1]} ({REACH_DAYS} days of history first)")
    failed = run_partitions("daily_ingestion", days)
    if not failed:
        print(f"features {days[REACH_DAYS]} .. {end}")
        failed = run_partitions("features", days[REACH_DAYS:])
    if failed:
        print(f"quality gates failed for {len(failed)} partitions: {', '.join(failed)}")
        return 1
    print(f"training as of {end} (CatBoost, MLflow, evaluation, promotion gate)")
    failed = run_partitions("training", [end])
    meta = latest_metadata(instance, "model_evaluation", end)
    if meta:
        print_headline(meta)
    if failed:
        print("the training run failed (see the Dagster UI: `make ui`), e.g. the promotion gate")
        return 1
    champion = latest_metadata(instance, "champion_model", end)
    if champion:
        print(
            f"champion: v{champion.get('champion')}, refitted on {champion.get('train_window')} "
            f"(the freshest mature labels) with the recipe evaluated above "
            f"(v{champion.get('evaluated_version')})"
        )
    bento = latest_metadata(instance, "fraud_bento", end)
    if bento:
        print(f"Bento: {bento.get('bento_tag')} (smoke-tested against offline scores)")
        print(f"serve it: {bento.get('serve')} --port 3001")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    ensure_dagster_home()
    quiet_warnings()
    end = date.fromisoformat(args.end) if args.end else settings.demo_end()
    print(f"fraud_assets demo: source={settings.SOURCE}, data in {settings.DATA_ROOT}")
    code = run_pipeline(end, args.days)
    if code == 0:
        print("done: `make ui` for Dagster, `make mlflow-ui` for MLflow")
    return code


def cmd_backtest(args: argparse.Namespace) -> int:
    """Your own transaction files through features, training and evaluation for one split.

    Everything goes to --out (its own Dagster instance, lake and MLflow store), so a backtest
    never touches the project's state. Settings are environment variables read at import,
    so they are set before the definitions are imported.
    """
    import json

    from fraud_assets.lib.sources import build_source, load_config_file

    out = Path(args.out).resolve()
    options = load_config_file(args.source_config)
    source = build_source("files", options)
    first, last = source.date_range()  # type: ignore[attr-defined]
    train_start = (
        date.fromisoformat(args.train_start)
        if args.train_start
        else first + timedelta(days=LOOKBACK_DAYS)  # a full customer history first
    )
    end = train_start + timedelta(days=args.train_days + args.delay_days + args.test_days - 1)
    if end > last:
        print(f"the data ends on {last}, but the split needs days up to {end}", file=sys.stderr)
        return 2
    os.environ.update(
        {
            "FRAUD_SOURCE": "files",
            "FRAUD_SOURCE_CONFIG": str(Path(args.source_config).resolve()),
            "FRAUD_PARTITIONS_START": first.isoformat(),
            "FRAUD_TRAIN_DAYS": str(args.train_days),
            "FRAUD_DELAY_DAYS": str(args.delay_days),
            "FRAUD_TEST_DAYS": str(args.test_days),
            **settings.state_environment(out),
            # Real data is lumpier than the simulator: gates stay on, bands are wider.
            "FRAUD_ROW_COUNT_BAND": os.environ.get("FRAUD_ROW_COUNT_BAND", "0.95"),
            "FRAUD_LABEL_RATE_MIN": os.environ.get("FRAUD_LABEL_RATE_MIN", "0"),
            "FRAUD_LABEL_RATE_MAX": os.environ.get("FRAUD_LABEL_RATE_MAX", "0.5"),
            "FRAUD_PROMOTION_MIN_AP": "0",
        }
    )
    import importlib

    importlib.reload(settings)
    ensure_dagster_home()
    quiet_warnings()
    feature_days = (end - train_start).days + 1
    import dagster as dg

    from fraud_assets.defs.features.assets import REACH_DAYS  # after the reload: its settings

    history_start = max(first, train_start - timedelta(days=REACH_DAYS))

    instance = dg.DagsterInstance.get()
    days = demo_days((end - history_start).days + 1, end)
    print(f"backtest: data {first} .. {last}; train from {train_start}, evaluate up to {end}")
    failed = run_partitions("daily_ingestion", days)
    if not failed:
        failed = run_partitions("features", demo_days(feature_days, end))
    if failed:
        print(
            f"quality gates failed for: {', '.join(failed)} (see `DAGSTER_HOME={out / 'dagster'} make ui`)"
        )
        return 1
    failed = run_partitions("training", [end])
    meta = latest_metadata(instance, "model_evaluation", end)
    if not meta:
        print("training failed; see the Dagster UI for the run's logs", file=sys.stderr)
        return 1
    print_headline(meta)
    metrics = {k: v for k, v in meta.items() if isinstance(v, (int, float, str))}
    metrics |= {"train_start": train_start.isoformat(), "test_end": end.isoformat()}
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2, default=str))
    print(f"metrics: {out / 'metrics.json'}; report: {meta.get('classification_report')}")
    return 0


def _day_range(start: str, end: str | None) -> list[date]:
    first, last = date.fromisoformat(start), date.fromisoformat(end or start)
    if last < first:
        raise SystemExit(f"--end {last} is before --start {first}")
    return demo_days((last - first).days + 1, last)


def cmd_run(args: argparse.Namespace) -> int:
    """Any partitioned job over a range of days (a backfill from the terminal)."""
    ensure_dagster_home()
    quiet_warnings()
    days = _day_range(args.start, args.end)
    # Ingestion-style jobs read only their own day; anything else runs days in order.
    workers = args.workers or (settings.CLI_WORKERS if args.job in PARALLEL_JOBS else 1)
    failed = run_partitions(args.job, days, workers=workers)
    if failed:
        print(f"{args.job}: {len(failed)} partitions failed: {', '.join(failed)}")
        return 1
    print(f"{args.job}: {len(days)} partitions materialized")
    return 0


def cmd_cycle(args: argparse.Namespace) -> int:
    """One day of operations: ingest, gate, features, drift, then retrain, evaluate, promote,
    package. What the two daily schedules do, timed step by step."""
    import time

    ensure_dagster_home()
    quiet_warnings()
    day = date.fromisoformat(args.day) if args.day else settings.demo_end()
    timings: dict[str, float] = {}
    code = 0
    for job in ("daily_monitoring", "training"):
        started = time.perf_counter()
        failed = run_partitions(job, [day], workers=1)
        timings[job] = time.perf_counter() - started
        if failed:
            print(f"{job} stopped for {day}: a blocking check failed (e.g. the promotion gate")
            print("kept the champion) or a step failed; the Dagster UI says which")
            code = 1
            break
    import dagster as dg

    with dg.DagsterInstance.get() as instance:
        drift = latest_metadata(instance, "feature_drift", day)
        bento = latest_metadata(instance, "fraud_bento", day)
    print(f"daily cycle {day}: " + ", ".join(f"{k} {v:.1f} s" for k, v in timings.items()))
    print(f"total {sum(timings.values()):.1f} s; max feature PSI {drift.get('max_psi', 'n/a')}")
    if bento:
        print(f"Bento {bento.get('bento_tag')}: {bento.get('variants')}")
    return code


def _model_registry(model_name: str | None = None):
    from fraud_assets.resources.mlflow import ModelRegistry

    model_registry = ModelRegistry.from_settings(model_name)
    model_registry.configure()
    return model_registry


def cmd_rollback(args: argparse.Namespace) -> int:
    from fraud_assets.lib import control

    change = _model_registry(args.model).rollback()
    print(f"champion is now version {change.champion} (was {change.previous})")
    try:
        pointer = control.roll_back(settings.SERVING_STATE, reason="cli rollback")
    except control.NothingToRollBack as exc:
        print(f"running services: unchanged ({exc})")
        return 0
    switched, workers = control.wait_for_workers(
        settings.SERVING_STATE, pointer["bundle_id"], settings.ROLLOUT_TIMEOUT_S
    )
    state = "switched" if switched else "NOT all switched"
    print(f"running services: {len(workers)} workers {state} to {pointer['versions']}")
    return 0 if switched else 1


def cmd_replay(args: argparse.Namespace) -> int:
    """Policies side by side over simulated months (``fraud_assets/replay.py``)."""
    from fraud_assets import replay

    return replay.run(args)


def cmd_import_labels(args: argparse.Namespace) -> int:
    """Analyst or chargeback labels from a file, appended whole to the feedback log."""
    from fraud_assets.lib.labels import LabelFileError, read_label_file
    from fraud_assets.serving.logs import FeedbackLog

    try:
        rows = read_label_file(Path(args.file))
    except LabelFileError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    log = FeedbackLog(settings.SERVING_STATE)
    try:
        log.append_many(rows)
    finally:
        log.close()
    days = sorted({row["received_at"][:10] for row in rows})
    frauds = sum(row["is_fraud"] for row in rows)
    print(f"{len(rows)} label events ({frauds} frauds) appended to {log.path}")
    print(
        f"they join the fraud_labels partitions of {days[0]} .. {days[-1]}: live monitoring sees "
        "them now; training and terminal risk once those days' daily_ingestion runs (again): "
        f"python -m fraud_assets.cli run daily_ingestion --start {days[0]} --end {days[-1]}"
    )
    return 0


def cmd_mlflow_ui(args: argparse.Namespace) -> int:
    import subprocess

    model_registry = _model_registry()
    cmd = [
        sys.executable,
        "-m",
        "mlflow",
        "ui",
        "--backend-store-uri",
        model_registry.tracking_uri,
        "--host",
        "127.0.0.1",
        "--port",
        str(args.port),
    ]
    return subprocess.call(cmd)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="fraud-assets", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="materialize the demo range end to end")
    demo.add_argument("--days", type=int, default=settings.DEMO_DAYS)
    demo.add_argument("--end", help="last day (YYYY-MM-DD); default yesterday")
    demo.set_defaults(func=cmd_demo)
    bt = sub.add_parser("backtest", help="backtest on your own transaction files")
    bt.add_argument("--source-config", required=True, help="YAML/JSON file source config")
    bt.add_argument("--train-start", help="first training day (default: 30 days into the data)")
    bt.add_argument("--train-days", type=int, default=28)
    bt.add_argument("--delay-days", type=int, default=7)
    bt.add_argument("--test-days", type=int, default=14)
    bt.add_argument("--out", default="backtest", help="output folder (instance, lake, reports)")
    bt.set_defaults(func=cmd_backtest)
    run = sub.add_parser("run", help="run a partitioned job for a range of days")
    run.add_argument("job", help="job name, e.g. daily_monitoring, training, daily_ingestion")
    run.add_argument("--start", required=True, help="first day (YYYY-MM-DD)")
    run.add_argument("--end", help="last day (default: --start)")
    run.add_argument("--workers", type=int, default=0, help="processes (default: by job)")
    run.set_defaults(func=cmd_run)
    cycle = sub.add_parser("cycle", help="one daily cycle: monitoring, then retraining")
    cycle.add_argument("--day", help="the day (default: yesterday)")
    cycle.set_defaults(func=cmd_cycle)
    rb = sub.add_parser("rollback", help="point the champion alias back at the previous champion")
    rb.add_argument("--model", help="registered model name (default from settings)")
    rb.set_defaults(func=cmd_rollback)
    il = sub.add_parser(
        "import-labels",
        help="append analyst/chargeback labels (CSV or Parquet: transaction_id, is_fraud, "
        "[known_at, source]) to the feedback log, as label events",
    )
    il.add_argument("file")
    il.set_defaults(func=cmd_import_labels)
    rp = sub.add_parser(
        "replay", help="months of simulated operations under several retraining policies"
    )
    rp.add_argument("--days", type=int, default=90, help="replay days (ending yesterday)")
    rp.add_argument("--out", default="replay", help="the replay's own folder")
    rp.add_argument("--policies", default="static,daily,drift,both")
    rp.add_argument("--size", type=float, default=0.25, help="simulator size")
    rp.add_argument("--seed", type=int, default=11, help="simulator seed")
    rp.add_argument("--iterations", type=int, default=150, help="CatBoost iterations")
    rp.set_defaults(func=cmd_replay)
    ui = sub.add_parser("mlflow-ui", help="the MLflow UI on 127.0.0.1")
    ui.add_argument("--port", type=int, default=5000)
    ui.set_defaults(func=cmd_mlflow_ui)
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
