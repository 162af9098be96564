"""File source: a user's own card transactions (CSV or Parquet) as canonical daily partitions.

Users bring data with their own column names, id types and timestamp conventions. This module
maps it onto the contracts in `schema.py` once, strictly (a bad value stops ingestion with the
file, column and an example, instead of silently becoming a null that skews features), and
then serves any day by binary search over the cached, time-sorted frame.

Reading goes through fsspec, so a local folder, a glob, `memory://` or `s3://` all work the
same; local files are scanned by Polars directly (projection pushdown, parallel parsing).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import fsspec
import polars as pl
from fsspec.implementations.local import LocalFileSystem

from fraud_assets.lib import schema

__all__ = ["FileSource", "FileSourceConfig", "SourceDataError"]


class SourceDataError(ValueError):
    """Input data or mapping that cannot be turned into canonical rows; the message says where."""


@dataclass(frozen=True)
class FileSourceConfig:
    """Where the user's files are and how their columns map onto the canonical ones."""

    path: str
    columns: Mapping[str, str]
    format: str = "auto"
    ts_format: str | None = None
    labels_path: str | None = None
    labels_columns: Mapping[str, str] = field(default_factory=dict)
    label_delay_days: float = 7.0
    storage_options: Mapping[str, Any] = field(default_factory=dict)


_FORMATS = ("auto", "csv", "parquet")
_EXTENSIONS = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet"}
# ISO 8601 shapes, tz-aware first; tried in order on the first value, then all together.
_ISO_FORMATS = (
    "%Y-%m-%dT%H:%M:%S%.f%#z",
    "%Y-%m-%d %H:%M:%S%.f%#z",
    "%Y-%m-%dT%H:%M:%S%.f",
    "%Y-%m-%d %H:%M:%S%.f",
    "%Y-%m-%dT%H:%M",
    "%Y-%m-%d %H:%M",
    "%Y-%m-%d",
)
_LABEL_WORDS = {"0": 0, "1": 1, "0.0": 0, "1.0": 1, "false": 0, "true": 1}
_TS_COLUMNS = ("ts", "known_at")
_UTC = pl.Datetime("us", "UTC")
_TRANSACTION_REQUIRED = tuple(schema.REQUIRED_TRANSACTION_COLUMNS)
_LABEL_REQUIRED = ("transaction_id", "is_fraud")


class FileSource:
    """Transactions (and delayed labels) from the user's files, one UTC day at a time."""

    name = "files"

    def __init__(self, config: FileSourceConfig):
        if config.format not in _FORMATS:
            raise SourceDataError(f"format must be one of {_FORMATS}, got {config.format!r}")
        if config.label_delay_days < 0:
            raise SourceDataError(f"label_delay_days must be >= 0, got {config.label_delay_days}")
        _check_targets(config.columns, schema.ALL_TRANSACTION_COLUMNS, "columns")
        _check_targets(config.labels_columns, schema.LABEL_COLUMNS, "labels_columns")
        self.config = config

    # -- public API -------------------------------------------------------------------------

    def transactions(self, day: dt.date) -> pl.DataFrame:
        """Canonical rows with ts in [day, day + 1) UTC, sorted by (ts, transaction_id)."""
        return _day_slice(self._transactions, "ts", day)

    def labels(self, day: dt.date) -> pl.DataFrame:
        """Label events that became known during `day` (UTC), sorted by (known_at, transaction_id).

        With `labels_path` set, that file is the label source (the transactions' own label
        column is then ignored here); labels whose transaction is unknown are dropped when
        known_at must be derived from the transaction time.
        """
        return _day_slice(self._labels, "known_at", day)

    def date_range(self) -> tuple[dt.date, dt.date]:
        """First and last UTC day holding a transaction (the span a backtest can cover)."""
        ts = self._transactions["ts"]
        if ts.len() == 0:
            raise SourceDataError(f"no transactions in {self.config.path!r} (files hold no rows)")
        return ts[0].date(), ts[-1].date()

    # -- normalisation (once per instance) --------------------------------------------------

    @cached_property
    def _transactions(self) -> pl.DataFrame:
        """The whole dataset in canonical form, sorted by time; every day is a slice of it."""
        frames = [
            _normalise_file(
                f,
                self.config.columns,
                schema.ALL_TRANSACTION_COLUMNS,
                _TRANSACTION_REQUIRED,
                self.config.ts_format,
            )
            for f in _resolve(self.config.path, self.config.format, self.config.storage_options)
        ]
        df = pl.concat(frames, how="diagonal") if len(frames) > 1 else frames[0]
        return schema.order_columns(df).sort("ts", "transaction_id")

    @cached_property
    def _labels(self) -> pl.DataFrame:
        """All label events with their known_at, sorted by it; empty when there are no labels."""
        delay = dt.timedelta(days=self.config.label_delay_days)
        if self.config.labels_path is None:
            tx = self._transactions
            if "is_fraud" not in tx.columns:
                return schema.empty_labels()
            events = tx.filter(pl.col("is_fraud").is_not_null()).select(
                "transaction_id", "is_fraud", known_at=pl.col("ts") + delay
            )
        else:
            files = _resolve(
                self.config.labels_path, self.config.format, self.config.storage_options
            )
            frames = [
                _normalise_file(
                    f,
                    self.config.labels_columns,
                    schema.LABEL_COLUMNS,
                    _LABEL_REQUIRED,
                    self.config.ts_format,
                )
                for f in files
            ]
            raw = pl.concat(frames, how="diagonal") if len(frames) > 1 else frames[0]
            raw = raw.filter(pl.col("is_fraud").is_not_null())
            if "known_at" in raw.columns:
                events = raw.filter(pl.col("known_at").is_not_null())
            else:
                # Labels for transactions we do not have cannot be placed in time: dropped.
                ts = self._transactions.select("transaction_id", "ts").unique("transaction_id")
                events = raw.join(ts, on="transaction_id", how="inner").with_columns(
                    known_at=pl.col("ts") + delay
                )
        return events.select(list(schema.LABEL_COLUMNS)).sort("known_at", "transaction_id")


