"""The scoring path: online features -> CatBoost -> decision -> prediction log.

Everything here is plain Python (no BentoML), so it is unit-testable and the service module
stays thin. The hot path does no imports, builds no DataFrames and calls CatBoost with a
list of rows (categoricals as strings): one ``predict_proba`` per variant per request/batch.

State: a ``Deployment`` (manifest + loaded models) is immutable; the ``Scorer`` swaps whole
deployments on reload/rollback, so a request that picked one up finishes on it.
"""

from __future__ import annotations

import importlib.abc
import os
import sys
import threading
import time
from collections import OrderedDict
from collections.abc import Generator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from fraud_assets.lib.bundle import BundleError, model_path, read_manifest
from fraud_assets.lib.features import UNKNOWN_CATEGORY, online_features
from fraud_assets.lib.online_store import OnlineStore
from fraud_assets.serving.logs import PredictionLog
from fraud_assets.serving.routing import CHALLENGER, CHAMPION, SHADOW, route
from fraud_assets.serving.schemas import Transaction

# One row is scored on the calling thread: CatBoost's default (all cores) hands each call to
# its thread pool, which costs more CPU than the ~0.1 ms of tree evaluation it spreads.
SINGLE_ROW_THREADS = 1
RECENT_RESULTS = 50_000  # idempotency window: a retried transaction_id gets the same answer
TOP_REASONS = 3
BATCH_CHUNK = 50  # rows between yields of a batch to the event loop (~5 ms of work)


class _KeepPolarsOut(importlib.abc.MetaPathFinder):
    """Makes ``import polars`` fail while catboost imports (it probes for Polars)."""

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> None:
        if name == "polars" or name.startswith("polars."):
            raise ModuleNotFoundError(f"{name} is kept out of the scoring service", name=name)
        return None


def import_catboost() -> ModuleType:
    """Import catboost without letting it pull in Polars.

    catboost imports Polars whenever it is installed, only to accept Polars frames; the
    service never passes any, and ``serving/`` must not load Polars (lean worker, small Bento).
    If Polars is already loaded (e.g. a test process), nothing is blocked.
    """
    if "catboost" in sys.modules or "polars" in sys.modules:
        import catboost

        return catboost
    blocker = _KeepPolarsOut()
    sys.meta_path.insert(0, blocker)
    try:
        import catboost
    finally:
        sys.meta_path.remove(blocker)
    return catboost


@dataclass(frozen=True)
class Variant:
    """One loaded model and its decision thresholds."""

    name: str
    version: str
    model: Any
    review: float
    decline: float
    model_file: str

    def decide(self, probability: float) -> str:
        if probability >= self.decline:
            return "decline"
        if probability >= self.review:
            return "review"
        return "approve"

    def describe(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "model_file": self.model_file,
            "thresholds": {"review": self.review, "decline": self.decline},
        }


@dataclass(frozen=True)
class Deployment:
    """A bundle as loaded in memory: immutable, swapped as a whole."""

    path: str
    manifest: dict[str, Any]
    features: tuple[str, ...]
    categoricals: tuple[str, ...]
    cat_indices: tuple[int, ...]  # categoricals' positions in the feature vector
    champion: Variant
    challenger: Variant | None
    share: float
    mode: str
    store_as_of: date
    loaded_at: str = field(default_factory=lambda: datetime.now(UTC).isoformat())

    @property
    def model_name(self) -> str:
        return self.manifest["model_name"]

    @property
    def bundle_id(self) -> str | None:
        return self.manifest.get("bundle_id")

    @property
    def n_numeric(self) -> int:
        """Numeric features come first when the categoricals are the trailing columns (the
        layout ``feature_columns`` produces); 0 means another layout."""
        k = len(self.features) - len(self.cat_indices)
        return k if self.cat_indices == tuple(range(k, len(self.features))) else 0

    def predict_many(
        self, variant: Variant, rows: list[list[Any]], catboost: ModuleType
    ) -> list[float]:
        """Fraud probabilities of many rows in one call.

        Columnar ``FeaturesData`` (float32 numerics + object categoricals) converts ~7x faster
        than a list of mixed rows and gives the same scores (CatBoost stores floats as
        float32 either way).
        """
        k = self.n_numeric
        if not k:
            return variant.model.predict_proba(rows)[:, 1].tolist()
        data = catboost.FeaturesData(
            num_feature_data=np.array([r[:k] for r in rows], dtype=np.float32),
            cat_feature_data=np.array([r[k:] for r in rows], dtype=object)
            if self.cat_indices
            else None,
        )
        return variant.model.predict_proba(data)[:, 1].tolist()

    def variant(self, name: str) -> Variant:
        if name == CHALLENGER and self.challenger is not None:
            return self.challenger
        return self.champion

    def describe(self) -> dict[str, Any]:
        variants = {CHAMPION: self.champion.describe()}
        if self.challenger is not None:
            variants[CHALLENGER] = self.challenger.describe()
        return {
            "model_name": self.model_name,
            "bundle": self.path,
            "bundle_id": self.bundle_id,
            "bundle_created_at": self.manifest.get("created_at"),
            "feature_code_version": self.manifest.get("feature_code_version"),
            "loaded_at": self.loaded_at,
            "features": list(self.features),
            "categoricals": list(self.categoricals),
            "store_as_of": self.store_as_of.isoformat(),
            "variants": variants,
            "traffic": {"challenger_share": self.share, "mode": self.mode},
        }


