"""Edit before approve on Slack: the modal an approval card's Edit button opens, and what its submission
changes.

Pure functions from core values to Block Kit (plain dicts) and back; no I/O. The modal has one input per
parameter of the tool's schema, prefilled with the call's current value as text (a select for an enum),
and a comment. A submission changes only the fields whose text differs from what the modal showed: a
changed value is read as the schema's type (`core.tools.edits.coerce`), an emptied one removes the argument.
Each change is checked against the schema on its own, so a refusal names its field in the modal
(`response_action: errors`) and nothing is sent to the core.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from adapters.slack.blocks import EDIT_VIEW, clip
from core import ApprovalRecord, ToolRegistry, as_text, form_changes, form_fields

Block = dict[str, Any]

FIELD = "arg:"  # block id prefix of a parameter's input; the rest is its name
VALUE = "value"  # the action id of every parameter's input
COMMENT = "comment"
MAX_FIELDS = 95  # a modal holds 100 blocks: the parameters past this are not shown, so not edited
TEXT_CHARS = 3000  # a plain_text_input's initial_value and max_length
LABEL_CHARS = 2000
OPTION_CHARS = 75  # a select option's text; its value may hold 150
MAX_OPTIONS = 100
ERROR_CHARS = 300


def properties(tools: ToolRegistry, tool: str) -> tuple[dict[str, dict[str, Any]], set[str]]:
    """The tool's parameters (name -> schema) and the required ones; none for a tool no longer listed."""
    return form_fields(tools.get(tool)) if tool in tools else ({}, set())


def edit_dialog(record: ApprovalRecord, tools: ToolRegistry, where: Mapping[str, str]) -> dict[str, Any]:
    """The modal for editing `record`'s call, then approving it; `where` says where the Edit was clicked
    (with the digest the card showed), kept in the private metadata with the approval and thread ids."""
    props, required = properties(tools, record.tool)
    shown = list(props.items())[:MAX_FIELDS]
    fields = [_field(name, schema, record.args.get(name), name in required) for name, schema in shown]
    comment = {"type": "plain_text_input", "action_id": COMMENT, "multiline": True, "max_length": 2000}
    meta = {"approval_id": record.approval_id, "thread_id": record.thread_id, **where}
    return {
        "type": "modal",
        "callback_id": EDIT_VIEW,
        "private_metadata": json.dumps(meta),
        "title": {"type": "plain_text", "text": "Edit and approve"},
        "submit": {"type": "plain_text", "text": "Approve"},
        "close": {"type": "plain_text", "text": "Cancel"},
        "blocks": [
            {
                "type": "section",
                "text": {
                    "type": "mrkdwn",
                    "text": f"Change what `{record.tool}` runs with, then approve it (approval `{record.approval_id}`). "
                    "An emptied optional field removes that argument.",
                },
            },
            *fields,
            {
                "type": "input",
                "block_id": COMMENT,
                "optional": True,
                "label": {"type": "plain_text", "text": "Comment"},
                "element": comment,
            },
        ],
    }


def _field(name: str, schema: Mapping[str, Any], value: Any, required: bool) -> Block:
    text = as_text(value)
    enum = schema.get("enum")
    if enum and len(enum) <= MAX_OPTIONS and all(len(as_text(choice)) <= OPTION_CHARS for choice in enum):
        options = [_option(as_text(choice)) for choice in enum]
        element: Block = {"type": "static_select", "action_id": VALUE, "options": options}
        if text in [as_text(choice) for choice in enum]:
            element["initial_option"] = _option(text)
    else:
        element = {"type": "plain_text_input", "action_id": VALUE, "max_length": TEXT_CHARS}
        element["multiline"] = schema.get("type") == "object" or len(text) > 150
        if text:
            element["initial_value"] = text[:TEXT_CHARS]
    block: Block = {
        "type": "input",
        "block_id": f"{FIELD}{name}",
        "optional": not required,
        "label": {"type": "plain_text", "text": name[:LABEL_CHARS]},
        "element": element,
    }
    if description := schema.get("description"):
        block["hint"] = {"type": "plain_text", "text": str(description)[:LABEL_CHARS]}
    return block


def _option(text: str) -> Block:
    return {"text": {"type": "plain_text", "text": text}, "value": text}


def submitted(view: Mapping[str, Any]) -> tuple[dict[str, str], str]:
    """A submission's texts by parameter name (an empty field as ""), and the comment."""
    values: dict[str, str] = {}
    comment = ""
    for block_id, actions in view["state"]["values"].items():
        for state in actions.values():
            text = state.get("value") or (state.get("selected_option") or {}).get("value") or ""
            if block_id == COMMENT:
                comment = str(text).strip()
            elif block_id.startswith(FIELD):
                values[block_id.removeprefix(FIELD)] = str(text)
    return values, comment


def changes(
    tools: ToolRegistry, record: ApprovalRecord, texts: Mapping[str, str]
) -> tuple[dict[str, Any], dict[str, str]]:
    """What the submitted `texts` change in `record`'s call, and the refusals by parameter name (clipped
    for the modal); none for a tool no longer listed."""
    if record.tool not in tools:
        return {}, {}

    def validate(args: dict[str, Any]) -> None:
        tools.validate(record.tool, args)

    found, errors = form_changes(tools.get(record.tool), record.args, texts, validate)
    return found, {name: clip(text, ERROR_CHARS) for name, text in errors.items()}
