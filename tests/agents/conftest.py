"""A core with the shipped agents (config/agents.toml), wired as bot/main.py wires it, on one Redis.

`make_crew(client, models={"router": ScriptedModel(...), "incident": ...})` gives a `Harness` whose
agent runs the roster; each agent's (or the router's) language model is the scripted one named
for it, and an agent without one has no model (slash commands only).
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable, Mapping
from pathlib import Path

import fakeredis
import pytest
import redis.asyncio as aioredis

from bot.main import Wiring, build_wiring, thread_service
from config.settings import CONFIG_DIR
from core.domain import events as ev
from core.domain.ids import thread_id_for
from core.model.commands import CommandModel
from core.model.llm import Model
from core.model.prompts import PromptLibrary
from core.runtime.roster import Roster, load_roster
from tests.conftest import FakeClock, Harness, test_settings

AGENTS = CONFIG_DIR / "agents.toml"
MakeCrew = Callable[..., Harness]


def crew_wiring(wiring: Wiring, models: Mapping[str, Model], agents: Path = AGENTS) -> Wiring:
    """Give `core` the roster's agent loop, built from the same store, bus, runner and clock."""
    settings, old = wiring.settings, wiring.threads
    prompts = PromptLibrary(settings.prompts_dir)
    roster = load_roster(
        agents, wiring.tools, prompts, default=settings.agent, language=models.get, step_limit=settings.step_limit
    )
    wiring.threads = thread_service(
        store=old.store,
        publisher=old.publisher,
        tools=old.tools,
        runner=old.loop.runner,
        roster=roster,
        command=CommandModel(prompts, catalog=roster.catalog),
        clock=old.clock,
        redactor=old.redactor,
        metrics=old.metrics,
        error_limit=old.loop.error_limit,
    )
    return wiring


@pytest.fixture
def make_crew(tmp_path: Path, clock: FakeClock) -> MakeCrew:
    def factory(client: aioredis.Redis, models: Mapping[str, Model] | None = None, **env: str) -> Harness:
        settings = test_settings(tmp_path, **env)
        env_map = {"PATH": os.environ.get("PATH", ""), **env}
        wiring = build_wiring(settings, env_map, client, clock=clock)
        return Harness(wiring=crew_wiring(wiring, models or {}), clock=clock)

    return factory


@pytest.fixture(params=["fake", "real"])
async def redis_pair(request: pytest.FixtureRequest) -> AsyncIterator[tuple[aioredis.Redis, aioredis.Redis]]:
    """Two clients on one Redis, as two bot processes would hold: fakeredis, and a real server."""
    if request.param == "fake":
        server = fakeredis.FakeServer()
        first: aioredis.Redis = fakeredis.FakeAsyncRedis(server=server)
        second: aioredis.Redis = fakeredis.FakeAsyncRedis(server=server)
    else:
        url = request.getfixturevalue("embedded_redis")
        first, second = aioredis.Redis.from_url(url), aioredis.Redis.from_url(url)
        await first.flushdb()
    yield first, second
    await first.aclose()
    await second.aclose()


async def thread_events(h: Harness) -> list[ev.Event]:
    return await h.wiring.store.load_events(thread_id_for("cli", h.conversation))


async def replies(h: Harness) -> list[str]:
    return [o.text for o in await h.outbox() if isinstance(o, ev.Reply)]


def roster_of(h: Harness) -> Roster:
    return h.wiring.threads.roster
