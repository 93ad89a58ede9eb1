"""Request limits against the real uvicorn server, sent byte by byte as a client would: chunked, slow,
oversized headers, deep JSON, a head that drips in; and the JSON depth scanner on its own."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any
from urllib.parse import urlsplit

import pytest
from hypothesis import given
from hypothesis import strategies as st
from starlette.types import Message, Receive, Scope, Send

from bot.http.guard import Guard, JsonDepth
from bot.http.hooks import Hook, HookConfig, signature
from config.channels import HttpSettings
from tests.web.conftest import ALICE, BOB, Server

CHUNK = b"x" * 65536
DEEP = b"[" * 10_000 + b"]" * 10_000  # 20 kB: Python's json recurses into a RecursionError on it
CLOSE_SECONDS = 5


Connection = tuple[asyncio.StreamReader, asyncio.StreamWriter]
Connect = Callable[[Server], Awaitable[Connection]]


@pytest.fixture
async def connect() -> AsyncIterator[Connect]:
    """`await connect(server)`: a raw connection to the server, closed after the test."""
    writers: list[asyncio.StreamWriter] = []

    async def open_to(server: Server) -> Connection:
        where = urlsplit(server.url)
        reader, writer = await asyncio.open_connection(where.hostname, where.port)
        writers.append(writer)
        return reader, writer

    yield open_to
    for writer in writers:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()


def head(length: str, token: str = BOB) -> bytes:
    framing = "Transfer-Encoding: chunked" if length == "chunked" else f"Content-Length: {length}"
    return (
        f"POST /v1/threads HTTP/1.1\r\nHost: bot\r\nAuthorization: Bearer {token}\r\n"
        f"Content-Type: application/json\r\n{framing}\r\n\r\n"
    ).encode()


async def raw_response(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    status_line = await asyncio.wait_for(reader.readline(), timeout=10)
    headers: dict[str, str] = {}
    while (line := await reader.readline()) not in (b"\r\n", b""):
        name, _, value = line.decode().partition(":")
        headers[name.strip().lower()] = value.strip()
    body = await reader.readexactly(int(headers["content-length"]))
    return int(status_line.split()[1]), body


async def response(reader: asyncio.StreamReader) -> tuple[int, dict[str, object]]:
    status, body = await raw_response(reader)
    return status, json.loads(body)


async def until_closed(reader: asyncio.StreamReader, what: str) -> bytes:
    """All the server sends until it closes the connection, or a failure that says what it was waiting for."""
    try:
        return await asyncio.wait_for(reader.read(), timeout=CLOSE_SECONDS)
    except TimeoutError:
        raise AssertionError(f"the server did not close the connection within {CLOSE_SECONDS}s: {what}") from None


async def upload(server: Server, connect: Connect, token: str) -> tuple[int, dict[str, object], int]:
    """A 4 MB chunked upload, sent until the server answers: (status, body, bytes sent)."""
    reader, writer = await connect(server)
    writer.write(head("chunked", token=token))
    sent = 0
    # The server may answer and close while we are still sending: what an attacker sees too.
    with contextlib.suppress(ConnectionError):
        while sent < 64 * len(CHUNK) and not reader.at_eof() and not reader._buffer:  # answered yet?
            writer.write(b"%x\r\n%s\r\n" % (len(CHUNK), CHUNK))
            await writer.drain()
            sent += len(CHUNK)
            await asyncio.sleep(0)  # let the answer, if any, reach the reader
    status, body = await response(reader)
    return status, body, sent


async def test_a_chunked_upload_over_the_limit_is_cut_off_with_413(server: Server, connect: Connect) -> None:
    """Sent with no Content-Length: refused at the limit, not read whole."""
    status, body, sent = await upload(server, connect, BOB)
    assert (status, body["error"]["code"]) == (413, "payload_too_large")  # type: ignore[index]
    assert "over the limit of 1048576 bytes" in body["error"]["message"]  # type: ignore[index]
    assert sent < 64 * len(CHUNK), "the server answered before the 4 MB upload ended"


async def test_a_body_with_a_wrong_token_is_refused_before_it_is_read(server: Server, connect: Connect) -> None:
    status, body, sent = await upload(server, connect, "not-a-token-0123456789")
    assert (status, body["error"]["code"]) == (401, "unauthorized")  # type: ignore[index]
    assert sent < 64 * len(CHUNK), "answered at once, the body unread"


async def test_bodies_past_the_process_budget_are_refused_with_503() -> None:
    """All requests' bodies together are bounded: a flood of uploads cannot hold more than the budget."""
    http = HttpSettings.model_validate({"BOT_HTTP_BODY_BUDGET_BYTES": str(1024 * 1024)})
    held = asyncio.Event()

    async def app(scope: Scope, receive: Receive, send: Send) -> None:  # reads the whole body, then answers
        while (await receive()).get("more_body"):
            held.set()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    guard = Guard(app, http=http)
    first: asyncio.Queue[Message] = asyncio.Queue()
    answers: dict[str, list[Message]] = {"first": [], "second": []}

    async def request(name: str, receive: Receive) -> None:
        scope = {"type": "http", "method": "POST", "path": "/v1/threads", "headers": [], "client": ("10.0.0.1", 1)}

        async def send(message: Message) -> None:
            answers[name].append(message)

        await guard(scope, receive, send)

    holding = asyncio.create_task(request("first", first.get))
    await first.put({"type": "http.request", "body": b"[" + b" " * (900 * 1024), "more_body": True})
    await asyncio.wait_for(held.wait(), timeout=5)  # the first body is held, not finished

    async def second() -> Message:
        return {"type": "http.request", "body": b" " * (200 * 1024), "more_body": False}

    await request("second", second)
    assert answers["second"][0]["status"] == 503
    assert b"server_busy" in answers["second"][1]["body"] and (b"retry-after", b"1") in answers["second"][0]["headers"]
    await first.put({"type": "http.request", "body": b"]", "more_body": False})
    await asyncio.wait_for(holding, timeout=5)
    assert answers["first"][0]["status"] == 200 and guard.budget.held == 0, "its bytes are given back"
    await request("second", second)
    assert answers["second"][-2]["status"] == 200, "with the first done, the second fits"


