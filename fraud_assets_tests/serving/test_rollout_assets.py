"""The Dagster side of the control plane against a real running service: the rollout asset
switches every worker and records it, the terminal refresh reaches it, and the
``rollback_champion`` job's pointer step brings the old bundle back."""

from __future__ import annotations

import time
from datetime import date
from pathlib import Path

import dagster as dg
import httpx
import polars as pl
import pytest

from fraud_assets.defs.deployment.serving import (
    RecalibrationConfig,
    RolloutConfig,
    _served_probabilities,
    alert_thresholds,
    live_terminal_snapshots,
    serving_rollout,
)
from fraud_assets.lib import contracts, control
from fraud_assets.lib.bundle import read_manifest
from fraud_assets.lib.processes import ScoringServer
from fraud_assets.lib.recalibration import alerts_per_day
from fraud_assets.lib.sample_world import World, write_world_bundle
from fraud_assets.lib.store_seed import read_terminals
from fraud_assets.resources.storage import ServingLogs

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]


def fake_bento(world: World, root: Path, versions: tuple[str, str]) -> dict:
    """A folder laid out as a built Bento (``src/`` + the bundle), as ``fraud_bento`` returns."""
    write_world_bundle(
        world, root / "src" / contracts.SERVICE_BUNDLE_DIR, versions=versions, challenger=False
    )
    return {"tag": f"fraud_scoring:{root.name}", "path": str(root)}


def test_rollout_asset_switches_the_running_service_and_records_it(
    world: World, tmp_path: Path
) -> None:
    first = fake_bento(world, tmp_path / "v1", ("1", "2"))
    bundle = Path(first["path"]) / "src" / contracts.SERVICE_BUNDLE_DIR
    server = ScoringServer(bundle, tmp_path / "state", tmp_path / "home", None)
    server.start()
    logs = ServingLogs(state_root=str(server.state))
    try:
        second = fake_bento(world, tmp_path / "v2", ("4", "5"))
        context = dg.build_asset_context(partition_key="2026-03-07")
        result = serving_rollout(
            context, config=RolloutConfig(timeout_s=30), serving_logs=logs, fraud_bento=second
        )
        meta = {k: getattr(v, "value", v) for k, v in result.metadata.items()}
        assert meta["workers_switched"] == 1 and "'1'" in meta["from_versions"]
        assert "'4'" in meta["to_versions"] and meta["seconds"] < 30
        models = httpx.get(f"{server.url}/models").json()
        assert models["variants"]["champion"]["version"] == "4"
        new_id = read_manifest(Path(second["path"]) / "src" / contracts.SERVICE_BUNDLE_DIR)
        assert models["bundle_id"] == new_id["bundle_id"]

        # The daily refresh: fresher terminal snapshots reach the worker without a Bento.
        terminals = read_terminals(
            bundle / contracts.BUNDLE_STORE_DIR / contracts.BUNDLE_TERMINALS_FILE
        )
        store = {"as_of": "2026-03-09", "terminals": terminals}
        live_terminal_snapshots(context, serving_logs=logs, online_feature_store=store)
        for _ in range(50):
            status = httpx.get(f"{server.url}/readyz").json()
            if status["store_as_of"] == "2026-03-09":
                break
            time.sleep(0.1)
        assert status["store_as_of"] == date(2026, 3, 9).isoformat()

        # Rolling back the pointer (what `cli rollback` and `rollback_champion` do).
        pointer = control.roll_back(server.state, reason="test")
        assert control.wait_for_workers(server.state, pointer["bundle_id"], 10)[0]
        assert httpx.get(f"{server.url}/models").json()["variants"]["champion"]["version"] == "1"
    finally:
        server.stop()


def _drifted(day: pl.DataFrame) -> pl.DataFrame:
    """The day as a compromise wave would make it: every other transaction at a risky
    terminal, for five times its usual amount."""
    wave = pl.int_range(pl.len()) % 2 == 0
    risky = [c for c in day.columns if c.startswith("terminal_risk_")]
    return day.with_columns(
        pl.when(wave).then(pl.col("amount") * 5).otherwise(pl.col("amount")).alias("amount"),
        *(pl.when(wave).then(0.5).otherwise(pl.col(c)).alias(c) for c in risky),
    )


def _served_review(url: str) -> float:
    return httpx.get(f"{url}/models").json()["variants"]["champion"]["thresholds"]["review"]


