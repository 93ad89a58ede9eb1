"""Inbound mail -> triggers: requests start or continue a thread; approval replies become decisions.

An approval reply counts only when all of these hold, checked in this order: the sender passes
DMARC per our trusted MX (when EMAIL_REQUIRE_DMARC is on), the reply carries a token signed
for the sender's own identity, the approval exists and is pending, the sender may approve it,
and the first line is an exact answer. Otherwise the sender gets a short explanation and
nothing changes. The core then decides once and checks the approver's permission again.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from adapters.email.compose import INSTRUCTIONS, Thread
from adapters.email.parse import InboundMail, parse_answer, parse_mail, parse_snooze
from adapters.email.readable import Readable, person
from adapters.email.security import Token, Tokens, authentication_failure
from adapters.email.state import EmailState, chain
from config.channels import EmailSettings
from core import (
    ApprovalRecord,
    Bus,
    DecisionTrigger,
    MessageTrigger,
    Notice,
    SnoozeTrigger,
    Store,
    ToolRegistry,
    new_id,
    parse_decision,
    snooze_seconds,
)

log = logging.getLogger(__name__)

CHANNEL = "email"


def identity(address: str) -> str:
    return f"email:{address.lower()}"


def dedup_key(mail: InboundMail) -> str:
    return f"email:{mail.message_id}"


USE_THE_APPROVAL_MAIL = (
    "To approve or reject by mail, reply to the approval mail you received (it carries a signed token); "
    "a new mail saying approve/reject is not accepted. Nothing changed."
)
NO_TEXT = "Your mail had no text I could read; write the request in the body of the mail, as plain text."
NO_TOKEN = (
    "This reply to an approval mail carries no approval token. Reply to the approval mail itself "
    "and keep its subject ([Approval ...]) and reply address. Nothing changed."
)
BAD_TOKEN = (
    "The approval token in this reply is not valid (it was changed, or the mail was not sent to you). Nothing changed."
)


class Refused(Exception):
    """An approval reply that must not count; the message is sent back to its sender."""


class Inbound:
    def __init__(
        self,
        settings: EmailSettings,
        *,
        bus: Bus,
        store: Store,
        tools: ToolRegistry,
        state: EmailState,
        tokens: Tokens,
        readable: Readable | None = None,
    ) -> None:
        self.settings = settings
        self.bus = bus
        self.store = store
        self.tools = tools
        self.state = state
        self.tokens = tokens
        self.readable = readable or Readable()

    async def receive(self, raw: bytes) -> None:
        """Handle one mail from the mailbox; a mail seen before (same Message-ID) changes nothing."""
        mail = parse_mail(raw)
        if not mail.sender or mail.automatic or self.tokens.is_ours(mail.sender):
            log.info("mail %s from %r skipped: no single sender, automatic, or our own", mail.message_id, mail.sender)
            return
        tokens = self.tokens.find(mail.recipients, mail.subject)
        if tokens or await self.state.approval_of(mail.parents):
            await self._approval_reply(mail, tokens)
        else:
            await self._request(mail)

    async def _root(self, mail: InboundMail) -> str:
        """The conversation: the root of a thread we know, else the first Reference, else this mail."""
        known = await self.state.root_of(mail.parents)
        return known or next(iter(mail.references or mail.in_reply_to), mail.message_id)

    @staticmethod
    def _answer_thread(mail: InboundMail, root: str) -> dict[str, str]:
        """`reply_to` for anything sent back about this mail: to its sender, threaded under it."""
        thread = Thread(mail.sender, mail.subject, mail.message_id, tuple(chain(mail.references, mail.message_id)))
        return {**thread.fields(), "root": root}

    async def _request(self, mail: InboundMail) -> None:
        if self.settings.require_dmarc and (why := self._unauthenticated(mail)):
            # Not answered: replying to a forged From would mail an innocent address.
            log.warning("mail %s from %s ignored: %s", mail.message_id, mail.sender, why)
            return
        root = await self._root(mail)
        reply_to = self._answer_thread(mail, root)
        if parse_decision(mail.text) is not None:  # chat's `approve <id>` would skip the token check
            return await self._tell(mail, root, reply_to, USE_THE_APPROVAL_MAIL)
        if not mail.text:
            return await self._tell(mail, root, reply_to, NO_TEXT)
        await self.state.note_inbound(root, mail.message_id, mail.references, mail.subject)
        trigger = MessageTrigger(
            id=new_id(),
            channel=CHANNEL,
            conversation=root,
            sender=identity(mail.sender),
            text=mail.text,
            dedup_key=dedup_key(mail),
            reply_to=reply_to,
        )
        if not await self.bus.publish(trigger):
            log.info("mail %s was already enqueued; ignored", mail.message_id)

    async def _approval_reply(self, mail: InboundMail, tokens: list[Token]) -> None:
        root = await self._root(mail)
        reply_to = self._answer_thread(mail, root)
        try:
            record = await self._checked(mail, tokens)
        except Refused as refusal:
            return await self._tell(mail, root, reply_to, str(refusal))
        if (later := parse_snooze(mail.text)) is not None:
            return await self._snooze(mail, root, reply_to, record, later)
        answer = parse_answer(mail.text)
        if answer is None:
            first = next(iter(mail.text.splitlines()), "")
            unclear = (
                f"I could not read an answer on the first line of your reply ({first[:80]!r}), so approval "
                f"{record.approval_id} ({record.tool}) is still pending; nothing changed.\n\n{INSTRUCTIONS}"
            )
            return await self._tell(mail, root, reply_to, unclear)
        await self.state.note_inbound(root, mail.message_id, mail.references, mail.subject)
        decision = DecisionTrigger(
            **_answering(mail, root, reply_to, record),
            decision="approve" if answer.approve else "reject",
            comment=answer.comment,
        )
        if not await self.bus.publish(decision):
            log.info("approval reply %s was already enqueued; ignored", mail.message_id)

    async def _snooze(
        self, mail: InboundMail, root: str, reply_to: dict[str, str], record: ApprovalRecord, duration: str
    ) -> None:
        """`SNOOZE 30m`: the core puts the request off, tells the requester, and mails the card again then."""
        try:
            length = snooze_seconds(duration)
        except ValueError as exc:
            return await self._tell(mail, root, reply_to, f"{exc}. Approval {record.approval_id} is unchanged.")
        await self.state.note_inbound(root, mail.message_id, mail.references, mail.subject)
        snooze = SnoozeTrigger(**_answering(mail, root, reply_to, record), seconds=length)
        if not await self.bus.publish(snooze):
            log.info("snooze reply %s was already enqueued; ignored", mail.message_id)

    async def _checked(self, mail: InboundMail, tokens: list[Token]) -> ApprovalRecord:
        """The pending approval this reply may decide, or Refused saying why not."""
        if self.settings.require_dmarc and (why := self._unauthenticated(mail)):
            raise Refused(f"Your reply could not be verified as coming from {mail.sender} ({why}). Nothing changed.")
        if not tokens:
            raise Refused(NO_TOKEN)
        who = identity(mail.sender)
        mine = [token for token in tokens if self.tokens.verify(token, who)]
        if not mine:
            raise Refused(await self._token_refusal(mail, tokens))
        record = await self.store.get_approval(mine[0].approval_id)
        if record is None:
            raise Refused(f"There is no approval {mine[0].approval_id}. Nothing changed.")
        if not self.tools.may_approve(who, record.approvers, record.requester, record.allow_self):
            raise Refused(
                f"{mail.sender} may not decide approval {record.approval_id} ({record.tool}); allowed approvers: "
                f"{self.readable.text(self.tools.describe(record.approvers))}. Nothing changed."
            )
        if record.status != "pending":
            by = f" by {person(record.decided_by)}" if record.decided_by else ""
            if record.decided_at:
                by += f" at {self.readable.time(datetime.fromisoformat(record.decided_at))}"
            raise Refused(
                f"Approval {record.approval_id} ({record.tool}) was already {record.status}{by}; nothing changed."
            )
        return record

    async def _token_refusal(self, mail: InboundMail, tokens: list[Token]) -> str:
        record = await self.store.get_approval(tokens[0].approval_id)
        members = self.tools.members(record.approvers) if record else []
        if any(self.tokens.verify(token, member) for token in tokens for member in members):
            return (
                f"This approval mail was sent to another approver, and only they can answer it; "
                f"{mail.sender} cannot. Nothing changed."
            )
        return BAD_TOKEN

    def _unauthenticated(self, mail: InboundMail) -> str | None:
        trusted = self.settings.trusted_authserv_id or ""
        return authentication_failure(mail.auth_results, trusted, mail.sender_domain)

    async def _tell(self, mail: InboundMail, root: str, reply_to: dict[str, str], text: str) -> None:
        """A short explanation to the sender only, once per mail, through the outbox like any reply."""
        if not await self.store.claim(dedup_key(mail)):
            return
        log.info("mail %s from %s answered without action: %s", mail.message_id, mail.sender, text.splitlines()[0])
        notice = Notice(
            id=new_id(),
            channel=CHANNEL,
            conversation=root,
            thread_id="",
            reply_to=reply_to,
            to=identity(mail.sender),
            text=text,
            level="warning",
        )
        await self.bus.send(notice)


def _answering(mail: InboundMail, root: str, reply_to: dict[str, str], record: ApprovalRecord) -> dict[str, Any]:
    """The fields of a trigger answering `record` with this reply (a decision or a snooze)."""
    return {
        "id": new_id(),
        "channel": CHANNEL,
        "conversation": root,
        "sender": identity(mail.sender),
        "dedup_key": dedup_key(mail),
        "reply_to": reply_to,
        "approval_id": record.approval_id,
    }
