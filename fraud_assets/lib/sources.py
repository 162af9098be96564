"""Where transactions come from: the simulator (default) or the user's own files.

Both answer the same two questions for any day, in any order: which transactions happened
that day, and which labels became known that day.
"""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path
from typing import Any, Protocol

import polars as pl

from fraud_assets.lib.simulation import SimulationConfig, Simulator


class TransactionSource(Protocol):
    name: str

    def transactions(self, day: date) -> pl.DataFrame:
        """Canonical transactions whose `ts` falls on `day` (UTC), sorted by time."""
        ...

    def labels(self, day: date) -> pl.DataFrame:
        """Label events (`transaction_id`, `is_fraud`, `known_at`) that became known on `day`."""
        ...


def load_config_file(path: str | Path) -> dict[str, Any]:
    """A source configuration from YAML or JSON."""
    text = Path(path).read_text()
    if str(path).endswith(".json"):
        return json.loads(text)
    import yaml

    return yaml.safe_load(text) or {}


def build_source(kind: str, options: dict[str, Any] | None = None) -> TransactionSource:
    """The source named by configuration: `simulator` or `files`."""
    options = dict(options or {})
    if kind == "simulator":
        return Simulator(SimulationConfig.from_dict(options))
    if kind == "files":
        from fraud_assets.lib.file_source import FileSource, FileSourceConfig

        return FileSource(FileSourceConfig(**options))
    raise ValueError(f"unknown source kind {kind!r}: expected 'simulator' or 'files'")
