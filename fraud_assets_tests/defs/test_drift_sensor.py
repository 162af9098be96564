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


def test_live_ap_below_floor_retrains_once_enough_is_labelled(tmp_path: Path, instance) -> None:
    from fraud_assets import settings

    assert materialize_day(build_defs(tmp_path / "a"), instance, GOOD).success
    # Live performance is measured on older traffic (its labels have arrived); retraining
    # goes as of the newest day with features.
    week_before = "2026-02-23"
    instance.report_runless_asset_event(
        dg.AssetMaterialization(asset_key="transaction_features", partition=GOOD)
    )

    def live(ap: float, labelled: int) -> None:
        instance.report_runless_asset_event(
            dg.AssetMaterialization(
                asset_key="live_performance",
                partition=week_before,
                metadata={"live_ap_champion": ap, "n_labelled": labelled},
            )
        )

    floor, enough = settings.LIVE_AP_FLOOR, settings.LIVE_MIN_LABELLED
    live(floor / 2, enough - 1)  # too few labels to judge
    live(floor + 0.1, enough)  # healthy
    first = _tick(instance, None)
    assert first.run_requests == []
    live(floor / 2, enough)
    second = _tick(instance, first.cursor)
    assert [(r.run_key, r.partition_key, r.tags["trigger"]) for r in second.run_requests] == [
        (f"live-ap-{week_before}", GOOD, "live_performance")
    ]
    assert _tick(instance, second.cursor).run_requests == []


def test_schedules_target_the_previous_day_once(instance) -> None:
    from datetime import datetime

    from fraud_assets.defs.automation import daily_pipeline_schedule, daily_retraining_schedule

    @dg.op
    def noop() -> None: ...

    @dg.job
    def launched() -> None:
        noop()

    tick = datetime(2026, 3, 5, 1, 0)
    for schedule, prefix in (
        (daily_pipeline_schedule, "daily"),
        (daily_retraining_schedule, "retrain"),
    ):
        context = dg.build_schedule_context(instance=instance, scheduled_execution_time=tick)
        request = schedule(context)
        assert request.partition_key == "2026-03-04"
        assert request.run_key == f"{prefix}-2026-03-04"
        # Once the day's run exists, later ticks (any minute of a tightened cron) skip it.
        tags = {
            "dagster/schedule_name": schedule.name,
            "dagster/partition": "2026-03-04",
            **request.tags,  # the daemon puts a request's tags on its run
        }
        assert launched.execute_in_process(instance=instance, tags=tags).success
        again = schedule(
            dg.build_schedule_context(instance=instance, scheduled_execution_time=tick)
        )
        assert isinstance(again, dg.SkipReason), again


def test_live_refresh_reruns_days_whose_labels_matured(instance) -> None:
    from datetime import datetime

    from fraud_assets.defs.automation import live_refresh_schedule

    tick = datetime(2026, 3, 31, 1, 0)
    context = dg.build_schedule_context(instance=instance, scheduled_execution_time=tick)
    requests = list(live_refresh_schedule(context))
    assert [(r.partition_key, r.tags["label_age"]) for r in requests] == [
        ("2026-03-24", "7"),
        ("2026-03-01", "30"),
    ]
