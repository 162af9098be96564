"""schemathesis against a real ``bentoml serve``: the service answers what /docs.json says.

Every check (``--checks all``: status codes, content types, response schemas, schema-valid
bodies accepted, schema-invalid ones refused, undeclared methods answered 405 with ``Allow``,
admin routes refusing calls without the key...) over every operation, in all phases, with a
fixed seed and a bounded number of examples so the run is repeatable and short.

Configuration, and why:
- Schema-valid bodies may also get 409 (a transaction id retried with another payload, which
  generated ids do all the time) or 422 (admission refusals): declared, so they count as
  accepted. schemathesis leaves 409s out of its "valid data mostly rejected" warning, not 422s.
- The server's clock window (``FRAUD_MAX_CLOCK_AHEAD_S``, default a day) is opened to the
  schema's range: a static pattern cannot say "at most a day after now", so with the default
  most generated timestamps (up to 2199) would be refused 422 and scoring would hardly be
  exercised. The window itself is tested in test_scoring.
- Warnings fail the run. The admin key is sent with every request; the ``ignored_auth``
  check drops it itself to see the admin routes refuse.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from fraud_assets.lib.contracts import MAX_CLOCK_AHEAD_ENV
from fraud_assets.lib.processes import ScoringServer, venv_command
from fraud_assets.lib.sample_world import World, write_world_bundle
from fraud_assets.serving.openapi import ADMIN_KEY_HEADER, DOCS_PATH
from fraud_assets.serving.schemas import LATEST

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]

ADMIN_KEY = "schemathesis-admin-key"
MAX_EXAMPLES = 60
SEED = 20261202
CONFIG = """
[checks.positive_data_acceptance]
expected-statuses = ["2xx", "401", "403", "404", "409", "422", "429"]

[warnings]
fail-on = true
"""


@pytest.fixture(scope="module")
def server(world: World, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ScoringServer]:
    root = tmp_path_factory.mktemp("schemathesis")
    bundle = write_world_bundle(world, root / "bundle", share=0.3, mode="split")
    srv = ScoringServer(bundle, root / "state", root / "home", ADMIN_KEY)
    window = LATEST - datetime.now(UTC)
    with pytest.MonkeyPatch.context() as env:  # read by start() only
        env.setenv(MAX_CLOCK_AHEAD_ENV, str(int(window.total_seconds())))
        srv.start()
    try:
        yield srv
    finally:
        srv.stop()


def test_schemathesis_finds_nothing(server: ScoringServer, tmp_path: Path) -> None:
    config = tmp_path / "schemathesis.toml"
    config.write_text(CONFIG)
    command = [
        venv_command("schemathesis"),
        "--config-file",
        str(config),
        "run",
        f"{server.url}{DOCS_PATH}",
        "--checks",
        "all",
        "--max-examples",
        str(MAX_EXAMPLES),
        "--seed",
        str(SEED),
        "--header",
        f"{ADMIN_KEY_HEADER}: {ADMIN_KEY}",
        "--request-timeout",
        "30",
    ]
    run = subprocess.run(
        command, cwd=tmp_path, capture_output=True, text=True, timeout=200, check=False
    )
    output = run.stdout + run.stderr
    assert run.returncode == 0, output
    assert "FAILURES" not in output and "WARNINGS" not in output, output
    assert "Operations:       11 selected / 11 total" in output, output
