"""Live monitoring: what the scoring service did (prediction and error logs) and how well it
did once labels arrive (pipeline label events + the service's feedback log).

Pure functions over Polars frames and numpy arrays (no Dagster): the monitoring assets in
``defs/monitoring/live.py`` are thin wrappers around them.

Logs (written by ``serving/logs.py``; a missing folder means nothing was logged):

- predictions: ``<state>/predictions/date=YYYY-MM-DD/part-<pid>.jsonl``, one row per scored
  transaction and variant. A shadow row duplicates a champion-answered transaction with the
  challenger's score (and the decision the challenger would have taken).
- errors: ``<state>/errors/date=YYYY-MM-DD/part-<pid>.jsonl``, rows
  ``{"request_time", "route", "status", "error"}`` (one per failed request).
- feedback: ``<state>/feedback/feedback.jsonl``, rows
  ``{"received_at", "transaction_id", "is_fraud", "source"}``.

A line that does not parse (a process killed mid-write leaves a truncated last line) is
skipped and reported in the returned ``problems``; reading never fails on it.

Conventions:

- The log has no request id: a request is the set of rows of one process (log file) sharing
  ``request_time`` and ``latency_ms`` (a batch logs all its rows with one stamp and one
  latency). Latency percentiles are over requests, so a 1000-row batch counts once.
- ``rows_scored`` counts answered transactions (champion + challenger rows); shadow rows are
  extra work the client never sees.
- An alert is ``decision != "approve"`` (review or decline), as the service decided it (a
  shadow row's decision is the challenger's, on its own thresholds).
- Labels: the latest label per transaction wins, over pipeline label events (``known_at``)
  and feedback (``received_at``); on equal times feedback wins.
- A/B: ``diff = champion - challenger`` (negative: the challenger is better). Split traffic
  sends different cards to each variant: the two populations are resampled independently.
  Shadow mode scores the same transactions with both: pairs are resampled together.
  Bootstraps draw multinomial row weights over rows sorted once by score, so a draw costs
  O(n) (cumulative sums), not a sort.
"""

from __future__ import annotations

import io
import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from fraud_assets.lib.metrics import average_precision, confusion_at_threshold

CHAMPION, CHALLENGER, SHADOW = "champion", "challenger", "shadow"
VARIANTS = (CHAMPION, CHALLENGER, SHADOW)
ALL = "all"  # the row of a per-variant table that covers answered traffic (no shadow rows)
APPROVE, REVIEW, DECLINE = "approve", "review", "decline"
LATENCY_QUANTILES = (0.5, 0.95, 0.99)
N_BOOT = 1000
BOOTSTRAP_SEED = 20260101
CI_LEVEL = 0.95
MIN_VALID_DRAWS = 0.5  # share of bootstrap draws that must have both classes for a CI
FEEDBACK_SOURCE = "feedback"
PIPELINE_SOURCE = "fraud_labels"

PREDICTION_SCHEMA: dict[str, pl.DataType] = {
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
}
ERROR_SCHEMA: dict[str, pl.DataType] = {
    "request_time": pl.String(),
    "route": pl.String(),
    "status": pl.Int64(),
    "error": pl.String(),
}
FEEDBACK_SCHEMA: dict[str, pl.DataType] = {
    "received_at": pl.String(),
    "transaction_id": pl.String(),
    "is_fraud": pl.Boolean(),
    "source": pl.String(),
}
LABEL_SCHEMA: dict[str, pl.DataType] = {
    "transaction_id": pl.String(),
    "is_fraud": pl.Int8(),
    "known_at": pl.Datetime("us", "UTC"),
    "label_source": pl.String(),
}
SOURCE_COLUMN = "log_file"  # added to every log row: the file (one per process) it came from


# --------------------------------------------------------------------------- reading logs


def day_folder(state_root: str | Path, log: str, day: date) -> Path:
    return Path(state_root) / log / f"date={day.isoformat()}"


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


def _day_files(state_root: str | Path, log: str, day: date) -> list[Path]:
    folder = day_folder(state_root, log, day)
    return sorted(folder.glob("*.jsonl")) if folder.is_dir() else []


