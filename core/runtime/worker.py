"""A worker: takes triggers from the inbox, lets the thread service apply them, acknowledges them.

Nothing in a worker's memory matters after an entry is acknowledged; an entry that is not
acknowledged (crash, lost lease) is claimed by another worker after `BOT_CLAIM_IDLE_MS`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from collections.abc import AsyncIterator

from core.domain import events as ev
from core.domain.backoff import Backoff
from core.domain.errors import ConflictError, StoreUnavailable, ThreadBusy
from core.domain.ids import new_id
from core.obs import failpoints, logs, tracing
from core.obs.metrics import Metrics
from core.redis import keys
from core.redis.bus import Bus
from core.redis.sweeper import Sweeper
from core.runtime.run import notice_to
from core.runtime.threads import Threads

log = logging.getLogger(__name__)
CONFLICT_RETRIES = 3
ACK_ATTEMPTS = 5
MAX_BACKOFF_SECONDS = 30.0
LANE_BLOCK_MS = 200  # a lane's wait for the next trigger: how soon it notices it is no longer needed
SWEEP_EVERY_SECONDS = 1.0  # deadlines are minutes long; not a Redis read per trigger


def consumer_name() -> str:
    return f"{socket.gethostname()}-{os.getpid()}-{new_id()[-6:]}"


class Worker:
    def __init__(
        self, threads: Threads, bus: Bus, name: str | None = None, sweeper: Sweeper | None = None, lane: bool = False
    ) -> None:
        self.threads = threads
        self.metrics = threads.metrics or Metrics()
        self.bus = bus
        self.name = name or consumer_name()
        self.sweeper = sweeper
        self._stopping = asyncio.Event()
        self._lanes: dict[str, asyncio.Task[None]] = {}  # by name: the lowest free number, so names are reused
        if not lane and threads.questions is not None and threads.questions.meanwhile is None:
            threads.questions.meanwhile = self.meanwhile

    @contextlib.asynccontextmanager
    async def meanwhile(self) -> AsyncIterator[None]:
        """While a call waits for a person (an MCP server's question), another lane takes the inbox: the
        answer may be the next trigger, and a bot with one worker would otherwise never read it."""
        name = next(
            f"{self.name}-lane{n}" for n in range(1, len(self._lanes) + 2) if f"{self.name}-lane{n}" not in self._lanes
        )
        lane = Worker(self.threads, self.bus, name, lane=True)
        task = asyncio.create_task(lane.run(block_ms=LANE_BLOCK_MS), name=name)
        self._lanes[name] = task
        task.add_done_callback(lambda _: self._lanes.pop(name, None))
        try:
            yield
        finally:
            lane.stop()  # it finishes the trigger it holds, if any, on its own; the call goes on now

    def stop(self) -> None:
        """Finish the current trigger, then return from `run`."""
        self._stopping.set()

    async def run(self, block_ms: int = 1000) -> None:
        pauses, swept = Backoff(first=0.5, cap=MAX_BACKOFF_SECONDS), 0.0
        while not self._stopping.is_set():
            try:
                if self.sweeper is not None and time.monotonic() - swept >= SWEEP_EVERY_SECONDS:
                    swept = time.monotonic()
                    await self.sweeper.sweep()  # deadlines are due whichever worker looks first
                await self.run_once(block_ms)
                pauses.reset()
            except Exception as exc:  # noqa: BLE001 - the worker outlives any failure, retrying with backoff
                pause = pauses.next()
                log.warning("worker %s: %s; retrying in %.1fs", self.name, exc, pause)
                await asyncio.sleep(pause)

    async def run_once(self, block_ms: int = 0) -> int:
        """Take one trigger from the inbox and handle it; returns how many were handled (0 or 1).

        One at a time, so a worker told to stop never holds taken-but-unstarted work.
        """
        entries = await self.bus.take(self.name, count=1, block_ms=block_ms)
        for entry_id, trigger in entries:
            # Every line logged for this trigger names it (the lease keeper's too), and none after it does.
            with logs.scope(trigger_id=trigger.id, channel=trigger.channel, thread_id=trigger.thread_id):
                keeping = asyncio.create_task(self._keep(entry_id))
                try:
                    await self._traced(entry_id, trigger)
                finally:
                    keeping.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await keeping
        return len(entries)

    async def _keep(self, entry_id: str) -> None:
        """While a step runs, keep the entry ours, so idle workers do not claim work that is not abandoned."""
        while True:
            await asyncio.sleep(self.bus.claim_idle_ms / 3000)
            try:
                await self.bus.keep(self.name, entry_id)
            except StoreUnavailable as exc:
                log.warning("worker %s: cannot keep entry %s (%s); retrying", self.name, entry_id, exc)

    async def _traced(self, entry_id: str, trigger: ev.Trigger) -> None:
        """Handle the trigger in a span that continues the publisher's trace (its context rides in the trigger)."""
        attributes: dict[str, tracing.Attribute] | None = None
        if tracing.on():
            attributes = {
                "messaging.system": "redis",
                "messaging.destination.name": keys.INBOX,
                "messaging.operation.type": "process",
                "bot.trigger_kind": trigger.kind,
            }
        with tracing.span(f"trigger {trigger.kind}", attributes, kind="consumer", parent=trigger.trace) as span:
            await self._handle(entry_id, trigger, span)
            if span.is_recording():  # the thread and agent are known once the thread service has looked
                for name, value in logs.fields().items():
                    span.set_attribute(f"bot.{name}", value)

    async def _handle(self, entry_id: str, trigger: ev.Trigger, span: tracing.Span) -> None:
        self.metrics.triggers.labels(trigger.kind, trigger.channel).inc()
        for attempt in range(1, CONFLICT_RETRIES + 1):
            try:
                await self.threads.handle(trigger)
            except ConflictError as exc:
                log.info("trigger %s: %s (attempt %d of %d)", trigger.id, exc, attempt, CONFLICT_RETRIES)
                self.metrics.retries.labels("conflict").inc()
                continue
            except ThreadBusy:
                log.warning("trigger %s: thread busy; leaving it for another attempt", trigger.id)
                self.metrics.retries.labels("thread_busy").inc()
                span.set_attribute("bot.outcome", "thread_busy")
                return
            except StoreUnavailable:
                self.metrics.retries.labels("store_unavailable").inc()
                raise
            except Exception as exc:
                log.exception("trigger %s failed", trigger.id)
                tracing.fail(span, type(exc).__name__)
                await self._park(entry_id, trigger, f"{type(exc).__name__}: {exc}")
                # What went wrong is in the log and the dead letter, for an operator; not in the chat.
                await self._tell_sender(
                    trigger,
                    f"your request could not be processed because of an internal error; nothing more was done. "
                    f"It was kept as dead letter {entry_id} for an operator (`bot` logs name it)",
                )
                return
            await failpoints.hit("before-ack")
            await self._ack(entry_id)
            return
        tracing.fail(span, ConflictError.__name__)
        await self._park(entry_id, trigger, "conflicting writers kept winning")

    async def _ack(self, entry_id: str) -> None:
        """Acknowledge, riding out a Redis blip: the work is done, and a redelivery would only re-check it."""
        pauses = Backoff(first=0.2, cap=0.8)  # a couple of seconds in all, then the redelivery takes over
        for attempt in range(1, ACK_ATTEMPTS + 1):
            try:
                return await self.bus.ack(entry_id)
            except StoreUnavailable as exc:
                if attempt == ACK_ATTEMPTS:
                    raise
                log.warning("worker %s: ack of %s failed (%s); retrying", self.name, entry_id, exc)
                await asyncio.sleep(pauses.next())

    async def _park(self, entry_id: str, trigger: ev.Trigger, error: str) -> None:
        self.metrics.dead_letters.inc()
        await self.bus.dead_letter(entry_id, trigger.model_dump_json(), error)

    async def _tell_sender(self, trigger: ev.Trigger, text: str) -> None:
        await self.bus.send(notice_to(trigger, text, level="error"))
