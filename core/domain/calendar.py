"""Change freezes and allowed windows: when a gated call may not run, and until when.

`config/calendar.toml` declares them (a missing file declares none)::

    [freezes.year_end]                 # once: from `start` to `end`, read in `timezone`
    start = 2026-12-21T00:00:00
    end = 2027-01-04T09:00:00
    timezone = "Europe/Berlin"
    reason = "year-end change freeze"  # shown in the refusal

    [freezes.weekend]                  # recurring: each `cron` tick starts one, `duration` long
    cron = "0 16 * * 5"
    duration = "64h"                   # on the zone's wall clock: Friday 16:00 to Monday 08:00, DST or not
    timezone = "Europe/Berlin"

    [windows.business_hours]           # once any window is declared, gated calls run only inside one
    cron = "0 9 * * 1-5"
    duration = "8h"
    timezone = "Europe/Berlin"
    tools = ["deploy"]                 # optional, on freezes too: only these tools (default: every gated tool)

Pure: every answer is for an instant the caller passes in (its `Clock`); nothing here reads the time.
What a tool does in a freeze (refuse, or ask for an override) is its approval policy's `freeze`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Literal
from zoneinfo import ZoneInfo

from cronsim import CronSim
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from core.domain.durations import Seconds
from core.domain.errors import ConfigError
from core.domain.schedules import checked_cron, checked_zone
from core.domain.toml_file import load_toml, validated

CHAIN_LIMIT = 64  # freezes and windows followed end to end when working out when calls may run again


class Period(BaseModel):
    """A stretch of time: once (`start` to `end`) or recurring (each `cron` tick, for `duration`), in `timezone`."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    start: datetime | None = None  # without an offset, read in `timezone`
    end: datetime | None = None
    cron: str = ""
    duration: Seconds = Field(default=0, ge=0)
    timezone: str = "UTC"
    tools: list[str] = []  # only these tools; empty: every gated tool
    reason: str = ""

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        return checked_zone(value, "Europe/Berlin")

    @field_validator("cron")
    @classmethod
    def _cron(cls, value: str) -> str:
        return checked_cron(value, "0 16 * * 5") if value else value

    @model_validator(mode="after")
    def _one_form(self) -> Period:
        once = self.start is not None or self.end is not None
        if once and self.cron:
            raise ValueError("give either start and end, or cron and duration, not both")
        if once:
            if self.start is None or self.end is None:
                raise ValueError("a period given by dates needs both start and end")
            if self.local(self.end) <= self.local(self.start):
                raise ValueError(f"end ({self.end}) is not after start ({self.start}); swap them or fix the dates")
        elif not self.cron:
            raise ValueError(
                "say when: start and end, or cron and duration (e.g. cron = '0 16 * * 5', duration = '64h')"
            )
        elif self.duration <= 0:
            raise ValueError(f"cron {self.cron!r} needs a duration, e.g. duration = '8h'")
        return self

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def local(self, at: datetime) -> datetime:
        """A configured date as an instant: one without an offset is wall time in the period's zone."""
        return at.replace(tzinfo=self.zone) if at.tzinfo is None else at

    def covers(self, tool: str) -> bool:
        return not self.tools or tool in self.tools

    def occurrence(self, at: datetime) -> tuple[datetime, datetime] | None:
        """The occurrence that holds `at` (start inclusive, end exclusive), in UTC; None when none does."""
        if self.start is not None and self.end is not None:
            start, end = self.local(self.start), self.local(self.end)
            return (start.astimezone(UTC), end.astimezone(UTC)) if start <= at < end else None
        # The latest tick at or before `at` starts the occurrence that ends last (every one lasts as long).
        local = at.astimezone(self.zone).replace(microsecond=0) + timedelta(seconds=1)
        tick: datetime | None = next(iter(CronSim(self.cron, local, reverse=True)), None)
        if tick is None:
            return None
        end = self._end(tick)
        return (tick.astimezone(UTC), end) if at < end else None

    def next_start(self, at: datetime) -> datetime | None:
        """The first occurrence's start after `at`, in UTC; None when there is none."""
        if self.start is not None:
            start = self.local(self.start)
            return start.astimezone(UTC) if start > at else None
        tick: datetime | None = next(iter(CronSim(self.cron, at.astimezone(self.zone))), None)
        return tick.astimezone(UTC) if tick is not None else None

    def _end(self, tick: datetime) -> datetime:
        """`duration` after `tick` on the zone's wall clock: 64h from Friday 16:00 is Monday 08:00 across DST too."""
        wall = tick.replace(tzinfo=None) + timedelta(seconds=self.duration)
        return wall.replace(tzinfo=self.zone).astimezone(UTC)