def read_predictions(state_root: str | Path, day: date) -> tuple[pl.DataFrame, list[str]]:
    """The day's prediction log (all processes), and any lines skipped."""
    return read_jsonl(_day_files(state_root, "predictions", day), PREDICTION_SCHEMA)


def read_errors(state_root: str | Path, day: date) -> tuple[pl.DataFrame, list[str]]:
    """The day's error log; no folder means no errors."""
    return read_jsonl(_day_files(state_root, "errors", day), ERROR_SCHEMA)


def _utc(column: str) -> pl.Expr:
    return pl.col(column).str.to_datetime(time_zone="UTC", strict=False)


def read_feedback(state_root: str | Path) -> tuple[pl.DataFrame, list[str]]:
    """The service's feedback log as label events (LABEL_SCHEMA), and any lines skipped."""
    path = Path(state_root) / "feedback" / "feedback.jsonl"
    raw, problems = read_jsonl([path] if path.is_file() else [], FEEDBACK_SCHEMA)
    events = raw.filter(pl.col("transaction_id").is_not_null() & pl.col("is_fraud").is_not_null())
    return (
        events.select(
            "transaction_id",
            pl.col("is_fraud").cast(pl.Int8),
            _utc("received_at").alias("known_at"),
            pl.lit(FEEDBACK_SOURCE).alias("label_source"),
        ),
        problems,
    )


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
            frames.append(pl.read_parquet(f, columns=["transaction_id", "is_fraud", "known_at"]))
    if not frames:
        return pl.DataFrame(schema=LABEL_SCHEMA)
    return pl.concat(frames, how="vertical_relaxed").select(
        pl.col("transaction_id").cast(pl.String),
        pl.col("is_fraud").cast(pl.Int8),
        pl.col("known_at").cast(pl.Datetime("us", "UTC")),
        pl.lit(PIPELINE_SOURCE).alias("label_source"),
    )


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


def latest_labels(*events: pl.DataFrame) -> pl.DataFrame:
    """One label per transaction: the most recent event wins (feedback on equal times)."""
    frames = [e.select(list(LABEL_SCHEMA)).cast(LABEL_SCHEMA) for e in events if e.height]
    if not frames:
        return pl.DataFrame(schema=LABEL_SCHEMA)
    return (
        pl.concat(frames, how="vertical")
        .filter(pl.col("transaction_id").is_not_null() & pl.col("is_fraud").is_not_null())
        .with_columns(_feedback=pl.col("label_source") == FEEDBACK_SOURCE)
        .sort("known_at", "_feedback", nulls_last=False, maintain_order=True)
        .unique("transaction_id", keep="last", maintain_order=True)
        .drop("_feedback")
        .sort("transaction_id")
    )


# --------------------------------------------------------------------------- serving metrics


def _nan_to_none(value: Any) -> Any:
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def _latency_exprs() -> list[pl.Expr]:
    return [
        pl.col("latency_ms")
        .quantile(q, interpolation="linear")
        .alias(f"latency_p{round(q * 100)}_ms")
        for q in LATENCY_QUANTILES
    ]


