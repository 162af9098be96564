"""Paths, URIs and knobs: environment variables with embedded defaults, nothing else.

Everything defaults to folders inside the repository so a fresh clone runs with no setup;
production swaps these through the environment (s3:// lake, Postgres, Redis...).
"""

from __future__ import annotations

import os
from datetime import date, timedelta
from pathlib import Path

from fraud_assets.lib import contracts

PROJECT_ROOT = Path(__file__).resolve().parents[1]


def _env(name: str, default: str) -> str:
    value = os.environ.get(name, "").strip()
    return value or default


def _path(name: str, default: str) -> str:
    """A path or URL from the environment; relative defaults resolve against the repo."""
    value = os.environ.get(name, "").strip()
    if value:
        return value
    return str(PROJECT_ROOT / default)


# Storage: the data lake (Parquet partitions), any fsspec/UPath URL.
DATA_ROOT = _path("FRAUD_DATA_ROOT", "data")
REPORTS_ROOT = _path("FRAUD_REPORTS_ROOT", "data/reports")
DAGSTER_HOME = _path("DAGSTER_HOME", ".dagster")
MLFLOW_DIR = _path("FRAUD_MLFLOW_DIR", ".mlflow")
MLFLOW_TRACKING_URI = _env("MLFLOW_TRACKING_URI", f"sqlite:///{Path(MLFLOW_DIR) / 'mlflow.db'}")
MLFLOW_ARTIFACT_ROOT = _env("FRAUD_MLFLOW_ARTIFACT_ROOT", str(Path(MLFLOW_DIR) / "artifacts"))
MLFLOW_EXPERIMENT = _env("FRAUD_MLFLOW_EXPERIMENT", "fraud_assets")
MODEL_NAME = _env("FRAUD_MODEL_NAME", "fraud_model")
BENTOML_HOME = _path("BENTOML_HOME", ".bentoml")
# The scoring service's prediction and feedback logs (what `bentoml serve` writes, run from
# the repo root): monitoring reads them.
SERVING_STATE = _path(contracts.SERVING_STATE_ENV, contracts.DEFAULT_SERVING_STATE)


def state_environment(root: Path) -> dict[str, str]:
    """Environment variables that put every store (Dagster instance, lake, reports, MLflow,
    BentoML, the service's logs) in one folder: a backtest, a benchmark or a test never
    touches the project's. Settings are read at import: a process started with this
    environment sees it everywhere."""
    mlflow = root / "mlflow"
    return {
        "DAGSTER_HOME": str(root / "dagster"),
        "FRAUD_DATA_ROOT": str(root / "data"),
        "FRAUD_REPORTS_ROOT": str(root / "reports"),
        "FRAUD_MLFLOW_DIR": str(mlflow),
        "MLFLOW_TRACKING_URI": f"sqlite:///{mlflow / 'mlflow.db'}",
        "FRAUD_MLFLOW_ARTIFACT_ROOT": str(mlflow / "artifacts"),
        "BENTOML_HOME": str(root / "bentoml"),
        contracts.SERVING_STATE_ENV: str(root / contracts.DEFAULT_SERVING_STATE),
    }


# Partitions: the first day the pipeline knows about.
PARTITIONS_START = _env("FRAUD_PARTITIONS_START", "2026-01-01")

# Source: "simulator" (default) or "files" (then FRAUD_SOURCE_CONFIG points at a YAML/JSON file).
SOURCE = _env("FRAUD_SOURCE", "simulator")
SOURCE_CONFIG = os.environ.get("FRAUD_SOURCE_CONFIG", "").strip() or None

# Simulator size: 1.0 is the demo (~8k transactions/day); 100 gives ~1M/day.
SIM_SEED = int(_env("FRAUD_SIM_SEED", "7"))
SIM_SIZE = float(_env("FRAUD_SIM_SIZE", "1.0"))
# "realistic" (default) or "classic" (each fraud kind has one tell-tale feature; the figures
# of earlier versions): lib/simulation.py says what differs.
SIM_DIFFICULTY = _env("FRAUD_SIM_DIFFICULTY", "realistic")
SIM_DRIFT = os.environ.get("FRAUD_SIM_DRIFT", "").strip() or None  # JSON list of scenarios

# Demo range: the last DEMO_DAYS complete days before DEMO_END (default: yesterday).
DEMO_DAYS = int(_env("FRAUD_DEMO_DAYS", "60"))


def demo_end() -> date:
    raw = os.environ.get("FRAUD_DEMO_END", "").strip()
    return date.fromisoformat(raw) if raw else date.today() - timedelta(days=1)


