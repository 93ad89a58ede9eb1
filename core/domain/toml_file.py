"""Reading one of the operator's TOML files (tools, agents, schedules, hooks), with errors that say which and how to fix it."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

from core.domain.errors import ConfigError


def load_toml(path: Path, what: str, missing: str | None = None) -> dict[str, Any]:
    """The table the file at `path` holds. Every error is a `ConfigError` naming `what` ("tools file") and `path`.

    `missing` is the fix for a file that does not exist ("set BOT_TOOLS_FILE to a tools.toml"); without
    it, the file is optional and a missing one reads as an empty table.
    """
    try:
        return tomllib.loads(path.read_text())
    except FileNotFoundError:
        if missing is None:
            return {}
        raise ConfigError(f"{what} {path} does not exist; {missing}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{what} {path} is not valid TOML: {exc}") from exc
