"""Body limits against the real uvicorn server, sent byte by byte as a client would: chunked, slow."""

from __future__ import annotations

import asyncio
import contextlib
import json
from urllib.parse import urlsplit

from tests.web.conftest import BOB, Server

CHUNK = b"x" * 65536


async def connect(server: Server) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    where = urlsplit(server.url)
    return await asyncio.open_connection(where.hostname, where.port)


def head(length: str, token: str = BOB) -> bytes:
    framing = "Transfer-Encoding: chunked" if length == "chunked" else f"Content-Length: {length}"
    return (
        f"POST /v1/threads HTTP/1.1\r\nHost: bot\r\nAuthorization: Bearer {token}\r\n"
        f"Content-Type: application/json\r\n{framing}\r\n\r\n"
    ).encode()


async def response(reader: asyncio.StreamReader) -> tuple[int, dict[str, object]]:
    status_line = await asyncio.wait_for(reader.readline(), timeout=10)
    headers: dict[str, str] = {}
    while (line := await reader.readline()) not in (b"\r\n", b""):
        name, _, value = line.decode().partition(":")
        headers[name.strip().lower()] = value.strip()
    body = await reader.readexactly(int(headers["content-length"]))
    return int(status_line.split()[1]), json.loads(body)


async def test_a_chunked_upload_over_the_limit_is_cut_off_with_413(server: Server) -> None:
    """Sent with no Content-Length, by a client with a wrong token: refused at the limit, not read whole."""
    reader, writer = await connect(server)
    writer.write(head("chunked", token="not-a-token-0123456789"))
    sent = 0
    # The server may answer and close while we are still sending: what an attacker sees too.
    with contextlib.suppress(ConnectionError):
        while sent < 64 * len(CHUNK) and not reader.at_eof() and not reader._buffer:  # answered yet?
            writer.write(b"%x\r\n%s\r\n" % (len(CHUNK), CHUNK))
            await writer.drain()
            sent += len(CHUNK)
            await asyncio.sleep(0)  # let the answer, if any, reach the reader
    status, body = await response(reader)
    writer.close()
    assert (status, body["error"]["code"]) == (413, "payload_too_large")  # type: ignore[index]
    assert "over the limit of 1048576 bytes" in body["error"]["message"]  # type: ignore[index]
    assert sent < 64 * len(CHUNK), "the server answered before the 4 MB upload ended"


async def test_a_body_that_drips_in_is_refused_with_408(start_server, fake_redis) -> None:
    server = await start_server(fake_redis, BOT_HTTP_BODY_SECONDS="0.5")
    reader, writer = await connect(server)
    writer.write(head("100") + b'{"text": ')  # 9 of the 100 bytes promised, then nothing
    await writer.drain()
    status, body = await response(reader)
    writer.close()
    assert (status, body["error"]["code"]) == (408, "request_timeout")  # type: ignore[index]
    assert "did not arrive within 0.5s" in body["error"]["message"]  # type: ignore[index]
    assert await server.inbox_length() == 0


async def test_a_chunked_body_under_the_limit_is_accepted(server: Server) -> None:
    reader, writer = await connect(server)
    payload = json.dumps({"text": "/status api staging"}).encode()
    writer.write(head("chunked") + b"%x\r\n%s\r\n0\r\n\r\n" % (len(payload), payload))
    await writer.drain()
    status, body = await response(reader)
    writer.close()
    assert status == 202 and body["thread_id"]


async def test_a_long_poll_outlasts_the_body_time_limit(start_server, fake_redis) -> None:
    """The limit is on the body arriving, not on how long the answer takes."""
    server = await start_server(fake_redis, BOT_HTTP_BODY_SECONDS="0.2")
    position = (await server.call("GET", "/web/updates?conversation=main")).body["after"]
    polled = await server.call("GET", f"/web/updates?conversation=main&after={position}&wait=0.6")
    assert polled.status == 200 and polled.body["items"] == []
