"""What the Discord channel writes: messages split under 2000 characters, approval cards, receipts."""

from __future__ import annotations

import json

from core import ApprovalRequest, DecisionReceipt, Notice

MESSAGE_LIMIT = 2000
FENCE_ROOM = 32  # room to close a code block at the end of a piece and reopen it in the next
CARD_LIMIT = 1700  # leaves room for the decision line the receipt adds
REASON_CHARS = 300
LEVEL_MARK = {"info": "", "warning": "⚠️ ", "error": "❌ "}


def clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def who(identity: str) -> str:
    """A Discord identity as a mention (shown as the name, pinging nobody), others as code."""
    kind, _, user = identity.partition(":")
    return f"<@{user}>" if kind == "discord" and user.isdigit() else f"`{identity}`"


def discord_user(identity: str) -> int | None:
    kind, _, user = identity.partition(":")
    return int(user) if kind == "discord" and user.isdigit() else None


def _short_lines(text: str, width: int) -> list[str]:
    out: list[str] = []
    for line in text.split("\n"):
        out += [line[start : start + width] for start in range(0, len(line), width)] or [""]
    return out


def split_message(text: str, limit: int = MESSAGE_LIMIT) -> list[str]:
    """Pieces of at most `limit` characters, cut at line ends where possible.

    A code block cut in two is closed at the end of one piece and reopened in the next, so
    long tool output stays readable.
    """
    if not text.strip():
        return ["(empty)"]
    if len(text) <= limit:
        return [text]
    budget = limit - FENCE_ROOM
    pieces: list[str] = []
    lines: list[str] = []
    size = 0
    fence = ""  # the opening line of the code block we are in, if any
    for line in _short_lines(text, budget):
        if lines and size + len(line) + 1 > budget:
            pieces.append("\n".join(lines) + ("\n```" if fence else ""))
            lines = [fence] if fence else []
            size = len(fence) + 1 if fence else 0
        lines.append(line)
        size += len(line) + 1
        if line.lstrip().startswith("```"):
            fence = "" if fence else clip(line.strip(), FENCE_ROOM - 8)
    pieces.append("\n".join(lines))
    return [piece for piece in pieces if piece.strip()]


def card_text(request: ApprovalRequest) -> str:
    """The approval card: tool, exact arguments, reason, requester, approvers, expiry."""
    expires = int(request.expires_at.timestamp())
    head = f"**Approval needed:** `{request.tool}` (approval `{request.approval_id}`)"
    tail = "\n".join(
        [
            f"**Why:** {clip(request.reason or '(no reason given)', REASON_CHARS)}",
            f"**Requested by:** {who(request.requester)}",
            f"**Who may approve:** {', '.join(who(a) for a in request.approvers) or '(nobody)'}",
            f"**Expires:** <t:{expires}:R> ({request.expires_at:%Y-%m-%d %H:%M} UTC)",
        ]
    )
    args = json.dumps(request.args, indent=2, sort_keys=True, ensure_ascii=False).replace("```", "`\u200b``")
    room = CARD_LIMIT - len(head) - len(tail) - 20
    if len(args) > room:
        note = "\n(arguments clipped here; `bot approvals` shows them whole)"
        args = clip(args, room - len(note)) + note
    return f"{head}\n```json\n{args}\n```\n{tail}"


def receipt_line(receipt: DecisionReceipt) -> str:
    if receipt.decision == "expire":
        return f"⌛ **Expired** without a decision <t:{int(receipt.at.timestamp())}:f>"
    verb = "✅ **Approved**" if receipt.decision == "approve" else "❌ **Rejected**"
    note = f": {clip(receipt.comment, REASON_CHARS)}" if receipt.comment else ""
    return f"{verb} by {who(receipt.by)} <t:{int(receipt.at.timestamp())}:f>{note}"


def notice_text(notice: Notice) -> str:
    return LEVEL_MARK.get(notice.level, "") + notice.text
