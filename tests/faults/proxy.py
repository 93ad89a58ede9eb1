"""A unix-socket proxy in front of Redis that can cut the link at a chosen command.

A real outage can start between any two commands; this makes it start exactly between two
chosen ones, so a test of that window is deterministic.
"""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path


class CuttingProxy:
    def __init__(self, socket: Path, upstream: Path) -> None:
        self.socket = socket
        self.upstream = upstream
        self._cut_at: bytes | None = None
        self._server: asyncio.Server | None = None
        self._pipes: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()

    @property
    def url(self) -> str:
        return f"unix://{self.socket}"

    async def start(self) -> None:
        self._server = await asyncio.start_unix_server(self._serve, path=str(self.socket))

    def cut_at(self, command: bytes) -> None:
        """The next request containing `command` is not forwarded: every link drops and no new one is accepted."""
        self._cut_at = command

    async def heal(self) -> None:
        self._cut_at = None
        await self.start()

    async def close(self) -> None:
        await self._outage()
        for task in list(self._pipes):
            task.cancel()
        await asyncio.gather(*self._pipes, return_exceptions=True)

    async def _outage(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
            self.socket.unlink(missing_ok=True)
        for writer in list(self._writers):
            writer.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_unix_connection(str(self.upstream))
        self._writers |= {writer, up_writer}
        for pipe in (self._pipe(reader, up_writer, cutting=True), self._pipe(up_reader, writer, cutting=False)):
            task = asyncio.create_task(pipe)
            self._pipes.add(task)
            task.add_done_callback(self._pipes.discard)

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, cutting: bool) -> None:
        try:
            while data := await reader.read(65536):
                if cutting and self._cut_at is not None and self._cut_at in data.upper():
                    await self._outage()
                    return
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            writer.close()
            self._writers.discard(writer)
            with contextlib.suppress(ConnectionError, OSError):
                await writer.wait_closed()
