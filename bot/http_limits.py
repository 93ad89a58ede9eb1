"""Rate limits for the HTTP perimeter, kept in Redis so they hold across `web` processes.

Three limits, each a moving window (`limits`' Lua scripts; bursts up to the limit are allowed):

| limit | counted per | what | default |
|---|---|---|---|
| `address` | source address | every request, before its body is read or its token checked | `BOT_RATE_ADDRESS` 1200/minute |
| `identity` | token identity | every authenticated API and console call | `BOT_RATE_IDENTITY` 600/minute |
| `launch` | token identity | thread creations (`POST /v1/threads`, the console's new thread) | `BOT_RATE_LAUNCH` 60/minute |

A refused request is a 429 `rate_limited` naming the limit, with `Retry-After`, counted by
`bot_rate_limited_total{limit}`. While Redis cannot count (down, full, read-only) the limits let
requests through, logged: the request then meets the same store and gets its own clear 503, and
reads keep working while Redis is full.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis
import redis.exceptions
from limits import RateLimitItem, parse
from limits.aio.storage import MemoryStorage, RedisStorage, Storage
from limits.aio.strategies import MovingWindowRateLimiter
from prometheus_client import Counter

from config.channels import HttpSettings

log = logging.getLogger(__name__)
KEY_PREFIX = "ratelimit"
WARN_EVERY_SECONDS = 30.0
WHAT = {
    "address": "requests from this address",
    "identity": "API calls",
    "launch": "thread launches",
}


@dataclass(frozen=True)
class Refused:
    limit: str
    message: str
    retry_after: int


def _storage(client: aioredis.Redis | None) -> Storage:
    if client is None or not hasattr(client, "connection_pool"):  # Redis Cluster: counted per process for now
        return MemoryStorage()
    pool: Any = client.connection_pool  # `limits` types its options as scalars; it passes them to redis-py
    return RedisStorage("async+redis://", implementation="redispy", key_prefix=KEY_PREFIX, connection_pool=pool)


class RateLimits:
    def __init__(self, client: aioredis.Redis | None, settings: HttpSettings, refused: Counter) -> None:
        """`refused`: the counter of 429s, labelled by limit (`Core.rate_limited`)."""
        self.limiter = MovingWindowRateLimiter(_storage(client))
        self.items: dict[str, RateLimitItem] = {
            "address": parse(settings.rate_address),
            "identity": parse(settings.rate_identity),
            "launch": parse(settings.rate_launch),
        }
        self.refused = refused
        self._warned_at = float("-inf")  # one warning per WARN_EVERY_SECONDS while Redis cannot count

    async def hit(self, limit: str, who: str) -> Refused | None:
        """Count one request of `who` against `limit`; a Refused when it is over."""
        item = self.items[limit]
        try:
            if await self.limiter.hit(item, limit, who):
                return None
            stats = await self.limiter.get_window_stats(item, limit, who)
        except (redis.exceptions.RedisError, OSError) as exc:
            if time.monotonic() - self._warned_at >= WARN_EVERY_SECONDS:
                self._warned_at = time.monotonic()
                log.warning("rate limits are not counted while Redis cannot count (%s); requests go through", exc)
            return None
        retry_after = max(1, math.ceil(stats.reset_time - time.time()))
        self.refused.labels(limit).inc()
        message = (
            f"{who} sent more than {item.amount} {WHAT[limit]} per {item.multiples} {item.GRANULARITY.name}; "
            f"retry in {retry_after}s (limit `{limit}`)"
        )
        return Refused(limit, message, retry_after)
