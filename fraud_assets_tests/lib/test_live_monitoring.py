"""Live monitoring logic on hand-built service logs: serving figures, label join, live AP and
its A/B bootstrap, business figures."""

from __future__ import annotations

import json
import math
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest

from fraud_assets.lib import live_monitoring as lm
from fraud_assets.lib.metrics import average_precision

DAY = date(2026, 3, 5)


def prediction(
    tx: str,
    *,
    variant: str = "champion",
    score: float = 0.1,
    decision: str = "approve",
    latency_ms: float = 1.0,
    request_time: str = "2026-03-05T10:00:00+00:00",
    amount: float = 10.0,
    version: str = "1",
) -> dict[str, Any]:
    """A prediction-log row as the service writes it (features and all)."""
    return {
        "request_time": request_time,
        "transaction_id": tx,
        "ts": "2026-03-05T09:59:59+00:00",
        "customer_id": f"c-{tx}",
        "terminal_id": "t-1",
        "amount": amount,
        "merchant_category": "grocery",
        "channel": "pos",
        "features": {"amount": amount, "tx_count_1d": 3},
        "score": score,
        "decision": decision,
        "model_name": "fraud_model",
        "model_version": version,
        "variant": variant,
        "latency_ms": latency_ms,
        "bundle_id": "b-1",
    }


def write_jsonl(path: Path, rows: list[dict[str, Any]], tail: str = "") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    text = "".join(json.dumps(r) + "\n" for r in rows) + tail
    path.write_text(text, encoding="utf-8")
    return path


def write_predictions(state: Path, rows: list[dict[str, Any]], part: str = "part-1") -> Path:
    return write_jsonl(lm.day_folder(state, "predictions", DAY) / f"{part}.jsonl", rows)


def stamp(i: int) -> str:
    return (datetime(2026, 3, 5, 8, tzinfo=UTC) + timedelta(seconds=i)).isoformat()


def joined_frame(
    y: np.ndarray,
    score: np.ndarray,
    *,
    variant: str = "champion",
    prefix: str = "t",
    alert: np.ndarray | None = None,
    decision: list[str] | None = None,
    amount: np.ndarray | None = None,
) -> pl.DataFrame:
    """Labelled predictions of one variant, shaped like `join_labels` output."""
    n = len(y)
    alert = (score >= 0.5) if alert is None else alert
    if decision is None:
        decision = ["review" if a else "approve" for a in alert]
    return pl.DataFrame(
        {
            "transaction_id": [f"{prefix}{i}" for i in range(n)],
            "amount": amount if amount is not None else np.full(n, 10.0),
            "score": score.astype(float),
            "decision": decision,
            "model_version": ["1"] * n,
            "variant": [variant] * n,
            "is_fraud": pl.Series(y, dtype=pl.Int8),
            "alert": [d != "approve" for d in decision],
        }
    )


# --------------------------------------------------------------------------- reading


def test_truncated_last_line_and_a_corrupt_middle_line_are_skipped(tmp_path: Path) -> None:
    rows = [prediction(f"t{i}", request_time=stamp(i)) for i in range(3)]
    good = write_jsonl(
        lm.day_folder(tmp_path, "predictions", DAY) / "part-1.jsonl", rows, tail='{"request_ti'
    )
    # A reused pid appended to a crashed file: the cut line and the next row share a line.
    text = json.dumps(rows[0]) + "\n" + '{"request_time": "20' + json.dumps(rows[1]) + "\n"
    text += json.dumps(rows[2]) + "\n"
    (good.parent / "part-2.jsonl").write_text(text, encoding="utf-8")
    frame, problems = lm.read_predictions(tmp_path, DAY)
    assert frame.height == 3 + 2
    assert sorted(frame["transaction_id"].to_list()) == ["t0", "t0", "t1", "t2", "t2"]
    assert len(problems) == 2
    assert any("truncated" in p and "part-1" in p for p in problems)
    assert any("line 2" in p and "part-2" in p for p in problems)
    assert set(frame[lm.SOURCE_COLUMN].unique()) == {"part-1.jsonl", "part-2.jsonl"}
    assert "features" not in frame.columns


