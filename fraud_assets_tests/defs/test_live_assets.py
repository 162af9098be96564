"""serving_metrics, live_performance and business_metrics materialized on hand-built service
logs and label partitions in a temporary lake and serving state."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import dagster as dg
import numpy as np
import polars as pl
import pytest

from fraud_assets.defs.monitoring import live
from fraud_assets.lib.metrics import average_precision
from fraud_assets_tests.helpers import storage_resources

DAY = date(2026, 3, 5)
NEXT = DAY + timedelta(days=1)
ASSETS = [live.serving_metrics, live.live_performance, live.business_metrics]


@pytest.fixture
def places(tmp_path: Path) -> dict[str, Path]:
    return {name: tmp_path / name for name in ("lake", "state", "reports")}


def build_day(state: Path, lake: Path) -> dict:
    """A day of split traffic (champion 300 cards, challenger 100), its labels (pipeline
    partitions two and five days later, plus feedback that overrides one), an error log and a
    truncated last line. Returns the truth the assets should report."""
    rng = np.random.default_rng(7)
    n_champion, n_challenger = 300, 100
    n = n_champion + n_challenger
    y = (rng.random(n) < 0.12).astype(int)
    score = 1 / (1 + np.exp(-(rng.normal(0, 1, n) + 2.0 * y - 2.5)))
    amount = rng.gamma(2.0, 40.0, n).round(2)
    variant = ["champion"] * n_champion + ["challenger"] * n_challenger
    decision = np.where(score >= 0.6, "decline", np.where(score >= 0.3, "review", "approve"))
    latency = rng.lognormal(0.5, 0.4, n).round(3)
    rows = [
        {
            "request_time": (
                datetime(2026, 3, 5, 9, tzinfo=UTC) + timedelta(seconds=i)
            ).isoformat(),
            "transaction_id": f"tx{i}",
            "ts": "2026-03-05T08:00:00+00:00",
            "customer_id": f"c{i}",
            "terminal_id": "t1",
            "amount": float(amount[i]),
            "merchant_category": "grocery",
            "channel": "online",
            "features": {"amount": float(amount[i])},
            "score": float(score[i]),
            "decision": str(decision[i]),
            "model_name": "fraud_model",
            "model_version": "3" if variant[i] == "champion" else "4",
            "variant": variant[i],
            "latency_ms": float(latency[i]),
            "bundle_id": "b1",
        }
        for i in range(n)
    ]
    folder = state / "predictions" / f"date={DAY.isoformat()}"
    folder.mkdir(parents=True)
    text = "".join(json.dumps(r) + "\n" for r in rows)
    (folder / "part-1.jsonl").write_text(text + '{"request_time": "2026-03-05T23:59', "utf-8")
    errors = state / "errors" / f"date={DAY.isoformat()}"
    errors.mkdir(parents=True)
    (errors / "part-1.jsonl").write_text(
        "".join(
            json.dumps({"request_time": "2026-03-05T10:00:00+00:00", "route": "/score", "status": s, "error": "e"})
            + "\n"
            for s in (400, 500)
        ),
        "utf-8",
    )  # fmt: skip
    # Labels: the first 350 transactions known through the pipeline (split over two later
    # partitions), a partition before the day that must be ignored, and feedback.
    labelled = np.arange(n) < 350
    truth = y.copy()
    (lake / "fraud_labels").mkdir(parents=True)
    for day, index in ((DAY + timedelta(days=2), range(0, 200)), (DAY + timedelta(days=5), range(200, 350))):  # fmt: skip
        pl.DataFrame(
            {
                "transaction_id": [f"tx{i}" for i in index],
                "is_fraud": pl.Series([y[i] for i in index], dtype=pl.Int8),
                "known_at": [datetime(day.year, day.month, day.day, tzinfo=UTC)] * len(index),
            }
        ).write_parquet(lake / "fraud_labels" / f"{day.isoformat()}.parquet")
    before = DAY - timedelta(days=1)
    pl.DataFrame(
        {
            "transaction_id": ["tx399"],
            "is_fraud": pl.Series([1], dtype=pl.Int8),
            "known_at": [datetime(before.year, before.month, before.day, tzinfo=UTC)],
        }
    ).write_parquet(lake / "fraud_labels" / f"{before.isoformat()}.parquet")
    flipped = int(np.flatnonzero(y[:300] == 0)[0])  # a genuine champion transaction
    feedback = [
        # Older than its pipeline label: ignored.
        {"received_at": "2026-03-06T00:00:00+00:00", "transaction_id": "tx1", "is_fraud": bool(1 - y[1]), "source": "analyst"},
        # After the pipeline label: wins (an analyst later confirms fraud).
        {"received_at": "2026-03-20T00:00:00+00:00", "transaction_id": f"tx{flipped}", "is_fraud": True, "source": "analyst"},
        # A transaction the pipeline has no label for yet.
        {"received_at": "2026-03-06T00:00:00+00:00", "transaction_id": "tx360", "is_fraud": bool(y[360]), "source": "chargeback"},
    ]  # fmt: skip
    (state / "feedback").mkdir(parents=True)
    (state / "feedback" / "feedback.jsonl").write_text(
        "".join(json.dumps(r) + "\n" for r in feedback), "utf-8"
    )
    truth[flipped] = 1
    labelled[360] = True
    return {
        "y": truth,
        "labelled": labelled,
        "score": score,
        "amount": amount,
        "decision": decision,
        "latency": latency,
        "champion": np.arange(n) < n_champion,
    }


def materialize(
    places: dict[str, Path], instance: dg.DagsterInstance, day: date
) -> dg.ExecuteInProcessResult:
    return dg.materialize(
        ASSETS,
        partition_key=day.isoformat(),
        resources=storage_resources(places["lake"], places["reports"], places["state"]),
        instance=instance,
    )


def metadata(result: dg.ExecuteInProcessResult, asset: str) -> dict:
    (mat,) = result.asset_materializations_for_node(asset)
    return {k: v.value for k, v in mat.metadata.items()}


def test_live_assets_report_the_day_from_logs_and_labels(places, instance) -> None:
    truth = build_day(places["state"], places["lake"])
    result = materialize(places, instance, DAY)
    assert result.success

    serving = metadata(result, "serving_metrics")
    assert serving["requests"] == 400 and serving["rows_scored"] == 400
    assert serving["rows_champion"] == 300 and serving["rows_challenger"] == 100
    assert serving["rows_shadow"] == 0
    assert serving["latency_p99_ms"] == pytest.approx(np.percentile(truth["latency"], 99))
    assert serving["errors"] == 2 and serving["errors_5xx"] == 1
    assert serving["error_rate"] == pytest.approx(2 / 402)
    assert serving["skipped_lines"] == 1
    assert serving["model_versions"] == "champion: 3; challenger: 4"

    perf = metadata(result, "live_performance")
    champ = truth["champion"] & truth["labelled"]
    chall = ~truth["champion"] & truth["labelled"]
    ap_champion = average_precision(truth["y"][champ], truth["score"][champ])
    ap_challenger = average_precision(truth["y"][chall], truth["score"][chall])
    assert isinstance(perf["live_ap_champion"], float)
    assert perf["live_ap_champion"] == pytest.approx(ap_champion)
    assert perf["live_ap_challenger"] == pytest.approx(ap_challenger)
    assert perf["n_labelled"] == int(champ.sum()) and isinstance(perf["n_labelled"], int)
    assert perf["n_labelled_challenger"] == int(chall.sum())
    assert perf["ab_mode"] == "split"
    assert perf["ap_diff"] == pytest.approx(ap_champion - ap_challenger)
    assert perf["ap_diff_ci_low"] < perf["ap_diff"] < perf["ap_diff_ci_high"]
    assert perf["ap_history"].endswith(f"{DAY.isoformat()}.png")
    assert Path(perf["ap_history"]).stat().st_size > 0

    business = metadata(result, "business_metrics")
    y, answered = truth["y"], truth["labelled"]
    alert = truth["decision"] != "approve"
    amount = truth["amount"]
    assert business["fraud_amount_caught"] == pytest.approx(
        amount[answered & alert & (y == 1)].sum()
    )
    assert business["fraud_amount_missed"] == pytest.approx(
        amount[answered & ~alert & (y == 1)].sum()
    )
    declined_genuine = answered & (truth["decision"] == "decline") & (y == 0)
    assert business["false_declines"] == int(declined_genuine.sum())
    assert business["false_decline_amount"] == pytest.approx(amount[declined_genuine].sum())
    assert business["alert_rate"] == pytest.approx(alert.mean())
    champion_caught = amount[champ & alert & (y == 1)].sum()
    assert business["fraud_amount_caught_champion"] == pytest.approx(champion_caught)

    stored = pl.read_parquet(places["lake"] / "live_performance" / f"{DAY.isoformat()}.parquet")
    assert stored["variant"].to_list() == ["champion", "challenger"]
    assert stored["day"].to_list() == [DAY, DAY]

    # The next day has no traffic yet: the assets still succeed, with nothing to report,
    # and the trend plot still shows the day before.
    later = materialize(places, instance, NEXT)
    assert later.success
    empty = metadata(later, "live_performance")
    assert empty["live_ap_champion"] is None and empty["n_labelled"] == 0
    assert empty["ab_mode"] == "none"
    assert Path(empty["ap_history"]).exists()
    assert metadata(later, "serving_metrics")["requests"] == 0
    assert metadata(later, "business_metrics")["fraud_amount_caught"] == 0.0
