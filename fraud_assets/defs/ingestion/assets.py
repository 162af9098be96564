"""raw_transactions and fraud_labels: one Parquet partition per day, straight from the source."""

from typing import Any

import dagster as dg
import polars as pl

from fraud_assets.defs.partitions import daily_partitions, partition_day
from fraud_assets.lib.versioning import data_version
from fraud_assets.resources.source import TransactionSourceResource

INGESTION_CODE_VERSION = "ingestion-v1"


def transaction_metadata(df: pl.DataFrame, source: TransactionSourceResource) -> dict[str, Any]:
    meta: dict[str, Any] = {
        "source": source.kind,
        "customers": df["customer_id"].n_unique() if df.height else 0,
        "terminals": df["terminal_id"].n_unique() if df.height else 0,
    }
    if df.height:
        amount = df["amount"]
        meta |= {
            "amount_mean": float(amount.mean()),
            "amount_p50": float(amount.median()),
            "amount_p99": float(amount.quantile(0.99)),
            "amount_max": float(amount.max()),
        }
    if "is_fraud" in df.columns and df.height:
        meta["fraud_rate"] = float(df["is_fraud"].mean())
    if "fraud_scenario" in df.columns and df.height:
        counts = df.group_by("fraud_scenario").len().sort("fraud_scenario")
        meta["fraud_scenarios"] = dict(zip(counts["fraud_scenario"], counts["len"], strict=True))
    return meta


@dg.asset(
    partitions_def=daily_partitions,
    io_manager_key="lake",
    group_name="ingestion",
    code_version=INGESTION_CODE_VERSION,
    kinds={"polars", "parquet"},
    description="Card transactions of one day (UTC) in canonical columns, from the configured source.",
)
def raw_transactions(
    context: dg.AssetExecutionContext, source: TransactionSourceResource
) -> dg.Output[pl.DataFrame]:
    day = partition_day(context)
    df = source.get().transactions(day)
    version = data_version(df)
    context.log.info(f"{day}: {df.height} transactions from {source.kind} (data version {version})")
    return dg.Output(
        df,
        data_version=dg.DataVersion(version),
        metadata=transaction_metadata(df, source) | {"data_version": version},
    )


@dg.asset(
    partitions_def=daily_partitions,
    io_manager_key="lake",
    group_name="ingestion",
    code_version=INGESTION_CODE_VERSION,
    kinds={"polars", "parquet"},
    description="Label events (transaction_id, is_fraud, known_at) that became known on that day: "
    "chargebacks and confirmed genuine transactions arrive late.",
)
def fraud_labels(
    context: dg.AssetExecutionContext, source: TransactionSourceResource
) -> dg.Output[pl.DataFrame]:
    day = partition_day(context)
    df = source.get().labels(day)
    version = data_version(df)
    frauds = int(df["is_fraud"].sum()) if df.height else 0
    context.log.info(f"{day}: {df.height} labels became known, {frauds} frauds")
    return dg.Output(
        df,
        data_version=dg.DataVersion(version),
        metadata={"labels": df.height, "frauds": frauds, "data_version": version},
    )
