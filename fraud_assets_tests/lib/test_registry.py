from __future__ import annotations

from pathlib import Path

import pytest

from fraud_assets.lib import registry


@pytest.fixture
def client(tmp_path: Path):
    import mlflow

    experiment = registry.configure_mlflow(
        f"sqlite:///{tmp_path / 'mlflow.db'}", "test", str(tmp_path / "artifacts")
    )
    c = mlflow.MlflowClient()
    c.create_registered_model("m")
    for _ in range(3):
        # In the test's experiment: the default one keeps artifacts in ./mlruns of the cwd.
        with mlflow.start_run(experiment_id=experiment) as run:
            mlflow.log_text("x", "model/placeholder.txt")
        c.create_model_version("m", f"runs:/{run.info.run_id}/model", run.info.run_id)
    yield c
    mlflow.set_tracking_uri("")


def _alias(client, alias: str) -> str | None:
    v = registry.version_by_alias(client, "m", alias)
    return None if v is None else str(v.version)


def test_promote_keeps_previous_and_rollback_swaps(client) -> None:
    assert registry.promote(client, "m", "1").previous is None
    assert _alias(client, "champion") == "1"
    change = registry.promote(client, "m", "2")
    assert (change.champion, change.previous) == ("2", "1")
    assert _alias(client, "previous_champion") == "1"
    # Promoting the champion again changes nothing.
    assert registry.promote(client, "m", "2").previous is None
    assert _alias(client, "previous_champion") == "1"
    back = registry.rollback(client, "m")
    assert (back.champion, back.previous) == ("1", "2")
    assert _alias(client, "champion") == "1" and _alias(client, "previous_champion") == "2"
    registry.rollback(client, "m")  # a second rollback undoes the first
    assert _alias(client, "champion") == "2"


def test_rollback_without_previous_is_a_clear_error(client) -> None:
    registry.promote(client, "m", "3")
    with pytest.raises(RuntimeError, match="no 'previous_champion'"):
        registry.rollback(client, "m")


def test_the_champion_is_compared_through_a_version_fitted_before_the_test_window(
    client, tmp_path: Path
) -> None:
    """A refit champion has seen part of the test window: evaluation scores its evaluated
    sibling instead; a champion without one counts only if fitted before the window."""
    from datetime import UTC, datetime

    import polars as pl

    from fraud_assets.defs.training.evaluation import _champion_estimate
    from fraud_assets.resources.mlflow import ModelRegistry

    model_registry = ModelRegistry(
        tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}",
        experiment="test",
        artifact_root=str(tmp_path / "artifacts"),
        model_name="m",
    )
    test = pl.DataFrame({"ts": [datetime(2026, 3, 10, 12, tzinfo=UTC)]})
    client.set_model_version_tag("m", "1", "train_window", "2026-02-01..2026-03-01")
    client.set_model_version_tag("m", "2", "train_window", "2026-02-01..2026-03-10")
    client.set_model_version_tag("m", "3", "train_window", "2026-02-10..2026-03-12")
    client.set_model_version_tag("m", "3", "evaluated_version", "1")

    def estimate(version: str) -> str | None:
        chosen = _champion_estimate(model_registry, client.get_model_version("m", version), test)
        return None if chosen is None else str(chosen.version)

    assert estimate("3") == "1"  # a refit: through its evaluated sibling
    assert estimate("1") == "1"  # fitted before the window: itself
    assert estimate("2") is None  # fitted on the window's first day: not comparable
    assert _champion_estimate(model_registry, None, test) is None
