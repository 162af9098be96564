"""The daily partitioning every time-based asset shares."""

from __future__ import annotations

from datetime import date, datetime

import dagster as dg

from fraud_assets import settings

daily_partitions = dg.DailyPartitionsDefinition(
    start_date=settings.PARTITIONS_START, timezone="UTC"
)


def partition_day(context: dg.AssetExecutionContext | dg.AssetCheckExecutionContext) -> date:
    return datetime.strptime(context.partition_key, "%Y-%m-%d").date()


def window(start_offset: int, end_offset: int) -> dg.TimeWindowPartitionMapping:
    """Upstream days [D+start_offset, D+end_offset]; days before the first partition are
    simply absent (there is no earlier data), any other missing day is an error."""
    return dg.TimeWindowPartitionMapping(
        start_offset=start_offset,
        end_offset=end_offset,
        allow_nonexistent_upstream_partitions=True,
    )
