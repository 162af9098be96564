"""A bundle loaded in memory: its manifest, its CatBoost models (one per variant) and their
thresholds. Immutable: the ``Scorer`` swaps whole deployments on reload and rollback, so a
request that picked one up finishes on it.
"""

from __future__ import annotations

import importlib.abc
import operator
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from functools import cached_property
from pathlib import Path
from types import ModuleType
from typing import Any

import msgspec
import numpy as np

from fraud_assets.lib.bundle import BundleError, model_path, read_manifest, verify_checksums
from fraud_assets.lib.calibration import Platt
from fraud_assets.lib.contracts import APPROVE, CHALLENGER, CHAMPION, DECLINE, REVIEW
from fraud_assets.lib.features.definitions import UNKNOWN_CATEGORY, feature_columns

# One row is scored on the calling thread: CatBoost's default (all cores) hands each call to
# its thread pool, which costs more CPU than the ~0.1 ms of tree evaluation it spreads.
SINGLE_ROW_THREADS = 1
# Batches too: on 500 rows two threads cost ~1.8x the CPU of one for no faster answer
# (measured: 2.7 vs 1.5 us of CPU per row, wall 1.4 vs 1.2 us), and the other core is busy
# with I/O and other requests anyway.
BATCH_THREADS = 1


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
    """One loaded model, its calibration (raw score -> probability) and its decision
    thresholds (on the probability)."""

    name: str
    version: str
    model: Any
    review: float
    decline: float
    model_file: str
    calibration: Platt = field(default_factory=Platt)

    def probability(self, row: Sequence[Any]) -> float:
        """The calibrated fraud probability of one row (model order)."""
        raw = float(self.model.predict_proba([row], thread_count=SINGLE_ROW_THREADS)[0, 1])
        return self.calibration.apply(raw)

    def decide(self, probability: float) -> str:
        if probability >= self.decline:
            return DECLINE
        if probability >= self.review:
            return REVIEW
        return APPROVE

    def describe(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "model_file": self.model_file,
            "thresholds": {"review": self.review, "decline": self.decline},
            "calibration": self.calibration.to_dict(),
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

    @cached_property
    def columns(self) -> tuple[str, ...]:
        """Layout of ``online_vectors``: every online feature (all of them are logged)."""
        return tuple(feature_columns(self.categoricals))

    @cached_property
    def model_row(self) -> Callable[[tuple[Any, ...]], tuple[Any, ...]]:
        """Picks the model's features, in the model's order, out of an online vector."""
        if self.features == self.columns:
            return _same
        pick = [self.columns.index(f) for f in self.features]
        if len(pick) == 1:
            return lambda vector: (vector[pick[0]],)
        return operator.itemgetter(*pick)

    @cached_property
    def feature_row(self) -> type[msgspec.Struct]:
        """Struct of every online feature by name (``Row(*vector)``: the log's ``features``
        object, built in C instead of ``dict(zip(...))`` per transaction)."""
        return msgspec.defstruct("OnlineFeatures", [(c, Any) for c in self.columns], gc=False)

    @property
    def n_numeric(self) -> int:
        """Numeric features come first when the categoricals are the trailing columns (the
        layout ``feature_columns`` produces); 0 means another layout."""
        k = len(self.features) - len(self.cat_indices)
        return k if self.cat_indices == tuple(range(k, len(self.features))) else 0

    def predict_many(
        self, variant: Variant, rows: Sequence[Sequence[Any]], catboost: ModuleType
    ) -> list[float]:
        """Fraud probabilities of many rows (model order) in one call, calibrated.

        Columnar ``FeaturesData`` (float32 numerics + object categoricals) converts ~7x faster
        than a list of mixed rows and gives the same scores (CatBoost stores floats as
        float32 either way). The rows are transposed once (``zip``, in C), not sliced one by
        one.
        """
        k = self.n_numeric
        if not k:
            raw = variant.model.predict_proba(rows, thread_count=BATCH_THREADS)[:, 1].tolist()
            return variant.calibration.apply_many(raw)
        columns = list(zip(*rows, strict=True))
        data = catboost.FeaturesData(
            num_feature_data=np.array(columns[:k], dtype=np.float32).T,
            cat_feature_data=np.array(columns[k:], dtype=object).T if self.cat_indices else None,
        )
        raw = variant.model.predict_proba(data, thread_count=BATCH_THREADS)[:, 1].tolist()
        return variant.calibration.apply_many(raw)

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
            "bundle": Path(self.path).name,  # never a machine path (unauthenticated route)
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


def _same(vector: tuple[Any, ...]) -> tuple[Any, ...]:
    return vector


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
            verify_checksums(path, manifest)
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
                calibration=Platt.from_dict(spec.get("calibration")),
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
