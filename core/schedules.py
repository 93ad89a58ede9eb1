"""Schedules (factor 11): cron expressions that launch an agent or a workflow, once per tick.

`config/schedules.toml` declares them::

    [schedules.stale_deploys]
    cron = "0 9 * * 1-5"         # minute hour day-of-month month day-of-week, read in `timezone`
    timezone = "Europe/London"   # an IANA zone; daylight saving time follows Debian cron's rules
    agent = "stale_deploys"      # an agent or a workflow of config/agents.toml
    text = "/stale_deploys"      # the message the thread starts with
    channel = "api"              # where the thread's messages go; `reply_to` is what that channel needs
    catch_up = "once"            # a tick missed while every process was down: "skip" it, or fire "once"

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
import tomllib
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal, Protocol
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import redis.asyncio as aioredis
from cronsim import CronSim, CronSimError
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from core.errors import ConfigError
from core.events import MessageTrigger, Trigger
from core.ids import new_id
from core.ports import Clock
from core.store import redis_errors

log = logging.getLogger(__name__)

CatchUp = Literal["skip", "once"]
MISSED_COUNT_CAP = 1000  # past this, "1000+ missed": the count is for the log, not for arithmetic
_SYNTAX_CHECK_START = datetime(2000, 1, 1, tzinfo=UTC)

# Moves the schedule's last tick forward, never back: true for exactly one caller per tick.
_ADVANCE = """
local last = tonumber(redis.call('GET', KEYS[1]) or '-1')
if tonumber(ARGV[1]) <= last then return 0 end
redis.call('SET', KEYS[1], ARGV[1])
return 1
"""


def last_tick_key(name: str) -> str:
    return f"schedule:{name}:last"


class Schedule(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    cron: str
    timezone: str = "UTC"
    agent: str
    text: str = Field(min_length=1)
    channel: str = "api"
    reply_to: dict[str, str] = {}
    catch_up: CatchUp = "skip"
    grace: int = Field(300, gt=0)  # seconds after its time during which a tick still counts as on time
    enabled: bool = True

    @field_validator("cron")
    @classmethod
    def _cron(cls, value: str) -> str:
        try:
            CronSim(value, _SYNTAX_CHECK_START)
        except CronSimError as exc:
            raise ValueError(f"{value!r} is not a cron expression ({exc}); use 5 fields like '0 9 * * 1-5'") from None
        return value

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"{value!r} is not an IANA time zone; use a name like 'Europe/London' or 'UTC'") from None
        return value

    def latest(self, now: datetime) -> datetime | None:
        """The last tick at or before `now`, in UTC."""
        local = now.astimezone(ZoneInfo(self.timezone)).replace(microsecond=0) + timedelta(seconds=1)
        tick: datetime | None = next(iter(CronSim(self.cron, local, reverse=True)), None)
        return tick.astimezone(UTC) if tick is not None else None

    def missed(self, after: datetime, before: datetime) -> int:
        """How many ticks fell strictly between two ticks (capped)."""
        count = 0
        for tick in CronSim(self.cron, after.astimezone(ZoneInfo(self.timezone))):
            if tick >= before or count >= MISSED_COUNT_CAP:
                break
            count += 1
        return count

    def trigger(self, tick: datetime) -> MessageTrigger:
        """A new thread per tick, from the schedule's own identity; the dedup key is the tick's lease."""
        stamp = f"{tick:%Y-%m-%dT%H:%MZ}"
        return MessageTrigger(
            id=new_id(), channel=self.channel, conversation=f"schedule/{self.name}/{stamp}",
            sender=f"schedule:{self.name}", text=self.text, agent=self.agent, reply_to=self.reply_to,
            dedup_key=f"schedule:{self.name}:{int(tick.timestamp())}",
        )  # fmt: skip


def load_schedules(path: Path, agents: Collection[str]) -> list[Schedule]:
    """Read config/schedules.toml; every schedule must launch one of `agents` (agents and workflows)."""
    try:
        raw = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"schedules file {path} does not exist; set BOT_SCHEDULES_FILE to a schedules.toml") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"schedules file {path} is not valid TOML: {exc}") from exc
    schedules = []
    for name, body in raw.get("schedules", {}).items():
        try:
            schedule = Schedule.model_validate({"name": name, **body})
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(part) for part in first["loc"])
            message = first["msg"].removeprefix("Value error, ")
            raise ConfigError(f"schedule {name!r} in {path}: {where}: {message}") from exc
        if schedule.agent not in agents:
            raise ConfigError(
                f"schedule {name!r} in {path} launches {schedule.agent!r}, which is not an agent or workflow; "
                f"use one of {sorted(agents)}"
            )
        if schedule.enabled:
            schedules.append(schedule)
    return schedules


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
