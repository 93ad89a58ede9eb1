"""What the Slack channel shows: text with people and times in Slack's forms, splitting, the approval
card and its decided record, questions with choices, the reject dialog.

Pure functions from core values to Slack payloads (Block Kit as plain dicts); no I/O.
Button values hold only the opaque approval id (or a choice's text): everything else is read from Redis.
Core writes people and times as markers (`core.people`); every text shown here goes through `mrkdwn`,
which escapes what the core wrote and renders the markers as mentions and `<!date>` times.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from core import ApprovalRequest, DecisionReceipt, Question, people, words

Block = dict[str, Any]

MESSAGE_CHARS = 3900  # Slack truncates long messages; it asks for at most ~4000 characters each
MAX_MESSAGES = 4  # longer output is uploaded as a file
FIELD_CHARS = 1900  # a section field holds at most 2000 characters
ARGS_CHARS = 2800  # a section's text holds at most 3000
LABEL_CHARS = 75  # a button's or a select option's text
BUTTON_VALUE_CHARS = 2000
OPTION_VALUE_CHARS = 150
MAX_BUTTONS = 5  # more choices than this are a select menu; an actions block holds at most 5 elements too
APPROVE = "approval.approve"
REJECT = "approval.reject"
SNOOZE = "approval.snooze"  # "Not now (30 min)": asked again later, not decided (`core.runtime.snoozes`)
REJECT_VIEW = "approval.reject_reason"
EDIT = "approval.edit"  # edit the call's arguments in a modal, then approve them (`adapters.slack.edits`)
# Approve and give the requester a standing grant, the longest the policy allows (`ApprovalRequest.grant_max`).
GRANT = "approval.approve_grant"
EDIT_VIEW = "approval.edit_args"
CHOICE = "question.choice"  # action ids `question.choice.<n>` (buttons) and `question.choice.select`
CHOICE_BLOCK = "question:"  # block id prefix; the rest is the ask_human call id
REASON = "reason"
LEVEL_ICONS: dict[str, str] = {"info": ":information_source:", "warning": ":warning:", "error": ":x:"}


def escape(text: str) -> str:
    """Slack reads `&`, `<` and `>` as markup; text from the core is shown as written."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def slack_user(identity: str) -> str | None:
    """`slack:T1:U1` -> `U1`; None for anyone who is not a Slack user."""
    parts = identity.split(":")
    return parts[2] if len(parts) == 3 and parts[0] == "slack" else None


def person(identity: str, team: str = "") -> str:
    """A mention for a Slack user of this workspace (`team`; any when unknown), the readable name of anyone else."""
    user = slack_user(identity)
    if user and (not team or identity.split(":")[1] == team):
        return f"<@{user}>"
    return escape(people.display(identity))


def when(at: datetime) -> str:
    """A time each reader sees in their own time zone ("Today at 3:49 PM"), with a UTC fallback."""
    at = at.astimezone(UTC) if at.tzinfo else at.replace(tzinfo=UTC)
    return f"<!date^{int(at.timestamp())}^{{date_short_pretty}} at {{time}}|{people.plain_time(at)}>"


def mrkdwn(text: str, team: str = "") -> str:
    """Core text for Slack: escaped as written, its people and times markers in Slack's own forms."""
    native: list[str] = []

    def hold(value: str) -> str:  # a placeholder escaping cannot touch, put back after
        native.append(value)
        return f"\x00{len(native) - 1}\x00"

    held = people.render(text, lambda identity: hold(person(identity, team)), lambda at: hold(when(at)))
    shown = escape(held)
    for n, value in enumerate(native):
        shown = shown.replace(f"\x00{n}\x00", value)
    return shown


def plain(text: str) -> str:
    """Core text where Slack shows no markup (plain_text fields): markers as readable words."""
    return people.plain(text)


def _safe_cut(text: str, cut: int) -> int:
    """`cut` moved back so that it splits neither an escape (`&lt;`) nor a mention or date (`<...>`)."""
    opened = text.rfind("<", 0, cut)
    if opened > 0 and text.rfind(">", opened, cut) < 0:
        return opened
    entity = text.rfind("&", max(cut - 5, 0), cut)
    if entity > 0 and ";" not in text[entity:cut]:
        return entity
    return cut


def clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: _safe_cut(text, limit - 1)] + "…"


def split_mrkdwn(text: str, limit: int = MESSAGE_CHARS) -> list[str]:
    """Slack text in pieces of at most `limit` characters, cut at line ends where possible."""
    pieces: list[str] = []
    rest = text
    while len(rest) > limit:
        cut = rest.rfind("\n", 0, limit + 1)
        if cut <= 0:
            cut = _safe_cut(rest, limit) or limit
        pieces.append(rest[:cut])
        rest = rest[cut:].removeprefix("\n")
    return [*pieces, rest] if rest or not pieces else pieces


def split_text(text: str, limit: int = MESSAGE_CHARS, team: str = "") -> list[str]:
    """Core text, rendered for Slack, in pieces of at most `limit` characters."""
    return split_mrkdwn(mrkdwn(text, team), limit)


