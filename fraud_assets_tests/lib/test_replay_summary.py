"""The replay's summary: policies compared with the static model on the days after a drift."""

from __future__ import annotations

from datetime import date, timedelta

import polars as pl
import pytest

from fraud_assets.replay import default_drifts, summary


def _days(policy: str, start: date, n: int, tp: int, fp: int, frauds: int = 10) -> list[dict]:
    return [
        {
            "policy": policy,
            "day": str(start + timedelta(days=i)),
            "true_positives": tp,
            "false_positives": fp,
            "frauds": frauds,
            "alerts": tp + fp,
            "fraud_amount_caught": 10.0 * tp,
            "fraud_amount_missed": 10.0 * (frauds - tp),
        }
        for i in range(n)
    ]


def test_gains_are_over_the_static_model_from_each_drift_to_the_next() -> None:
    start = date(2026, 3, 1)
    first = {"kind": "covariate", "start": str(start + timedelta(days=5))}
    second = {"kind": "new_fraud_pattern", "start": str(start + timedelta(days=30))}
    rows = (
        _days("static", start, 40, tp=4, fp=20)
        + _days("drift", start, 5, tp=4, fp=20)  # before the drift: the same
        + _days("drift", start + timedelta(days=5), 25, tp=6, fp=10)
        + _days("drift", start + timedelta(days=30), 10, tp=2, fp=20)  # worse after the 2nd
    )
    table = summary(pl.DataFrame(rows), [first, second])
    got = {
        r["policy"]: r
        for r in table.filter(pl.col("drift").str.starts_with("cov")).iter_rows(named=True)
    }
    assert got["static"]["days"] == got["drift"]["days"] == 25
    assert got["drift"]["detection_rate"] == pytest.approx(0.6)
    assert got["drift"]["detection_gain_pct"] == pytest.approx(50.0)  # 0.6 vs 0.4
    assert got["drift"]["false_positive_change_pct"] == pytest.approx(-50.0)  # 10 vs 20 a day
    assert got["static"]["detection_gain_pct"] == pytest.approx(0.0)
    later = table.filter(pl.col("drift").str.starts_with("new"))
    assert later["days"].to_list() == [10, 10]  # to the end of the replay
    assert later.filter(pl.col("policy") == "drift")["detection_gain_pct"][0] == pytest.approx(-50)
    assert list(table["policy"]) == ["static", "drift", "static", "drift"]


def test_default_drifts_are_two_scenarios_inside_the_replay() -> None:
    first = date(2026, 1, 1)
    drifts = default_drifts(first, 90)
    starts = [date.fromisoformat(d["start"]) for d in drifts]
    assert [d["kind"] for d in drifts] == ["covariate", "new_fraud_pattern"]
    assert first < starts[0] < starts[1] < first + timedelta(days=90 - 28)  # a month after
