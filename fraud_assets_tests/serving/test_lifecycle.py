"""A worker ends with its server, and each server instance keeps its own /metrics.

The first tests build the process shape of `bentoml serve` by hand (a parent, and a child in a
session of its own, as circus starts BentoML's workers) and kill the parent with SIGKILL. The
slow ones run the real service: they need ``lifecycle.use_instance_metrics_dir()`` at import
of ``fraud_assets/serving/service.py`` and ``lifecycle.bind_to_server()`` in its ``__init__``.
"""

from __future__ import annotations

import os
import signal
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest

from fraud_assets.lib.processes import LOCALHOST, ManagedProcess, ScoringServer
from fraud_assets.lib.sample_world import World, write_world_bundle
from fraud_assets.serving import lifecycle

# The parent: starts the worker in a new session (out of reach of a group signal) and waits.
PARENT = """
import subprocess, sys, time
subprocess.Popen([sys.executable, "-c", *sys.argv[1:]], start_new_session=True)
time.sleep(600)
"""
# The worker: remembers its parent (as the service's import does), optionally waits for a
# `go` file (the models loading), arms the watchdog, reports and sleeps.
WORKER = """
import os, signal, sys, time
from pathlib import Path
from fraud_assets.serving import lifecycle
flags, mode = Path(sys.argv[1]), sys.argv[2]
if mode == "no-pdeathsig":
    lifecycle._set_pdeathsig = lambda: False
if mode == "ignores-sigterm":
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
server = lifecycle.server_process()
(flags / "started").write_text(str(os.getpid()))
if mode == "late":
    while not (flags / "go").exists():
        time.sleep(0.05)
dog = lifecycle.watch_parent(server, poll_s=0.2, grace_s=1.0)
(flags / "armed").write_text(str(dog.pdeathsig))
time.sleep(600)
"""


def _wait_for(path: Path, timeout: float = 30) -> str:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, f"no {path.name} after {timeout} s"
        time.sleep(0.05)
    return path.read_text()


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _seconds_until_gone(pids: list[int], timeout: float) -> float:
    started = time.monotonic()
    while any(_alive(pid) for pid in pids):
        assert time.monotonic() - started < timeout, [p for p in pids if _alive(p)]
        time.sleep(0.02)
    return time.monotonic() - started


def _kill_parent_of_worker(tmp_path: Path, mode: str) -> tuple[float, str | None]:
    """Seconds from SIGKILL of the parent until the worker is gone, and whether it armed
    PDEATHSIG (None in mode "late": the worker may end before it can say)."""
    tree = ManagedProcess(
        [sys.executable, "-c", PARENT, WORKER, str(tmp_path), mode], log_path=tmp_path / "log"
    )
    tree.spawn()
    assert tree.proc is not None
    try:
        worker = int(_wait_for(tmp_path / "started"))
        armed = None if mode == "late" else _wait_for(tmp_path / "armed")
        os.kill(tree.proc.pid, signal.SIGKILL)
        tree.proc.wait(timeout=10)
        if mode == "late":  # the server died before the watchdog was armed
            (tmp_path / "go").touch()
        return _seconds_until_gone([worker], timeout=10), armed
    finally:
        tree.stop(timeout=5)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux")
def test_the_kernel_ends_the_worker_when_its_parent_is_killed(tmp_path: Path) -> None:
    seconds, armed = _kill_parent_of_worker(tmp_path, "default")
    assert armed == "True"
    assert seconds < 1.0  # no polling delay: the kernel signals at once


def test_the_watchdog_ends_the_worker_without_pdeathsig(tmp_path: Path) -> None:
    seconds, armed = _kill_parent_of_worker(tmp_path, "no-pdeathsig")
    assert armed == "False"
    assert seconds < 3.0


def test_a_worker_that_ignores_sigterm_exits_after_the_grace_period(tmp_path: Path) -> None:
    seconds, _ = _kill_parent_of_worker(tmp_path, "ignores-sigterm")
    assert 0.9 < seconds < 5.0  # grace_s=1.0, then os._exit


def test_a_server_that_died_before_the_watchdog_was_armed_still_ends_the_worker(
    tmp_path: Path,
) -> None:
    seconds, _ = _kill_parent_of_worker(tmp_path, "late")
    assert seconds < 3.0  # PDEATHSIG cannot fire for a parent already gone: the thread signals


def test_outside_a_worker_nothing_happens() -> None:
    environ = {lifecycle.METRICS_ENV: "/somewhere/prometheus_multiproc_dir"}
    assert not lifecycle.in_worker()
    assert lifecycle.bind_to_server() is None
    assert lifecycle.use_instance_metrics_dir(environ) is None
    assert environ == {lifecycle.METRICS_ENV: "/somewhere/prometheus_multiproc_dir"}


