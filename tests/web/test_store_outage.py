"""The API when Redis cannot take writes, when launches race, and when a decision cannot be queued."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from core.domain import events as ev
from core.domain.errors import StoreUnavailable
from core.redis.sweeper import Sweeper
from tests.web.conftest import BOB, CAROL, Server

DEPLOY = "/deploy api 1.4.2 production"


@pytest.fixture
async def real_redis(embedded_redis: str) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(embedded_redis)
    await client.flushdb()
    yield client
    await client.config_set("maxmemory", 0)  # the server is shared by the session: leave it writable
    await client.aclose()


def write_failures(server: Server, where: str) -> float:
    registry = server.harness.wiring.metrics.registry
    return registry.get_sample_value("bot_store_write_failures_total", {"where": where}) or 0.0


async def test_a_full_redis_gets_a_503_that_says_so_and_readyz_turns_false(real_redis, start_server) -> None:
    server = await start_server(real_redis)
    assert (await server.call("GET", "/readyz", token=None)).status == 200
    await real_redis.config_set("maxmemory-policy", "noeviction")
    await real_redis.config_set("maxmemory", 1)  # every write is now refused with OOM, as at the limit

    launch = await server.call("POST", "/v1/threads", token=BOB, json={"text": DEPLOY})
    ready = await server.call("GET", "/readyz", token=None)
    listing = await server.call("GET", "/v1/threads")

    assert (launch.status, launch.code, launch.headers["Retry-After"]) == (503, "store_unavailable", "5")
    assert "cannot store your request right now; nothing was done" in launch.message
    assert "OOM" in launch.message and "Traceback" not in launch.message
    assert (ready.status, ready.body) == (503, {"ready": False, "checks": {"redis": True, "redis_writes": False}})
    assert listing.status == 200, "reads still work while writes are refused"
    assert write_failures(server, "api") == 1 and write_failures(server, "readyz") == 1
    assert await real_redis.xlen("inbox") == 0

    await real_redis.config_set("maxmemory", 0)
    assert (await server.call("GET", "/readyz", token=None)).status == 200
    again = await server.call("POST", "/v1/threads", token=BOB, json={"text": DEPLOY})
    assert again.status == 202


async def test_of_twenty_launches_for_one_conversation_exactly_one_is_accepted(server: Server) -> None:
    body = {"text": "/status api", "conversation": "incident-42"}
    replies = await asyncio.gather(*(server.call("POST", "/v1/threads", token=BOB, json=body) for _ in range(20)))

    assert sorted(reply.status for reply in replies) == [202] + [409] * 19
    refused = next(reply for reply in replies if reply.status == 409)
    assert refused.code == "thread_exists" and "nothing was enqueued" in refused.message
    assert await server.inbox_length() == 1
    await server.drain()
    thread_id = next(reply.body["thread_id"] for reply in replies if reply.status == 202)
    later = await server.call("POST", "/v1/threads", token=BOB, json=body)
    assert (later.status, later.code) == (409, "thread_exists") and thread_id in later.message


async def test_a_decision_stored_but_not_queued_is_accepted_and_applied_by_a_sweeper(
    server: Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    launched = await server.call("POST", "/v1/threads", token=BOB, json={"text": DEPLOY})
    await server.drain()
    approval_id = (await server.call("GET", "/v1/approvals")).body["approvals"][0]["approval_id"]
    wiring = server.harness.wiring
    publish = wiring.bus.publish

    async def blip(trigger: ev.Trigger) -> bool:  # Redis goes away between the compare-and-set and the enqueue
        if isinstance(trigger, ev.DecisionTrigger) and not trigger.dedup_key:
            raise StoreUnavailable("Redis is unreachable (connection reset); check REDIS_URL")
        return await publish(trigger)

    monkeypatch.setattr(wiring.bus, "publish", blip)
    decided = await server.call("POST", f"/v1/approvals/{approval_id}/decision", json={"decision": "approve"})
    other = await server.call(
        "POST", f"/v1/approvals/{approval_id}/decision", token=CAROL, json={"decision": "reject", "comment": "no"}
    )

    assert decided.status == 202 and "Do not decide again" in decided.body["message"]
    assert (other.status, other.code) == (409, "approval_decided"), "the decision stands"
    await server.drain()
    assert not (tmp_path / "data" / "deployments.json").exists(), "nothing applied the decision yet"

    sweeper = Sweeper(wiring.store, wiring.bus, wiring.tools, server.harness.clock)
    server.harness.clock.advance(sweeper.quiet.total_seconds())
    assert await sweeper.redrive(server.harness.clock.now()) == 1
    await server.drain()

    history = json.loads((tmp_path / "data" / "deployments.json").read_text())["history"]
    assert [(e["service"], e["by"]) for e in history if e["action"] == "deploy"] == [("api", "web:bob")]
    thread = await server.call("GET", f"/v1/threads/{launched.body['thread_id']}")
    assert thread.body["thread"]["status"] == "done"
