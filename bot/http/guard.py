"""Request limits at the door, before any route or token check: headers, body, JSON depth, time.

- `Guard` (ASGI middleware) refuses headers over `BOT_HTTP_MAX_HEADER_BYTES` (names and values)
  or `BOT_HTTP_MAX_HEADERS` (431), a declared body over `BOT_HTTP_MAX_BODY_BYTES` (413), a
  request without a known token from an address over its rate (429), and a body for a token route
  without a known token (401, unread). It then counts the body as it streams in, chunked too, and
  refuses it at the first byte over the limit (413), when the bodies of all requests in flight
  would pass `BOT_HTTP_BODY_BUDGET_BYTES` (503 `server_busy`, Retry-After), when it takes longer
  than `BOT_HTTP_BODY_SECONDS` to arrive (408), or when it nests deeper than
  `BOT_HTTP_MAX_JSON_DEPTH` (422 `json_too_deep`).
- `JsonDepth` measures nesting on the bytes as they arrive, without parsing them: Python's
  `json` recurses (a 10 000-deep `[[[…` is a RecursionError) and jiter's fixed limit is 200. Every
  body that is not a form is measured: the webhooks parse JSON whatever the declared type.
- `h11_protocol(http)` is uvicorn's h11 protocol with a deadline on the request line and headers,
  `BOT_HTTP_HEADER_SECONDS` from the connection's start or the next request's first byte: uvicorn
  has none (a client sending a header byte a second holds its connection forever). h11's own
  buffer, `H11_BUFFER_FACTOR` times the header limit, answers a bare 400 to a larger header block,
  so a gigantic one is refused before it is read while a merely large one gets the 431 above.
"""

from __future__ import annotations

import asyncio
import logging
from itertools import accumulate
from typing import Protocol

import h11
from starlette.datastructures import Headers, MutableHeaders
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from uvicorn.protocols.http.h11_impl import H11Protocol

from bot.http import errors as http_errors
from bot.http.errors import ApiError, RequestRefused
from config.channels import HttpSettings

log = logging.getLogger(__name__)
# Probes come from the platform, often, without a token. Slack's requests are signed (checked without Redis)
# and come from Slack's few addresses: an address limit would refuse a busy workspace's bursts, and cost a
# Redis round trip before every ack.
UNLIMITED = ("/healthz", "/readyz", "/slack/events")
BODY_METHODS = ("POST", "PUT", "PATCH")
TOKEN_ROUTES = ("/v1/", "/web/")  # every route under these needs a bearer token...
SIGNED_ROUTES = ("/v1/hooks/",)  # ...but the webhooks, which are signed instead
FORMS = ("application/x-www-form-urlencoded", "multipart/form-data")  # not JSON: never measured
H11_BUFFER_FACTOR = 4  # h11's buffer for an incomplete request head, in header limits
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; "
    "form-action 'self'",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
}
_NOT_QUOTE_OR_BRACKET = bytes(byte for byte in range(256) if byte not in b'"[]{}')  # deleted: all but quotes, brackets
_STEP = [{ord("["): 1, ord("{"): 1, ord("]"): -1, ord("}"): -1}.get(byte, 0) for byte in range(256)]


class RateRefusal(Protocol):
    @property
    def message(self) -> str: ...
    @property
    def retry_after(self) -> int: ...


class AddressLimits(Protocol):
    async def hit(self, limit: str, who: str) -> RateRefusal | None: ...


class TokenCheck(Protocol):
    def refusal(self, presented: str | None) -> ApiError | None: ...