async def test_a_body_that_drips_in_is_refused_with_408(start_server, fake_redis, connect: Connect) -> None:
    server = await start_server(fake_redis, BOT_HTTP_BODY_SECONDS="0.5")
    reader, writer = await connect(server)
    writer.write(head("100") + b'{"text": ')  # 9 of the 100 bytes promised, then nothing
    await writer.drain()
    status, body = await response(reader)
    assert (status, body["error"]["code"]) == (408, "request_timeout")  # type: ignore[index]
    assert "did not arrive within 0.5s" in body["error"]["message"]  # type: ignore[index]
    assert await server.inbox_length() == 0


async def test_a_chunked_body_under_the_limit_is_accepted(server: Server, connect: Connect) -> None:
    reader, writer = await connect(server)
    payload = json.dumps({"text": "/status api staging"}).encode()
    writer.write(head("chunked") + b"%x\r\n%s\r\n0\r\n\r\n" % (len(payload), payload))
    await writer.drain()
    status, body = await response(reader)
    assert status == 202 and body["thread_id"]


async def test_a_long_poll_outlasts_the_body_time_limit(start_server, fake_redis) -> None:
    """The limit is on the body arriving, not on how long the answer takes."""
    server = await start_server(fake_redis, BOT_HTTP_BODY_SECONDS="0.2")
    position = (await server.call("GET", "/web/updates?conversation=main")).body["after"]
    polled = await server.call("GET", f"/web/updates?conversation=main&after={position}&wait=0.6")
    assert polled.status == 200 and polled.body["items"] == []


