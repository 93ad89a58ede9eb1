"""What the Discord channel remembers in Redis, so any process can act on it.

- `discord:thread:<thread id>` -> the parent channel id of a thread the bot started; messages in
  those threads are the bot's to answer, and replies to a conversation go there.
- `discord:card:<approval id>` -> where the approval card was posted, what its decided record
  keeps (the tool, its arguments in a line, the link to the request), and whether a decision
  receipt has edited it, so any process can edit it over REST, once.
- `discord:question:<call id>` -> the options of a question (JSON), so a click on any process
  answers with the option's whole text (a button's label is clipped at 80 characters).
- `discord:parts:<outbound id>` -> part index -> the id of the message Discord made for it, so a
  retry (after a 429 or an outage longer than Discord's nonce window) posts only the parts missing.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis

THREAD_TTL_SECONDS = 90 * 24 * 3600
CARD_GRACE_SECONDS = 7 * 24 * 3600  # keep a card's location this long after its approval expires
PARTS_TTL_SECONDS = 24 * 3600  # longer than delivery retries one message (core.runtime.delivery: 6 hours)
QUESTION_TTL_SECONDS = 30 * 24 * 3600


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def thread_key(thread_id: int) -> str:
    return f"discord:thread:{thread_id}"


def card_key(approval_id: str) -> str:
    return f"discord:card:{approval_id}"


def parts_key(key: str) -> str:
    return f"discord:parts:{key}"


def question_key(call_id: str) -> str:
    return f"discord:question:{call_id}"


@dataclass(frozen=True)
class Card:
    channel_id: int
    message_id: int
    tool: str = ""
    args: str = ""  # the arguments in one line, for the decided record
    link: str = ""  # the request the card is about
    decided: bool = False


class DiscordStore:
    def __init__(self, client: aioredis.Redis) -> None:
        self.redis = client

    async def own_thread(self, thread_id: int, parent_id: int) -> None:
        await self.redis.set(thread_key(thread_id), parent_id, ex=THREAD_TTL_SECONDS)

    async def thread_parent(self, channel_id: int) -> int | None:
        """The parent channel when `channel_id` is a thread the bot started, else None."""
        raw: Any = await self.redis.get(thread_key(channel_id))
        return int(_text(raw)) if raw is not None else None

    async def save_card(self, approval_id: str, card: Card, ttl_seconds: int) -> None:
        key = card_key(approval_id)
        fields = {
            "channel": card.channel_id,
            "message": card.message_id,
            "tool": card.tool,
            "args": card.args,
            "link": card.link,
        }
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(key, mapping=fields)  # type: ignore[arg-type]  # redis-py's mapping type is too narrow
            pipe.expire(key, max(ttl_seconds, 0) + CARD_GRACE_SECONDS)
            await pipe.execute()

    async def card(self, approval_id: str) -> Card | None:
        raw: Any = await self.redis.hgetall(card_key(approval_id))
        if not raw:
            return None
        fields = {_text(key): _text(value) for key, value in raw.items()}
        return Card(
            int(fields["channel"]),
            int(fields["message"]),
            fields.get("tool", ""),
            fields.get("args", ""),
            fields.get("link", ""),
            fields.get("decided") == "1",
        )

    async def mark_decided(self, approval_id: str) -> None:
        await self.redis.hset(card_key(approval_id), "decided", "1")

    async def parts_sent(self, key: str) -> set[int]:
        """The parts of `key`'s text that Discord has already made a message for."""
        raw: Any = await self.redis.hkeys(parts_key(key))
        return {int(_text(part)) for part in raw}

    async def part_sent(self, key: str, part: int, message_id: int) -> None:
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(parts_key(key), str(part), message_id)
            pipe.expire(parts_key(key), PARTS_TTL_SECONDS)
            await pipe.execute()

    async def save_options(self, call_id: str, options: list[str]) -> None:
        await self.redis.set(question_key(call_id), json.dumps(options), ex=QUESTION_TTL_SECONDS)

    async def options(self, call_id: str) -> list[str]:
        raw: Any = await self.redis.get(question_key(call_id))
        return [str(option) for option in json.loads(_text(raw))] if raw is not None else []