def serving_metrics(predictions: pl.DataFrame, errors: pl.DataFrame) -> pl.DataFrame:
    """Per variant and for all answered traffic (`variant == "all"`): rows, requests, latency
    percentiles over requests, model versions seen; errors and error rate on the "all" row
    (error rate = errors / (errors + scored requests))."""
    request_key = [SOURCE_COLUMN, "request_time", "latency_ms"]
    answered = predictions.filter(pl.col("variant") != SHADOW)
    scopes = [(v, predictions.filter(pl.col("variant") == v)) for v in VARIANTS]
    rows = []
    for name, frame in [(ALL, answered), *scopes]:
        requests = frame.group_by(request_key).agg(pl.len().alias("rows"))
        latency = requests.select(_latency_exprs()).row(0, named=True)
        versions = sorted(v for v in frame["model_version"].unique().to_list() if v is not None)
        rows.append(
            {
                "variant": name,
                "rows": frame.height,
                "transactions": frame["transaction_id"].n_unique(),
                "requests": requests.height,
                **latency,
                "model_versions": ", ".join(versions),
            }
        )
    table = pl.DataFrame(
        rows,
        schema={
            "variant": pl.String,
            "rows": pl.Int64,
            "transactions": pl.Int64,
            "requests": pl.Int64,
            **{f"latency_p{round(q * 100)}_ms": pl.Float64 for q in LATENCY_QUANTILES},
            "model_versions": pl.String,
        },
    )
    n_errors = errors.height
    n_requests = int(table.filter(pl.col("variant") == ALL)["requests"][0])
    is_all = pl.col("variant") == ALL
    return table.with_columns(
        errors=pl.when(is_all).then(pl.lit(n_errors, dtype=pl.Int64)),
        error_rate=pl.when(is_all).then(pl.lit(error_rate(n_errors, n_requests), pl.Float64)),
    )


def error_rate(n_errors: int, n_requests: int) -> float:
    total = n_errors + n_requests
    return n_errors / total if total else math.nan


def errors_by_status(errors: pl.DataFrame) -> dict[str, int]:
    """Error counts by class: "4xx", "5xx", "other" (missing or odd status)."""
    status = pl.col("status")
    kind = (
        pl.when(status.is_between(400, 499))
        .then(pl.lit("4xx"))
        .when(status.is_between(500, 599))
        .then(pl.lit("5xx"))
        .otherwise(pl.lit("other"))
    )
    counts = errors.group_by(kind.alias("kind")).len()
    found = dict(zip(counts["kind"].to_list(), counts["len"].to_list(), strict=True))
    return {k: int(found.get(k, 0)) for k in ("4xx", "5xx", "other")}


# --------------------------------------------------------------------------- join


def join_labels(predictions: pl.DataFrame, labels: pl.DataFrame) -> pl.DataFrame:
    """Predictions (one row per transaction and variant: a rescored transaction keeps its
    first row) with `is_fraud` (null while unknown) and `alert` (decision != approve)."""
    first = predictions.unique(["transaction_id", "variant"], keep="first", maintain_order=True)
    return first.join(
        labels.select("transaction_id", "is_fraud"), on="transaction_id", how="left"
    ).with_columns(alert=pl.col("decision") != APPROVE)


# --------------------------------------------------------------------------- bootstrap


@dataclass(frozen=True)
class _RankedScores:
    """Rows sorted once by descending score, with the end of each run of tied scores: enough
    to compute AP under any row weights with cumulative sums (sklearn's definition)."""

    order: np.ndarray
    y: np.ndarray  # float 0/1 in score order
    ends: np.ndarray  # index of the last row of each tie group

    @classmethod
    def of(cls, y_true: np.ndarray, score: np.ndarray) -> _RankedScores:
        s = np.asarray(score, dtype=np.float64)
        order = np.argsort(-s, kind="stable")
        s_sorted = s[order]
        ends = np.append(np.flatnonzero(s_sorted[1:] != s_sorted[:-1]), s.size - 1)
        return cls(order, np.asarray(y_true, dtype=np.float64)[order], ends)

    def ap(self, weights: np.ndarray | None = None) -> float:
        """Average precision with integer row weights (a bootstrap draw); NaN if one class."""
        if self.y.size == 0:
            return math.nan
        w = np.ones_like(self.y) if weights is None else np.asarray(weights)[self.order]
        tps = np.cumsum(w * self.y)[self.ends]
        fps = np.cumsum(w * (1.0 - self.y))[self.ends]
        positives = tps[-1]
        if positives <= 0 or fps[-1] <= 0:
            return math.nan
        predicted = tps + fps
        precision = np.divide(tps, predicted, out=np.zeros_like(tps), where=predicted > 0)
        recall_step = np.diff(tps, prepend=0.0) / positives
        return float(np.sum(recall_step * precision))