def _load_variant(catboost: ModuleType, path: Path, manifest: dict[str, Any], name: str) -> Any:
    model = catboost.CatBoostClassifier()
    try:
        model.load_model(str(model_path(path, manifest, name)))
    except catboost.CatBoostError as exc:
        raise BundleError(f"{name}: cannot load model: {exc}") from None
    features = manifest["features"]
    names = list(getattr(model, "feature_names_", None) or [])
    if names and names != features:
        raise BundleError(f"{name}: model expects {names}, manifest says {features}")
    expected = sorted(features.index(c) for c in manifest["categoricals"] if c in features)
    if sorted(model.get_cat_feature_indices()) != expected:
        raise BundleError(f"{name}: categorical feature positions differ from the manifest")
    return model


def _warm_up(model: Any, features: Sequence[str], cat_indices: Sequence[int]) -> None:
    """First predictions are slower (lazy init): pay that at load, not on a client."""
    row: list[Any] = [0.0] * len(features)
    for i in cat_indices:
        row[i] = UNKNOWN_CATEGORY
    model.predict_proba([row], thread_count=SINGLE_ROW_THREADS)


def load_deployment(path: str | os.PathLike[str], attempts: int = 3) -> Deployment:
    """Load a bundle's manifest and models; retry if a writer swapped the folder meanwhile."""
    catboost = import_catboost()
    path = Path(path)
    last_error: Exception | None = None
    for attempt in range(attempts):
        try:
            manifest = read_manifest(path)
            models = {
                name: _load_variant(catboost, path, manifest, name) for name in manifest["variants"]
            }
            if read_manifest(path).get("bundle_id") != manifest.get("bundle_id"):
                raise BundleError("bundle changed while it was being read")
        except (BundleError, OSError) as exc:
            last_error = exc
            time.sleep(0.05 * (attempt + 1))
            continue
        features = tuple(manifest["features"])
        cat_indices = tuple(i for i, f in enumerate(features) if f in manifest["categoricals"])
        variants = {}
        for name, model in models.items():
            _warm_up(model, features, cat_indices)
            spec = manifest["variants"][name]
            variants[name] = Variant(
                name=name,
                version=spec["version"],
                model=model,
                review=spec["thresholds"]["review"],
                decline=spec["thresholds"]["decline"],
                model_file=spec["model_file"],
            )
        return Deployment(
            path=str(path),
            manifest=manifest,
            features=features,
            categoricals=tuple(manifest["categoricals"]),
            cat_indices=cat_indices,
            champion=variants[CHAMPION],
            challenger=variants.get(CHALLENGER),
            share=manifest["traffic"]["challenger_share"],
            mode=manifest["traffic"]["mode"],
            store_as_of=date.fromisoformat(manifest["store_as_of"]),
        )
    raise BundleError(f"could not load bundle {path}: {last_error}")


class NothingToRollBack(RuntimeError):
    """Rollback asked before any reload: there is no previous deployment in memory."""


@dataclass(frozen=True, slots=True)
class Scored:
    """One scored transaction: the answer, and what explaining it later needs."""

    result: dict[str, Any]
    row: list[Any]
    variant: Variant
    deployment: Deployment


def _transaction_fields(tx: Transaction) -> dict[str, Any]:
    return {
        "transaction_id": tx.transaction_id,
        "ts": tx.ts.isoformat(),  # already UTC (schemas)
        "customer_id": tx.customer_id,
        "terminal_id": tx.terminal_id,
        "amount": tx.amount,
        "merchant_category": tx.merchant_category,
        "channel": tx.channel,
    }


