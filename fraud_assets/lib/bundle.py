"""Deployment bundle: one folder holding everything the scoring service needs.

Layout (``FORMAT_VERSION`` 1)::

    manifest.json          model name, feature order, categoricals, store as-of, variants, traffic
    models/<variant>.cbm   CatBoost native model files
    store/customers.npz    customer histories, CSR layout: ids, offsets, keys, amounts, small
    store/terminals.npz    terminal snapshot: ids, column names, float64 matrix

The writer side may use Polars (imported lazily, only to build a seed from frames); the reader
side uses json and numpy only, so the service never pulls Polars in. A bundle is written into a
temporary sibling folder and renamed into place, and carries a random ``bundle_id``: a reader
that sees the same id before and after loading the files knows it did not race a writer.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from fraud_assets.lib.features.definitions import (
    CATEGORICAL_COLUMNS,
    FEATURE_CODE_VERSION,
    LOOKBACK_DAYS,
    TERMINAL_FEATURES,
    TIE_SLOTS,
    US_PER_DAY,
    available_categoricals,
    feature_columns,
    ts_to_us,
)
from fraud_assets.lib.features.history import CustomerHistory
from fraud_assets.lib.features.online import online_features

if TYPE_CHECKING:
    import polars as pl

FORMAT_VERSION = 1
MANIFEST_FILE = "manifest.json"
MODELS_DIR = "models"
STORE_DIR = "store"
CUSTOMERS_FILE = "customers.npz"
TERMINALS_FILE = "terminals.npz"
VARIANTS = ("champion", "challenger")
TRAFFIC_MODES = ("split", "shadow")
DEFAULT_TRAFFIC: dict[str, Any] = {"challenger_share": 0.0, "mode": "split"}


class BundleError(ValueError):
    """A bundle folder that is missing, incomplete or inconsistent."""


@dataclass(frozen=True)
class StoreSeed:
    """The online store's starting state: histories before ``as_of``, terminals as of it."""

    as_of: date
    customers: dict[str, CustomerHistory]
    terminals: dict[str, dict[str, float]]


# ----------------------------------------------------------------------------- validation


def _thresholds(name: str, raw: Any) -> dict[str, float]:
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
    if not isinstance(variants, Mapping) or "champion" not in variants:
        raise BundleError("variants must hold a champion")
    extra = [v for v in variants if v not in VARIANTS]
    if extra:
        raise BundleError(f"unknown variants {extra} (allowed: {VARIANTS})")
    out_variants = {}
    for name, spec in variants.items():
        if not isinstance(spec, Mapping) or not isinstance(spec.get("version"), str):
            raise BundleError(f"variant {name!r}: needs a string version")
        out_variants[name] = {
            "version": spec["version"],
            "model_file": str(spec.get("model_file", f"{MODELS_DIR}/{name}.cbm")),
            "thresholds": _thresholds(name, spec.get("thresholds")),
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


def histories_from_transactions(
    rows: Iterable[Mapping[str, Any]], categoricals: Sequence[str] = CATEGORICAL_COLUMNS
) -> dict[str, CustomerHistory]:
    """Customer histories built by replaying transactions through ``online_features``.

    That is exactly how the service accumulates state, so a seed built here is what the
    service would hold had it scored these transactions itself. ``rows`` (mappings with ts,
    customer_id, amount and the categoricals) must be sorted by (ts, transaction_id).
    """
    histories: dict[str, CustomerHistory] = {}
    last: tuple[datetime, str] | None = None
    for row in rows:
        order = (row["ts"], str(row.get("transaction_id", "")))
        if last is not None and order < last:
            raise ValueError("rows must be sorted by (ts, transaction_id)")
        last = order
        history = histories.get(row["customer_id"])
        if history is None:
            history = histories[row["customer_id"]] = CustomerHistory()
        online_features(row, history, None, categoricals, update=True)
    return histories


def store_seed_from_frames(
    history: pl.DataFrame, labels: pl.DataFrame, as_of: date
) -> tuple[dict[str, CustomerHistory], dict[str, dict[str, float]]]:
    """Seed for a store serving day ``as_of``: histories of the 30 days before it (replayed
    online) and the terminal snapshot as of it (the batch definition)."""
    import polars as pl

    from fraud_assets.lib.features.batch import terminal_snapshot

    midnight = datetime(as_of.year, as_of.month, as_of.day, tzinfo=UTC)
    before = history.filter(
        pl.col("ts") >= midnight - timedelta(days=LOOKBACK_DAYS + 1), pl.col("ts") < midnight
    ).sort("ts", "transaction_id")
    histories = histories_from_transactions(
        before.iter_rows(named=True), available_categoricals(history.columns)
    )
    terminals = {
        row["terminal_id"]: {c: float(row[c]) for c in TERMINAL_FEATURES}
        for row in terminal_snapshot(history, labels, as_of).iter_rows(named=True)
    }
    return histories, terminals


def _day_key(day: date) -> int:
    """History key of the first instant of ``day`` (keys are microseconds * TIE_SLOTS)."""
    return ts_to_us(datetime(day.year, day.month, day.day, tzinfo=UTC)) * TIE_SLOTS


def _write_customers(
    target: Path, histories: Mapping[str, CustomerHistory], store_as_of: date
) -> None:
    """CSR arrays, dropping entries no window on or after ``store_as_of`` can reach."""
    start = _day_key(store_as_of)
    oldest = start - LOOKBACK_DAYS * US_PER_DAY * TIE_SLOTS
    ids: list[str] = []
    offsets = [0]
    keys: list[int] = []
    amounts: list[float] = []
    small: list[int] = []
    for customer_id in sorted(histories):
        h_keys, h_amounts, h_small = histories[customer_id].to_arrays()
        if h_keys and h_keys[-1] >= start:
            raise BundleError(
                f"customer {customer_id!r} has history on or after store_as_of {store_as_of}"
            )
        first = next((i for i, k in enumerate(h_keys) if k > oldest), len(h_keys))
        if first == len(h_keys):
            continue
        ids.append(customer_id)
        keys.extend(h_keys[first:])
        amounts.extend(h_amounts[first:])
        small.extend(h_small[first:])
        offsets.append(len(keys))
    np.savez(
        target,
        customer_ids=np.array(ids, dtype=np.str_),
        offsets=np.array(offsets, dtype=np.int64),
        keys=np.array(keys, dtype=np.int64),
        amounts=np.array(amounts, dtype=np.float64),
        small=np.array(small, dtype=np.int8),
    )


def _write_terminals(target: Path, rows: Mapping[str, Mapping[str, float]]) -> None:
    ids = sorted(rows)
    matrix = np.array(
        [[float(rows[t].get(c, 0.0)) for c in TERMINAL_FEATURES] for t in ids], dtype=np.float64
    ).reshape(len(ids), len(TERMINAL_FEATURES))
    np.savez(
        target,
        terminal_ids=np.array(ids, dtype=np.str_),
        columns=np.array(TERMINAL_FEATURES, dtype=np.str_),
        features=matrix,
    )


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
    {"review": float, "decline": float}}, "challenger": {...}}`` (challenger optional).
    ``customer_histories`` must only hold transactions before ``store_as_of`` (what the
    service will see from that day on is its own traffic). Returns the bundle path.
    """
    path = Path(path)
    variant_specs = {
        name: {
            "version": spec["version"],
            "model_file": f"{MODELS_DIR}/{name}.cbm",
            "thresholds": spec["thresholds"],
        }
        for name, spec in variants.items()
    }
    manifest = validate_manifest(
        {
            "format_version": FORMAT_VERSION,
            "bundle_id": uuid.uuid4().hex,
            "created_at": datetime.now(UTC).isoformat(),
            "feature_code_version": FEATURE_CODE_VERSION,
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
        (tmp / MODELS_DIR).mkdir(parents=True)
        (tmp / STORE_DIR).mkdir()
        for name, spec in variants.items():
            spec["model"].save_model(str(tmp / variant_specs[name]["model_file"]))
        _write_customers(tmp / STORE_DIR / CUSTOMERS_FILE, customer_histories, store_as_of)
        _write_terminals(tmp / STORE_DIR / TERMINALS_FILE, terminal_rows)
        # The manifest goes last: a folder with a manifest is a complete bundle.
        (tmp / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2, sort_keys=True))
        _swap_into_place(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return path


# --------------------------------------------------------------------------------- reader


def read_manifest(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The validated manifest of the bundle at ``path``."""
    file = Path(path) / MANIFEST_FILE
    try:
        raw = json.loads(file.read_text())
    except FileNotFoundError:
        raise BundleError(f"no bundle at {path} ({MANIFEST_FILE} missing)") from None
    except json.JSONDecodeError as exc:
        raise BundleError(f"{file}: {exc}") from None
    if not isinstance(raw, dict):
        raise BundleError(f"{file}: not a JSON object")
    return validate_manifest(raw)


