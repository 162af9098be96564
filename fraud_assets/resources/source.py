"""The transaction source as a Dagster resource: which source feeds the pipeline is config."""

from __future__ import annotations

import functools
import json
from typing import Any

import dagster as dg

from fraud_assets.lib.sources import TransactionSource, build_source, load_config_file


@functools.lru_cache(maxsize=8)
def _cached_source(kind: str, options_key: str) -> TransactionSource:
    # Shared across runs in one process: the file source caches its normalised dataset.
    return build_source(kind, json.loads(options_key))


class TransactionSourceResource(dg.ConfigurableResource):
    """`kind`: simulator or files. Options come from a YAML/JSON file and/or inline JSON."""

    kind: str = "simulator"
    options_json: str = "{}"
    config_file: str | None = None

    def options(self) -> dict[str, Any]:
        opts: dict[str, Any] = load_config_file(self.config_file) if self.config_file else {}
        return opts | json.loads(self.options_json or "{}")

    def get(self) -> TransactionSource:
        return _cached_source(self.kind, json.dumps(self.options(), sort_keys=True, default=str))
