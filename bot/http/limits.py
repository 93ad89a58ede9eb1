"""Rate limits for the HTTP perimeter, kept in Redis so they hold across `web` processes.

Three limits, each a sliding-window counter (`limits`' Lua scripts; bursts up to the limit are allowed):

| limit | counted per | what | default |
|---|---|---|---|
| `address` | source address | every request without a known token (webhooks, console pages, wrong or missing tokens), before its body is read | `BOT_RATE_ADDRESS` 1200/minute |
| `identity` | token identity | every authenticated API and console call but launches | `BOT_RATE_IDENTITY` 600/minute |
| `launch` | token identity | thread creations (`POST /v1/threads`, the console's new thread) | `BOT_RATE_LAUNCH` 60/minute |

A refused request is a 429 `rate_limited` naming the limit, with `Retry-After`, counted by
`bot_rate_limited_total{limit}`. While Redis cannot count (down, full, read-only) the limits let
requests through, logged: the request then meets the same store and gets its own clear 503, and
reads keep working while Redis is full. The counting is `core.redis.limits.RateLimits`.
"""

from __future__ import annotations

import redis.asyncio as aioredis
from prometheus_client import Counter

from config.channels import HttpSettings
from core.redis.limits import Limit, RateLimits, Refused

__all__ = ["Refused", "http_limits"]


def http_limits(client: aioredis.Redis | None, settings: HttpSettings, refused: Counter) -> RateLimits:
    """The perimeter's three limits; `refused` counts 429s by limit (`Wiring.rate_limited`)."""
    return RateLimits(
        client,
        {
            "address": Limit(settings.rate_address, "requests from this address"),
            "identity": Limit(settings.rate_identity, "API calls"),
            "launch": Limit(settings.rate_launch, "thread launches"),
        },
        refused,
    )
