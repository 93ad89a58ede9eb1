"""Each package's public surface is explicit: `__all__` lists exactly what it exports."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

from config.settings import PROJECT_DIR


@pytest.mark.parametrize("package", ["core", "adapters", "bot", "config"])
def test_all_matches_the_exports(package: str) -> None:
    module = importlib.import_module(package)
    public = {name for name in vars(module) if not name.startswith("_")}
    submodules = {name for name in public if type(getattr(module, name)).__name__ == "module"}
    assert sorted(module.__all__) == sorted(public - submodules)


def test_adapters_use_only_the_public_core() -> None:
    for path in (PROJECT_DIR / "adapters").glob("*.py"):
        for node in ast.walk(ast.parse(Path(path).read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("core."):
                pytest.fail(f"{path.name} imports {node.module}; import from `core` instead")