# -- helpers ---------------------------------------------------------------------------------


def _check_targets(mapping: Mapping[str, str], valid: Iterable[str], what: str) -> None:
    """Catch typos such as {"X": "amout"} before any file is read."""
    valid = list(valid)
    unknown = [t for t in mapping.values() if t not in valid]
    if unknown:
        raise SourceDataError(
            f"{what} maps onto unknown canonical column(s) {unknown}; valid names are {valid}"
        )
    targets = list(mapping.values())
    dupes = sorted({t for t in targets if targets.count(t) > 1})
    if dupes:
        sources = {t: [s for s, c in mapping.items() if c == t] for t in dupes}
        raise SourceDataError(f"{what} maps several source columns onto one name: {sources}")


@dataclass(frozen=True)
class _File:
    """One resolved input file: how to open it and how to name it in errors."""

    fs: fsspec.AbstractFileSystem
    path: str
    format: str

    @property
    def display(self) -> str:
        return (
            self.path
            if isinstance(self.fs, LocalFileSystem)
            else self.fs.unstrip_protocol(self.path)
        )

    def scan(self) -> pl.LazyFrame:
        """CSV is read as text so that parsing (and its error messages) stays ours."""
        try:
            if isinstance(self.fs, LocalFileSystem):
                if self.format == "csv":
                    return pl.scan_csv(self.path, infer_schema=False, glob=False)
                return pl.scan_parquet(self.path, glob=False)
            with self.fs.open(self.path, "rb") as fh:
                data = fh.read()
            if self.format == "csv":
                return pl.read_csv(data, infer_schema=False).lazy()
            return pl.read_parquet(data).lazy()
        except (pl.exceptions.PolarsError, OSError) as e:
            raise SourceDataError(f"{self.display}: cannot read as {self.format}: {e}") from e


def _resolve(path: str, fmt: str, storage_options: Mapping[str, Any]) -> list[_File]:
    """Path, folder (recursive) or glob -> sorted list of CSV/Parquet files."""
    fs, root = fsspec.core.url_to_fs(path, **dict(storage_options))
    if any(ch in root for ch in "*?["):
        found: list[str] = []
        for p in fs.glob(root):
            found.extend(_data_files(fs, p, fmt) if fs.isdir(p) else [p])
        explicit = True
    elif fs.isdir(root):
        found, explicit = _data_files(fs, root, fmt), False
    elif fs.isfile(root):
        found, explicit = [root], True
    else:
        found, explicit = [], True
    files = []
    for p in sorted(set(found)):
        kind = fmt if fmt != "auto" else _format_of(p)
        if kind is None:
            if explicit:
                raise SourceDataError(
                    f"{p}: cannot tell the format from the extension; set format='csv' or 'parquet'"
                )
            continue
        files.append(_File(fs, p, kind))
    if not files:
        raise SourceDataError(f"no CSV/Parquet files match {path!r}")
    return files


def _data_files(fs: fsspec.AbstractFileSystem, folder: str, fmt: str) -> list[str]:
    """Every file under a folder whose extension fits the requested format."""
    return [
        p for p in fs.find(folder) if (kind := _format_of(p)) is not None and fmt in ("auto", kind)
    ]


