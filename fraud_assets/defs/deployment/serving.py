"""What reaches running services: the daily terminal refresh and the rollout of a new Bento.

Both write the control plane (``lib/control.py``) under the serving-state root, which every
worker follows within about a second; neither needs the address of any service.
"""

from datetime import date
from pathlib import Path

import dagster as dg

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