# Raw-data quality gate.
AMOUNT_CAP = float(_env("FRAUD_AMOUNT_CAP", "50000"))
ROW_COUNT_BAND = float(_env("FRAUD_ROW_COUNT_BAND", "0.5"))
LABEL_RATE_MIN = float(_env("FRAUD_LABEL_RATE_MIN", "0.0005"))
LABEL_RATE_MAX = float(_env("FRAUD_LABEL_RATE_MAX", "0.05"))

# Training split (days): train window, gap equal to the label delay, test window.
TRAIN_DAYS = int(_env("FRAUD_TRAIN_DAYS", "28"))
DELAY_DAYS = int(_env("FRAUD_DELAY_DAYS", "7"))
TEST_DAYS = int(_env("FRAUD_TEST_DAYS", "14"))
# Label maturity: after this many days most fraud labels of a day are known. The mature
# terminal-risk windows are shifted back by it (features v2).
LABEL_MATURITY_DAYS = int(_env("FRAUD_LABEL_MATURITY_DAYS", str(DELAY_DAYS)))

# Feature conventions (read in lib/features/definitions.py, recorded in the bundle): the
# amount below which an online purchase counts as a card-testing probe, in the data's
# currency (FRAUD_SMALL_AMOUNT, default 5), and the night hours (FRAUD_NIGHT_HOURS, "22-6").

# Training: the default number of CatBoost iterations (early stopping usually ends sooner).
TRAIN_ITERATIONS = int(_env("FRAUD_TRAIN_ITERATIONS", "600"))
# Share of genuine training rows kept (all frauds are): 1.0 keeps everything. See the
# README's training benchmark for the time it saves and the AP it costs.
TRAIN_GENUINE_SAMPLE_RATE = float(_env("FRAUD_TRAIN_GENUINE_SAMPLE_RATE", "1.0"))
# The optional Optuna search before training (trials; 0 = off, the default).
TUNING_TRIALS = int(_env("FRAUD_TUNING_TRIALS", "0"))

# Promotion gate: an AP floor, and a margin that the lower bound of the 95% card-day bootstrap
# interval of the AP gain over the champion must exceed.
PROMOTION_MIN_AP = float(_env("FRAUD_PROMOTION_MIN_AP", "0.3"))
PROMOTION_MARGIN = float(_env("FRAUD_PROMOTION_MARGIN", "0.0"))

# Automation: when the daily schedules fire (cron, UTC; each targets the previous day) and
# when live performance alone triggers retraining (AP of the champion on labelled traffic).
DAILY_PIPELINE_CRON = _env("FRAUD_DAILY_PIPELINE_CRON", "0 1 * * *")
RETRAINING_CRON = _env("FRAUD_RETRAINING_CRON", "0 3 * * *")
LIVE_AP_FLOOR = float(_env("FRAUD_LIVE_AP_FLOOR", "0.2"))
LIVE_MIN_LABELLED = int(_env("FRAUD_LIVE_MIN_LABELLED", "500"))
# The review queue's capacity: alerts per day the analysts can work. On a drifted day the
# review threshold is raised (never lowered) so that the day's traffic stays within it.
ALERT_CAPACITY_PER_DAY = float(_env("FRAUD_ALERT_CAPACITY_PER_DAY", "300"))
# Drift retraining waits for post-drift labels: this many mature post-drift days (labels at
# least FRAUD_LABEL_MATURITY_DAYS old) and this many labelled post-drift frauds.
DRIFT_RETRAIN_POST_DAYS = int(_env("FRAUD_DRIFT_RETRAIN_POST_DAYS", "6"))
DRIFT_RETRAIN_MIN_FRAUDS = int(_env("FRAUD_DRIFT_RETRAIN_MIN_FRAUDS", "30"))

# The online store the services and the terminal refresh use ("embedded" or redis://...),
# and how long a rollout waits for every running worker to switch.
ONLINE_STORE = _env(contracts.ONLINE_STORE_ENV, "embedded")
ROLLOUT_TIMEOUT_S = float(_env("FRAUD_ROLLOUT_TIMEOUT_S", "120"))

# Serving variants packaged into the Bento: the challenger joins when its share is > 0 or
# the mode is "shadow" (it scores every request, the champion answers).
CHALLENGER_SHARE = float(_env("FRAUD_CHALLENGER_SHARE", "0.0"))
TRAFFIC_MODE = _env("FRAUD_TRAFFIC_MODE", "split")

# CLI runs: processes running partitions side by side (independent partitions).
CLI_WORKERS = int(_env("FRAUD_CLI_WORKERS", "2"))
