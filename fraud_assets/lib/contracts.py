"""Facts shared by writers and readers: one place each, so the two sides cannot drift apart.

Polars-free and Dagster-free: the scoring service (the writer of the logs and the reader of
the bundle) imports it as well as the pipeline (the bundle's writer, the logs' reader).
"""

from __future__ import annotations

import os
from datetime import date
from pathlib import Path

# ------------------------------------------------------------------- variants and aliases
# A variant is a model slot of the service; the registry aliases carry the same names.
CHAMPION, CHALLENGER, SHADOW = "champion", "challenger", "shadow"
ANSWERING_VARIANTS = (CHAMPION, CHALLENGER)  # the slots a bundle can fill; they answer clients
LOGGED_VARIANTS = (CHAMPION, CHALLENGER, SHADOW)  # the `variant` values of prediction rows
PREVIOUS_CHAMPION = "previous_champion"  # registry alias kept for rollback
SPLIT = "split"  # traffic modes: a sticky share of cards to the challenger, or shadow scoring
TRAFFIC_MODES = (SPLIT, SHADOW)

# Registry version tags. `role`: the evaluated model (scored on the test window) or the refit
# that is deployed (fitted on newer data, never scored on that window, tagged with its
# evaluated sibling). Evaluation writes the threshold tags; promotion copies them to the refit.
ROLE_TAG, EVALUATED_ROLE, REFIT_ROLE = "role", "evaluated", "refit"
EVALUATED_VERSION_TAG = "evaluated_version"
TRAIN_WINDOW_TAG = "train_window"  # YYYY-MM-DD..YYYY-MM-DD, the data a version was fitted on
THRESHOLD_TAGS = ("threshold", "decline_threshold", "average_precision", "card_precision_at_100")

# The model evaluated beside the challenger and the champion (a key of the evaluation's
# results and metadata, which the CLI prints).
BASELINE = "logistic_baseline"

# ---------------------------------------------------------------------------- decisions
APPROVE, REVIEW, DECLINE = "approve", "review", "decline"

# ------------------------------------------------------------------------------ drift
PSI_ALERT = 0.25  # the usual "significant shift" level: above it, drift alerts and retrains

# ------------------------------------------------------------------- label event sources
PIPELINE_LABELS = "fraud_labels"  # the source's label events (the `fraud_labels` asset)
FEEDBACK_LABELS = "feedback"  # the service's /feedback log

# ------------------------------------------------------------ how the service is started
# Environment variables the scoring service reads (its launcher, the smoke check, the tests
# and the settings of the pipeline that reads its logs all use these names).
# Feature conventions (lib/features/definitions.py reads them; the bundle records them).
SMALL_AMOUNT_ENV = "FRAUD_SMALL_AMOUNT"  # card-testing probes are below it (data's currency)
NIGHT_HOURS_ENV = "FRAUD_NIGHT_HOURS"  # "22-6": night from 22:00 to 06:00 (UTC)
MAX_CLOCK_AHEAD_ENV = "FRAUD_MAX_CLOCK_AHEAD_S"  # seconds a transaction may be ahead of the clock
BUNDLE_ENV = "FRAUD_BUNDLE"  # the bundle folder (default: the one inside the Bento)
SERVING_STATE_ENV = "FRAUD_SERVING_STATE"  # where its logs go
ADMIN_KEY_ENV = "FRAUD_ADMIN_KEY"  # enables /admin/reload and /admin/rollback
DEFAULT_SERVING_STATE = "serving_state"  # relative to the repo (settings makes it absolute)
ONLINE_STORE_ENV = "FRAUD_ONLINE_STORE"  # "embedded" (default) or a redis:// URL
WORKERS_ENV = "FRAUD_SERVING_WORKERS"  # worker processes per server (>1 needs Redis)
STORE_MAX_LAG_ENV = "FRAUD_STORE_MAX_LAG_S"  # traffic this far past the store's day: degraded

# ------------------------------------------------------------------ the service's logs
# Under the serving-state root: predictions and errors in day folders, one file per process
# (workers never interleave); feedback in one shared, fsynced file.
PREDICTIONS_LOG = "predictions"
ERRORS_LOG = "errors"
FEEDBACK_LOG = "feedback"
FEEDBACK_FILE = "feedback.jsonl"

# Fields of each log line, in the order written. A prediction row carries the transaction as
# received (its canonical fields), then what the service made of it.
LOGGED_TRANSACTION_FIELDS = (
    "transaction_id",
    "ts",
    "customer_id",
    "terminal_id",
    "amount",
    "merchant_category",
    "channel",
)
PREDICTION_FIELDS = (
    "request_time",
    *LOGGED_TRANSACTION_FIELDS,
    "features",
    "score",
    "decision",
    "model_name",
    "model_version",
    "variant",
    "latency_ms",
    "bundle_id",
)
ERROR_FIELDS = ("request_time", "route", "status", "error")
FEEDBACK_FIELDS = ("received_at", "transaction_id", "is_fraud", "source")


def day_folder(state_root: str | os.PathLike[str], log: str, day: date) -> Path:
    """The folder of one day of a day-partitioned log (predictions or errors)."""
    return Path(state_root) / log / f"date={day.isoformat()}"


def process_log_file(state_root: str | os.PathLike[str], log: str, day: date, pid: int) -> Path:
    """The file one process appends a day's lines to."""
    return day_folder(state_root, log, day) / f"part-{pid}.jsonl"


def day_log_files(state_root: str | os.PathLike[str], log: str, day: date) -> list[Path]:
    """Every process's file of one day, in name order (empty when nothing was logged)."""
    return sorted(day_folder(state_root, log, day).glob("*.jsonl"))


def feedback_file(state_root: str | os.PathLike[str]) -> Path:
    return Path(state_root) / FEEDBACK_LOG / FEEDBACK_FILE


# ------------------------------------------------------------------ the control plane
# Under the serving-state root: what the pipeline tells running services, and what they
# answer. Pointers are JSON files replaced atomically (``lib/control.py``).
CONTROL_DIR = "control"
DEPLOYMENT_POINTER = "deployment.json"  # the bundle every worker should serve
TERMINALS_POINTER = "terminals.json"  # the freshest terminal snapshots (daily refresh)
TERMINALS_DIR = "terminals"  # the snapshot files the pointer names
WORKERS_DIR = "workers"  # one heartbeat file per serving worker: what it has loaded


# --------------------------------------------------------------------- bundle layout
# A bundle is the folder packed into the Bento: manifest, model files, online-store seed.
BUNDLE_MANIFEST = "manifest.json"
BUNDLE_MODELS_DIR = "models"
BUNDLE_STORE_DIR = "store"
BUNDLE_CUSTOMERS_FILE = "customers.npz"
BUNDLE_TERMINALS_FILE = "terminals.npz"
# Where the bundle sits inside a Bento (and a build folder): the service loads it from there
# unless FRAUD_BUNDLE says otherwise.
SERVICE_BUNDLE_DIR = "fraud_assets/serving/bundle"