@dataclass(frozen=True)
class Freeze:
    """Why a gated call may not run at an instant: a freeze holds it, or no allowed window is open.

    `ends`: when that stops (the freeze and any freeze it runs into, or the next window opening), in UTC;
    None when it never does (a window that will not open again). `reopens`: the first instant neither
    a freeze nor a closed window holds the call, which is later than `ends` when one leads into the other.
    """

    name: str
    kind: Literal["freeze", "window"]
    ends: datetime | None
    reopens: datetime | None
    reason: str = ""


class Calendar(BaseModel):
    """Every freeze and allowed window; `frozen(tool, at)` says whether a gated call of `tool` is held at `at`."""

    model_config = ConfigDict(frozen=True)

    freezes: list[Period] = []
    windows: list[Period] = []

    def frozen(self, tool: str, at: datetime) -> Freeze | None:
        """The freeze or the closed window that holds a gated call of `tool` at `at`, or None: it may run."""
        at = at.astimezone(UTC)
        if covering := self._freezes_at(tool, at):
            period = max(covering, key=lambda pair: pair[1])[0]
            ends = self._freeze_chain_end(tool, at)
            return Freeze(period.name, "freeze", ends, self._reopens(tool, ends), period.reason)
        windows = [w for w in self.windows if w.covers(tool)]
        if not windows or any(w.occurrence(at) for w in windows):
            return None
        opens = self._next_window(windows, at)
        name = ", ".join(w.name for w in windows)
        reason = next((w.reason for w in windows if w.reason), "")
        return Freeze(name, "window", opens, self._reopens(tool, opens), reason)

    def _freezes_at(self, tool: str, at: datetime) -> list[tuple[Period, datetime]]:
        found = []
        for period in self.freezes:
            if period.covers(tool) and (occurrence := period.occurrence(at)):
                found.append((period, occurrence[1]))
        return found

    def _freeze_chain_end(self, tool: str, at: datetime) -> datetime:
        """When no freeze holds `tool` any more, following freezes that start before the last one ends."""
        for _ in range(CHAIN_LIMIT):
            covering = self._freezes_at(tool, at)
            if not covering:
                break
            at = max(end for _, end in covering)
        return at

    def _next_window(self, windows: list[Period], at: datetime) -> datetime | None:
        starts = [start for w in windows if (start := w.next_start(at)) is not None]
        return min(starts, default=None)

    def _reopens(self, tool: str, at: datetime | None) -> datetime | None:
        """The first instant at or after `at` that neither a freeze nor a closed window holds."""
        windows = [w for w in self.windows if w.covers(tool)]
        for _ in range(CHAIN_LIMIT):
            if at is None:
                return None
            at = self._freeze_chain_end(tool, at)
            if not windows or any(w.occurrence(at) for w in windows):
                return at
            at = self._next_window(windows, at)
        return at


def load_calendar(path: Path, known: Callable[[str], bool] | None = None) -> Calendar:
    """Read config/calendar.toml (BOT_CALENDAR_FILE); a missing file is a calendar with no freezes or windows.

    `known` says whether a tool exists: a period naming another (a typo would freeze nothing) is an error.
    """
    raw = load_toml(path, "calendar file")
    if unknown := sorted(set(raw) - {"freezes", "windows"}):
        raise ConfigError(f"calendar file {path}: unknown tables {unknown}; use [freezes.<name>] and [windows.<name>]")
    periods: dict[str, list[Period]] = {}
    for table, what in (("freezes", "freeze"), ("windows", "window")):
        periods[table] = [
            validated(Period, {"name": name, **body}, f"{what} {name!r} in {path}")
            for name, body in raw.get(table, {}).items()
        ]
        for period in periods[table]:
            if strays := [tool for tool in period.tools if known is not None and not known(tool)]:
                raise ConfigError(f"{what} {period.name!r} in {path} names unknown tools {strays}; fix its `tools`")
    return Calendar(freezes=periods["freezes"], windows=periods["windows"])
