"""Append-only JSON-lines logs under the serving-state root (layout and fields:
``lib/contracts.py``, which the monitoring readers import too).

Predictions and errors: ``<log>/date=YYYY-MM-DD/part-<pid>.jsonl``, one line per scored
transaction (and shadow score) or failed request, flushed after every write (a crash of the
process loses nothing it already answered; an OS crash may lose the page cache, which is fine
for monitoring data). One file per process so workers never interleave; the handle stays open
and rotates when the UTC day changes.

Rows are ``PredictionRow`` structs (dicts work too) encoded by msgspec in C: with
``json.dumps`` and one dict per row, logging was ~1/4 of a batch's CPU. Encoding is plain JSON
(floats in shortest round-trip form); a datetime ``ts`` is written RFC 3339 with ``Z``.

Feedback: ``feedback/feedback.jsonl``, each line written with one ``write`` on an O_APPEND
descriptor and ``fsync``-ed before the client hears "stored": labels are rare and precious.
"""

from __future__ import annotations

import json
import os
import threading
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import IO, Any

import msgspec

from fraud_assets.lib import contracts

_ENCODER = msgspec.json.Encoder()


class PredictionRow(msgspec.Struct, gc=False):
    """One prediction-log line (field order = key order). ``features``: a struct or dict of
    every online feature by name (``deployment.Deployment.feature_row``). Not tracked by the
    collector (``gc=False``): rows are made by the thousand and reference no container that
    could lead back to them."""

    request_time: str
    transaction_id: str
    ts: datetime
    customer_id: str
    terminal_id: str
    amount: float
    merchant_category: str | None
    channel: str | None
    features: Any
    score: float
    decision: str
    model_name: str
    model_version: str
    variant: str
    latency_ms: float
    bundle_id: str | None


def encode_json(value: Any) -> bytes:
    """Compact JSON of dicts, lists, structs, floats, strings (the answers use it too)."""
    return _ENCODER.encode(value)


def _dumps(row: dict[str, Any]) -> str:
    return json.dumps(row, separators=(",", ":"), ensure_ascii=False)


if PredictionRow.__struct_fields__ != contracts.PREDICTION_FIELDS:  # the readers rely on them
    raise RuntimeError("PredictionRow's fields differ from contracts.PREDICTION_FIELDS")


class DayLog:
    """One process's day-partitioned JSON-lines log (``contracts.PREDICTIONS_LOG`` or
    ``contracts.ERRORS_LOG`` under the serving-state root)."""

    def __init__(self, state_root: str | os.PathLike[str], log: str) -> None:
        self.state_root, self.log = Path(state_root), log
        self._lock = threading.Lock()
        self._day: date | None = None
        self._file: IO[bytes] | None = None
        self.rows = 0

    def path_for(self, day: date) -> Path:
        return contracts.process_log_file(self.state_root, self.log, day, os.getpid())

    def _open(self, day: date) -> IO[bytes]:
        if self._file is not None:
            self._file.close()
        path = self.path_for(day)
        path.parent.mkdir(parents=True, exist_ok=True)
        self._file = path.open("ab")
        self._day = day
        return self._file

    def write(self, rows: list[PredictionRow] | list[dict[str, Any]], day: date) -> None:
        """Append rows (one request's worth) and flush them to the OS."""
        data = _ENCODER.encode_lines(rows)
        with self._lock:
            handle = self._file if day == self._day and self._file else self._open(day)
            handle.write(data)
            handle.flush()
            self.rows += len(rows)

    def close(self) -> None:
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None
                self._day = None


class FeedbackLog:
    """Durable feedback log shared by all workers (O_APPEND + fsync per write)."""

    def __init__(self, state_root: str | os.PathLike[str]) -> None:
        self.path = contracts.feedback_file(state_root)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        created = not self.path.exists()
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        if created:  # make the new directory entry durable too, not only the file's data
            dir_fd = os.open(self.path.parent, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
        self.rows = 0

    def append(self, row: dict[str, Any]) -> None:
        """Returns only once the line is on disk."""
        self.append_many([row])

    def append_many(self, rows: list[dict[str, Any]]) -> None:
        """All rows in one ``write`` (O_APPEND: never interleaved with another writer's
        lines), on disk before it returns: an import lands whole or, on a full disk, fails."""
        data = "".join(_dumps(row) + "\n" for row in rows).encode("utf-8")
        with self._lock:
            written = os.write(self._fd, data)
            if written != len(data):  # a short write to a regular file means a full disk
                end = os.fstat(self._fd).st_size
                os.ftruncate(self._fd, end - written)  # no half-applied import
                raise OSError(f"short write to {self.path}: {written} of {len(data)} bytes")
            os.fsync(self._fd)
            self.rows += len(rows)

    def close(self) -> None:
        with self._lock:
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1


_ROW = msgspec.json.Decoder(dict[str, Any])


def logged_since(
    state_root: str | os.PathLike[str], day: date, clock_ahead: timedelta
) -> list[dict[str, Any]]:
    """Answered predictions (no shadow rows) whose transaction is on or after ``day``, in
    the order they were scored: what an embedded store replays after a restart.

    A transaction may be up to ``clock_ahead`` ahead of the clock, so its request can sit
    in the day folders from ``day - clock_ahead`` on; all processes' files are read (every
    earlier process of this service) and ordered by request time, each file keeping its
    line order (a batch's rows share one request time). A torn last line (a kill during a
    write) was never answered, and is skipped.
    """
    start = datetime(day.year, day.month, day.day, tzinfo=UTC)
    first = (start - clock_ahead).date()
    root = Path(state_root) / contracts.PREDICTIONS_LOG
    rows: list[tuple[datetime, int, dict[str, Any]]] = []
    for folder in sorted(root.glob("date=*")):
        if folder.name[len("date=") :] < first.isoformat():
            continue
        for path in sorted(folder.glob("*.jsonl")):
            for line in path.read_bytes().splitlines():
                try:
                    row = _ROW.decode(line)
                except msgspec.DecodeError:
                    continue
                if row.get("variant") == contracts.SHADOW:
                    continue
                row["ts"] = datetime.fromisoformat(row["ts"])
                if row["ts"] >= start:
                    requested = datetime.fromisoformat(row["request_time"])
                    rows.append((requested, len(rows), row))
    rows.sort(key=lambda entry: (entry[0], entry[1]))
    return [row for _, _, row in rows]