def test_recalibration_holds_a_drifted_day_to_the_review_capacity_and_rolls_back(
    world: World, tmp_path: Path
) -> None:
    """On a drifted day the review threshold rises just enough for the capacity, the running
    service decides with it within seconds, a second pass changes nothing, and a rollback of
    the pointer restores the bundle's threshold."""
    bento = fake_bento(world, tmp_path / "v1", ("1", "2"))
    bundle = Path(bento["path"]) / "src" / contracts.SERVICE_BUNDLE_DIR
    manifest = read_manifest(bundle)
    packaged = manifest["variants"]["champion"]["thresholds"]["review"]
    day = _drifted(world.day_features)
    before = alerts_per_day(_served_probabilities(bundle, manifest, "champion", day), packaged)
    assert before >= 6, "the drifted day should raise alerts at the packaged threshold"
    capacity = before // 3
    server = ScoringServer(bundle, tmp_path / "state", tmp_path / "home", None)
    server.start()
    logs = ServingLogs(state_root=str(server.state))
    try:
        context = dg.build_asset_context(partition_key="2026-03-07")
        config = RecalibrationConfig(alerts_per_day=capacity)
        result = alert_thresholds(
            context, config=config, serving_logs=logs, transaction_features=day
        )
        meta = {k: getattr(v, "value", v) for k, v in result.metadata.items()}
        assert meta["changed"] and meta["champion_alerts_before"] == before
        assert meta["champion_alerts_after"] <= capacity
        new = meta["champion_review_after"]
        assert new > packaged
        pointer = control.current_deployment(server.state)
        assert pointer["thresholds"]["champion"]["review"] == new
        assert pointer["bundle_id"] == manifest["bundle_id"]  # same model, its own change
        for _ in range(50):
            if _served_review(server.url) == new:
                break
            time.sleep(0.1)
        assert _served_review(server.url) == new

        again = alert_thresholds(
            context, config=config, serving_logs=logs, transaction_features=day
        )
        assert again.metadata["changed"] is False

        control.roll_back(server.state, reason="test")
        for _ in range(50):
            if _served_review(server.url) == packaged:
                break
            time.sleep(0.1)
        assert _served_review(server.url) == packaged
    finally:
        server.stop()


def test_a_rollout_no_worker_can_load_is_rolled_back_and_fails(
    world: World, tmp_path: Path
) -> None:
    first = fake_bento(world, tmp_path / "v1", ("1", "2"))
    bundle = Path(first["path"]) / "src" / contracts.SERVICE_BUNDLE_DIR
    server = ScoringServer(bundle, tmp_path / "state", tmp_path / "home", None)
    server.start()
    try:
        broken = fake_bento(world, tmp_path / "v2", ("4", "5"))
        model = Path(broken["path"]) / "src" / contracts.SERVICE_BUNDLE_DIR / "models"
        target = next(model.glob("*.cbm"))
        target.write_bytes(b"\0" * 256 + target.read_bytes()[256:])  # fails its checksum
        context = dg.build_asset_context(partition_key="2026-03-07")
        with pytest.raises(dg.Failure, match="rolled back"):
            serving_rollout(
                context,
                config=RolloutConfig(timeout_s=5),
                serving_logs=ServingLogs(state_root=str(server.state)),
                fraud_bento=broken,
            )
        assert control.current_deployment(server.state)["versions"]["champion"] == "1"
        assert httpx.get(f"{server.url}/models").json()["variants"]["champion"]["version"] == "1"
    finally:
        server.stop()


def test_a_threshold_change_is_validated_whole_and_changes_nothing_when_refused(
    world: World, tmp_path: Path
) -> None:
    bento = fake_bento(world, tmp_path / "v1", ("1", "2"))
    bundle = Path(bento["path"]) / "src" / contracts.SERVICE_BUNDLE_DIR
    state = tmp_path / "state"
    with pytest.raises(control.NoDeployment):
        control.set_thresholds(state, {"champion": {"review": 0.5, "decline": 0.9}}, "t")
    control.set_deployment(state, bundle, reason="first")
    before = control.deployment_file(state).read_bytes()
    bad = [
        {"champion": {"review": 0.9, "decline": 0.5}},  # review above decline
        {"champion": {"review": 0.5, "decline": 1.5}},  # not a probability
        {"champion": {"review": 0.5}},  # decline missing
        {
            "champion": {"review": 0.5, "decline": 0.9},
            "challenger": {"review": 0.1, "decline": 0.2},
        },
    ]
    for thresholds in bad:
        with pytest.raises(ValueError):
            control.set_thresholds(state, thresholds, "t")
        assert control.deployment_file(state).read_bytes() == before
    pointer = control.set_thresholds(state, {"champion": {"review": 0.5, "decline": 0.9}}, "t")
    assert pointer["thresholds"] == {"champion": {"review": 0.5, "decline": 0.9}}
    assert pointer["previous"]["bundle_id"] == pointer["bundle_id"]
    assert "thresholds" not in control.roll_back(state, reason="t")
