"""What the Slack channel remembers in Redis, so any process can receive or render.

| key | what |
|---|---|
| `slack:thread:<team>/<channel>/<thread_ts>` | the conversation a bot-owned Slack thread belongs to |
| `slack:root:<conversation>` | `{channel, ts}` of the message the bot posted to open a slash command's thread |
| `slack:status:<conversation>` | the work in progress: `{ts, steps, assistant}`: the progress message the bot edits (when Slack's status cannot be used), the tool steps of this turn, whether Slack's assistant status is set |
| `slack:refused:<feature>:<place kind>` | Slack refused `stream` or `status` there (`im` or `channel`): every renderer falls back without asking again |
| `slack:stream:<outbound id>:<part>` | ts of the stream a renderer started for this reply: a retry finishes that message instead of streaming again |
| `slack:assistant:<team>/<channel>/<thread_ts>` | an "Agents & AI Apps" assistant thread: the channel the person is viewing |
| `slack:titled:<team>/<channel>/<thread_ts>` | the assistant thread's title was set (from its first request) |
| `slack:ask:<call id>` | the conversation of a question with options, for its buttons |
| `slack:card:<approval id>` | `{channel, ts, thread_ts, request}` of the approval card, to edit it after the decision |
| `slack:began:<outbound id>:<part>` | a post of this message part was attempted: a retry looks for it in Slack first |
| `slack:opening:<conversation>` | a renderer is posting a slash command's first message; the others wait for it |
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

import redis.asyncio as aioredis

from core import ApprovalRequest

THREAD_TTL_SECONDS = 30 * 24 * 3600  # replies in a bot thread are followed for a month
STATUS_TTL_SECONDS = 24 * 3600
CARD_TTL_SECONDS = 30 * 24 * 3600  # longer than any approval's expiry
BEGAN_TTL_SECONDS = 7 * 24 * 3600  # longer than delivery retries last (core/runtime/delivery.py: 6 hours)
OPENING_TTL_SECONDS = 30  # a renderer that died while opening a thread holds the others back this long
# A refusal (a missing scope, a token or workspace without the feature) is remembered this long: asked again
# after an hour, so an app given the scope or the feature later uses it without a restart.
REFUSED_TTL_SECONDS = 3600


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
    viewing: str = ""  # in an assistant thread: the channel the person is looking at
    title: str = ""  # in an assistant thread: its first request, which becomes the thread's title

    def reply_to(self) -> dict[str, str]:
        # getattr, not dataclasses.asdict (which deep-copies): this runs in every ack
        return {f"slack_{item.name}": value for item in fields(self) if (value := getattr(self, item.name))}

    @classmethod
    def of(cls, reply_to: Mapping[str, str]) -> Origin | None:
        """None when the thread is not a Slack one (an approval request sent here by policy)."""
        if not reply_to.get("slack_channel"):
            return None
        return cls(**{item.name: reply_to.get(f"slack_{item.name}", "") for item in fields(cls)})


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


@dataclass
class Progress:
    """The work going on in a conversation: its progress message (when Slack's status is not used), the
    tool steps of this turn as `(outbound id, text)`, and whether Slack's assistant status is set."""

    ts: str = ""
    steps: list[tuple[str, str]] = field(default_factory=list)
    assistant: bool = False


def thread_key(team: str, channel: str, thread_ts: str) -> str:
    return f"{team}/{channel}/{thread_ts}"


def dm_key(team: str, channel: str) -> str:
    """The one conversation of a direct message channel's top-level messages."""
    return f"{team}/{channel}/dm"


def place_kind(channel: str) -> str:
    """`im` for a direct message channel (ids start with D), `channel` for the others: Slack may let an
    app stream or show a status in one and not the other."""
    return "im" if channel.startswith("D") else "channel"


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

    async def lookup(self, key: str) -> tuple[str | None, str | None]:
        """The owner of the Slack thread `key` and, for an assistant thread, the channel viewed: one round trip."""
        owner, viewing = await self.redis.mget(f"slack:thread:{key}", f"slack:assistant:{key}")
        return _text(owner), _text(viewing)

    async def set_viewing(self, key: str, channel: str) -> None:
        """`key` is an assistant thread and the person is viewing `channel` ("" when none)."""
        await self.redis.set(f"slack:assistant:{key}", channel, ex=THREAD_TTL_SECONDS)

    async def claim_title(self, key: str) -> bool:
        return bool(await self.redis.set(f"slack:titled:{key}", "1", nx=True, ex=THREAD_TTL_SECONDS))

    async def status(self, conversation: str) -> Progress:
        raw = _text(await self.redis.get(f"slack:status:{conversation}"))
        if raw is None:
            return Progress()
        if not raw.startswith("{"):  # written before steps were kept: the progress message's ts
            return Progress(ts=raw)
        data = json.loads(raw)
        steps = [(str(step[0]), str(step[1])) for step in data.get("steps", [])]
        return Progress(str(data.get("ts", "")), steps, bool(data.get("assistant")))

    async def set_status(self, conversation: str, progress: Progress) -> None:
        value = json.dumps({"ts": progress.ts, "steps": progress.steps, "assistant": progress.assistant})
        await self.redis.set(f"slack:status:{conversation}", value, ex=STATUS_TTL_SECONDS)

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

    async def refused(self, kind: str) -> set[str]:
        """The features (`stream`, `status`) Slack refused for places of `kind`: one round trip."""
        features = ("stream", "status")
        found = await self.redis.mget([f"slack:refused:{feature}:{kind}" for feature in features])
        return {feature for feature, value in zip(features, found, strict=True) if value is not None}

    async def refuse(self, feature: str, kind: str, error: str) -> None:
        await self.redis.set(f"slack:refused:{feature}:{kind}", error, ex=REFUSED_TTL_SECONDS)

    async def set_stream(self, key: str, ts: str) -> None:
        await self.redis.set(f"slack:stream:{key}", ts, ex=BEGAN_TTL_SECONDS)

    async def stream(self, key: str) -> str | None:
        return _text(await self.redis.get(f"slack:stream:{key}"))

    async def set_asked(self, call_id: str, conversation: str) -> None:
        await self.redis.set(f"slack:ask:{call_id}", conversation, ex=THREAD_TTL_SECONDS)

    async def asked(self, call_id: str) -> str | None:
        return _text(await self.redis.get(f"slack:ask:{call_id}"))
