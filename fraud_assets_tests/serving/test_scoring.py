"""The scoring path in process (no HTTP): parity of batch and single scoring, reload, rollback,
and the import boundary of ``serving/``."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from fraud_assets.lib.bundle import BundleError
from fraud_assets.lib.calibration import Platt
from fraud_assets.lib.contracts import BUNDLE_MANIFEST, BUNDLE_MODELS_DIR, PREDICTIONS_LOG
from fraud_assets.lib.online_store import EmbeddedStore, OnlineStore, RedisStore
from fraud_assets.lib.sample_world import World, write_world_bundle
from fraud_assets.serving.logs import DayLog
from fraud_assets.serving.schemas import Transaction
from fraud_assets.serving.scoring import NothingToRollBack, Scorer


@pytest.fixture(scope="module")
def bundle(world: World, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_world_bundle(world, tmp_path_factory.mktemp("scoring") / "bundle", share=0.5)


def _scorer(bundle: Path, tmp: Path, store: OnlineStore | None = None) -> Scorer:
    return Scorer(bundle, store or EmbeddedStore(), DayLog(tmp, PREDICTIONS_LOG))


@pytest.fixture(params=["embedded", "redis"])
def store(request: pytest.FixtureRequest) -> OnlineStore:
    """Each store behind the scorer (Redis: a real server, emptied per test)."""
    if request.param == "embedded":
        return EmbeddedStore()
    return RedisStore(request.getfixturevalue("redis_url"))


def _day(world: World, n: int) -> list[Transaction]:
    day = world.history.filter(pl.col("ts").dt.date() == world.last_day)
    rows = day.sort("ts", "transaction_id").head(n).iter_rows(named=True)
    fields = ("transaction_id", "ts", "customer_id", "terminal_id", "amount", *world.categoricals)
    return [Transaction(**{f: r[f] for f in fields}) for r in rows]


def _rows(txs: list[Transaction]) -> list[dict[str, Any]]:
    """What ``schemas.parse_batch`` hands the scorer."""
    return [dict(t.__dict__) for t in txs]


def _without_latency(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: v for k, v in r.items() if k != "latency_ms"} for r in results]


def test_serving_never_imports_polars_or_dagster(bundle: Path) -> None:
    """Import the service and load real CatBoost models in a fresh interpreter."""
    code = (
        "import sys\n"
        "import fraud_assets.serving.service\n"
        "from fraud_assets.serving.deployment import load_deployment\n"
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
    batch = _scorer(bundle, tmp_path / "a").score_batch(_rows(txs), time.perf_counter())
    single_scorer = _scorer(bundle, tmp_path / "b")
    single = [single_scorer.score(t, time.perf_counter()).result for t in txs]
    assert _without_latency(batch) == _without_latency(single)
    assert {r["variant"] for r in batch} == {"champion", "challenger"}
    assert [r["transaction_id"] for r in batch] == [t.transaction_id for t in txs]


def _logged(scorer: Scorer) -> list[dict[str, Any]]:
    lines = []
    for path in sorted((scorer.log.state_root / PREDICTIONS_LOG).glob("date=*/part-*.jsonl")):
        lines += [json.loads(x) for x in path.read_text().splitlines()]
    return lines


def test_an_awkward_batch_equals_one_request_per_row(
    bundle: Path, world: World, tmp_path: Path
) -> None:
    """Rows out of time order for one customer, instants shared by several rows, a duplicate,
    a replay of an earlier request, new customers and an unknown terminal: the batch answers,
    logs and leaves the store exactly as one /score per row would."""
    real = _day(world, 40)
    t0 = real[-1].ts
    seeded = real[5].customer_id

    def tx(tid: str, customer: str, seconds: float, amount: float, **kw: Any) -> Transaction:
        fields = {"merchant_category": "grocery", "channel": "online"} | kw
        return Transaction(
            transaction_id=tid,
            ts=t0 + timedelta(seconds=seconds),
            customer_id=customer,
            terminal_id=kw.pop("terminal_id", real[0].terminal_id),
            amount=amount,
            **{k: v for k, v in fields.items() if k in ("merchant_category", "channel")},
        )

    earlier = tx("a-0", "new-1", 0, 3.0)
    batch = [
        *real[30:40],
        tx("a-1", "new-1", 60, 2.0),
        tx("a-2", "new-1", 60, 2.0),  # same instant: a tie
        tx("a-3", "new-1", 30, 700.0),  # before the two above: a late arrival
        tx("a-4", seeded, 10, 1.0, channel=None),
        tx("a-5", seeded, 10, 1.0, terminal_id="T-never-seen"),
        tx("a-3", "new-1", 30, 700.0),  # a duplicate within the batch
        earlier,  # answered by an earlier request: replayed
        tx("a-6", "new-2", -86_400 * 40, 9.0),  # far in the past
        tx("a-7", "new-1", 3_600 * 24 * 31, 4.0),  # a month later: prunes the others
        tx("a-8", "new-1", 45, 1.0),  # then one older than that again
    ]
    by_batch, by_rows = _scorer(bundle, tmp_path / "a"), _scorer(bundle, tmp_path / "b")
    for scorer in (by_batch, by_rows):
        scorer.score(earlier, time.perf_counter())
    got = by_batch.score_batch(_rows(batch), time.perf_counter())
    want = [by_rows.score(t, time.perf_counter()).result for t in batch]
    assert _without_latency(got) == _without_latency(want)
    # The earlier request is a replay for both; the in-batch duplicate only for the singles.
    assert (by_batch.replayed, by_rows.replayed) == (1, 2)
    logged_batch, logged_rows = _logged(by_batch), _logged(by_rows)
    assert len(logged_batch) == len(logged_rows) == len(batch) - 1  # each scored id once
    for a, b in zip(logged_batch, logged_rows, strict=True):
        for key in ("transaction_id", "ts", "features", "score", "decision", "variant"):
            assert a[key] == b[key], (key, a["transaction_id"])
    for customer in ("new-1", "new-2", seeded):
        got_h, want_h = by_batch.store.history(customer), by_rows.store.history(customer)
        assert (got_h.keys, got_h.amounts) == (want_h.keys, want_h.amounts)


def test_duplicates_in_a_batch_are_scored_once(bundle: Path, world: World, tmp_path: Path) -> None:
    scorer = _scorer(bundle, tmp_path)
    t = _day(world, 1)[0]
    results = scorer.score_batch(_rows([t, t]), time.perf_counter())
    assert results[0] == results[1]
    assert scorer.log.rows == 1
    assert scorer.store.history(t.customer_id).keys[-1] > 0
    retried = scorer.score(t, time.perf_counter())
    assert retried.result == results[0]
    assert len(scorer.explain(retried)) == 3  # a retried explain still has its row


def test_served_probabilities_are_calibrated_as_the_bundle_says(
    world: World, tmp_path: Path
) -> None:
    platt = Platt(0.9, -3.0)
    bundle = write_world_bundle(
        world, tmp_path / "calibrated", share=0.0, challenger=False, calibration=platt.to_dict()
    )
    txs = _day(world, 50)
    single = _scorer(bundle, tmp_path / "a").score(txs[0], time.perf_counter())
    raw = float(world.champion.predict_proba([single.row])[0][1])
    assert single.result["fraud_probability"] == platt.apply(raw) != raw
    batch = _scorer(bundle, tmp_path / "b").score_batch(_rows(txs), time.perf_counter())
    plain = _scorer(write_world_bundle(world, tmp_path / "plain", share=0.0), tmp_path / "c")
    raws = [r["fraud_probability"] for r in plain.score_batch(_rows(txs), time.perf_counter())]
    assert [r["fraud_probability"] for r in batch] == platt.apply_many(raws)
    assert load_manifest_calibration(bundle) == platt.to_dict()


def load_manifest_calibration(bundle: Path) -> dict[str, float]:
    return json.loads((bundle / BUNDLE_MANIFEST).read_text())["variants"]["champion"]["calibration"]


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
    (broken / BUNDLE_MODELS_DIR / "challenger.cbm").write_bytes(b"not a model")
    scorer.bundle_path = broken
    with pytest.raises(BundleError):
        scorer.reload()
    assert scorer.current.champion.version == "1"
    assert scorer.score(_day(world, 1)[0], time.perf_counter()).result["model_version"]


def test_a_model_file_with_zeroed_bytes_fails_its_checksum_on_reload(
    bundle: Path, world: World, tmp_path: Path
) -> None:
    """256 zeroed bytes inside the model file still load in CatBoost (different scores under
    the same bundle id); the manifest's checksums refuse them, and a damaged seed too."""
    from fraud_assets.lib.bundle import read_store_seed
    from fraud_assets.lib.contracts import BUNDLE_CUSTOMERS_FILE, BUNDLE_STORE_DIR

    scorer = _scorer(bundle, tmp_path)
    damaged = write_world_bundle(world, tmp_path / "damaged")
    model = damaged / BUNDLE_MODELS_DIR / "champion.cbm"
    data = bytearray(model.read_bytes())
    data[len(data) // 2 : len(data) // 2 + 256] = bytes(256)
    model.write_bytes(bytes(data))
    scorer.bundle_path = damaged
    with pytest.raises(BundleError, match=r"champion\.cbm does not match its checksum"):
        scorer.reload()
    assert (
        scorer.current.bundle_id == json.loads((bundle / BUNDLE_MANIFEST).read_text())["bundle_id"]
    )
    seed = write_world_bundle(world, tmp_path / "seed") / BUNDLE_STORE_DIR / BUNDLE_CUSTOMERS_FILE
    seed.write_bytes(seed.read_bytes()[:-10])
    with pytest.raises(BundleError, match="checksum"):
        read_store_seed(tmp_path / "seed")


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


# ------------------------------------------------- requests that would corrupt state: refused


def _state(scorer: Scorer, customer_id: str) -> tuple:
    history = scorer.store.peek(customer_id)
    return None if history is None else history.to_arrays()


def test_a_transaction_far_ahead_of_the_clock_is_refused_and_prunes_nothing(
    bundle: Path, world: World, tmp_path: Path, store: OnlineStore
) -> None:
    from datetime import UTC, datetime

    from fraud_assets.serving.schemas import RequestError

    scorer = _scorer(bundle, tmp_path, store)
    tx = _day(world, 1)[0]
    before = _state(scorer, tx.customer_id)
    future = tx.model_copy(
        update={"transaction_id": "x-2199", "ts": datetime(2199, 1, 1, tzinfo=UTC)}
    )
    with pytest.raises(RequestError) as single:
        scorer.score(future, time.perf_counter())
    assert (single.value.status, single.value.field) == (422, "transaction.ts")
    rows = _rows(_day(world, 5)) + _rows([future])
    with pytest.raises(RequestError) as batch:
        scorer.score_batch(rows, time.perf_counter())
    assert (batch.value.status, batch.value.field) == (422, "transactions.5.ts")
    assert _state(scorer, tx.customer_id) == before  # nothing of either request applied
    assert scorer.score(tx, time.perf_counter()).result["transaction_id"] == tx.transaction_id


def test_more_same_instant_transactions_than_the_history_orders_are_refused_whole(
    bundle: Path, world: World, tmp_path: Path, store: OnlineStore
) -> None:
    from fraud_assets.lib.features.definitions import TIE_SLOTS
    from fraud_assets.serving.schemas import RequestError

    scorer = _scorer(bundle, tmp_path, store)
    tx = _day(world, 1)[0]
    burst = [
        dict(tx.__dict__, transaction_id=f"burst-{i}") for i in range(TIE_SLOTS - 1)
    ]  # exactly as many as one instant holds
    scorer.score_batch(burst[:1000], time.perf_counter())
    held = _state(scorer, tx.customer_id)
    more = [*burst[1000:], dict(tx.__dict__, transaction_id="one-too-many")]
    with pytest.raises(RequestError) as refused:
        scorer.score_batch(more, time.perf_counter())
    assert refused.value.status == 422 and refused.value.error == "too_many_at_instant"
    assert _state(scorer, tx.customer_id) == held  # the refused batch changed nothing
    scorer.score_batch(burst[1000:], time.perf_counter())  # what still fits is accepted
    assert len(_state(scorer, tx.customer_id)[0]) == len(held[0]) + len(burst) - 1000


def test_a_retried_id_with_another_payload_is_a_conflict_naming_the_fields(
    bundle: Path, world: World, tmp_path: Path, store: OnlineStore
) -> None:
    from fraud_assets.serving.schemas import RequestError

    scorer = _scorer(bundle, tmp_path, store)
    tx = _day(world, 1)[0]
    first = scorer.score(tx, time.perf_counter()).result
    assert scorer.score(tx, time.perf_counter()).result == first  # a true retry: same answer
    other = tx.model_copy(update={"amount": tx.amount + 1, "customer_id": "someone-else"})
    with pytest.raises(RequestError) as single:
        scorer.score(other, time.perf_counter())
    assert single.value.status == 409
    assert "customer_id" in single.value.message and "amount" in single.value.message
    with pytest.raises(RequestError) as batch:
        scorer.score_batch(_rows([other]), time.perf_counter())
    assert (batch.value.status, batch.value.field) == (409, "transactions.0.transaction_id")
    # Two rows of one batch with one id and different payloads: refused before scoring.
    fresh = _day(world, 3)[2]
    twins = [*_rows([fresh]), dict(fresh.__dict__, amount=fresh.amount + 5)]
    before = _state(scorer, fresh.customer_id)
    with pytest.raises(RequestError) as dup:
        scorer.score_batch(twins, time.perf_counter())
    assert (dup.value.status, dup.value.field) == (409, "transactions.1.transaction_id")
    assert _state(scorer, fresh.customer_id) == before


def test_a_retry_on_another_worker_of_a_shared_store_is_answered_not_reapplied(
    bundle: Path, world: World, tmp_path: Path, redis_url: str
) -> None:
    from fraud_assets.serving.schemas import RequestError

    one = _scorer(bundle, tmp_path / "one", RedisStore(redis_url))
    two = _scorer(bundle, tmp_path / "two", RedisStore(redis_url))
    tx = _day(world, 1)[0]
    first = one.score(tx, time.perf_counter()).result
    held = _state(one, tx.customer_id)
    again = two.score(tx, time.perf_counter()).result
    assert again["fraud_probability"] == first["fraud_probability"]
    assert again["decision"] == first["decision"]
    assert _state(two, tx.customer_id) == held and two.log.rows == 0  # not applied twice
    other = tx.model_copy(update={"amount": tx.amount + 1})
    with pytest.raises(RequestError) as conflict:
        two.score(other, time.perf_counter())
    assert conflict.value.status == 409 and "amount" in conflict.value.message
