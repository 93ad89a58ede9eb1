"""Shared fixtures: Redis (fake and real), a fixed clock, a scripted model, and a core factory."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import fakeredis
import pytest
import redis.asyncio as aioredis

from bot.main import Wiring, build_wiring
from bot.redis_server import EmbeddedRedis
from config.settings import Settings
from core.domain.events import MessageTrigger, Outbound, Reply
from core.domain.ids import new_id
from core.model.function import FunctionModel
from core.model.llm import Choice, ModelRequest


@pytest.fixture(autouse=True)
def _no_real_model_calls(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any test that forgets to point the SDK at a fake fails instead of reaching api.anthropic.com."""
    monkeypatch.setenv("ANTHROPIC_BASE_URL", "http://127.0.0.1:9/not-a-real-model-api")
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)


@pytest.fixture(scope="session")
def embedded_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real redis-server: REDIS_URL when given, else the embedded one, stopped at the end."""
    if url := os.environ.get("TEST_REDIS_URL"):
        yield url
        return
    server = EmbeddedRedis(tmp_path_factory.mktemp("redis"))
    url = server.start()
    yield url
    server.stop_if_last()


@pytest.fixture(params=["fake", "real"])
async def redis_client(request: pytest.FixtureRequest) -> AsyncIterator[aioredis.Redis]:
    """The same tests run on fakeredis and on a real Redis server."""
    if request.param == "fake":
        client: aioredis.Redis = fakeredis.FakeAsyncRedis(server=fakeredis.FakeServer())
    else:
        client = aioredis.Redis.from_url(request.getfixturevalue("embedded_redis"))
        await client.flushdb()
    yield client
    await client.aclose()


@pytest.fixture
async def fake_redis() -> AsyncIterator[aioredis.Redis]:
    client: aioredis.Redis = fakeredis.FakeAsyncRedis(server=fakeredis.FakeServer())
    yield client
    await client.aclose()


@dataclass
class FakeClock:
    current: datetime = field(default_factory=lambda: datetime(2026, 11, 23, 14, 0, tzinfo=UTC))

    def now(self) -> datetime:
        return self.current

    def advance(self, seconds: float) -> None:
        self.current += timedelta(seconds=seconds)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


class ScriptedModel(FunctionModel):
    """A language model from a list of choices, or a function of the request; records every request.
    Built on `core.FunctionModel`, reading the thread's events first as a language model does."""

    def __init__(self, script: list[Choice] | Callable[[ModelRequest], Choice]) -> None:
        super().__init__(self._next, reads_history=True)
        self.script = script
        self.requests: list[ModelRequest] = []

    def _next(self, request: ModelRequest) -> Choice:
        self.requests.append(request)
        if callable(self.script):
            return self.script(request)
        if not self.script:
            raise AssertionError("ScriptedModel ran out of choices")
        return self.script.pop(0)


def call(tool: str, **args: Any) -> Choice:
    return Choice(tool=tool, args=args, reason=f"scripted {tool}")


# On call beside cli:operator (the shipped tools file's member): the shipped policies need an approver
# other than the requester, and the harness speaks as cli:operator.
APPROVER = "cli:dana"


def test_settings(tmp_path: Path, **env: str) -> Settings:
    base = {"BOT_DATA_DIR": str(tmp_path / "data"), "BOT_WORKDIR": str(tmp_path), "BOT_GROUP_ONCALL": APPROVER}
    return Settings.from_env(base | env)


@dataclass
class Harness:
    """A core on one Redis with helpers to talk to it the way a channel would."""

    wiring: Wiring
    clock: FakeClock
    user: str = "cli:operator"
    conversation: str = field(default_factory=lambda: f"operator/{new_id()}")

    def trigger(self, text: str, sender: str | None = None) -> MessageTrigger:
        return MessageTrigger(
            id=new_id(), channel="cli", conversation=self.conversation, sender=sender or self.user, text=text
        )

    async def say(self, text: str, sender: str | None = None) -> None:
        """Deliver a message through the inbox and let one worker process everything queued."""
        await self.wiring.bus.publish(self.trigger(text, sender))
        await self.drain()

    async def drain(self) -> None:
        worker = self.wiring.worker("test-worker")
        while await worker.run_once():
            pass

    async def outbox(self, progress: bool = False) -> list[Outbound]:
        """Every outbound message on the `cli` channel; progress notes only when asked for."""
        _, items = await self.wiring.bus.follow("cli", "0-0", block_ms=0)
        return [o for o in items if progress or not (isinstance(o, Reply) and not o.final)]


@pytest.fixture
def make_harness(tmp_path: Path, clock: FakeClock) -> Callable[..., Harness]:
    def factory(client: aioredis.Redis, model: ScriptedModel | None = None, **env: str) -> Harness:
        settings = test_settings(tmp_path, **env)
        env_map = {"PATH": os.environ.get("PATH", ""), **env}
        wiring = build_wiring(settings, env_map, client, language_model=model, clock=clock)
        return Harness(wiring=wiring, clock=clock)

    return factory


def quorum_tools(tmp_path: Path, approvals: int) -> str:
    """The default tools file with production deploys needing `approvals` approvers; its path."""
    text = (Path(__file__).parent.parent / "config" / "tools.toml").read_text()
    gate = 'approvers = ["group:oncall"], allow_self = false, expires_in = 3600 }'
    assert gate in text, "config/tools.toml's deploy policy changed; update this helper"
    path = tmp_path / "tools.toml"
    path.write_text(text.replace(gate, gate.replace(" }", f", approvals = {approvals} }}"), 1))
    return str(path)
