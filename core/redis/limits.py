"""Rate limits kept in Redis, so they hold across processes: the `limits` library's sliding-window
counter (one Lua call per hit, two counters per key whatever the rate: a moving window would keep
one entry per allowed hit, 1200 per address at the default).

`RateLimits` counts hits of named limits per key (an address, an identity, a requester) and
answers `Refused` with a message naming the limit and when to retry. The HTTP perimeter
(`bot/http/limits.py`) and the model budget (`core/runtime/budget.py`) are built on it. While Redis cannot
count (down, full, read-only) the limits let work through, logged once per WARN_EVERY_SECONDS:
the work then meets the same store and fails with its own clear error.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis
import redis.exceptions
from limits import RateLimitItem, parse
from limits.aio.storage import MemoryStorage, RedisStorage, Storage
from limits.aio.strategies import SlidingWindowCounterRateLimiter
from prometheus_client import Counter

log = logging.getLogger(__name__)
KEY_PREFIX = "ratelimit"
WARN_EVERY_SECONDS = 30.0


@dataclass(frozen=True)
class Limit:
    rate: str  # the `limits` notation: "60/minute", "10 per second"
    what: str  # what is counted, plural: "thread launches"


@dataclass(frozen=True)
class Refused:
    limit: str
    message: str
    retry_after: int


def check_rate(value: str) -> str:
    """A settings validator: `value` must be a rate in the `limits` notation."""
    try:
        parse(value)
    except ValueError as exc:
        raise ValueError(f"{value!r} is not a rate like 60/minute or 10 per second") from exc
    return value


def _storage(client: aioredis.Redis | None) -> Storage:
    if client is None or not hasattr(client, "connection_pool"):  # Redis Cluster: counted per process for now
        return MemoryStorage()
    pool: Any = client.connection_pool  # `limits` types its options as scalars; it passes them to redis-py
    return RedisStorage("async+redis://", implementation="redispy", key_prefix=KEY_PREFIX, connection_pool=pool)


class RateLimits:
    def __init__(self, client: aioredis.Redis | None, limits: Mapping[str, Limit], refused: Counter) -> None:
        """`refused`: the counter of refusals, labelled by limit name (`Wiring.rate_limited`)."""
        self.limiter = SlidingWindowCounterRateLimiter(_storage(client))
        self.items: dict[str, RateLimitItem] = {name: parse(limit.rate) for name, limit in limits.items()}
        self.what = {name: limit.what for name, limit in limits.items()}
        self.refused = refused
        self._warned_at = float("-inf")

    async def hit(self, limit: str, who: str) -> Refused | None:
        """Count one hit of `who` against `limit`; a Refused when it is over."""
        item = self.items[limit]
        try:
            if await self.limiter.hit(item, limit, who):
                return None
            stats = await self.limiter.get_window_stats(item, limit, who)
        except (redis.exceptions.RedisError, OSError) as exc:
            if time.monotonic() - self._warned_at >= WARN_EVERY_SECONDS:
                self._warned_at = time.monotonic()
                log.warning("rate limits are not counted while Redis cannot count (%s); work goes through", exc)
            return None
        retry_after = max(1, math.ceil(stats.reset_time - time.time()))
        self.refused.labels(limit).inc()
        message = (
            f"{who} made more than {item.amount} {self.what[limit]} per {item.multiples} "
            f"{item.GRANULARITY.name}; retry in {retry_after}s (limit `{limit}`)"
        )
        return Refused(limit, message, retry_after)