class JsonDepth:
    """The nesting depth of a JSON text fed in pieces, brackets inside strings not counted.

    Escapes are honoured across pieces. Each piece costs a few passes in C (`replace`,
    `translate`, `split`); only a piece with more brackets than the headroom is summed bracket by
    bracket. Invalid JSON is measured too; its parser refuses it where it goes wrong.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.depth = 0
        self.deepest = 0
        self.in_string = False
        self.escaped = False  # the previous piece ended in a backslash that escapes this one's first byte

    def feed(self, data: bytes) -> bool:
        """Take the next piece; False once the text has gone deeper than the limit."""
        if self.escaped and data:
            data, self.escaped = data[1:], False
        data = data.replace(b"\\\\", b"")  # what remains of a run of backslashes is one, before what it escapes
        if data.endswith(b"\\"):
            data, self.escaped = data[:-1], True
        structure = data.replace(b'\\"', b"").translate(None, _NOT_QUOTE_OR_BRACKET)
        pieces = structure.split(b'"')  # alternately outside and inside strings
        outside = b"".join(pieces[1 if self.in_string else 0 :: 2])
        self.in_string ^= len(pieces) % 2 == 0
        opened = outside.count(b"[") + outside.count(b"{")
        if self.depth + opened > self.limit:  # this piece may go too deep: follow it bracket by bracket
            self.deepest = max(self.deepest, max(accumulate(map(_STEP.__getitem__, outside), initial=self.depth)))
        self.depth += 2 * opened - len(outside)
        return self.deepest <= self.limit


class BodyBudget:
    """The request bytes one process holds at once, across all requests: what bounds its memory under a
    flood of uploads (each one alone is bounded by `BOT_HTTP_MAX_BODY_BYTES`)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.held = 0

    def take(self, size: int) -> None:
        if self.held + size > self.limit:
            raise RequestRefused(
                503,
                "server_busy",
                f"this server is receiving {self.held} bytes of request bodies at once (its limit is {self.limit}); "
                "retry in a moment",
                {"Retry-After": "1"},
            )
        self.held += size

    def give_back(self, size: int) -> None:
        self.held -= size


class _Body:
    """A request's `receive` that counts the body as it streams in, times its arrival and measures its depth."""

    def __init__(self, receive: Receive, http: HttpSettings, json: JsonDepth | None, budget: BodyBudget) -> None:
        self.receive = receive
        self.http = http
        self.json = json
        self.budget = budget
        self.deadline = asyncio.get_running_loop().time() + http.body_seconds
        self.received = 0
        self.complete = False

    async def __call__(self) -> Message:
        if self.complete:  # the body is in: what follows is waiting for a disconnect (long-polls), unlimited
            return await self.receive()
        try:
            async with asyncio.timeout_at(self.deadline):  # no task per call, as wait_for would make
                message = await self.receive()
        except TimeoutError:
            seconds = self.http.body_seconds
            raise RequestRefused(
                408, "request_timeout", f"the body did not arrive within {seconds:g}s; send it at once"
            ) from None
        if message["type"] == "http.request":
            chunk = message.get("body", b"")
            self.budget.take(len(chunk))  # given back by the Guard when the request ends
            self.received += len(chunk)
            if self.received > self.http.max_body_bytes:
                limit = self.http.max_body_bytes
                raise RequestRefused(413, "payload_too_large", f"the body is over the limit of {limit} bytes")
            if self.json is not None and not self.json.feed(chunk):
                raise RequestRefused(
                    422,
                    "json_too_deep",
                    f"the JSON body nests {self.json.deepest} levels deep; the limit is {self.json.limit}: "
                    "send a flatter document",
                )
            self.complete = not message.get("more_body", False)
        return message


def _answer(refused: RequestRefused, headers: dict[str, str] | None = None) -> JSONResponse:
    merged = {**(refused.headers or {}), **(headers or {})}
    return http_errors.error_response(refused.status_code, refused.code, str(refused.detail), merged)


