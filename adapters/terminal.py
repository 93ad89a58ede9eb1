"""The terminal channel (`bot chat`): lines typed become triggers; the `cli` outbox is printed.

Approvals are answered inline with `approve <id>` or `reject <id> <reason>`, or put off with `snooze <id> 30m`.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Callable

from core import (
    ApprovalRequest,
    Bus,
    DecisionReceipt,
    MessageTrigger,
    Notice,
    Outbound,
    Question,
    Reply,
    StoreUnavailable,
    new_id,
    people,
)

CHANNEL = "cli"
QUIT_WORDS = {"quit", "exit", ":q"}
OPS = "/ops"  # the chat platforms' one slash command, typed here out of habit
SEEN_TTL_SECONDS = 7 * 24 * 3600  # as long as the outbox keeps messages for terminals


def render(outbound: Outbound) -> str:
    """Plain text for a terminal; every line starts with `bot>` so scripts can find replies."""
    match outbound:
        case Reply(final=False):
            body = f"… {people.plain(outbound.text)}"
        case Reply():
            body = people.plain(outbound.text)
        case ApprovalRequest() if outbound.snoozed_until is not None:  # "not now": it is asked again later
            by, until = people.display(outbound.snoozed_by), people.plain_time(outbound.snoozed_until)
            body = f"approval {outbound.approval_id} snoozed by {by} until {until}; it will be asked again then"
        case ApprovalRequest() if outbound.approved_by:  # the request again: a quorum's approval arrived
            names = ", ".join(map(people.display, outbound.approved_by))
            body = (
                f"approval {outbound.approval_id}: {len(outbound.approved_by)} of {outbound.needed} approvals ({names})"
            )
        case ApprovalRequest():
            args = json.dumps(outbound.args, sort_keys=True)
            lines = [
                f"approval needed [{outbound.approval_id}]: {outbound.tool} {args}",
                f"  why: {outbound.reason or '(no reason given)'}",
                f"  requested by: {people.display(outbound.requester)}",
                f"  who may approve: {', '.join(map(people.display, outbound.approvers))}",
            ]
            if outbound.needed > 1:
                groups = f", one from each of {', '.join(outbound.open_groups)}" if outbound.open_groups else ""
                lines.append(f"  needs: {outbound.needed} approvals{groups}")
            if outbound.wait_until is not None:
                lines.append(f"  can be approved from: {people.plain_time(outbound.wait_until)}")
            lines += preview_lines(outbound)
            lines += [
                f"  expires: {people.plain_time(outbound.expires_at)}"
                + (f"  digest: {outbound.short}" if outbound.digest else ""),
                f"  answer: approve {outbound.approval_id}  |  reject {outbound.approval_id} <reason>",
                f"  not now: snooze {outbound.approval_id} 30m",
            ]
            body = "\n".join(lines)
        case Question() if outbound.options:
            choices = [f"  {number}. {option}" for number, option in enumerate(outbound.options, 1)]
            last = len(outbound.options)
            hint = f"  (answer with a number from 1 to {last}, the option's text, or your own words)"
            body = "\n".join([f"question: {people.plain(outbound.question)}", *choices, hint])
        case Question():
            body = f"question: {people.plain(outbound.question)}\n  (answer by typing a reply)"
        case DecisionReceipt():
            note = f": {outbound.comment}" if outbound.comment else ""
            if outbound.decision == "expire":
                body = f"approval {outbound.approval_id} expired at {people.plain_time(outbound.at)} without a decision"
            else:
                verb = "approved" if outbound.decision == "approve" else "rejected"
                by, at = people.display(outbound.by), people.plain_time(outbound.at)
                body = f"approval {outbound.approval_id} {verb} by {by} at {at}{note}"
        case Notice():
            return render_notice(people.plain(outbound.text), outbound.level)
    return "\n".join(f"bot> {line}" for line in body.splitlines() or [""])


def preview_lines(request: ApprovalRequest) -> list[str]:
    """The tool's preview on the card, indented; or the line saying it failed."""
    if request.preview_failed:
        return [f"  preview failed: {request.preview}"]
    if not request.preview:
        return []
    lines = ["  preview:", *(f"    {line}" for line in request.preview.splitlines())]
    if request.preview_more:
        where = (
            f" in the thread: {request.thread_url}"
            if request.thread_url
            else " in the thread (`bot thread show <id> --json`)"
        )
        lines.append(f"    … {request.preview_more} more characters; the whole preview is{where}")
    return lines


