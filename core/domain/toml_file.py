"""Reading one of the operator's TOML files (tools, agents, schedules, hooks), with errors that say which and how to fix it."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from core.domain.errors import ConfigError

M = TypeVar("M", bound=BaseModel)


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


def validated(model: type[M], raw: Any, where: str, fix: str = "") -> M:
    """`raw` (a table of one of those files) as `model`. The first problem is a `ConfigError` that says where
    (`where`: "tool 'deploy' in tools.toml"), which field, what is wrong, and `fix` when given."""
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(part) for part in first["loc"])
        message = first["msg"].removeprefix("Value error, ")  # a validator's own words, without pydantic's prefix
        raise ConfigError(f"{where}: {field}: {message}{f'; {fix}' if fix else ''}") from exc