def test_mistyped_values_become_null_without_losing_the_file(tmp_path: Path) -> None:
    errors = [
        {"request_time": stamp(0), "route": "/score", "status": 500, "error": "boom"},
        {"request_time": stamp(1), "route": "/score", "status": "503", "error": "overloaded"},
        {"request_time": stamp(2), "route": "/score", "status": {"code": 1}, "error": None},
    ]
    write_jsonl(lm.day_folder(tmp_path, "errors", DAY) / "part-1.jsonl", errors)
    frame, problems = lm.read_errors(tmp_path, DAY)
    assert frame["status"].to_list() == [500, 503, None] and problems == []
    assert lm.errors_by_status(frame) == {"4xx": 0, "5xx": 2, "other": 1}
    feedback = [
        {"received_at": stamp(0), "transaction_id": "a", "is_fraud": 1, "source": "x"},
        {"received_at": stamp(1), "transaction_id": "b", "is_fraud": False, "source": "x"},
    ]
    write_jsonl(tmp_path / "feedback" / "feedback.jsonl", feedback)
    events, _ = lm.read_feedback(tmp_path)
    assert dict(zip(events["transaction_id"], events["is_fraud"], strict=True)) == {"a": 1, "b": 0}


def test_missing_logs_are_empty_not_errors(tmp_path: Path) -> None:
    predictions, p1 = lm.read_predictions(tmp_path, DAY)
    errors, p2 = lm.read_errors(tmp_path, DAY)
    feedback, p3 = lm.read_feedback(tmp_path)
    assert predictions.height == errors.height == feedback.height == 0
    assert p1 == p2 == p3 == []
    table = lm.serving_metrics(predictions, errors)
    overall = table.filter(pl.col("variant") == lm.ALL).row(0, named=True)
    assert overall["requests"] == 0
    assert overall["latency_p99_ms"] is None
    assert math.isnan(lm.error_rate(0, 0))


# --------------------------------------------------------------------------- serving


