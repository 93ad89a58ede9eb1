"""The outbox: each message rendered once per channel group; a message that keeps failing is parked."""

from __future__ import annotations

import asyncio

from core.bus import Bus
from core.events import Outbound, Reply
from core.store import Store


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
        asyncio.gather(bus.deliver("slack", renderer("a"), stop, "a"), bus.deliver("slack", renderer("b"), stop, "b")),
        timeout=10,
    )
    assert sorted(outbound_id for _, outbound_id in seen) == [f"o{n}" for n in range(6)]


async def test_a_message_that_keeps_failing_is_parked_with_its_error(fake_redis) -> None:
    bus = Bus(fake_redis, Store(fake_redis))
    await bus.send(_reply(1, "poison"))
    await bus.send(_reply(2, "fine"))
    stop = asyncio.Event()
    rendered: list[str] = []

    async def render(outbound: Outbound) -> None:
        assert isinstance(outbound, Reply)
        if outbound.text == "poison":
            raise RuntimeError("channel_not_found")
        rendered.append(outbound.text)
        stop.set()

    await asyncio.wait_for(bus.deliver("slack", render, stop, "r"), timeout=10)
    dead = await fake_redis.xrange("outbox:slack:dead")
    assert rendered == ["fine"] and len(dead) == 1 and b"channel_not_found" in dead[0][1][b"error"]
