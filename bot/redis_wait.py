"""Waiting for Redis at start-up.

Long-running processes (`bot worker`, `bot serve`, `bot run`, `bot channels`) are started by
supervisors that do not order them after Redis, so they wait for it with backoff, saying each
time what they wait for (BOT_REDIS_WAIT_SECONDS bounds the wait; 0 waits forever). One-shot
commands fail at once with the same advice. Either way a Redis that answers "LOADING" is up and
reading its data set (a restart with a large append-only file): that is always waited for.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from urllib.parse import urlsplit, urlunsplit

import redis.asyncio as aioredis
import redis.exceptions

from core.domain.errors import StoreUnavailable
from core.redis.store import redis_errors

log = logging.getLogger(__name__)
FIRST_DELAY_SECONDS = 0.5
MAX_DELAY_SECONDS = 30.0
LOADING_DELAY_SECONDS = 0.25  # loading ends on its own: look often, say so now and then
LOADING_LOG_EVERY_SECONDS = 5.0
PROBE_TIMEOUT_SECONDS = 3.0


def shown(url: str) -> str:
    """The URL without its password, for logs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"{parts.username or ''}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


async def wait_for_redis(probe: Callable[[], aioredis.Redis], url: str, patience: float | None) -> None:
    """Return once Redis at `url` answers PING.

    `probe` builds a client without retries of its own, so each attempt is one PING. `patience`:
    seconds to wait for a Redis that does not answer (None: forever; 0: fail at once, as one-shot
    commands do). Raises StoreUnavailable saying what to do.
    """
    where = shown(url)
    started = time.monotonic()
    delay, attempt, loading_logged = FIRST_DELAY_SECONDS, 0, float("-inf")
    while True:
        attempt += 1
        client = probe()
        try:
            with redis_errors():
                try:
                    await client.ping()
                    return
                except redis.exceptions.BusyLoadingError:
                    if time.monotonic() - loading_logged >= LOADING_LOG_EVERY_SECONDS:
                        loading_logged = time.monotonic()
                        waited = loading_logged - started
                        log.warning(
                            "Redis at %s is loading its data set into memory; waiting (%.0fs so far)", where, waited
                        )
                    await asyncio.sleep(LOADING_DELAY_SECONDS)
                    continue
        except StoreUnavailable as exc:
            if patience == 0:
                raise
            waited = time.monotonic() - started
            remaining = None if patience is None else patience - waited
            if remaining is not None and remaining <= 0:
                raise StoreUnavailable(
                    f"Redis at {where} did not answer within BOT_REDIS_WAIT_SECONDS={patience:g}s ({exc.__cause__}); "
                    "start it or fix REDIS_URL, or set BOT_REDIS_WAIT_SECONDS=0 to wait forever"
                ) from exc
            pause = delay if remaining is None else min(delay, remaining)
            log.warning(
                "Redis at %s does not answer (%s); retrying in %gs (attempt %d, waiting %.0fs so far); "
                "start it or fix REDIS_URL",
                where,
                exc.__cause__,
                round(pause, 1),
                attempt,
                waited,
            )
            await asyncio.sleep(pause)
            delay = min(delay * 2, MAX_DELAY_SECONDS)
        finally:
            await client.aclose()
