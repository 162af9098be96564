"""Everything here runs the real thing end to end (CLI, daemon, `bentoml serve`): marked
`slow`, so `pytest -m "not slow"` is the quick loop while developing."""

from __future__ import annotations

from pathlib import Path

import pytest

HERE = Path(__file__).parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if HERE in Path(item.fspath).parents:
            item.add_marker(pytest.mark.slow)
