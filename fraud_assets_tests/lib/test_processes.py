"""The process kit never leaves a child behind, even one in a session of its own (as
BentoML's worker is) whose parent was killed first."""

from __future__ import annotations

import contextlib
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


# A parent that starts a child in its own session and exits at once: the child is an orphan
# before anyone could have seen it as a descendant (a worker respawned by circus just before
# its server was killed).
SHORT_PARENT = """
import subprocess, sys
child = subprocess.Popen(
    [sys.executable, "-c", "import time; time.sleep(600)"], start_new_session=True
)
print(child.pid, flush=True)
"""


def test_stop_ends_an_orphan_never_seen_as_a_descendant(tmp_path: Path) -> None:
    proc = ManagedProcess([sys.executable, "-c", SHORT_PARENT], log_path=tmp_path / "log")
    proc.spawn()
    assert proc.proc is not None
    proc.proc.wait(timeout=30)
    child = int(proc.log_path.read_text().split()[0])
    try:
        assert psutil.pid_exists(child)
        assert child in proc.pids()  # found by the token in its environment
        proc.stop(timeout=5)
        assert _gone([child])
    finally:
        with contextlib.suppress(psutil.NoSuchProcess):
            psutil.Process(child).kill()


def test_a_process_of_another_tree_is_not_ours(tmp_path: Path) -> None:
    ours, theirs = (
        ManagedProcess([sys.executable, "-c", PARENT], log_path=tmp_path / name)
        for name in ("ours", "theirs")
    )
    ours.spawn()
    theirs.spawn()
    try:
        deadline = time.monotonic() + 30
        while len(theirs.pids()) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        kept = theirs.pids()
        ours.stop(timeout=5)
        assert not _gone(kept)
        assert theirs.pids() == kept
    finally:
        ours.stop(timeout=5)
        theirs.stop(timeout=5)