def notice_text(level: str, text: str, team: str = "") -> str:
    return f"{LEVEL_ICONS[level]} {mrkdwn(text, team)}"


def arguments(args: dict[str, Any]) -> str:
    """`service=api, version=1.4.2`: a call's arguments as words, for a sentence."""
    return ", ".join(f"{name}={value if isinstance(value, str) else json.dumps(value)}" for name, value in args.items())


def approvers_text(request: ApprovalRequest, team: str = "") -> str:
    """The approvers Slack can show as people; the others counted, never named (`cli:operator`)."""
    shown = people.reachable(request.approvers, "slack")
    others = len(request.approvers) - len(shown)
    names = ", ".join(person(identity, team) for identity in shown)
    if not request.approvers:
        return "nobody is configured"
    if not others:
        return names
    elsewhere = "1 approver on another channel" if others == 1 else f"{others} approvers on other channels"
    return f"{names} and {elsewhere}" if names else elsewhere.capitalize()


def _section(text: str) -> Block:
    return {"type": "section", "text": {"type": "mrkdwn", "text": clip(text, ARGS_CHARS)}}


def _context(*parts: str) -> Block:
    shown = " · ".join(part for part in parts if part)
    return {"type": "context", "elements": [{"type": "mrkdwn", "text": clip(shown, ARGS_CHARS)}]}


def _header(text: str) -> Block:
    return {"type": "header", "text": {"type": "plain_text", "text": clip(text, 150)}}


def _button(label: str, action_id: str, value: str, style: str = "") -> Block:
    button: Block = {"type": "button", "text": {"type": "plain_text", "text": clip(label, LABEL_CHARS)}}
    button |= {"action_id": action_id, "value": value}
    return button | ({"style": style} if style else {})


def _actions(buttons: list[Block]) -> list[Block]:
    """The card's buttons in actions blocks of at most MAX_BUTTONS each; the first keeps the block id
    `approval` that older cards' clicks carry."""
    rows = [buttons[n : n + MAX_BUTTONS] for n in range(0, len(buttons), MAX_BUTTONS)]
    return [
        {"type": "actions", "block_id": "approval" if n == 0 else f"approval.{n}", "elements": row}
        for n, row in enumerate(rows)
    ]


def _thread_link(link: str) -> str:
    return f"<{link}|the request thread>" if link else ""


def approval_card(request: ApprovalRequest, team: str = "", link: str = "") -> tuple[str, list[Block]]:
    """The card asking for a decision: a sentence as its fallback text, and blocks with Approve / Reject.

    `link` goes to the request thread (shown when the card is not in it)."""
    requester = person(request.requester, team)
    reason = clip(mrkdwn(request.reason, team), FIELD_CHARS) if request.reason else "(no reason given)"
    args = clip(json.dumps(request.args, indent=2, sort_keys=True), ARGS_CHARS)
    fields = [
        f"*Requested by*\n{requester}",
        f"*Who may approve*\n{clip(approvers_text(request, team), FIELD_CHARS)}",
        f"*Expires*\n{when(request.expires_at)}",
    ]
    if request.needed > 1:
        fields.append(f"*Approvals*\n{quorum_text(request, team)}")
    if request.wait_until is not None:
        fields.append(f"*Can be approved from*\n{when(request.wait_until)}")
    if link:
        fields.append(f"*Asked in*\n{_thread_link(link)}")
    if request.snoozed_until is not None:
        fields.append(f"*Snoozed*\nby {person(request.snoozed_by, team)} until {when(request.snoozed_until)}")
    value = decision_value(request)
    buttons = [_button("Approve", APPROVE, value, "primary"), _button("Reject", REJECT, value, "danger")]
    buttons.append(_button("Not now (30 min)", SNOOZE, value))
    buttons.append(_button("Edit", EDIT, value))
    if request.grant_max > 0:  # 0: this request allows no grant, so nothing to offer
        buttons.append(_button(f"Approve + grant {words(request.grant_max)}", GRANT, value))
    block_list = [
        _header(f"Approval needed: {request.tool}"),
        _section(f"{requester} asks to run `{escape(request.tool)}`\n*Why:* {reason}"),
        _section(f"*Arguments*\n```{escape(args)}```"),
        *preview_blocks(request, link),
        {"type": "section", "fields": [{"type": "mrkdwn", "text": field} for field in fields]},
        _context(f"approval `{request.approval_id}`", f"digest `{request.short}`" if request.digest else ""),
        *_actions(buttons),
    ]
    call = f"{escape(request.tool)} ({escape(arguments(request.args))})" if request.args else escape(request.tool)
    text = f"{requester} asks to run {call} and needs an approval ({request.approval_id})."
    return text, block_list


