"""The drift sensor: what drift and poor live performance set in motion, each once per cause.

- Feature or score PSI above the alert level on day D: at once, without labels, the
  ``drift_response`` job recalibrates the served thresholds to the review capacity for D
  (run key per day). D opens a *drift episode* (or joins the pending one): a retraining that
  can learn the drift needs labels of post-drift traffic, so the episode waits in the
  sensor's cursor, across ticks and restarts, until at least FRAUD_DRIFT_RETRAIN_POST_DAYS
  mature post-drift days and FRAUD_DRIFT_RETRAIN_MIN_FRAUDS labelled post-drift frauds are
  in; then one ``training`` run (run key ``drift-<first drifted day>``) as of the newest
  featured day, with ``drift_start`` set, so that its challenger is fitted on post-drift
  days and judged on later ones against the champion (``lib/time_split``). Drifted days up
  to that run's day are covered by it; a later one opens a new episode.
- The champion's live average precision (on traffic whose labels have arrived) below a
  floor once enough of it is labelled: retraining at once as of the newest featured day
  (labels are there already).

Both paths and the daily schedule launch the same job, "retrain as of now with the freshest
mature data": the deployed model is always the refit on the newest mature window.
"""

import json
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from typing import Any

import dagster as dg
import polars as pl

from fraud_assets import settings
from fraud_assets.defs import jobs
from fraud_assets.defs.features.assets import SPLIT
from fraud_assets.lib.contracts import PSI_ALERT
from fraud_assets.lib.labels import latest_labels
from fraud_assets.lib.monitoring.logs import read_history, read_label_partitions
from fraud_assets.resources.storage import LakeStorage

WATCHED = ("feature_drift", "prediction_drift", "live_performance")
BATCH = 1000  # materializations read per asset per tick


def _raw_checks_passed(instance: dg.DagsterInstance, day: str) -> bool:
    """Never act on a day whose raw data failed a blocking check."""
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
    jobs=[jobs.training_job, jobs.drift_response_job],
    minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description=f"Feature or prediction PSI > {PSI_ALERT} on a day: thresholds recalibrated to "
    "the review capacity at once, retraining once enough post-drift labels have matured. "
    "Live champion AP below FRAUD_LIVE_AP_FLOOR: retraining at once.",
)
def drift_sensor(context: dg.SensorEvaluationContext, storage: LakeStorage):
    """Reads every new drift materialization since its cursor (not only the latest one), so
    partitions finishing together are all seen; run keys make each cause launch once."""
    state = _read_cursor(context.cursor)
    seen = state["seen"]
    for name in WATCHED:
        records = context.instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=dg.AssetKey(name), after_storage_id=seen.get(name, 0)),
            limit=BATCH,
            ascending=True,  # oldest first: a backlog longer than BATCH resumes where it left
        ).records
        for record in records:
            seen[name] = max(seen.get(name, 0), record.storage_id)
            mat = record.asset_materialization
            if mat is None or mat.partition is None:
                continue
            for cause, run_key, tags in _causes(name, mat):
                if name == "live_performance":
                    yield from _retrain_now(context, cause, run_key, tags)
                else:
                    yield from _drifted(context, state, mat.partition, cause, tags)
    if state["pending"] is not None:
        yield from _retrain_when_mature(context, state, storage)
    context.update_cursor(json.dumps(state, sort_keys=True))


def _retrain_now(
    context: dg.SensorEvaluationContext, cause: str, run_key: str, tags: dict[str, str]
) -> Iterator[dg.RunRequest]:
    """Poor live performance (measured on labelled traffic): retrain as of the newest day."""
    day = _newest(context.instance)
    if day is None or not _raw_checks_passed(context.instance, day):
        context.log.warning(f"{day}: {cause}, but raw data failed checks")
        return
    context.log.info(f"{cause}: retraining as of {day}")
    yield dg.RunRequest(job_name="training", run_key=run_key, partition_key=day, tags=tags)


def _drifted(
    context: dg.SensorEvaluationContext,
    state: dict[str, Any],
    day: str,
    cause: str,
    tags: dict[str, str],
) -> Iterator[dg.RunRequest]:
    """A drifted day: recalibrate now; open or join the episode that waits for labels."""
    if not _raw_checks_passed(context.instance, day):
        context.log.warning(f"{day}: {cause}, but raw data failed checks")
        return
    context.log.info(f"{day}: {cause}: thresholds recalibrated to the review capacity")
    yield dg.RunRequest(
        job_name="drift_response", run_key=f"recalibrate-{day}", partition_key=day, tags=tags
    )
    covered = state["covered"]
    if covered is not None and day <= covered:
        context.log.info(f"{day}: covered by the drift retraining as of {covered}")
        return
    pending = state["pending"]
    if pending is None:
        state["pending"] = {"start": day, **tags}
        context.log.info(f"{day}: drift episode opened; retraining waits for post-drift labels")
    elif day < pending["start"]:
        pending["start"] = day  # an earlier partition finished later