def test_each_instance_gets_its_folder_and_dead_ones_are_removed(tmp_path: Path) -> None:
    shared = tmp_path / "bentoml" / "prometheus_multiproc_dir"
    instances = shared.parent / lifecycle.INSTANCES_DIR
    instances.mkdir(parents=True)
    finished = psutil.Popen([sys.executable, "-c", "import time; time.sleep(0.5)"])
    dead = instances / lifecycle._instance_key(finished)
    finished.wait()
    other_live = instances / lifecycle._instance_key(psutil.Process(os.getppid()))
    unrelated = instances / "notes"
    for folder in (dead, other_live, unrelated):
        folder.mkdir()
        (folder / "counter_1.db").write_bytes(b"x")

    own = lifecycle.instance_metrics_dir(shared, psutil.Process())

    assert own.parent == instances and own.is_dir()
    assert not dead.exists()
    assert other_live.exists() and unrelated.exists()
    assert lifecycle.instance_metrics_dir(shared, psutil.Process()) == own  # its other workers


def test_a_worker_moves_prometheus_to_its_instance_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(lifecycle, "in_worker", lambda: True)
    monkeypatch.setattr(lifecycle, "_server", psutil.Process(os.getppid()))
    shared = tmp_path / "prometheus_multiproc_dir"
    environ = {lifecycle.METRICS_ENV: str(shared)}
    own = lifecycle.use_instance_metrics_dir(environ)
    assert own is not None and own.parent == tmp_path / lifecycle.INSTANCES_DIR
    assert own.name.startswith(f"{os.getppid()}-")
    assert environ[lifecycle.METRICS_ENV] == str(own)
    assert lifecycle.use_instance_metrics_dir(environ) == own  # a second import: unchanged


# ------------------------------------------------------------------- the real `bentoml serve`


@pytest.fixture
def bundle(world: World, tmp_path: Path) -> Path:
    return write_world_bundle(world, tmp_path / "bundle")


@pytest.fixture
def servers() -> Iterator[list[ScoringServer]]:
    """Every server a test starts, stopped (whole tree) whatever happens."""
    started: list[ScoringServer] = []
    try:
        yield started
    finally:
        for server in started:
            server.stop(timeout=10)


def _server(servers: list[ScoringServer], bundle: Path, root: Path, name: str) -> ScoringServer:
    """A server with its own state and log under ``root/name``, BentoML home ``root/home``."""
    server = ScoringServer(bundle, root / name / "state", root / "home", admin_key=None)
    server.log_path = root / name / "server.log"
    servers.append(server)
    return server


def _port_free(port: int) -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the server binds
        try:
            sock.bind((LOCALHOST, port))
            sock.listen()
        except OSError:
            return False
        return True


def _score_requests_counted(server: ScoringServer) -> float:
    """/score requests in the server's /metrics, whatever their status code."""
    text = httpx.get(f"{server.url}/metrics", timeout=10).text
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("bentoml_service_request_total{") and 'endpoint="/score"' in line
    )


def _score(server: ScoringServer, n: int) -> None:
    transaction = {
        "ts": "2026-03-07T12:00:00Z",
        "customer_id": "cust-metrics",
        "terminal_id": "T1",
        "amount": 42.5,
        "merchant_category": "grocery",
        "channel": "card_present",
    }
    with httpx.Client(base_url=server.url, timeout=30) as client:
        for i in range(n):
            client.post("/score", json={"transaction": {**transaction, "transaction_id": f"m{i}"}})


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_kill_9_of_bentoml_serve_ends_its_worker_and_frees_the_port(
    bundle: Path, tmp_path: Path, servers: list[ScoringServer]
) -> None:
    first = _server(servers, bundle, tmp_path, "first")
    first.start()
    assert first.proc is not None
    tree = first.pids()
    assert len(tree) >= 2, tree  # the main process and its worker(s)

    os.kill(first.proc.pid, signal.SIGKILL)  # the main process only
    first.proc.wait(timeout=10)
    seconds = _seconds_until_gone(tree, timeout=15)

    assert seconds < 5, seconds
    assert _port_free(first.port), first.log_tail()
    second = _server(servers, bundle, tmp_path, "second")
    second.start(port=first.port)
    assert httpx.get(f"{second.url}/readyz", timeout=10).status_code == 200


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_a_second_server_on_the_same_home_keeps_the_first_ones_metrics(
    bundle: Path, tmp_path: Path, servers: list[ScoringServer]
) -> None:
    first = _server(servers, bundle, tmp_path, "first")
    first.start()
    _score(first, 7)
    assert _score_requests_counted(first) == 7

    second = _server(servers, bundle, tmp_path, "second")
    second.start()  # BentoML wipes $BENTOML_HOME/prometheus_multiproc_dir here
    _score(second, 3)

    assert _score_requests_counted(first) == 7
    assert _score_requests_counted(second) == 3
