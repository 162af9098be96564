"""The drift sensor against a real temporary instance (no mocked events)."""

from __future__ import annotations

import json
from datetime import date, timedelta
from pathlib import Path

import dagster as dg
import pytest

from fraud_assets.defs.monitoring.sensors import drift_sensor
from fraud_assets_tests.defs.test_ingestion import CorruptSource
from fraud_assets_tests.helpers import build_defs, materialize_day

GOOD, BAD, CALM = "2026-03-02", "2026-03-03", "2026-03-04"


def _drift(instance: dg.DagsterInstance, asset: str, day: str, max_psi: float) -> None:
    instance.report_runless_asset_event(
        dg.AssetMaterialization(asset_key=asset, partition=day, metadata={"max_psi": max_psi})
    )


def _tick(instance: dg.DagsterInstance, cursor: str | None, lake: Path):
    from fraud_assets.definitions import defs

    return drift_sensor.evaluate_tick(
        dg.build_sensor_context(
            instance=instance, cursor=cursor, definitions=defs, resources={"storage": _lake(lake)}
        )
    )


def _lake(lake: Path):
    from fraud_assets.resources.storage import LakeStorage

    return LakeStorage(data_root=str(lake), reports_root=str(lake / "reports"))


def _requests(result) -> list[tuple[str, str, str]]:
    return [(r.job_name, r.run_key, r.partition_key) for r in result.run_requests]


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
    first = _tick(instance, None, tmp_path / "a")
    # At once: the thresholds of the drifted day; no retraining before post-drift labels.
    assert _requests(first) == [("drift_response", f"recalibrate-{GOOD}", GOOD)]
    assert first.run_requests[0].tags["trigger"] == "feature_drift"
    # Nothing new: no request. The same cause again: the same run key (launched once).
    assert _tick(instance, first.cursor, tmp_path / "a").run_requests == []
    _drift(instance, "prediction_drift", GOOD, 0.30)
    again = _tick(instance, first.cursor, tmp_path / "a")
    assert [r.run_key for r in again.run_requests] == [f"recalibrate-{GOOD}"]
    # A calm day later in time triggers nothing.
    _drift(instance, "feature_drift", CALM, 0.10)
    assert _tick(instance, again.cursor, tmp_path / "a").run_requests == []


def test_drift_retraining_waits_for_mature_post_drift_labels_then_launches_once(
    tmp_path: Path, instance, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A drift episode waits in the cursor until enough post-drift days are mature and
    enough post-drift frauds are labelled, then launches one training run as of the newest
    featured day with the post-drift split; drifted days it covers open nothing new."""
    from fraud_assets import settings
    from fraud_assets.defs.features.assets import SPLIT
    from fraud_assets.defs.monitoring.sensors import post_drift_frauds

    monkeypatch.setattr(settings, "DRIFT_RETRAIN_POST_DAYS", 2)
    lake = tmp_path / "lake"
    start = date(2026, 3, 2)
    days = [(start + timedelta(days=i)).isoformat() for i in range(SPLIT.maturity_days + 3)]
    defs = build_defs(lake)
    for day in days:
        assert materialize_day(defs, instance, day).success

    def featured(day: str) -> None:
        instance.report_runless_asset_event(
            dg.AssetMaterialization(asset_key="transaction_features", partition=day)
        )

    featured(days[0])
    _drift(instance, "feature_drift", days[0], 0.5)
    tick = _tick(instance, None, lake)
    assert _requests(tick) == [("drift_response", f"recalibrate-{days[0]}", days[0])]
    # One mature post-drift day (labels 7 days old) of the two needed: waiting.
    featured(days[SPLIT.maturity_days])
    tick = _tick(instance, tick.cursor, lake)
    assert tick.run_requests == []
    # Two mature days, but fewer labelled post-drift frauds than needed: waiting.
    ready = days[SPLIT.maturity_days + 1]
    featured(ready)
    frauds = post_drift_frauds(_lake(lake), start, date.fromisoformat(ready))
    assert frauds > 0
    monkeypatch.setattr(settings, "DRIFT_RETRAIN_MIN_FRAUDS", frauds + 1)
    tick = _tick(instance, tick.cursor, lake)
    assert tick.run_requests == []
    # Enough: one training run as of the newest day, fitted and judged on post-drift days.
    monkeypatch.setattr(settings, "DRIFT_RETRAIN_MIN_FRAUDS", frauds)
    tick = _tick(instance, tick.cursor, lake)
    assert _requests(tick) == [("training", f"drift-{days[0]}", ready)]
    request = tick.run_requests[0]
    assert request.tags["drift_start"] == days[0] and request.tags["trigger"] == "feature_drift"
    assert request.run_config["ops"]["training_set"]["config"] == {"drift_start": days[0]}
    assert _tick(instance, tick.cursor, lake).run_requests == []  # launched once
    # A drifted day the retraining covered: thresholds only. A later one: a new episode.
    _drift(instance, "feature_drift", days[3], 0.5)
    tick = _tick(instance, tick.cursor, lake)
    assert _requests(tick) == [("drift_response", f"recalibrate-{days[3]}", days[3])]
    _drift(instance, "feature_drift", days[-1], 0.5)
    tick = _tick(instance, tick.cursor, lake)
    assert _requests(tick) == [("drift_response", f"recalibrate-{days[-1]}", days[-1])]
    assert json.loads(tick.cursor)["pending"]["start"] == days[-1]


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
    first = _tick(instance, None, tmp_path / "a")
    assert first.run_requests == []
    live(floor / 2, enough)
    second = _tick(instance, first.cursor, tmp_path / "a")
    assert [(r.run_key, r.partition_key, r.tags["trigger"]) for r in second.run_requests] == [
        (f"live-ap-{week_before}", GOOD, "live_performance")
    ]
    assert _tick(instance, second.cursor, tmp_path / "a").run_requests == []


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


@pytest.mark.parametrize(
    ("raw", "message"),
    [("2026-13-01", "not a YYYY-MM-DD day"), ("2026-03-30", "mature post-drift days")],
)
def test_a_drift_start_the_split_cannot_use_is_refused_naming_it(raw: str, message: str) -> None:
    from fraud_assets.defs.features.assets import _drift_start

    with pytest.raises(dg.Failure, match=message):
        _drift_start(raw, date(2026, 3, 31))
    assert _drift_start("", date(2026, 3, 31)) is None
