"""Feedback becomes label events: /feedback rows and imported files join `fraud_labels` on the
day they became known, beside the source's, and a bad import changes nothing."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
import polars as pl

from fraud_assets.lib.contracts import FEEDBACK_LABELS, PIPELINE_LABELS, SERVING_STATE_ENV
from fraud_assets.lib.labels import latest_labels
from fraud_assets.serving.logs import FeedbackLog
from fraud_assets_tests.helpers import build_defs, materialize_day

DAY = "2026-03-02"


def _labels(lake: Path, day: str) -> pl.DataFrame:
    return pl.read_parquet(lake / "fraud_labels" / f"{day}.parquet")


def _import(state: Path, path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "fraud_assets.cli", "import-labels", str(path)],
        env=os.environ | {SERVING_STATE_ENV: str(state)},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_feedback_and_imports_become_label_events_of_their_day(tmp_path: Path, instance) -> None:
    lake, state = tmp_path / "lake", tmp_path / "state"
    defs = build_defs(lake, serving_state=state)
    assert materialize_day(defs, instance, DAY, "fraud_labels").success
    source = _labels(lake, DAY)
    assert set(source["label_source"]) == {PIPELINE_LABELS}
    fraud = source.filter(pl.col("is_fraud") == 1)["transaction_id"][0]
    genuine = source.filter(pl.col("is_fraud") == 0)["transaction_id"][0]

    log = FeedbackLog(state)
    log.append(  # the day before: belongs to another partition
        {"received_at": "2026-03-01T23:59:59.999999+00:00", "transaction_id": "early",
         "is_fraud": True, "source": "analyst"}
    )  # fmt: skip
    log.append(  # an analyst withdraws the source's fraud label that evening
        {"received_at": "2026-03-02T21:00:00+00:00", "transaction_id": fraud,
         "is_fraud": False, "source": "analyst"}
    )  # fmt: skip
    log.close()
    good = tmp_path / "chargebacks.csv"
    good.write_text(
        f"transaction_id,is_fraud,known_at,source\n{genuine},1,2026-03-02T10:00:00Z,chargeback\n"
    )
    done = _import(state, good)
    assert done.returncode == 0, done.stderr
    assert "2026-03-02" in done.stdout and "daily_ingestion" in done.stdout
    bad = tmp_path / "bad.csv"
    bad.write_text(f"transaction_id,is_fraud\n{genuine},0\nx,perhaps\n")
    refused = _import(state, bad)
    assert (
        refused.returncode == 2
        and "row 3" in refused.stderr
        and "nothing imported" in refused.stderr
    )

    assert materialize_day(defs, instance, DAY, "fraud_labels").success
    events = _labels(lake, DAY)
    human = events.filter(pl.col("label_source") == FEEDBACK_LABELS)
    assert sorted(human["transaction_id"]) == sorted([fraud, genuine])  # not "early", not bad.csv
    assert events.height == source.height + 2
    now = dict(latest_labels(events).select("transaction_id", "is_fraud").iter_rows())
    assert now[fraud] == 0 and now[genuine] == 1
    mat = instance.get_latest_materialization_event(
        dg.AssetKey("fraud_labels")
    ).asset_materialization
    assert mat.metadata["from_feedback"].value == 2
    assert mat.metadata["genuine_from_feedback"].value == 1
