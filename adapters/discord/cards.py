"""Approval cards as embeds (and the compact record a decision leaves), receipts as sentences, question choices.

Embed limits (Discord): title 256, description 4096, field value 1024, 25 fields, 6000 in all;
the text here stays well under them. Mentions inside an embed never ping, so the card's content
names the Discord approvers, and only they are allowed to be pinged.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlsplit

import discord

from adapters.discord.bot import CALL_ID_CHARS, ChoiceButton, ChoiceSelect
from adapters.discord.inbound import LINK
from adapters.discord.state import Card
from adapters.discord.text import clip, native, person, relative, stamp
from core import ApprovalRequest, DecisionReceipt, Question, people

FIELD_LIMIT = 1024
REASON_CHARS = 600
PREVIEW_NOTE_CHARS = 200  # room in the preview's field for what it leaves out, and the link to all of it
ARGS_LINE_CHARS = 300
BUTTON_LABEL_CHARS = 80
SELECT_LABEL_CHARS = 100
MAX_BUTTONS = 5  # more options than a row holds: a select menu
MAX_SELECT_OPTIONS = 25
PENDING = discord.Colour.gold()
OUTCOME = {
    "approve": ("✅", "Approved", discord.Colour.green()),
    "reject": ("❌", "Rejected", discord.Colour.red()),
    "expire": ("⌛", "Expired", discord.Colour.light_grey()),
}


def link_of(request: ApprovalRequest) -> str:
    """Where the request was made: the Discord message (the channel's own link) first, else the web console."""
    return request.reply_to.get(LINK, "") or request.thread_url


def approvers_line(approvers: list[str]) -> str:
    """The approvers Discord can show as people (and groups by name); the rest counted, not listed."""
    shown = people.reachable(approvers, "discord")
    others = len(approvers) - len(shown)
    names = ", ".join(person(a) for a in shown)
    if not others:
        return names or "nobody is configured"
    elsewhere = f"{others} on other channels" if others != 1 else "1 on another channel"
    return f"{names} and {elsewhere}" if names else elsewhere


def args_block(args: dict[str, Any]) -> str:
    """The exact arguments as a JSON code block that fits one embed field."""
    text = json.dumps(args, indent=2, sort_keys=True, ensure_ascii=False).replace("```", "`\u200b``")
    room = FIELD_LIMIT - len("```json\n\n```")
    if len(text) > room:
        note = "\n(clipped; `bot approvals` shows them whole)"
        text = clip(text, room - len(note)) + note
    return f"```json\n{text}\n```"


def args_line(args: dict[str, Any]) -> str:
    words = (f"{key}={value if isinstance(value, str) else json.dumps(value)}" for key, value in sorted(args.items()))
    return clip(" ".join(words), ARGS_LINE_CHARS)


def approval_embed(request: ApprovalRequest) -> discord.Embed:
    """The card: what would run, why, for whom, who may approve, until when, and the way back to the request."""
    link = link_of(request)
    embed = discord.Embed(
        title=clip(f"Approval needed: {request.tool}", 256),
        url=link or None,
        description=clip(native(request.reason), REASON_CHARS) if request.reason else None,
        colour=PENDING,
    )
    embed.add_field(name="Arguments", value=args_block(request.args), inline=False)
    if (preview := preview_field(request)) is not None:
        embed.add_field(name=preview[0], value=preview[1], inline=False)
    embed.add_field(name="Requested by", value=person(request.requester), inline=True)
    embed.add_field(name="Who may approve", value=clip(approvers_line(request.approvers), FIELD_LIMIT), inline=True)
    embed.add_field(name="Expires", value=f"{relative(request.expires_at)} ({stamp(request.expires_at)})", inline=True)
    if request.needed > 1:
        embed.add_field(name="Approvals", value=clip(quorum_line(request), FIELD_LIMIT), inline=True)
    if request.wait_until is not None:
        embed.add_field(name="Can be approved", value=relative(request.wait_until), inline=True)
    if request.snoozed_until is not None:  # "not now": asked again then
        snoozed = f"by {person(request.snoozed_by)} until {stamp(request.snoozed_until)}"
        embed.add_field(name="Snoozed", value=clip(snoozed, FIELD_LIMIT), inline=True)
    if link:
        embed.add_field(name="Request", value=f"[Jump to the request]({link})", inline=False)
    digest = f" · digest {request.short}" if request.digest else ""
    embed.set_footer(text=f"approval {request.approval_id}{digest} · or type: approve {request.approval_id}")
    return embed


def preview_field(request: ApprovalRequest) -> tuple[str, str] | None:
    """The tool's preview as a field (name, value): a code block cut to fit, saying what it leaves out;
    or the line saying the preview failed. None without a preview."""
    if request.preview_failed:
        return "⚠️ Preview failed", clip(request.preview, FIELD_LIMIT)
    if not request.preview:
        return None
    room = FIELD_LIMIT - len("```\n\n```") - PREVIEW_NOTE_CHARS
    text = request.preview.replace("```", "`\u200b``")
    shown = clip(text, room)
    value = f"```\n{shown}\n```"
    more = request.preview_more + (len(text) - len(shown) + 1 if shown != text else 0)  # clip's "…"
    if more > 0:
        whole = (
            f"[the whole preview]({request.thread_url})" if request.thread_url else "the whole preview is in the thread"
        )
        value += f"\n{more} more characters: {whole}"
    return "Preview", value[:FIELD_LIMIT]


def quorum_line(request: ApprovalRequest) -> str:
    """`1 of 2: @alice` and, with groups, which are still open."""
    names = ", ".join(person(identity) for identity in request.approved_by)
    line = f"{len(request.approved_by)} of {request.needed}" + (f": {names}" if names else "")
    return line + (f" (still needs {', '.join(request.open_groups)})" if request.open_groups else "")


def approval_content(request: ApprovalRequest) -> str | None:
    """The line above the card: it pings the Discord approvers (an embed cannot)."""
    shown = [person(a) for a in people.reachable(request.approvers, "discord") if not a.startswith("group:")]
    return f"{', '.join(shown)}: your approval is needed" if shown else None


def decided_sentence(receipt: DecisionReceipt, tool: str = "") -> str:
    """The decision in one sentence: who, what, when, and the reason given. A rejection is a rejection."""
    what = f"`{tool or receipt.tool}`" if tool or receipt.tool else f"approval `{receipt.approval_id}`"
    mark, _, _ = OUTCOME[receipt.decision]
    when = f"{stamp(receipt.at)} ({relative(receipt.at)})"
    if receipt.decision == "expire":
        return f"{mark} {what} expired {when} without a decision; it did not run"
    verb = "approved" if receipt.decision == "approve" else "rejected"
    note = f": {clip(native(receipt.comment), REASON_CHARS)}" if receipt.comment else ""
    return f"{mark} {person(receipt.by)} {verb} {what} {when}{note}"


def decided_embed(receipt: DecisionReceipt, card: Card) -> discord.Embed:
    """The card after the decision: outcome, who, when, comment; no buttons, no expiry, no approver list."""
    _, word, colour = OUTCOME[receipt.decision]
    tool = card.tool or receipt.tool
    embed = discord.Embed(
        title=clip(f"{word}: {tool or receipt.approval_id}", 256),
        url=card.link or None,
        description=decided_sentence(receipt, tool),
        colour=colour,
    )
    if card.args:
        embed.add_field(name="Arguments", value=f"`{card.args}`", inline=False)
    embed.set_footer(text=f"approval {receipt.approval_id}")
    return embed


def question_text(question: Question, how: str) -> str:
    """The question; with more options than the menu shows, every option numbered too."""
    lines = [f"**Question:** {native(question.question)}"]
    if len(question.options) > MAX_SELECT_OPTIONS or (question.options and not choosable(question)):
        lines += [f"{n}. {option}" for n, option in enumerate(question.options, 1)]
    lines.append(f"-# {how}")
    return "\n".join(lines)


def choosable(question: Question) -> bool:
    """The options can be buttons or a menu: there are some, and the call id fits a custom_id."""
    return bool(question.options) and 0 < len(question.call_id) <= CALL_ID_CHARS and question.call_id.isascii()


def choices_view(question: Question) -> discord.ui.View | None:
    """A row of buttons for up to five options, else a select menu; None when there is nothing to click."""
    if not choosable(question):
        return None
    view = discord.ui.View(timeout=None)
    if len(question.options) + bool(question.link) <= MAX_BUTTONS:
        if question.link:  # an MCP server's page (URL mode): a link button, its domain on it
            label = clip(f"Open {urlsplit(question.link).hostname}", BUTTON_LABEL_CHARS)
            view.add_item(discord.ui.Button(style=discord.ButtonStyle.link, url=question.link, label=label))
        for index, option in enumerate(question.options):
            view.add_item(ChoiceButton(question.call_id, index, clip(option, BUTTON_LABEL_CHARS)))
        return view
    menu = [
        discord.SelectOption(label=clip(option, SELECT_LABEL_CHARS), value=str(index))
        for index, option in enumerate(question.options[:MAX_SELECT_OPTIONS])
    ]
    view.add_item(ChoiceSelect(question.call_id, menu))
    return view
