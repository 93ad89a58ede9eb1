"""The `discord` outbox rendered over REST: replies, questions, approval cards, receipts, notices.

Everything here needs only a logged-in client (no gateway), so any process may render, and a
decision receipt edits the card wherever the card was posted.

Every message is created with a nonce derived from its outbound id (and part) and
`enforce_nonce`: Discord answers a second create with the same nonce, within a few minutes, with
the message it already made. So a renderer that dies after Discord's answer and before the
delivery record costs nothing when the next renderer takes the message over. Each part Discord
made is also recorded in Redis, so a retry long after (a 429, an outage: beyond the nonce
window) posts only the parts still missing. Ephemeral followups (webhooks take no nonce) may
show twice in that window.

A 429 keeps a render waiting in the SDK at most `RATE_LIMIT_WAIT_SECONDS` a try: beyond that the
client raises `RateLimited` (adapters/discord/channel.py makes it a ChannelError); a 429 discord.py does
not retry (no `Via` header: Cloudflare) or gave up on is a ChannelError with its `Retry-After`
here; an ephemeral followup kept waiting longer is sent as a DM instead.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, cast

import discord

from adapters.discord.bot import RATE_LIMIT_WAIT_SECONDS, approval_view
from adapters.discord.cards import (
    approval_content,
    approval_embed,
    args_line,
    choices_view,
    decided_embed,
    decided_sentence,
    link_of,
    question_text,
)
from adapters.discord.inbound import APPLICATION, INTERACTION, THREAD_FROM, THREAD_NAME, TO_CHANNEL, TOKEN
from adapters.discord.state import Card, DiscordStore
from adapters.discord.text import discord_user, native, notice_text, split_message
from core import ApprovalRequest, ChannelError, DecisionReceipt, Notice, Outbound, Question, Reply

log = logging.getLogger(__name__)

THREAD_EXISTS = 160004  # Discord: "A thread has already been created for this message"
THREAD_ARCHIVE_MINUTES: Literal[1440] = 1440
TOKEN_LIFETIME = timedelta(minutes=14)  # interaction tokens last 15 minutes; keep a margin


def nonce(key: str) -> str:
    """Discord nonces are at most 25 characters: a digest of the outbound id and part."""
    return hashlib.sha256(key.encode()).hexdigest()[:25]


def retry_after(exc: discord.HTTPException) -> float | None:
    """The seconds a 429's `Retry-After` header asks for, if it says."""
    try:
        return float(exc.response.headers.get("Retry-After", ""))
    except ValueError:
        return None


def token_usable(interaction_id: int, now: datetime | None = None) -> bool:
    return (now or datetime.now(UTC)) - discord.utils.snowflake_time(interaction_id) < TOKEN_LIFETIME


