"""Discord input to triggers: mentions, DMs, the bot's threads, slash commands and decisions.

Conversations (the core's thread key):
- a DM channel is `dm/<channel>`;
- a thread is `<guild>/<parent channel>/<thread>`;
- a request in a channel is `<guild>/<channel>/<message>`: the bot answers in a thread it starts
  on that message, and a thread started on a message has the message's id, so later messages
  in that thread land in the same conversation.

`reply_to` carries what the renderer needs: where to post, the message to start the thread on,
a link to the request message (approval cards jump back to it), and for interactions the token
for ephemeral followups (valid 15 minutes).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import discord

from adapters.discord import edits
from adapters.discord.state import DiscordStore
from adapters.discord.text import MESSAGE_LIMIT, clip
from core import Bus, DecisionTrigger, MessageTrigger, SnoozeTrigger, Store, ToolRegistry, new_id

log = logging.getLogger(__name__)

CHANNEL = "discord"
THREAD_NAME_CHARS = 80
# reply_to keys; prefixed so an outbound copied from another channel's thread is never mistaken for ours
TO_CHANNEL = "discord_channel"
THREAD_FROM = "discord_thread_from"
THREAD_NAME = "discord_thread_name"
INTERACTION = "discord_interaction"
TOKEN = "discord_token"
APPLICATION = "discord_application"
LINK = "discord_link"
WEB = "https://discord.com/channels"
TEXT_MESSAGES = (discord.MessageType.default, discord.MessageType.reply)


@dataclass(frozen=True)
class Place:
    conversation: str
    reply_to: dict[str, str]


def jump_link(guild_id: int | None, channel_id: int, message_id: int) -> str:
    return f"{WEB}/{guild_id if guild_id is not None else '@me'}/{channel_id}/{message_id}"


def _place(
    guild_id: int | None, channel_id: int, parent_id: int | None, origin: int, name: str | None, message: bool = True
) -> Place:
    """Where an input happened; `name` set means "answer in a thread started on message `origin`";
    `message`: `origin` is a message a link may point at (else an interaction's id)."""
    reply_to = {TO_CHANNEL: str(channel_id)}
    if message:
        reply_to[LINK] = jump_link(guild_id, channel_id, origin)
    if guild_id is None:
        return Place(f"dm/{channel_id}", reply_to)
    if parent_id is not None:
        return Place(f"{guild_id}/{parent_id}/{channel_id}", reply_to)
    if name is not None:
        title = clip(" ".join(name.split()) or "request", THREAD_NAME_CHARS)
        reply_to |= {THREAD_FROM: str(origin), THREAD_NAME: title}
    return Place(f"{guild_id}/{channel_id}/{origin}", reply_to)


def _token(interaction: discord.Interaction[Any]) -> dict[str, str]:
    return {INTERACTION: str(interaction.id), TOKEN: interaction.token, APPLICATION: str(interaction.application_id)}


def identity(user: discord.abc.User) -> str:
    return f"discord:{user.id}"


class Inbound:
    """The client's handlers call these after acknowledging; each builds one trigger and publishes it."""

    def __init__(self, bus: Bus, book: DiscordStore, client: discord.Client, store: Store, tools: ToolRegistry) -> None:
        self.bus = bus
        self.book = book
        self.client = client
        self.store = store  # the approval records an Edit modal is filled from
        self.tools = tools  # their tools' schemas

    async def message(self, message: discord.Message) -> None:
        """A DM, a message that mentions the bot, or a message in a thread the bot started."""
        me = self.client.user
        if me is None or message.author.bot or message.type not in TEXT_MESSAGES:
            return
        text = re.sub(rf"<@!?{me.id}>", " ", message.content).strip()
        channel = message.channel
        guild_id = message.guild.id if message.guild else getattr(channel, "guild_id", None)
        if guild_id is None:
            if not isinstance(channel, discord.DMChannel):
                return  # group DMs are not supported
            place = _place(None, channel.id, None, message.id, None)
        else:
            mentioned = any(user.id == me.id for user in message.mentions)
            if not mentioned and not text:  # without the message-content intent, other messages arrive empty
                return
            owned = await self.book.thread_parent(channel.id)
            if not mentioned and owned is None:
                return
            parent = owned or (channel.parent_id if isinstance(channel, discord.Thread) else None)
            place = _place(guild_id, channel.id, parent, message.id, text)
        await self.bus.publish(
            MessageTrigger(
                id=new_id(),
                channel=CHANNEL,
                conversation=place.conversation,
                sender=identity(message.author),
                dedup_key=f"discord:message:{message.id}",
                reply_to=place.reply_to,
                text=text or "help",
            )
        )

    async def request(self, interaction: discord.Interaction[Any], text: str) -> None:
        """A slash command, already deferred: show the request as the response, then enqueue it."""
        origin = interaction.id
        name: str | None = None
        try:
            echo = await interaction.edit_original_response(content=clip(f">>> {text}", MESSAGE_LIMIT))
            origin, name = echo.id, text
        except discord.HTTPException as exc:  # still enqueue; answers then go to the channel itself
            log.warning("discord: could not show the request of interaction %s: %s", interaction.id, exc)
        place = await self._interaction_place(interaction, origin, name, message=name is not None)
        await self.bus.publish(
            MessageTrigger(
                id=new_id(),
                channel=CHANNEL,
                conversation=place.conversation,
                sender=identity(interaction.user),
                dedup_key=f"discord:interaction:{interaction.id}",
                reply_to=place.reply_to | _token(interaction),
                text=text,
            )
        )

    async def decision(
        self,
        interaction: discord.Interaction[Any],
        approval_id: str,
        approve: bool,
        comment: str,
        digest: str = "",
        grant_for: int | None = None,
    ) -> None:
        """A button click or a reject reason, already acknowledged; the core checks who may decide and, with
        `grant_for` (Approve + grant: 0, the longest the policy allows), whether a standing grant may be given."""
        await self.bus.publish(
            DecisionTrigger(
                **await self._clicked(interaction),
                approval_id=approval_id,
                decision="approve" if approve else "reject",
                comment=comment,
                digest=digest,
                grant_for=grant_for,
            )
        )

    async def snooze(self, interaction: discord.Interaction[Any], approval_id: str, digest: str = "") -> None:
        """Not now, already acknowledged: the core checks who may snooze and puts the request off 30 minutes."""
        await self.bus.publish(
            SnoozeTrigger(**await self._clicked(interaction), approval_id=approval_id, digest=digest)
        )

    async def edit(self, interaction: discord.Interaction[Any], approval_id: str, digest: str = "") -> None:
        """The Edit button, not yet acknowledged: an approver gets the call's arguments in a modal; anyone
        else (and a request no longer pending) hears from the core why not, as from the Approve button."""
        record = await self.store.get_approval(approval_id)
        sender = identity(interaction.user)
        if (
            record is None
            or record.status != "pending"
            or not self.tools.may_approve(sender, record.allowed, record.requester, record.allow_self)
        ):
            await interaction.response.defer()
            await self.decision(interaction, approval_id, True, "", digest)  # refused by the core, as it checks
            return
        await interaction.response.send_modal(edits.EditModal(record, self.tools, digest))

    async def edited(
        self, interaction: discord.Interaction[Any], approval_id: str, digest: str, values: Mapping[str, str]
    ) -> None:
        """The Edit modal, not yet acknowledged: a value that does not fit the tool's schema is answered to
        the editor alone and nothing is sent; otherwise an approval with the changes (none: a plain one)."""
        texts, comment = edits.submitted(values)
        record = await self.store.get_approval(approval_id)
        changes: dict[str, Any] = {}
        if record is not None:  # else the core says the approval is unknown
            changes, errors = edits.changes(self.tools, record, texts)
            if errors:
                text = clip(edits.refusal(record, errors), MESSAGE_LIMIT)
                await interaction.response.send_message(text, ephemeral=True)
                return
        await interaction.response.defer()
        await self.bus.publish(
            DecisionTrigger(
                **await self._clicked(interaction),
                approval_id=approval_id,
                decision="approve",
                comment=comment,
                digest=digest,
                args=changes or None,
            )
        )

    async def answer(self, interaction: discord.Interaction[Any], call_id: str, index: int) -> None:
        """A choice button or select, already acknowledged: the option's text answers the question.

        Core checks that the question is still open and that the clicker may answer it."""
        options = await self.book.options(call_id)
        text = options[index] if index < len(options) else str(index + 1)  # core reads a number as the option
        await self.bus.publish(
            MessageTrigger(
                **await self._clicked(interaction),
                text=text,
                answers=call_id,
            )
        )

    async def _clicked(self, interaction: discord.Interaction[Any]) -> dict[str, Any]:
        """A component click's trigger fields: who, in which conversation, deduplicated by the interaction."""
        origin = interaction.message.id if interaction.message else interaction.id
        place = await self._interaction_place(interaction, origin, None, message=interaction.message is not None)
        return {
            "id": new_id(),
            "channel": CHANNEL,
            "conversation": place.conversation,
            "sender": identity(interaction.user),
            "dedup_key": f"discord:interaction:{interaction.id}",
            "reply_to": place.reply_to | _token(interaction),
        }

    async def _interaction_place(
        self, interaction: discord.Interaction[Any], origin: int, name: str | None, message: bool = True
    ) -> Place:
        channel_id = interaction.channel_id or 0
        channel = interaction.channel
        parent = channel.parent_id if isinstance(channel, discord.Thread) else None
        if interaction.guild_id is not None and parent is None:
            parent = await self.book.thread_parent(channel_id)
        return _place(interaction.guild_id, channel_id, parent, origin, name, message)
