"""Deployment bundle: one folder holding everything the scoring service needs.

Layout (``FORMAT_VERSION`` 1; the names are in ``contracts``)::

    manifest.json          model name, feature order, categoricals, store as-of, variants, traffic
    models/<variant>.cbm   CatBoost native model files
    store/customers.npz    customer histories, CSR layout: ids, offsets, keys, amounts, small
    store/terminals.npz    terminal snapshot: ids, column names, float64 matrix

This module validates the manifest and writes and reads the folder; ``store_seed`` owns the
two store files. Reading uses json and numpy only, so the service never pulls Polars in. A
bundle is written into a temporary sibling folder and renamed into place, and carries a
random ``bundle_id``: a reader that sees the same id before and after loading the files
knows it did not race a writer.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from fraud_assets.lib.calibration import Platt
from fraud_assets.lib.contracts import (
    ANSWERING_VARIANTS,
    BUNDLE_MANIFEST,
    BUNDLE_MODELS_DIR,
    BUNDLE_STORE_DIR,
    CHAMPION,
    NIGHT_HOURS_ENV,
    SMALL_AMOUNT_ENV,
    SPLIT,
    TRAFFIC_MODES,
)
from fraud_assets.lib.features.definitions import (
    CATEGORICAL_COLUMNS,
    FEATURE_CODE_VERSION,
    FEATURE_PARAMETERS,
    feature_columns,
)
from fraud_assets.lib.features.history import CustomerHistory
from fraud_assets.lib.store_seed import StoreSeed, StoreSeedError, read_seed, write_seed

FORMAT_VERSION = 1
DEFAULT_TRAFFIC: dict[str, Any] = {"challenger_share": 0.0, "mode": SPLIT}


class BundleError(ValueError):
    """A bundle folder that is missing, incomplete or inconsistent."""


# ----------------------------------------------------------------------------- validation


def validate_thresholds(name: str, raw: Any) -> dict[str, float]:
    """A variant's ``{"review", "decline"}``: numbers with 0 <= review <= decline <= 1."""
    if not isinstance(raw, Mapping) or set(raw) != {"review", "decline"}:
        raise BundleError(f"variant {name!r}: thresholds must be {{'review', 'decline'}}")
    review, decline = raw["review"], raw["decline"]
    for value in (review, decline):
        if isinstance(value, bool) or not isinstance(value, int | float) or math.isnan(value):
            raise BundleError(f"variant {name!r}: thresholds must be numbers")
    if not 0.0 <= review <= decline <= 1.0:
        raise BundleError(f"variant {name!r}: need 0 <= review <= decline <= 1")
    return {"review": float(review), "decline": float(decline)}


def _traffic(raw: Any) -> dict[str, Any]:
    if not isinstance(raw, Mapping) or set(raw) != {"challenger_share", "mode"}:
        raise BundleError("traffic must be {'challenger_share', 'mode'}")
    share, mode = raw["challenger_share"], raw["mode"]
    if isinstance(share, bool) or not isinstance(share, int | float) or not 0 <= share <= 1:
        raise BundleError("traffic.challenger_share must be a number in [0, 1]")
    if mode not in TRAFFIC_MODES:
        raise BundleError(f"traffic.mode must be one of {TRAFFIC_MODES}")
    return {"challenger_share": float(share), "mode": mode}


