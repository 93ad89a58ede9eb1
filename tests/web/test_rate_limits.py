"""Rate limits in Redis: a flood gets 429 with Retry-After, and two servers on one Redis share the count."""

from __future__ import annotations

import asyncio
import contextlib
import re
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
import redis.asyncio as aioredis

from tests.e2e.chat_driver import REPO_ROOT, bot_env
from tests.web.conftest import ALICE, BOB, TOKENS

START_SECONDS = 60  # a `bot serve` imports the SDKs and waits for Redis: seconds on a loaded machine


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
    registry = server.harness.wiring.metrics.registry
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


@contextlib.asynccontextmanager
async def web_process(redis_url: str, data_dir: Path, **env: str) -> AsyncIterator[str]:
    """A real `bot serve` process on port 0; yields its base URL, stops it (SIGTERM) after."""
    tokens = ",".join(f"{token}={identity}" for token, identity in TOKENS.items())
    extra = {"REDIS_URL": redis_url, "BOT_HTTP_PORT": "0", "BOT_API_TOKENS": tokens, **env}
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bot",
        "serve",
        cwd=REPO_ROOT,
        env=bot_env(data_dir, **extra),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    assert process.stdout is not None
    printed: list[str] = []
    try:
        async with asyncio.timeout(START_SECONDS):
            while not (url := next((m[1] for line in printed if (m := re.match(r"REST API: (\S+)/v1", line))), "")):
                line = await process.stdout.readline()
                assert line, f"`bot serve` exited before it listened:\n{''.join(printed)}"
                printed.append(line.decode(errors="replace"))
        yield url
    except TimeoutError:
        raise AssertionError(f"`bot serve` did not listen within {START_SECONDS}s:\n{''.join(printed)}") from None
    finally:
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signal.SIGTERM)
        try:
            async with asyncio.timeout(30):
                await process.communicate()
        except TimeoutError:
            process.kill()
            await process.wait()


@pytest.mark.timeout(180)
async def test_two_real_web_processes_share_the_launch_limit(embedded_redis, tmp_path) -> None:
    """Two `bot serve` processes on one Redis, as two `web` dynos: 6 launches a minute for both together."""
    client = aioredis.Redis.from_url(embedded_redis)
    await client.flushdb()
    await client.aclose()
    limit = {"BOT_RATE_LAUNCH": "6/minute"}
    async with (
        web_process(embedded_redis, tmp_path / "a", **limit) as first,
        web_process(embedded_redis, tmp_path / "b", **limit) as second,
        aiohttp.ClientSession(headers={"Authorization": f"Bearer {BOB}"}) as session,
    ):

        async def launch(url: str) -> int:
            async with session.post(f"{url}/v1/threads", json={"text": "/status api staging"}) as response:
                return response.status

        statuses = await asyncio.gather(*(launch(url) for url in (first, second) * 5))
    assert sorted(statuses) == [202] * 6 + [429] * 4, statuses
