"""What the email channel keeps in Redis, with its key names and lifetimes in one place.

| key | type | what |
|---|---|---|
| `email:uid:<account>:<mailbox>:<uidvalidity>` | string | highest UID handled (only ever grows) |
| `email:root:<message-id>` | string | conversation root of a mail we received or sent |
| `email:conv:<root>` | hash | `last` inbound Message-ID, `refs` chain, `subject` |
| `email:appr:<approval id>` | hash | approver identity -> Message-ID of their approval mail |
| `email:apprmsg:<message-id>` | string | the approval an approval mail asks about |
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis
import redis.exceptions

from core import StoreUnavailable

THREAD_TTL_SECONDS = 90 * 24 * 3600
APPROVAL_TTL_SECONDS = 30 * 24 * 3600
MAX_REFERENCES = 20  # the root and the newest ones: enough for every client to thread

_ADVANCE = """
local current = tonumber(redis.call('GET', KEYS[1]) or '0')
if tonumber(ARGV[1]) > current then redis.call('SET', KEYS[1], ARGV[1]) end
return current
"""


def uid_key(account: str, mailbox: str, uidvalidity: int) -> str:
    return f"email:uid:{account}:{mailbox}:{uidvalidity}"


def root_key(message_id: str) -> str:
    return f"email:root:{message_id}"


def conv_key(root: str) -> str:
    return f"email:conv:{root}"


def approval_key(approval_id: str) -> str:
    return f"email:appr:{approval_id}"


def approval_msg_key(message_id: str) -> str:
    return f"email:apprmsg:{message_id}"


@contextlib.contextmanager
def _redis_errors() -> Iterator[None]:
    try:
        yield
    except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as exc:
        raise StoreUnavailable(f"Redis is unreachable ({exc}); check REDIS_URL, then retry") from exc


def _s(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def chain(references: list[str], message_id: str) -> list[str]:
    """The References of a reply to `message_id`: the root and the newest ids, without repeats."""
    ids = list(dict.fromkeys([*references, message_id]))
    return ids if len(ids) <= MAX_REFERENCES else [ids[0], *ids[-(MAX_REFERENCES - 1) :]]


@dataclass(frozen=True)
class Conversation:
    last: str
    refs: list[str]
    subject: str


class EmailState:
    def __init__(self, client: aioredis.Redis) -> None:
        self.redis = client
        self._advance = client.register_script(_ADVANCE)

    async def last_uid(self, key: str) -> int | None:
        """The highest UID handled in this mailbox generation; None the first time it is seen."""
        with _redis_errors():
            raw = await self.redis.get(key)
        return None if raw is None else int(raw)

    async def advance_uid(self, key: str, uid: int) -> None:
        with _redis_errors():
            await self._advance(keys=[key], args=[uid])

    async def root_of(self, message_ids: list[str]) -> str | None:
        """The conversation root of the first of these mails that we know."""
        if not message_ids:
            return None
        with _redis_errors():
            roots = await self.redis.mget([root_key(mid) for mid in message_ids])
        return next((_s(root) for root in roots if root is not None), None)

    async def remember(self, message_id: str, root: str) -> None:
        with _redis_errors():
            await self.redis.set(root_key(message_id), root, ex=THREAD_TTL_SECONDS)

    async def note_inbound(self, root: str, message_id: str, references: list[str], subject: str) -> None:
        """A mail arrived in the conversation: the next reply answers it."""
        fields: dict[Any, Any] = {
            "last": message_id,
            "refs": " ".join(chain(references, message_id)),
            "subject": subject,
        }
        with _redis_errors():
            async with self.redis.pipeline(transaction=True) as pipe:
                pipe.set(root_key(message_id), root, ex=THREAD_TTL_SECONDS)
                pipe.hset(conv_key(root), mapping=fields)
                pipe.expire(conv_key(root), THREAD_TTL_SECONDS)
                await pipe.execute()

    async def conversation(self, root: str) -> Conversation | None:
        with _redis_errors():
            raw = await self.redis.hgetall(conv_key(root))
        if not raw:
            return None
        fields = {_s(k): _s(v) for k, v in raw.items()}
        return Conversation(last=fields["last"], refs=fields["refs"].split(), subject=fields.get("subject", ""))

    async def approval_mail(self, approval_id: str, approver: str) -> str | None:
        with _redis_errors():
            raw = await self.redis.hget(approval_key(approval_id), approver)
        return None if raw is None else _s(raw)

    async def record_approval_mail(self, approval_id: str, approver: str, message_id: str) -> None:
        with _redis_errors():
            async with self.redis.pipeline(transaction=True) as pipe:
                pipe.hset(approval_key(approval_id), approver, message_id)
                pipe.expire(approval_key(approval_id), APPROVAL_TTL_SECONDS)
                pipe.set(approval_msg_key(message_id), approval_id, ex=APPROVAL_TTL_SECONDS)
                pipe.set(root_key(message_id), message_id, ex=THREAD_TTL_SECONDS)
                await pipe.execute()

    async def approval_of(self, message_ids: list[str]) -> str | None:
        """The approval whose approval mail one of these ids is, if any."""
        if not message_ids:
            return None
        with _redis_errors():
            found = await self.redis.mget([approval_msg_key(mid) for mid in message_ids])
        return next((_s(aid) for aid in found if aid is not None), None)
