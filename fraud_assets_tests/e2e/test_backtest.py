"""The documented backtest command on a small CSV, end to end, in a subprocess.

Real Dagster instance, real MLflow (SQLite), the file source, features, CatBoost, the
evaluation report and the metrics JSON, all inside a temporary folder.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import date, timedelta
from pathlib import Path

import polars as pl

from fraud_assets.lib.simulation import SimulationConfig, Simulator

REPO = Path(__file__).resolve().parents[2]
FIRST = date(2026, 1, 1)
DAYS = 50


def _write_dataset(folder: Path) -> Path:
    """A user's export: their column names, one CSV per month, labels in a column."""
    sim = Simulator(SimulationConfig(seed=21, size=0.25))
    df = pl.concat([sim.transactions(FIRST + timedelta(days=i)) for i in range(DAYS)])
    export = df.select(
        TRANSACTION_ID="transaction_id",
        TX_DATETIME=pl.col("ts").dt.strftime("%Y-%m-%d %H:%M:%S"),
        CUSTOMER_ID="customer_id",
        TERMINAL_ID="terminal_id",
        TX_AMOUNT="amount",
        MCC="merchant_category",
        TX_FRAUD="is_fraud",
    )
    folder.mkdir()
    for month, part in export.group_by(pl.col("TX_DATETIME").str.slice(0, 7)):
        part.write_csv(folder / f"tx_{month[0]}.csv")
    config = folder.parent / "source.yaml"
    config.write_text(
        f"path: {folder}\n"
        "columns:\n"
        "  TRANSACTION_ID: transaction_id\n  TX_DATETIME: ts\n  CUSTOMER_ID: customer_id\n"
        "  TERMINAL_ID: terminal_id\n  TX_AMOUNT: amount\n  MCC: merchant_category\n"
        "  TX_FRAUD: is_fraud\n"
        "label_delay_days: 3\n"
    )
    return config


def test_backtest_on_my_own_csv_files(tmp_path: Path) -> None:
    config = _write_dataset(tmp_path / "export")
    out = tmp_path / "bt"
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("FRAUD_", "DAGSTER_", "MLFLOW_"))
    }
    env["FRAUD_TUNING_TRIALS"] = "2"  # the optional search, each trial a child run
    cmd = [
        sys.executable,
        "-m",
        "fraud_assets.cli",
        "backtest",
        "--source-config",
        str(config),
        "--train-start",
        "2026-01-31",
        "--train-days",
        "9",
        "--delay-days",
        "3",
        "--test-days",
        "7",
        "--out",
        str(out),
    ]
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    metrics = json.loads((out / "metrics.json").read_text())
    for key in (
        "challenger_average_precision",
        "challenger_card_precision_at_100",
        "logistic_baseline_average_precision",
    ):
        assert 0.0 <= metrics[key] <= 1.0, key
    assert metrics["test_end"] == "2026-02-18"
    report = Path(metrics["classification_report"])
    assert report.exists() and report.stat().st_size > 10_000
    assert "Average precision" in proc.stdout
    # The champion is the refit on the freshest mature window (test end 02-18, labels 3 days
    # old at least, 9 days); the metrics are its evaluated sibling's, fitted before the test
    # window. Both carry their lineage: data windows, code and environment versions.
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{out / 'mlflow' / 'mlflow.db'}")
    refit = client.get_model_version_by_alias("fraud_model", "champion")
    tags = refit.tags
    assert tags["role"] == "refit"
    assert tags["train_window"] == "2026-02-07..2026-02-15"
    evaluated = client.get_model_version("fraud_model", tags["evaluated_version"])
    assert evaluated.tags["role"] == "evaluated"
    assert evaluated.tags["train_window"] == "2026-01-31..2026-02-08"
    assert str(metrics["model_version"]) == str(evaluated.version) != str(refit.version)
    assert client.get_run(refit.run_id).data.tags["mlflow.parentRunId"] == evaluated.run_id
    children = client.search_runs(
        [client.get_run(evaluated.run_id).info.experiment_id],
        f"tags.mlflow.parentRunId = '{evaluated.run_id}'",
    )
    names = sorted(r.info.run_name for r in children)
    assert names[:2] == ["refit 2026-02-18", "trial 0"] and names[2:] == ["trial 1"], names
    assert tags["threshold"] == evaluated.tags["threshold"] and float(tags["threshold"]) > 0
    assert tags["calibration_a"] == evaluated.tags["calibration_a"]
    assert len(tags["requirements_lock_sha256"]) == 16
    assert tags["feature_code_version"].startswith("features-")
    assert tags["git_commit"]
    assert client.get_model_version_by_alias("fraud_model", "challenger").version == refit.version
    # No merchant channel in the export: it is absent, not invented.
    raw = pl.read_parquet(out / "data" / "raw_transactions" / "2026-02-01.parquet")
    assert "channel" not in raw.columns and "merchant_category" in raw.columns
