"""Polars <-> Parquet IO manager on UPath (local folders, s3://, gs://... through fsspec).

Writes are atomic on a local filesystem (temp file + rename in the same folder), so a killed
run never leaves a half-written partition; object stores publish an object only once its
upload completes, so they are written directly.
"""

from __future__ import annotations

import os
import uuid
from typing import Any

import dagster as dg
import polars as pl
from upath import UPath

_LOCAL_PROTOCOLS = {"", "file", "local"}


def write_parquet_atomic(df: pl.DataFrame, path: UPath) -> None:
    """Write `df` to `path` so that readers see either the old file or the complete new one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.protocol not in _LOCAL_PROTOCOLS:
        with path.open("wb") as f:
            df.write_parquet(f, statistics=True)
        return
    for stale in path.parent.glob(f".{path.name}.*.tmp"):  # left by a killed writer
        stale.unlink(missing_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        df.write_parquet(str(tmp), statistics=True)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def read_parquet(path: UPath) -> pl.DataFrame:
    if path.protocol in _LOCAL_PROTOCOLS:
        return pl.read_parquet(str(path))
    with path.open("rb") as f:
        return pl.read_parquet(f)


def frame_schema(df: pl.DataFrame) -> dg.TableSchema:
    """The frame's columns and types, shown in the UI's column schema panel."""
    return dg.TableSchema(
        columns=[dg.TableColumn(name, str(dtype)) for name, dtype in df.schema.items()]
    )


class PolarsParquetIOManager(dg.UPathIOManager):
    """One Parquet file per asset partition: `<base>/<asset path>/<partition>.parquet`."""

    extension = ".parquet"

    def dump_to_path(self, context: dg.OutputContext, obj: pl.DataFrame, path: UPath) -> None:
        if not isinstance(obj, pl.DataFrame):
            raise TypeError(f"{context.asset_key.to_user_string()} must return a polars DataFrame")
        write_parquet_atomic(obj, path)
        context.add_output_metadata(
            {
                "dagster/row_count": obj.height,
                "dagster/column_schema": frame_schema(obj),
            }
        )

    def load_from_path(self, context: dg.InputContext, path: UPath) -> pl.DataFrame:
        return read_parquet(path)


class PolarsParquetIOManagerResource(dg.ConfigurableIOManagerFactory):
    """Configurable front for the UI: the lake's base path (any UPath URL)."""

    base_path: str

    def create_io_manager(self, context: Any) -> PolarsParquetIOManager:
        return PolarsParquetIOManager(base_path=UPath(self.base_path))
