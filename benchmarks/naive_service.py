"""Naive baselines for the serving benchmarks: the minimal BentoML service a tutorial gives
(``NaiveScoring``) and its best form (``NaiveBestScoring``).

``NaiveScoring``: one worker, one sync API with typed parameters (BentoML validates the JSON body with the
pydantic model it derives from the signature), default telemetry (tracing, access log). The
client sends the precomputed feature vector in the request: no online features, no logging.
The only deviation from the tutorial: CatBoost scores the row on the calling thread
(``thread_count=1``, as our service does) so the baseline is not handicapped by CatBoost's
default thread pool, which costs more CPU than one row of tree evaluation.

Start it from the repo root (the champion model of the bundle in ``FRAUD_BUNDLE``)::

    FRAUD_BUNDLE=path/to/bundle bentoml serve benchmarks.naive_service:NaiveScoring

Request: ``POST /score {"features": [...]}`` in the bundle's feature order (categoricals as
strings); answer ``{"fraud_probability": p}``.

``NaiveBestScoring`` is the same model call in the best form the tutorial allows without
writing a feature store: an async API (no thread-pool hop per request), access log and
tracing off on its route (as our service runs its hot routes), one worker.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import bentoml
from catboost import CatBoostClassifier

from fraud_assets.lib.contracts import BUNDLE_ENV, BUNDLE_MANIFEST, CHAMPION


@bentoml.service(name="naive_scoring", workers=1)
class NaiveScoring:
    def __init__(self) -> None:
        self.model = champion()

    @bentoml.api
    def score(self, features: list[float | str]) -> dict[str, float]:
        probability = self.model.predict_proba([features], thread_count=1)[0, 1]
        return {"fraud_probability": float(probability)}


@bentoml.service(
    name="naive_scoring_best",
    workers=1,
    logging={"access": {"enabled": True, "skip_paths": ["/score"]}},
    tracing={"excluded_urls": ["/score$"]},
)
class NaiveBestScoring:
    def __init__(self) -> None:
        self.model = champion()

    @bentoml.api
    async def score(self, features: list[float | str]) -> dict[str, float]:
        probability = self.model.predict_proba([features], thread_count=1)[0, 1]
        return {"fraud_probability": float(probability)}


def champion() -> CatBoostClassifier:
    """The champion model of the bundle in ``FRAUD_BUNDLE``."""
    bundle = Path(os.environ[BUNDLE_ENV])
    manifest = json.loads((bundle / BUNDLE_MANIFEST).read_text())
    model = CatBoostClassifier()
    model.load_model(str(bundle / manifest["variants"][CHAMPION]["model_file"]))
    return model