def _retrain_when_mature(
    context: dg.SensorEvaluationContext, state: dict[str, Any], storage: LakeStorage
) -> Iterator[dg.RunRequest]:
    """The pending episode's retraining, once its post-drift labels have matured."""
    pending = state["pending"]
    start = date.fromisoformat(pending["start"])
    newest = _newest(context.instance)
    if newest is None:
        return
    last = date.fromisoformat(newest)
    mature_days = (last - timedelta(days=SPLIT.maturity_days) - start).days + 1
    if mature_days < settings.DRIFT_RETRAIN_POST_DAYS:
        context.log.info(
            f"drift since {start}: {max(mature_days, 0)}/{settings.DRIFT_RETRAIN_POST_DAYS} "
            f"mature post-drift days by {newest}"
        )
        return
    checked = state.get("checked") or {}
    if checked.get("newest") == newest:  # counted for this day already: labels come with days
        frauds = int(checked["frauds"])
    else:
        frauds = post_drift_frauds(storage, start, last)
        state["checked"] = {"newest": newest, "frauds": frauds}
    if frauds < settings.DRIFT_RETRAIN_MIN_FRAUDS:
        context.log.info(
            f"drift since {start}: {frauds}/{settings.DRIFT_RETRAIN_MIN_FRAUDS} labelled "
            f"post-drift frauds by {newest}"
        )
        return
    if not _raw_checks_passed(context.instance, newest):
        context.log.warning(f"drift since {start}: {newest}'s raw data failed checks; waiting")
        return
    context.log.info(
        f"drift since {start}: {mature_days} mature post-drift days, {frauds} labelled frauds: "
        f"retraining as of {newest}"
    )
    tags = {k: v for k, v in pending.items() if k != "start"} | {"drift_start": pending["start"]}
    yield dg.RunRequest(
        job_name="training",
        run_key=f"drift-{pending['start']}",
        partition_key=newest,
        tags=tags,
        run_config={"ops": {"training_set": {"config": {"drift_start": pending["start"]}}}},
    )
    state["covered"], state["pending"], state["checked"] = newest, None, None


def post_drift_frauds(storage: LakeStorage, start: date, last: date) -> int:
    """Transactions of days ``start``..``last`` whose label in force at the end of ``last``
    is fraud (label events that became known from ``start`` on: a post-drift transaction's
    cannot be older; none known after ``last``, even if already ingested)."""
    days = [start + timedelta(days=i) for i in range((last - start).days + 1)]
    traffic = read_history(storage.data_root, "raw_transactions", days)
    if not traffic.height:
        return 0
    events = read_label_partitions(storage.data_root, "fraud_labels", since=start)
    end = datetime(last.year, last.month, last.day, tzinfo=UTC) + timedelta(days=1)
    known = events.filter(pl.col("known_at") < end)  # not what a later partition holds
    frauds = latest_labels(known).filter(pl.col("is_fraud") == 1)
    return frauds.join(traffic.select("transaction_id"), on="transaction_id", how="semi").height


def _newest(instance: dg.DagsterInstance) -> str | None:
    """The latest day with features: what a retraining today can be trained as of."""
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=dg.AssetKey("transaction_features")), limit=200
    ).records
    days = [r.partition_key for r in records if r.partition_key]
    return max(days) if days else None


def _read_cursor(raw: str | None) -> dict[str, Any]:
    """{"seen": storage id per watched asset, "pending": the drift episode waiting for
    labels (its first day and tags) or None, "covered": the day of the last drift
    retraining, "checked": the last fraud count}. Older cursors (storage ids only, or one
    plain integer for all assets) carry over their ids."""
    state: dict[str, Any] = {"seen": {}, "pending": None, "covered": None, "checked": None}
    if not raw:
        return state
    value = json.loads(raw)
    if isinstance(value, int):
        state["seen"] = dict.fromkeys(WATCHED, value)
    elif "seen" not in value:
        state["seen"] = {k: int(v) for k, v in value.items()}
    else:
        state.update(value)
    return state


def _number(mat: dg.AssetMaterialization, key: str) -> float | None:
    value = mat.metadata.get(key)
    return None if value is None or value.value is None else float(value.value)


def _causes(name: str, mat: dg.AssetMaterialization) -> Iterator[tuple[str, str, dict[str, str]]]:
    """(cause, run key, tags) for each reason this materialization gives to act. A run key
    names the day and the kind of cause: the same cause seen again launches nothing."""
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
            f"drift-{day}",
            {"trigger": name, "max_psi": f"{max_psi:.3f}"},
        )
