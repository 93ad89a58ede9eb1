"""Rendering one channel's outbox: each message shown once, in order per conversation, never dropped.

- Entries are read with the channel's consumer group, so several renderer processes share the work.
  A renderer renews the lease on every entry it holds (rendering it, or waiting to retry it), so a
  live renderer's messages are never taken over; a dead one's are, after `claim_idle_ms`.
- An outbound id is recorded as rendered in the same transaction as the acknowledgement; one
  recorded already (a duplicate entry, a retry after a crash) is acknowledged without rendering.
  The gap between the platform call and that record is each renderer's to close (Slack metadata,
  Discord nonces, email Message-IDs: docs/channels.md).
- Messages of one conversation are rendered one after another; conversations go concurrently, so
  one thread's backlog (a platform answering 429 for minutes) never holds back another's messages.
- A failure is retried after the platform's `retry_after`, else with exponential backoff and
  jitter, until `give_up_after`; a `DeliveryRefused` is not retried. Giving up parks the message on
  `outbox:<channel>:dead` and tells its thread, which records `delivery_failed` for people to see.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable

from core.domain import events as ev
from core.domain.backoff import Backoff
from core.domain.errors import ChannelError, DeliveryRefused, StoreUnavailable
from core.domain.ids import new_id
from core.obs import failpoints, logs, tracing
from core.redis.bus import Bus

log = logging.getLogger(__name__)

GIVE_UP_AFTER_SECONDS = 6 * 3600.0  # a platform down longer than this is a human's problem: say so
MAX_BACKOFF_SECONDS = 120.0
MAX_HELD = 200  # entries one renderer holds at once (rendering or waiting); it reads more as they finish
RENDERS_AT_ONCE = 8
TRIM_EVERY_SECONDS = 5.0

Render = Callable[[ev.Outbound], Awaitable[None]]


def backoff(pauses: Backoff, retry_after: float | None) -> float:
    """Seconds before the next attempt: what the platform asked for, else the next of `pauses`."""
    pause = pauses.next()  # every failure counts, the ones the platform said how long to wait after too
    if retry_after is not None:
        return float(max(0.0, retry_after)) + pauses.rng.uniform(0, 0.5)
    return pause


class Delivery:
    def __init__(
        self,
        bus: Bus,
        channel: str,
        render: Render,
        consumer: str,
        group: str = "renderers",
        give_up_after: float = GIVE_UP_AFTER_SECONDS,
    ) -> None:
        self.bus = bus
        self.channel = channel
        self.render = render
        self.consumer = consumer
        self.group = group
        self.give_up_after = give_up_after
        self._held: dict[str, ev.Outbound] = {}  # entry id -> message, until acknowledged
        self._recent: dict[str, None] = {}  # outbound ids this renderer just finished, oldest first
        self._lanes: dict[str, asyncio.Queue[tuple[str, ev.Outbound]]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._renders = asyncio.Semaphore(RENDERS_AT_ONCE)
        self._room = asyncio.Event()

    async def run(self, stop: asyncio.Event) -> None:
        """Until `stop`; then the messages being rendered finish, and what is held is left for takeover."""
        halt = asyncio.Event()  # ours: set when `stop` is, or when reading ends
        watching = asyncio.create_task(stop.wait())
        watching.add_done_callback(lambda _: halt.set())
        keeping = asyncio.create_task(self._keep(halt), name=f"{self.channel}-outbox-lease")
        log.info("outbox %s: renderer %s started", self.channel, self.consumer)
        try:
            await self._read(halt)
        finally:
            halt.set()
            if self._tasks:
                await asyncio.gather(*self._tasks, return_exceptions=True)
            for task in (keeping, watching):
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    async def _read(self, stop: asyncio.Event) -> None:
        trimmed, pauses = 0.0, Backoff(first=0.5, cap=30.0)
        while not stop.is_set():
            if len(self._held) >= MAX_HELD:
                self._room.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._room.wait(), 1.0)
                continue
            try:
                items = await self.bus.receive(self.channel, self.consumer, self.group, block_ms=500)
                items = [(eid, item) for eid, item in items if eid not in self._held]
                shown = await self.bus.rendered_ids(self.channel, [item.id for _, item in items])
                if time.monotonic() - trimmed >= TRIM_EVERY_SECONDS:
                    trimmed = time.monotonic()
                    await self.bus.trim(f"outbox:{self.channel}")
                pauses.reset()
            except Exception as exc:  # noqa: BLE001 - keep delivering once Redis is back
                pause = pauses.next()
                log.warning("outbox %s: %s; retrying in %.1fs", self.channel, exc, pause)
                await _sleep(stop, pause)
                continue
            for entry_id, outbound in items:
                self._held[entry_id] = outbound
                if outbound.id in shown:  # a duplicate, or rendered by a renderer that died before its ack
                    self._spawn(self._finish(entry_id, outbound, stop))
                else:
                    self._enqueue(entry_id, outbound, stop)

    def _enqueue(self, entry_id: str, outbound: ev.Outbound, stop: asyncio.Event) -> None:
        lane = self._lanes.get(outbound.conversation)
        if lane is None:
            lane = self._lanes[outbound.conversation] = asyncio.Queue()
            self._spawn(self._drain(outbound.conversation, lane, stop))
        lane.put_nowait((entry_id, outbound))

    def _spawn(self, work: Awaitable[None]) -> None:
        task: asyncio.Task[None] = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and (exc := task.exception()) is not None:
            log.error("outbox %s: delivery task failed: %r", self.channel, exc)

    async def _drain(
        self, conversation: str, lane: asyncio.Queue[tuple[str, ev.Outbound]], stop: asyncio.Event
    ) -> None:
        """One conversation's messages, in order; the lane closes when it is empty."""
        try:
            while not lane.empty() and not stop.is_set():
                entry_id, outbound = lane.get_nowait()
                if outbound.id in self._recent:  # a second copy in the same read
                    await self._finish(entry_id, outbound, stop)
                    continue
                with logs.scope(thread_id=outbound.thread_id, channel=self.channel):  # this lane's task only
                    error = await self._deliver(outbound, stop)
                    if error is None:
                        await self._finish(entry_id, outbound, stop)
                    elif not stop.is_set():  # when stopping, it stays pending for another renderer
                        await self._give_up(entry_id, outbound, error, stop)
        finally:
            # No await since the lane was last seen empty: nothing can have arrived in it meanwhile.
            if self._lanes.get(conversation) is lane:
                del self._lanes[conversation]

    async def _deliver(self, outbound: ev.Outbound, stop: asyncio.Event) -> str | None:
        """Render until it works (None), or until giving up or stopping (the last error)."""
        started, attempt, error = time.monotonic(), 0, "stopped before rendering"
        pauses = Backoff(first=0.5, cap=MAX_BACKOFF_SECONDS)
        while not stop.is_set():
            await failpoints.hit("before-render")
            try:
                async with self._renders:
                    with tracing.span(f"deliver {outbound.kind}", self._span_attributes(outbound, attempt)):
                        await self.render(outbound)
            except DeliveryRefused as exc:
                return str(exc)
            except Exception as exc:  # noqa: BLE001 - a channel failure is retried; the message is never dropped
                error = str(exc) or type(exc).__name__
                retry_after = exc.retry_after if isinstance(exc, ChannelError) else None
                delay = backoff(pauses, retry_after)
                if time.monotonic() - started + delay > self.give_up_after:
                    return f"{error} (gave up after {attempt + 1} attempts in {time.monotonic() - started:.0f}s)"
                attempt += 1
                log.warning(
                    "outbox %s: rendering %s %s failed (attempt %d): %s; retrying in %.1fs",
                    self.channel,
                    outbound.kind,
                    outbound.id,
                    attempt,
                    exc,
                    delay,
                )
                await _sleep(stop, delay)
                continue
            await failpoints.hit("after-render")
            return None
        return error

    def _span_attributes(self, outbound: ev.Outbound, attempt: int) -> dict[str, tracing.Attribute] | None:
        """Which message went where (no text: it can be anything a tool printed); None when not tracing."""
        if not tracing.on():
            return None
        return {
            "bot.channel": self.channel,
            "bot.thread_id": outbound.thread_id,
            "bot.outbound_id": outbound.id,
            "bot.outbound_kind": outbound.kind,
            "bot.attempt": attempt + 1,
        }

    async def _finish(self, entry_id: str, outbound: ev.Outbound, stop: asyncio.Event) -> None:
        """Record it rendered and acknowledge it; retried through Redis outages, never fatal."""
        await self._until_stored(stop, lambda: self.bus.done(self.channel, entry_id, self.group, outbound.id))
        self._recent[outbound.id] = None
        if len(self._recent) > MAX_HELD:
            del self._recent[next(iter(self._recent))]
        self._release(entry_id)

    async def _give_up(self, entry_id: str, outbound: ev.Outbound, error: str, stop: asyncio.Event) -> None:
        notice = ev.ControlTrigger(
            id=new_id(),
            channel=self.channel,
            conversation=outbound.conversation,
            sender="system",
            thread_id=outbound.thread_id,
            action="undeliverable",
            reason=error,
            outbound_id=outbound.id,
            outbound_kind=outbound.kind,
            dedup_key=f"undeliverable:{self.channel}:{outbound.id}",
        )
        if outbound.thread_id:
            await self._until_stored(stop, lambda: self.bus.publish(notice))
        await self._until_stored(stop, lambda: self.bus.park(self.channel, entry_id, outbound, error, self.group))
        self._release(entry_id)

    def _release(self, entry_id: str) -> None:
        self._held.pop(entry_id, None)
        self._room.set()

    async def _until_stored(self, stop: asyncio.Event, write: Callable[[], Awaitable[object]]) -> None:
        pauses = Backoff(first=0.2, cap=10.0)
        while True:
            try:
                await write()
                return
            except StoreUnavailable as exc:
                if stop.is_set():
                    return  # still held in Redis: another renderer finishes it
                pause = pauses.next()
                log.warning("outbox %s: %s; retrying in %.1fs", self.channel, exc, pause)
                await _sleep(stop, pause)

    async def _keep(self, stop: asyncio.Event) -> None:
        """Renew the lease on every held entry a few times per claim interval."""
        while not stop.is_set():
            await _sleep(stop, self.bus.claim_idle_ms / 3000)
            try:
                await self.bus.keep_outbound(self.channel, self.consumer, list(self._held), self.group)
            except StoreUnavailable as exc:
                log.warning("outbox %s: cannot renew leases (%s); retrying", self.channel, exc)


async def _sleep(stop: asyncio.Event, seconds: float) -> None:
    """Sleep, waking early when `stop` is set."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)


async def deliver(
    bus: Bus,
    channel: str,
    render: Callable[[ev.Outbound], Awaitable[None]],
    stop: asyncio.Event,
    consumer: str,
    group: str = "renderers",
) -> None:
    """Render a channel's outbound messages until `stop`, each once across the group's processes:
    per-conversation order, retries that honour Retry-After, leases, give-up (`Delivery`)."""
    await Delivery(bus, channel, render, consumer, group).run(stop)