class Renderer:
    def __init__(self, client: discord.Client, book: DiscordStore, approval_channel_id: int | None) -> None:
        self.client = client
        self.book = book
        self.approval_channel_id = approval_channel_id

    async def render(self, outbound: Outbound) -> None:
        try:
            await self._render(outbound)
        except discord.HTTPException as exc:
            if exc.status != 429:
                raise
            wait = retry_after(exc)
            when = f"in {wait:.0f}s (its Retry-After)" if wait is not None else "after a backoff"
            raise ChannelError(
                f"Discord answered 429 to {outbound.kind} {outbound.id} and the client gave up (Cloudflare's "
                f"limit, or still limited after its retries); retrying {when}",
                retry_after=wait,
            ) from exc

    async def _render(self, outbound: Outbound) -> None:
        match outbound:
            case Reply(final=False):
                pass  # progress: Discord shows the outcome when it comes, without a message per step
            case Reply():
                await self._post(outbound, native(outbound.text))
            case Question():
                await self._question(outbound)
            case Notice() if outbound.to:
                await self._private(outbound)
            case Notice():
                await self._post(outbound, notice_text(outbound))
            case ApprovalRequest():
                await self._approval(outbound)
            case DecisionReceipt():
                await self._receipt(outbound)

    async def _target(self, outbound: Outbound) -> int | None:
        """The channel or thread to answer in; starts the conversation's thread on first use."""
        reply_to = outbound.reply_to
        if TO_CHANNEL not in reply_to:
            return None  # a copy of another channel's message (an approval `notify`)
        channel_id = int(reply_to[TO_CHANNEL])
        if THREAD_FROM not in reply_to:
            return channel_id
        thread_id = int(reply_to[THREAD_FROM])
        if await self.book.thread_parent(thread_id) is not None:
            return thread_id
        try:
            await self.client.http.start_thread_with_message(
                channel_id,
                thread_id,
                name=reply_to.get(THREAD_NAME) or "request",
                auto_archive_duration=THREAD_ARCHIVE_MINUTES,
            )
        except discord.HTTPException as exc:
            if exc.code != THREAD_EXISTS:
                log.warning(
                    "discord: cannot start a thread on message %s (%s); answering in the channel", thread_id, exc
                )
                return channel_id
        await self.book.own_thread(thread_id, channel_id)
        return thread_id

    async def _send(self, channel_id: int, text: str, key: str) -> None:
        """Post `text` (in as many messages as it needs), each part created once for `key`.

        Parts recorded as made are skipped; the nonce covers a crash between Discord's answer and the record.
        """
        channel = self.client.get_partial_messageable(channel_id)
        made = await self.book.parts_sent(key)
        for part, piece in enumerate(split_message(text)):
            if part not in made:
                sent = await channel.send(piece, nonce=nonce(f"{key}:{part}"))
                await self.book.part_sent(key, part, sent.id)

    async def _post(self, outbound: Outbound, text: str) -> None:
        target = await self._target(outbound)
        if target is None:
            log.warning(
                "discord: no Discord place for %s %s (thread %s); dropped",
                outbound.kind,
                outbound.id,
                outbound.thread_id,
            )
            return
        await self._send(target, text, outbound.id)

    async def _question(self, question: Question) -> None:
        """The question, with its options as buttons or a menu; a written answer is taken too."""
        plain = self.client.intents.message_content or question.conversation.startswith("dm/")
        write = "answer here" if plain else "answer by mentioning me here"
        view = choices_view(question)
        how = f"Choose one, or {write}." if view is not None else f"{write[0].upper()}{write[1:]}."
        text = question_text(question, how)
        if view is None:
            await self._post(question, text)
            return
        target = await self._target(question)
        if target is None or await self.book.parts_sent(question.id):
            return
        await self.book.save_options(question.call_id, list(question.options))
        channel = self.client.get_partial_messageable(target)
        sent = await channel.send(text, view=view, nonce=nonce(f"{question.id}:0"))
        await self.book.part_sent(question.id, 0, sent.id)

    async def _private(self, notice: Notice) -> None:
        """Only `notice.to` sees it: an ephemeral followup while the interaction token lasts, else a DM."""
        text, reply_to = notice_text(notice), notice.reply_to
        if TOKEN in reply_to and token_usable(int(reply_to[INTERACTION])):
            payload = {"id": reply_to[APPLICATION], "type": 3, "token": reply_to[TOKEN]}
            # The same followup webhook `Interaction.followup` builds, from any process.
            webhook = discord.Webhook.from_state(cast(Any, payload), state=self.client._connection)
            try:
                async with asyncio.timeout(RATE_LIMIT_WAIT_SECONDS):  # webhooks sleep out any 429 in the SDK
                    for piece in split_message(text):
                        await webhook.send(piece, ephemeral=True)
                return
            except (discord.HTTPException, TimeoutError) as exc:
                log.info("discord: ephemeral followup failed (%s); sending a DM instead", exc or "rate limited")
        user_id = discord_user(notice.to)
        if user_id is None:
            log.warning("discord: notice %s is for %s, who is not a Discord user; dropped", notice.id, notice.to)
            return
        dm = await self.client.create_dm(discord.Object(user_id))
        await self._send(dm.id, text, notice.id)

    async def _approval(self, request: ApprovalRequest) -> None:
        if (shown := await self.book.card(request.approval_id)) is not None:
            # Posted already: the request again as approvals of a quorum arrive (or a retry): edit the card.
            if not shown.decided:
                message = self.client.get_partial_messageable(shown.channel_id).get_partial_message(shown.message_id)
                await message.edit(embed=approval_embed(request), view=approval_view(request))
            return
        home = await self._target(request)
        where = self.approval_channel_id or home
        if where is None:
            log.error(
                "discord: approval %s came from another channel and DISCORD_APPROVAL_CHANNEL_ID is not set; "
                "set it to show such approvals on Discord",
                request.approval_id,
            )
            return
        approvers = [discord.Object(uid) for a in request.approvers if (uid := discord_user(a)) is not None]
        pings = discord.AllowedMentions(everyone=False, roles=False, users=approvers, replied_user=False)
        sent = await self.client.get_partial_messageable(where).send(
            approval_content(request),
            embed=approval_embed(request),
            view=approval_view(request),
            allowed_mentions=pings,
            nonce=nonce(f"{request.id}:card"),
        )
        ttl = int((request.expires_at - datetime.now(UTC)).total_seconds())
        card = Card(where, sent.id, request.tool, args_line(request.args), link_of(request))
        await self.book.save_card(request.approval_id, card, ttl)
        if home is not None and home != where:
            pointer = f"Approval `{request.approval_id}` for `{request.tool}` is waiting in <#{where}>."
            await self._send(home, pointer, f"{request.id}:pointer")

    async def _receipt(self, receipt: DecisionReceipt) -> None:
        """Edit the card once into the decided record (no buttons, no pings); elsewhere, say it in a sentence."""
        card = await self.book.card(receipt.approval_id)
        if card is not None and not card.decided:
            message = self.client.get_partial_messageable(card.channel_id).get_partial_message(card.message_id)
            await message.edit(content=None, embed=decided_embed(receipt, card), view=None)
            await self.book.mark_decided(receipt.approval_id)
            return
        line = decided_sentence(receipt, card.tool if card else "")
        # The core's copy for where the decider answered (another conversation), or a card we never posted.
        target = await self._target(receipt)
        if target is not None and (card is None or target != card.channel_id):
            await self._send(target, line, receipt.id)
