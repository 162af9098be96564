"""Start and stop the long-running processes the platform drives: `bentoml serve` and
`dagster-daemon`. The Bento smoke check, the tests and the benchmarks all use this module.

Why a module of its own: BentoML's worker runs in a session of its own, so a signal to the
`bentoml serve` process (or its group) alone can leave the worker holding the port, and the
next start fails with "Address already in use". ``ManagedProcess.stop`` signals the group
*and* every process of the tree by pid, then waits for each, so nothing is ever left behind.
"The tree" includes orphans: every process spawned here gets a token in its environment,
which its descendants inherit (circus passes the environment on to BentoML's workers), so a
worker whose parent was killed first is still found, even one started after the last look.
(The worker also ends itself when its server dies: ``fraud_assets.serving.lifecycle``.)

Running two servers by hand on one BENTOML_HOME is safe for /metrics too: each server
instance keeps its Prometheus files in a folder of its own (``serving.lifecycle``).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType

import httpx
import psutil

from fraud_assets.lib import contracts

LOCALHOST = "127.0.0.1"
READY_TIMEOUT_S = 120.0
SERVICE = "fraud_assets.serving.service:FraudScoring"  # the service, run from the source tree
STOP_TIMEOUT_S = 15.0
TOKEN_ENV = "FRAUD_MANAGED_PROCESS"  # in the environment of every process of one tree
_POLL_S = 0.2


def free_port() -> int:
    """A TCP port free on the loopback interface right now."""
    with socket.socket() as sock:
        sock.bind((LOCALHOST, 0))
        return sock.getsockname()[1]


def venv_command(name: str) -> str:
    """A console script of the running interpreter's environment (bentoml, dagster-daemon)."""
    return str(Path(sys.executable).with_name(name))


class ManagedProcess:
    """A child in its own session, output to a log file; stopping it stops its whole tree."""

    def __init__(
        self,
        command: Sequence[str],
        *,
        log_path: Path,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
    ) -> None:
        self.command, self.log_path = list(command), log_path
        self.env, self.cwd = dict(env if env is not None else os.environ), cwd
        self.proc: subprocess.Popen[bytes] | None = None
        self.token = ""

    def spawn(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self.token = uuid.uuid4().hex
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                self.command,
                cwd=self.cwd,
                env={**self.env, TOKEN_ENV: self.token},
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def pids(self) -> list[int]:
        """The process and all of its tree still alive, orphans included (empty once stopped)."""
        return [p.pid for p in self._family()]

    def _family(self) -> list[psutil.Process]:
        """The live descendants, and every process carrying this spawn's token: descendants
        whose parent died (reparented, so no longer anyone's descendant)."""
        if self.proc is None:
            return []
        found: dict[int, psutil.Process] = {}
        with contextlib.suppress(psutil.NoSuchProcess):
            root = psutil.Process(self.proc.pid)
            found = {p.pid: p for p in [root, *root.children(recursive=True)]}
        for process in psutil.process_iter():
            if process.pid in found:
                continue
            with contextlib.suppress(psutil.Error):  # gone, or another user's
                if process.environ().get(TOKEN_ENV) == self.token:
                    found[process.pid] = process
        return list(found.values())

    def stop(self, sig: int = signal.SIGTERM, timeout: float = STOP_TIMEOUT_S) -> None:
        """Signal the group and every descendant by pid (children in sessions of their own
        escape a group signal), wait, SIGKILL what is still alive, wait again."""
        if self.proc is None:
            return
        family = self._family()
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, sig)
        for process in family:
            with contextlib.suppress(psutil.NoSuchProcess):
                process.send_signal(sig)
        _, alive = psutil.wait_procs(family, timeout=timeout)
        for process in alive:
            with contextlib.suppress(psutil.NoSuchProcess):
                process.kill()
        psutil.wait_procs(alive, timeout=timeout)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=timeout)
        self.proc = None

    def log_tail(self, chars: int = 4000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:] if self.log_path.exists() else ""

    def __enter__(self) -> ManagedProcess:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


class BentoServer(ManagedProcess):
    """`bentoml serve TARGET` on a free loopback port; ``start`` returns once /readyz is 200.

    TARGET: a Bento tag (`fraud_scoring:abc`, from the store in $BENTOML_HOME) or a service
    import path (`fraud_assets.serving.service:FraudScoring`, run from ``cwd``).
    """

    def __init__(
        self,
        target: str,
        *,
        log_path: Path,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
    ) -> None:
        super().__init__([], log_path=log_path, env=env, cwd=cwd)
        self.target = target
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://{LOCALHOST}:{self.port}"

    def start(self, timeout: float = READY_TIMEOUT_S, port: int | None = None) -> None:
        """Serve on ``port`` (default: a new free one); raise (with the log's tail) if it
        exits or never gets ready, leaving nothing running."""
        self.port = port or free_port()
        self.command = [
            venv_command("bentoml"),
            "serve",
            self.target,
            "--host",
            LOCALHOST,
            "--port",
            str(self.port),
        ]
        self.spawn()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.running():
                code = self.proc.returncode if self.proc else None
                self.stop()
                raise RuntimeError(f"bentoml serve exited {code}:\n{self.log_tail()}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.url}/readyz", timeout=2).status_code == 200:
                    return
            time.sleep(_POLL_S)
        self.stop()
        raise TimeoutError(f"bentoml serve not ready after {timeout:.0f} s:\n{self.log_tail()}")


class ScoringServer(BentoServer):
    """``bentoml serve`` of the service module (not a built Bento) with a bundle folder, its
    logs under ``state`` and its BentoML home under ``home``: tests and benchmarks."""

    def __init__(
        self,
        bundle: Path,
        state: Path,
        home: Path,
        admin_key: str | None,
        settings: Mapping[str, str] | None = None,
    ) -> None:
        """``settings``: more environment for the service (store URL, workers, lags)."""
        self.bundle, self.state, self.home, self.admin_key = bundle, state, home, admin_key
        self.settings = dict(settings or {})
        source_tree = Path(__file__).resolve().parents[2]
        super().__init__(SERVICE, log_path=home / "server.log", cwd=source_tree)

    def start(self, timeout: float = READY_TIMEOUT_S, port: int | None = None) -> None:
        """Start with the current attributes (a test may change the admin key between runs)."""
        self.env = {
            **os.environ,
            contracts.BUNDLE_ENV: str(self.bundle),
            contracts.SERVING_STATE_ENV: str(self.state),
            "BENTOML_HOME": str(self.home / "bentoml"),
            "BENTOML_DO_NOT_TRACK": "True",
            "PYTHONUNBUFFERED": "1",
            **self.settings,
        }
        self.env.pop(contracts.ADMIN_KEY_ENV, None)
        if self.admin_key is not None:
            self.env[contracts.ADMIN_KEY_ENV] = self.admin_key
        super().start(timeout, port)


class DagsterDaemon(ManagedProcess):
    """`dagster-daemon run -w WORKSPACE` (schedules, sensors, the run queue) for $DAGSTER_HOME."""

    def __init__(
        self,
        workspace: Path,
        *,
        log_path: Path,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
    ) -> None:
        command = [venv_command("dagster-daemon"), "run", "-w", str(workspace)]
        super().__init__(command, log_path=log_path, env=env, cwd=cwd)

    def start(self) -> None:
        self.spawn()
