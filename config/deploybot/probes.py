"""Python-callable tools shipped with the default DeployBot config."""

from __future__ import annotations

import time

import aiohttp

from core.domain.errors import ToolFailed

REQUEST_TIMEOUT_SECONDS = 10.0  # below the tool's own timeout in config/tools.toml


async def check_url(url: str) -> str:
    """A real HTTP GET: status, latency and the first bytes of the body."""
    started = time.perf_counter()
    try:
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_SECONDS)) as session,
            session.get(url, allow_redirects=True) as resp,
        ):
            body = await resp.content.read(300)
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise ToolFailed(f"check_url: GET {url} failed: {type(exc).__name__}: {exc}") from exc
    latency_ms = (time.perf_counter() - started) * 1000
    verdict = "healthy" if resp.status < 400 else "unhealthy"
    snippet = body.decode(errors="replace").strip().replace("\n", " ")[:200]
    return f"GET {url} -> {resp.status} in {latency_ms:.0f} ms ({verdict}); body: {snippet}"
