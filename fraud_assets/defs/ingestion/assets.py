"""raw_transactions and fraud_labels: one Parquet partition per day, straight from the source."""

from datetime import UTC, datetime, timedelta
from typing import Any

import dagster as dg
import polars as pl

from fraud_assets.defs.partitions import daily_partitions, partition_day
from fraud_assets.lib.labels import label_events
from fraud_assets.lib.versioning import data_version
from fraud_assets.resources.source import TransactionSourceResource
from fraud_assets.resources.storage import ServingLogs

INGESTION_CODE_VERSION = "ingestion-v1"
LABELS_CODE_VERSION = "labels-v2"  # v2: human label events (feedback, imports) join the source's


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
    code_version=LABELS_CODE_VERSION,
    kinds={"polars", "parquet"},
    description="Label events (transaction_id, is_fraud, known_at, label_source) that became "
    "known on that day: the source's (chargebacks and confirmed genuine transactions arrive "
    "late) and the humans' (the service's /feedback and imported label files). A transaction "
    "can have several; the latest in force wins (lib/labels.py).",
)
def fraud_labels(
    context: dg.AssetExecutionContext, source: TransactionSourceResource, serving_logs: ServingLogs
) -> dg.Output[pl.DataFrame]:
    from fraud_assets.lib.monitoring.logs import read_feedback

    day = partition_day(context)
    lo = datetime(day.year, day.month, day.day, tzinfo=UTC)
    from_source = label_events(source.get().labels(day))
    feedback, problems = read_feedback(serving_logs.state_root)
    for problem in problems:
        context.log.warning(f"feedback log: {problem}")
    human = feedback.filter(pl.col("known_at").is_between(lo, lo + timedelta(days=1), "left"))
    df = label_events(from_source, human)
    version = data_version(df)
    frauds = int(df["is_fraud"].sum()) if df.height else 0
    context.log.info(
        f"{day}: {df.height} label events became known ({from_source.height} from "
        f"{source.kind}, {human.height} from feedback), {frauds} frauds"
    )
    return dg.Output(
        df,
        data_version=dg.DataVersion(version),
        metadata={
            "labels": df.height,
            "frauds": frauds,
            "from_source": from_source.height,
            "from_feedback": human.height,
            # Human "genuine" labels: confirmations, or corrections of a fraud label.
            "genuine_from_feedback": int((human["is_fraud"] == 0).sum()),
            "data_version": version,
        },
    )
