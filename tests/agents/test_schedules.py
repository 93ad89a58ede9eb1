"""Schedules: cron in a time zone, one launch per tick across processes, an explicit catch-up policy."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from config.settings import CONFIG_DIR
from core.domain import events as ev
from core.domain.errors import ConfigError
from core.domain.schedules import Schedule, load_schedules
from core.redis import keys
from core.redis.scheduler import Scheduler, last_tick_key
from tests.agents.conftest import MakeCrew, roster_of
from tests.conftest import FakeClock, Harness

MONDAY_0900_LONDON = datetime(2026, 11, 23, 9, 0, 30, tzinfo=UTC)  # London is on UTC in November


def daily(name: str = "report", catch_up: str = "skip", **fields: str) -> Schedule:
    body = {"cron": "0 9 * * *", "timezone": "Europe/London", "agent": "stale_deploys", "text": "/stale_deploys"}
    return Schedule.model_validate({"name": name, "catch_up": catch_up, **body, **fields})


def scheduler(h: Harness, *schedules: Schedule) -> Scheduler:
    return Scheduler(schedules, h.wiring.redis, h.wiring.bus, h.clock)


async def test_two_schedulers_racing_on_one_tick_fire_once(
    redis_pair: tuple[aioredis.Redis, aioredis.Redis], make_crew: MakeCrew, clock: FakeClock
) -> None:
    first, second = make_crew(redis_pair[0]), make_crew(redis_pair[1])
    clock.current = MONDAY_0900_LONDON
    schedules = load_schedules(CONFIG_DIR / "schedules.toml", roster_of(first).names())

    results = await asyncio.gather(scheduler(first, *schedules).tick(), scheduler(second, *schedules).tick())

    firings = [firing for result in results for firing in result]
    assert [f.fired for f in firings].count(True) == 1
    assert all(f.tick == datetime(2026, 11, 23, 9, 0, tzinfo=UTC) for f in firings)
    assert await redis_pair[0].xlen(keys.INBOX) == 1
    assert await scheduler(second, *schedules).tick() == [], "the same tick never fires again"
    await second.drain()
    [thread] = await second.wiring.store.list_threads()
    assert (thread.agent, thread.requester, thread.channel, thread.status) == (
        "stale_deploys",
        "schedule:stale_deploys",
        "api",
        "done",
    )
    _, sent = await second.wiring.bus.follow("api", "0-0", block_ms=0)
    # One firing, one run: one progress note while its tool runs, then one final answer.
    assert [(o.final, o.text) for o in sent if isinstance(o, ev.Reply)] == [
        (False, "running list_services…"),
        (True, "stale deploys: none; all 4 services run the same version in staging and production."),
    ]


async def test_a_tick_missed_while_everything_was_down_follows_the_catch_up_policy(
    fake_redis: aioredis.Redis, make_crew: MakeCrew, clock: FakeClock
) -> None:
    h = make_crew(fake_redis)
    skip, once = daily("skip_it", "skip"), daily("catch_it", "once")
    clock.current = MONDAY_0900_LONDON
    assert [f.fired for f in await scheduler(h, skip, once).tick()] == [True, True]

    clock.current = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)  # down from Monday until Thursday noon
    late = await scheduler(h, skip, once).tick()

    assert [(f.schedule, f.fired, f.missed) for f in late] == [("skip_it", False, 2), ("catch_it", True, 2)]
    assert late[0].why == "missed; skipped"
    assert late[1].why == "missed; fired once to catch up (2 earlier ticks were missed too)"
    assert all(f.tick == datetime(2026, 11, 26, 9, 0, tzinfo=UTC) for f in late)
    assert await fake_redis.xlen(keys.INBOX) == 3
    assert await scheduler(h, skip, once).tick() == []

    clock.current = datetime(2026, 11, 27, 9, 1, tzinfo=UTC)
    assert [(f.fired, f.why) for f in await scheduler(h, skip, once).tick()] == [(True, "fired")] * 2


async def test_a_new_schedule_first_seen_after_its_time_waits_for_its_next_tick(
    fake_redis: aioredis.Redis, make_crew: MakeCrew, clock: FakeClock
) -> None:
    h = make_crew(fake_redis)
    clock.current = datetime(2026, 11, 23, 14, 0, tzinfo=UTC)
    [first] = await scheduler(h, daily(catch_up="once")).tick()
    assert (first.fired, first.why) == (False, "first seen after its time; starting from the next tick")
    assert float(await fake_redis.get(last_tick_key("report"))) == datetime(2026, 11, 23, 9, tzinfo=UTC).timestamp()
    assert await fake_redis.xlen(keys.INBOX) == 0


def test_the_cron_is_read_in_its_time_zone_with_daylight_saving() -> None:
    schedule = daily()
    summer = datetime(2026, 7, 1, 8, 0, 30, tzinfo=UTC)  # 09:00:30 in London (BST)
    assert schedule.latest(summer) == datetime(2026, 7, 1, 8, 0, tzinfo=UTC)
    assert schedule.latest(datetime(2026, 7, 1, 7, 59, tzinfo=UTC)) == datetime(2026, 6, 30, 8, 0, tzinfo=UTC)
    assert daily(timezone="UTC").latest(summer) == datetime(2026, 6, 30, 9, 0, tzinfo=UTC)
    # 01:30 does not exist on 29 March 2026 in London: Debian cron runs it when the clock jumps, at 02:00 BST.
    night = daily(cron="30 1 * * *")
    assert night.latest(datetime(2026, 3, 29, 1, 5, tzinfo=UTC)) == datetime(2026, 3, 29, 1, 0, tzinfo=UTC)


async def test_run_passes_until_stopped(fake_redis: aioredis.Redis, make_crew: MakeCrew, clock: FakeClock) -> None:
    h = make_crew(fake_redis)
    clock.current = MONDAY_0900_LONDON
    stop = asyncio.Event()
    stop.set()
    await scheduler(h, daily()).run(stop)  # one pass, then it sees the stop
    assert await fake_redis.xlen(keys.INBOX) == 1


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("cron = '0 25 * * *'", r"cron: '0 25 \* \* \*' is not a cron expression \(Bad hour\); use 5 fields"),
        ("cron = '0 9 * * *'\ntimezone = 'Mars/Olympus'", "'Mars/Olympus' is not an IANA time zone"),
        ("cron = '0 9 * * *'\ncatch_up = 'all'", "catch_up: Input should be 'skip' or 'once'"),
        ("cron = '0 9 * * *'\nagent = 'mailbot'", "launches 'mailbot', which is not an agent or workflow"),
    ],
)
def test_a_bad_schedule_is_a_config_error_that_says_what_to_fix(tmp_path: Path, body: str, message: str) -> None:
    path = tmp_path / "schedules.toml"
    defaults = "" if "agent" in body else "agent = 'status'\n"
    path.write_text(f"[schedules.daily]\ntext = 'report'\n{defaults}{body}\n")
    with pytest.raises(ConfigError, match=message):
        load_schedules(path, ["status", "release"])
