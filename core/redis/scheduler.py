"""The scheduler: fires the due ticks of the schedules (`core/domain/schedules.py`), once across processes.

Every worker process runs a `Scheduler`. A due tick is published with the dedup key
`schedule:<name>:<tick>` (a Redis SET NX lease, so racing processes publish it once), then the
schedule's last tick is moved forward with one compare-and-set. Because the last tick is kept, a
stop is noticed when the processes come back, and the catch-up policy decides:

- a tick is on time until `grace` seconds have passed since it; on time, it fires;
- a late tick (every process was down) fires once with `catch_up = "once"`, however many ticks
  were missed, and with `catch_up = "skip"` it is recorded and logged but not launched;
- a schedule seen for the first time starts now: only an on-time tick fires.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

import redis.asyncio as aioredis

from core.domain.events import Trigger
from core.domain.ports import Clock
from core.domain.schedules import Schedule
from core.redis.store import redis_errors

log = logging.getLogger(__name__)

# Moves the schedule's last tick forward, never back: true for exactly one caller per tick.
_ADVANCE = """
local last = tonumber(redis.call('GET', KEYS[1]) or '-1')
if tonumber(ARGV[1]) <= last then return 0 end
redis.call('SET', KEYS[1], ARGV[1])
return 1
"""


def last_tick_key(name: str) -> str:
    return f"schedule:{name}:last"


class Inbox(Protocol):
    async def publish(self, trigger: Trigger) -> bool: ...


@dataclass(frozen=True)
class Firing:
    """What one pass did with a due tick: launched it (`fired`), or not (skipped, or another process did)."""

    schedule: str
    tick: datetime
    fired: bool
    missed: int = 0
    why: str = ""


class Scheduler:
    """Fires due schedules; run one in every worker process, they agree through Redis."""

    def __init__(
        self, schedules: Sequence[Schedule], client: aioredis.Redis, inbox: Inbox, clock: Clock, every: float = 20.0
    ) -> None:
        self.schedules = list(schedules)
        self.redis = client
        self.inbox = inbox
        self.clock = clock
        self.every = every
        self._advance = client.register_script(_ADVANCE)

    async def tick(self) -> list[Firing]:
        """One pass over every schedule: launch what is due now, apply the catch-up policy to what was missed."""
        now = self.clock.now()
        firings = []
        for schedule in self.schedules:
            firing = await self._check(schedule, now)
            if firing is not None:
                firings.append(firing)
                level = logging.INFO if firing.fired or not firing.why.startswith("missed") else logging.WARNING
                log.log(level, "schedule %s tick %s: %s", schedule.name, f"{firing.tick:%Y-%m-%d %H:%M}Z", firing.why)
        return firings

    async def run(self, stop: asyncio.Event) -> None:
        """Tick every `every` seconds until `stop` is set; a failed pass is logged and retried next time."""
        while True:
            try:
                await self.tick()
            except Exception as exc:  # noqa: BLE001 - the scheduler outlives a Redis outage; the next pass retries
                log.warning("scheduler pass failed: %s; retrying in %.0fs", exc, self.every)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.every):
                    await stop.wait()
            if stop.is_set():
                return

    async def _check(self, schedule: Schedule, now: datetime) -> Firing | None:
        tick = schedule.latest(now)
        if tick is None:
            return None
        with redis_errors():
            raw: Any = await self.redis.get(last_tick_key(schedule.name))
        last = datetime.fromtimestamp(float(raw), UTC) if raw is not None else None
        if last is not None and tick <= last:
            return None  # fired (or skipped) already
        late = now - tick > timedelta(seconds=schedule.grace)
        missed = schedule.missed(last, tick) if last is not None else 0
        if late and (last is None or schedule.catch_up == "skip"):
            won = await self._move(schedule, tick)
            why = "first seen after its time; starting from the next tick" if last is None else "missed; skipped"
            return Firing(schedule.name, tick, False, missed, why) if won else None
        fired = await self.inbox.publish(schedule.trigger(tick))
        await self._move(schedule, tick)
        earlier = f" ({missed} earlier ticks were missed too)" if missed else ""
        why = f"missed; fired once to catch up{earlier}" if late else f"fired{earlier}"
        return Firing(schedule.name, tick, fired, missed, why if fired else "another process fired it")

    async def _move(self, schedule: Schedule, tick: datetime) -> bool:
        with redis_errors():
            return bool(await self._advance(keys=[last_tick_key(schedule.name)], args=[int(tick.timestamp())]))
