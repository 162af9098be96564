"""Tie a BentoML worker's life and metrics to the one `bentoml serve` process that started it.

BentoML 1.4 (`bentoml serve`, circus arbiter in the main process) starts each worker with
``setsid``: the worker is a direct child of the main process but in a session and process
group of its own. Two consequences this module fixes from inside the worker:

1. **Orphans.** ``kill -9`` of the main process (or of its group) leaves the worker serving:
   it still holds the listening socket, and the next ``bentoml serve`` on that port fails with
   "Address already in use" (BentoML issue #4193, still open). ``bind_to_server`` makes the
   worker end itself when its parent dies: ``PR_SET_PDEATHSIG`` on Linux (the kernel sends
   SIGTERM the moment the parent exits; circus spawns workers from the arbiter's own thread,
   the main thread under `bentoml serve`, which lives as long as the process), and everywhere
   a daemon thread that polls ``os.getppid()`` and, once the parent is gone, sends SIGTERM
   (uvicorn's graceful shutdown: in-flight requests finish, ``on_shutdown`` hooks close the
   logs) and ``os._exit`` after a grace period in case that shutdown hangs. The server is
   the worker's parent as first seen at the service's import (``server_process``), so a
   server killed while the models were loading is noticed too (PDEATHSIG would not fire).

2. **Shared metrics.** BentoML gives every server ``$BENTOML_HOME/prometheus_multiproc_dir``
   (``BentoMLContainer.prometheus_multiproc_dir``, not configurable apart from BENTOML_HOME)
   and wipes it in the main process before it even imports the service, then passes it to
   the workers as ``PROMETHEUS_MULTIPROC_DIR``. A second server on the same BENTOML_HOME
   therefore wipes the first one's counters, and from then on both count into the same
   files (measured: the first server's /metrics showed the second's requests). ``use_instance_metrics_dir`` (run at import of
   the service module, which in a worker happens before BentoML creates any metric) points
   ``PROMETHEUS_MULTIPROC_DIR`` at a folder of this server instance (keyed by the main
   process's pid and start time, shared by all workers of that instance so /metrics still
   aggregates them) and removes the folders of instances that no longer run. This works for
   any launcher, including ``bentoml serve fraud_scoring:TAG`` typed twice by hand.

Both act only inside a BentoML worker (``bentoml.server_context.worker_index`` is set): in
the main process, in tests and in tools that import the service, they do nothing.
"""

from __future__ import annotations

import ctypes
import logging
import os
import re
import shutil
import signal
import sys
import threading
import time
from collections.abc import MutableMapping
from dataclasses import dataclass
from pathlib import Path

import psutil

logger = logging.getLogger(__name__)

METRICS_ENV = "PROMETHEUS_MULTIPROC_DIR"  # read by prometheus_client when a value is created
INSTANCES_DIR = "prometheus_multiproc_instances"  # next to BentoML's shared folder
POLL_S = 0.5
GRACE_S = 10.0  # SIGTERM -> forced exit: uvicorn waits for open connections without a limit
_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
_INSTANCE_NAME = re.compile(r"^(\d+)-(\d+)$")

_lock = threading.Lock()
_server: psutil.Process | None = None
_watchdog: ParentWatchdog | None = None


def in_worker() -> bool:
    """Whether this process is a BentoML worker: the worker sets ``worker_index`` before it
    loads the service; it is None in the `bentoml serve` main process and everywhere else."""
    if "bentoml" not in sys.modules:  # never import BentoML just to answer no
        return False
    from bentoml import server_context

    return server_context.worker_index is not None


# ------------------------------------------------------------------------------ parent death


@dataclass
class ParentWatchdog:
    """What ``watch_parent`` armed: the parent it watches and how (for logs and tests)."""

    parent_pid: int
    pdeathsig: bool
    thread: threading.Thread


def server_process() -> psutil.Process:
    """The process that started this one, as first seen. A BentoML worker is a direct child of
    the `bentoml serve` main process (the arbiter); remembering it at the service's import
    lets the later ``bind_to_server`` notice a server that died while the models loaded."""
    global _server
    with _lock:
        if _server is None:
            _server = psutil.Process(os.getppid())
        return _server