def read_store_seed(path: str | os.PathLike[str]) -> StoreSeed:
    """The online store seed of the bundle at ``path`` (numpy only, no pickles)."""
    path = Path(path)
    manifest = read_manifest(path)
    with np.load(path / STORE_DIR / CUSTOMERS_FILE, allow_pickle=False) as c:
        ids, offsets = c["customer_ids"].tolist(), c["offsets"]
        keys, amounts, small = c["keys"], c["amounts"], c["small"]
    if len(offsets) != len(ids) + 1 or offsets[-1] != len(keys):
        raise BundleError("customers.npz: offsets do not match the arrays")
    customers: dict[str, CustomerHistory] = {}
    key_list, amount_list, small_list = keys.tolist(), amounts.tolist(), small.tolist()
    bounds = offsets.tolist()
    for i, customer_id in enumerate(ids):
        lo, hi = bounds[i], bounds[i + 1]
        try:
            customers[customer_id] = CustomerHistory.from_arrays(
                key_list[lo:hi], amount_list[lo:hi], small_list[lo:hi]
            )
        except ValueError:  # the slices have one length: the keys are out of order
            raise BundleError(
                f"customers.npz: keys of {customer_id!r} are not increasing"
            ) from None
    with np.load(path / STORE_DIR / TERMINALS_FILE, allow_pickle=False) as t:
        terminal_ids, columns, matrix = t["terminal_ids"].tolist(), t["columns"], t["features"]
    if columns.tolist() != TERMINAL_FEATURES:
        raise BundleError("terminals.npz: columns differ from TERMINAL_FEATURES")
    terminals = {
        tid: dict(zip(TERMINAL_FEATURES, row, strict=True))
        for tid, row in zip(terminal_ids, matrix.tolist(), strict=True)
    }
    return StoreSeed(date.fromisoformat(manifest["store_as_of"]), customers, terminals)


def model_path(path: str | os.PathLike[str], manifest: Mapping[str, Any], variant: str) -> Path:
    return Path(path) / manifest["variants"][variant]["model_file"]


def store_day_key(day: date) -> int:
    """History key at which the seed of a store as of ``day`` ends (live traffic begins)."""
    return _day_key(day)
