"""Slash commands: `/ops request:<text>` and one typed command per tool, from its JSON schema.

A tool command becomes the same text the core parses for a typed command, so
`/deploy service:api version:1.4.2 environment:production` and
`/deploy service=api version=1.4.2 environment=production` make the same tool call.
"""

from __future__ import annotations

import inspect
import logging
import re
import shlex
from collections.abc import Mapping
from typing import Any, Literal

import discord
from discord import app_commands

from adapters.discord.bot import sink_of
from core import ToolRegistry, ToolSpec

log = logging.getLogger(__name__)

OPS = "ops"
NAME = re.compile(r"^[a-z0-9_-]{1,32}$")  # what Discord accepts as a command or option name (ASCII subset)
MAX_CHOICES = 25
MAX_OPTIONS = 25
MAX_COMMANDS = 100
DESCRIPTION_CHARS = 100


def _clip(text: str, limit: int = DESCRIPTION_CHARS) -> str:
    text = " ".join(text.split()) or "…"
    return text if len(text) <= limit else text[: limit - 1] + "…"


@app_commands.describe(request="what you need, e.g. deploy api 1.4.2 to staging, or /status api production")
async def _ops(interaction: discord.Interaction[Any], request: str) -> None:
    await interaction.response.defer(thinking=True)
    await sink_of(interaction).request(interaction, request)


def ops_command() -> app_commands.Command[Any, ..., None]:
    return app_commands.Command(
        name=OPS, description="Ask the ops bot: a request in words, or a /tool command", callback=_ops
    )


def command_text(tool: str, values: Mapping[str, Any]) -> str:
    """The typed command the core parses: `/deploy service=api version=1.4.2 environment=production`."""
    words = [shlex.quote(f"{name}={_word(value)}") for name, value in values.items() if value is not None]
    return " ".join([f"/{tool}", *words])


def _word(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _annotation(schema: Mapping[str, Any]) -> Any:
    """The discord.py annotation for one JSON-schema property (choices, ranges, plain types)."""
    enum = schema.get("enum") or []
    kind = schema.get("type")
    if 0 < len(enum) <= MAX_CHOICES and ({type(v) for v in enum} == {str} or {type(v) for v in enum} == {int}):
        return Literal[tuple(enum)]  # choices; a longer list stays free text, checked by the core
    if kind in ("integer", "number"):
        base: type = int if kind == "integer" else float
        low, high = schema.get("minimum"), schema.get("maximum")
        return app_commands.Range[base, low, high] if low is not None or high is not None else base
    if kind == "boolean":
        return bool
    low, high = schema.get("minLength"), schema.get("maxLength")
    if kind == "string" and (low is not None or high is not None):
        return app_commands.Range[str, low, high]
    return str  # strings, and arrays (comma-separated) and objects (JSON) as the core parses them


def _hint(schema: Mapping[str, Any]) -> str:
    described = str(schema.get("description", ""))
    if schema.get("type") == "array":
        return f"{described} (comma-separated)".strip()
    if schema.get("type") == "object":
        return f"{described} (JSON)".strip()
    return described


def _problem(spec: ToolSpec) -> str | None:
    """Why this tool cannot be a slash command, or None."""
    if not NAME.match(spec.name) or spec.name == OPS:
        return f"its name is not a valid slash command name (lowercase letters, digits, _ or -, not {OPS!r})"
    bad = [name for name in spec.param_names if not NAME.match(name) or not name.isidentifier()]
    if bad:
        return f"parameter names {bad} are not valid option names (lowercase letters, digits, _)"
    if len(spec.param_names) > MAX_OPTIONS:
        return f"it has more than {MAX_OPTIONS} parameters"
    return None


def tool_command(spec: ToolSpec) -> app_commands.Command[Any, ..., None]:
    """`/<tool>` with one typed option per parameter; required options first, as Discord wants."""
    properties: Mapping[str, Mapping[str, Any]] = spec.parameters.get("properties", {})
    required = set(spec.parameters.get("required", []))
    tool = spec.name

    async def callback(interaction: discord.Interaction[Any], **values: Any) -> None:
        await interaction.response.defer(thinking=True)
        await sink_of(interaction).request(interaction, command_text(tool, values))

    params = [inspect.Parameter("interaction", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=discord.Interaction)]
    for name in sorted(properties, key=lambda n: n not in required):  # stable: schema order within each group
        kind, annotation = inspect.Parameter.KEYWORD_ONLY, _annotation(properties[name])
        if name in required:
            params.append(inspect.Parameter(name, kind, annotation=annotation))
        else:
            params.append(inspect.Parameter(name, kind, annotation=annotation | None, default=None))
    # discord.py reads the options from the signature and their descriptions from this attribute.
    callback.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    callback.__discord_app_commands_param_description__ = {  # type: ignore[attr-defined]
        name: _clip(_hint(schema) or name) for name, schema in properties.items()
    }
    return app_commands.Command(name=tool, description=_clip(spec.description), callback=callback)


def tool_commands(tools: ToolRegistry) -> list[app_commands.Command[Any, ..., None]]:
    """A command per tool that runs something (the built-in reply / ask_human have no executor)."""
    out: list[app_commands.Command[Any, ..., None]] = [ops_command()]
    for name in tools.names():
        spec = tools.get(name)
        if spec.executor is None:
            continue
        if (problem := _problem(spec)) is not None:
            log.warning("tool %s has no slash command: %s; use /%s %s ... instead", name, problem, OPS, name)
            continue
        if len(out) >= MAX_COMMANDS:
            log.warning("more than %d tools; %s and later ones have no slash command", MAX_COMMANDS - 1, name)
            break
        out.append(tool_command(spec))
    return out
