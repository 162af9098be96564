"""Label events: what is known about a transaction's fraud status, and since when.

A label event is ``(transaction_id, is_fraud, known_at, label_source)``. A transaction can
collect several: the source's chargeback, an analyst's confirmation through ``/feedback``, a
chargeback file imported later, a correction that withdraws a fraud label (``is_fraud`` 0
after a 1). One rule everywhere (training labels, terminal risk, live monitoring): the label
in force at time t is the latest event known before t; on equal times a human's label
(feedback or an import) wins over the source's.

Where events come from: the source (the ``fraud_labels`` asset), the service's feedback log
(``/feedback``), and files imported with ``python -m fraud_assets.cli import-labels``, which
appends them to that same log (validated whole first: a bad file appends nothing).
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import polars as pl

from fraud_assets.lib.contracts import FEEDBACK_LABELS, PIPELINE_LABELS

LABEL_SCHEMA: dict[str, pl.DataType] = {
    "transaction_id": pl.String(),
    "is_fraud": pl.Int8(),
    "known_at": pl.Datetime("us", "UTC"),
    "label_source": pl.String(),
}
# Columns of an imported label file: the first two are required.
IMPORT_COLUMNS = ("transaction_id", "is_fraud", "known_at", "source")
MAX_IMPORT_ERRORS = 5  # problems listed in an import's error message


def label_events(*frames: pl.DataFrame) -> pl.DataFrame:
    """Every event of ``frames`` in LABEL_SCHEMA (a frame without ``label_source`` is the
    source's), nulls dropped, ordered so that the last of a transaction is the one in force:
    by known_at, human labels after the source's on equal times."""
    parts = []
    for frame in frames:
        if not frame.height:
            continue
        if "label_source" not in frame.columns:
            frame = frame.with_columns(label_source=pl.lit(PIPELINE_LABELS))
        parts.append(frame.select(list(LABEL_SCHEMA)).cast(LABEL_SCHEMA))
    if not parts:
        return pl.DataFrame(schema=LABEL_SCHEMA)
    return (
        pl.concat(parts, how="vertical")
        .filter(pl.col("transaction_id").is_not_null() & pl.col("is_fraud").is_not_null())
        .with_columns(_human=pl.col("label_source") != PIPELINE_LABELS)
        .sort("known_at", "_human", nulls_last=False, maintain_order=True)
        .drop("_human")
    )


def latest_labels(*events: pl.DataFrame) -> pl.DataFrame:
    """One label per transaction: the one in force now (LABEL_SCHEMA)."""
    return (
        label_events(*events)
        .unique("transaction_id", keep="last", maintain_order=True)
        .sort("transaction_id")
    )


def labels_as_of(events: pl.DataFrame, cutoff: datetime) -> pl.DataFrame:
    """(transaction_id, is_fraud): the label in force just before ``cutoff``."""
    known = label_events(events).filter(pl.col("known_at") < cutoff)
    return known.unique("transaction_id", keep="last", maintain_order=True).select(
        "transaction_id", "is_fraud"
    )


def fraud_spans(events: pl.DataFrame) -> pl.DataFrame:
    """(transaction_id, known_at, until): the periods during which a transaction's label in
    force is fraud, from the event that made it fraud to the one that withdrew it (``until``
    null while it stands). Repeated fraud events extend one span."""
    ordered = label_events(events).with_columns(
        nxt=pl.col("is_fraud").shift(-1).over("transaction_id"),
        nxt_at=pl.col("known_at").shift(-1).over("transaction_id"),
        prev=pl.col("is_fraud").shift(1).over("transaction_id"),
    )
    starts = ordered.filter((pl.col("is_fraud") == 1) & (pl.col("prev").fill_null(0) == 0))
    ends = ordered.filter((pl.col("is_fraud") == 1) & (pl.col("nxt") == 0))
    # The n-th start of a transaction pairs with its n-th end (spans do not overlap).
    rank = pl.int_range(pl.len()).over("transaction_id").alias("_n")
    return (
        starts.select("transaction_id", "known_at", rank)
        .join(
            ends.select("transaction_id", pl.col("nxt_at").alias("until"), rank),
            on=["transaction_id", "_n"],
            how="left",
        )
        .drop("_n")
        .sort("transaction_id", "known_at")
    )


def feedback_events(rows: pl.DataFrame) -> pl.DataFrame:
    """Feedback log rows (received_at as an RFC 3339 string, is_fraud as a bool) as label
    events; rows without a transaction or a label are left out."""
    return rows.filter(
        pl.col("transaction_id").is_not_null() & pl.col("is_fraud").is_not_null()
    ).select(
        "transaction_id",
        pl.col("is_fraud").cast(pl.Int8),
        pl.col("received_at").str.to_datetime(time_zone="UTC", strict=False).alias("known_at"),
        pl.lit(FEEDBACK_LABELS).alias("label_source"),
    )


class LabelFileError(ValueError):
    """An import file that cannot be taken whole (the message names every problem found)."""


_TRUE = {"1", "true", "yes", "fraud"}
_FALSE = {"0", "false", "no", "genuine"}


def read_label_file(path: Path, now: datetime | None = None) -> list[dict[str, Any]]:
    """An analyst or chargeback file (CSV or Parquet; columns IMPORT_COLUMNS, the last two
    optional) as feedback log rows, checked whole: LabelFileError names what is wrong.

    ``known_at`` (RFC 3339) is when the label became known (a chargeback's date); it
    defaults to ``now``, and may not be later than it. ``source`` defaults to the file name.
    """
    now = now or datetime.now(UTC)
    try:
        if path.suffix.lower() == ".parquet":
            frame = pl.read_parquet(path)
        else:
            frame = pl.read_csv(path, infer_schema=False)
    except (OSError, pl.exceptions.PolarsError) as exc:
        raise LabelFileError(f"{path}: cannot read it as CSV or Parquet: {exc}") from exc
    missing = [c for c in IMPORT_COLUMNS[:2] if c not in frame.columns]
    unknown = [c for c in frame.columns if c not in IMPORT_COLUMNS]
    if missing or unknown:
        raise LabelFileError(
            f"{path}: columns must be {list(IMPORT_COLUMNS)} (the last two optional); "
            f"missing {missing}, unknown {unknown}"
        )
    problems, rows = [], []
    for line, row in enumerate(frame.cast(pl.String).iter_rows(named=True), start=2):
        where = f"row {line}"  # a CSV's line number (its header is line 1)
        tx = (row["transaction_id"] or "").strip()
        label = (row["is_fraud"] or "").strip().lower()
        if not tx:
            problems.append(f"{where}: transaction_id is empty")
        if label not in _TRUE | _FALSE:
            problems.append(f"{where}: is_fraud {row['is_fraud']!r} is not one of 1/0/true/false")
        known = now
        if row.get("known_at"):
            try:
                known = datetime.fromisoformat(row["known_at"].strip().replace("Z", "+00:00"))
            except ValueError:
                problems.append(f"{where}: known_at {row['known_at']!r} is not RFC 3339")
            else:
                if known.tzinfo is None:
                    problems.append(f"{where}: known_at {row['known_at']!r} has no UTC offset")
                elif known > now:
                    problems.append(f"{where}: known_at {row['known_at']!r} is in the future")
        rows.append(
            {
                "received_at": known.astimezone(UTC).isoformat() if known.tzinfo else None,
                "transaction_id": tx,
                "is_fraud": label in _TRUE,
                "source": (row.get("source") or "").strip() or f"import:{path.name}",
            }
        )
    if problems:
        shown = "; ".join(problems[:MAX_IMPORT_ERRORS])
        more = f" (and {len(problems) - MAX_IMPORT_ERRORS} more)" if len(problems) > 5 else ""
        raise LabelFileError(f"{path}: nothing imported: {shown}{more}")
    if not rows:
        raise LabelFileError(f"{path}: no rows")
    return rows