def _format_of(path: str) -> str | None:
    lower = path.lower()
    return next((k for ext, k in _EXTENSIONS.items() if lower.endswith(ext)), None)


def _effective_mapping(
    mapping: Mapping[str, str], present: list[str], valid: Mapping[str, Any], file: _File
) -> dict[str, str]:
    """Explicit mapping plus columns already carrying a canonical name (source -> canonical)."""
    missing = [s for s in mapping if s not in present]
    if missing:
        raise SourceDataError(
            f"{file.display}: mapped column(s) {missing} not found; the file has columns {present}"
        )
    out = dict(mapping)
    targets = set(mapping.values())
    for c in present:
        if c in valid and c not in targets and c not in mapping:
            out[c] = c
    return out


def _normalise_file(
    file: _File,
    mapping: Mapping[str, str],
    valid: Mapping[str, pl.DataType],
    required: tuple[str, ...],
    ts_format: str | None,
) -> pl.DataFrame:
    """Read one file, rename, cast to canonical dtypes and reject anything that does not fit."""
    lf = file.scan()
    try:
        present = lf.collect_schema().names()
        cols = _effective_mapping(mapping, present, valid, file)
        absent = [c for c in required if c not in cols.values()]
        if absent:
            raise SourceDataError(
                f"{file.display}: required column(s) {absent} missing after mapping; "
                f"map them in the config (the file has columns {present})"
            )
        raw = lf.select([pl.col(s).alias(c) for s, c in cols.items()]).collect()
    except pl.exceptions.PolarsError as e:
        raise SourceDataError(f"{file.display}: cannot read as {file.format}: {e}") from e
    source = {c: s for s, c in cols.items()}

    ts_formats = {c: _pick_ts_format(raw[c], ts_format) for c in _TS_COLUMNS if c in raw.columns}
    exprs = {c: _parse(c, raw.schema[c], ts_formats.get(c), ts_format) for c in raw.columns}
    try:
        parsed = raw.select(list(exprs.values()))
    except pl.exceptions.PolarsError:
        # An unsupported dtype (list, struct...): find the column to name it.
        for c, expr in exprs.items():
            try:
                raw.select(expr)
            except pl.exceptions.PolarsError as e:
                raise SourceDataError(
                    f"{file.display}: column {source[c]!r} (-> {c}) has dtype "
                    f"{raw.schema[c]} which cannot be read as {c}: {e}"
                ) from e
        raise
    for c in raw.columns:
        if c in ts_formats and ts_formats[c] not in (None, "epoch") and _has_bad(raw[c], parsed[c]):
            # Mixed ISO shapes in one column: try every shape before calling a value bad.
            parsed = parsed.with_columns(raw.select(_iso_any(pl.col(c)).alias(c)))
        bad = _bad_mask(raw[c], parsed[c], c)
        if bad is not None:
            idx = int(bad.arg_true()[0])
            raise SourceDataError(
                f"{file.display}: column {source[c]!r} (-> {c}) has {int(bad.sum())} value(s) "
                f"that are not {_kind(c, ts_format)}, e.g. {raw[c][idx]!r} at data row {idx + 1}"
            )
        if c in required and parsed[c].null_count():
            idx = int(parsed[c].is_null().arg_true()[0])
            raise SourceDataError(
                f"{file.display}: column {source[c]!r} (-> {c}) has "
                f"{parsed[c].null_count()} empty value(s), e.g. at data row {idx + 1}; it is required"
            )
    return parsed


def _has_bad(raw: pl.Series, parsed: pl.Series) -> bool:
    return parsed.null_count() > raw.null_count()


def _bad_mask(raw: pl.Series, parsed: pl.Series, name: str) -> pl.Series | None:
    """Rows whose value was present but did not survive the cast (None if there are none)."""
    lost = _has_bad(raw, parsed)
    non_finite = name == "amount" and not parsed.is_finite().fill_null(True).all()
    if not (lost or non_finite):
        return None
    bad = parsed.is_null() & raw.is_not_null()
    if name == "amount":
        bad = bad | ~parsed.is_finite().fill_null(True)
    return bad


def _kind(name: str, ts_format: str | None) -> str:
    if name in _TS_COLUMNS:
        return (
            f"timestamps in format {ts_format!r}"
            if ts_format
            else "ISO 8601 timestamps or epoch seconds"
        )
    return {
        "amount": "finite numbers",
        "is_fraud": "labels (0/1 or true/false)",
    }.get(name, "text or integers")


