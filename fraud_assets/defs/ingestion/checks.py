"""Blocking Great Expectations gate on raw_transactions: bad data never reaches training."""

from datetime import timedelta

import dagster as dg
import polars as pl

from fraud_assets import settings
from fraud_assets.defs.common import check_results
from fraud_assets.defs.partitions import daily_partitions, partition_day
from fraud_assets.lib.quality import RAW_CHECKS, RawQualityConfig, validate_raw_transactions

TRAILING_DAYS = 7


class RawQualityResource(dg.ConfigurableResource):
    """Thresholds of the raw-data gate (defaults from settings / environment)."""

    amount_cap: float = settings.AMOUNT_CAP
    row_count_band: float = settings.ROW_COUNT_BAND
    label_rate_min: float = settings.LABEL_RATE_MIN
    label_rate_max: float = settings.LABEL_RATE_MAX

    def config(self) -> RawQualityConfig:
        return RawQualityConfig(
            self.amount_cap, self.row_count_band, self.label_rate_min, self.label_rate_max
        )


def _trailing_row_counts(
    context: dg.AssetCheckExecutionContext, asset_key: dg.AssetKey
) -> list[int]:
    """Row counts of the previous partitions, read from the instance (no data reloaded)."""
    day = partition_day(context)
    keys = [(day - timedelta(days=i)).isoformat() for i in range(1, TRAILING_DAYS + 1)]
    records = context.instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=asset_key, asset_partitions=keys), limit=10 * TRAILING_DAYS
    ).records
    latest: dict[str, int] = {}
    for record in records:  # newest first: keep the latest materialization per partition
        mat = record.asset_materialization
        if mat is None or mat.partition in latest:
            continue
        count = mat.metadata.get("dagster/row_count")
        if count is not None:
            latest[mat.partition] = int(count.value)
    return [n for n in latest.values() if n > 0]


@dg.multi_asset_check(
    specs=[
        dg.AssetCheckSpec(
            name,
            asset="raw_transactions",
            blocking=True,
            description=desc,
            partitions_def=daily_partitions,
        )
        for name, desc in RAW_CHECKS.items()
    ],
    ins={"raw_transactions": dg.AssetIn("raw_transactions")},
)
def raw_transactions_quality(
    context: dg.AssetCheckExecutionContext,
    raw_transactions: pl.DataFrame,
    raw_quality: RawQualityResource,
):
    """Great Expectations suite on one day of raw transactions, one check per concern."""
    config = raw_quality.config()
    trailing = _trailing_row_counts(context, dg.AssetKey("raw_transactions"))
    outcomes = validate_raw_transactions(raw_transactions, partition_day(context), config, trailing)
    yield from check_results("raw_transactions", outcomes, context.log)
