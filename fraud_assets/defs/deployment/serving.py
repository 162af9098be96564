"""What reaches running services: the daily terminal refresh, the rollout of a new Bento
and, on drift, the recalibration of its thresholds to the review capacity.

All three write the control plane (``lib/control.py``) under the serving-state root, which every
worker follows within about a second; neither needs the address of any service.
"""

from datetime import date
from pathlib import Path

import dagster as dg
import polars as pl

from fraud_assets import settings
from fraud_assets.defs.features.assets import FEATURES_CODE_VERSION
from fraud_assets.defs.partitions import daily_partitions
from fraud_assets.lib import contracts, control
from fraud_assets.resources.storage import ServingLogs


@dg.asset(
    partitions_def=daily_partitions,
    group_name="deployment",
    code_version=FEATURES_CODE_VERSION,
    description="The day's terminal snapshots (risk from mature labels, amounts) published to "
    "the running services, independent of any promotion: without it the service's terminal "
    "state would stay at the Bento's build day.",
)
def live_terminal_snapshots(
    context: dg.AssetExecutionContext, serving_logs: ServingLogs, online_feature_store: dict
) -> dg.MaterializeResult:
    as_of = date.fromisoformat(online_feature_store["as_of"])
    terminals = online_feature_store["terminals"]
    pointer = control.publish_terminals(serving_logs.state_root, terminals, as_of)
    if settings.ONLINE_STORE not in ("", "embedded"):  # a shared store holds them itself
        from fraud_assets.lib.online_store import open_store

        store = open_store(settings.ONLINE_STORE)
        try:
            store.load_terminals(terminals, as_of)
        finally:
            store.close()
    workers = control.live_workers(serving_logs.state_root)
    context.log.info(f"published {len(terminals)} terminal snapshots as of {as_of}")
    return dg.MaterializeResult(
        metadata={
            "as_of": as_of.isoformat(),
            "terminals": len(terminals),
            "file": pointer["file"],
            "live_workers": len(workers),
        }
    )


class RolloutConfig(dg.Config):
    """How long to wait for every running worker to report the new bundle."""

    timeout_s: float = settings.ROLLOUT_TIMEOUT_S


@dg.asset(
    partitions_def=daily_partitions,
    group_name="deployment",
    description="Points every running scoring service at the new Bento's bundle and waits "
    "until each worker serves it (rolled back, and failed, if one cannot). Records from which "
    "version to which, when, and how long it took.",
)
def serving_rollout(
    context: dg.AssetExecutionContext,
    config: RolloutConfig,
    serving_logs: ServingLogs,
    fraud_bento: dict,
) -> dg.MaterializeResult:
    import time

    root = serving_logs.state_root
    bundle = Path(fraud_bento["path"]) / "src" / contracts.SERVICE_BUNDLE_DIR
    before = control.current_deployment(root)
    started = time.perf_counter()
    pointer = control.set_deployment(
        root, bundle, reason=f"{fraud_bento['tag']} ({context.run_id})"
    )
    switched, workers = control.wait_for_workers(root, pointer["bundle_id"], config.timeout_s)
    seconds = round(time.perf_counter() - started, 3)
    errors = [w["error"] for w in workers if w.get("error")]
    if not switched:
        if before is not None:
            control.roll_back(root, reason=f"rollout of {fraud_bento['tag']} failed")
        raise dg.Failure(
            f"{len(workers)} workers, not all on {pointer['bundle_id']} after "
            f"{config.timeout_s:.0f} s; pointer rolled back. Worker errors: {errors}"
        )
    previous = pointer.get("previous") or {}
    metadata = {
        "bento_tag": fraud_bento["tag"],
        "from_versions": str(previous.get("versions")),
        "to_versions": str(pointer["versions"]),
        "from_bundle_id": str(previous.get("bundle_id")),
        "to_bundle_id": pointer["bundle_id"],
        "set_at": pointer["set_at"],
        "workers_switched": len(workers),
        "seconds": seconds,
    }
    context.log.info(f"rollout to {pointer['versions']}: {len(workers)} workers in {seconds} s")
    return dg.MaterializeResult(metadata=metadata)


class RecalibrationConfig(dg.Config):
    """The review queue's capacity the thresholds are held to."""

    alerts_per_day: float = settings.ALERT_CAPACITY_PER_DAY


def _served_probabilities(bundle: Path, manifest: dict, variant: str, features: pl.DataFrame):
    """What the service would answer for these rows: the bundle's model and calibration."""
    from catboost import CatBoostClassifier

    from fraud_assets.lib.bundle import model_path
    from fraud_assets.lib.calibration import Platt
    from fraud_assets.lib.modeling import predict_catboost

    model = CatBoostClassifier()
    model.load_model(str(model_path(bundle, manifest, variant)))
    raw = predict_catboost(model, features, manifest["features"])
    return Platt.from_dict(manifest["variants"][variant].get("calibration")).apply_array(raw)


@dg.asset(
    partitions_def=daily_partitions,
    group_name="deployment",
    code_version="recalibration-v1",
    description="On a drifted day, at once and without labels: the served model's scores of "
    "the day's traffic, and the review threshold raised (never lowered) as far as needed to "
    "keep the alerts within the review capacity, set on the deployment pointer as its own "
    "deployment change (a rollback restores the thresholds before it).",
)
def alert_thresholds(
    context: dg.AssetExecutionContext,
    config: RecalibrationConfig,
    serving_logs: ServingLogs,
    transaction_features: pl.DataFrame,
) -> dg.MaterializeResult:
    from fraud_assets.lib.bundle import read_manifest
    from fraud_assets.lib.recalibration import alerts_per_day, recalibrate

    root = serving_logs.state_root
    pointer = control.current_deployment(root)
    capacity = config.alerts_per_day
    if pointer is None:
        context.log.warning("no deployment recorded: no thresholds to recalibrate")
        return dg.MaterializeResult(metadata={"changed": False, "reason": "no deployment"})
    bundle = Path(pointer["bundle"])
    manifest = read_manifest(bundle)
    in_force = pointer.get("thresholds") or {}
    changes: dict[str, dict[str, float]] = {}
    metadata: dict[str, object] = {
        "capacity_per_day": capacity,
        "rows": transaction_features.height,
    }
    for variant, spec in manifest["variants"].items():
        current = in_force.get(variant) or spec["thresholds"]
        scores = _served_probabilities(bundle, manifest, variant, transaction_features)
        new = recalibrate(current, scores, capacity)
        metadata[f"{variant}_alerts_before"] = alerts_per_day(scores, current["review"])
        metadata[f"{variant}_review_before"] = float(current["review"])
        if new is not None:
            changes[variant] = new
        final = new or current
        metadata[f"{variant}_alerts_after"] = alerts_per_day(scores, final["review"])
        metadata[f"{variant}_review_after"] = float(final["review"])
    if changes:
        reason = f"review capacity {capacity:g}/day on {context.partition_key} ({context.run_id})"
        control.set_thresholds(root, changes, reason)
        context.log.info(f"thresholds recalibrated to {changes}")
    else:
        context.log.info(f"alert volume within {capacity:g}/day: thresholds unchanged")
    return dg.MaterializeResult(metadata={**metadata, "changed": bool(changes)})