def test_latency_percentiles_are_over_requests_and_error_rate(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    latencies = rng.lognormal(0.0, 0.8, 40).round(3)
    rows = []
    for i, ms in enumerate(latencies):
        rows.append(prediction(f"s{i}", latency_ms=float(ms), request_time=stamp(i)))
    # One batch request of 200 rows: one stamp, one latency, counted as one request.
    batch_ms = 250.0
    rows += [
        prediction(f"b{j}", latency_ms=batch_ms, request_time=stamp(1000), variant=variant)
        for j in range(200)
        for variant in (("champion",) if j % 2 else ("challenger",))
    ]
    # Shadow rows duplicate champion requests: not extra requests, not extra scored rows.
    rows += [
        prediction(f"s{i}", variant="shadow", latency_ms=float(latencies[i]), request_time=stamp(i))
        for i in range(10)
    ]
    write_predictions(tmp_path, rows)
    errors = [
        {"request_time": stamp(i), "route": "/score", "status": s, "error": "x"}
        for i, s in enumerate([400, 422, 503])
    ]
    write_jsonl(lm.day_folder(tmp_path, "errors", DAY) / "part-9.jsonl", errors)
    predictions, _ = lm.read_predictions(tmp_path, DAY)
    error_rows, _ = lm.read_errors(tmp_path, DAY)
    table = lm.serving_metrics(predictions, error_rows)
    overall = table.filter(pl.col("variant") == lm.ALL).row(0, named=True)
    per_request = np.append(latencies, batch_ms)
    assert overall["requests"] == 41
    assert overall["rows"] == 240
    for q in (50, 95, 99):
        assert overall[f"latency_p{q}_ms"] == pytest.approx(np.percentile(per_request, q))
    assert overall["errors"] == 3
    assert overall["error_rate"] == pytest.approx(3 / (3 + 41))
    assert lm.errors_by_status(error_rows) == {"4xx": 2, "5xx": 1, "other": 0}
    variants = {r["variant"]: r for r in table.iter_rows(named=True)}
    assert variants["champion"]["rows"] == 140 and variants["champion"]["requests"] == 41
    assert variants["challenger"]["rows"] == 100 and variants["challenger"]["requests"] == 1
    assert variants["shadow"]["rows"] == 10 and variants["shadow"]["requests"] == 10
    assert variants["challenger"]["latency_p50_ms"] == batch_ms


def test_same_stamp_in_two_processes_is_two_requests(tmp_path: Path) -> None:
    write_predictions(tmp_path, [prediction("a", request_time=stamp(0))], part="part-1")
    write_predictions(tmp_path, [prediction("b", request_time=stamp(0))], part="part-2")
    predictions, _ = lm.read_predictions(tmp_path, DAY)
    table = lm.serving_metrics(predictions, pl.DataFrame(schema=lm.ERROR_SCHEMA))
    assert table.filter(pl.col("variant") == lm.ALL)["requests"][0] == 2


# --------------------------------------------------------------------------- labels


def test_latest_label_wins_across_feedback_and_pipeline(tmp_path: Path) -> None:
    feedback = [
        {"received_at": "2026-03-06T10:00:00+00:00", "transaction_id": "a", "is_fraud": True, "source": "analyst"},
        {"received_at": "2026-03-07T10:00:00+00:00", "transaction_id": "a", "is_fraud": False, "source": "analyst"},
        {"received_at": "2026-03-06T00:00:00+00:00", "transaction_id": "b", "is_fraud": False, "source": "analyst"},
        {"received_at": "2026-03-08T00:00:00+00:00", "transaction_id": "c", "is_fraud": True, "source": "analyst"},
    ]  # fmt: skip
    write_jsonl(tmp_path / "feedback" / "feedback.jsonl", feedback, tail='{"received_at": "2')
    events, problems = lm.read_feedback(tmp_path)
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
    labels = lm.latest_labels(pipeline, events)
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
    labels = lm.read_label_partitions(str(tmp_path), "fraud_labels", DAY)
    assert sorted(labels["transaction_id"]) == ["tx0", "tx3"]
    assert lm.read_label_partitions(str(tmp_path), "missing_asset", DAY).height == 0


def test_join_keeps_one_row_per_transaction_and_variant() -> None:
    predictions = pl.DataFrame(
        [
            prediction("a", score=0.9, decision="decline"),
            prediction("a", score=0.2),  # rescored later (after a restart): first row kept
            prediction("a", variant="shadow", score=0.3),
            prediction("b"),
        ]
    ).select(list(lm.PREDICTION_SCHEMA))
    labels = pl.DataFrame(
        {"transaction_id": ["a"], "is_fraud": pl.Series([1], dtype=pl.Int8)}
    ).with_columns(known_at=None, label_source=None)
    joined = lm.join_labels(predictions, labels)
    assert joined.height == 3
    first = joined.filter((pl.col("transaction_id") == "a") & (pl.col("variant") == "champion"))
    assert first["score"][0] == 0.9 and first["alert"][0]
    assert joined.filter(pl.col("transaction_id") == "b")["is_fraud"][0] is None


# --------------------------------------------------------------------------- AP and bootstrap


def test_fast_average_precision_matches_metrics_with_ties_and_weights() -> None:
    rng = np.random.default_rng(0)
    for n in (7, 60, 500):
        y = (rng.random(n) < 0.2).astype(int)
        y[:2] = [1, 0]
        score = np.round(rng.random(n) + 0.3 * y, 1)  # many ties
        assert lm.fast_average_precision(y, score) == pytest.approx(average_precision(y, score))
        w = np.bincount(rng.integers(0, n, n), minlength=n)
        expanded = average_precision(np.repeat(y, w), np.repeat(score, w))
        assert lm.fast_average_precision(y, score, w.astype(float)) == pytest.approx(expanded)
    assert math.isnan(lm.fast_average_precision(np.zeros(5), np.arange(5.0)))


def synthetic(n: int, separation: float, seed: int, fraud_rate: float = 0.1):
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < fraud_rate).astype(np.int8)
    score = 1 / (1 + np.exp(-(rng.normal(0, 1, n) + separation * y - 2)))
    return y, score


