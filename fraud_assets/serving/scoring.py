"""The scoring path: online features -> CatBoost -> decision -> prediction log.

Everything here is plain Python (no BentoML), so it is unit-testable and the service module
stays thin. The hot path does no imports, builds no DataFrames and calls CatBoost with a
list of rows (categoricals as strings): one ``predict_proba`` per variant per request/batch.

Per transaction it computes one online feature tuple (``features.online_vectors``: the same
loop for /score and /score_batch, so both apply a transaction to the store identically);
the answer is a small dict, the log line a msgspec struct (see ``logs``): no per-row dict of
features, no ``json.dumps``.

State: a ``Deployment`` (``deployment.py``: manifest + loaded models) is immutable; the
``Scorer`` swaps whole deployments on reload/rollback, so a request that picked one up
finishes on it.
"""

from __future__ import annotations

import operator
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Generator, Iterable, Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from itertools import repeat, starmap
from pathlib import Path
from typing import Any

import msgspec

from fraud_assets.lib.contracts import CHALLENGER, CHAMPION, LOGGED_TRANSACTION_FIELDS, SHADOW
from fraud_assets.lib.online_store import Check, OnlineStore, Peek, Recorded
from fraud_assets.serving.admission import (
    Where,
    check_clock,
    check_instants,
    check_retries,
    fingerprint,
    in_batch,
    in_single,
    max_clock_ahead,
)
from fraud_assets.serving.deployment import (
    Deployment,
    Variant,
    import_catboost,
    load_deployment,
)
from fraud_assets.serving.logs import DayLog, PredictionRow, logged_since
from fraud_assets.serving.routing import answering_variants, in_shadow, route
from fraud_assets.serving.schemas import Transaction

RECENT_RESULTS = 50_000  # idempotency window: a retried transaction_id gets the same answer
TOP_REASONS = 3
BATCH_CHUNK = 250  # rows between yields of a batch to the event loop (~1-2 ms of work)


class NothingToRollBack(RuntimeError):
    """Rollback asked before any reload: there is no previous deployment in memory."""


# A logged answer's fields (name in the answer, field of the prediction log).
_RESULT_FIELDS = (
    ("transaction_id", "transaction_id"),
    ("fraud_probability", "score"),
    ("decision", "decision"),
    ("model_name", "model_name"),
    ("model_version", "model_version"),
    ("variant", "variant"),
    ("latency_ms", "latency_ms"),
)


def _trusted(txs: Sequence[Mapping[str, Any]], peek: Peek, recorded: Recorded) -> None:
    """No admission check: replayed rows were admitted when they were first scored."""


class Scored(msgspec.Struct, frozen=True, gc=False):
    """One scored transaction: the answer, and what explaining it later needs.

    A struct because one is made per transaction and ~50k are kept (``RECENT_RESULTS``):
    built in C, and ``gc=False`` keeps them out of the collector's scans (they hold no
    reference back to themselves, so they can never be part of a cycle).
    """

    result: dict[str, Any]
    row: tuple[Any, ...]
    variant: Variant
    deployment: Deployment
    request: tuple[Any, ...]  # the fields it was sent with (``admission.fingerprint``)


def _log_row(
    stamp: str,
    tx: Transaction,
    feats: msgspec.Struct,
    dep: Deployment,
    variant: Variant,
    label: str,
    probability: float,
    latency_ms: float,
) -> PredictionRow:
    """One prediction-log line (the data contract's prediction log row)."""
    return PredictionRow(
        stamp,
        tx.transaction_id,
        tx.ts,  # already UTC (schemas)
        tx.customer_id,
        tx.terminal_id,
        tx.amount,
        tx.merchant_category,
        tx.channel,
        feats,
        probability,
        variant.decide(probability),
        dep.model_name,
        variant.version,
        label,
        latency_ms,
        dep.bundle_id,
    )


