"""The bus: each message rendered once per channel group; triggers that kill workers are parked; leases."""

from __future__ import annotations

import asyncio

from core.domain.events import Outbound, Reply
from core.redis.bus import Bus
from core.redis.store import Store
from core.runtime.delivery import deliver


def _reply(n: int, text: str = "hi") -> Reply:
    return Reply(id=f"o{n}", channel="slack", conversation="T1/C1/1.0", thread_id="t1", text=text)


async def test_two_renderers_share_the_outbox_and_render_each_message_once(redis_client) -> None:
    bus = Bus(redis_client, Store(redis_client))
    for n in range(6):
        await bus.send(_reply(n))
    seen: list[tuple[str, str]] = []
    stop = asyncio.Event()

    def renderer(name: str):
        async def render(outbound: Outbound) -> None:
            seen.append((name, outbound.id))
            if len(seen) == 6:
                stop.set()

        return render

    await asyncio.wait_for(
        asyncio.gather(
            deliver(bus, "slack", renderer("a"), stop, "a"), deliver(bus, "slack", renderer("b"), stop, "b")
        ),
        timeout=10,
    )
    assert sorted(outbound_id for _, outbound_id in seen) == [f"o{n}" for n in range(6)]


async def test_a_trigger_that_keeps_killing_workers_is_parked(fake_redis) -> None:
    from core.domain.events import MessageTrigger

    bus = Bus(fake_redis, Store(fake_redis), claim_idle_ms=0)
    await bus.publish(MessageTrigger(id="m1", channel="cli", conversation="c", sender="cli:x", text="/status"))
    assert len(await bus.take("crashing-1", block_ms=0)) == 1
    for n in range(4):  # four more workers take it over and die without acknowledging it
        assert len(await bus.take(f"crashing-{n + 2}", block_ms=0)) == 1
    assert await bus.take("survivor", block_ms=0) == [], "the sixth delivery is not attempted"
    dead = await fake_redis.xrange("inbox:dead")
    assert len(dead) == 1 and b"delivered 6 times" in dead[0][1][b"error"]
    assert (await fake_redis.xpending("inbox", "workers"))["pending"] == 0


async def test_a_held_thread_lease_is_renewed_and_released(redis_client) -> None:
    store = Store(redis_client, lock_ttl_ms=300)
    async with store.lock("t1"):
        await asyncio.sleep(0.5)  # longer than the TTL: only renewal keeps the lease
        assert await redis_client.exists("thread:{t1}:lock")
        other = redis_client.lock("thread:{t1}:lock", timeout=1, blocking_timeout=0.05)
        assert not await other.acquire()
    assert not await redis_client.exists("thread:{t1}:lock")


async def test_a_dead_renderers_messages_are_taken_over(fake_redis) -> None:
    bus = Bus(fake_redis, Store(fake_redis), claim_idle_ms=0)
    await bus.send(_reply(1))
    assert [o.id for _, o in await bus.receive("slack", "dies-mid-render", block_ms=0)] == ["o1"]
    taken = await bus.receive("slack", "survivor", block_ms=0)
    assert [o.id for _, o in taken] == ["o1"]
    await bus.done("slack", taken[0][0])
    assert await bus.receive("slack", "survivor", block_ms=0) == []
