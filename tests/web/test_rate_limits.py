"""Rate limits in Redis: a flood gets 429 with Retry-After, and two servers on one Redis share the count."""

from __future__ import annotations

import asyncio

import redis.asyncio as aioredis

from tests.web.conftest import ALICE, BOB


async def test_a_launch_flood_from_one_identity_gets_429_with_retry_after(start_server, fake_redis) -> None:
    server = await start_server(fake_redis, BOT_RATE_LAUNCH="5/minute")
    replies = [await server.call("POST", "/v1/threads", token=BOB, json={"text": "/status api"}) for _ in range(8)]

    assert [reply.status for reply in replies] == [202] * 5 + [429] * 3
    refused = replies[-1]
    assert refused.code == "rate_limited" and "web:bob made more than 5 thread launches per 1 minute" in refused.message
    assert 1 <= int(refused.headers["Retry-After"]) <= 60
    other = await server.call("POST", "/v1/threads", token=ALICE, json={"text": "/status api"})
    assert other.status == 202, "each identity has its own count"
    assert await server.inbox_length() == 6
    registry = server.harness.core.metrics.registry
    assert registry.get_sample_value("bot_rate_limited_total", {"limit": "launch"}) == 3


async def test_every_api_call_counts_against_the_identity(start_server, fake_redis) -> None:
    server = await start_server(fake_redis, BOT_RATE_IDENTITY="3/minute")
    statuses = [(await server.call("GET", "/v1/me", token=BOB)).status for _ in range(4)]
    assert statuses == [200, 200, 200, 429]
    assert (await server.call("GET", "/healthz", token=None)).status == 200, "probes are never limited"


async def test_one_address_is_limited_before_its_token_is_checked(start_server, fake_redis) -> None:
    server = await start_server(fake_redis, BOT_RATE_ADDRESS="4/minute")
    statuses = [(await server.call("GET", "/v1/me", token="wrong-token-0123456789")).status for _ in range(6)]
    assert statuses == [401] * 4 + [429] * 2
    assert (await server.call("GET", "/readyz", token=None)).status == 200


async def test_a_known_token_is_counted_per_identity_not_per_address(start_server, fake_redis) -> None:
    server = await start_server(fake_redis, BOT_RATE_ADDRESS="2/minute", BOT_RATE_IDENTITY="4/minute")
    statuses = [(await server.call("GET", "/v1/me", token=BOB)).status for _ in range(5)]
    assert statuses == [200] * 4 + [429], "the identity's limit, not the address's"
    assert (await server.call("GET", "/v1/me", token="wrong-token-0123456789")).status == 401
    assert (await server.call("GET", "/v1/me", token="wrong-token-0123456789")).status == 401
    refused = await server.call("GET", "/v1/me", token="wrong-token-0123456789")
    assert (refused.status, refused.code) == (429, "rate_limited") and "limit `address`" in refused.message


async def test_two_web_processes_on_one_redis_share_the_limit(start_server, embedded_redis) -> None:
    """Two servers (as two `web` processes would be) on one real Redis: the limit is for both together."""
    clients = [aioredis.Redis.from_url(embedded_redis) for _ in range(2)]
    try:
        await clients[0].flushdb()
        first, second = [await start_server(client, BOT_RATE_LAUNCH="6/minute") for client in clients]
        replies = await asyncio.gather(
            *(
                server.call("POST", "/v1/threads", token=BOB, json={"text": "/status api"})
                for server in (first, second) * 5
            )
        )
        assert sorted(reply.status for reply in replies) == [202] * 6 + [429] * 4
    finally:
        for client in clients:
            await client.aclose()