def _parse(name: str, dtype: pl.DataType, iso_format: str | None, ts_format: str | None) -> pl.Expr:
    """Expression casting one renamed column to its canonical dtype; failures become null."""
    col = pl.col(name)
    if name in _TS_COLUMNS:
        expr = _to_utc(col, dtype, iso_format or ts_format)
    elif name == "amount":
        expr = (
            col.str.strip_chars().cast(pl.Float64, strict=False)
            if dtype == pl.String
            else col.cast(pl.Float64, strict=False)
        )
    elif name == "is_fraud":
        expr = _to_label(col, dtype)
    else:
        expr = _to_text(col, dtype)
    return expr.alias(name)


def _to_text(col: pl.Expr, dtype: pl.DataType) -> pl.Expr:
    """Ids and categories as text; integral floats (pandas' nullable ints) lose their '.0'."""
    if dtype.is_float():
        return (
            pl.when(col == col.round())
            .then(col.cast(pl.Int64, strict=False).cast(pl.String))
            .otherwise(col.cast(pl.String))
        )
    return col.cast(pl.String, strict=False)


def _to_label(col: pl.Expr, dtype: pl.DataType) -> pl.Expr:
    """0/1 and true/false (any case) -> Int8; anything else null (reported as bad)."""
    if dtype == pl.Boolean:
        return col.cast(pl.Int8)
    if dtype.is_numeric():
        return pl.when((col == 0) | (col == 1)).then(col.cast(pl.Int8, strict=False))
    text = col.cast(pl.String, strict=False).str.strip_chars().str.to_lowercase()
    return text.replace_strict(_LABEL_WORDS, default=None, return_dtype=pl.Int8)


def _pick_ts_format(raw: pl.Series, ts_format: str | None) -> str | None:
    """For ISO text, the shape of the first value (one fast parse for the usual uniform file)."""
    if ts_format is not None or raw.dtype != pl.String:
        return None
    first = raw.drop_nulls().head(1)
    if first.len() == 0:
        return _ISO_FORMATS[0]
    value = first.str.strip_chars()
    if value.str.contains(r"^[+-]?\d+(\.\d*)?$").all():
        return "epoch"
    for fmt in _ISO_FORMATS:
        if value.str.to_datetime(format=fmt, strict=False, time_unit="us").null_count() == 0:
            return fmt
    return _ISO_FORMATS[0]


def _to_utc(col: pl.Expr, dtype: pl.DataType, fmt: str | None) -> pl.Expr:
    """Any timestamp representation -> Datetime(us, UTC); naive values are taken as UTC."""
    if isinstance(dtype, pl.Datetime):
        expr = col.cast(pl.Datetime("us", dtype.time_zone))
        return (
            expr.dt.convert_time_zone("UTC")
            if dtype.time_zone
            else expr.dt.replace_time_zone("UTC")
        )
    if dtype == pl.Date:
        return col.cast(pl.Datetime("us")).dt.replace_time_zone("UTC")
    if dtype.is_numeric() or fmt == "epoch":
        seconds = col.cast(pl.String).str.strip_chars() if dtype == pl.String else col
        micros = (
            (seconds.cast(pl.Float64, strict=False) * 1_000_000)
            .round()
            .cast(pl.Int64, strict=False)
        )
        return pl.from_epoch(micros, time_unit="us").dt.replace_time_zone("UTC")
    if dtype != pl.String:
        col = col.cast(pl.String, strict=False)
    return _text_to_utc(col.str.strip_chars(), fmt or _ISO_FORMATS[0])


def _text_to_utc(text: pl.Expr, fmt: str) -> pl.Expr:
    parsed = text.str.to_datetime(format=fmt, strict=False, time_unit="us")
    # %z yields UTC already; a naive format yields naive wall time, taken as UTC.
    return (
        parsed
        if "%z" in fmt or "%#z" in fmt or "%:z" in fmt
        else parsed.dt.replace_time_zone("UTC")
    )


def _iso_any(col: pl.Expr) -> pl.Expr:
    """Slow path for columns mixing ISO shapes (e.g. some with offsets, some without)."""
    text = col.str.strip_chars()
    return pl.coalesce([_text_to_utc(text, f) for f in _ISO_FORMATS])


def _day_slice(df: pl.DataFrame, column: str, day: dt.date) -> pl.DataFrame:
    """Rows of a frame sorted by `column` falling in the UTC day: two binary searches, no scan."""
    start = dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC)
    end = start + dt.timedelta(days=1)
    s = df[column]
    lo = int(s.search_sorted(start, side="left"))
    hi = int(s.search_sorted(end, side="left"))
    return df.slice(lo, hi - lo)
