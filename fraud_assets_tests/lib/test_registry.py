from __future__ import annotations

from pathlib import Path

import pytest

from fraud_assets.lib import registry


@pytest.fixture
def client(tmp_path: Path):
    import mlflow

    registry.configure_mlflow(
        f"sqlite:///{tmp_path / 'mlflow.db'}", "test", str(tmp_path / "artifacts")
    )
    c = mlflow.MlflowClient()
    c.create_registered_model("m")
    for _ in range(3):
        with mlflow.start_run() as run:
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
