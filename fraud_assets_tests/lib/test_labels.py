"""Label events: the label in force, fraud periods with corrections, and label file imports."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest

from fraud_assets.lib.contracts import FEEDBACK_LABELS, PIPELINE_LABELS
from fraud_assets.lib.labels import (
    LABEL_SCHEMA,
    LabelFileError,
    fraud_spans,
    label_events,
    labels_as_of,
    latest_labels,
    read_label_file,
)

T = datetime(2026, 3, 10, tzinfo=UTC)


def _events(rows: list[tuple[str, int, datetime, str]]) -> pl.DataFrame:
    return pl.DataFrame(rows, schema=LABEL_SCHEMA, orient="row")


def test_the_latest_event_is_in_force_and_a_human_wins_a_tie() -> None:
    events = _events(
        [
            ("a", 1, T, PIPELINE_LABELS),
            ("a", 0, T + timedelta(days=2), FEEDBACK_LABELS),  # a correction
            ("b", 0, T, PIPELINE_LABELS),
            ("b", 1, T, FEEDBACK_LABELS),  # same instant: the analyst's label wins
            ("c", 1, T, FEEDBACK_LABELS),
            ("c", 1, T, FEEDBACK_LABELS),  # the same feedback sent twice
        ]
    )
    got = dict(latest_labels(events).select("transaction_id", "is_fraud").iter_rows())
    assert got == {"a": 0, "b": 1, "c": 1}
    # Before the correction was known, "a" was a fraud.
    before = dict(labels_as_of(events, T + timedelta(days=1)).iter_rows())
    assert before == {"a": 1, "b": 1, "c": 1}
    assert labels_as_of(events, T).height == 0  # known_at is exclusive


def test_source_frames_without_a_label_source_are_the_pipelines() -> None:
    source = _events([("a", 1, T, "x")]).drop("label_source")
    assert label_events(source)["label_source"].to_list() == [PIPELINE_LABELS]


def test_fraud_spans_end_at_the_withdrawal_and_restart_when_reasserted() -> None:
    events = _events(
        [
            ("a", 1, T, PIPELINE_LABELS),
            ("a", 1, T + timedelta(days=1), FEEDBACK_LABELS),  # confirmation: same span
            ("a", 0, T + timedelta(days=3), FEEDBACK_LABELS),  # withdrawn
            ("a", 1, T + timedelta(days=5), FEEDBACK_LABELS),  # reasserted: a second span
            ("g", 0, T, PIPELINE_LABELS),  # never a fraud: no span
            ("h", 0, T, PIPELINE_LABELS),
            ("h", 1, T + timedelta(days=1), FEEDBACK_LABELS),  # genuine, then fraud
        ]
    )
    spans = fraud_spans(events).to_dicts()
    assert spans == [
        {"transaction_id": "a", "known_at": T, "until": T + timedelta(days=3)},
        {"transaction_id": "a", "known_at": T + timedelta(days=5), "until": None},
        {"transaction_id": "h", "known_at": T + timedelta(days=1), "until": None},
    ]


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_a_label_file_becomes_feedback_rows(tmp_path: Path) -> None:
    now = datetime(2026, 3, 20, 12, tzinfo=UTC)
    path = _write(
        tmp_path / "chargebacks.csv",
        "transaction_id,is_fraud,known_at,source\n"
        "tx1,1,2026-03-18T09:00:00Z,chargeback\n"
        "tx2,false,,\n",
    )
    rows = read_label_file(path, now)
    assert rows == [
        {
            "received_at": "2026-03-18T09:00:00+00:00",
            "transaction_id": "tx1",
            "is_fraud": True,
            "source": "chargeback",
        },
        {
            "received_at": now.isoformat(),
            "transaction_id": "tx2",
            "is_fraud": False,
            "source": "import:chargebacks.csv",
        },
    ]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("transaction_id,label\ntx1,1\n", "missing ['is_fraud'], unknown ['label']"),
        ("transaction_id,is_fraud\ntx1,1\n,0\n", "row 3: transaction_id is empty"),
        ("transaction_id,is_fraud\ntx1,maybe\n", "row 2: is_fraud 'maybe'"),
        ("transaction_id,is_fraud,known_at\ntx1,1,yesterday\n", "'yesterday' is not RFC 3339"),
        ("transaction_id,is_fraud,known_at\ntx1,1,2026-03-18T09:00:00\n", "has no UTC offset"),
        ("transaction_id,is_fraud,known_at\ntx1,1,2027-01-01T00:00:00Z\n", "in the future"),
        ("transaction_id,is_fraud\n", "no rows"),
    ],
)
def test_a_bad_label_file_is_refused_whole_naming_the_problem(
    tmp_path: Path, text: str, expected: str
) -> None:
    path = _write(tmp_path / "labels.csv", text)
    with pytest.raises(LabelFileError, match=r"labels\.csv") as err:
        read_label_file(path, datetime(2026, 3, 20, tzinfo=UTC))
    assert expected in str(err.value)