def fast_average_precision(
    y_true: np.ndarray, score: np.ndarray, weights: np.ndarray | None = None
) -> float:
    """AP equal to `metrics.average_precision` (on rows repeated by `weights`), in O(n) after
    one sort; used inside bootstraps."""
    return _RankedScores.of(np.asarray(y_true), np.asarray(score)).ap(weights)


def _recall(y: np.ndarray, alert: np.ndarray, w: np.ndarray) -> float:
    positives = float(np.sum(w * y))
    return float(np.sum(w * y * alert)) / positives if positives > 0 else math.nan


@dataclass(frozen=True)
class Difference:
    """champion - challenger for one metric, with a bootstrap percentile interval."""

    value: float
    ci_low: float
    ci_high: float
    n_valid_draws: int

    @property
    def excludes_zero(self) -> bool:
        return bool(self.ci_low > 0 or self.ci_high < 0)


def _draw_weights(rng: np.random.Generator, n: int) -> np.ndarray:
    """How many times each of n rows is drawn in one bootstrap resample of size n."""
    return np.bincount(rng.integers(0, n, n), minlength=n).astype(np.float64)


def _interval(value: float, draws: np.ndarray, n_boot: int, level: float) -> Difference:
    valid = draws[np.isfinite(draws)]
    if math.isnan(value) or valid.size < MIN_VALID_DRAWS * n_boot:
        return Difference(value, math.nan, math.nan, int(valid.size))
    tail = (1.0 - level) / 2.0 * 100.0
    low, high = np.percentile(valid, [tail, 100.0 - tail])
    return Difference(value, float(low), float(high), int(valid.size))


@dataclass(frozen=True)
class Sample:
    """One variant's labelled rows: label, score, alert."""

    y: np.ndarray
    score: np.ndarray
    alert: np.ndarray

    @classmethod
    def of(cls, frame: pl.DataFrame) -> Sample:
        return cls(
            frame["is_fraud"].cast(pl.Float64).to_numpy(),
            frame["score"].cast(pl.Float64).to_numpy(),
            frame["alert"].cast(pl.Float64).to_numpy(),
        )

    def __len__(self) -> int:
        return int(self.y.size)


def bootstrap_split(
    champion: Sample,
    challenger: Sample,
    *,
    n_boot: int = N_BOOT,
    seed: int = BOOTSTRAP_SEED,
    level: float = CI_LEVEL,
) -> dict[str, Difference]:
    """Split traffic: independent populations, each resampled on its own. Returns the
    champion-minus-challenger difference in AP and in recall at the alert rule."""
    rng = np.random.default_rng(seed)
    ranked = (
        _RankedScores.of(champion.y, champion.score),
        _RankedScores.of(challenger.y, challenger.score),
    )
    samples = (champion, challenger)
    ones = [np.ones(len(s)) for s in samples]
    ap_value = ranked[0].ap() - ranked[1].ap()
    recall_value = _recall(champion.y, champion.alert, ones[0]) - _recall(
        challenger.y, challenger.alert, ones[1]
    )
    ap_draws = np.empty(n_boot)
    recall_draws = np.empty(n_boot)
    for b in range(n_boot):
        w = [_draw_weights(rng, len(s)) for s in samples]
        ap_draws[b] = ranked[0].ap(w[0]) - ranked[1].ap(w[1])
        recall_draws[b] = _recall(champion.y, champion.alert, w[0]) - _recall(
            challenger.y, challenger.alert, w[1]
        )
    return {
        "ap": _interval(ap_value, ap_draws, n_boot, level),
        "recall": _interval(recall_value, recall_draws, n_boot, level),
    }


