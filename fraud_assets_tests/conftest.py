"""Shared fixtures: every test gets its own lake, Dagster instance and MLflow store in tmp."""

from __future__ import annotations

import os
import warnings

import pytest

# Keep tests away from the repo's own state even if a test forgets a fixture.
os.environ.setdefault("FRAUD_PARTITIONS_START", "2026-01-01")
warnings.filterwarnings("ignore", message=".*is currently in beta.*")
warnings.filterwarnings("ignore", message=".*is currently in preview.*")


@pytest.fixture
def instance():
    import dagster as dg

    with dg.instance_for_test() as inst:
        yield inst


@pytest.fixture(autouse=True)
def _forget_closed_instances():
    """An instance that is garbage-collected without being closed leaves Dagster's
    process-wide "current defs state storage" pointing at it, and the next test that builds
    Definitions fails with "undefined DagsterInstance weakref". Reset it after every test."""
    yield
    from dagster._core.storage.defs_state.base import _current_storage

    _current_storage.set(None)