def validate_manifest(manifest: Mapping[str, Any]) -> dict[str, Any]:
    """Check a manifest's shape and consistency; return it normalised (a plain dict).

    The service refuses a bundle that fails here instead of serving a half-understood one.
    """
    required = ("model_name", "features", "categoricals", "store_as_of", "variants", "traffic")
    missing = [k for k in required if k not in manifest]
    if missing:
        raise BundleError(f"manifest lacks {missing}")
    if manifest.get("format_version", FORMAT_VERSION) != FORMAT_VERSION:
        raise BundleError(f"unsupported bundle format {manifest.get('format_version')!r}")
    built_with = manifest.get("feature_parameters", FEATURE_PARAMETERS)
    if built_with != FEATURE_PARAMETERS:
        raise BundleError(
            f"the bundle's features were computed with {built_with}, this process computes them "
            f"with {FEATURE_PARAMETERS}: set {SMALL_AMOUNT_ENV} / {NIGHT_HOURS_ENV} as when it "
            "was built"
        )
    categoricals = list(manifest["categoricals"])
    unknown_cats = [c for c in categoricals if c not in CATEGORICAL_COLUMNS]
    if unknown_cats:
        raise BundleError(f"unknown categoricals {unknown_cats}")
    features = list(manifest["features"])
    online = set(feature_columns(categoricals))
    unknown = [f for f in features if f not in online]
    if unknown or not features or len(set(features)) != len(features):
        raise BundleError(f"features must be distinct online features; unknown: {unknown}")
    variants = manifest["variants"]
    if not isinstance(variants, Mapping) or CHAMPION not in variants:
        raise BundleError("variants must hold a champion")
    extra = [v for v in variants if v not in ANSWERING_VARIANTS]
    if extra:
        raise BundleError(f"unknown variants {extra} (allowed: {ANSWERING_VARIANTS})")
    out_variants = {}
    for name, spec in variants.items():
        if not isinstance(spec, Mapping) or not isinstance(spec.get("version"), str):
            raise BundleError(f"variant {name!r}: needs a string version")
        try:
            calibration = Platt.from_dict(spec.get("calibration")).to_dict()
        except (KeyError, TypeError, ValueError) as exc:
            raise BundleError(
                f"variant {name!r}: calibration must be {{'a', 'b'}}: {exc}"
            ) from None
        out_variants[name] = {
            "version": spec["version"],
            "model_file": str(spec.get("model_file", f"{BUNDLE_MODELS_DIR}/{name}.cbm")),
            "thresholds": validate_thresholds(name, spec.get("thresholds")),
            "calibration": calibration,
        }
    try:
        as_of = date.fromisoformat(str(manifest["store_as_of"]))
    except ValueError as exc:
        raise BundleError(f"store_as_of: {exc}") from None
    return {
        **manifest,
        "model_name": str(manifest["model_name"]),
        "features": features,
        "categoricals": categoricals,
        "store_as_of": as_of.isoformat(),
        "variants": out_variants,
        "traffic": _traffic(manifest["traffic"]),
    }


# --------------------------------------------------------------------------------- writer


def _swap_into_place(tmp: Path, path: Path) -> None:
    """Rename the finished folder over the old one (two renames: POSIX cannot rename onto a
    non-empty folder; a reader that races the gap fails or sees a changed bundle_id, and
    retries)."""
    if path.exists():
        old = path.parent / f".{path.name}.old-{uuid.uuid4().hex}"
        os.rename(path, old)
        os.rename(tmp, path)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.rename(tmp, path)


