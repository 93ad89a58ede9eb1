"""What the Slack channel shows: text escaping and splitting, the approval card, the reject dialog.

Pure functions from core values to Slack payloads (Block Kit as plain dicts); no I/O.
Button values hold only the opaque approval id: everything else is read from Redis.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from core import ApprovalRequest, DecisionReceipt

Block = dict[str, Any]

MESSAGE_CHARS = 3900  # Slack truncates long messages; it asks for at most ~4000 characters each
MAX_MESSAGES = 4  # longer output is uploaded as a file
FIELD_CHARS = 1900  # a section field holds at most 2000 characters
ARGS_CHARS = 2800  # a section's text holds at most 3000
APPROVE = "approval.approve"
REJECT = "approval.reject"
REJECT_VIEW = "approval.reject_reason"
REASON = "reason"
LEVEL_ICONS: dict[str, str] = {"info": ":information_source:", "warning": ":warning:", "error": ":x:"}


def escape(text: str) -> str:
    """Slack reads `&`, `<` and `>` as markup; text from the core is shown as written."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def slack_user(identity: str) -> str | None:
    """`slack:T1:U1` -> `U1`; None for anyone who is not a Slack user."""
    parts = identity.split(":")
    return parts[2] if len(parts) == 3 and parts[0] == "slack" else None


def who(identity: str) -> str:
    """A mention for Slack users, the identity itself for everyone else."""
    user = slack_user(identity)
    return f"<@{user}>" if user else f"`{escape(identity)}`"


def clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def split_text(text: str, limit: int = MESSAGE_CHARS) -> list[str]:
    """Escaped text in pieces of at most `limit` characters, cut at line ends where possible."""
    pieces: list[str] = []
    rest = escape(text)
    while len(rest) > limit:
        cut = rest.rfind("\n", 0, limit + 1)
        if cut <= 0:
            cut = limit
            entity = rest.rfind("&", cut - 4, cut)  # never cut an escape such as &lt; in two
            if entity > 0 and ";" not in rest[entity:cut]:
                cut = entity
        pieces.append(rest[:cut])
        rest = rest[cut:].removeprefix("\n")
    return [*pieces, rest] if rest or not pieces else pieces


def notice_text(level: str, text: str) -> str:
    return f"{LEVEL_ICONS[level]} {escape(text)}"


def _when(at: datetime, fmt: str = "{date_short} {time}") -> str:
    """A date each reader sees in their own time zone, with a UTC fallback."""
    return f"<!date^{int(at.timestamp())}^{fmt}|{at:%Y-%m-%d %H:%M} UTC>"


def _card_body(request: ApprovalRequest) -> list[Block]:
    args = clip(json.dumps(request.args, indent=2, sort_keys=True), ARGS_CHARS)
    approvers = ", ".join(who(identity) for identity in request.approvers) or "nobody is configured"
    fields = [
        f"*Why*\n{escape(clip(request.reason or '(no reason given)', FIELD_CHARS))}",
        f"*Requested by*\n{who(request.requester)}",
        f"*Who may approve*\n{clip(approvers, FIELD_CHARS)}",
        f"*Expires*\n{_when(request.expires_at)}",
    ]
    return [
        {"type": "section", "text": {"type": "mrkdwn", "text": f"*Tool* `{escape(request.tool)}`"}},
        {"type": "section", "text": {"type": "mrkdwn", "text": f"*Arguments*\n```{escape(args)}```"}},
        {"type": "section", "fields": [{"type": "mrkdwn", "text": field} for field in fields]},
        {"type": "context", "elements": [{"type": "mrkdwn", "text": f"approval `{request.approval_id}`"}]},
    ]


def _header(text: str) -> Block:
    return {"type": "header", "text": {"type": "plain_text", "text": clip(text, 150)}}


def _button(label: str, action_id: str, approval_id: str, style: str) -> Block:
    text = {"type": "plain_text", "text": label}
    return {"type": "button", "text": text, "action_id": action_id, "value": approval_id, "style": style}


def approval_card(request: ApprovalRequest) -> tuple[str, list[Block]]:
    """The card asking for a decision: fallback text and blocks with Approve / Reject buttons."""
    text = (
        f"Approval needed: {request.tool} {json.dumps(request.args, sort_keys=True)} (approval {request.approval_id})"
    )
    buttons = [
        _button("Approve", APPROVE, request.approval_id, "primary"),
        _button("Reject", REJECT, request.approval_id, "danger"),
    ]
    actions: Block = {"type": "actions", "block_id": "approval", "elements": buttons}
    return escape(text), [_header(f"Approval needed: {request.tool}"), *_card_body(request), actions]


def decision_line(receipt: DecisionReceipt) -> str:
    """`Approved by <@U1> at 14:02 UTC` (and the reason of a rejection)."""
    if receipt.decision == "expire":
        return f":hourglass: Expired without a decision at {receipt.at:%H:%M} UTC"
    verb = "Approved" if receipt.decision == "approve" else "Rejected"
    icon = ":white_check_mark:" if receipt.decision == "approve" else ":no_entry:"
    line = f"{icon} {verb} by {who(receipt.by)} at {receipt.at:%H:%M} UTC"
    return line + (f": {escape(receipt.comment)}" if receipt.comment else "")


def decided_card(request: ApprovalRequest, receipt: DecisionReceipt) -> tuple[str, list[Block]]:
    """The same card after the decision: who decided and when, buttons gone."""
    verb = {"approve": "Approved", "reject": "Rejected"}.get(receipt.decision, "Expired")
    line = decision_line(receipt)
    outcome: Block = {"type": "section", "text": {"type": "mrkdwn", "text": clip(line, ARGS_CHARS)}}
    return line, [_header(f"{verb}: {request.tool}"), *_card_body(request), outcome]


def reject_dialog(approval_id: str, where: dict[str, str]) -> dict[str, Any]:
    """The modal asking for the reason of a rejection; `where` says where the button was clicked."""
    reason_input = {"type": "plain_text_input", "action_id": REASON, "multiline": True, "max_length": 2000}
    return {
        "type": "modal",
        "callback_id": REJECT_VIEW,
        "private_metadata": json.dumps({"approval_id": approval_id, **where}),
        "title": {"type": "plain_text", "text": "Reject"},
        "submit": {"type": "plain_text", "text": "Reject"},
        "close": {"type": "plain_text", "text": "Cancel"},
        "blocks": [
            {
                "type": "input",
                "block_id": REASON,
                "label": {"type": "plain_text", "text": f"Why reject approval {approval_id}?"},
                "element": reason_input,
            }
        ],
    }
