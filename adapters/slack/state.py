"""What the Slack channel remembers in Redis, so any process can receive or render.

| key | what |
|---|---|
| `slack:thread:<team>/<channel>/<thread_ts>` | the conversation a bot-owned Slack thread belongs to |
| `slack:root:<conversation>` | `{channel, ts}` of the message the bot posted to open a slash command's thread |
| `slack:status:<conversation>` | ts of the one progress message the bot edits while the thread works |
| `slack:card:<approval id>` | `{channel, ts, thread_ts, request}` of the approval card, to edit it after the decision |
| `slack:began:<outbound id>:<part>` | a post of this message part was attempted: a retry looks for it in Slack first |
| `slack:opening:<conversation>` | a renderer is posting a slash command's first message; the others wait for it |
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any

import redis.asyncio as aioredis

from core import ApprovalRequest

THREAD_TTL_SECONDS = 30 * 24 * 3600  # replies in a bot thread are followed for a month
STATUS_TTL_SECONDS = 24 * 3600
CARD_TTL_SECONDS = 30 * 24 * 3600  # longer than any approval's expiry
BEGAN_TTL_SECONDS = 7 * 24 * 3600  # longer than delivery retries last (core/runtime/delivery.py: 6 hours)
OPENING_TTL_SECONDS = 30  # a renderer that died while opening a thread holds the others back this long


@dataclass(frozen=True)
class Place:
    """Where a message is in Slack: a channel and, for a reply, the thread's root ts."""

    channel: str
    thread_ts: str = ""


@dataclass(frozen=True)
class Origin:
    """Where a trigger came from in Slack, kept in its `reply_to` (as `slack_*` keys) for the renderer."""

    team: str
    channel: str
    thread_ts: str = ""  # empty for a slash command: its thread starts with the bot's first message
    user: str = ""
    command: str = ""  # the slash command that opened the thread, shown on that first message

    def reply_to(self) -> dict[str, str]:
        return {f"slack_{name}": value for name, value in asdict(self).items() if value}

    @classmethod
    def of(cls, reply_to: Mapping[str, str]) -> Origin | None:
        """None when the thread is not a Slack one (an approval request sent here by policy)."""
        if not reply_to.get("slack_channel"):
            return None
        return cls(**{field.name: reply_to.get(f"slack_{field.name}", "") for field in fields(cls)})


@dataclass(frozen=True)
class Card:
    """An approval card: where it is (`thread_ts` empty when it is not a reply) and what it asked."""

    channel: str
    ts: str
    thread_ts: str
    request: ApprovalRequest

    @property
    def place(self) -> Place:
        """The thread the card is in; a card posted on its own opens its own thread."""
        return Place(self.channel, self.thread_ts or self.ts)


def thread_key(team: str, channel: str, thread_ts: str) -> str:
    return f"{team}/{channel}/{thread_ts}"


def _text(value: Any) -> str | None:
    return value.decode() if isinstance(value, bytes) else value


class SlackState:
    def __init__(self, client: aioredis.Redis) -> None:
        self.redis = client

    async def own_thread(self, key: str, conversation: str) -> None:
        """Follow replies in the Slack thread `key` as messages of `conversation`."""
        await self.redis.set(f"slack:thread:{key}", conversation, ex=THREAD_TTL_SECONDS)

    async def owner(self, key: str) -> str | None:
        """The conversation a bot-owned thread belongs to, or None when the bot does not own it."""
        return _text(await self.redis.get(f"slack:thread:{key}"))

    async def set_root(self, conversation: str, place: Place) -> None:
        value = json.dumps({"channel": place.channel, "ts": place.thread_ts})
        await self.redis.set(f"slack:root:{conversation}", value, ex=THREAD_TTL_SECONDS)

    async def root(self, conversation: str) -> Place | None:
        raw = _text(await self.redis.get(f"slack:root:{conversation}"))
        if raw is None:
            return None
        data = json.loads(raw)
        return Place(str(data["channel"]), str(data["ts"]))

    async def status(self, conversation: str) -> str | None:
        return _text(await self.redis.get(f"slack:status:{conversation}"))

    async def set_status(self, conversation: str, ts: str) -> None:
        await self.redis.set(f"slack:status:{conversation}", ts, ex=STATUS_TTL_SECONDS)

    async def clear_status(self, conversation: str) -> None:
        await self.redis.delete(f"slack:status:{conversation}")

    async def set_card(self, card: Card) -> None:
        request = card.request.model_dump(mode="json")
        value = json.dumps({"channel": card.channel, "ts": card.ts, "thread_ts": card.thread_ts, "request": request})
        await self.redis.set(f"slack:card:{card.request.approval_id}", value, ex=CARD_TTL_SECONDS)

    async def card(self, approval_id: str) -> Card | None:
        raw = _text(await self.redis.get(f"slack:card:{approval_id}"))
        if raw is None:
            return None
        data = json.loads(raw)
        request = ApprovalRequest.model_validate(data["request"])
        return Card(str(data["channel"]), str(data["ts"]), str(data["thread_ts"]), request)

    async def begin(self, key: str) -> bool:
        """Mark a post of `key` (outbound id and part) as attempted; False when an attempt was made before."""
        return bool(await self.redis.set(f"slack:began:{key}", "1", nx=True, ex=BEGAN_TTL_SECONDS))

    async def claim_opening(self, conversation: str) -> bool:
        """Claim the posting of `conversation`'s first message; False while another renderer holds it."""
        return bool(await self.redis.set(f"slack:opening:{conversation}", "1", nx=True, ex=OPENING_TTL_SECONDS))

    async def release_opening(self, conversation: str) -> None:
        await self.redis.delete(f"slack:opening:{conversation}")
