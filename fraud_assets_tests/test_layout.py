"""The package's layering, read from the source (AST, no imports: milliseconds).

- ``lib/`` is plain Python: no Dagster, nothing from the layers above it, no settings.
- ``serving/`` (the Bento) never imports Dagster, Polars or settings, and nothing it imports
  from ``lib/`` does either, however indirectly (lazy imports count): the boundary is in the
  layout, so the hot path stays lean and the Bento small.
- No upward imports (lib < serving, resources < defs < definitions < cli) and no cycles.
"""

from __future__ import annotations

import ast
from functools import cache
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "fraud_assets"
LAYERS = {"lib": 0, "settings": 0, "serving": 1, "resources": 1, "defs": 2, "definitions": 3}
TOP = 4  # cli, __main__: may import anything
SERVING_FORBIDDEN = ("dagster", "polars", "fraud_assets.settings")


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _type_checking_only(node: ast.AST) -> bool:
    return isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)


@cache
def imports_of(module: str) -> frozenset[str]:
    return imports_in(MODULES[module], module)


def imports_in(path: Path, module: str) -> frozenset[str]:
    """Every module the file imports, anywhere in its body (not under TYPE_CHECKING)."""
    tree = ast.parse(path.read_text())
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()
    stack: list[ast.AST] = [tree]
    while stack:
        node = stack.pop()
        if _type_checking_only(node):
            continue
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            found.add(base)
            # `from fraud_assets.lib import contracts` imports the submodule.
            found.update(f"{base}.{a.name}" for a in node.names if f"{base}.{a.name}" in MODULES)
        stack.extend(ast.iter_child_nodes(node))
    return frozenset(found)


def internal_imports(module: str) -> set[str]:
    return {m for m in imports_of(module) if m in MODULES and m != module}


def layer(module: str) -> int:
    parts = module.split(".")
    return LAYERS.get(parts[1], TOP) if len(parts) > 1 else 0  # the package's own __init__


def _in(module: str, prefixes: tuple[str, ...]) -> bool:
    return any(module == p or module.startswith(p + ".") for p in prefixes)


def test_lib_is_plain_python() -> None:
    bad = {
        m: sorted(i for i in imports_of(m) if _in(i, ("dagster", "fraud_assets.settings")))
        for m in MODULES
        if m.startswith("fraud_assets.lib")
    }
    assert not {m: i for m, i in bad.items() if i}


def served_modules() -> set[str]:
    """The serving package and every package module it reaches."""
    reached, todo = set(), [m for m in MODULES if m.startswith("fraud_assets.serving")]
    while todo:
        module = todo.pop()
        if module not in reached:
            reached.add(module)
            todo.extend(internal_imports(module))
            parent = module.rpartition(".")[0]
            todo.extend([parent] if parent in MODULES else [])  # its package's __init__
    return reached


def test_serving_and_everything_it_reaches_stay_out_of_dagster_polars_settings() -> None:
    bad = {
        m: sorted(i for i in imports_of(m) if _in(i, SERVING_FORBIDDEN)) for m in served_modules()
    }
    assert not {m: i for m, i in bad.items() if i}


def test_the_bento_contains_every_module_the_service_imports() -> None:
    from fraud_assets.resources.bento import bento_files

    packed = {p.as_posix() for p in bento_files(PACKAGE.parent)}
    needed = {MODULES[m].relative_to(PACKAGE.parent).as_posix() for m in served_modules()}
    assert needed <= packed, f"missing from bentofile.yaml's include: {sorted(needed - packed)}"


def test_no_upward_imports() -> None:
    upward = {
        m: sorted(i for i in internal_imports(m) if layer(i) > layer(m))
        for m in MODULES
        if layer(m) < TOP
    }
    assert not {m: i for m, i in upward.items() if i}


def test_no_import_cycles() -> None:
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(module: str, path: list[str]) -> None:
        state[module] = 1
        for child in sorted(internal_imports(module)):
            if state.get(child) == 1:
                cycle = [*path[path.index(child) :], child]
                pytest.fail(f"import cycle: {' -> '.join(cycle)}")
            if child not in state:
                visit(child, [*path, child])
        state[module] = 2

    for module in MODULES:
        if module not in state:
            visit(module, [module])


def test_the_checker_sees_lazy_and_relative_imports(tmp_path: Path) -> None:
    """The rules above can fail: imports inside functions and relative ones are found, and
    TYPE_CHECKING-only ones are not."""
    source = tmp_path / "probe.py"
    source.write_text(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    import polars\n"
        "def f():\n    import dagster\n    from ..defs import jobs\n    from . import contracts\n"
    )
    found = imports_in(source, "fraud_assets.lib.probe")
    assert {"dagster", "fraud_assets.defs.jobs", "fraud_assets.lib.contracts"} <= found
    assert "polars" not in found
    assert layer("fraud_assets.defs.jobs") > layer("fraud_assets.lib.probe")