class Scorer:
    """Owns the current deployment, the online store and the prediction log."""

    def __init__(
        self, bundle_path: str | os.PathLike[str], store: OnlineStore, log: PredictionLog
    ) -> None:
        self.bundle_path = Path(bundle_path)
        self._catboost = import_catboost()
        self.store = store
        self.log = log
        self.current = load_deployment(self.bundle_path)
        self.previous: Deployment | None = None
        store.load_seed(self.bundle_path)
        self._swap_lock = threading.Lock()
        self._recent: OrderedDict[str, Scored] = OrderedDict()
        self.replayed = 0

    # ------------------------------------------------------------------------ hot path

    def _features(self, tx: Transaction, dep: Deployment) -> dict[str, Any]:
        """Features of one transaction; its customer's history is updated in place."""
        store = self.store
        history = store.history(tx.customer_id)
        feats = online_features(
            tx.__dict__, history, store.terminal(tx.terminal_id), dep.categoricals
        )
        store.save(tx.customer_id, history)
        return feats

    def _remember(self, transaction_id: str, scored: Scored) -> None:
        """Keep the answer (and its row, for a retried explain) of recent transactions."""
        recent = self._recent
        recent[transaction_id] = scored
        if len(recent) > RECENT_RESULTS:
            recent.popitem(last=False)

    def _log_row(
        self,
        now: str,
        tx_fields: dict[str, Any],
        feats: dict[str, Any],
        dep: Deployment,
        variant: Variant,
        label: str,
        probability: float,
        latency_ms: float,
    ) -> dict[str, Any]:
        return {
            "request_time": now,
            **tx_fields,
            "features": feats,
            "score": probability,
            "decision": variant.decide(probability),
            "model_name": dep.model_name,
            "model_version": variant.version,
            "variant": label,
            "latency_ms": latency_ms,
            "bundle_id": dep.bundle_id,
        }

    def score(self, tx: Transaction, started: float) -> Scored:
        """Score one transaction (state update + log). ``started``: ``perf_counter()`` at
        request arrival, so latency covers parsing too."""
        cached = self._recent.get(tx.transaction_id)
        if cached is not None:
            self.replayed += 1
            return cached
        dep = self.current
        name, shadow = route(
            tx.customer_id,
            share=dep.share,
            mode=dep.mode,
            has_challenger=dep.challenger is not None,
        )
        variant = dep.variant(name)
        with self.store.lock:
            feats = self._features(tx, dep)
        row = [feats[f] for f in dep.features]
        probability = float(
            variant.model.predict_proba([row], thread_count=SINGLE_ROW_THREADS)[0, 1]
        )
        shadow_probability = (
            float(dep.challenger.model.predict_proba([row], thread_count=SINGLE_ROW_THREADS)[0, 1])
            if shadow and dep.challenger
            else None
        )
        latency_ms = (time.perf_counter() - started) * 1000.0
        result = {
            "transaction_id": tx.transaction_id,
            "fraud_probability": probability,
            "decision": variant.decide(probability),
            "model_name": dep.model_name,
            "model_version": variant.version,
            "variant": name,
            "latency_ms": latency_ms,
        }
        scored = Scored(result, row, variant, dep)
        self._remember(tx.transaction_id, scored)
        now = datetime.now(UTC)
        stamp, fields = now.isoformat(), _transaction_fields(tx)
        rows = [self._log_row(stamp, fields, feats, dep, variant, name, probability, latency_ms)]
        if shadow_probability is not None and dep.challenger is not None:
            rows.append(
                self._log_row(
                    stamp,
                    fields,
                    feats,
                    dep,
                    dep.challenger,
                    SHADOW,
                    shadow_probability,
                    latency_ms,
                )
            )
        self.log.write(rows, now.date())
        return scored

    def score_batch(self, txs: Sequence[Transaction], started: float) -> list[dict[str, Any]]:
        """Score in order (state updates in order), one ``predict_proba`` per variant."""
        steps = self.score_batch_steps(txs, started)
        while True:
            try:
                next(steps)
            except StopIteration as done:
                return done.value

    def score_batch_steps(
        self, txs: Sequence[Transaction], started: float, chunk: int = BATCH_CHUNK
    ) -> Generator[None, None, list[dict[str, Any]]]:
        """``score_batch`` as a generator that yields every ``chunk`` rows.

        A 1000-row batch is ~0.1 s of CPU; the service resumes the generator from its event
        loop and serves other requests at each yield, so single transactions do not queue
        behind a batch. Rows keep their order; the deployment is the one current at the start.
        """
        dep = self.current
        n = len(txs)
        results: list[dict[str, Any] | None] = [None] * n
        first_of: dict[str, int] = {}
        duplicates: list[tuple[int, int]] = []
        todo: list[int] = []
        names: list[str] = [CHAMPION] * n
        feats: list[dict[str, Any]] = [{}] * n
        rows: list[list[Any]] = [[]] * n
        any_shadow = False
        for lo in range(0, n, chunk):
            with self.store.lock:
                for i in range(lo, min(lo + chunk, n)):
                    tx = txs[i]
                    cached = self._recent.get(tx.transaction_id)
                    if cached is not None:
                        self.replayed += 1
                        results[i] = cached.result
                        continue
                    if tx.transaction_id in first_of:
                        duplicates.append((i, first_of[tx.transaction_id]))
                        continue
                    first_of[tx.transaction_id] = i
                    names[i], shadow = route(
                        tx.customer_id,
                        share=dep.share,
                        mode=dep.mode,
                        has_challenger=dep.challenger is not None,
                    )
                    any_shadow = any_shadow or shadow
                    feats[i] = f = self._features(tx, dep)
                    rows[i] = [f[c] for c in dep.features]
                    todo.append(i)
            yield
        probability: dict[int, float] = {}
        for name in (CHAMPION, CHALLENGER):
            idx = [i for i in todo if names[i] == name]
            if idx:
                p = dep.predict_many(dep.variant(name), [rows[i] for i in idx], self._catboost)
                probability.update(zip(idx, p, strict=True))
        shadow_p: dict[int, float] = {}
        if any_shadow and dep.challenger is not None and todo:
            p = dep.predict_many(dep.challenger, [rows[i] for i in todo], self._catboost)
            shadow_p = dict(zip(todo, p, strict=True))
        latency_ms = (time.perf_counter() - started) * 1000.0
        now = datetime.now(UTC)
        stamp = now.isoformat()
        for lo in range(0, len(todo), chunk):
            yield
            log_rows = []
            for i in todo[lo : lo + chunk]:
                tx, variant = txs[i], dep.variant(names[i])
                result = {
                    "transaction_id": tx.transaction_id,
                    "fraud_probability": probability[i],
                    "decision": variant.decide(probability[i]),
                    "model_name": dep.model_name,
                    "model_version": variant.version,
                    "variant": names[i],
                    "latency_ms": latency_ms,
                }
                results[i] = result
                self._remember(tx.transaction_id, Scored(result, rows[i], variant, dep))
                fields = _transaction_fields(tx)
                log_rows.append(
                    self._log_row(
                        stamp, fields, feats[i], dep, variant, names[i], probability[i], latency_ms
                    )
                )
                if i in shadow_p and dep.challenger is not None:
                    log_rows.append(
                        self._log_row(
                            stamp,
                            fields,
                            feats[i],
                            dep,
                            dep.challenger,
                            SHADOW,
                            shadow_p[i],
                            latency_ms,
                        )
                    )
            self.log.write(log_rows, now.date())
        for i, j in duplicates:
            results[i] = results[j]
        return [r for r in results if r is not None]

    def explain(self, scored: Scored, top: int = TOP_REASONS) -> list[dict[str, Any]]:
        """Top SHAP contributions of the scored row (~15 ms: run it off the event loop)."""
        dep = scored.deployment
        pool = self._catboost.Pool([scored.row], cat_features=list(dep.cat_indices))
        shap = scored.variant.model.get_feature_importance(data=pool, type="ShapValues")[0]
        contributions = sorted(
            zip(dep.features, shap[:-1].tolist(), strict=True), key=lambda fc: -abs(fc[1])
        )
        return [{"feature": f, "contribution": c} for f, c in contributions[:top]]

    # ------------------------------------------------------------------- admin actions

    def reload(self) -> Deployment:
        """Re-read the bundle folder and swap it in (the old one becomes ``previous``).

        The store is reseeded only when the bundle's store day changed: a model-only rollout
        keeps the live state untouched.
        """
        new = load_deployment(self.bundle_path)
        if new.store_as_of != getattr(self.store, "as_of", None):
            self.store.load_seed(self.bundle_path)
        with self._swap_lock:
            self.previous, self.current = self.current, new
        return new

    def rollback(self) -> Deployment:
        """Swap back to the deployment held before the last reload (a pointer swap, so it
        takes microseconds; rolling back twice rolls forward again)."""
        with self._swap_lock:
            if self.previous is None:
                raise NothingToRollBack("no previous deployment in memory (nothing was reloaded)")
            self.previous, self.current = self.current, self.previous
            return self.current

    def describe(self) -> dict[str, Any]:
        dep, previous = self.current, self.previous
        return {
            **dep.describe(),
            "previous": None
            if previous is None
            else {
                "bundle_id": previous.bundle_id,
                "loaded_at": previous.loaded_at,
                "versions": {
                    name: previous.variant(name).version
                    for name in (CHAMPION, CHALLENGER)
                    if name == CHAMPION or previous.challenger is not None
                },
            },
            "store": self.store.stats(),
            "predictions_logged": self.log.rows,
            "replayed_requests": self.replayed,
        }
