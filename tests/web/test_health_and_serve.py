"""Health for a process manager, the server's life cycle, tokens, and the console's static pages."""

from __future__ import annotations

import asyncio
import re
import socket
from typing import Any

import aiohttp
import pytest

from adapters.web import WebChannel
from bot.http.app import GRACEFUL_SHUTDOWN_SECONDS, build_app, run_http, serve
from bot.http.auth import parse_tokens
from config.channels import HttpSettings
from core import Bus, Outbound
from core.domain.errors import ConfigError
from tests.web.conftest import TOKENS, Server


async def test_healthz_and_readyz_need_no_token(server: Server) -> None:
    health = await server.call("GET", "/healthz", token=None)
    ready = await server.call("GET", "/readyz", token=None)
    assert (health.status, health.body) == (200, {"status": "ok"})
    assert (ready.status, ready.body) == (200, {"ready": True, "checks": {"redis": True, "redis_writes": True}})


async def test_readyz_reports_each_channel_and_fails_when_one_is_down(fake_redis, start_server) -> None:
    async def channels() -> dict[str, bool]:
        return {"slack": True, "email": False}

    server = await start_server(fake_redis, readiness=channels)
    ready = await server.call("GET", "/readyz", token=None)
    assert (ready.status, ready.body) == (
        503,
        {"ready": False, "checks": {"redis": True, "redis_writes": True, "slack": True, "email": False}},
    )


async def test_without_redis_readyz_is_503_and_the_api_says_what_to_do(fake_redis, start_server) -> None:
    server = await start_server(fake_redis)
    fake_redis.connection_pool.connection_kwargs["server"].connected = False
    ready = await server.call("GET", "/readyz", token=None)
    listing = await server.call("GET", "/v1/threads")
    assert (ready.status, ready.body["checks"]) == (503, {"redis": False, "redis_writes": False})
    assert listing.status == 503 and listing.code == "store_unavailable" and "check REDIS_URL" in listing.message
    assert (await server.call("GET", "/healthz", token=None)).status == 200


async def test_the_console_page_is_served_with_a_strict_content_policy(server: Server) -> None:
    async with server.session.get(server.url + "/") as page:
        html = await page.text()
        assert page.status == 200 and '<script src="/console/console.js"></script>' in html
        assert "default-src 'self'" in page.headers["Content-Security-Policy"]
    for asset in ("/console/console.js", "/console/console.css"):
        async with server.session.get(server.url + asset) as response:
            assert response.status == 200 and len(await response.read()) > 1000
    assert not re.search(r'(src|href)="(https?:)?//', html), "the console must work offline: no external assets"


class WatchedWeb(WebChannel):
    """The web channel, telling the test when a long-poll has started."""

    def __init__(self, bus: Bus) -> None:
        super().__init__(bus)
        self.polling = asyncio.Event()

    async def updates(self, *args: Any, **kwargs: Any) -> tuple[str, list[Outbound]]:
        self.polling.set()
        return await super().updates(*args, **kwargs)


async def test_stopping_the_server_releases_a_long_poll_in_flight(fake_redis, make_harness, start_server) -> None:
    """Without it, a console left open would hold every shutdown until the graceful timeout cancels it."""
    web = WatchedWeb(make_harness(fake_redis).wiring.bus)
    server = await start_server(fake_redis, web=web)
    after = (await server.call("GET", "/web/updates?conversation=c1")).body["after"]
    poll = asyncio.create_task(server.call("GET", f"/web/updates?conversation=c1&after={after}&wait=25"))
    await web.polling.wait()
    await asyncio.wait_for(server.stop(), GRACEFUL_SHUTDOWN_SECONDS - 1)
    reply = await poll
    assert (reply.status, reply.body["items"]) == (200, [])


async def test_a_taken_port_is_a_config_error_naming_the_variable(fake_redis, make_harness) -> None:
    app = build_app(make_harness(fake_redis).wiring, tokens=TOKENS)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(ConfigError, match=f"cannot listen on 127.0.0.1:{port}.*BOT_HTTP_PORT"):
            await serve(app, "127.0.0.1", port, lambda url: None, asyncio.Event())


async def test_run_http_without_tokens_prints_a_console_link_for_its_owner(fake_redis, make_harness) -> None:
    wiring = make_harness(fake_redis).wiring
    stop, lines = asyncio.Event(), []

    def announce(line: str) -> None:
        lines.append(line)
        if len(lines) == 2:
            stop.set()

    http = HttpSettings.model_validate({"BOT_HTTP_PORT": 0})
    await asyncio.wait_for(run_http(wiring, http, stop, owner="cli:operator", announce=announce), 10)
    assert (
        lines[0].startswith("web console: http://127.0.0.1:") and "/#token=" in lines[0] and "cli:operator" in lines[0]
    )
    assert lines[1].endswith("/openapi.json)")


async def test_the_printed_link_signs_in_as_the_owner(fake_redis, make_harness) -> None:
    wiring = make_harness(fake_redis).wiring
    stop, links = asyncio.Event(), asyncio.Queue[str]()
    http = HttpSettings.model_validate({"BOT_HTTP_PORT": 0, "BOT_PUBLIC_URL": None})
    running = asyncio.create_task(run_http(wiring, http, stop, owner="cli:operator", announce=links.put_nowait))
    try:
        link = await asyncio.wait_for(links.get(), 10)
        base, token = link.split()[2].split("/#token=")
        headers = {"Authorization": f"Bearer {token}"}
        async with aiohttp.ClientSession() as session, session.get(f"{base}/v1/me", headers=headers) as me:
            assert await me.json() == {"identity": "cli:operator"}
    finally:
        stop.set()
        await running


@pytest.mark.parametrize(
    ("raw", "fragment"),
    [
        ("short=web:alice", "entry 1 (web:alice): the token has 5 characters"),
        ("abcdefghijklmnopqrstu", "entry 1 is not `token=identity`"),
        ("abcdefghijklmnopqrstu=alice", "entry 1 is not `token=identity`"),
        ("abcdefghijklmnopqrstu=web:a,abcdefghijklmnopqrstu=web:b", "entry 2 (web:b) repeats the token of web:a"),
    ],
)
def test_token_configuration_errors_never_show_the_token(raw: str, fragment: str) -> None:
    with pytest.raises(ConfigError, match=r"BOT_API_TOKENS") as caught:
        parse_tokens(raw)
    assert fragment in str(caught.value)
    assert "abcdefghijklmnopqrstu" not in str(caught.value) and "short" not in str(caught.value)


def test_tokens_parse_into_identities() -> None:
    assert parse_tokens(" abcdefghijklmnop=web:alice , qrstuvwxyz0123456=slack:T1:U1,") == {
        "abcdefghijklmnop": "web:alice",
        "qrstuvwxyz0123456": "slack:T1:U1",
    }