def bootstrap_paired(
    y: np.ndarray,
    champion_score: np.ndarray,
    challenger_score: np.ndarray,
    champion_alert: np.ndarray,
    challenger_alert: np.ndarray,
    *,
    n_boot: int = N_BOOT,
    seed: int = BOOTSTRAP_SEED,
    level: float = CI_LEVEL,
) -> dict[str, Difference]:
    """Shadow mode: both variants scored the same transactions; a draw resamples
    transactions, so both metrics of a draw are computed on the same rows."""
    rng = np.random.default_rng(seed)
    y = np.asarray(y, dtype=np.float64)
    a = _RankedScores.of(y, champion_score)
    b_ = _RankedScores.of(y, challenger_score)
    ca = np.asarray(champion_alert, dtype=np.float64)
    cb = np.asarray(challenger_alert, dtype=np.float64)
    n = y.size
    ones = np.ones(n)
    ap_value = a.ap() - b_.ap()
    recall_value = _recall(y, ca, ones) - _recall(y, cb, ones)
    ap_draws = np.empty(n_boot)
    recall_draws = np.empty(n_boot)
    for i in range(n_boot):
        w = _draw_weights(rng, n)
        ap_draws[i] = a.ap(w) - b_.ap(w)
        recall_draws[i] = _recall(y, ca, w) - _recall(y, cb, w)
    return {
        "ap": _interval(ap_value, ap_draws, n_boot, level),
        "recall": _interval(recall_value, recall_draws, n_boot, level),
    }


# --------------------------------------------------------------------------- live performance

PERFORMANCE_SCHEMA: dict[str, pl.DataType] = {
    "variant": pl.String(),
    "rows": pl.Int64(),
    "n_labelled": pl.Int64(),
    "labelled_share": pl.Float64(),
    "n_fraud": pl.Int64(),
    "ap": pl.Float64(),
    "precision_at_alert": pl.Float64(),
    "recall_at_alert": pl.Float64(),
    "alert_rate": pl.Float64(),
    "model_versions": pl.String(),
    # A/B against the champion (null on the champion's row): champion - this variant.
    "comparison": pl.String(),  # "split" (independent bootstrap) or "paired" (shadow)
    "n_compared": pl.Int64(),
    "ap_diff": pl.Float64(),
    "ap_diff_ci_low": pl.Float64(),
    "ap_diff_ci_high": pl.Float64(),
    "recall_diff": pl.Float64(),
    "recall_diff_ci_low": pl.Float64(),
    "recall_diff_ci_high": pl.Float64(),
}


def _variant_row(name: str, frame: pl.DataFrame) -> dict[str, Any]:
    labelled = frame.filter(pl.col("is_fraud").is_not_null())
    y = labelled["is_fraud"].cast(pl.Int8).to_numpy()
    alert = labelled["alert"].cast(pl.Float64).to_numpy()
    confusion = confusion_at_threshold(y, alert, 0.5)  # alert (0/1) >= 0.5: the service's rule
    versions = sorted(v for v in frame["model_version"].unique().to_list() if v is not None)
    return {
        "variant": name,
        "rows": frame.height,
        "n_labelled": labelled.height,
        "labelled_share": labelled.height / frame.height if frame.height else math.nan,
        "n_fraud": int(y.sum()),
        "ap": average_precision(y, labelled["score"].to_numpy()),
        "precision_at_alert": confusion["precision"],
        "recall_at_alert": confusion["recall"],
        "alert_rate": float(frame["alert"].mean()) if frame.height else math.nan,
        "model_versions": ", ".join(versions),
    }


def _comparison_fields(kind: str, n: int, diffs: dict[str, Difference]) -> dict[str, Any]:
    ap, recall = diffs["ap"], diffs["recall"]
    return {
        "comparison": kind,
        "n_compared": n,
        "ap_diff": ap.value,
        "ap_diff_ci_low": ap.ci_low,
        "ap_diff_ci_high": ap.ci_high,
        "recall_diff": recall.value,
        "recall_diff_ci_low": recall.ci_low,
        "recall_diff_ci_high": recall.ci_high,
    }


