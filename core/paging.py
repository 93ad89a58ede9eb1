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

TIE_SLACK = 64  # members at the same score as a page's last one, read past to skip those already shown


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
    """Up to `limit` members of the sorted set `key` past `after`, and the cursor of the next page (None: last)."""
    num = limit + 1 + TIE_SLACK
    rows: list[tuple[str, float]]
    if newest_first:
        # Ties at one score come in reverse member order: skip those up to and including `after`.
        high = "+inf" if after is None else repr(after.score)
        found: Any = await client.zrevrangebyscore(key, high, "-inf", start=0, num=num, withscores=True)
        rows = [(_s(member), float(score)) for member, score in found]
        if after is not None:
            rows = [(m, s) for m, s in rows if s < after.score or m < after.member]
    else:
        low = "-inf" if after is None else repr(after.score)
        found = await client.zrangebyscore(key, low, "+inf", start=0, num=num, withscores=True)
        rows = [(_s(member), float(score)) for member, score in found]
        if after is not None:
            rows = [(m, s) for m, s in rows if s > after.score or m > after.member]
    rows = rows[: limit + 1]
    following = Cursor(rows[limit - 1][1], rows[limit - 1][0]) if len(rows) > limit else None
    return [member for member, _ in rows[:limit]], following