def _set_pdeathsig() -> bool:
    """Ask Linux to send SIGTERM when the parent (thread) exits; False where unavailable."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def _parent_alive(parent: psutil.Process) -> bool:
    """POSIX reparents an orphan (to init or a subreaper), so ``getppid`` changing is the
    exact, cheap test; elsewhere ``getppid`` is frozen, so look the parent up (psutil checks
    pid and start time, against pid reuse)."""
    if os.name == "posix":
        return os.getppid() == parent.pid
    return parent.is_running()


def _watch(parent: psutil.Process, signal_self: bool, poll_s: float, grace_s: float) -> None:
    while _parent_alive(parent):
        time.sleep(poll_s)
    logger.warning(
        "server process %d is gone: worker %d shutting down (forced exit in %.0f s)",
        parent.pid,
        os.getpid(),
        grace_s,
    )
    if signal_self:
        os.kill(os.getpid(), signal.SIGTERM)  # uvicorn's graceful shutdown
    time.sleep(grace_s)
    logger.warning("worker %d still running %.0f s after SIGTERM: exiting", os.getpid(), grace_s)
    os._exit(1)


def watch_parent(
    parent: psutil.Process | None = None, *, poll_s: float = POLL_S, grace_s: float = GRACE_S
) -> ParentWatchdog:
    """End this process when ``parent`` (default: the current parent) is gone: SIGTERM, then
    ``os._exit`` after ``grace_s`` if the graceful shutdown hangs. Idempotent: a second call
    returns the first watchdog."""
    global _watchdog
    parent = parent or psutil.Process(os.getppid())
    with _lock:
        if _watchdog is None:
            pdeathsig = _set_pdeathsig()
            # PDEATHSIG only fires for a parent that dies after prctl: if it is already gone
            # (or was never our parent), the thread must send the signal itself.
            armed = pdeathsig and _parent_alive(parent)
            thread = threading.Thread(
                target=_watch,
                args=(parent, not armed, poll_s, grace_s),
                name="parent-watchdog",
                daemon=True,
            )
            thread.start()
            _watchdog = ParentWatchdog(parent.pid, armed, thread)
        return _watchdog


def bind_to_server() -> ParentWatchdog | None:
    """In a BentoML worker: end with the `bentoml serve` process that started it (see the
    module docstring). Call once at the start of the service's ``__init__``; elsewhere a
    no-op returning None."""
    if not in_worker():
        return None
    return watch_parent(server_process())


# -------------------------------------------------------------------------- metrics folder


def _instance_key(process: psutil.Process) -> str:
    """``pid-starttime`` (centiseconds): unique per process even when pids are reused."""
    return f"{process.pid}-{int(process.create_time() * 100)}"


def _instance_running(name: str) -> bool:
    match = _INSTANCE_NAME.match(name)
    if match is None:
        return True  # not ours: leave it alone
    try:
        return _instance_key(psutil.Process(int(match.group(1)))) == name
    except psutil.NoSuchProcess:
        return False


def instance_metrics_dir(shared: Path, server: psutil.Process) -> Path:
    """The metrics folder of the server instance ``server`` (its main process), created if
    missing; folders of instances that no longer run are removed on the way."""
    root = shared.parent / INSTANCES_DIR
    root.mkdir(parents=True, exist_ok=True)
    for old in root.iterdir():
        if old.is_dir() and not _instance_running(old.name):
            shutil.rmtree(old, ignore_errors=True)
    own = root / _instance_key(server)
    own.mkdir(exist_ok=True)  # the instance's other workers may have made it already
    return own


def use_instance_metrics_dir(environ: MutableMapping[str, str] = os.environ) -> Path | None:
    """In a BentoML worker: move ``PROMETHEUS_MULTIPROC_DIR`` from BentoML's shared folder to
    this server instance's own (see the module docstring). Call at import of the service
    module, before BentoML creates its metrics; returns the folder, or None (not a worker,
    or no multiprocess folder set)."""
    if not in_worker():
        return None
    server = server_process()  # remembered now, for bind_to_server
    shared = environ.get(METRICS_ENV)
    if not shared:
        return None
    if Path(shared).parent.name == INSTANCES_DIR:
        return Path(shared)  # already moved (a second import of the service module)
    own = instance_metrics_dir(Path(shared), server)
    environ[METRICS_ENV] = str(own)
    return own
