"""The process kit never leaves a child behind, even one in a session of its own (as
BentoML's worker is) whose parent was killed first."""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

import psutil

from fraud_assets.lib.processes import ManagedProcess

# A parent that starts a child in its own session (out of reach of a group signal) and then
# waits, like `bentoml serve` and its worker.
PARENT = """
import subprocess, sys, time
subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"], start_new_session=True)
time.sleep(600)
"""


def _started(tmp_path: Path) -> tuple[ManagedProcess, list[int]]:
    proc = ManagedProcess([sys.executable, "-c", PARENT], log_path=tmp_path / "log")
    proc.spawn()
    deadline = time.monotonic() + 30
    while len(proc.pids()) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    pids = proc.pids()
    assert len(pids) == 2, pids
    return proc, pids


def _gone(pids: list[int]) -> bool:
    alive = [p for p in pids if psutil.pid_exists(p) and psutil.Process(p).status() != "zombie"]
    return not alive


def test_stop_ends_the_child_in_its_own_session(tmp_path: Path) -> None:
    proc, pids = _started(tmp_path)
    proc.stop()
    assert _gone(pids)
    assert proc.pids() == []


def test_stop_ends_an_orphan_whose_parent_was_killed_first(tmp_path: Path) -> None:
    proc, pids = _started(tmp_path)
    parent, child = pids
    os.kill(parent, signal.SIGKILL)  # what a crash or `kill -9` of `bentoml serve` does
    time.sleep(0.2)
    assert psutil.pid_exists(child)  # orphaned: no longer anyone's descendant
    proc.stop(timeout=5)
    assert _gone([child])
