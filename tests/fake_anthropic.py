"""A loopback fake of the Anthropic Messages API, for driving the real SDK offline.

The anthropic 2.x SDK runs on httpx2, so respx cannot intercept it. Tests instead point
the real client (or a bot subprocess, via ``ANTHROPIC_BASE_URL``) at this aiohttp server::

    async with FakeAnthropic([rate_limited(), tool_use("restart", {"name": "web"})]) as fake:
        client = AsyncAnthropic(api_key="test", base_url=fake.base_url)
        ...
        assert fake.requests[-1]["messages"][0]["role"] == "user"

A script is a list of steps, served in order, or a function from the request body to a
step. A step is a Messages API response dict (served with 200) or a ``FakeError``.

Standalone, for end-to-end tests that need the fake in its own process::

    python -m tests.fake_anthropic --script steps.json [--log requests.jsonl]

prints ``LISTENING http://127.0.0.1:PORT`` once and serves until SIGTERM or SIGINT.
"""

from __future__ import annotations

import argparse
import asyncio
import inspect
import json
import signal
import sys
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from aiohttp import web

__all__ = [
    "FakeAnthropic",
    "FakeError",
    "Script",
    "Step",
    "api_error",
    "bad_request",
    "load_script",
    "make_usage",
    "message",
    "overloaded",
    "rate_limited",
    "text_block",
    "text_reply",
    "tool_use",
    "tool_use_block",
    "write_script",
]

JSON = dict[str, Any]


@dataclass(frozen=True)
class FakeError:
    """An error answer: the status, the JSON body and any extra headers (e.g. ``retry-after``)."""

    status: int
    body: JSON
    headers: Mapping[str, str] = field(default_factory=dict)

    def to_json(self) -> JSON:
        """The form ``--script`` files use: ``{"error": {"status", "body", "headers"}}``."""
        return {"error": {"status": self.status, "body": self.body, "headers": dict(self.headers)}}


Step = JSON | FakeError
Script = Sequence[Step] | Callable[[JSON], Step | Awaitable[Step]]

# The real API accepts request bodies up to 32 MB; aiohttp's default limit is 1 MB.
_MAX_BODY = 32 * 1024 * 1024
_REQUIRED = ("model", "max_tokens", "messages")


# -- response builders: the JSON the real API sends ----------------------------------------


def _new_id(prefix: str) -> str:
    return f"{prefix}_01{uuid.uuid4().hex[:22]}"


def make_usage(
    input_tokens: int = 25,
    output_tokens: int = 10,
    *,
    cache_creation_input_tokens: int = 0,
    cache_read_input_tokens: int = 0,
) -> JSON:
    return {
        "input_tokens": input_tokens,
        "output_tokens": output_tokens,
        "cache_creation_input_tokens": cache_creation_input_tokens,
        "cache_read_input_tokens": cache_read_input_tokens,
    }


def text_block(text: str) -> JSON:
    return {"type": "text", "text": text}


def tool_use_block(name: str, input: JSON, *, id: str | None = None) -> JSON:
    return {"type": "tool_use", "id": id or _new_id("toolu"), "name": name, "input": input}


def message(content: list[JSON], *, stop_reason: str, usage: JSON | None = None, id: str | None = None) -> JSON:
    """A complete Messages response; ``model`` is left out and filled from the request when served."""
    return {
        "id": id or _new_id("msg"),
        "type": "message",
        "role": "assistant",
        "content": content,
        "stop_reason": stop_reason,
        "stop_sequence": None,
        "usage": usage or make_usage(),
    }


def tool_use(
    name: str,
    input: JSON,
    *,
    id: str | None = None,
    text: str | None = None,
    usage: JSON | None = None,
) -> JSON:
    """A turn that calls one tool, optionally preceded by a text block."""
    content = ([text_block(text)] if text is not None else []) + [tool_use_block(name, input, id=id)]
    return message(content, stop_reason="tool_use", usage=usage)


def text_reply(text: str, *, usage: JSON | None = None) -> JSON:
    return message([text_block(text)], stop_reason="end_turn", usage=usage)


def api_error(status: int, error_type: str, message: str, headers: Mapping[str, str] | None = None) -> FakeError:
    return FakeError(status, {"type": "error", "error": {"type": error_type, "message": message}}, headers or {})


def rate_limited(message: str = "Number of request tokens has exceeded your per-minute rate limit") -> FakeError:
    return api_error(429, "rate_limit_error", message, {"retry-after": "0"})


def overloaded() -> FakeError:
    return api_error(529, "overloaded_error", "Overloaded")


def bad_request(message: str) -> FakeError:
    return api_error(400, "invalid_request_error", message)


# -- the server ----------------------------------------------------------------------------


