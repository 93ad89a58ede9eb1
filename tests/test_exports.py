"""Each package's public surface is explicit: `__all__` lists exactly what it exports."""

from __future__ import annotations

import ast
import importlib
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).parents[1]


@pytest.mark.parametrize("package", ["adapters", "bot", "config"])
def test_all_matches_the_exports(package: str) -> None:
    module = importlib.import_module(package)
    public = {name for name in vars(module) if not name.startswith("_")}
    submodules = {name for name in public if type(getattr(module, name)).__name__ == "module"}
    assert sorted(module.__all__) == sorted(public - submodules)


def test_the_core_exports_load_on_first_use() -> None:
    import core

    assert sorted(core.__all__) == sorted(core._HOMES) == dir(core)
    for name in core.__all__:
        assert getattr(core, name) is getattr(importlib.import_module(core._HOMES[name]), name)
    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        _ = core.Nope


def test_the_command_line_parses_without_loading_the_core() -> None:
    """`bot --help` must start fast: parsing imports the settings, not the agent, the store or the SDKs."""
    probe = "import sys, bot.cli; print(sorted(m for m in ('core.runtime.threads', 'core.redis.store', 'redis', 'aiohttp') if m in sys.modules))"
    loaded = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True, cwd=REPO_ROOT)
    assert loaded.stdout.strip() == "[]", loaded.stdout


def test_adapters_use_only_the_public_core() -> None:
    for path in (REPO_ROOT / "adapters").rglob("*.py"):
        for node in ast.walk(ast.parse(Path(path).read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("core."):
                pytest.fail(f"{path.name} imports {node.module}; import from `core` instead")