async def get_with_padding(connection: Connection, path: str, size: int) -> tuple[int, bytes]:
    """GET `path` with headers of `size` bytes of names and values (a wrong token among them), sent a
    kilobyte at a time as a slow network would, so h11 sees the head incomplete; the status and body."""
    reader, writer = connection
    names_and_values = "host" + "bot" + "authorization" + "Bearer not-a-token-0123456789" + "x-padding"
    request = (
        f"GET {path} HTTP/1.1\r\nHost: bot\r\nAuthorization: Bearer not-a-token-0123456789\r\n"
        f"X-Padding: {'a' * (size - len(names_and_values))}\r\n\r\n"
    ).encode()
    for start in range(0, len(request), 1024):
        writer.write(request[start : start + 1024])
        await writer.drain()
        await asyncio.sleep(0)  # the server's read, in this loop, runs before the next piece is sent
        await asyncio.sleep(0)
    return await raw_response(reader)


async def test_headers_over_the_limit_are_refused_with_431_before_the_token_is_checked(
    server: Server, connect: Connect
) -> None:
    """16 KiB of names and values pass (to the token check); one byte more is refused before it."""
    assert (await get_with_padding(await connect(server), "/v1/me", 16 * 1024))[0] == 401
    status, body = await get_with_padding(await connect(server), "/v1/me", 16 * 1024 + 1)
    assert (status, json.loads(body)["error"]["code"]) == (431, "request_header_fields_too_large")
    assert "have 16385 bytes (names and values); the limit is 16384" in json.loads(body)["error"]["message"]


async def test_headers_well_over_the_limit_get_the_431_rather_than_h11s_bare_400(
    server: Server, connect: Connect
) -> None:
    """h11's buffer for an incomplete head is 4x the limit, so a 48 KiB head still reaches the guard."""
    status, body = await get_with_padding(await connect(server), "/v1/me", 48 * 1024)
    assert (status, json.loads(body)["error"]["code"]) == (431, "request_header_fields_too_large")


async def test_too_many_headers_are_refused_with_431(server: Server) -> None:
    headers = {f"X-Header-{n}": "1" for n in range(101)}
    reply = await server.call("GET", "/v1/me", headers=headers)
    assert (reply.status, reply.code) == (431, "request_header_fields_too_large")
    assert "the limit is 100" in reply.message


async def test_a_gigantic_header_block_is_refused_by_h11_before_it_is_read(server: Server, connect: Connect) -> None:
    """Past 4x the header limit h11 stops buffering, answers a bare 400 and closes: 64 MiB are never read."""
    reader, writer = await connect(server)
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: bot\r\n")
    line, sent = b"X-Padding: " + b"a" * 8000 + b"\r\n", 0
    with contextlib.suppress(ConnectionError):
        while sent < 64 * 1024 * 1024 and not reader.at_eof() and not reader._buffer:  # answered yet?
            writer.write(line * 8)
            await writer.drain()
            sent += 8 * len(line)
            await asyncio.sleep(0)  # let the answer, if any, reach the reader
    try:
        answer = await until_closed(reader, "a header block that never ends")
    except ConnectionResetError:  # the 400 was sent, but the unread headers turned the close into a reset
        answer = b"reset"
    assert answer.startswith(b"HTTP/1.1 400 ") or answer == b"reset"
    assert sent < 4 * 1024 * 1024, f"the server read {sent} bytes of headers before refusing them"


HOOK_SECRET = "s3cret-for-tests"
SIGNED = {"X-Hub-Signature-256": signature(HOOK_SECRET, DEEP), "X-GitHub-Delivery": "d-1", "Content-Type": "text/plain"}


def hook_config() -> HookConfig:
    hook = Hook.model_validate({"name": "ci", "text": "/run_tests {service}", "secret": HOOK_SECRET})
    return HookConfig({"ci": hook})


@pytest.mark.parametrize(
    ("path", "token", "headers"),
    [
        ("/v1/threads", ALICE, {"Content-Type": "application/json"}),
        ("/v1/threads", ALICE, {}),  # FastAPI parses a body without a type as JSON
        ("/web/messages", ALICE, {"Content-Type": "application/json"}),
        ("/v1/hooks/ci", None, SIGNED),  # signed, so it would reach the hook's json.loads; whatever its type
    ],
    ids=["api", "api-untyped", "web", "hook"],
)
async def test_json_nested_over_the_limit_is_refused_with_422_on_every_route(
    start_server, fake_redis, path: str, token: str | None, headers: dict[str, str]
) -> None:
    """10 000 levels of `[`, which Python's json cannot parse: refused as it arrives, never a 500."""
    server = await start_server(fake_redis, hooks=hook_config())
    reply = await server.call("POST", path, token=token, data=DEEP, headers=headers)
    assert (reply.status, reply.code) == (422, "json_too_deep")
    assert "levels deep; the limit is 32" in reply.message
    assert await server.inbox_length() == 0


