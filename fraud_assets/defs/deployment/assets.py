"""online_feature_store (state as of a day's end) and fraud_bento (the packaged service)."""

import copy
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import dagster as dg

from fraud_assets import settings
from fraud_assets.defs.common import concat_labels, concat_partitions
from fraud_assets.defs.partitions import daily_partitions, partition_day, window
from fraud_assets.lib.features.definitions import FEATURE_CODE_VERSION, LOOKBACK_DAYS
from fraud_assets.lib.features.history import CustomerHistory
from fraud_assets.lib.features.online import online_features

SERVICE_FILES = [
    "fraud_assets/__init__.py",
    "fraud_assets/lib/__init__.py",
    "fraud_assets/lib/contracts.py",
    "fraud_assets/lib/features/__init__.py",
    "fraud_assets/lib/features/definitions.py",
    "fraud_assets/lib/features/history.py",
    "fraud_assets/lib/features/online.py",
    "fraud_assets/lib/bundle.py",
    "fraud_assets/lib/store_seed.py",
    "fraud_assets/lib/online_store.py",
]


@dg.asset(
    partitions_def=daily_partitions,
    io_manager_key="artifacts",
    group_name="deployment",
    code_version=FEATURE_CODE_VERSION,
    ins={
        "raw_transactions": dg.AssetIn(partition_mapping=window(-LOOKBACK_DAYS, 0)),
        "fraud_labels": dg.AssetIn(partition_mapping=window(-LOOKBACK_DAYS, 0)),
    },
    description="Online feature state after the day: customer histories (replayed through the "
    "online path) and terminal snapshots as of the next day. Seeds the service.",
)
def online_feature_store(
    context: dg.AssetExecutionContext, raw_transactions: dict, fraud_labels: dict
) -> dg.Output[dict]:
    from fraud_assets.lib.store_seed import store_seed_from_frames

    day = partition_day(context)
    serves = day + timedelta(days=1)
    histories, terminals = store_seed_from_frames(
        concat_partitions(raw_transactions), concat_labels(fraud_labels), serves
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


def _build_context(day: str) -> Path:
    root = Path(settings.DATA_ROOT) / "bento_build" / day
    if root.exists():
        shutil.rmtree(root)
    for rel in SERVICE_FILES:
        target = root / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(settings.PROJECT_ROOT / rel, target)
    shutil.copytree(
        settings.PROJECT_ROOT / "fraud_assets" / "serving",
        root / "fraud_assets" / "serving",
        ignore=shutil.ignore_patterns("__pycache__", "bundle"),
    )
    shutil.copyfile(settings.PROJECT_ROOT / "bentofile.yaml", root / "bentofile.yaml")
    return root


class TrafficConfig(dg.Config):
    """Which variants the Bento serves: the challenger alias joins when it differs from the
    champion and either takes a share of cards or shadows every request."""

    challenger_share: float = settings.CHALLENGER_SHARE
    mode: str = settings.TRAFFIC_MODE  # "split" or "shadow"

    @property
    def wants_challenger(self) -> bool:
        return self.mode == "shadow" or self.challenger_share > 0


def _variant(version: Any, fallback: dict) -> dict:
    """A registry version as a bundle variant: its model and the thresholds evaluated for it."""
    import mlflow

    tags = version.tags or {}
    return {
        "model": mlflow.catboost.load_model(f"models:/{version.name}/{version.version}"),
        "version": str(version.version),
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
    champion_model: dict,
    online_feature_store: dict,
) -> dg.Output[dict]:
    import bentoml
    import mlflow

    from fraud_assets.lib import registry
    from fraud_assets.lib.bundle import write_bundle
    from fraud_assets.lib.registry import configure_mlflow

    day = partition_day(context).isoformat()
    configure_mlflow(
        settings.MLFLOW_TRACKING_URI, settings.MLFLOW_EXPERIMENT, settings.MLFLOW_ARTIFACT_ROOT
    )
    name, version = champion_model["model_name"], str(champion_model["champion"])
    client = mlflow.MlflowClient()
    meta = client.get_model_version(name, version)
    run_inputs = mlflow.artifacts.load_dict(f"runs:/{meta.run_id}/model_inputs.json")
    variants = {"champion": _variant(meta, champion_model["thresholds"])}
    traffic = {"challenger_share": config.challenger_share, "mode": config.mode}
    challenger = registry.version_by_alias(client, name, registry.CHALLENGER)
    if config.wants_challenger and challenger is not None and challenger.version != version:
        inputs = mlflow.artifacts.load_dict(f"runs:/{challenger.run_id}/model_inputs.json")
        if inputs["features"] == run_inputs["features"]:
            variants["challenger"] = _variant(challenger, champion_model["thresholds"])
        else:  # the bundle has one feature schema: a challenger on other features waits
            context.log.warning(f"challenger v{challenger.version} uses other features: left out")
    if "challenger" not in variants:
        traffic = None
    thresholds = variants["champion"]["thresholds"]
    ctx = _build_context(day)
    bundle = write_bundle(
        ctx / "fraud_assets" / "serving" / "bundle",
        model_name=name,
        features=run_inputs["features"],
        categoricals=run_inputs["categoricals"],
        variants=variants,
        traffic=traffic,
        customer_histories=online_feature_store["histories"],
        terminal_rows=online_feature_store["terminals"],
        store_as_of=date.fromisoformat(online_feature_store["as_of"]),
    )
    os.environ.setdefault("BENTOML_HOME", settings.BENTOML_HOME)
    bento = bentoml.bentos.build_bentofile(str(ctx / "bentofile.yaml"), build_ctx=str(ctx))
    tag = str(bento.tag)
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
            "bentoml_home": os.environ["BENTOML_HOME"],
            "store_as_of": online_feature_store["as_of"],
        },
        metadata={
            "bento_tag": tag,
            "model_version": version,
            "variants": described,
            "traffic": json.dumps(traffic),
            "thresholds": thresholds,
            "serve": f"BENTOML_HOME={os.environ['BENTOML_HOME']} bentoml serve {tag}",
        },
    )


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _sample_transactions(store: dict, n: int = 20) -> list[dict]:
    """Requests for the day the store serves: known customers at known terminals."""
    day = date.fromisoformat(store["as_of"])
    customers = sorted(store["histories"])[:n]
    terminals = sorted(store["terminals"])[:n]
    start = datetime(day.year, day.month, day.day, 9, tzinfo=UTC)
    return [
        {
            "transaction_id": f"smoke-{i}",
            "ts": (start + timedelta(minutes=7 * i)).isoformat().replace("+00:00", "Z"),
            "customer_id": c,
            "terminal_id": terminals[i % len(terminals)],
            "amount": round(5.0 + 37.5 * i, 2),
            "merchant_category": "electronics",
            "channel": "online" if i % 2 else "card_present",
        }
        for i, c in enumerate(customers)
    ]


