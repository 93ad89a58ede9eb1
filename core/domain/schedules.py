"""Schedules (factor 11): cron expressions that launch an agent or a workflow, once per tick.

`config/schedules.toml` declares them::

    [schedules.stale_deploys]
    cron = "0 9 * * 1-5"         # minute hour day-of-month month day-of-week, read in `timezone`
    timezone = "Europe/London"   # an IANA zone; daylight saving time follows Debian cron's rules
    agent = "stale_deploys"      # an agent or a workflow of config/agents.toml
    text = "/stale_deploys"      # the message the thread starts with
    channel = "api"              # where the thread's messages go; `reply_to` is what that channel needs
    catch_up = "once"            # a tick missed while every process was down: "skip" it, or fire "once"

`core/redis/scheduler.py` fires them.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cronsim import CronSim, CronSimError
from pydantic import BaseModel, ConfigDict, Field, field_validator

from core.domain.errors import ConfigError
from core.domain.events import MessageTrigger
from core.domain.ids import new_id
from core.domain.toml_file import load_toml, validated

CatchUp = Literal["skip", "once"]
MISSED_COUNT_CAP = 1000  # past this, "1000+ missed": the count is for the log, not for arithmetic
_SYNTAX_CHECK_START = datetime(2000, 1, 1, tzinfo=UTC)


def checked_cron(value: str, example: str) -> str:
    """`value` if it is a 5-field cron expression, else a ValueError that shows `example`."""
    try:
        CronSim(value, _SYNTAX_CHECK_START)
    except CronSimError as exc:
        raise ValueError(f"{value!r} is not a cron expression ({exc}); use 5 fields like {example!r}") from None
    return value


def checked_zone(value: str, example: str) -> str:
    """`value` if it names an IANA time zone, else a ValueError that shows `example`."""
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"{value!r} is not an IANA time zone; use a name like {example!r} or 'UTC'") from None
    return value


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
        return checked_cron(value, "0 9 * * 1-5")

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        return checked_zone(value, "Europe/London")

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
            id=new_id(),
            channel=self.channel,
            conversation=f"schedule/{self.name}/{stamp}",
            sender=f"schedule:{self.name}",
            text=self.text,
            agent=self.agent,
            reply_to=self.reply_to,
            dedup_key=f"schedule:{self.name}:{int(tick.timestamp())}",
        )


def load_schedules(path: Path, agents: Collection[str]) -> list[Schedule]:
    """Read config/schedules.toml; every schedule must launch one of `agents` (agents and workflows)."""
    raw = load_toml(path, "schedules file", missing="set BOT_SCHEDULES_FILE to a schedules.toml")
    schedules = []
    for name, body in raw.get("schedules", {}).items():
        schedule = validated(Schedule, {"name": name, **body}, f"schedule {name!r} in {path}")
        if schedule.agent not in agents:
            raise ConfigError(
                f"schedule {name!r} in {path} launches {schedule.agent!r}, which is not an agent or workflow; "
                f"use one of {sorted(agents)}"
            )
        if schedule.enabled:
            schedules.append(schedule)
    return schedules
