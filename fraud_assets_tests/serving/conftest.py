"""Fixtures for serving tests: one simulated world and its models per session."""

from __future__ import annotations

import pytest

from fraud_assets.lib.sample_world import World, build_world


@pytest.fixture(scope="session")
def world() -> World:
    return build_world()
