"""Versions that make any artefact traceable: data content hashes, code and environment hashes."""

from __future__ import annotations

import hashlib
import inspect
import subprocess
from pathlib import Path
from types import ModuleType

import polars as pl


def data_version(df: pl.DataFrame) -> str:
    """Content hash of a frame: schema plus every value, independent of how it was written."""
    h = hashlib.sha256(str(df.schema).encode())
    if df.height:
        h.update(df.hash_rows(seed=0).to_numpy().tobytes())
    return h.hexdigest()[:16]


def code_version(*modules: ModuleType) -> str:
    """Hash of the source text of the modules a computation depends on."""
    h = hashlib.sha256()
    for module in modules:
        h.update(inspect.getsource(module).encode())
    return h.hexdigest()[:12]


def file_hash(path: str | Path) -> str:
    p = Path(path)
    return hashlib.sha256(p.read_bytes()).hexdigest()[:16] if p.exists() else "missing"


def git_commit(cwd: str | Path | None = None) -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=5
        )
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"