def write_bundle(
    path: str | os.PathLike[str],
    *,
    model_name: str,
    features: Sequence[str],
    categoricals: Sequence[str],
    variants: Mapping[str, Mapping[str, Any]],
    traffic: Mapping[str, Any] | None = None,
    customer_histories: Mapping[str, CustomerHistory],
    terminal_rows: Mapping[str, Mapping[str, float]],
    store_as_of: date,
) -> Path:
    """Write a complete bundle to ``path`` atomically (temp folder, then rename).

    ``variants``: ``{"champion": {"model": CatBoostClassifier, "version": str, "thresholds":
    {"review": float, "decline": float}, "calibration": {"a", "b"} (optional)}, "challenger":
    {...}}`` (challenger optional).
    ``customer_histories`` must only hold transactions before ``store_as_of`` (what the
    service will see from that day on is its own traffic). Returns the bundle path.
    """
    path = Path(path)
    variant_specs = {
        name: {
            "version": spec["version"],
            "model_file": f"{BUNDLE_MODELS_DIR}/{name}.cbm",
            "thresholds": spec["thresholds"],
            "calibration": spec.get("calibration"),  # None: the identity
        }
        for name, spec in variants.items()
    }
    manifest = validate_manifest(
        {
            "format_version": FORMAT_VERSION,
            "bundle_id": uuid.uuid4().hex,
            "created_at": datetime.now(UTC).isoformat(),
            "feature_code_version": FEATURE_CODE_VERSION,
            "feature_parameters": FEATURE_PARAMETERS,
            "model_name": model_name,
            "features": list(features),
            "categoricals": list(categoricals),
            "store_as_of": store_as_of.isoformat(),
            "variants": variant_specs,
            "traffic": dict(traffic or DEFAULT_TRAFFIC),
        }
    )
    for name, spec in variants.items():
        names = list(getattr(spec["model"], "feature_names_", None) or [])
        if names and names != manifest["features"]:
            raise BundleError(f"variant {name!r}: model features {names} != features")

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.tmp-{uuid.uuid4().hex}"
    try:
        (tmp / BUNDLE_MODELS_DIR).mkdir(parents=True)
        (tmp / BUNDLE_STORE_DIR).mkdir()
        for name, spec in variants.items():
            spec["model"].save_model(str(tmp / variant_specs[name]["model_file"]))
        try:
            write_seed(tmp / BUNDLE_STORE_DIR, customer_histories, terminal_rows, store_as_of)
        except StoreSeedError as exc:
            raise BundleError(str(exc)) from None
        # Every file's SHA-256: a loader refuses a bundle whose files are not what was built.
        manifest["checksums"] = {
            file.relative_to(tmp).as_posix(): _sha256(file)
            for file in sorted(tmp.rglob("*"))
            if file.is_file()
        }
        # The manifest goes last: a folder with a manifest is a complete bundle.
        (tmp / BUNDLE_MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True))
        _swap_into_place(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return path


# --------------------------------------------------------------------------------- reader


def read_manifest(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The validated manifest of the bundle at ``path``."""
    file = Path(path) / BUNDLE_MANIFEST
    try:
        raw = json.loads(file.read_text())
    except FileNotFoundError:
        raise BundleError(f"no bundle at {path} ({BUNDLE_MANIFEST} missing)") from None
    except json.JSONDecodeError as exc:
        raise BundleError(f"{file}: {exc}") from None
    if not isinstance(raw, dict):
        raise BundleError(f"{file}: not a JSON object")
    return validate_manifest(raw)


def _sha256(file: Path) -> str:
    digest = hashlib.sha256()
    with file.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def verify_checksums(path: str | os.PathLike[str], manifest: Mapping[str, Any]) -> None:
    """Raise BundleError unless every file the manifest lists has its recorded SHA-256 (a
    truncated copy, a zeroed block or a swapped model file is refused, not served)."""
    path = Path(path)
    checksums = manifest.get("checksums")
    if not isinstance(checksums, Mapping) or not checksums:
        raise BundleError("the manifest lists no checksums: rebuild the bundle")
    for rel, expected in checksums.items():
        parts = Path(rel).parts
        if Path(rel).is_absolute() or ".." in parts or not parts:
            raise BundleError(f"checksums: {rel!r} is not a path inside the bundle")
        file = path / rel
        try:
            actual = _sha256(file)
        except FileNotFoundError:
            raise BundleError(f"{rel} is missing from the bundle") from None
        if actual != expected:
            raise BundleError(f"{rel} does not match its checksum in the manifest")


def read_store_seed(path: str | os.PathLike[str]) -> StoreSeed:
    """The online store seed of the bundle at ``path`` (numpy only, no pickles), its files
    checked against the manifest."""
    path = Path(path)
    manifest = read_manifest(path)
    verify_checksums(path, manifest)
    try:
        customers, terminals = read_seed(path / BUNDLE_STORE_DIR)
    except StoreSeedError as exc:
        raise BundleError(str(exc)) from None
    return StoreSeed(date.fromisoformat(manifest["store_as_of"]), customers, terminals)


def model_path(path: str | os.PathLike[str], manifest: Mapping[str, Any], variant: str) -> Path:
    return Path(path) / manifest["variants"][variant]["model_file"]