async def test_brackets_inside_strings_do_not_count_towards_the_depth(server: Server) -> None:
    text = '/status api staging # [[[[{{{{ \\" ' + "[" * 100
    reply = await server.call("POST", "/v1/threads", json={"text": text})
    assert reply.status == 202


async def test_the_depth_limit_is_a_setting(start_server, fake_redis) -> None:
    server = await start_server(fake_redis, BOT_HTTP_MAX_JSON_DEPTH="2")
    reply = await server.call("POST", "/v1/threads", json={"text": "/status api staging", "reply_to": {"a": [1]}})
    assert (reply.status, reply.code) == (422, "json_too_deep")
    assert reply.message.startswith("the JSON body nests 3 levels deep; the limit is 2")


@pytest.mark.parametrize("kept_alive", [False, True], ids=["first request", "kept-alive request"])
async def test_a_client_dripping_its_headers_is_cut_off_with_408(
    start_server, fake_redis, connect: Connect, kept_alive: bool
) -> None:
    """Slowloris: each byte comes in well before the deadline, but the head must be complete by then."""
    server = await start_server(fake_redis, BOT_HTTP_HEADER_SECONDS="0.3")
    reader, writer = await connect(server)
    if kept_alive:
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: bot\r\n\r\n")
        assert (await response(reader))[0] == 200
    answer = asyncio.ensure_future(until_closed(reader, "a client sending one header byte at a time"))
    for byte in b"GET /healthz HTTP/1.1\r\nHost: bot\r\nX-Slow: " + b"a" * 1000:
        writer.write(bytes([byte]))
        await writer.drain()
        if (await asyncio.wait({answer}, timeout=0.02))[0]:  # the next byte when the server has not answered
            break
    head, _, body = (await answer).partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 408 ")
    assert json.loads(body)["error"]["code"] == "request_timeout"
    assert "did not arrive within 0.3s" in json.loads(body)["error"]["message"]


async def test_a_connection_that_sends_nothing_is_closed(start_server, fake_redis, connect: Connect) -> None:
    server = await start_server(fake_redis, BOT_HTTP_HEADER_SECONDS="0.3")
    reader, _ = await connect(server)
    assert await until_closed(reader, "a connection that never sends a request") == b""


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(alphabet='[]{}"\\ax\n\u00e9'),
    lambda children: st.lists(children) | st.dictionaries(st.text(alphabet='[]{}"\\a'), children),
    max_leaves=40,
)


def nesting(value: Any) -> int:
    if isinstance(value, list | dict):
        children = value.values() if isinstance(value, dict) else value
        return 1 + max((nesting(child) for child in children), default=0)
    return 0


@given(value=JSON_VALUES, ascii_only=st.booleans(), data=st.data())
def test_the_depth_scanner_measures_json_cut_anywhere(value: Any, ascii_only: bool, data: st.DataObject) -> None:
    """Brackets, quotes and backslashes in strings, pieces cut mid-escape: the depth is the parsed one."""
    text = json.dumps(value, ensure_ascii=ascii_only).encode()
    cuts = sorted(data.draw(st.lists(st.integers(0, len(text)), max_size=6)))
    pieces = [text[start:end] for start, end in zip([0, *cuts], [*cuts, len(text)], strict=True)]
    exact, at_limit, under_limit = JsonDepth(0), JsonDepth(nesting(value)), JsonDepth(nesting(value) - 1)
    for piece in pieces:
        for scanner in (exact, at_limit, under_limit):
            scanner.feed(piece)
    assert exact.deepest == nesting(value)
    assert at_limit.feed(b"") and not under_limit.feed(b"")  # the verdict on everything fed so far