def live_performance(
    joined: pl.DataFrame, *, n_boot: int = N_BOOT, seed: int = BOOTSTRAP_SEED
) -> pl.DataFrame:
    """One row per variant present (champion first): labelled share, AP, precision and recall
    at the alert rule, and on challenger / shadow rows the A/B difference against the
    champion with its bootstrap interval. Undefined values (no labels, one class) are NaN."""
    labelled = joined.filter(pl.col("is_fraud").is_not_null())
    champ = labelled.filter(pl.col("variant") == CHAMPION)
    rows = []
    for name in VARIANTS:
        frame = joined.filter(pl.col("variant") == name)
        if not frame.height:
            continue
        row = _variant_row(name, frame)
        mine = labelled.filter(pl.col("variant") == name)
        if name == CHALLENGER and champ.height and mine.height:
            diffs = bootstrap_split(Sample.of(champ), Sample.of(mine), n_boot=n_boot, seed=seed)
            row |= _comparison_fields("split", champ.height + mine.height, diffs)
        elif name == SHADOW and mine.height:
            pairs = champ.select("transaction_id", "is_fraud", "score", "alert").join(
                mine.select("transaction_id", "score", "alert"),
                on="transaction_id",
                suffix="_challenger",
            )
            if pairs.height:
                diffs = bootstrap_paired(
                    pairs["is_fraud"].cast(pl.Float64).to_numpy(),
                    pairs["score"].to_numpy(),
                    pairs["score_challenger"].to_numpy(),
                    pairs["alert"].cast(pl.Float64).to_numpy(),
                    pairs["alert_challenger"].cast(pl.Float64).to_numpy(),
                    n_boot=n_boot,
                    seed=seed,
                )
                row |= _comparison_fields("paired", pairs.height, diffs)
        rows.append(row)
    table = (
        pl.DataFrame(rows, schema=PERFORMANCE_SCHEMA)
        if rows
        else pl.DataFrame(schema=PERFORMANCE_SCHEMA)
    )
    return table.with_columns(pl.col(pl.Float64).fill_nan(None))


def headline(performance: pl.DataFrame) -> dict[str, Any]:
    """The numbers the UI plots and the drift sensor reads (None where undefined).

    `live_ap_champion` / `n_labelled`: the champion's AP and the labelled rows it is computed
    on. The A/B keys come from the challenger row with the most compared rows (split traffic
    or shadow); `ab_mode` says which ("none" without a challenger)."""

    def value(variant: str, column: str) -> Any:
        hit = performance.filter(pl.col("variant") == variant)
        return _nan_to_none(hit[column][0]) if hit.height else None

    out: dict[str, Any] = {
        "live_ap_champion": value(CHAMPION, "ap"),
        "n_labelled": int(value(CHAMPION, "n_labelled") or 0),
        "n_labelled_total": int(
            performance.filter(pl.col("variant") != SHADOW)["n_labelled"].sum() or 0
        ),
        "labelled_share_champion": value(CHAMPION, "labelled_share"),
        "precision_at_alert_champion": value(CHAMPION, "precision_at_alert"),
        "recall_at_alert_champion": value(CHAMPION, "recall_at_alert"),
    }
    compared = performance.filter(pl.col("comparison").is_not_null()).sort(
        "n_compared", descending=True, maintain_order=True
    )
    if not compared.height:
        return out | {"ab_mode": "none"}
    best = compared.row(0, named=True)
    name = best["variant"]
    out |= {
        "ab_mode": best["comparison"],
        "live_ap_challenger": _nan_to_none(best["ap"]),
        "n_labelled_challenger": int(best["n_labelled"]),
        "precision_at_alert_challenger": _nan_to_none(best["precision_at_alert"]),
        "recall_at_alert_challenger": _nan_to_none(best["recall_at_alert"]),
        "ab_n_compared": int(best["n_compared"]),
        "challenger_row": name,
    }
    for key in (
        "ap_diff",
        "ap_diff_ci_low",
        "ap_diff_ci_high",
        "recall_diff",
        "recall_diff_ci_low",
        "recall_diff_ci_high",
    ):
        out[key] = _nan_to_none(best[key])
    return out


# --------------------------------------------------------------------------- business metrics

BUSINESS_SCHEMA: dict[str, pl.DataType] = {
    "variant": pl.String(),
    "rows": pl.Int64(),
    "n_labelled": pl.Int64(),
    "n_fraud": pl.Int64(),
    "alerts": pl.Int64(),
    "alert_rate": pl.Float64(),
    "declines": pl.Int64(),
    "fraud_caught": pl.Int64(),
    "fraud_amount_caught": pl.Float64(),
    "fraud_missed": pl.Int64(),
    "fraud_amount_missed": pl.Float64(),
    "false_declines": pl.Int64(),
    "false_decline_amount": pl.Float64(),
}