def test_per_variant_ap_precision_recall_match_metrics() -> None:
    y1, s1 = synthetic(400, 1.0, 1)
    y2, s2 = synthetic(300, 2.0, 2)
    joined = pl.concat(
        [joined_frame(y1, s1, prefix="a"), joined_frame(y2, s2, variant="challenger", prefix="b")]
    )
    # Some rows without labels yet: they count in rows and alert rate, not in AP.
    unlabelled = joined_frame(np.zeros(100), np.full(100, 0.7), prefix="u").with_columns(
        is_fraud=pl.lit(None, dtype=pl.Int8)
    )
    table = lm.live_performance(pl.concat([joined, unlabelled]), n_boot=200)
    rows = {r["variant"]: r for r in table.iter_rows(named=True)}
    champion, challenger = rows["champion"], rows["challenger"]
    assert champion["ap"] == pytest.approx(average_precision(y1, s1))
    assert challenger["ap"] == pytest.approx(average_precision(y2, s2))
    assert champion["n_labelled"] == 400 and champion["rows"] == 500
    assert champion["labelled_share"] == pytest.approx(0.8)
    alert = s1 >= 0.5
    tp = int((alert & (y1 == 1)).sum())
    assert champion["precision_at_alert"] == pytest.approx(tp / alert.sum())
    assert champion["recall_at_alert"] == pytest.approx(tp / y1.sum())
    assert champion["alert_rate"] == pytest.approx((alert.sum() + 100) / 500)
    assert champion["comparison"] is None
    assert challenger["comparison"] == "split"
    assert challenger["ap_diff"] == pytest.approx(champion["ap"] - challenger["ap"])
    head = lm.headline(table)
    assert head["live_ap_champion"] == pytest.approx(champion["ap"])
    assert head["n_labelled"] == 400
    assert head["ab_mode"] == "split"


def test_split_bootstrap_ci_excludes_zero_when_the_challenger_is_clearly_better() -> None:
    y1, s1 = synthetic(2000, 0.5, 11)
    y2, s2 = synthetic(2000, 3.0, 12)
    a = lm.Sample(y1.astype(float), s1, (s1 >= 0.3).astype(float))
    b = lm.Sample(y2.astype(float), s2, (s2 >= 0.3).astype(float))
    diffs = lm.bootstrap_split(a, b, n_boot=300)
    ap = diffs["ap"]
    assert ap.value == pytest.approx(average_precision(y1, s1) - average_precision(y2, s2))
    assert ap.value < 0 and ap.ci_high < 0 and ap.excludes_zero
    assert diffs["recall"].ci_high < 0  # the better model also catches more at its alert rule
    # Fixed seed: the same interval every time.
    assert lm.bootstrap_split(a, b, n_boot=300)["ap"] == ap


def test_split_bootstrap_ci_includes_zero_when_the_variants_are_identical() -> None:
    y1, s1 = synthetic(1500, 1.5, 21)
    y2, s2 = synthetic(1500, 1.5, 22)  # same model, different cards
    a = lm.Sample(y1.astype(float), s1, (s1 >= 0.3).astype(float))
    b = lm.Sample(y2.astype(float), s2, (s2 >= 0.3).astype(float))
    diffs = lm.bootstrap_split(a, b, n_boot=300)
    assert diffs["ap"].ci_low < 0 < diffs["ap"].ci_high
    assert not diffs["ap"].excludes_zero
    assert diffs["recall"].ci_low < 0 < diffs["recall"].ci_high


def test_shadow_mode_uses_a_paired_bootstrap() -> None:
    rng = np.random.default_rng(5)
    y, champion = synthetic(1500, 1.5, 31)
    # The challenger: the same ranking plus a little extra signal, on the same transactions.
    logit = np.log(champion / (1 - champion))
    challenger = 1 / (1 + np.exp(-(logit + 0.15 * y + rng.normal(0, 0.05, y.size))))
    shadow = joined_frame(y, challenger, variant="shadow")
    joined = pl.concat([joined_frame(y, champion), shadow])
    table = lm.live_performance(joined, n_boot=300)
    row = table.filter(pl.col("variant") == "shadow").row(0, named=True)
    assert row["comparison"] == "paired" and row["n_compared"] == y.size
    expected = average_precision(y, champion) - average_precision(y, challenger)
    assert row["ap_diff"] == pytest.approx(expected)
    assert row["ap_diff_ci_high"] < 0  # a small but consistent gain is detected...
    # ...which an unpaired bootstrap of the same rows misses (its interval is much wider).
    unpaired = lm.bootstrap_split(
        lm.Sample(y.astype(float), champion, np.zeros(y.size)),
        lm.Sample(y.astype(float), challenger, np.zeros(y.size)),
        n_boot=300,
    )["ap"]
    paired_width = row["ap_diff_ci_high"] - row["ap_diff_ci_low"]
    assert unpaired.ci_high - unpaired.ci_low > 4 * paired_width
    assert unpaired.ci_low < 0 < unpaired.ci_high
    # Identical scores in shadow: the paired difference is exactly zero in every draw.
    same = lm.bootstrap_paired(y, champion, champion, y, y, n_boot=100)
    assert same["ap"].value == 0 and same["ap"].ci_low == 0 == same["ap"].ci_high
    head = lm.headline(table)
    assert head["ab_mode"] == "paired" and head["live_ap_challenger"] == pytest.approx(row["ap"])


