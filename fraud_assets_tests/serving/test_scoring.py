"""The scoring path in process (no HTTP): parity of batch and single scoring, reload, rollback,
and the import boundary of ``serving/``."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from fraud_assets.lib.bundle import BundleError
from fraud_assets.lib.online_store import EmbeddedStore
from fraud_assets.serving.logs import PredictionLog
from fraud_assets.serving.schemas import Transaction
from fraud_assets.serving.scoring import NothingToRollBack, Scorer
from fraud_assets_tests.serving.support import World, write_world_bundle


@pytest.fixture(scope="module")
def bundle(world: World, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_world_bundle(world, tmp_path_factory.mktemp("scoring") / "bundle", share=0.5)


def _scorer(bundle: Path, tmp: Path) -> Scorer:
    return Scorer(bundle, EmbeddedStore(), PredictionLog(tmp / "predictions"))


def _day(world: World, n: int) -> list[Transaction]:
    day = world.history.filter(pl.col("ts").dt.date() == world.last_day)
    rows = day.sort("ts", "transaction_id").head(n).iter_rows(named=True)
    fields = ("transaction_id", "ts", "customer_id", "terminal_id", "amount", *world.categoricals)
    return [Transaction(**{f: r[f] for f in fields}) for r in rows]


def _without_latency(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: v for k, v in r.items() if k != "latency_ms"} for r in results]


def test_serving_never_imports_polars_or_dagster(bundle: Path) -> None:
    """Import the service and load real CatBoost models in a fresh interpreter."""
    code = (
        "import sys\n"
        "import fraud_assets.serving.service\n"
        "from fraud_assets.serving.scoring import load_deployment\n"
        f"dep = load_deployment({str(bundle)!r})\n"
        "assert dep.challenger is not None\n"
        "print(sorted(m for m in ('polars', 'dagster') if m in sys.modules))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    assert out.stdout.strip() == "[]", out.stdout + out.stderr


def test_batch_equals_one_by_one_on_fresh_state(bundle: Path, world: World, tmp_path: Path) -> None:
    txs = _day(world, 400)
    batch = _scorer(bundle, tmp_path / "a").score_batch(txs, time.perf_counter())
    single_scorer = _scorer(bundle, tmp_path / "b")
    single = [single_scorer.score(t, time.perf_counter()).result for t in txs]
    assert _without_latency(batch) == _without_latency(single)
    assert {r["variant"] for r in batch} == {"champion", "challenger"}
    assert [r["transaction_id"] for r in batch] == [t.transaction_id for t in txs]


def test_duplicates_in_a_batch_are_scored_once(bundle: Path, world: World, tmp_path: Path) -> None:
    scorer = _scorer(bundle, tmp_path)
    t = _day(world, 1)[0]
    results = scorer.score_batch([t, t], time.perf_counter())
    assert results[0] == results[1]
    assert scorer.log.rows == 1
    assert scorer.store.history(t.customer_id).keys[-1] > 0
    retried = scorer.score(t, time.perf_counter())
    assert retried.result == results[0]
    assert len(scorer.explain(retried)) == 3  # a retried explain still has its row


def test_explain_sums_to_the_raw_score(bundle: Path, world: World, tmp_path: Path) -> None:
    scorer = _scorer(bundle, tmp_path)
    scored = scorer.score(_day(world, 1)[0], time.perf_counter())
    reasons = scorer.explain(scored, top=len(world.features))
    assert {r["feature"] for r in reasons} == set(world.features)
    raw = scored.variant.model.predict([scored.row], prediction_type="RawFormulaVal")[0]
    shap = scored.variant.model.get_feature_importance(
        data=__import__("catboost").Pool(
            [scored.row], cat_features=list(scored.deployment.cat_indices)
        ),
        type="ShapValues",
    )[0]
    assert sum(r["contribution"] for r in reasons) + shap[-1] == pytest.approx(raw)


def test_reload_and_rollback_swap_whole_deployments(
    bundle: Path, world: World, tmp_path: Path
) -> None:
    scorer = _scorer(bundle, tmp_path)
    with pytest.raises(NothingToRollBack):
        scorer.rollback()
    history_before = scorer.store.stats()["history_rows"]
    scorer.score(_day(world, 1)[0], time.perf_counter())
    write_world_bundle(world, bundle, share=0.5, versions=("9", "10"))
    try:
        assert scorer.reload().champion.version == "9"
        assert scorer.store.stats()["history_rows"] == history_before + 1  # same day: kept
        started = time.perf_counter()
        assert scorer.rollback().champion.version == "1"
        assert time.perf_counter() - started < 0.01
        assert scorer.rollback().champion.version == "9"  # rolling back twice rolls forward
        assert scorer.describe()["previous"]["versions"] == {"champion": "1", "challenger": "2"}
    finally:
        write_world_bundle(world, bundle, share=0.5)


def test_a_broken_bundle_is_refused_and_the_old_one_keeps_serving(
    bundle: Path, world: World, tmp_path: Path
) -> None:
    scorer = _scorer(bundle, tmp_path)
    broken = tmp_path / "broken"
    write_world_bundle(world, broken)
    (broken / "models" / "challenger.cbm").write_bytes(b"not a model")
    scorer.bundle_path = broken
    with pytest.raises(BundleError):
        scorer.reload()
    assert scorer.current.champion.version == "1"
    assert scorer.score(_day(world, 1)[0], time.perf_counter()).result["model_version"]


def test_write_bundle_refuses_models_trained_on_other_features(
    world: World, tmp_path: Path
) -> None:
    from fraud_assets.lib.bundle import write_bundle

    with pytest.raises(BundleError, match="model features"):
        write_bundle(
            tmp_path / "b",
            model_name="m",
            features=list(reversed(world.features)),
            categoricals=world.categoricals,
            variants={
                "champion": {
                    "model": world.champion,
                    "version": "1",
                    "thresholds": {"review": 0.3, "decline": 0.7},
                }
            },
            customer_histories={},
            terminal_rows={},
            store_as_of=world.last_day,
        )
