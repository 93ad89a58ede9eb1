"""The seams the core depends on; production classes and test fakes satisfy them structurally."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Protocol

from core.domain.events import Outbound


class Clock(Protocol):
    def now(self) -> datetime: ...


class Publisher(Protocol):
    async def send(self, outbound: Outbound) -> None: ...


class ChannelAdapter(Protocol):
    """A channel: turns its input into Triggers on the inbox and renders its outbox, until `stop`."""

    name: str

    async def run(self, stop: asyncio.Event) -> None: ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)
