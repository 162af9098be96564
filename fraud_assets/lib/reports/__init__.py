"""Human-readable reports for MLflow and the Dagster UI: Evidently HTML (``evidently``) and
matplotlib PNGs (``plots``).

These files are for people. The numbers that drive automation (promotion gate, drift alerts)
are computed elsewhere with plain numpy; the reports only show them. Evidently (~15 s import)
and matplotlib are imported inside the functions so that loading the Dagster code stays fast.

This module holds what both kinds share: the frames they accept and the output path.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pandas as pd
import polars as pl

Frame = pd.DataFrame | pl.DataFrame


def prepare_path(path: str | Path) -> Path:
    """Create the parent folders: report folders are per partition and may not exist yet."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    return out


def to_pandas(frame: Frame, columns: Sequence[str] | None = None) -> pd.DataFrame:
    """Evidently and matplotlib want pandas; select first so only needed columns convert."""
    if isinstance(frame, pl.DataFrame):
        return (frame.select(columns) if columns is not None else frame).to_pandas()
    if isinstance(frame, pd.DataFrame):
        return frame[list(columns)] if columns is not None else frame
    raise TypeError(f"expected a polars or pandas DataFrame, got {type(frame).__name__}")
