"""The control plane between the pipeline and running scoring services.

Files under ``<serving state>/control/`` (names in ``contracts``), so the pipeline needs no
address of any service and a service started later finds the current state at once:

- ``deployment.json``: the bundle every worker should serve, optionally with thresholds
  that override the bundle's (an alert-volume recalibration: its own deployment change), and
  the entry before it, for a rollback. Written by the rollout asset, the recalibration asset
  and by rollbacks; each worker polls it about once a second, loads a new bundle off the
  request path and swaps it in between two requests.
- ``terminals.json`` + ``terminals/as_of=DAY.npz``: the freshest terminal snapshots, from
  the daily refresh asset, independent of any promotion.
- ``workers/<host>-<pid>.json``: each worker's heartbeat (what it has loaded, when it last
  looked), which is how a rollout knows it has reached every worker.

Every file is replaced atomically (temp file, fsync, rename): a reader sees the old or the new
content, never half of one. Plain Python and numpy: the service reads this module too.
"""

from __future__ import annotations

import json
import os
import socket
import tempfile
import time
from collections.abc import Mapping
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from fraud_assets.lib import contracts
from fraud_assets.lib.bundle import read_manifest, validate_thresholds
from fraud_assets.lib.store_seed import read_terminals, write_terminals

POLL_S = 1.0  # how often a worker looks at the pointers (and beats)
HEARTBEAT_STALE_S = 10.0  # a worker silent this long is gone (stopped or killed)


class NothingToRollBack(RuntimeError):
    """A rollback asked for with no previous deployment recorded."""


class NoDeployment(RuntimeError):
    """A change to the current deployment asked for where no deployment is recorded."""


def control_dir(state_root: str | os.PathLike[str]) -> Path:
    return Path(state_root) / contracts.CONTROL_DIR


def _now() -> str:
    return datetime.now(UTC).isoformat()


def write_json(path: Path, payload: Mapping[str, Any]) -> None:
    """Replace ``path`` atomically by ``payload`` as JSON."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as handle:
            json.dump(payload, handle, indent=1)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_json(path: Path) -> dict[str, Any] | None:
    """The file's JSON object, or None when it does not exist."""
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return None


# ---------------------------------------------------------------------------- deployment


def deployment_file(state_root: str | os.PathLike[str]) -> Path:
    return control_dir(state_root) / contracts.DEPLOYMENT_POINTER


def current_deployment(state_root: str | os.PathLike[str]) -> dict[str, Any] | None:
    return read_json(deployment_file(state_root))


def _entry(bundle: Path, reason: str) -> dict[str, Any]:
    manifest = read_manifest(bundle)  # refuses a folder that is not a valid bundle
    variants = manifest["variants"]
    return {
        "bundle": str(bundle.resolve()),
        "bundle_id": manifest["bundle_id"],
        "model_name": manifest["model_name"],
        "versions": {name: str(v["version"]) for name, v in variants.items()},
        "store_as_of": manifest["store_as_of"],
        "set_at": _now(),
        "reason": reason,
    }


def set_deployment(
    state_root: str | os.PathLike[str], bundle: str | os.PathLike[str], reason: str
) -> dict[str, Any]:
    """Point every service on this state root at ``bundle`` (the current one becomes the
    rollback target). Returns the new pointer."""
    entry = _entry(Path(bundle), reason)
    current = current_deployment(state_root)
    if current is not None and current["bundle_id"] == entry["bundle_id"]:
        return current  # already there: keep its rollback target
    if current is not None:
        current.pop("previous", None)
    write_json(deployment_file(state_root), {**entry, "previous": current})
    return {**entry, "previous": current}


def adopt_deployment(
    state_root: str | os.PathLike[str], bundle: str | os.PathLike[str], reason: str
) -> dict[str, Any]:
    """The current pointer; if there is none, point at ``bundle`` first (created only if
    absent, so racing workers agree on one)."""
    current = current_deployment(state_root)
    if current is not None:
        return current
    target = deployment_file(state_root)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as handle:
            json.dump({**_entry(Path(bundle), reason), "previous": None}, handle, indent=1)
            handle.flush()
            os.fsync(handle.fileno())
        os.link(tmp, target)  # fails if another process created it meanwhile
    except FileExistsError:
        pass
    finally:
        Path(tmp).unlink(missing_ok=True)
    pointer = current_deployment(state_root)
    assert pointer is not None
    return pointer


