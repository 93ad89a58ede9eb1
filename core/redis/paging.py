"""Cursor pages over a sorted-set index (threads by creation, approvals by deadline or decision time).

A page is read from just past the cursor: the last member's score and id, so a member is on exactly
one page however many are added while someone pages, as long as its score never changes. O(log n +
limit) per page.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis

MAX_TIES = 10_000  # members read at the cursor's own score (threads created in the same microsecond)


@dataclass(frozen=True)
class Cursor:
    """Where a page ended: the last member's score and id."""

    score: float
    member: str

    def token(self) -> str:
        return base64.urlsafe_b64encode(f"{self.score!r}:{self.member}".encode()).decode().rstrip("=")

    @classmethod
    def parse(cls, token: str) -> Cursor:
        """Raises ValueError for a token that `token()` did not make."""
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
        score, _, member = raw.partition(":")
        if not member:
            raise ValueError(token)
        return cls(float(score), member)


def _s(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


async def page(
    client: aioredis.Redis, key: str, limit: int, after: Cursor | None = None, *, newest_first: bool = True
) -> tuple[list[str], Cursor | None]:
    """Up to `limit` members of the sorted set `key` past `after`, and the cursor of the next page (None: last).

    One round trip: the members strictly past the cursor's score, and those at its score (ties, usually
    none but the cursor's own), of which the ones past the cursor's member come first.
    """
    found: Any
    if after is None:  # the first page: one command, no pipeline to build
        read = client.zrevrangebyscore if newest_first else client.zrangebyscore
        ends = ("+inf", "-inf") if newest_first else ("-inf", "+inf")
        found = [await read(key, *ends, start=0, num=limit + 1, withscores=True)]
    else:
        async with client.pipeline(transaction=False) as pipe:
            at = repr(after.score)
            if newest_first:
                pipe.zrevrangebyscore(key, f"({at}", "-inf", start=0, num=limit + 1, withscores=True)
                pipe.zrevrangebyscore(key, at, at, start=0, num=MAX_TIES, withscores=True)
            else:
                pipe.zrangebyscore(key, f"({at}", "+inf", start=0, num=limit + 1, withscores=True)
                pipe.zrangebyscore(key, at, at, start=0, num=MAX_TIES, withscores=True)
            found = await pipe.execute()
    past = [(_s(member), float(score)) for member, score in found[0]]
    ties: list[tuple[str, float]] = []
    if after is not None:  # at one score, members come in reverse order newest first, in order oldest first
        ties = [(_s(member), float(score)) for member, score in found[1]]
        ties = [(m, s) for m, s in ties if (m < after.member if newest_first else m > after.member)]
    rows = (ties + past)[: limit + 1]
    following = Cursor(rows[limit - 1][1], rows[limit - 1][0]) if len(rows) > limit else None
    return [member for member, _ in rows[:limit]], following