def unwrapped(text: str) -> str:
    """`/ops <request>` typed here means what Slack's /ops command means: the request itself (a command
    or free text for the model); a bare `/ops` stays, as help."""
    head, _, rest = text.strip().partition(" ")
    return rest.strip() if head.lower() == OPS and rest.strip() else text


def render_notice(text: str, level: str) -> str:
    return "\n".join(f"bot> {line}" for line in f"[{level}] {text}".splitlines())


class Terminal:
    """One person at a terminal; `conversation` is `<user>/<session>` so each launch is a new thread."""

    def __init__(self, bus: Bus, user: str, write: Callable[[str], None] | None = None) -> None:
        self.bus = bus
        self.identity = f"cli:{user}"
        self.user = user
        self.conversation = f"{user}/{new_id()}"
        self._write = write or (lambda text: print(text, flush=True))
        self._receipts: set[str] = set()
        self.after = "0-0"  # outbox position; set it to `await resume_position()` to skip what was shown
        self._seen_key = f"cli:seen:{user}"

    def trigger(self, text: str) -> MessageTrigger:
        return MessageTrigger(
            id=new_id(), channel=CHANNEL, conversation=self.conversation, sender=self.identity, text=unwrapped(text)
        )

    async def send(self, text: str) -> None:
        await self.bus.publish(self.trigger(text))

    def mine(self, outbound: Outbound) -> bool:
        ours = outbound.to == self.identity if outbound.to else outbound.conversation.startswith(f"{self.user}/")
        if ours and isinstance(outbound, DecisionReceipt):  # the thread and the decider may both be this terminal's
            if outbound.approval_id in self._receipts:
                return False
            self._receipts.add(outbound.approval_id)
        return ours

    async def resume_position(self) -> str:
        """Where this user's terminal stopped printing last time (a crash included), else the outbox's end:
        what a terminal that died had not shown yet is shown once by the next one."""
        seen = await self.bus.redis.get(self._seen_key)
        if seen:
            return seen.decode() if isinstance(seen, bytes) else str(seen)
        position = await self.bus.position(CHANNEL)
        await self.bus.redis.set(self._seen_key, position, ex=SEEN_TTL_SECONDS, nx=True)
        return position

    async def print_new(self, block_ms: int = 0) -> int:
        """Print this user's outbound messages that arrived since the last call; returns how many."""
        self.after, items = await self.bus.follow(CHANNEL, self.after, block_ms=block_ms)
        mine = [outbound for outbound in items if self.mine(outbound)]
        for outbound in mine:
            self._write(render(outbound))
        if mine:  # printed, then remembered: a crash between the two prints these again (at least once)
            await self.bus.redis.set(self._seen_key, self.after, ex=SEEN_TTL_SECONDS)
        return len(mine)

    async def print_outbox(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            await self.print_new(block_ms=200)

    async def read_input(self) -> None:
        """Forward typed lines until end of input or `quit`."""
        while True:
            line = await asyncio.to_thread(sys.stdin.readline)
            if not line:
                return
            text = line.strip()
            if text.lower() in QUIT_WORDS:
                return
            if not text:
                continue
            try:
                await self.send(text)
            except StoreUnavailable as exc:
                self._write(render_notice(f"{exc}. Your message was not sent; type it again.", "error"))
