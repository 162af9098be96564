"""Ingestion through a real Dagster instance: determinism, metadata, gates, atomic writes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import polars as pl
import pytest

from fraud_assets.lib.contracts import PIPELINE_LABELS
from fraud_assets.lib.labels import LABEL_SCHEMA
from fraud_assets.lib.simulation import SimulationConfig, Simulator
from fraud_assets.resources.source import TransactionSourceResource
from fraud_assets_tests.helpers import SMALL_SIM, build_defs, materialize_day

DAYS = ["2026-03-01", "2026-03-02", "2026-03-03"]
REPO = Path(__file__).resolve().parents[2]


def _files(lake: Path, asset: str) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted((lake / asset).glob("*.parquet"))}


def test_partitions_identical_in_any_order_and_in_a_parallel_backfill(
    tmp_path: Path, instance
) -> None:
    forward, backward, parallel = tmp_path / "fwd", tmp_path / "bwd", tmp_path / "par"
    for day in DAYS:
        assert materialize_day(build_defs(forward), instance, day).success
    for day in reversed(DAYS):
        assert materialize_day(build_defs(backward), instance, day).success
    # A parallel backfill: one `dagster asset materialize` process per partition, all at once.
    env = os.environ | {
        "FRAUD_DATA_ROOT": str(parallel),
        "FRAUD_SERVING_STATE": str(tmp_path / "par-serving"),  # no feedback, as the others
        "DAGSTER_HOME": str(tmp_path / "home"),
        "FRAUD_SIM_SEED": str(SMALL_SIM["seed"]),
        "FRAUD_SIM_SIZE": str(SMALL_SIM["size"]),
    }
    (tmp_path / "home").mkdir()
    # The instance exists before a backfill starts (otherwise 3 processes race to create it).
    dg.DagsterInstance.from_config(str(tmp_path / "home")).dispose()
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "dagster",
                "asset",
                "materialize",
                "-m",
                "fraud_assets.definitions",
                "--select",
                "raw_transactions,fraud_labels",
                "--partition",
                day,
            ],
            env=env,
            cwd=REPO,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        for day in reversed(DAYS)
    ]
    for p in procs:
        _, err = p.communicate(timeout=300)
        assert p.returncode == 0, err[-2000:]
    for asset in ("raw_transactions", "fraud_labels"):
        reference = _files(forward, asset)
        assert len(reference) == 3
        assert _files(backward, asset) == reference
        assert _files(parallel, asset) == reference


def test_materialization_metadata_and_data_version(tmp_path: Path, instance) -> None:
    result = materialize_day(build_defs(tmp_path), instance, DAYS[0])
    assert result.success
    mats = {
        m.asset_key.path[-1]: m for m in result.asset_materializations_for_node("raw_transactions")
    }
    meta = mats["raw_transactions"].metadata
    df = pl.read_parquet(tmp_path / "raw_transactions" / f"{DAYS[0]}.parquet")
    assert meta["dagster/row_count"].value == df.height
    assert {c.name for c in meta["dagster/column_schema"].value.columns} == set(df.columns)
    assert meta["fraud_rate"].value == pytest.approx(df["is_fraud"].mean())
    assert meta["amount_max"].value == pytest.approx(df["amount"].max())
    version = meta["data_version"].value
    assert len(version) == 16
    # The version is the content: the same day regenerated has it, another day does not.
    again = materialize_day(build_defs(tmp_path / "b"), instance, DAYS[0])
    other = materialize_day(build_defs(tmp_path / "c"), instance, DAYS[1])
    v_again = (
        again.asset_materializations_for_node("raw_transactions")[0].metadata["data_version"].value
    )
    v_other = (
        other.asset_materializations_for_node("raw_transactions")[0].metadata["data_version"].value
    )
    assert v_again == version != v_other
    labels = pl.read_parquet(tmp_path / "fraud_labels" / f"{DAYS[0]}.parquet")
    assert labels.columns == list(LABEL_SCHEMA)
    assert labels["label_source"].unique().to_list() == [PIPELINE_LABELS]  # no feedback here
    assert labels["known_at"].dt.date().cast(pl.String).unique().to_list() == [DAYS[0]]


class CorruptSource(TransactionSourceResource):
    """The simulator with one kind of damage applied to every day."""

    corruption: str = "nulls"

    def get(self):
        base = Simulator(SimulationConfig(**SMALL_SIM))
        corruption = self.corruption

        class _Corrupt:
            name = "corrupt"

            def transactions(self, day):
                df = base.transactions(day)
                first = pl.int_range(pl.len()) < 2
                if corruption == "nulls":
                    return df.with_columns(
                        amount=pl.when(first).then(None).otherwise(pl.col("amount"))
                    )
                if corruption == "negative":
                    return df.with_columns(
                        amount=pl.when(first).then(-1.0).otherwise(pl.col("amount"))
                    )
                if corruption == "duplicates":
                    return pl.concat([df, df.head(2)])
                if corruption == "other_day":
                    return pl.concat([df, base.transactions(day.replace(day=day.day + 1)).head(2)])
                raise ValueError(corruption)

            def labels(self, day):
                return base.labels(day)

        return _Corrupt()


@dg.asset(
    partitions_def=dg.DailyPartitionsDefinition(start_date="2026-01-01", timezone="UTC"),
    io_manager_key="lake",
)
def downstream_of_raw(raw_transactions: pl.DataFrame) -> pl.DataFrame:
    return raw_transactions.head(1)


@pytest.mark.parametrize(
    ("corruption", "check"),
    [
        ("nulls", "keys_not_null"),
        ("negative", "amount_range"),
        ("duplicates", "transaction_id_unique"),
        ("other_day", "ts_in_partition"),
    ],
)
def test_corrupted_partition_fails_its_check_and_blocks_downstream(
    tmp_path: Path, instance, corruption: str, check: str
) -> None:
    defs = build_defs(
        tmp_path, source=CorruptSource(corruption=corruption), extra_assets=[downstream_of_raw]
    )
    result = materialize_day(defs, instance, DAYS[1])
    assert not result.success
    evaluations = {e.check_name: e for e in result.get_asset_check_evaluations()}
    failed = {name for name, e in evaluations.items() if not e.passed}
    assert failed == {check}
    assert evaluations[check].description  # says what was observed
    materialized = {m.asset_key.to_user_string() for m in result.get_asset_materialization_events()}
    # The checked asset is stored (that is how Dagster works); nothing downstream is.
    assert "downstream_of_raw" not in {
        m.asset_key.to_user_string()
        for m in instance.get_latest_materialization_events(
            [dg.AssetKey("downstream_of_raw")]
        ).values()
        if m
    }
    assert not (tmp_path / "downstream_of_raw").exists()
    # A clean run of the same graph does materialize it (the test can fail the other way).
    clean = materialize_day(
        build_defs(tmp_path / "clean", extra_assets=[downstream_of_raw]), instance, DAYS[1]
    )
    assert clean.success, materialized
    assert (tmp_path / "clean" / "downstream_of_raw" / f"{DAYS[1]}.parquet").exists()


_KILL_SCRIPT = """
import sys, polars as pl, numpy as np
from upath import UPath
from fraud_assets.resources.io_manager import write_parquet_atomic
path = UPath(sys.argv[1])
n = 40_000_000
df = pl.DataFrame({"a": np.arange(n), "b": np.random.default_rng(0).random(n)})
print("writing", flush=True)
write_parquet_atomic(df, path)
print("done", flush=True)
"""


def test_killed_write_leaves_the_previous_partition_intact(tmp_path: Path) -> None:
    from upath import UPath

    from fraud_assets.resources.io_manager import write_parquet_atomic

    target = tmp_path / "raw_transactions" / "2026-03-01.parquet"
    old = pl.DataFrame({"a": [1, 2, 3]})
    write_parquet_atomic(old, UPath(target))
    proc = subprocess.Popen(
        [sys.executable, "-c", _KILL_SCRIPT, str(target)],
        stdout=subprocess.PIPE,
        text=True,
        cwd=REPO,
    )
    assert proc.stdout.readline().strip() == "writing"
    # Wait until the new data is being written (its temp file exists), then kill -9.
    deadline = time.time() + 60
    while not list(target.parent.glob(".*.tmp")) and time.time() < deadline:
        time.sleep(0.01)
    assert list(target.parent.glob(".*.tmp")), "the writer never started its temp file"
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert pl.read_parquet(target).equals(old)
    assert [p.name for p in target.parent.glob("*.parquet")] == [target.name]
    # The next write cleans up the orphaned temp file and replaces the partition.
    new = pl.DataFrame({"a": [4]})
    write_parquet_atomic(new, UPath(target))
    assert pl.read_parquet(target).equals(new)
    assert not list(target.parent.glob(".*.tmp"))


def test_file_source_feeds_the_same_assets(tmp_path: Path, instance) -> None:
    csv = tmp_path / "tx.csv"
    pl.DataFrame(
        {
            "TX_ID": ["a1", "a2", "a3"],
            "TX_DATETIME": ["2026-03-01 10:00:00", "2026-03-01 11:00:00", "2026-03-02 09:00:00"],
            "CUSTOMER_ID": [1, 2, 1],
            "TERMINAL_ID": [7, 8, 7],
            "TX_AMOUNT": [10.5, 20.0, 3.0],
            "TX_FRAUD": [0, 1, 0],
        }
    ).write_csv(csv)
    options = {
        "path": str(csv),
        "columns": {
            "TX_ID": "transaction_id",
            "TX_DATETIME": "ts",
            "CUSTOMER_ID": "customer_id",
            "TERMINAL_ID": "terminal_id",
            "TX_AMOUNT": "amount",
            "TX_FRAUD": "is_fraud",
        },
    }
    source = TransactionSourceResource(kind="files", options_json=json.dumps(options))
    result = materialize_day(
        build_defs(tmp_path / "lake", source=source, label_rate_max=1.0), instance, "2026-03-01"
    )
    assert result.success
    raw = pl.read_parquet(tmp_path / "lake" / "raw_transactions" / "2026-03-01.parquet")
    assert raw["transaction_id"].to_list() == ["a1", "a2"]
    assert "merchant_category" not in raw.columns and "channel" not in raw.columns