def _offline_scores(bento: dict, store: dict, txs: list[dict], versions: list[str]) -> list[float]:
    """What the library computes for the same requests: online features + the CatBoost
    model of the version that answered each one (the champion or a challenger)."""
    import mlflow

    from fraud_assets.lib.bundle import read_manifest

    manifest = read_manifest(bento["bundle"])
    models = {
        v: mlflow.catboost.load_model(f"models:/{bento['model_name']}/{v}") for v in set(versions)
    }
    histories = copy.deepcopy(store["histories"])
    cats = manifest["categoricals"]
    out = []
    for tx, version in zip(txs, versions, strict=True):
        row = dict(tx, ts=datetime.fromisoformat(tx["ts"].replace("Z", "+00:00")))
        history = histories.setdefault(tx["customer_id"], CustomerHistory())
        vector = online_features(row, history, store["terminals"].get(tx["terminal_id"]), cats)
        out.append(float(models[version].predict_proba([list(vector.values())])[0][1]))
    return out


@dg.asset_check(
    asset=fraud_bento,
    blocking=True,
    partitions_def=daily_partitions,
    additional_ins={"online_feature_store": dg.AssetIn("online_feature_store")},
    description="Serve the built Bento on 127.0.0.1, score sample transactions and "
    "compare with the library's offline predictions.",
)
def bento_smoke_test(
    context: dg.AssetCheckExecutionContext, fraud_bento: dict, online_feature_store: dict
) -> dg.AssetCheckResult:
    import httpx

    port = _free_port()
    state = Path(settings.DATA_ROOT) / "bento_smoke" / context.partition_key
    shutil.rmtree(state, ignore_errors=True)
    env = os.environ | {
        "BENTOML_HOME": fraud_bento["bentoml_home"],
        "FRAUD_SERVING_STATE": str(state),
    }
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "bentoml",
            "serve",
            fraud_bento["tag"],
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    txs = _sample_transactions(online_feature_store)
    try:
        deadline = time.time() + 120
        while time.time() < deadline:
            try:
                if httpx.get(f"{base}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if proc.poll() is not None:
                err = proc.stderr.read().decode()[-2000:] if proc.stderr else ""
                return dg.AssetCheckResult(passed=False, description=f"bentoml serve exited: {err}")
            time.sleep(0.5)
        else:
            return dg.AssetCheckResult(passed=False, description="service not ready in 120 s")
        served, versions = [], []
        for tx in txs:
            r = httpx.post(f"{base}/score", json={"transaction": tx}, timeout=10)
            if r.status_code != 200:
                return dg.AssetCheckResult(
                    passed=False, description=f"/score {r.status_code}: {r.text[:500]}"
                )
            served.append(r.json()["fraud_probability"])
            versions.append(r.json()["model_version"])
    finally:
        os.killpg(proc.pid, 15)
        proc.wait(timeout=30)
    unknown = set(versions) - set(fraud_bento.get("variants", {}).values())
    if fraud_bento.get("variants") and unknown:
        return dg.AssetCheckResult(passed=False, description=f"served unknown versions {unknown}")
    expected = _offline_scores(fraud_bento, online_feature_store, txs, versions)
    diff = max(abs(a - b) for a, b in zip(served, expected, strict=True))
    return dg.AssetCheckResult(
        passed=diff <= 1e-9,
        description=f"{len(txs)} sample transactions; max |served - offline| = {diff:.2e}",
        metadata={
            "max_abs_diff": diff,
            "samples": len(txs),
            "port": port,
            "scores": json.dumps([round(s, 6) for s in served]),
            "versions_served": ", ".join(sorted(set(versions))),
        },
    )