def preview_blocks(request: ApprovalRequest, link: str = "") -> list[Block]:
    """The tool's preview (its plan before apply) as a code block, and what the card leaves out of it;
    a failed preview as one line saying so."""
    if request.preview_failed:
        return [_section(f":warning: *Preview failed:* {escape(clip(request.preview, FIELD_CHARS))}")]
    if not request.preview:
        return []
    blocks = [_section(f"*Preview*\n```{escape(clip(request.preview, ARGS_CHARS - 20))}```")]
    if request.preview_more:
        where = request.thread_url or link
        whole = f"<{where}|the whole preview>" if where else "the whole preview is in the request thread"
        blocks.append(_context(f"{request.preview_more} more characters: {whole}"))
    return blocks


def quorum_text(request: ApprovalRequest, team: str = "") -> str:
    """`1 of 2: <@U1>` and, with groups, which are still open."""
    names = ", ".join(person(identity, team) for identity in request.approved_by)
    text = f"{len(request.approved_by)} of {request.needed}" + (f": {names}" if names else "")
    if request.open_groups:
        text += f" (still needs {', '.join(request.open_groups)})"
    return text


def decision_value(request: ApprovalRequest) -> str:
    """A decision button's value: the approval id and the digest its card shows, so a button of an older
    version of the call is refused by the core."""
    return f"{request.approval_id} {request.short}".strip()


def decided_value(value: str) -> tuple[str, str]:
    """A decision button's value read back: (approval id, digest); cards from before digests hold the id only."""
    approval_id, _, digest = value.partition(" ")
    return approval_id, digest


def decision_line(receipt: DecisionReceipt, team: str = "") -> str:
    """`Approved by <@U1>, Today at 2:02 PM` (and the reason of a rejection): a sentence, never `failed:`."""
    if receipt.decision == "expire":
        return f":hourglass: Expired without a decision, {when(receipt.at)}"
    verb, icon = ("Approved", ":white_check_mark:") if receipt.decision == "approve" else ("Rejected", ":no_entry:")
    line = f"{icon} {verb} by {person(receipt.by, team)}, {when(receipt.at)}"
    return line + (f": {mrkdwn(receipt.comment, team)}" if receipt.comment else "")


def decided_card(
    request: ApprovalRequest, receipt: DecisionReceipt, team: str = "", link: str = ""
) -> tuple[str, list[Block]]:
    """The card after the decision, a compact record: outcome, who, when, comment, the call, a link; no buttons."""
    verb = {"approve": "Approved", "reject": "Rejected"}.get(receipt.decision, "Expired")
    line = decision_line(receipt, team)
    call = f"`{escape(request.tool)}` {escape(arguments(request.args))}".strip()
    parts = [call, f"requested by {person(request.requester, team)}"]
    parts += [_thread_link(link)] if link else []
    block_list = [
        _header(f"{verb}: {request.tool}"),
        _section(line),
        _context(*parts, f"approval `{request.approval_id}`"),
    ]
    return f"{line} ({escape(request.tool)}, approval {request.approval_id})", block_list


def receipt_line(receipt: DecisionReceipt, team: str = "") -> str:
    """The decision told in the request thread when the card is elsewhere."""
    tool = f"`{escape(receipt.tool)}` " if receipt.tool else ""
    return f"{decision_line(receipt, team)} ({tool}approval `{receipt.approval_id}`)"


def choice_value(option: str, n: int, limit: int) -> str:
    """What a choice sends back: its text, or its number when the text is too long for Slack's value
    (the core reads a number as that option)."""
    return option if len(option) <= limit else str(n + 1)


def question_message(question: Question, team: str = "", inline: bool = False) -> tuple[str, list[Block] | None]:
    """The question's text and, when it offers options, blocks with buttons (up to 5) or a select menu."""
    where = "here" if inline else "in this thread"
    asked = mrkdwn(question.question, team)
    if not question.options:
        return f":question: {asked}\n_Answer with a reply {where}._", None
    numbers = [str(n) for n in range(1, len(question.options) + 1)]
    listed = ", ".join(numbers[:-1]) + f" or {numbers[-1]}" if len(numbers) > 1 else numbers[0]
    text = f":question: {asked} (reply with {listed}, or write your own answer)"
    block_id = f"{CHOICE_BLOCK}{question.call_id}"
    if len(question.options) <= MAX_BUTTONS:
        elements = [
            _button(option, f"{CHOICE}.{n}", choice_value(option, n, BUTTON_VALUE_CHARS))
            for n, option in enumerate(question.options)
        ]
    else:
        options = [
            {
                "text": {"type": "plain_text", "text": clip(option, LABEL_CHARS)},
                "value": choice_value(option, n, OPTION_VALUE_CHARS),
            }
            for n, option in enumerate(question.options[:100])
        ]
        placeholder = {"type": "plain_text", "text": "Choose an answer"}
        elements = [{"type": "static_select", "action_id": f"{CHOICE}.select", "placeholder": placeholder}]
        elements[0]["options"] = options
    block_list = [
        _section(f":question: {asked}"),
        {"type": "actions", "block_id": block_id, "elements": elements},
        _context(f"Or reply {where} with your own answer."),
    ]
    return text, block_list


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
