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
