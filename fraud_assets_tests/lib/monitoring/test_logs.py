"""Reading the service's logs (skipped lines, mistyped values) and labels: the latest label
wins, label partitions from the day on, predictions joined with labels."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl

from fraud_assets.lib.contracts import ERRORS_LOG, PREDICTIONS_LOG, day_folder
from fraud_assets.lib.labels import latest_labels
from fraud_assets.lib.monitoring.logs import (
    PREDICTION_SCHEMA,
    SOURCE_COLUMN,
    join_labels,
    read_errors,
    read_feedback,
    read_label_partitions,
    read_predictions,
)
from fraud_assets.lib.monitoring.serving import errors_by_status
from fraud_assets_tests.lib.monitoring.helpers import DAY, prediction, stamp, write_jsonl


def test_truncated_last_line_and_a_corrupt_middle_line_are_skipped(tmp_path: Path) -> None:
    rows = [prediction(f"t{i}", request_time=stamp(i)) for i in range(3)]
    good = write_jsonl(
        day_folder(tmp_path, PREDICTIONS_LOG, DAY) / "part-1.jsonl", rows, tail='{"request_ti'
    )
    # A reused pid appended to a crashed file: the cut line and the next row share a line.
    text = json.dumps(rows[0]) + "\n" + '{"request_time": "20' + json.dumps(rows[1]) + "\n"
    text += json.dumps(rows[2]) + "\n"
    (good.parent / "part-2.jsonl").write_text(text, encoding="utf-8")
    frame, problems = read_predictions(tmp_path, DAY)
    assert frame.height == 3 + 2
    assert sorted(frame["transaction_id"].to_list()) == ["t0", "t0", "t1", "t2", "t2"]
    assert len(problems) == 2
    assert any("truncated" in p and "part-1" in p for p in problems)
    assert any("line 2" in p and "part-2" in p for p in problems)
    assert set(frame[SOURCE_COLUMN].unique()) == {"part-1.jsonl", "part-2.jsonl"}
    assert "features" not in frame.columns


def test_mistyped_values_become_null_without_losing_the_file(tmp_path: Path) -> None:
    errors = [
        {"request_time": stamp(0), "route": "/score", "status": 500, "error": "boom"},
        {"request_time": stamp(1), "route": "/score", "status": "503", "error": "overloaded"},
        {"request_time": stamp(2), "route": "/score", "status": {"code": 1}, "error": None},
    ]
    write_jsonl(day_folder(tmp_path, ERRORS_LOG, DAY) / "part-1.jsonl", errors)
    frame, problems = read_errors(tmp_path, DAY)
    assert frame["status"].to_list() == [500, 503, None] and problems == []
    assert errors_by_status(frame) == {"4xx": 0, "5xx": 2, "other": 1}
    feedback = [
        {"received_at": stamp(0), "transaction_id": "a", "is_fraud": 1, "source": "x"},
        {"received_at": stamp(1), "transaction_id": "b", "is_fraud": False, "source": "x"},
    ]
    write_jsonl(tmp_path / "feedback" / "feedback.jsonl", feedback)
    events, _ = read_feedback(tmp_path)
    assert dict(zip(events["transaction_id"], events["is_fraud"], strict=True)) == {"a": 1, "b": 0}


def test_latest_label_wins_across_feedback_and_pipeline(tmp_path: Path) -> None:
    feedback = [
        {"received_at": "2026-03-06T10:00:00+00:00", "transaction_id": "a", "is_fraud": True, "source": "analyst"},
        {"received_at": "2026-03-07T10:00:00+00:00", "transaction_id": "a", "is_fraud": False, "source": "analyst"},
        {"received_at": "2026-03-06T00:00:00+00:00", "transaction_id": "b", "is_fraud": False, "source": "analyst"},
        {"received_at": "2026-03-08T00:00:00+00:00", "transaction_id": "c", "is_fraud": True, "source": "analyst"},
    ]  # fmt: skip
    write_jsonl(tmp_path / "feedback" / "feedback.jsonl", feedback, tail='{"received_at": "2')
    events, problems = read_feedback(tmp_path)
    assert events.height == 4 and len(problems) == 1
    pipeline = pl.DataFrame(
        {
            "transaction_id": ["b", "c", "d"],
            "is_fraud": [1, 0, 1],
            "known_at": [
                datetime(2026, 3, 9, tzinfo=UTC),  # after b's feedback: wins
                datetime(2026, 3, 8, tzinfo=UTC),  # same time as c's feedback: feedback wins
                datetime(2026, 3, 9, tzinfo=UTC),
            ],
            "label_source": ["fraud_labels"] * 3,
        }
    )
    labels = latest_labels(pipeline, events)
    got = dict(zip(labels["transaction_id"], labels["is_fraud"], strict=True))
    assert got == {"a": 0, "b": 1, "c": 1, "d": 1}


def test_label_partitions_are_read_from_the_day_on(tmp_path: Path) -> None:
    folder = tmp_path / "fraud_labels"
    folder.mkdir()
    for offset in (-1, 0, 3):
        day = DAY + timedelta(days=offset)
        pl.DataFrame(
            {
                "transaction_id": [f"tx{offset}"],
                "is_fraud": pl.Series([1], dtype=pl.Int8),
                "known_at": [datetime(day.year, day.month, day.day, tzinfo=UTC)],
            }
        ).write_parquet(folder / f"{day.isoformat()}.parquet")
    (folder / ".2026-03-10.parquet.abc.tmp").write_bytes(b"partial")  # a killed writer's file
    labels = read_label_partitions(str(tmp_path), "fraud_labels", DAY)
    assert sorted(labels["transaction_id"]) == ["tx0", "tx3"]
    assert read_label_partitions(str(tmp_path), "missing_asset", DAY).height == 0


def test_join_keeps_one_row_per_transaction_and_variant() -> None:
    predictions = pl.DataFrame(
        [
            prediction("a", score=0.9, decision="decline"),
            prediction("a", score=0.2),  # rescored later (after a restart): first row kept
            prediction("a", variant="shadow", score=0.3),
            prediction("b"),
        ]
    ).select(list(PREDICTION_SCHEMA))
    labels = pl.DataFrame(
        {"transaction_id": ["a"], "is_fraud": pl.Series([1], dtype=pl.Int8)}
    ).with_columns(known_at=None, label_source=None)
    joined = join_labels(predictions, labels)
    assert joined.height == 3
    first = joined.filter((pl.col("transaction_id") == "a") & (pl.col("variant") == "champion"))
    assert first["score"][0] == 0.9 and first["alert"][0]
    assert joined.filter(pl.col("transaction_id") == "b")["is_fraud"][0] is None
