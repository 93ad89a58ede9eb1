"""Edit before approve on Discord: the modal an approval card's Edit button opens, and what its submission
changes.

The modal has a text input per parameter of the tool's schema, prefilled with the call's current value as
text, and a comment. Discord allows at most five inputs in a modal: the first five parameters are shown
(the rest cannot be edited here; `approve <id> name=value` can), and the comment only when there is room.
A submission changes only the fields whose text differs from what the modal showed: a changed value is read
as the schema's type (`core.tools.edits.coerce`), an emptied one removes the argument. Each change is checked
against the schema on its own, so a refusal names its field.

The same reading as Slack's modal (`adapters.slack.edits`); the channels never import one another.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import discord

from adapters.discord.text import clip
from core import ApprovalRecord, ToolRegistry, as_text, form_changes, form_fields

EDIT_MODAL_PREFIX = "appre:"  # the modal's custom_id: `appre:<approval id>[:<digest>]` (`bot.EDIT_MODAL`)
FIELD = "arg:"  # a parameter's input: `arg:<name>`
COMMENT = "comment"
MAX_INPUTS = 5  # Discord's limit on a modal's components
TITLE_CHARS = 45  # a modal's title and an input's label
PLACEHOLDER_CHARS = 100
TEXT_CHARS = 4000  # a text input's value
ERROR_CHARS = 300


def properties(tools: ToolRegistry, tool: str) -> tuple[dict[str, dict[str, Any]], set[str]]:
    """The tool's parameters (name -> schema) and the required ones; none for a tool no longer listed."""
    return form_fields(tools.get(tool)) if tool in tools else ({}, set())


class EditModal(discord.ui.Modal):
    """Answered by `OpsBot.on_interaction` from the raw submission, so any process can take it."""

    def __init__(self, record: ApprovalRecord, tools: ToolRegistry, digest: str = "", timeout: float = 600) -> None:
        custom_id = f"{EDIT_MODAL_PREFIX}{record.approval_id}" + (f":{digest}" if digest else "")
        super().__init__(
            title=clip(f"Edit {record.tool}, then approve", TITLE_CHARS), custom_id=custom_id, timeout=timeout
        )
        props, required = properties(tools, record.tool)
        for name, schema in list(props.items())[:MAX_INPUTS]:  # Discord's limit: the first five parameters
            self.add_item(_input(name, schema, record.args.get(name), name in required))
        if len(self.children) < MAX_INPUTS:
            comment: discord.ui.TextInput[EditModal] = discord.ui.TextInput(
                label="Comment", style=discord.TextStyle.paragraph, custom_id=COMMENT, required=False, max_length=1000
            )
            self.add_item(comment)


def _input(name: str, schema: Mapping[str, Any], value: Any, required: bool) -> discord.ui.TextInput[EditModal]:
    text = as_text(value)
    hint = str(schema.get("description", ""))
    if enum := schema.get("enum"):
        hint = "one of: " + ", ".join(as_text(choice) for choice in enum)
    long = schema.get("type") == "object" or len(text) > 100
    return discord.ui.TextInput(
        label=clip(name, TITLE_CHARS),
        custom_id=f"{FIELD}{name}",
        style=discord.TextStyle.paragraph if long else discord.TextStyle.short,
        default=text[:TEXT_CHARS] or None,
        placeholder=clip(hint, PLACEHOLDER_CHARS) or None,
        required=required,
        max_length=TEXT_CHARS,
    )


def submitted(values: Mapping[str, str]) -> tuple[dict[str, str], str]:
    """A submission's texts by parameter name, and the comment."""
    texts = {key.removeprefix(FIELD): value for key, value in values.items() if key.startswith(FIELD)}
    return texts, values.get(COMMENT, "").strip()


def changes(
    tools: ToolRegistry, record: ApprovalRecord, texts: Mapping[str, str]
) -> tuple[dict[str, Any], dict[str, str]]:
    """What the submitted `texts` change in `record`'s call, and the refusals by parameter name (clipped
    for the answer); none for a tool no longer listed."""
    if record.tool not in tools:
        return {}, {}

    def validate(args: dict[str, Any]) -> None:
        tools.validate(record.tool, args)

    found, errors = form_changes(tools.get(record.tool), record.args, texts, validate)
    return found, {name: clip(text, ERROR_CHARS) for name, text in errors.items()}


def refusal(record: ApprovalRecord, errors: Mapping[str, str]) -> str:
    """The ephemeral answer to an edit that does not fit: each reason, and that nothing changed."""
    reasons = "\n".join(f"- {reason}" for reason in errors.values())
    return (
        f"⚠️ Your edit does not fit {record.tool}'s parameters, so nothing was sent:\n{reasons}\n"
        f"Approval {record.approval_id} still waits, for the arguments on its card; click Edit to try again."
    )
