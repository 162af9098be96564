"""online_feature_store (state as of a day's end) and fraud_bento (the packaged service)."""

import json
from datetime import date, timedelta
from typing import Any

import dagster as dg

from fraud_assets import settings
from fraud_assets.defs.common import concat_labels, concat_partitions
from fraud_assets.defs.features.assets import FEATURES_CODE_VERSION, MATURITY_DAYS, REACH_DAYS
from fraud_assets.defs.partitions import daily_partitions, partition_day, window
from fraud_assets.lib.contracts import (
    CHALLENGER,
    CHAMPION,
    EVALUATED_VERSION_TAG,
    SERVING_STATE_ENV,
    SHADOW,
)
from fraud_assets.resources.bento import BentoBuilder
from fraud_assets.resources.mlflow import ModelRegistry
from fraud_assets.resources.storage import LakeStorage


@dg.asset(
    partitions_def=daily_partitions,
    io_manager_key="artifacts",
    group_name="deployment",
    code_version=FEATURES_CODE_VERSION,
    ins={
        "raw_transactions": dg.AssetIn(partition_mapping=window(-REACH_DAYS, 0)),
        "fraud_labels": dg.AssetIn(partition_mapping=window(-REACH_DAYS, 0)),
    },
    description="Online feature state after the day: customer histories (replayed through the "
    "online path) and terminal snapshots as of the next day. Seeds the service.",
)
def online_feature_store(
    context: dg.AssetExecutionContext, raw_transactions: dict, fraud_labels: dict
) -> dg.Output[dict]:
    from fraud_assets.lib.features.batch import store_seed_from_frames

    day = partition_day(context)
    serves = day + timedelta(days=1)
    histories, terminals = store_seed_from_frames(
        concat_partitions(raw_transactions), concat_labels(fraud_labels), serves, MATURITY_DAYS
    )
    entries = sum(len(h.keys) for h in histories.values())
    context.log.info(f"store for {serves}: {len(histories)} customers, {len(terminals)} terminals")
    return dg.Output(
        {"as_of": serves.isoformat(), "histories": histories, "terminals": terminals},
        metadata={
            "serves_day": serves.isoformat(),
            "customers": len(histories),
            "history_entries": entries,
            "terminals": len(terminals),
        },
    )


class TrafficConfig(dg.Config):
    """Which variants the Bento serves: the challenger alias joins when it differs from the
    champion and either takes a share of cards or shadows every request."""

    challenger_share: float = settings.CHALLENGER_SHARE
    mode: str = settings.TRAFFIC_MODE  # contracts.TRAFFIC_MODES: "split" or "shadow"

    @property
    def wants_challenger(self) -> bool:
        return self.mode == SHADOW or self.challenger_share > 0


def served_variant(model_registry: ModelRegistry, version: Any, fallback: dict) -> dict:
    """A registry version as a bundle variant: its model and the thresholds evaluated for it."""
    from fraud_assets.lib.calibration import Platt

    tags = version.tags or {}
    sibling = tags.get(EVALUATED_VERSION_TAG)
    if "threshold" not in tags and sibling:  # a refit not promoted yet: its sibling's values
        evaluated = model_registry.client().get_model_version(model_registry.model_name, sibling)
        tags = (evaluated.tags or {}) | tags
    return {
        "model": model_registry.load_model(str(version.version)),
        "version": str(version.version),
        "calibration": Platt.from_tags(tags).to_dict(),
        "thresholds": {
            "review": float(tags.get("threshold", fallback["review"])),
            "decline": float(tags.get("decline_threshold", fallback["decline"])),
        },
    }


@dg.asset(
    partitions_def=daily_partitions,
    io_manager_key="artifacts",
    group_name="deployment",
    kinds={"bentoml"},
    deps=["champion_model"],
    description="`bentoml build` of the scoring service with the champion (and challenger when "
    "configured), thresholds, feature schema and the online store seed.",
)
def fraud_bento(
    context: dg.AssetExecutionContext,
    config: TrafficConfig,
    model_registry: ModelRegistry,
    storage: LakeStorage,
    bento_builder: BentoBuilder,
    champion_model: dict,
    online_feature_store: dict,
) -> dg.Output[dict]:
    import mlflow

    from fraud_assets.lib.bundle import write_bundle

    day = partition_day(context).isoformat()
    name, version = champion_model["model_name"], str(champion_model["champion"])
    meta = model_registry.client().get_model_version(name, version)
    run_inputs = mlflow.artifacts.load_dict(f"runs:/{meta.run_id}/model_inputs.json")
    variants = {CHAMPION: served_variant(model_registry, meta, champion_model["thresholds"])}
    traffic = {"challenger_share": config.challenger_share, "mode": config.mode}
    challenger = model_registry.version(CHALLENGER)
    if config.wants_challenger and challenger is not None and challenger.version != version:
        inputs = mlflow.artifacts.load_dict(f"runs:/{challenger.run_id}/model_inputs.json")
        if inputs["features"] == run_inputs["features"]:
            variants[CHALLENGER] = served_variant(
                model_registry, challenger, champion_model["thresholds"]
            )
        else:  # the bundle has one feature schema: a challenger on other features waits
            context.log.warning(f"challenger v{challenger.version} uses other features: left out")
    if CHALLENGER not in variants:
        traffic = None
    thresholds = variants[CHAMPION]["thresholds"]
    folder = storage.work_dir("bento_build", day)
    bundle = write_bundle(
        bento_builder.stage(folder),
        model_name=name,
        features=run_inputs["features"],
        categoricals=run_inputs["categoricals"],
        variants=variants,
        traffic=traffic,
        customer_histories=online_feature_store["histories"],
        terminal_rows=online_feature_store["terminals"],
        store_as_of=date.fromisoformat(online_feature_store["as_of"]),
    )
    tag = bento_builder.build(folder)
    described = ", ".join(f"{k} v{v['version']}" for k, v in variants.items())
    context.log.info(f"built Bento {tag} with {name}: {described}; traffic {traffic}")
    return dg.Output(
        {
            "tag": tag,
            "model_name": name,
            "model_version": version,
            "variants": {k: v["version"] for k, v in variants.items()},
            "traffic": traffic,
            "bundle": str(bundle),
            "bentoml_home": bento_builder.bentoml_home,
            "path": bento_builder.bento_path(tag),
            "store_as_of": online_feature_store["as_of"],
        },
        metadata={
            "bento_tag": tag,
            "model_version": version,
            "variants": described,
            "traffic": json.dumps(traffic),
            "thresholds": thresholds,
            # A built Bento runs from inside the store: the state root must be absolute.
            "serve": f"BENTOML_HOME={bento_builder.bentoml_home} "
            f"{SERVING_STATE_ENV}={settings.SERVING_STATE} bentoml serve {tag}",
        },
    )
