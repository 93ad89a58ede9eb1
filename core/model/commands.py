"""The deterministic path: `/tool args` commands, `help`, and `approve|reject <id>` answers.

Slash commands never need the LLM: `CommandModel` turns them into the same tool calls the
model would make, then reports the outcome as the reply. `as_command` is the one rule for what
counts as a command on every channel: `help` (also `/help`, `/ops`, `/ops help`), a `/tool args`
line, and a known command written without its slash when the rest is valid arguments for it.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from typing import Any

from core.domain.durations import seconds
from core.domain.errors import InvalidToolCall
from core.domain.events import DEFAULT_SNOOZE
from core.domain.people import who
from core.model.llm import Choice, ModelRequest
from core.model.prompts import PromptLibrary
from core.tools.edits import coerce
from core.tools.registry import BUILTIN_TOOLS, REPLY, ToolRegistry, ToolSpec

DECISION = re.compile(
    r"^\s*(approve|approved|reject|rejected)\s+([a-z0-9]{4,40})\b[\s:,-]*(.*)$", re.IGNORECASE | re.DOTALL
)
HELP_WORDS = {"help", "/help", "?", "commands", "/ops", "/ops help", "ops help"}
HELP = "help"


@dataclass(frozen=True)
class DecisionText:
    approval_id: str
    approve: bool
    comment: str


def parse_decision(text: str) -> DecisionText | None:
    """`approve <id> [comment]` or `reject <id> <reason>`; anything else is not a decision."""
    match = DECISION.match(text)
    if match is None:
        return None
    verb, approval_id, comment = match.groups()
    return DecisionText(approval_id.lower(), verb.lower().startswith("approve"), comment.strip())


# Only `snooze`: "not now <word>" is too common a phrase to take from the model as a command.
SNOOZE = re.compile(r"^\s*snooze\s+([a-z0-9]{4,40})\b\s*(?:for\s+)?(\S*)\s*$", re.IGNORECASE)


@dataclass(frozen=True)
class SnoozeText:
    approval_id: str
    duration: str  # as written ("30m", "1h", "" for the default); `core.domain.durations.seconds` reads it


def parse_snooze(text: str) -> SnoozeText | None:
    """`snooze <id> [30m]` ("not now": ask again later, `core.runtime.snoozes`); anything else is not one."""
    match = SNOOZE.match(text)
    if match is None:
        return None
    approval_id, duration = match.groups()
    return SnoozeText(approval_id.lower(), duration)


def snooze_seconds(duration: str) -> int:
    """`"30m"` -> 1800, `""` -> the default (30 minutes); ValueError, saying how to write one, for anything else."""
    if not duration.strip():
        return DEFAULT_SNOOZE
    length = int(seconds(duration))
    if length <= 0:
        raise ValueError(f"a snooze must last a while, not {duration!r}; write e.g. '30m' or '1h'")
    return length


def parse_command(text: str, tools: ToolRegistry) -> tuple[str, dict[str, Any]]:
    """`/deploy api 1.4.2 production` or `/deploy service=api version=1.4.2 environment=production`."""
    try:
        words = shlex.split(text.strip().removeprefix("/"))
    except ValueError as exc:
        raise InvalidToolCall(f"cannot read the command: {exc}") from None
    if not words:
        raise InvalidToolCall("empty command; type help for the list")
    name = words[0].replace("-", "_")
    if name not in tools or name in BUILTIN_TOOLS or name.startswith("hand_to_"):
        raise InvalidToolCall(f"unknown command /{words[0]}; the commands are listed below")
    spec = tools.get(name)
    order = spec.param_names
    args: dict[str, Any] = {}
    for position, word in enumerate(words[1:]):
        key, sep, value = word.partition("=")
        if sep and key in order:
            args[key] = coerce(spec, key, value)
        elif sep and re.fullmatch(r"[a-zA-Z_]\w*", key):
            raise InvalidToolCall(f"{name}: unknown argument {key!r}; arguments are {', '.join(order) or 'none'}")
        elif position < len(order) and order[position] not in args:
            args[order[position]] = coerce(spec, order[position], word)
        else:
            raise InvalidToolCall(f"{name}: too many arguments; usage: {usage(spec)}")
    return name, args


def is_help(text: str) -> bool:
    return " ".join(text.lower().split()) in HELP_WORDS


def as_command(text: str, tools: ToolRegistry) -> str | None:
    """The command `text` is, as `parse_command` reads it, or None for free text.

    `help`, `/help`, `/ops` and `/ops help` are `"help"`; a slash command stays as written; a known
    command without its slash (`status api staging`) is `/status api staging` only when the rest parses
    and validates as its arguments, so text that merely starts with a command's name is free text.
    """
    stripped = text.strip()
    if is_help(stripped):
        return HELP
    if stripped.startswith("/"):
        return stripped
    try:
        name, args = parse_command(stripped, tools)
        tools.validate(name, args)
    except InvalidToolCall:
        return None
    return f"/{stripped}"


def names_command(text: str, tools: ToolRegistry) -> bool:
    """The first word is a command of `tools` (whether or not the rest is valid arguments for it)."""
    first = text.split(maxsplit=1)[0].removeprefix("/").replace("-", "_") if text.strip() else ""
    return first in tools and first not in BUILTIN_TOOLS and not first.startswith("hand_to_")


def usage(spec: ToolSpec) -> str:
    required = set(spec.parameters.get("required", []))
    parts = [f"<{p}>" if p in required else f"[{p}]" for p in spec.param_names]
    return " ".join([f"/{spec.name}", *parts])


def usable_tools(tools: ToolRegistry, caller: str) -> list[ToolSpec]:
    specs = (tools.get(name) for name in tools.names() if name not in BUILTIN_TOOLS)
    return [spec for spec in specs if tools.may_call(caller, spec)]


class CommandModel:
    """Decides deterministically: run the command the user typed, then reply with its outcome.

    A command runs with the tools of the agent that holds the thread (the router sends it to the
    tool's agent first); help lists `catalog`, every command of every agent and workflow, when given.
    """

    def __init__(self, prompts: PromptLibrary, catalog: ToolRegistry | None = None) -> None:
        self._prompts = prompts
        self._catalog = catalog

    def help_text(self, tools: ToolRegistry, caller: str, prompt: str = "help") -> str:
        specs = usable_tools(tools, caller)
        lines = [f"  {usage(s)}{' [approval]' if s.gated else ''} - {s.description}" for s in specs]
        example = usage(max(specs, key=lambda s: len(s.param_names))) if specs else "/help"
        variables = {"commands": "\n".join(lines) or "  (none available to you)", "example": example}
        if prompt == "help":
            variables["caller"] = who(caller)  # each channel renders the person its own way
        return self._prompts.render(prompt, **variables).text

    async def choose(self, request: ModelRequest) -> Choice:
        state, tools = request.state, request.tools
        if state.turn_steps > 0:  # the command ran (or failed, or was rejected): report it
            outcome = state.last_outcome or "done"
            decided = state.last_error_kind in ("rejected", "expired")  # a person's answer, or nobody's: no failure
            told = outcome if state.last_outcome_ok or decided else f"failed: {outcome}"
            return Choice(tool=REPLY, args={"message": told})
        text, listed = state.last_user_text.strip(), self._catalog or tools
        command = as_command(text, tools)
        if command is None and names_command(text, tools):  # `status api` without a model: say what is wrong
            command = f"/{text}"
        if command == HELP:
            return Choice(tool=REPLY, args={"message": self.help_text(listed, request.caller)})
        if command is None:
            return Choice(tool=REPLY, args={"message": self.help_text(listed, request.caller, "no_model")})
        try:
            name, args = parse_command(command, tools)
        except InvalidToolCall as exc:
            return Choice(tool=REPLY, args={"message": f"{exc}\n\n{self.help_text(listed, request.caller)}"})
        return Choice(tool=name, args=args, reason=f"command: {command}")
