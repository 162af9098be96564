"""Reading what the service logged (predictions, errors, feedback) and the labels it earned.

Logs (written by ``serving/logs.py`` in the layout of ``contracts``; a missing folder means
nothing was logged):

- predictions: ``<state>/predictions/date=YYYY-MM-DD/part-<pid>.jsonl``, one row per scored
  transaction and variant. A shadow row duplicates a champion-answered transaction with the
  challenger's score (and the decision the challenger would have taken).
- errors: ``<state>/errors/date=YYYY-MM-DD/part-<pid>.jsonl``, rows
  ``{"request_time", "route", "status", "error"}`` (one per failed request).
- feedback: ``<state>/feedback/feedback.jsonl``, rows
  ``{"received_at", "transaction_id", "is_fraud", "source"}``.

A line that does not parse (a process killed mid-write leaves a truncated last line) is
skipped and reported in the returned ``problems``; reading never fails on it.

Labels: the label in force wins (``lib/labels``: the latest event, a human's on equal
times), over the stored label events and the feedback log. An alert is
``decision != "approve"`` (review or decline), as the service decided it (a shadow row's
decision is the challenger's, on its own thresholds).
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterable, Mapping, Sequence
from datetime import date
from pathlib import Path
from typing import Any

import polars as pl

from fraud_assets.lib.contracts import (
    APPROVE,
    ERROR_FIELDS,
    ERRORS_LOG,
    FEEDBACK_FIELDS,
    PIPELINE_LABELS,
    PREDICTION_FIELDS,
    PREDICTIONS_LOG,
    day_log_files,
    feedback_file,
)
from fraud_assets.lib.labels import LABEL_SCHEMA, feedback_events


def _log_schema(fields: Sequence[str], dtypes: Mapping[str, pl.DataType]) -> dict[str, pl.DataType]:
    """The columns read from a log, in the order the service writes its fields; every column
    must be one of the log's fields (`contracts`), so a renamed field fails at import."""
    unknown = sorted(set(dtypes) - set(fields))
    if unknown:
        raise ValueError(f"not fields of the log: {unknown}")
    return {name: dtypes[name] for name in fields if name in dtypes}


# The fields read (the feature vector and context fields of a prediction row are not).
PREDICTION_SCHEMA = _log_schema(
    PREDICTION_FIELDS,
    {
        "request_time": pl.String(),
        "transaction_id": pl.String(),
        "customer_id": pl.String(),
        "amount": pl.Float64(),
        "score": pl.Float64(),
        "decision": pl.String(),
        "model_name": pl.String(),
        "model_version": pl.String(),
        "variant": pl.String(),
        "latency_ms": pl.Float64(),
        "bundle_id": pl.String(),
    },
)
ERROR_SCHEMA = _log_schema(
    ERROR_FIELDS,
    {
        "request_time": pl.String(),
        "route": pl.String(),
        "status": pl.Int64(),
        "error": pl.String(),
    },
)
FEEDBACK_SCHEMA = _log_schema(
    FEEDBACK_FIELDS,
    {
        "received_at": pl.String(),
        "transaction_id": pl.String(),
        "is_fraud": pl.Boolean(),
        "source": pl.String(),
    },
)
SOURCE_COLUMN = "log_file"  # added to every log row: the file (one per process) it came from


# --------------------------------------------------------------------------- reading logs


def _coerce(value: Any, dtype: pl.DataType) -> Any:
    """One JSON value as the column's Python type, or None when it cannot be one (a writer
    that logs `"status": "500"` or `"is_fraud": 1` still counts; a nested object does not)."""
    if value is None or isinstance(value, (dict, list)):
        return None
    try:
        if dtype == pl.String:
            return value if isinstance(value, str) else json.dumps(value)
        if dtype == pl.Boolean:
            if isinstance(value, bool):
                return value
            if isinstance(value, (int, float)) and value in (0, 1):
                return bool(value)
            return {"true": True, "false": False}.get(str(value).strip().lower())
        if dtype == pl.Float64:
            number = float(value)
            return number if not isinstance(value, bool) else None
        if dtype.is_integer():
            number = float(value)
            return int(number) if number.is_integer() and not isinstance(value, bool) else None
    except (TypeError, ValueError, OverflowError):
        return None
    return value


