"""Shared fixtures: every test gets its own lake, Dagster instance and MLflow store in tmp."""

from __future__ import annotations

import os
import shutil
import warnings
from collections.abc import Iterator
from pathlib import Path

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


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real ``redis-server`` (Debian's package) on a free loopback port: its URL."""
    import redis

    from fraud_assets.lib.processes import LOCALHOST, ManagedProcess, free_port

    binary = shutil.which("redis-server")
    if binary is None:
        pytest.fail("redis-server is not installed (apt-get install -y redis-server; .ci/run does)")
    root: Path = tmp_path_factory.mktemp("redis")
    port = free_port()
    command = [binary, "--port", str(port), "--bind", LOCALHOST, "--save", "", "--dir", str(root)]
    server = ManagedProcess(command, log_path=root / "redis.log")
    server.spawn()
    url = f"redis://{LOCALHOST}:{port}/0"
    client = redis.Redis.from_url(url)
    try:
        for _ in range(100):
            try:
                client.ping()
                break
            except redis.ConnectionError:
                import time

                time.sleep(0.05)
        else:
            pytest.fail(f"redis-server did not start:\n{server.log_tail()}")
        yield url
    finally:
        client.close()
        server.stop()


@pytest.fixture
def redis_url(redis_server: str) -> str:
    """The session's Redis, emptied for this test."""
    import redis

    with redis.Redis.from_url(redis_server) as client:
        client.flushall()
    return redis_server
