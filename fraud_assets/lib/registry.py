"""MLflow registry conventions: aliases `champion`, `challenger`, `previous_champion`.

Promotion moves `champion` to a new version and remembers the old one as
`previous_champion`; rollback swaps them back. Both are a couple of alias writes, so serving
(which resolves `models:/<name>@champion`) can follow within seconds.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fraud_assets.lib.contracts import CHAMPION, PREVIOUS_CHAMPION


def configure_mlflow(tracking_uri: str, experiment: str, artifact_root: str) -> str:
    """Point MLflow at the store and make sure the experiment keeps artifacts where we say.

    MLflow would otherwise create the experiment with artifacts under ./mlruns of whatever
    folder the process happens to run in. Returns the experiment id.
    """
    import mlflow

    if tracking_uri.startswith("sqlite:///"):
        Path(tracking_uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    mlflow.set_tracking_uri(tracking_uri)
    client = mlflow.MlflowClient()
    exp = client.get_experiment_by_name(experiment)
    if exp is not None:
        return exp.experiment_id
    location = artifact_root
    if "://" not in artifact_root:
        Path(artifact_root).mkdir(parents=True, exist_ok=True)
        location = Path(artifact_root).resolve().as_uri()
    try:
        return client.create_experiment(experiment, artifact_location=location)
    except Exception:  # created concurrently by another process
        return client.get_experiment_by_name(experiment).experiment_id


def version_by_alias(client: Any, name: str, alias: str) -> Any | None:
    from mlflow.exceptions import MlflowException

    try:
        return client.get_model_version_by_alias(name, alias)
    except MlflowException:
        return None


@dataclass(frozen=True)
class AliasChange:
    champion: str
    previous: str | None


def promote(client: Any, name: str, version: str) -> AliasChange:
    """Make `version` the champion; the old champion becomes `previous_champion`."""
    old = version_by_alias(client, name, CHAMPION)
    if old is not None and str(old.version) == str(version):
        return AliasChange(str(version), None)
    if old is not None:
        client.set_registered_model_alias(name, PREVIOUS_CHAMPION, old.version)
    client.set_registered_model_alias(name, CHAMPION, str(version))
    return AliasChange(str(version), str(old.version) if old is not None else None)


def rollback(client: Any, name: str) -> AliasChange:
    """Swap `champion` and `previous_champion` (a second rollback undoes the first)."""
    previous = version_by_alias(client, name, PREVIOUS_CHAMPION)
    current = version_by_alias(client, name, CHAMPION)
    if previous is None:
        raise RuntimeError(f"model {name!r} has no {PREVIOUS_CHAMPION!r} version to roll back to")
    client.set_registered_model_alias(name, CHAMPION, previous.version)
    if current is not None:
        client.set_registered_model_alias(name, PREVIOUS_CHAMPION, current.version)
    return AliasChange(str(previous.version), str(current.version) if current else None)