class FakeAnthropic:
    """Serves a script of Messages responses on 127.0.0.1 and records what it was sent.

    ``requests`` and ``headers`` hold, in arrival order, the JSON body and the lower-cased
    headers of every ``POST /v1/messages``; ``count_tokens_requests`` holds the bodies sent
    to ``/v1/messages/count_tokens``. With ``log``, every request to either endpoint is also
    appended to that file as one JSON line ``{"path", "headers", "body"}``.
    """

    def __init__(self, script: Script, *, log: Path | None = None) -> None:
        self._script = script
        self._served = 0
        self._log = log
        self._runner: web.AppRunner | None = None
        self._base_url: str | None = None
        self.requests: list[JSON] = []
        self.headers: list[dict[str, str]] = []
        self.count_tokens_requests: list[JSON] = []

    @property
    def base_url(self) -> str:
        if self._base_url is None:
            raise RuntimeError("FakeAnthropic is not running; use `async with FakeAnthropic(script) as fake:` first")
        return self._base_url

    def app(self) -> web.Application:
        app = web.Application(client_max_size=_MAX_BODY)
        app.router.add_post("/v1/messages", self._messages)
        app.router.add_post("/v1/messages/count_tokens", self._count_tokens)
        app.router.add_route("*", "/{tail:.*}", self._not_found)
        return app

    async def start(self) -> None:
        runner = web.AppRunner(self.app(), access_log=None, shutdown_timeout=1.0)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        self._runner = runner
        self._base_url = f"http://127.0.0.1:{runner.addresses[0][1]}"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        self._runner = self._base_url = None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    async def _messages(self, request: web.Request) -> web.Response:
        body = await self._receive(request)
        if body is None:
            return _answer(bad_request("The request body is not valid JSON."))
        self.requests.append(body)
        self.headers.append(_lower(request.headers))
        missing = [name for name in _REQUIRED if name not in body]
        if missing:
            return _answer(bad_request(f"{missing[0]}: Field required"))
        step = await self._next_step(body)
        if isinstance(step, FakeError):
            return _answer(step)
        return web.json_response({**step, "model": step.get("model", body["model"])}, headers=_request_id())

    async def _count_tokens(self, request: web.Request) -> web.Response:
        body = await self._receive(request)
        if body is None:
            return _answer(bad_request("The request body is not valid JSON."))
        self.count_tokens_requests.append(body)
        return web.json_response({"input_tokens": len(json.dumps(body)) // 4}, headers=_request_id())

    async def _not_found(self, request: web.Request) -> web.Response:
        return _answer(
            api_error(404, "not_found_error", f"FakeAnthropic does not serve {request.method} {request.path}")
        )

    async def _receive(self, request: web.Request) -> JSON | None:
        """Parse the body as a JSON object and log it; None when it is not one."""
        try:
            body = json.loads(await request.read())
        except ValueError:
            return None
        if not isinstance(body, dict):
            return None
        if self._log is not None:
            record = {"path": request.path, "headers": _lower(request.headers), "body": body}
            await asyncio.to_thread(_append_line, self._log, json.dumps(record))
        return body

    async def _next_step(self, body: JSON) -> Step:
        if callable(self._script):
            step = self._script(body)
            return await step if inspect.isawaitable(step) else step
        if self._served >= len(self._script):
            message = (
                f"FakeAnthropic script exhausted: request #{self._served + 1} to /v1/messages arrived but the "
                f"script has only {len(self._script)} step(s); add a step or find the unexpected extra call"
            )
            # x-should-retry: false stops the SDK from retrying, so the test fails at once.
            return api_error(500, "api_error", message, {"x-should-retry": "false"})
        self._served += 1
        return self._script[self._served - 1]


def _answer(error: FakeError) -> web.Response:
    return web.json_response(error.body, status=error.status, headers={**_request_id(), **error.headers})


def _request_id() -> dict[str, str]:
    return {"request-id": _new_id("req")}


def _lower(headers: Mapping[str, str]) -> dict[str, str]:
    return {name.lower(): value for name, value in headers.items()}


def _append_line(path: Path, line: str) -> None:
    with path.open("a", encoding="utf-8") as file:
        file.write(line + "\n")


# -- script files and the standalone server ------------------------------------------------


def _step_from_json(raw: object, index: int) -> Step:
    if not isinstance(raw, dict):
        raise TypeError(f"script step {index} is {type(raw).__name__}; expected a response object or {{'error': ...}}")
    if set(raw) != {"error"}:
        return raw
    error = raw["error"]
    if not isinstance(error, dict) or not isinstance(error.get("status"), int):
        raise TypeError(f"script step {index}: 'error' needs an integer 'status', got {error!r}")
    return FakeError(error["status"], error.get("body", {}), error.get("headers", {}))


def load_script(path: Path) -> list[Step]:
    """Read a ``--script`` file: a JSON list of response objects and ``{"error": {...}}`` steps."""
    raw = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(raw, list):
        raise TypeError(f"{path} holds a JSON {type(raw).__name__}; a script file must hold a list of steps")
    return [_step_from_json(step, index) for index, step in enumerate(raw)]


def write_script(path: Path, steps: Sequence[Step]) -> None:
    """Write steps in the form ``load_script`` and ``--script`` read."""
    encoded = [step.to_json() if isinstance(step, FakeError) else step for step in steps]
    path.write_text(json.dumps(encoded, indent=2), encoding="utf-8")


async def _serve(script: list[Step], log: Path | None) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    async with FakeAnthropic(script, log=log) as fake:
        print(f"LISTENING {fake.base_url}", flush=True)
        await stop.wait()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.fake_anthropic", description="Serve a scripted fake Anthropic API."
    )
    parser.add_argument("--script", type=Path, required=True, help="JSON list of steps to serve in order")
    parser.add_argument("--log", type=Path, help="append each request here as one JSON line")
    args = parser.parse_args(argv)
    try:
        script = load_script(args.script)
    except (OSError, ValueError, TypeError) as exc:
        parser.error(f"cannot load --script {args.script}: {exc}")
    if args.log is not None:
        args.log.touch()
    asyncio.run(_serve(script, args.log))
    return 0


if __name__ == "__main__":
    sys.exit(main())
