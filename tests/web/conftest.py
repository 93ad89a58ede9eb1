"""Fixtures for the HTTP server: the real uvicorn stack on 127.0.0.1 port 0, an aiohttp client, tokens."""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import fakeredis
import pytest
import redis.asyncio as aioredis
from fastapi import FastAPI

from adapters.web import WebChannel
from bot.http.app import build_app, serve
from bot.http.hooks import HookConfig
from bot.main import build_wiring
from core.domain.events import MessageTrigger
from core.domain.ids import new_id
from core.redis import keys
from tests.conftest import Harness, test_settings

ALICE = "alice-token-0123456789"  # web:alice is on call: she may approve production deploys
BOB = "bob-token-0123456789abc"  # web:bob is not
CAROL = "carol-token-0123456789a"  # web:carol is on call too
DAVE = "dave-token-0123456789abc"  # web:dave is on no list: his own threads only
TOKENS = {ALICE: "web:alice", BOB: "web:bob", CAROL: "web:carol", DAVE: "web:dave"}
ONCALL = {"BOT_GROUP_ONCALL": "web:alice,web:carol"}
START_SECONDS = 10


@dataclass
class Reply:
    status: int
    body: Any
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def code(self) -> str:
        return str(self.body["error"]["code"])

    @property
    def message(self) -> str:
        return str(self.body["error"]["message"])


@dataclass
class Server:
    """A running server on one core, with a client that speaks as a token."""

    url: str
    harness: Harness
    app: FastAPI
    session: aiohttp.ClientSession
    stopping: asyncio.Event
    serving: asyncio.Task[None]

    async def stop(self) -> None:
        self.stopping.set()
        await self.serving

    async def call(
        self, method: str, path: str, token: str | None = ALICE, headers: dict[str, str] | None = None, **kwargs: Any
    ) -> Reply:
        headers = dict(headers or {})
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        async with self.session.request(method, self.url + path, headers=headers, **kwargs) as response:
            body = await response.json(content_type=None) if await response.read() else None
            return Reply(response.status, body, dict(response.headers))

    async def drain(self) -> None:
        await self.harness.drain()

    async def inbox_length(self) -> int:
        return int(await self.harness.wiring.redis.xlen(keys.INBOX))


async def _start(app: FastAPI) -> tuple[str, asyncio.Event, asyncio.Task[None]]:
    stop = asyncio.Event()
    bound: asyncio.Future[str] = asyncio.get_running_loop().create_future()
    task = asyncio.create_task(serve(app, "127.0.0.1", 0, bound.set_result, stop))
    await asyncio.wait({task, bound}, timeout=START_SECONDS, return_when=asyncio.FIRST_COMPLETED)
    if not bound.done():
        stop.set()
        await task  # raises what kept the server from starting
        raise AssertionError(f"the server did not start within {START_SECONDS}s")
    return bound.result(), stop, task


@pytest.fixture
async def start_server(make_harness: Callable[..., Harness]) -> AsyncIterator[Callable[..., Awaitable[Server]]]:
    """`await start_server(redis_client, hooks=..., readiness=..., **env)`; every server is stopped after the test."""
    running: list[Server] = []

    async def start(
        client: aioredis.Redis,
        *,
        hooks: HookConfig | None = None,
        readiness: Any = None,
        web: WebChannel | None = None,
        **env: str,
    ) -> Server:
        harness = make_harness(client, **(ONCALL | env))
        app = build_app(harness.wiring, tokens=TOKENS, hooks=hooks, readiness=readiness, web=web)
        url, stop, task = await _start(app)
        server = Server(url, harness, app, aiohttp.ClientSession(), stop, task)
        running.append(server)
        return server

    yield start
    for server in running:
        await server.session.close()
        await server.stop()


@pytest.fixture
async def server(fake_redis: aioredis.Redis, start_server: Callable[..., Awaitable[Server]]) -> Server:
    # Redis first, so it is closed after the server has stopped.
    return await start_server(fake_redis)


@dataclass
class ThreadedServer:
    url: str
    thread_id: str
    approval_id: str


@contextlib.contextmanager
def server_in_thread(tmp_path: Path) -> Iterator[ThreadedServer]:
    """A server with its own event loop in another thread, for synchronous clients (schemathesis).

    It is seeded with a thread waiting for approval, so listings have content to validate.
    """
    ready: list[ThreadedServer] = []
    failed: list[BaseException] = []
    started, done = threading.Event(), threading.Event()
    loop_box: list[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = []

    async def main() -> None:
        client: aioredis.Redis = fakeredis.FakeAsyncRedis(server=fakeredis.FakeServer())
        settings = test_settings(tmp_path, **ONCALL)
        wiring = build_wiring(settings, {"PATH": os.environ.get("PATH", ""), **ONCALL}, client)
        trigger = MessageTrigger(
            id=new_id(), channel="api", conversation="seed", sender="web:bob", text="/deploy api 1.4.2 production"
        )
        await wiring.threads.handle(trigger)
        thread_id = (await wiring.store.list_threads())[0].thread_id
        approval_id = (await wiring.store.pending_approvals())[0].approval_id
        stop = asyncio.Event()
        loop_box.append((asyncio.get_running_loop(), stop))

        def on_started(url: str) -> None:
            ready.append(ThreadedServer(url, thread_id, approval_id))
            started.set()

        try:
            await serve(build_app(wiring, tokens=TOKENS), "127.0.0.1", 0, on_started, stop)
        finally:
            await client.aclose()

    def run() -> None:
        try:
            asyncio.run(main())
        except BaseException as exc:  # noqa: BLE001 - handed to the test thread
            failed.append(exc)
            started.set()
        finally:
            done.set()

    thread = threading.Thread(target=run, name="http-server", daemon=True)
    thread.start()
    started.wait(START_SECONDS)
    if failed or not ready:
        raise AssertionError(f"the server thread did not start: {failed}")
    try:
        yield ready[0]
    finally:
        loop, stop = loop_box[0]
        loop.call_soon_threadsafe(stop.set)
        done.wait(START_SECONDS)
        thread.join(START_SECONDS)