class Scorer:
    """Owns the current deployment, the online store and the prediction log."""

    def __init__(
        self, bundle_path: str | os.PathLike[str], store: OnlineStore, log: DayLog
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
        self.max_clock_ahead = max_clock_ahead()
        self.latest_ts: datetime | None = None  # the newest transaction time scored
        # An embedded store dies with its process: rebuild what it had scored since its seed.
        self.recovered = 0 if store.shared else self._recover()

    # ------------------------------------------------------------------------ hot path

    def _check(self, where: Where, retries: bool) -> Check:
        """What the store runs on the state a request will change, before changing it:
        payload conflicts of retried ids (here or, with a shared store, in another worker)
        and the same-instant bound."""
        answered = self._answered

        def check(txs: Sequence[Mapping[str, Any]], peek: Peek, recorded: Recorded) -> None:
            if retries or self.store.shared:
                check_retries(txs, lambda t: answered(t) or recorded(t), where)
            check_instants(txs, peek, where)

        return check

    def _seen(self, txs: Sequence[Mapping[str, Any]]) -> None:
        latest = max(tx["ts"] for tx in txs)
        if self.latest_ts is None or latest > self.latest_ts:
            self.latest_ts = latest

    def _recorded(self, tx: Mapping[str, Any], vector: Sequence[Any], dep: Deployment) -> Scored:
        """The answer to a transaction another worker applied (shared store): recomputed
        from the features it recorded, not applied or logged again."""
        name, _ = route(
            tx["customer_id"],
            share=dep.share,
            mode=dep.mode,
            has_challenger=dep.challenger is not None,
        )
        variant = dep.variant(name)
        row = dep.model_row(tuple(vector))
        probability = variant.probability(row)
        result = {
            "transaction_id": tx["transaction_id"],
            "fraud_probability": probability,
            "decision": variant.decide(probability),
            "model_name": dep.model_name,
            "model_version": variant.version,
            "variant": name,
            "latency_ms": 0.0,
        }
        scored = Scored(result, row, variant, dep, fingerprint(tx))
        self._remember(tx["transaction_id"], scored)
        self.replayed += 1
        return scored

    def _answered(self, transaction_id: str) -> tuple[Any, ...] | None:
        """The fields a recently answered transaction id was sent with."""
        scored = self._recent.get(transaction_id)
        return None if scored is None else scored.request

    def _remember(self, transaction_id: str, scored: Scored) -> None:
        """Keep the answer (and its row, for a retried explain) of recent transactions."""
        recent = self._recent
        recent[transaction_id] = scored
        if len(recent) > RECENT_RESULTS:
            recent.popitem(last=False)

    def _remember_many(self, answered: Iterable[tuple[str, Scored]]) -> None:
        """``_remember`` for a batch's answers at once (same content, FIFO)."""
        recent = self._recent
        recent.update(answered)
        while len(recent) > RECENT_RESULTS:
            recent.popitem(last=False)

    def score(self, tx: Transaction, started: float) -> Scored:
        """Score one transaction (state update + log). ``started``: ``perf_counter()`` at
        request arrival, so latency covers parsing too."""
        fields = tx.__dict__
        cached = self._recent.get(tx.transaction_id)
        if cached is not None:
            check_retries([fields], self._answered, in_single)
            self.replayed += 1
            return cached
        check_clock([fields], self.max_clock_ahead, in_single)
        dep = self.current
        vectors, recorded = self.store.apply(
            [fields], dep.categoricals, self._check(in_single, retries=False)
        )
        vector = vectors[0]
        if vector is None:  # applied by another worker of a shared store
            return self._recorded(fields, recorded[tx.transaction_id][1], dep)
        self._seen([fields])
        name, shadow = route(
            tx.customer_id,
            share=dep.share,
            mode=dep.mode,
            has_challenger=dep.challenger is not None,
        )
        variant = dep.variant(name)
        row = dep.model_row(vector)
        probability = variant.probability(row)
        shadow_probability = dep.challenger.probability(row) if shadow and dep.challenger else None
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
        scored = Scored(result, row, variant, dep, fingerprint(fields))
        self._remember(tx.transaction_id, scored)
        now = datetime.now(UTC)
        stamp, feats = now.isoformat(), dep.feature_row(*vector)
        rows = [_log_row(stamp, tx, feats, dep, variant, name, probability, latency_ms)]
        if shadow_probability is not None and dep.challenger is not None:
            rows.append(
                _log_row(
                    stamp, tx, feats, dep, dep.challenger, SHADOW, shadow_probability, latency_ms
                )
            )
        self.log.write(rows, now.date())
        return scored

    def score_batch(self, txs: Sequence[Mapping[str, Any]], started: float) -> list[dict[str, Any]]:
        """Score in order (state updates in order), one ``predict_proba`` per variant.

        ``txs``: validated transactions as field mappings (``schemas.parse_batch``; a
        ``Transaction``'s ``__dict__`` is one too)."""
        steps = self.score_batch_steps(txs, started)
        while True:
            try:
                next(steps)
            except StopIteration as done:
                return done.value

    def score_batch_steps(
        self, txs: Sequence[Mapping[str, Any]], started: float, chunk: int = BATCH_CHUNK
    ) -> Generator[None, None, list[dict[str, Any]]]:
        """``score_batch`` as a generator that yields every ``chunk`` rows.

        The service resumes the generator from its event loop and serves other requests at
        each yield, so single transactions do not queue behind a batch. Rows keep their
        order and update the store in order (exactly what one /score per row would do); the
        deployment is the one current at the start. Phases: features (``online_vectors``, as
        /score), one ``predict_proba`` per variant, answers + log.
        """
        dep = self.current
        store, recent = self.store, self._recent
        # The whole request is checked before any row changes state (admission).
        tids_all = [tx["transaction_id"] for tx in txs]
        retries = not (recent.keys().isdisjoint(tids_all) and len(set(tids_all)) == len(tids_all))
        if retries:
            check_retries(txs, self._answered, in_batch)
        check_clock(txs, self.max_clock_ahead, in_batch)
        check = self._check(in_batch, retries)
        store.inspect(txs, check)
        if txs:
            self._seen(txs)
        has_challenger = dep.challenger is not None
        n = len(txs)
        results: list[dict[str, Any] | None] = [None] * n
        first_of: dict[str, int] = {}
        duplicates: list[tuple[int, int]] = []
        todo: list[int] = []  # batch positions to score; the lists below run parallel to it
        scoring: list[Mapping[str, Any]] = []
        names: list[str] = []
        vectors: list[tuple[Any, ...]] = []
        for lo in range(0, n, chunk):
            hi = min(lo + chunk, n)
            part = txs[lo:hi]
            tids = [tx["transaction_id"] for tx in part]
            if (
                recent.keys().isdisjoint(tids)
                and first_of.keys().isdisjoint(tids)
                and len(set(tids)) == len(tids)
            ):  # the usual case, checked in C: every row is new
                first_of.update(zip(tids, range(lo, hi), strict=True))
                positions: list[int] = list(range(lo, hi))
            else:
                positions = []
                for i, tid in enumerate(tids, lo):
                    if tid in recent:
                        self.replayed += 1
                        results[i] = recent[tid].result
                    elif tid in first_of:
                        duplicates.append((i, first_of[tid]))
                    else:
                        first_of[tid] = i
                        positions.append(i)
                part = [txs[i] for i in positions]
            got, recorded = store.apply(part, dep.categoricals, check)
            if recorded:  # rows another worker applied: answered from its record
                kept = []
                for i, row, vector in zip(positions, part, got, strict=True):
                    if vector is None:
                        recorded_vector = recorded[row["transaction_id"]][1]
                        results[i] = self._recorded(row, recorded_vector, dep).result
                    else:
                        kept.append((i, row, vector))
                positions = [i for i, _, _ in kept]
                part = [row for _, row, _ in kept]
                got = [vector for _, _, vector in kept]
            todo += positions
            scoring += part
            vectors += got
            names += answering_variants(
                [tx["customer_id"] for tx in part],
                share=dep.share,
                mode=dep.mode,
                has_challenger=has_challenger,
            )
            yield
        model_row = dep.model_row
        rows = vectors if dep.features == dep.columns else [model_row(v) for v in vectors]
        probability = [0.0] * len(todo)
        for name in (CHAMPION, CHALLENGER):
            idx = [j for j, v in enumerate(names) if v == name]
            if idx:
                group = rows if len(idx) == len(rows) else [rows[j] for j in idx]
                p = dep.predict_many(dep.variant(name), group, self._catboost)
                for j, pj in zip(idx, p, strict=True):
                    probability[j] = pj
        shadow_p: list[float] = []
        if todo and in_shadow(mode=dep.mode, has_challenger=has_challenger):
            shadow_p = dep.predict_many(dep.variant(CHALLENGER), rows, self._catboost)
        latency_ms = (time.perf_counter() - started) * 1000.0
        now = datetime.now(UTC)
        stamp, model_name, bundle_id = now.isoformat(), dep.model_name, dep.bundle_id
        variants = {CHAMPION: dep.champion, CHALLENGER: dep.variant(CHALLENGER)}
        fields = operator.itemgetter(*LOGGED_TRANSACTION_FIELDS)
        # Answers and log lines column by column: map/zip build the per-row objects in C
        # (per-row Python statements were a third of this phase).
        for lo in range(0, len(todo), chunk):
            yield
            hi = min(lo + chunk, len(todo))
            part_names, part_p = names[lo:hi], probability[lo:hi]
            used = [variants[name] for name in part_names]
            decisions = [v.decide(p) for v, p in zip(used, part_p, strict=True)]
            versions = [v.version for v in used]
            tids, times, customers, terminals, amounts, categories, channels = zip(
                *map(fields, scoring[lo:hi]), strict=True
            )
            answers = [
                {
                    "transaction_id": tid,
                    "fraud_probability": p,
                    "decision": decision,
                    "model_name": model_name,
                    "model_version": version,
                    "variant": name,
                    "latency_ms": latency_ms,
                }
                for tid, p, decision, version, name in zip(
                    tids, part_p, decisions, versions, part_names, strict=True
                )
            ]
            for i, answer in zip(todo[lo:hi], answers, strict=True):
                results[i] = answer
            requests = map(fingerprint, scoring[lo:hi])
            self._remember_many(
                zip(
                    tids,
                    map(Scored, answers, rows[lo:hi], used, repeat(dep), requests),
                    strict=True,
                )
            )
            feats = list(starmap(dep.feature_row, vectors[lo:hi]))
            fields_and_features = (
                tids,
                times,
                customers,
                terminals,
                amounts,
                categories,
                channels,
                feats,
            )
            log_rows = list(
                map(
                    PredictionRow,
                    repeat(stamp),
                    *fields_and_features,
                    part_p,
                    decisions,
                    repeat(model_name),
                    versions,
                    part_names,
                    repeat(latency_ms),
                    repeat(bundle_id),
                )
            )  # = _log_row(...) per row
            if shadow_p:
                challenger = dep.variant(CHALLENGER)
                shadow_rows = map(
                    PredictionRow,
                    repeat(stamp),
                    *fields_and_features,
                    shadow_p[lo:hi],
                    map(challenger.decide, shadow_p[lo:hi]),
                    repeat(model_name),
                    repeat(challenger.version),
                    repeat(SHADOW),
                    repeat(latency_ms),
                    repeat(bundle_id),
                )
                log_rows = [row for pair in zip(log_rows, shadow_rows, strict=True) for row in pair]
            self.log.write(log_rows, now.date())
        for i, j in duplicates:
            results[i] = results[j]
        return [r for r in results if r is not None]

    @staticmethod
    def features_of(scored: Scored) -> dict[str, Any]:
        """The feature values the model saw, by name (model order)."""
        return dict(zip(scored.deployment.features, scored.row, strict=True))

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
        """Re-read the current bundle folder and swap it in (``switch`` to the same path)."""
        return self.switch(self.bundle_path)

    def switch(self, bundle_path: str | os.PathLike[str]) -> Deployment:
        """Load the bundle at ``bundle_path`` and swap it in; the old one becomes
        ``previous``. Requests in flight finish on the deployment they started with.

        The store is reseeded only by a bundle whose store day is newer than the store's
        seed: a model-only rollout (or a rollback to an older bundle) keeps the live state,
        which already holds everything the older seed had and more.
        """
        path = Path(bundle_path)
        new = load_deployment(path)
        seed_day = getattr(self.store, "seed_as_of", None)
        if seed_day is None or new.store_as_of > seed_day:
            self.store.load_seed(path)
        with self._swap_lock:
            self.previous, self.current = self.current, new
            self.bundle_path = path
        return new

    def use_thresholds(self, overrides: Mapping[str, Mapping[str, float]] | None) -> bool:
        """Decide with the bundle's thresholds, replaced by ``overrides`` (variant -> review
        and decline) where given: a recalibration of the deployment pointer. True if that
        changed the current deployment (swapped whole, between two requests)."""
        with self._swap_lock:
            dep = self.current
            spec = dep.manifest["variants"]
            overrides = overrides or {}
            changed = {}
            for name in (CHAMPION, CHALLENGER):
                variant = dep.challenger if name == CHALLENGER else dep.champion
                if variant is None:
                    continue
                wanted = overrides.get(name) or spec[name]["thresholds"]
                review, decline = float(wanted["review"]), float(wanted["decline"])
                if (review, decline) != (variant.review, variant.decline):
                    changed[name] = replace(variant, review=review, decline=decline)
            if not changed:
                return False
            self.current = replace(
                dep,
                champion=changed.get(CHAMPION, dep.champion),
                challenger=changed.get(CHALLENGER, dep.challenger),
            )
            return True

    def _recover(self) -> int:
        """Re-apply the transactions this service logged on or after the store's seed day,
        in the order they were scored, and remember their answers (so a retry after the
        restart gets the same one). Rows before the seed day are in the seed already."""
        seed_day = getattr(self.store, "seed_as_of", None) or self.store.as_of
        if seed_day is None:
            return 0
        rows = logged_since(self.log.state_root, seed_day, self.max_clock_ahead)
        dep = self.current
        same_layout = dep.features == dep.columns
        recovered = 0
        for lo in range(0, len(rows), BATCH_CHUNK):
            part = rows[lo : lo + BATCH_CHUNK]
            vectors, _ = self.store.apply(part, dep.categoricals, _trusted)
            answered = []
            for row, vector in zip(part, vectors, strict=True):
                if vector is None:
                    continue
                result = {name: row[field] for name, field in _RESULT_FIELDS}
                variant = dep.variant(row["variant"])
                model_row = vector if same_layout else dep.model_row(vector)
                answered.append(
                    (
                        row["transaction_id"],
                        Scored(result, model_row, variant, dep, fingerprint(row)),
                    )
                )
            self._remember_many(answered)
            recovered += len(part)
        if rows:
            self._seen(rows)
        return recovered

    def store_lag(self) -> float | None:
        """Seconds the newest scored transaction is past the end of the store's day
        (None before any traffic): how stale the terminal snapshots are for it."""
        as_of = self.store.as_of
        if self.latest_ts is None or as_of is None:
            return None
        end = datetime(as_of.year, as_of.month, as_of.day, tzinfo=UTC) + timedelta(days=1)
        return (self.latest_ts - end).total_seconds()

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
            "store_lag_s": self.store_lag(),
            "predictions_logged": self.log.rows,
            "recovered_from_log": self.recovered,
            "replayed_requests": self.replayed,
        }
