"""The live A/B result from real traffic and real feedback.

A real `bentoml serve` splits cards 50/50 between a good champion and a challenger trained on
shuffled labels (no skill). A simulated day is scored through /score_batch in time order,
every transaction's truth comes back through /feedback, and `live_performance` (a real
Dagster materialization over the service's own logs) must report per-variant AP equal to the
AP computed here from the served scores, and a champion - challenger difference whose 95%
interval lies above zero. `business_metrics` must agree with the served decisions.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import dagster as dg
import httpx
import numpy as np
import polars as pl
import pytest

from fraud_assets.defs.monitoring import live
from fraud_assets.lib.metrics import average_precision
from fraud_assets.lib.processes import ScoringServer
from fraud_assets.lib.sample_world import World, build_world, train_model, write_world_bundle
from fraud_assets_tests.helpers import storage_resources

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]
CHUNK = 200


@pytest.fixture(scope="module")
def world() -> World:
    return build_world(size=0.3)  # ~3,000 transactions and ~30 frauds on the scored day


def _no_skill(world: World) -> object:
    """A challenger that learned nothing: labels shuffled before training."""
    frame = world.day_features.join(
        world.history.select("transaction_id", "is_fraud"), on="transaction_id"
    )
    shuffled = frame.with_columns(
        pl.Series("is_fraud", np.random.default_rng(3).permutation(frame["is_fraud"].to_numpy()))
    )
    return train_model(shuffled, world.features, world.categoricals, seed=3)


def _wire(tx: dict) -> dict:
    out = {k: tx[k] for k in ("transaction_id", "customer_id", "terminal_id", "amount")}
    out["ts"] = tx["ts"].isoformat().replace("+00:00", "Z")
    for name in ("merchant_category", "channel"):
        if name in tx:
            out[name] = tx[name]
    return out


def test_live_ab_result_from_served_traffic_and_feedback(world: World, tmp_path: Path) -> None:
    bad = World(**{**world.__dict__, "challenger": _no_skill(world)})
    bundle = write_world_bundle(bad, tmp_path / "bundle", share=0.5, versions=("1", "2"))
    state = tmp_path / "state"
    server = ScoringServer(bundle, state, tmp_path / "home", admin_key=None)
    day = world.history.filter(pl.col("ts").dt.date() == world.last_day).sort("ts")
    truth = dict(zip(day["transaction_id"], day["is_fraud"].cast(pl.Boolean), strict=True))
    served: list[dict] = []
    server.start()
    try:
        with httpx.Client(base_url=server.url, timeout=60) as client:
            rows = [_wire(tx) for tx in day.to_dicts()]
            for i in range(0, len(rows), CHUNK):
                response = client.post("/score_batch", json={"transactions": rows[i : i + CHUNK]})
                assert response.status_code == 200, response.text
                served += response.json()["results"]
            for tx_id, is_fraud in truth.items():
                response = client.post(
                    "/feedback",
                    json={"transaction_id": tx_id, "is_fraud": is_fraud, "source": "chargeback"},
                )
                assert response.status_code == 200, response.text
    finally:
        server.stop()

    # The log's folder is the request's UTC day; today's partition exists only tomorrow, so
    # the day is moved back one, as if the traffic had been served yesterday.
    today = datetime.now(UTC).date()
    yesterday = (today - timedelta(days=1)).isoformat()
    logged = state / "predictions" / f"date={today.isoformat()}"
    logged.rename(logged.with_name(f"date={yesterday}"))
    result = dg.materialize(
        [live.live_performance, live.business_metrics],
        partition_key=yesterday,
        resources=storage_resources(tmp_path / "lake", tmp_path / "reports", state),
    )
    assert result.success
    meta = {
        k: v.value
        for k, v in result.asset_materializations_for_node("live_performance")[0].metadata.items()
    }

    by_variant = {
        name: [r for r in served if r["variant"] == name] for name in ("champion", "challenger")
    }
    assert all(len(v) > 100 for v in by_variant.values()), {
        k: len(v) for k, v in by_variant.items()
    }
    expected = {
        name: average_precision(
            [truth[r["transaction_id"]] for r in rows], [r["fraud_probability"] for r in rows]
        )
        for name, rows in by_variant.items()
    }
    assert meta["n_labelled"] == len(by_variant["champion"])
    assert meta["live_ap_champion"] == pytest.approx(expected["champion"], abs=1e-9)
    assert meta["live_ap_challenger"] == pytest.approx(expected["challenger"], abs=1e-9)
    assert meta["ap_diff"] == pytest.approx(expected["champion"] - expected["challenger"])
    assert meta["ab_mode"] == "split"
    assert 0 < meta["ap_diff_ci_low"] <= meta["ap_diff"] <= meta["ap_diff_ci_high"], meta

    business = {
        k: v.value
        for k, v in result.asset_materializations_for_node("business_metrics")[0].metadata.items()
    }
    amounts = dict(zip(day["transaction_id"], day["amount"], strict=True))
    caught = sum(
        amounts[r["transaction_id"]]
        for r in served
        if r["decision"] != "approve" and truth[r["transaction_id"]]
    )
    alerts = sum(r["decision"] != "approve" for r in served)
    assert business["fraud_amount_caught"] == pytest.approx(caught, rel=1e-9)
    assert business["alert_rate"] == pytest.approx(alerts / len(served), rel=1e-9)
