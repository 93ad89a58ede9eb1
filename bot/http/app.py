"""The bot's one HTTP server: REST API, webhooks, OpenAPI, the web console, health.

- `build_app(core, tokens=..., hooks=...)` assembles the FastAPI app from explicit parts; other
  channels add their endpoints with `extra_routes` (Slack's `/slack/events`) and their
  readiness with `readiness`.
- `serve(app, host, port, started, stop)` runs it on uvicorn until `stop` is set; port 0 picks a
  free port, and `started` receives the URL actually bound.
- `run_http(...)` is what `bot serve` / `bot run` call: tokens from BOT_API_TOKENS (or a one-process
  token for whoever started the bot), hooks from hooks.toml, and the console URL printed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import Awaitable, Callable, Generator, Mapping, Sequence
from importlib import metadata

import redis.exceptions
import uvicorn
from fastapi import FastAPI
from fastapi.responses import JSONResponse
from starlette.applications import Starlette
from starlette.routing import BaseRoute

from adapters.web import WebChannel
from bot.http import errors as http_errors
from bot.http.admin import admin_router
from bot.http.api import api_router
from bot.http.auth import TokenAuth, local_token, parse_tokens
from bot.http.console import console_routes, web_router
from bot.http.grants import grants_router
from bot.http.guard import Guard, h11_buffer_bytes, h11_protocol
from bot.http.hooks import HookConfig, hooks_router
from bot.http.limits import http_limits
from bot.http.live import live_router
from bot.http.ops import Operations
from bot.http.schemas import Health, Readiness
from bot.main import Wiring
from bot.mcp.http import mount_mcp
from bot.mcp.settings import McpSettings
from config.channels import HttpSettings
from core.domain.errors import ConfigError
from core.redis import keys
from core.redis.store import unwritable

log = logging.getLogger(__name__)
ReadinessProbe = Callable[[], Awaitable[dict[str, bool]]]
REDIS_PING_SECONDS = 2.0
READY_PROBE_TTL_MS = 10_000  # /readyz writes keys.READY_PROBE: a Redis that answers but cannot store is not ready
GRACEFUL_SHUTDOWN_SECONDS = 5


def _version() -> str:
    try:
        return metadata.version("opsbot")
    except metadata.PackageNotFoundError:  # pragma: no cover - running from a checkout without installing
        return "0"


async def _redis_ready(wiring: Wiring) -> tuple[dict[str, bool], str]:
    """Whether Redis answers and takes a write, and why not; one small SET with an expiry answers both."""
    try:
        set_probe = wiring.redis.set(keys.READY_PROBE, "1", px=READY_PROBE_TTL_MS)
        await asyncio.wait_for(set_probe, timeout=REDIS_PING_SECONDS)
        return {"redis": True, "redis_writes": True}, ""
    except redis.exceptions.ResponseError as exc:
        return {"redis": True, "redis_writes": not unwritable(exc)}, str(exc)
    except Exception as exc:  # noqa: BLE001 - any failure means "not ready", which is the answer
        return {"redis": False, "redis_writes": False}, str(exc) or type(exc).__name__


def build_app(
    wiring: Wiring,
    *,
    tokens: Mapping[str, str],
    hooks: HookConfig | None = None,
    extra_routes: Sequence[BaseRoute] = (),
    readiness: ReadinessProbe | None = None,
    web: WebChannel | None = None,
    mcp: McpSettings | None = None,
) -> FastAPI:
    """The HTTP app on one core. `tokens` maps bearer tokens to identities (see `parse_tokens`)."""
    hooks = hooks or HookConfig()
    for hook in hooks.hooks.values():
        if hook.agent and hook.agent not in wiring.threads.roster:
            raise ConfigError(
                f"hook {hook.name!r} names agent {hook.agent!r}, but the agents are "
                f"{', '.join(wiring.threads.roster.names())}; fix [hooks.{hook.name}].agent"
            )
    limits = http_limits(wiring.redis, wiring.settings.http, wiring.rate_limited)
    auth, ops, draining = TokenAuth(tokens, limits), Operations(wiring, limits), asyncio.Event()
    was_ready = True
    app = FastAPI(
        title="opsbot",
        version=_version(),
        description="Launch, steer and approve agent threads; trigger them from webhooks.",
        docs_url=None,  # Swagger UI and ReDoc load from a CDN; the console ships its own pages instead
        redoc_url=None,
    )
    app.state.draining = draining  # set by `serve` when stopping, so long-polls return at once
    http_errors.install(app, wiring.store_write_failures.labels("api").inc)
    http = wiring.settings.http
    app.state.http = http  # what `serve` limits connections with
    app.add_middleware(Guard, http=http, limits=limits, tokens=auth)
    app.include_router(api_router(ops, auth))
    app.include_router(admin_router(ops, auth))
    app.include_router(grants_router(ops, auth))
    app.include_router(hooks_router(ops, hooks, wiring.webhook_refusals))
    app.include_router(web_router(ops, auth, web or WebChannel(wiring.bus), draining))
    app.include_router(live_router(ops, auth, draining))
    mount_mcp(app, wiring, auth, mcp or McpSettings.from_env(os.environ, wiring.settings))  # /mcp: bot.mcp

    @app.get("/healthz", response_model=Health, tags=["health"], summary="The process is up")
    async def healthz() -> Health:
        return Health()

    @app.get(
        "/readyz",
        response_model=Readiness,
        responses={503: {"model": Readiness}},
        tags=["health"],
        summary="Redis answers and takes writes, and every configured channel is connected",
    )
    async def readyz() -> JSONResponse:
        nonlocal was_ready
        checks, why = await _redis_ready(wiring)
        if not checks["redis_writes"]:
            wiring.store_write_failures.labels("readyz").inc()
        if readiness is not None:
            try:
                checks.update(await readiness())
            except Exception:  # noqa: BLE001 - a failing probe is a "not ready", not a 500
                checks["channels"] = False
        body = Readiness(ready=all(checks.values()), checks=checks)
        if body.ready != was_ready:  # said once per change: probes come every few seconds
            was_ready = body.ready
            failing = ", ".join(name for name, ok in checks.items() if not ok)
            if body.ready:
                log.warning("ready again: every check passes")
            else:
                log.warning("not ready: %s failing%s", failing, f" ({why})" if why else "")
        return JSONResponse(body.model_dump(), status_code=200 if body.ready else 503)

    # First: a channel's endpoint (Slack's acks, 3 s at most) is not matched against every API route before it.
    app.router.routes[:0] = extra_routes
    app.router.routes.extend(console_routes(wiring.settings.http))
    return app


class _Server(uvicorn.Server):
    """uvicorn without its own signal handlers (the caller stops it) that reports when it listens."""

    def __init__(self, config: uvicorn.Config, on_started: Callable[[], None]) -> None:
        super().__init__(config)
        self._on_started = on_started

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.started:
            self._on_started()


def _listen(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)  # IPPROTO_TCP: asyncio then sets TCP_NODELAY
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise ConfigError(
            f"cannot listen on {host}:{port} ({exc.strerror}); set BOT_HTTP_HOST/BOT_HTTP_PORT "
            "(port 0 picks a free one)"
        ) from exc
    return sock


def _url(host: str, port: int) -> str:
    shown = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(host, host)
    return f"http://[{shown}]:{port}" if ":" in shown else f"http://{shown}:{port}"


async def serve(
    app: Starlette,
    host: str,
    port: int,
    started: Callable[[str], None],
    stop: asyncio.Event,
    http: HttpSettings | None = None,
) -> None:
    """Serve `app` until `stop` is set, then finish the requests in flight and return.

    `http` bounds each connection's request head (`bot/http/guard.py`); by default, the settings
    `build_app` made `app` with.
    """
    if http is None:
        built_with = getattr(app.state, "http", None)
        http = built_with if isinstance(built_with, HttpSettings) else HttpSettings.model_validate({})
    sock = _listen(host, port)
    url = _url(host, sock.getsockname()[1])
    config = uvicorn.Config(
        app,
        log_config=None,
        http=h11_protocol(http),
        h11_max_incomplete_event_size=h11_buffer_bytes(http),
        ws="none",
        lifespan="on",
        server_header=False,
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_SECONDS,
    )
    server = _Server(config, lambda: started(url))
    serving = asyncio.create_task(server.serve(sockets=[sock]), name=f"http {url}")
    stopping = asyncio.create_task(stop.wait(), name="http stop")
    try:
        await asyncio.wait({serving, stopping}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        draining = getattr(app.state, "draining", None)
        if isinstance(draining, asyncio.Event):
            draining.set()
        server.should_exit = True
        stopping.cancel()
        try:
            await serving
        except SystemExit as exc:  # uvicorn exits when the app's startup fails; say so instead
            raise ConfigError(f"the HTTP server on {url} did not start; see the log above") from exc
        finally:
            sock.close()


async def run_http(
    wiring: Wiring,
    http: HttpSettings,
    stop: asyncio.Event,
    *,
    owner: str,
    hooks: HookConfig | None = None,
    extra_routes: Sequence[BaseRoute] = (),
    readiness: ReadinessProbe | None = None,
    announce: Callable[[str], None] = print,
) -> None:
    """Serve the API and console with the configured tokens; without any, `owner` gets a one-process token."""
    tokens = parse_tokens(http.api_tokens.get_secret_value() if http.api_tokens else "")
    console_token = None
    if not tokens:
        tokens = local_token(owner)
        console_token = next(iter(tokens))
    app = build_app(wiring, tokens=tokens, hooks=hooks, extra_routes=extra_routes, readiness=readiness)

    def started(url: str) -> None:
        base = (http.public_url or url).rstrip("/")
        if console_token is not None:
            announce(
                f"web console: {base}/#token={console_token}  (you are {owner}; "
                "set BOT_API_TOKENS to give others access)"
            )
        else:
            announce(f"web console: {base}/  (sign in with a token from BOT_API_TOKENS: {base}/#token=<token>)")
        announce(f"REST API: {base}/v1  (described at {base}/openapi.json)")

    await serve(app, http.host, http.port, started, stop, http)
