"""Slack payloads as the core reads them: identities, message text, slash commands, clicks.

Pure functions over the raw payloads (kept as TypedDicts, with only the fields read here).
"""

from __future__ import annotations

import html
import re
from typing import Any, NotRequired, TypedDict, cast

from adapters.slack.blocks import clip
from adapters.slack.manifest import command_name, tool_commands
from adapters.slack.state import Place
from core import ToolRegistry, as_command

ACCEPTED_SUBTYPES = {None, "thread_broadcast", "file_share"}  # not edits, joins or other bots' posts
LINK = re.compile(r"<((?:https?|mailto):[^|>]+)(?:\|([^>]*))?>")


class MessageEvent(TypedDict):
    channel: str
    ts: str
    user: NotRequired[str]
    text: NotRequired[str]
    thread_ts: NotRequired[str]
    channel_type: NotRequired[str]
    subtype: NotRequired[str]
    bot_id: NotRequired[str]


class Command(TypedDict):
    command: str
    text: NotRequired[str]
    team_id: str
    channel_id: str
    user_id: str
    trigger_id: str


class Click(TypedDict):
    """The parts of a block_actions payload a decision needs."""

    team: str
    user: str
    place: Place  # the card's channel and thread (thread_ts empty when the card is not a reply)
    message_ts: str
    dedup: str


def identity(team: str, user: str) -> str:
    return f"slack:{team}:{user}"


def message_event(event: dict[str, Any]) -> MessageEvent | None:
    """A person's message, or None for edits, joins, bots and other noise."""
    if event.get("subtype") in ACCEPTED_SUBTYPES and event.get("user") and not event.get("bot_id"):
        return cast(MessageEvent, event)
    return None


def plain_text(text: str, bot_user: str | None) -> str:
    """Slack markup back to what the person typed: no `@bot`, links as URLs, entities unescaped."""
    if bot_user:
        text = re.sub(rf"<@{re.escape(bot_user)}(?:\|[^>]*)?>", "", text)
    text = LINK.sub(lambda match: match.group(1).removeprefix("mailto:"), text)
    return html.unescape(text).strip() or "help"


def command_text(command: Command, main_command: str, tools: ToolRegistry) -> str | None:
    """What the core reads for a slash command; None when the command is not this bot's.

    `/ops deploy api 1.4.2 production` and `/deploy api 1.4.2 production` both become
    `/deploy api 1.4.2 production`; a bare `/ops` is `help`; other `/ops` text (`help`, or words that
    start with a command's name but are not its arguments) is read by the core as typed.
    """
    text = command.get("text", "").strip()
    names = {spec.name for spec in tool_commands(tools)}
    if command["command"] == main_command:
        first = text.split(maxsplit=1)[0] if text else ""
        if first.replace("-", "_") in names and (typed := as_command(text, tools)) is not None:
            return typed
        return text or "help"
    if command["command"].removeprefix("/").replace("-", "_") in names:
        return f"{command['command']} {text}".strip()
    return None


def click(body: dict[str, Any], action: dict[str, Any]) -> Click:
    """Who clicked which card, and the key that makes a replayed click count once."""
    container = body.get("container", {})
    message = body.get("message", {})
    channel = container.get("channel_id") or body["channel"]["id"]
    message_ts = container.get("message_ts") or message.get("ts", "")
    thread_ts = message.get("thread_ts", "")
    user = body["user"]["id"]
    team = (body.get("team") or {}).get("id") or body["user"].get("team_id", "")
    return Click(
        team=team,
        user=user,
        place=Place(channel, "" if thread_ts == message_ts else thread_ts),  # a root with replies has its own ts
        message_ts=message_ts,
        dedup=f"slack:action:{message_ts}:{user}:{action['action_id']}:{action.get('action_ts', '')}",
    )


MAX_PROMPTS = 4  # Slack shows up to four suggested prompts


def suggested_prompts(tools: ToolRegistry, sender: str) -> list[dict[str, str]]:
    """An assistant thread's suggested prompts: help, and the commands `sender` may run as they are."""
    prompts = [{"title": "What can you do?", "message": "help"}]
    for spec in tool_commands(tools):
        if len(prompts) == MAX_PROMPTS:
            break
        if spec.parameters.get("required") or not tools.may_call(sender, spec):
            continue
        title = spec.description.split(". ")[0].rstrip(".")
        prompts.append({"title": clip(title, 75), "message": command_name(spec)})
    return prompts
