"""The drift sensor: drift on a day launches retraining as of that day, once per cause."""

import dagster as dg

PSI_ALERT = 0.25
WATCHED = ("feature_drift", "prediction_drift")


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
    description=f"Launches retraining for a day whose feature or prediction PSI > {PSI_ALERT}.",
)
def drift_sensor(context: dg.SensorEvaluationContext):
    """Reads every new drift materialization since its cursor (not only the latest one), so
    partitions finishing together are all seen; run keys make each cause launch once."""
    cursor = int(context.cursor or 0)
    newest = cursor
    for name in WATCHED:
        records = context.instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=dg.AssetKey(name), after_storage_id=cursor), limit=1000
        ).records
        for record in records:
            newest = max(newest, record.storage_id)
            mat = record.asset_materialization
            if mat is None or mat.partition is None:
                continue
            max_psi = float(mat.metadata.get("max_psi", dg.FloatMetadataValue(0.0)).value or 0.0)
            if max_psi <= PSI_ALERT:
                continue
            if not _raw_checks_passed(context.instance, mat.partition):
                context.log.warning(f"{mat.partition}: drift, but raw data failed its checks")
                continue
            yield dg.RunRequest(
                run_key=f"drift-{mat.partition}",  # one retraining per drifted day
                partition_key=mat.partition,
                tags={"trigger": name, "max_psi": f"{max_psi:.3f}"},
            )
    context.update_cursor(str(newest))
