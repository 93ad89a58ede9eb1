"""Fixtures for the email channel: Dovecot and an SMTP sink on loopback, and a running channel."""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from email.message import EmailMessage
from pathlib import Path
from typing import Any, TypeVar

import pytest
import redis.asyncio as aioredis

from adapters.email.channel import EmailChannel, ImapTiming
from adapters.email.imap import ImapClient
from config.channels import EmailSettings
from core.domain.ids import new_id
from tests.conftest import Harness
from tests.email.servers import DOVECOT, PASSWORD, Dovecot, SmtpSink
from tests.eventually import eventually

T = TypeVar("T")

BOT = "bot@example.com"
SECRET = "test-secret-0123456789abcdef"
FAST = ImapTiming(idle_seconds=30, timeout=5, backoff_first=0.05, backoff_max=0.5)
APPROVERS = "email:dana@example.com,email:erin@example.com"


def attempt_within(timing: ImapTiming) -> float:
    """The longest one connection attempt of the watcher takes: connect, LOGIN and SELECT, each within `timeout`."""
    return 3 * timing.timeout


def reconnect_within(timing: ImapTiming) -> float:
    """The longest a watcher takes to hold a session once the server answers: the attempt under way may
    still fail (it began while the server was starting), then one pause, then an attempt that works."""
    return 2 * attempt_within(timing) + timing.backoff_max


def need_dovecot() -> None:
    if not Path(DOVECOT).exists():
        pytest.skip("dovecot is not installed (apt-get install dovecot-imapd); the IMAP tests need a real server")


@pytest.fixture(scope="session")
def dovecot() -> Iterator[Dovecot]:
    """One Dovecot for the session; each test uses its own IMAP user, so its own mailbox."""
    need_dovecot()
    server = Dovecot()
    server.start()
    yield server
    server.stop()
    server.cleanup()


@pytest.fixture
def own_dovecot() -> Iterator[Dovecot]:
    """A Dovecot the test may stop and start."""
    need_dovecot()
    server = Dovecot()
    server.start()
    yield server
    server.stop()
    server.cleanup()


@pytest.fixture
async def smtp() -> AsyncIterator[SmtpSink]:
    sink = SmtpSink()
    server = await sink.serve()
    yield sink
    server.close()
    await server.wait_closed()


@pytest.fixture
async def redis(embedded_redis: str) -> AsyncIterator[aioredis.Redis]:
    """A real Redis: the outbox reader blocks on XREADGROUP, which fakeredis answers at once."""
    client = aioredis.Redis.from_url(embedded_redis)
    await client.flushdb()
    yield client
    await client.aclose()


def email_settings(dovecot: Dovecot, smtp: SmtpSink, user: str, **extra: str) -> EmailSettings:
    env = {
        "BOT_EMAIL_ADDRESS": BOT,
        "IMAP_HOST": "127.0.0.1",
        "IMAP_PORT": str(dovecot.port),
        "IMAP_USER": user,
        "IMAP_PASSWORD": PASSWORD,
        "IMAP_TLS": "none",
        "SMTP_HOST": "127.0.0.1",
        "SMTP_PORT": str(smtp.port),
        "SMTP_TLS": "none",
        "EMAIL_TOKEN_SECRET": SECRET,
        **extra,
    }
    settings = EmailSettings.from_env(env)
    assert isinstance(settings, EmailSettings)
    return settings


@dataclass
class MailWorld:
    """A core, the email channel running against Dovecot + the SMTP sink, and a mail client for the test."""

    h: Harness
    settings: EmailSettings
    smtp: SmtpSink
    dovecot: Dovecot
    timing: ImapTiming
    channel: EmailChannel | None = None
    imap: ImapClient | None = None
    _stop: asyncio.Event = field(default_factory=asyncio.Event)
    _task: asyncio.Task[None] | None = None

    def new_channel(self) -> EmailChannel:
        wiring = self.h.wiring
        return EmailChannel(self.settings, bus=wiring.bus, store=wiring.store, tools=wiring.tools, timing=self.timing)

    async def start(self) -> EmailChannel:
        self.channel = self.new_channel()
        self._stop = asyncio.Event()
        self._task = asyncio.create_task(self.channel.run(self._stop))
        return self.channel

    async def stop(self) -> None:
        if self._task is not None:
            self._stop.set()
            await asyncio.wait_for(self._task, 10)  # surfaces a crash of the channel
            self._task = None

    async def deliver(self, msg: EmailMessage | bytes, flags: str | None = None, when: datetime | None = None) -> None:
        """Put a mail in the bot's mailbox with IMAP APPEND, as delivery would."""
        if self.imap is None or self.imap.lost.is_set():  # the test may have dropped every connection
            self.imap = await ImapClient.connect(self.settings, 5)
        await self.imap.append(msg if isinstance(msg, bytes) else bytes(msg), self.settings.imap_mailbox, flags, when)

    async def until(
        self,
        check: Callable[[], T | Awaitable[T]],
        what: str = "what the test waits for",
        within: float = 10.0,
        drain: bool = True,
    ) -> T:
        """Let the worker run (unless `drain` is off) and poll `check` until it is truthy, or fail at the deadline."""

        async def step() -> T | None:
            if drain:
                await self.h.drain()
            result = check()
            if inspect.isawaitable(result):
                result = await result
            if not result and self._task is not None and self._task.done():
                self._task.result()  # the channel crashed: show why
            return result

        result = await eventually(step, what, within)
        assert result is not None  # eventually returns the first truthy result
        return result

    async def settle(self) -> None:
        """Process what is queued now; used before asserting that nothing more happened."""
        for _ in range(3):
            await self.h.drain()
            await asyncio.sleep(0.05)

    async def close(self) -> None:
        await self.stop()
        if self.imap is not None:
            await self.imap.close()


@pytest.fixture
async def make_world(
    dovecot: Dovecot, smtp: SmtpSink, redis: aioredis.Redis, make_harness: Callable[..., Harness]
) -> AsyncIterator[Callable[..., Awaitable[MailWorld]]]:
    worlds: list[MailWorld] = []

    async def factory(
        model: Any = None,
        server: Dovecot | None = None,
        email_env: dict[str, str] | None = None,
        timing: ImapTiming = FAST,
        **env: str,
    ) -> MailWorld:
        env = {"BOT_GROUP_ONCALL": APPROVERS, **env}
        h = make_harness(redis, model, **env)
        settings = email_settings(server or dovecot, smtp, f"bot-{new_id()[-8:]}", **(email_env or {}))
        world = MailWorld(h=h, settings=settings, smtp=smtp, dovecot=server or dovecot, timing=timing)
        worlds.append(world)
        await world.start()
        return world

    yield factory
    for world in worlds:
        await world.close()


@pytest.fixture(autouse=True)
def _email_logs(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="adapters")
    caplog.set_level(logging.INFO, logger="wiring.redis.bus")
