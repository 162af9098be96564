"""The drift sensor: drift on a day launches retraining as of that day, once per cause.

Causes: feature or score PSI above the alert level, or the champion's live average precision
(on traffic whose labels have arrived) below a floor once enough of it is labelled.
"""

import json
from collections.abc import Iterator

import dagster as dg

from fraud_assets import settings
from fraud_assets.lib.contracts import PSI_ALERT

WATCHED = ("feature_drift", "prediction_drift", "live_performance")
BATCH = 1000  # materializations read per asset per tick


def _raw_checks_passed(instance: dg.DagsterInstance, day: str) -> bool:
    """Never retrain on a day whose raw data failed a blocking check."""
    key = dg.AssetKey("raw_transactions")
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=key, asset_partitions=[day]), limit=1
    ).records
    if not records:
        return False
    run = instance.get_run_by_id(records[0].run_id)
    if run is None:
        return False
    evaluations = [
        e.get_dagster_event().event_specific_data
        for e in instance.all_logs(run.run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION)
    ]
    return bool(evaluations) and all(e.passed for e in evaluations if e.asset_key == key)


@dg.sensor(
    job_name="training",
    minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description=f"Launches retraining for a day whose feature or prediction PSI > {PSI_ALERT}, "
    "or whose live champion AP fell below FRAUD_LIVE_AP_FLOOR.",
)
def drift_sensor(context: dg.SensorEvaluationContext):
    """Reads every new drift materialization since its cursor (not only the latest one), so
    partitions finishing together are all seen; run keys make each cause launch once."""
    cursors = _read_cursor(context.cursor)
    for name in WATCHED:
        records = context.instance.fetch_materializations(
            dg.AssetRecordsFilter(
                asset_key=dg.AssetKey(name), after_storage_id=cursors.get(name, 0)
            ),
            limit=BATCH,
            ascending=True,  # oldest first: a backlog longer than BATCH resumes where it left
        ).records
        for record in records:
            cursors[name] = max(cursors.get(name, 0), record.storage_id)
            mat = record.asset_materialization
            if mat is None or mat.partition is None:
                continue
            for cause, run_key, tags in _causes(name, mat):
                # Drift retrains as of the drifted day; poor live performance (measured on
                # traffic old enough to be labelled) retrains as of the newest featured day.
                day = mat.partition if name != "live_performance" else _newest(context.instance)
                if day is None or not _raw_checks_passed(context.instance, day):
                    context.log.warning(f"{day}: {cause}, but raw data failed checks")
                    continue
                context.log.info(f"{mat.partition}: {cause}: retraining as of {day}")
                yield dg.RunRequest(run_key=run_key, partition_key=day, tags=tags)
    context.update_cursor(json.dumps(cursors, sort_keys=True))


def _newest(instance: dg.DagsterInstance) -> str | None:
    """The latest day with features: what a retraining today can be trained as of."""
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=dg.AssetKey("transaction_features")), limit=200
    ).records
    days = [r.partition_key for r in records if r.partition_key]
    return max(days) if days else None


def _read_cursor(raw: str | None) -> dict[str, int]:
    """Per-asset storage ids already seen (an older plain-integer cursor applies to all)."""
    if not raw:
        return {}
    value = json.loads(raw)
    if isinstance(value, int):
        return dict.fromkeys(WATCHED, value)
    return {k: int(v) for k, v in value.items()}


def _number(mat: dg.AssetMaterialization, key: str) -> float | None:
    value = mat.metadata.get(key)
    return None if value is None or value.value is None else float(value.value)


def _causes(name: str, mat: dg.AssetMaterialization) -> Iterator[tuple[str, str, dict[str, str]]]:
    """(cause, run key, tags) for each reason this materialization gives to retrain. A run
    key names the day and the kind of cause: the same cause seen again launches nothing."""
    day = mat.partition
    if name == "live_performance":
        ap, labelled = _number(mat, "live_ap_champion"), _number(mat, "n_labelled")
        enough = (labelled or 0) >= settings.LIVE_MIN_LABELLED
        if ap is not None and enough and ap < settings.LIVE_AP_FLOOR:
            yield (
                f"live AP {ap:.3f} < {settings.LIVE_AP_FLOOR}",
                f"live-ap-{day}",
                {"trigger": name, "live_ap": f"{ap:.3f}"},
            )
        return
    max_psi = _number(mat, "max_psi") or 0.0
    if max_psi > PSI_ALERT:
        yield (
            f"{name} PSI {max_psi:.3f}",
            f"drift-{day}",  # feature and score drift of a day: one retraining
            {"trigger": name, "max_psi": f"{max_psi:.3f}"},
        )
