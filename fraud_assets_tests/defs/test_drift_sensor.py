"""The drift sensor against a real temporary instance (no mocked events)."""

from __future__ import annotations

from pathlib import Path

import dagster as dg

from fraud_assets.defs.monitoring.sensors import drift_sensor
from fraud_assets_tests.defs.test_ingestion import CorruptSource
from fraud_assets_tests.helpers import build_defs, materialize_day

GOOD, BAD, CALM = "2026-03-02", "2026-03-03", "2026-03-04"


def _drift(instance: dg.DagsterInstance, asset: str, day: str, max_psi: float) -> None:
    instance.report_runless_asset_event(
        dg.AssetMaterialization(asset_key=asset, partition=day, metadata={"max_psi": max_psi})
    )


def _tick(instance: dg.DagsterInstance, cursor: str | None):
    from fraud_assets.definitions import defs

    return drift_sensor.evaluate_tick(
        dg.build_sensor_context(instance=instance, cursor=cursor, definitions=defs)
    )


def test_drift_sensor_sees_every_partition_once_and_respects_failed_checks(
    tmp_path: Path, instance
) -> None:
    assert materialize_day(build_defs(tmp_path / "a"), instance, GOOD).success
    assert materialize_day(build_defs(tmp_path / "a"), instance, CALM).success
    bad = materialize_day(
        build_defs(tmp_path / "b", source=CorruptSource(corruption="nulls")), instance, BAD
    )
    assert not bad.success
    # Three days' drift results land together: the sensor must see all of them.
    _drift(instance, "feature_drift", GOOD, 0.41)
    _drift(instance, "feature_drift", BAD, 0.90)
    _drift(instance, "prediction_drift", CALM, 0.05)
    first = _tick(instance, None)
    assert [r.partition_key for r in first.run_requests] == [GOOD]
    assert first.run_requests[0].run_key == f"drift-{GOOD}"
    assert first.run_requests[0].tags["trigger"] == "feature_drift"
    # Nothing new: no request. The same cause again: the same run key (launched once).
    assert _tick(instance, first.cursor).run_requests == []
    _drift(instance, "prediction_drift", GOOD, 0.30)
    again = _tick(instance, first.cursor)
    assert [r.run_key for r in again.run_requests] == [f"drift-{GOOD}"]
    # A calm day later in time triggers nothing.
    _drift(instance, "feature_drift", CALM, 0.10)
    assert _tick(instance, again.cursor).run_requests == []
