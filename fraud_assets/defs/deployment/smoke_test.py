"""bento_smoke_test: the built Bento, served for real on 127.0.0.1, must answer sample
transactions with the scores the library computes offline for the same requests."""

import copy
import json
import os
import shutil
from datetime import UTC, date, datetime, timedelta

import dagster as dg

from fraud_assets.defs.partitions import daily_partitions
from fraud_assets.lib import contracts
from fraud_assets.lib.features.history import CustomerHistory
from fraud_assets.lib.features.online import online_features
from fraud_assets.resources.mlflow import ModelRegistry
from fraud_assets.resources.storage import LakeStorage


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


def _offline_scores(
    model_registry: ModelRegistry, bento: dict, store: dict, txs: list[dict], versions: list[str]
) -> list[float]:
    """What the library computes for the same requests: online features + the CatBoost
    model of the version that answered each one (the champion or a challenger), calibrated
    as its registry version says."""
    from fraud_assets.lib.bundle import read_manifest
    from fraud_assets.lib.calibration import Platt

    manifest = read_manifest(bento["bundle"])
    models = {v: model_registry.load_model(v) for v in set(versions)}
    client = model_registry.client()
    calibrations = {
        v: Platt.from_tags(client.get_model_version(model_registry.model_name, v).tags)
        for v in set(versions)
    }
    histories = copy.deepcopy(store["histories"])
    cats = manifest["categoricals"]
    out = []
    for tx, version in zip(txs, versions, strict=True):
        row = dict(tx, ts=datetime.fromisoformat(tx["ts"].replace("Z", "+00:00")))
        history = histories.setdefault(tx["customer_id"], CustomerHistory())
        vector = online_features(row, history, store["terminals"].get(tx["terminal_id"]), cats)
        raw = float(models[version].predict_proba([list(vector.values())])[0][1])
        out.append(calibrations[version].apply(raw))
    return out


@dg.asset_check(
    asset="fraud_bento",
    blocking=True,
    partitions_def=daily_partitions,
    additional_ins={"online_feature_store": dg.AssetIn("online_feature_store")},
    description="Serve the built Bento on 127.0.0.1, score sample transactions and "
    "compare with the library's offline predictions.",
)
def bento_smoke_test(
    context: dg.AssetCheckExecutionContext,
    model_registry: ModelRegistry,
    storage: LakeStorage,
    fraud_bento: dict,
    online_feature_store: dict,
) -> dg.AssetCheckResult:
    import httpx

    from fraud_assets.lib.processes import BentoServer

    state = storage.work_dir("bento_smoke", context.partition_key)
    shutil.rmtree(state, ignore_errors=True)
    # The built Bento's folder, served with a private BENTOML_HOME: everything this check's
    # server writes stays in its work folder (its /metrics files are per server instance
    # anyway: serving.lifecycle). `server.stop()` in the finally ends the whole tree.
    env = os.environ | {
        "BENTOML_HOME": str(state / "bentoml_home"),
        contracts.SERVING_STATE_ENV: str(state),
    }
    server = BentoServer(fraud_bento["path"], log_path=state / "server.log", env=env)
    txs = _sample_transactions(online_feature_store)
    served, versions = [], []
    try:
        server.start()
        for tx in txs:
            r = httpx.post(f"{server.url}/score", json={"transaction": tx}, timeout=10)
            if r.status_code != 200:
                return dg.AssetCheckResult(
                    passed=False, description=f"/score {r.status_code}: {r.text[:500]}"
                )
            served.append(r.json()["fraud_probability"])
            versions.append(r.json()["model_version"])
    except (RuntimeError, TimeoutError) as exc:  # it never served: the log says why
        return dg.AssetCheckResult(passed=False, description=str(exc)[-2000:])
    finally:
        server.stop()
    unknown = set(versions) - set(fraud_bento.get("variants", {}).values())
    if fraud_bento.get("variants") and unknown:
        return dg.AssetCheckResult(passed=False, description=f"served unknown versions {unknown}")
    expected = _offline_scores(model_registry, fraud_bento, online_feature_store, txs, versions)
    diff = max(abs(a - b) for a, b in zip(served, expected, strict=True))
    return dg.AssetCheckResult(
        passed=diff <= 1e-9,
        description=f"{len(txs)} sample transactions; max |served - offline| = {diff:.2e}",
        metadata={
            "max_abs_diff": diff,
            "samples": len(txs),
            "port": server.port,
            "scores": json.dumps([round(s, 6) for s in served]),
            "versions_served": ", ".join(sorted(set(versions))),
        },
    )
