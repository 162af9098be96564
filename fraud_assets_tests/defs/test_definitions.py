"""The code location loads, and its structure is a reviewed snapshot.

Any change to asset keys, dependencies and their partition mappings, partitioning, code
versions, required resources, checks, jobs or automation shows up as a diff of
`fraud_assets_tests/snapshots/definitions.json`. Regenerate it on purpose with
`UPDATE_SNAPSHOTS=1 pytest fraud_assets_tests/defs/test_definitions.py`; a missing snapshot
fails (it is never silently written).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import dagster as dg

REPO = Path(__file__).resolve().parents[2]
SNAPSHOT = REPO / "fraud_assets_tests" / "snapshots" / "definitions.json"
# A code version may end in a hash of its modules' source (``versioning.code_version``): the
# snapshot keeps the declared part, or every comment edit would be a structural change.
SOURCE_HASH = re.compile(r"-[0-9a-f]{12}$")


def _mapping(graph, key: dg.AssetKey, parent: dg.AssetKey) -> str:
    mapping = graph.get_partition_mapping(key, parent)
    if isinstance(mapping, dg.TimeWindowPartitionMapping):
        return f"window {mapping.start_offset}..{mapping.end_offset}"
    return type(mapping).__name__


def structure() -> dict:
    from fraud_assets.definitions import defs

    graph = defs.resolve_asset_graph()
    assets = {}
    for key in sorted(graph.get_all_asset_keys(), key=lambda k: k.to_user_string()):
        node = graph.get(key)
        assets[key.to_user_string()] = {
            "deps": {
                p.to_user_string(): _mapping(graph, key, p)
                for p in sorted(node.parent_keys, key=lambda k: k.to_user_string())
            },
            "partitioned": node.partitions_def is not None,
            "group": node.group_name,
            "code_version": SOURCE_HASH.sub("-<source hash>", node.code_version or ""),
            "resources": sorted(defs.resolve_assets_def(key).required_resource_keys),
            "checks": sorted(
                f"{c.name}{' (blocking)' if graph.get(c).blocking else ''}" for c in node.check_keys
            ),
        }
    jobs = sorted(j.name for j in defs.resolve_all_job_defs() if not j.name.startswith("__"))
    automation = {
        **{
            s.name: f"schedule {s.job_name} {s.cron_schedule} {s.default_status.value}"
            for s in defs.schedules or []
        },
        **{
            s.name: f"sensor {','.join(sorted(j.name for j in s.jobs))} {s.default_status.value}"
            for s in defs.sensors or []
        },
    }
    return {"assets": assets, "jobs": jobs, "automation": dict(sorted(automation.items()))}


def test_structure_matches_the_reviewed_snapshot() -> None:
    current = structure()
    if os.environ.get("UPDATE_SNAPSHOTS"):
        SNAPSHOT.write_text(json.dumps(current, indent=2, sort_keys=True) + "\n")
    assert SNAPSHOT.exists(), f"no snapshot at {SNAPSHOT}: write it with UPDATE_SNAPSHOTS=1"
    assert current == json.loads(SNAPSHOT.read_text())


def test_dagster_cli_validates_the_code_location(tmp_path: Path) -> None:
    env = os.environ | {"DAGSTER_HOME": str(tmp_path)}
    out = subprocess.run(
        [sys.executable, "-m", "dagster", "definitions", "validate", "-w", "workspace.yaml"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-3000:]


def test_every_raw_gate_is_blocking_and_partitioned() -> None:
    from fraud_assets.definitions import defs

    graph = defs.resolve_asset_graph()
    raw = graph.get(dg.AssetKey("raw_transactions"))
    assert len(raw.check_keys) == 7
    assert all(graph.get(c).blocking for c in raw.check_keys)
