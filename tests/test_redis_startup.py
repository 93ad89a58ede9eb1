"""Start-up against a Redis that is not there yet, is loading its data set, or starts wrongly."""

from __future__ import annotations

import asyncio
import os
import stat
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from bot.redis_server import EmbeddedRedis, redis_server_binary
from bot.redis_wait import wait_for_redis
from core.domain.errors import ConfigError, StoreUnavailable


class LoadingRedis:
    """A unix-socket server that answers every command with LOADING `loading` times, then PONG."""

    def __init__(self, socket: Path, loading: int) -> None:
        self.socket = socket
        self.loading = loading
        self.answered: list[bytes] = []

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while header := await reader.readline():  # *N, then N bulk strings: $len and the bytes
            words = []
            for _ in range(int(header[1:])):
                size = int((await reader.readline())[1:])
                words.append((await reader.readexactly(size + 2))[:-2].upper())
            if words[0] != b"PING":
                writer.write(b"+OK\r\n")  # the client's hello (CLIENT SETINFO)
            else:
                reply = b"-LOADING Redis is loading the dataset in memory\r\n" if self.loading else b"+PONG\r\n"
                self.loading = max(0, self.loading - 1)
                self.answered.append(reply)
                writer.write(reply)
            await writer.drain()
        writer.close()


@pytest.fixture
async def loading_redis(tmp_path: Path) -> AsyncIterator[LoadingRedis]:
    fake = LoadingRedis(tmp_path / "loading.sock", loading=3)
    server = await asyncio.start_unix_server(fake.handle, path=str(fake.socket))
    async with server:
        yield fake


def probe(url: str) -> aioredis.Redis:
    return aioredis.Redis.from_url(url, retry=Retry(NoBackoff(), 0), socket_timeout=2, socket_connect_timeout=2)


async def test_a_redis_loading_its_data_set_is_waited_for_even_by_one_shot_commands(loading_redis) -> None:
    url = f"unix://{loading_redis.socket}"
    await asyncio.wait_for(wait_for_redis(lambda: probe(url), url, patience=0), timeout=10)
    assert [reply[:8] for reply in loading_redis.answered] == [b"-LOADING"] * 3 + [b"+PONG\r\n"]


async def test_no_redis_fails_at_once_with_patience_zero_and_after_the_wait_otherwise(tmp_path: Path) -> None:
    url = f"unix://{tmp_path / 'nothing.sock'}"
    with pytest.raises(StoreUnavailable, match="check REDIS_URL"):
        await wait_for_redis(lambda: probe(url), url, patience=0)
    with pytest.raises(StoreUnavailable, match=r"did not answer within BOT_REDIS_WAIT_SECONDS=0.2s") as caught:
        await wait_for_redis(lambda: probe(url), url, patience=0.2)
    assert "start it or fix REDIS_URL" in str(caught.value)


def redis_servers_on(data_dir: Path) -> list[int]:
    """Pids of redis-server processes whose command line names `data_dir`."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            if b"redis-server" in cmdline and str(data_dir).encode() in cmdline:
                pids.append(int(entry.name))
    return pids


def test_an_embedded_redis_whose_start_fails_is_stopped(tmp_path: Path) -> None:
    """A server that starts but cannot be used (here: a password asked by its config) is not left running."""
    wrapper = tmp_path / "redis-server-with-password"
    wrapper.write_text(f'#!/bin/sh\nexec {redis_server_binary()} "$@" --requirepass secret\n')
    wrapper.chmod(wrapper.stat().st_mode | stat.S_IXUSR)
    data_dir = tmp_path / "data"
    embedded = EmbeddedRedis(data_dir, binary=str(wrapper))

    with pytest.raises(ConfigError, match="started but does not answer as expected"):
        embedded.start()

    assert redis_servers_on(data_dir.resolve()) == []
    assert not (data_dir / "redis.pid").exists()
    assert os.path.exists(data_dir / "redis.log"), "its log stays for the operator to read"
