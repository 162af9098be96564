"""Serving figures on hand-built logs: latency percentiles over requests, error rate."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from fraud_assets.lib.contracts import ERRORS_LOG, day_folder
from fraud_assets.lib.monitoring import ALL
from fraud_assets.lib.monitoring.logs import (
    ERROR_SCHEMA,
    read_errors,
    read_feedback,
    read_predictions,
)
from fraud_assets.lib.monitoring.serving import error_rate, errors_by_status, serving_metrics
from fraud_assets_tests.lib.monitoring.helpers import (
    DAY,
    prediction,
    stamp,
    write_jsonl,
    write_predictions,
)


def test_missing_logs_are_empty_not_errors(tmp_path: Path) -> None:
    predictions, p1 = read_predictions(tmp_path, DAY)
    errors, p2 = read_errors(tmp_path, DAY)
    feedback, p3 = read_feedback(tmp_path)
    assert predictions.height == errors.height == feedback.height == 0
    assert p1 == p2 == p3 == []
    table = serving_metrics(predictions, errors)
    overall = table.filter(pl.col("variant") == ALL).row(0, named=True)
    assert overall["requests"] == 0
    assert overall["latency_p99_ms"] is None
    assert math.isnan(error_rate(0, 0))


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
    write_jsonl(day_folder(tmp_path, ERRORS_LOG, DAY) / "part-9.jsonl", errors)
    predictions, _ = read_predictions(tmp_path, DAY)
    error_rows, _ = read_errors(tmp_path, DAY)
    table = serving_metrics(predictions, error_rows)
    overall = table.filter(pl.col("variant") == ALL).row(0, named=True)
    per_request = np.append(latencies, batch_ms)
    assert overall["requests"] == 41
    assert overall["rows"] == 240
    for q in (50, 95, 99):
        assert overall[f"latency_p{q}_ms"] == pytest.approx(np.percentile(per_request, q))
    assert overall["errors"] == 3
    assert overall["error_rate"] == pytest.approx(3 / (3 + 41))
    assert errors_by_status(error_rows) == {"4xx": 2, "5xx": 1, "other": 0}
    variants = {r["variant"]: r for r in table.iter_rows(named=True)}
    assert variants["champion"]["rows"] == 140 and variants["champion"]["requests"] == 41
    assert variants["challenger"]["rows"] == 100 and variants["challenger"]["requests"] == 1
    assert variants["shadow"]["rows"] == 10 and variants["shadow"]["requests"] == 10
    assert variants["challenger"]["latency_p50_ms"] == batch_ms


def test_same_stamp_in_two_processes_is_two_requests(tmp_path: Path) -> None:
    write_predictions(tmp_path, [prediction("a", request_time=stamp(0))], part="part-1")
    write_predictions(tmp_path, [prediction("b", request_time=stamp(0))], part="part-2")
    predictions, _ = read_predictions(tmp_path, DAY)
    table = serving_metrics(predictions, pl.DataFrame(schema=ERROR_SCHEMA))
    assert table.filter(pl.col("variant") == ALL)["requests"][0] == 2