def business_metrics(joined: pl.DataFrame) -> pl.DataFrame:
    """Money and customers, per variant and for all answered traffic (`variant == "all"`,
    champion + challenger; shadow rows are what the challenger *would* have done, never part
    of the total). Fraud caught: alerted (review or decline) and fraud; missed: approved and
    fraud; false declines: declined and genuine (count and amount). Unlabelled rows count in
    alerts and the alert rate only."""
    fraud = pl.col("is_fraud") == 1
    genuine = pl.col("is_fraud") == 0
    alert = pl.col("alert")
    decline = pl.col("decision") == DECLINE
    amount = pl.col("amount").fill_null(0.0)

    def figures() -> list[pl.Expr]:
        return [
            pl.len().cast(pl.Int64).alias("rows"),
            pl.col("is_fraud").is_not_null().sum().cast(pl.Int64).alias("n_labelled"),
            fraud.sum().cast(pl.Int64).alias("n_fraud"),
            alert.sum().cast(pl.Int64).alias("alerts"),
            alert.cast(pl.Float64).mean().alias("alert_rate"),
            decline.sum().cast(pl.Int64).alias("declines"),
            (alert & fraud).sum().cast(pl.Int64).alias("fraud_caught"),
            amount.filter(alert & fraud).sum().cast(pl.Float64).alias("fraud_amount_caught"),
            (~alert & fraud).sum().cast(pl.Int64).alias("fraud_missed"),
            amount.filter(~alert & fraud).sum().cast(pl.Float64).alias("fraud_amount_missed"),
            (decline & genuine).sum().cast(pl.Int64).alias("false_declines"),
            amount.filter(decline & genuine).sum().cast(pl.Float64).alias("false_decline_amount"),
        ]

    per_variant = (
        joined.group_by("variant")
        .agg(figures())
        .with_columns(_order=pl.col("variant").replace_strict(list(VARIANTS), [0, 1, 2], default=3))
        .sort("_order", "variant")
        .drop("_order")
    )
    total = (
        joined.filter(pl.col("variant") != SHADOW)
        .select(figures())
        .with_columns(pl.lit(ALL).alias("variant"))
    )
    return (
        pl.concat([total.select(list(BUSINESS_SCHEMA)), per_variant.select(list(BUSINESS_SCHEMA))])
        .cast(BUSINESS_SCHEMA)
        .with_columns(pl.col(pl.Float64).fill_nan(None))
    )


# --------------------------------------------------------------------------- trend plot


def ap_trend_png(
    history: pl.DataFrame, path: str | Path, *, start: date, end: date, floor: float | None
) -> Path:
    """PNG of AP per variant over [start, end] (`history`: day, variant, ap; missing days
    are gaps), with the retraining floor as a dashed line. The axis always spans the window,
    so a single day of data still reads as "one day of a month"."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.dates import AutoDateLocator, ConciseDateFormatter
    from matplotlib.figure import Figure

    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig = Figure(figsize=(9.0, 4.0), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    data = history.filter(pl.col("day").is_between(start, end) & pl.col("ap").is_not_null())
    for variant in VARIANTS:
        points = data.filter(pl.col("variant") == variant).sort("day")
        if points.height:
            ax.plot(
                points["day"].to_list(), points["ap"].to_list(), marker="o", ms=4, label=variant
            )
    if floor is not None:
        ax.axhline(floor, color="red", ls="--", lw=1.2, label=f"retraining floor {floor:g}")
    ax.set_xlim(start - timedelta(days=0.5), end + timedelta(days=0.5))
    ax.set_ylim(0.0, 1.02)
    locator = AutoDateLocator()
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(ConciseDateFormatter(locator))
    ax.set_ylabel("average precision (labelled traffic)")
    ax.set_title(f"Live AP per variant, {start} to {end}")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=9, loc="best")
    fig.savefig(out, dpi=110, format="png")
    return out
