"""Rendering a channel's outbox: nothing dropped, nothing shown twice, one conversation never blocks another."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest

from core.domain import events as ev
from core.domain.errors import ChannelError, DeliveryRefused
from core.redis import keys
from core.redis.bus import Bus
from core.redis.store import Store
from core.runtime.delivery import Delivery
from tests.eventually import eventually


def _reply(n: int, conversation: str = "T1/C1/1.0", text: str = "hi") -> ev.Reply:
    return ev.Reply(id=f"o{n}", channel="slack", conversation=conversation, thread_id=f"t-{conversation}", text=text)


class Platform:
    """A recording renderer: refuses with 429 (Retry-After) while `limited` holds for a conversation."""

    def __init__(self) -> None:
        self.shown: list[str] = []
        self.calls: list[str] = []
        self.limited: set[str] = set()
        self.refuse: set[str] = set()

    async def render(self, outbound: ev.Outbound) -> None:
        self.calls.append(outbound.id)
        if outbound.id in self.refuse:
            raise DeliveryRefused("channel_not_found: the bot is not in that channel")
        if outbound.conversation in self.limited:
            raise ChannelError("ratelimited", retry_after=0.05)
        self.shown.append(outbound.id)


@pytest.fixture
def bus(redis_client) -> Bus:
    return Bus(redis_client, Store(redis_client), claim_idle_ms=600)


async def _delivering(bus: Bus, platform: Platform, stop: asyncio.Event, **options: float) -> asyncio.Task[None]:
    delivery = Delivery(bus, "slack", platform.render, "r1", **options)  # type: ignore[arg-type]
    return asyncio.create_task(delivery.run(stop))


async def test_a_rate_limited_conversation_waits_and_others_go_on(bus: Bus) -> None:
    """Slack answers 429 for one thread for a while: its messages wait, in order, and arrive when the
    limit lifts; another thread's message goes out meanwhile."""
    platform = Platform()
    platform.limited.add("busy")
    for n, conversation in [(1, "busy"), (2, "busy"), (3, "calm")]:
        await bus.send(_reply(n, conversation))
    stop = asyncio.Event()
    task = await _delivering(bus, platform, stop)
    try:
        await eventually(lambda: _shown(platform, "o3"), "the calm thread's message")
        await eventually(lambda: platform.calls.count("o1") >= 3, "a few retries of the limited one")
        assert "o1" not in platform.shown and "o2" not in platform.calls, "o2 waits behind o1"
        platform.limited.clear()
        await eventually(lambda: _shown(platform, "o2"), "the limited thread's messages once the limit lifts")
        assert platform.shown == ["o3", "o1", "o2"]
        await eventually(lambda: _async_fn(bus.backlog(keys.outbox("slack")), 0), "every entry acknowledged")
    finally:
        stop.set()
        await task
    assert await bus.redis.xlen("outbox:slack:dead") == 0


async def test_a_refused_message_is_parked_and_its_thread_told(bus: Bus) -> None:
    platform = Platform()
    platform.refuse.add("o1")
    await bus.send(_reply(1))
    await bus.send(_reply(2))
    stop = asyncio.Event()
    task = await _delivering(bus, platform, stop)
    try:
        await eventually(lambda: _shown(platform, "o2"), "the next message of the conversation")
    finally:
        stop.set()
        await task
    dead = await bus.redis.xrange("outbox:slack:dead")
    assert len(dead) == 1 and b"channel_not_found" in dead[0][1][b"error"]
    [(_, told)] = await bus.take("w", block_ms=0)
    assert isinstance(told, ev.ControlTrigger) and told.action == "undeliverable"
    assert (told.outbound_id, told.thread_id, told.outbound_kind) == ("o1", "t-T1/C1/1.0", "reply")


async def test_retries_stop_at_the_limit_and_say_so(bus: Bus) -> None:
    platform = Platform()
    platform.limited.add("T1/C1/1.0")
    await bus.send(_reply(1))
    stop = asyncio.Event()
    task = await _delivering(bus, platform, stop, give_up_after=0.3)
    try:
        await eventually(
            lambda: _async_fn(bus.redis.xlen("outbox:slack:dead"), 1), "the message parked after the limit"
        )
    finally:
        stop.set()
        await task
    [(_, told)] = await bus.take("w", block_ms=0)
    assert isinstance(told, ev.ControlTrigger) and "gave up after" in told.reason


async def test_a_message_rendered_before_is_not_rendered_again(bus: Bus) -> None:
    """The outbox holds a message twice (a relay after a crash): the second copy is acknowledged unseen."""
    platform = Platform()
    await bus.send(_reply(1))
    await bus.send(_reply(1))
    await bus.send(_reply(2))
    stop = asyncio.Event()
    task = await _delivering(bus, platform, stop)
    try:
        await eventually(lambda: _shown(platform, "o2"), "the message after the copies")
        await eventually(lambda: _async_fn(bus.backlog(keys.outbox("slack")), 0), "every entry acknowledged")
    finally:
        stop.set()
        await task
    assert sorted(platform.calls) == ["o1", "o2"]


async def test_a_live_renderers_slow_message_is_not_taken_over(bus: Bus) -> None:
    """A render that takes longer than the claim interval keeps its lease: a second renderer does not
    render it again (40 of 60 were rendered twice before leases)."""
    release = asyncio.Event()
    calls: list[tuple[str, str]] = []

    def renderer(name: str) -> Callable[[ev.Outbound], Awaitable[None]]:
        async def render(outbound: ev.Outbound) -> None:
            calls.append((name, outbound.id))
            await release.wait()

        return render

    for n in range(20):
        await bus.send(_reply(n, conversation=f"c{n}"))
    stop = asyncio.Event()
    tasks = [asyncio.create_task(Delivery(bus, "slack", renderer(name), name).run(stop)) for name in ("a", "b")]
    try:
        await eventually(lambda: len(calls) >= 8, "renders under way")
        await asyncio.sleep(3 * bus.claim_idle_ms / 1000)  # three claim intervals with both renderers alive
        assert len({oid for _, oid in calls}) == len(calls), "nothing taken over from a live renderer"
        release.set()
        await eventually(lambda: _async_fn(bus.backlog(keys.outbox("slack")), 0), "every entry acknowledged")
    finally:
        release.set()
        stop.set()
        await asyncio.gather(*tasks)
    assert sorted(oid for _, oid in calls) == sorted(f"o{n}" for n in range(20)), "each rendered once"


async def test_delivered_entries_are_trimmed_and_undelivered_ones_kept(bus: Bus) -> None:
    for n in range(5):
        await bus.send(_reply(n))
    taken = await bus.receive("slack", "r", block_ms=0, count=2)
    for entry_id, outbound in taken:
        await bus.done("slack", entry_id, outbound_id=outbound.id)
    assert await bus.trim(keys.outbox("slack")) == 2
    assert await bus.redis.xlen(keys.outbox("slack")) == 3
    assert await bus.backlog(keys.outbox("slack")) == 3
    rest = await bus.receive("slack", "r", block_ms=0)
    assert [o.id for _, o in rest] == ["o2", "o3", "o4"]


async def _shown(platform: Platform, outbound_id: str) -> bool:
    return outbound_id in platform.shown


async def _async_fn(result: Awaitable[int], expected: int) -> bool:
    return await result == expected
