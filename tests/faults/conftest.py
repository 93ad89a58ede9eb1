"""Fixtures for the fault suite: a redis-server and workers per test, always stopped at the end."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from bot.redis_server import RedisServer
from core.redis.bus import Bus
from core.redis.store import Store
from tests.faults.cluster import FAST_TAKEOVER, Workers, stop_stray_tool, worker_env
from tests.faults.harness import Cluster, StartCluster, tools_toml


@pytest.fixture
async def redis_server(tmp_path: Path) -> AsyncIterator[RedisServer]:
    server = RedisServer(tmp_path / "redis")
    await asyncio.to_thread(server.start)
    try:
        yield server
    finally:
        await asyncio.to_thread(server.stop)


@pytest.fixture
async def start_cluster(tmp_path: Path, redis_server: RedisServer) -> AsyncIterator[StartCluster]:
    """`await start_cluster(3, expires_in=3600, **env)`: N `bot worker` processes on the test's Redis."""
    clusters: list[Cluster] = []

    async def start(workers_count: int = 2, expires_in: int = 3600, **env: str) -> Cluster:
        tools = tmp_path / "tools.toml"
        tools.write_text(tools_toml(expires_in))
        data_dir = tmp_path / "data"
        data_dir.mkdir(exist_ok=True)
        client = aioredis.Redis.from_url(redis_server.url)
        store = Store(client, lock_ttl_ms=int(FAST_TAKEOVER["BOT_LOCK_TTL_MS"]))
        bus = Bus(client, store, claim_idle_ms=int(FAST_TAKEOVER["BOT_CLAIM_IDLE_MS"]))
        group = Workers(tmp_path, worker_env(redis_server.url, data_dir, tools, **env))
        clusters.append(Cluster(redis_server, client, store, bus, group, data_dir))
        await group.start(workers_count)
        return clusters[-1]

    try:
        yield start
    finally:
        for cluster in clusters:
            await cluster.workers.close()
            await cluster.client.aclose()
            for effect in await cluster.effects():  # a tool in its own session outlives a killed worker
                stop_stray_tool(effect.tool_pid)
