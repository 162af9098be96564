"""Small Dagster-side helpers shared by the domains."""

from typing import Any

import dagster as dg
import polars as pl

from fraud_assets.lib.labels import label_events
from fraud_assets.lib.quality import CheckOutcome
from fraud_assets.lib.schema import empty_labels


def concat_partitions(loaded: Any, empty: pl.DataFrame | None = None) -> pl.DataFrame:
    """A window of partitions (dict key -> frame, a frame, or None) as one frame."""
    if loaded is None:
        frames: list[pl.DataFrame] = []
    elif isinstance(loaded, dict):
        frames = [loaded[k] for k in sorted(loaded) if loaded[k] is not None]
    else:
        frames = [loaded]
    frames = [f for f in frames if f.height]
    if not frames:
        return empty if empty is not None else pl.DataFrame()
    return pl.concat(frames, how="diagonal_relaxed")


def concat_labels(loaded: Any) -> pl.DataFrame:
    """A window of ``fraud_labels`` partitions as label events (``lib/labels``), in order."""
    return label_events(concat_partitions(loaded, empty_labels()))


def check_results(asset: str, outcomes: list[CheckOutcome], log: Any) -> list[dg.AssetCheckResult]:
    """GX outcomes as Dagster check results: the failing expectation and its observed value."""
    results = []
    for outcome in outcomes:
        if not outcome.success:
            log.error(f"{asset} check {outcome.name} failed: {outcome.summary}")
        results.append(
            dg.AssetCheckResult(
                check_name=outcome.name,
                asset_key=asset,
                passed=outcome.success,
                severity=dg.AssetCheckSeverity.ERROR,
                description=outcome.summary[:2000],
                metadata={
                    "expectations": [e.describe() for e in outcome.expectations],
                    "observed": str(outcome.expectations[0].observed)[:500],
                },
            )
        )
    return results