def test_no_labels_one_class_and_no_challenger_are_handled() -> None:
    n = 50
    none = joined_frame(np.zeros(n), np.linspace(0, 1, n)).with_columns(
        is_fraud=pl.lit(None, dtype=pl.Int8)
    )
    head = lm.headline(lm.live_performance(none))
    assert head["live_ap_champion"] is None and head["n_labelled"] == 0
    assert head["ab_mode"] == "none" and "ap_diff" not in head
    one_class = joined_frame(np.zeros(n), np.linspace(0, 1, n))
    table = lm.live_performance(one_class)
    assert table["ap"][0] is None and table["recall_at_alert"][0] is None
    assert lm.headline(table)["n_labelled"] == n
    # A challenger with only genuine labels: a difference without meaning, no interval.
    y, s = synthetic(200, 2.0, 41)
    joined = pl.concat(
        [
            joined_frame(y, s),
            joined_frame(np.zeros(n), np.linspace(0, 1, n), variant="challenger", prefix="c"),
        ]
    )
    head = lm.headline(lm.live_performance(joined, n_boot=50))
    assert head["ab_mode"] == "split" and head["live_ap_challenger"] is None
    assert head["ap_diff"] is None and head["ap_diff_ci_low"] is None
    assert lm.live_performance(joined.head(0)).height == 0


# --------------------------------------------------------------------------- business


def test_business_figures_by_hand() -> None:
    joined = pl.DataFrame(
        {
            "transaction_id": ["1", "2", "3", "4", "5", "6", "1", "7"],
            "variant": ["champion"] * 4 + ["challenger"] * 2 + ["shadow", "champion"],
            "amount": [100.0, 50.0, 30.0, 20.0, 7.0, 3.0, 100.0, 5.0],
            "decision": ["decline", "approve", "review", "decline", "decline", "approve", "approve", "review"],
            "is_fraud": pl.Series([1, 1, 0, 0, 1, 0, 1, None], dtype=pl.Int8),
        }
    ).with_columns(alert=pl.col("decision") != "approve")  # fmt: skip
    table = lm.business_metrics(joined)
    rows = {r["variant"]: r for r in table.iter_rows(named=True)}
    assert table["variant"].to_list() == ["all", "champion", "challenger", "shadow"]
    champion = rows["champion"]
    assert champion["fraud_amount_caught"] == 100.0  # tx 1 declined
    assert champion["fraud_amount_missed"] == 50.0  # tx 2 approved
    assert champion["false_declines"] == 1 and champion["false_decline_amount"] == 20.0  # tx 4
    assert champion["alerts"] == 4 and champion["alert_rate"] == pytest.approx(4 / 5)
    assert champion["n_labelled"] == 4 and champion["rows"] == 5
    challenger = rows["challenger"]
    assert challenger["fraud_amount_caught"] == 7.0 and challenger["false_declines"] == 0
    total = rows["all"]  # champion + challenger; the shadow row is not real traffic
    assert total["rows"] == 7
    assert total["fraud_amount_caught"] == 107.0 and total["fraud_amount_missed"] == 50.0
    assert total["false_declines"] == 1 and total["false_decline_amount"] == 20.0
    assert total["alerts"] == 5 and total["alert_rate"] == pytest.approx(5 / 7)
    assert rows["shadow"]["fraud_amount_missed"] == 100.0