class Guard:
    """Refuse what is over a limit before anything else reads it; add the browser security headers.

    A declared `Content-Length` over the limit is refused before a byte is read. Otherwise the body
    is counted as it arrives, so an oversized or endless chunked upload costs at most
    `max_body_bytes` of memory, and all uploads together at most `body_budget_bytes`.
    """

    def __init__(
        self,
        app: ASGIApp,
        http: HttpSettings | None = None,
        limits: AddressLimits | None = None,
        tokens: TokenCheck | None = None,
    ) -> None:
        self.app = app
        self.http = http or HttpSettings.model_validate({})
        self.limits = limits
        self.tokens = tokens
        self.budget = BodyBudget(self.http.body_budget_bytes)

    def _token_refusal(self, scope: Scope) -> ApiError | None:
        """Why the request's bearer token is refused (None: no token check here, or a known token)."""
        if self.tokens is None:
            return None
        scheme, _, presented = Headers(scope=scope).get("authorization", "").partition(" ")
        return self.tokens.refusal(presented.strip() if scheme.lower() == "bearer" and presented else None)

    def _oversized(self, scope: Scope) -> RequestRefused | None:
        """The headers or the declared body over a limit."""
        raw, http = scope["headers"], self.http
        if len(raw) > http.max_headers:
            message = f"the request has {len(raw)} headers; the limit is {http.max_headers}: send fewer"
            return RequestRefused(431, "request_header_fields_too_large", message)
        size = sum(len(name) + len(value) for name, value in raw)
        if size > http.max_header_bytes:
            message = (
                f"the request's headers have {size} bytes (names and values); the limit is {http.max_header_bytes}: "
                "send smaller headers (cookies, tokens)"
            )
            return RequestRefused(431, "request_header_fields_too_large", message)
        length = Headers(raw=raw).get("content-length", "")
        if length.isdigit() and int(length) > http.max_body_bytes:
            message = f"the body has {length} bytes; the limit is {http.max_body_bytes}"
            return RequestRefused(413, "payload_too_large", message)
        return None

    async def _refusal(self, scope: Scope) -> JSONResponse | None:
        """What to answer before reading anything: a request over a size limit; one without a known token
        whose address is over its rate (a known token's requests are counted per identity instead, by
        `TokenAuth`: one Redis round trip per request, not two); a body for a token route without one."""
        if (oversized := self._oversized(scope)) is not None:
            return _answer(oversized)
        token = self._token_refusal(scope)
        client = scope.get("client")
        if token is not None and self.limits is not None and scope["path"] not in UNLIMITED:
            refused = await self.limits.hit("address", client[0] if client else "unknown")
            if refused is not None:
                return http_errors.error_response(
                    429, "rate_limited", refused.message, {"Retry-After": str(refused.retry_after)}
                )
        path = scope["path"]
        if token is None or scope["method"] not in BODY_METHODS:
            return None
        if not path.startswith(TOKEN_ROUTES) or path.startswith(SIGNED_ROUTES):
            return None  # hooks are signed; the console's pages and probes need no token
        return http_errors.error_response(token.status, token.code, token.message, token.headers)  # before the body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        if (refusal := await self._refusal(scope)) is not None:
            return await refusal(scope, receive, send)
        private = scope["path"].startswith(("/v1/", "/web/"))
        started = False
        content_type = Headers(scope=scope).get("content-type", "").partition(";")[0].strip().lower()
        json = None if content_type in FORMS else JsonDepth(self.http.max_json_depth)
        body = _Body(receive, self.http, json, self.budget)

        async def send_with_headers(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                headers = MutableHeaders(scope=message)
                for name, value in SECURITY_HEADERS.items():
                    headers.setdefault(name, value)
                if private:
                    headers.setdefault("Cache-Control", "no-store")
            await send(message)

        try:
            await self.app(scope, body, send_with_headers)
        except RequestRefused as exc:  # a route outside FastAPI's handlers read the body
            if started:
                raise
            await _answer(exc, {"Connection": "close"})(scope, receive, send_with_headers)
        finally:
            self.budget.give_back(body.received)


class _HeaderDeadline(H11Protocol):
    """uvicorn's h11 protocol, with `header_seconds` for the request line and headers to arrive.

    The clock starts when the connection opens, and on a kept-alive connection at the first byte
    of the next request (before it, uvicorn's `timeout_keep_alive` applies); it stops once h11 has
    the whole head. Late, a partial request is answered 408 in the usual JSON shape, an idle
    connection just closed.
    """

    header_seconds = 10.0
    _deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def data_received(self, data: bytes) -> None:
        if self._deadline is None and self.conn.their_state is h11.IDLE:
            self._arm()
        super().data_received(data)
        if self.conn.their_state is not h11.IDLE:
            self._disarm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _arm(self) -> None:
        self._disarm()
        self._deadline = self.loop.call_later(self.header_seconds, self._too_slow)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _too_slow(self) -> None:
        self._deadline = None
        if self.transport.is_closing():
            return
        partial, _ = self.conn.trailing_data
        if partial:
            client = f"{self.client[0]}:{self.client[1]}" if self.client else "a client"
            log.info("%s did not send its request headers within %gs; answered 408", client, self.header_seconds)
            message = f"the request headers did not arrive within {self.header_seconds:g}s; send them at once"
            body = http_errors.error_response(408, "request_timeout", message).body
            head = (
                b"HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\n"
                b"content-length: %d\r\nconnection: close\r\n\r\n" % len(body)
            )
            self.transport.write(head + bytes(body))
        self.transport.close()


def h11_protocol(http: HttpSettings) -> type[H11Protocol]:
    """The protocol class for `uvicorn.Config(http=...)`, with `http.header_seconds` as its deadline."""

    class H11HeaderDeadline(_HeaderDeadline):
        header_seconds = http.header_seconds

    return H11HeaderDeadline


def h11_buffer_bytes(http: HttpSettings) -> int:
    """`uvicorn.Config(h11_max_incomplete_event_size=...)`: above our header limit, so it answers the 431."""
    return H11_BUFFER_FACTOR * http.max_header_bytes