def _parse_lines(
    data: bytes, schema: dict[str, pl.DataType], name: str, problems: list[str]
) -> pl.DataFrame:
    """Complete JSON lines of one file as a frame with `schema` (extra fields dropped).

    Fast path: Polars' reader. If any line is malformed or mistyped (Polars raises, or its
    reader panics, which is a BaseException), parse line by line in Python: unparsable lines
    are skipped and reported, values of the wrong type become null."""
    if not data.strip():
        return pl.DataFrame(schema=schema)
    try:
        return pl.read_ndjson(io.BytesIO(data), schema=schema)
    except (pl.exceptions.PolarsError, pl.exceptions.PanicException, ValueError):
        pass
    rows = []
    for number, line in enumerate(data.split(b"\n"), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except (json.JSONDecodeError, UnicodeDecodeError):
            problems.append(f"{name}: skipped unparsable line {number} ({len(line)} bytes)")
            continue
        if not isinstance(row, dict):
            problems.append(f"{name}: skipped line {number}: not a JSON object")
            continue
        rows.append({k: _coerce(row.get(k), dtype) for k, dtype in schema.items()})
    return pl.from_dicts(rows, schema=schema) if rows else pl.DataFrame(schema=schema)


def read_jsonl(
    paths: Iterable[str | Path], schema: dict[str, pl.DataType]
) -> tuple[pl.DataFrame, list[str]]:
    """JSON-lines files as one frame (`schema` columns + `log_file`), and the problems met.

    A last line without its newline is a write cut short (the writer ends every row with a
    newline): it is dropped with a problem noted. Malformed lines elsewhere are skipped too.
    """
    out_schema = {**schema, SOURCE_COLUMN: pl.String()}
    frames: list[pl.DataFrame] = []
    problems: list[str] = []
    for raw_path in sorted(Path(p) for p in paths):
        data = raw_path.read_bytes()
        name = f"{raw_path.parent.name}/{raw_path.name}"
        cut = data.rfind(b"\n") + 1  # 0 when there is no newline at all
        if data[cut:].strip():
            problems.append(f"{name}: skipped a truncated last line ({len(data) - cut} bytes)")
        complete = data if cut == len(data) else data[:cut]  # no copy in the usual case
        frame = _parse_lines(complete, schema, name, problems)
        frames.append(frame.with_columns(pl.lit(raw_path.name).alias(SOURCE_COLUMN)))
    if not frames:
        return pl.DataFrame(schema=out_schema), problems
    return pl.concat(frames, how="vertical").select(list(out_schema)), problems


def read_predictions(state_root: str | Path, day: date) -> tuple[pl.DataFrame, list[str]]:
    """The day's prediction log (all processes), and any lines skipped."""
    return read_jsonl(day_log_files(state_root, PREDICTIONS_LOG, day), PREDICTION_SCHEMA)


def read_errors(state_root: str | Path, day: date) -> tuple[pl.DataFrame, list[str]]:
    """The day's error log; no folder means no errors."""
    return read_jsonl(day_log_files(state_root, ERRORS_LOG, day), ERROR_SCHEMA)


def _utc(column: str) -> pl.Expr:
    return pl.col(column).str.to_datetime(time_zone="UTC", strict=False)


def read_feedback(state_root: str | Path) -> tuple[pl.DataFrame, list[str]]:
    """The service's feedback log (``/feedback`` and imported label files) as label events
    (LABEL_SCHEMA), and any lines skipped."""
    path = feedback_file(state_root)
    raw, problems = read_jsonl([path] if path.is_file() else [], FEEDBACK_SCHEMA)
    return feedback_events(raw), problems


def read_label_partitions(data_root: str, asset: str, since: date) -> pl.DataFrame:
    """Every stored daily partition of a label asset (`<root>/<asset>/<YYYY-MM-DD>.parquet`,
    the lake IO manager's layout) from `since` onwards, as label events (LABEL_SCHEMA).
    Any UPath URL (local folder, s3://...)."""
    from upath import UPath

    folder = UPath(data_root) / asset
    if not folder.exists():
        return pl.DataFrame(schema=LABEL_SCHEMA)
    frames = []
    for path in sorted(folder.glob("*.parquet"), key=lambda p: p.name):
        try:
            day = date.fromisoformat(path.name.removesuffix(".parquet"))
        except ValueError:
            continue
        if day < since:
            continue
        with path.open("rb") as f:
            frame = pl.read_parquet(f)
        if "label_source" not in frame.columns:  # partitions written before label sources
            frame = frame.with_columns(label_source=pl.lit(PIPELINE_LABELS))
        frames.append(frame.select(list(LABEL_SCHEMA)).cast(LABEL_SCHEMA))
    if not frames:
        return pl.DataFrame(schema=LABEL_SCHEMA)
    return pl.concat(frames, how="vertical")


def read_history(data_root: str, asset: str, days: Sequence[date]) -> pl.DataFrame:
    """Earlier partitions of an asset (for trend plots); absent days are skipped."""
    from upath import UPath

    frames = []
    for day in days:
        path = UPath(data_root) / asset / f"{day.isoformat()}.parquet"
        if path.exists():
            with path.open("rb") as f:
                frames.append(pl.read_parquet(f))
    return pl.concat(frames, how="diagonal_relaxed") if frames else pl.DataFrame()


# --------------------------------------------------------------------------- join


def join_labels(predictions: pl.DataFrame, labels: pl.DataFrame) -> pl.DataFrame:
    """Predictions (one row per transaction and variant: a rescored transaction keeps its
    first row) with `is_fraud` (null while unknown) and `alert` (decision != approve)."""
    first = predictions.unique(["transaction_id", "variant"], keep="first", maintain_order=True)
    return first.join(
        labels.select("transaction_id", "is_fraud"), on="transaction_id", how="left"
    ).with_columns(alert=pl.col("decision") != APPROVE)
