"""Preflight: what the tools' executors would fail to start, found before anything runs (`bot check-config`).

Static checks only (a program on PATH, a script or module there, a Python target importable); nothing
is run, so it is cheap and free of side effects.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
from pathlib import Path
from typing import Any

from core.tools.registry import CommandExecutor, PythonExecutor, ToolRegistry


def missing_programs(tools: ToolRegistry, workdir: Path, path: str | None) -> list[str]:
    """What an executor would fail to start: a program not on `path` (PATH) or not executable, the
    script or module `{python}` runs not there (a script relative to `workdir`, BOT_WORKDIR), or a
    Python tool's module not importable. Placeholders are not checked."""
    found: list[str] = []
    for name in tools.names():
        executor = tools.get(name).executor
        if isinstance(executor, PythonExecutor):
            module = executor.target.partition(":")[0]
            if not _importable(module):
                found.append(f"tool {name!r} calls {executor.target}, but {module} cannot be imported; fix its target")
            continue
        if not isinstance(executor, CommandExecutor):
            continue
        program, *rest = executor.argv
        if program == "{python}":
            found += _missing_python_target(name, rest, workdir)
        elif "{" in program:
            continue
        elif "/" in program:
            where = workdir / program
            if not (where.is_file() and os.access(where, os.X_OK)):
                found.append(f"tool {name!r} runs {where}, which is not an executable file; fix its argv")
        elif shutil.which(program, path=path) is None:
            found.append(f"tool {name!r} runs {program!r}, which is not on PATH; install it or fix its argv")
    return found + _missing_mcp_commands(tools, workdir, path)


def _missing_mcp_commands(tools: ToolRegistry, workdir: Path, path: str | None) -> list[str]:
    """A stdio MCP server's command that is not there (`[mcp.servers.<name>].command`)."""
    servers: dict[str, Any] = getattr(tools.mcp, "servers", {})
    found = []
    for name, server in servers.items():
        program = server.command
        if program is None:
            continue
        where = Path(server.cwd or workdir) / program  # an absolute command stays itself
        if "/" in program and not (where.is_file() and os.access(where, os.X_OK)):
            found.append(f"MCP server {name!r} runs {where}, which is not an executable file; fix its command")
        elif "/" not in program and shutil.which(program, path=path) is None:
            found.append(f"MCP server {name!r} runs {program!r}, which is not on PATH; install it or fix its command")
    return found


PYTHON_OPTIONS_WITH_VALUE = {"-W", "-X"}


def _missing_python_target(name: str, args: list[str], workdir: Path) -> list[str]:
    """The script or `-m` module of `{python} [options] script|-m module|-c code ...`."""
    isolated = False  # -I and -P keep the working directory off sys.path
    options = iter(args)
    for arg in options:
        if arg in PYTHON_OPTIONS_WITH_VALUE:
            next(options, None)
        elif arg == "-c" or "{" in arg:
            return []
        elif arg == "-m":
            module = next(options, "")
            if "{" in module or (not isolated and _module_file(workdir, module)) or _importable(module):
                return []
            return [f"tool {name!r} runs module {module}, which cannot be found; install it or fix its argv"]
        elif arg.startswith("-"):
            isolated = isolated or arg in ("-I", "-P")
        elif (workdir / arg).is_file():
            return []
        else:
            return [f"tool {name!r} runs {arg}, which is not in {workdir}; fix its argv or BOT_WORKDIR"]
    return []


def _module_file(workdir: Path, module: str) -> bool:
    base = workdir.joinpath(*module.split("."))
    return base.with_suffix(".py").is_file() or (base / "__main__.py").is_file()


def _importable(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a parent package is missing, or the name is malformed
        return False