def set_thresholds(
    state_root: str | os.PathLike[str],
    thresholds: Mapping[str, Mapping[str, float]],
    reason: str,
) -> dict[str, Any]:
    """Keep the current bundle but decide with these thresholds (variant -> ``review`` and
    ``decline``; variants not named keep theirs), as a new pointer entry: the current one
    becomes the rollback target. Returns the new pointer."""
    current = current_deployment(state_root)
    if current is None:
        raise NoDeployment(f"no deployment recorded under {state_root}: nothing to adjust")
    unknown = sorted(set(thresholds) - set(current["versions"]))
    if unknown:
        raise ValueError(f"thresholds for variants the deployment does not have: {unknown}")
    merged = {**(current.get("thresholds") or {})}
    for name, values in thresholds.items():
        merged[name] = validate_thresholds(name, values)  # the rule a bundle's obey
    current.pop("previous", None)
    entry = {**current, "thresholds": merged, "set_at": _now(), "reason": reason}
    write_json(deployment_file(state_root), {**entry, "previous": current})
    return {**entry, "previous": current}


def roll_back(state_root: str | os.PathLike[str], reason: str) -> dict[str, Any]:
    """Point the services back at the previous deployment (rolling back twice rolls
    forward again). Returns the new pointer."""
    current = current_deployment(state_root)
    if current is None or not current.get("previous"):
        raise NothingToRollBack(f"no previous deployment recorded under {state_root}")
    previous = current.pop("previous")
    payload = {**previous, "set_at": _now(), "reason": reason, "previous": current}
    write_json(deployment_file(state_root), payload)
    return payload


# ---------------------------------------------------------------------------- terminals


def terminals_file(state_root: str | os.PathLike[str]) -> Path:
    return control_dir(state_root) / contracts.TERMINALS_POINTER


def publish_terminals(
    state_root: str | os.PathLike[str], terminals: Mapping[str, Mapping[str, float]], as_of: date
) -> dict[str, Any]:
    """Write a day's terminal snapshots and point the services at them."""
    folder = control_dir(state_root) / contracts.TERMINALS_DIR
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / f"as_of={as_of.isoformat()}.npz"
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".terminals.", suffix=".npz")
    os.close(fd)
    try:
        write_terminals(Path(tmp), terminals)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    pointer = {
        "file": target.name,
        "as_of": as_of.isoformat(),
        "terminals": len(terminals),
        "set_at": _now(),
    }
    write_json(terminals_file(state_root), pointer)
    return pointer


def current_terminals(state_root: str | os.PathLike[str]) -> dict[str, Any] | None:
    return read_json(terminals_file(state_root))


def load_published_terminals(
    state_root: str | os.PathLike[str], pointer: Mapping[str, Any]
) -> dict[str, dict[str, float]]:
    folder = control_dir(state_root) / contracts.TERMINALS_DIR
    return read_terminals(folder / pointer["file"])


# ---------------------------------------------------------------------------- heartbeats


def _worker_file(state_root: str | os.PathLike[str], pid: int) -> Path:
    return control_dir(state_root) / contracts.WORKERS_DIR / f"{socket.gethostname()}-{pid}.json"


def beat(state_root: str | os.PathLike[str], status: Mapping[str, Any]) -> None:
    """Record what this worker serves now."""
    payload = {**status, "pid": os.getpid(), "host": socket.gethostname(), "seen_at": time.time()}
    write_json(_worker_file(state_root, os.getpid()), payload)


def retire(state_root: str | os.PathLike[str]) -> None:
    """Remove this worker's heartbeat (a clean shutdown)."""
    _worker_file(state_root, os.getpid()).unlink(missing_ok=True)


def live_workers(
    state_root: str | os.PathLike[str], stale_s: float = HEARTBEAT_STALE_S
) -> list[dict[str, Any]]:
    """Heartbeats of the workers alive now: seen recently, and (on this host) still running."""
    folder = control_dir(state_root) / contracts.WORKERS_DIR
    now, host, alive = time.time(), socket.gethostname(), []
    for path in sorted(folder.glob("*.json")):
        try:
            beat_ = json.loads(path.read_text())
        except (OSError, ValueError):  # replaced or removed while listing
            continue
        if now - beat_.get("seen_at", 0) > stale_s:
            continue
        if beat_.get("host") == host and not _pid_alive(int(beat_["pid"])):
            continue
        alive.append(beat_)
    return alive


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def wait_for_workers(
    state_root: str | os.PathLike[str], bundle_id: str, timeout_s: float
) -> tuple[bool, list[dict[str, Any]]]:
    """Wait until every live worker serves ``bundle_id``; (all switched, last heartbeats)."""
    deadline = time.monotonic() + timeout_s
    while True:
        workers = live_workers(state_root)
        if all(w.get("bundle_id") == bundle_id for w in workers):
            return True, workers
        if time.monotonic() >= deadline:
            return False, workers
        time.sleep(POLL_S / 4)
