"""IMAP: a small typed wrapper around aioimaplib, and the supervisor that watches one mailbox.

aioimaplib is GPL-3.0-only (an optional extra) and untyped: it is imported here only, and
nothing outside this module sees its objects. Every command is raced against the connection
dropping, so a dead server is noticed at once instead of after a command timeout.

The watcher never relies on \\Seen: it keeps the highest UID it handled per mailbox and
UIDVALIDITY in Redis and asks for `UID <mark+1>:*`, so a person reading the mailbox can make
it neither skip nor repeat a mail. A mail is marked handled only after it was enqueued.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import aioimaplib

from adapters.email.state import EmailState, uid_key
from config.channels import EmailSettings
from core import Backoff, ChannelError, TransientError

log = logging.getLogger(__name__)

UIDVALIDITY = re.compile(rb"\[UIDVALIDITY (\d+)\]")
EXISTS = re.compile(rb"^\* \d+ EXISTS\r?$", re.MULTILINE)
MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


class MailboxError(ChannelError):
    """The IMAP server refused a command, timed out or went away."""


async def _first(*aws: Awaitable[Any], within: float | None = None) -> set[asyncio.Task[Any]]:
    """Wait for the first of `aws`; cancel and reap the others (no task is left behind)."""
    tasks = [asyncio.ensure_future(aw) for aw in aws]
    try:
        done, _ = await asyncio.wait(tasks, timeout=within, return_when=asyncio.FIRST_COMPLETED)
    finally:
        pending = [task for task in tasks if not task.done()]
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
    return done


class ImapClient:
    """One logged-in IMAP connection; every failure is a MailboxError."""

    def __init__(self, client: Any, where: str, timeout: float, lost: asyncio.Event) -> None:
        self._client = client
        self.where = where
        self.timeout = timeout
        self.lost = lost  # set by aioimaplib when the connection drops
        self.changed = asyncio.Event()  # set on every `* n EXISTS`: new mail, whatever command was running
        self._partial = b""
        protocol = client.protocol
        received = protocol.data_received

        def data_received(data: bytes) -> None:
            # aioimaplib queues EXISTS only while IDLE runs and drops the ones that come with other
            # commands' answers; watching the bytes ourselves closes the gap between a search and IDLE.
            lines = self._partial + data
            if EXISTS.search(lines):
                self.changed.set()
            self._partial = lines[lines.rfind(b"\n") + 1 :][-200:]
            received(data)

        protocol.data_received = data_received

    @classmethod
    async def connect(cls, settings: EmailSettings, command_seconds: float = 30) -> ImapClient:
        lost = asyncio.Event()
        raw = aioimaplib.IMAP4(
            host=settings.imap_host,
            port=settings.imap_port,
            timeout=command_seconds,
            conn_lost_cb=lambda exc: lost.set(),
            ssl_context=ssl.create_default_context() if settings.imap_tls == "implicit" else None,
        )
        client = cls(raw, f"{settings.imap_host}:{settings.imap_port}", command_seconds, lost)
        try:
            await client._call(raw.wait_hello_from_server(), "connect")
            user = settings.imap_user or settings.address
            password = settings.imap_password.get_secret_value() if settings.imap_password else ""
            await client._ok(raw.login(user, password), f"LOGIN as {user} (check IMAP_USER and IMAP_PASSWORD)")
        except BaseException:
            await client.close()
            raise
        return client

    async def _call(self, aw: Awaitable[Any], what: str, within: float | None = -1) -> Any:
        limit = self.timeout if within == -1 else within
        task = asyncio.ensure_future(aw)
        try:
            if not self.lost.is_set():
                await _first(asyncio.shield(task), self.lost.wait(), within=limit)
        except BaseException:  # we are being cancelled: leave no command behind
            task.cancel()
            raise
        if not task.done():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            why = "the connection was lost" if self.lost.is_set() else f"no answer within {limit}s"
            raise MailboxError(f"IMAP {self.where}: {what}: {why}")
        try:
            return task.result()
        except (aioimaplib.AioImapException, OSError, TimeoutError, asyncio.CancelledError) as exc:
            raise MailboxError(f"IMAP {self.where}: {what}: {type(exc).__name__} {exc}") from exc

    async def _ok(self, aw: Awaitable[Any], what: str) -> list[bytes]:
        response = await self._call(aw, what)
        lines: list[bytes] = [bytes(line) for line in response.lines]
        if response.result != "OK":
            detail = b" ".join(lines).decode(errors="replace")[:300]
            raise MailboxError(f"IMAP {self.where}: {what} failed: {response.result} {detail}")
        return lines

    async def select(self, mailbox: str) -> int:
        """Select the mailbox; returns its UIDVALIDITY."""
        lines = await self._ok(self._client.select(mailbox), f"SELECT {mailbox} (check IMAP_MAILBOX)")
        for line in lines:
            if found := UIDVALIDITY.search(line):
                return int(found.group(1))
        raise MailboxError(f"IMAP {self.where}: SELECT {mailbox} did not report a UIDVALIDITY")

    async def uids_from(self, first: int, since: date | None = None) -> list[int]:
        """UIDs >= `first` in ascending order (optionally only mail that arrived on or after `since`)."""
        criteria = ["UID", f"{first}:*"]
        if since is not None:
            criteria += ["SINCE", f"{since.day}-{MONTHS[since.month - 1]}-{since.year}"]
        lines = await self._ok(self._client.uid_search(*criteria, charset=None), "UID SEARCH")
        # aioimaplib strips "* SEARCH" from the untagged line; the last line is the tagged "completed" text.
        uids = [int(word) for line in lines[:-1] for word in line.split() if word.isdigit()]
        return sorted(uid for uid in uids if uid >= first)

    async def fetch(self, uid: int) -> bytes | None:
        """The raw message, without setting \\Seen; None when it was expunged meanwhile."""
        response = await self._call(self._client.uid("fetch", str(uid), "(BODY.PEEK[])"), f"UID FETCH {uid}")
        if response.result != "OK":
            raise MailboxError(f"IMAP {self.where}: UID FETCH {uid} failed: {response.result}")
        return next((bytes(line) for line in response.lines if isinstance(line, bytearray)), None)

    async def mark_seen(self, uid: int) -> None:
        """For people reading the mailbox; the watcher itself never relies on the flag."""
        response = await self._call(self._client.uid("store", str(uid), "+FLAGS.SILENT", r"(\Seen)"), "UID STORE")
        if response.result != "OK":
            log.debug("IMAP %s: could not flag UID %d as seen: %s", self.where, uid, response.lines)

    async def append(
        self, message: bytes, mailbox: str = "INBOX", flags: str | None = None, when: datetime | None = None
    ) -> None:
        """Store a mail (flags like `(\\Seen)`; `when` sets its arrival time)."""
        await self._ok(self._client.append(message, mailbox=mailbox, flags=flags, date=when), f"APPEND to {mailbox}")

    async def idle(self, seconds: float, stop: asyncio.Event) -> None:
        """Wait until the server reports new mail, `seconds` pass (re-IDLE) or `stop` is set.

        Returns at once when mail arrived since `changed` was last cleared.
        """
        if self.changed.is_set():
            return
        if not self._client.has_capability("IDLE"):  # poll instead
            await _first(stop.wait(), self.lost.wait(), within=seconds)
            return
        queue = self._client.protocol.idle_queue
        while not queue.empty():  # `changed` carries the news; the queue only needs emptying
            queue.get_nowait()
        idling = await self._call(self._client.idle_start(timeout=seconds), "IDLE")
        await _first(self.changed.wait(), stop.wait(), self.lost.wait(), within=seconds)
        if self.lost.is_set():
            raise MailboxError(f"IMAP {self.where}: the connection was lost during IDLE")
        self._client.idle_done()
        await self._call(idling, "IDLE DONE")

    async def close(self) -> None:
        """Log out if still connected and release everything the client holds."""
        if not self.lost.is_set() and self._client.protocol.transport is not None:
            with contextlib.suppress(MailboxError):
                await self._call(self._client.logout(), "LOGOUT", within=min(self.timeout, 5))
        waiter = getattr(self._client, "_idle_waiter", None)
        if waiter is not None:
            waiter.cancel()
        transport = self._client.protocol.transport
        if transport is not None:
            transport.close()
        leftovers = [t for t in [*self._client.tasks, *self._client.protocol.tasks] if not t.done()]
        for task in leftovers:
            task.cancel()
        await asyncio.gather(*leftovers, return_exceptions=True)


@dataclass(frozen=True)
class ImapTiming:
    idle_seconds: float = 25 * 60  # re-IDLE well inside RFC 2177's 29 minutes
    timeout: float = 30
    backoff_first: float = 1
    backoff_max: float = 300
    first_sight_days: int = 1  # a mailbox generation seen for the first time: only recent mail


DEFAULT_TIMING = ImapTiming()
Connect = Callable[[EmailSettings, float], Awaitable[ImapClient]]


class MailboxWatcher:
    """Keeps one IMAP session alive and hands each new mail, once, to `handle`."""

    def __init__(
        self,
        settings: EmailSettings,
        state: EmailState,
        handle: Callable[[bytes], Awaitable[None]],
        timing: ImapTiming = DEFAULT_TIMING,
        connect: Connect = ImapClient.connect,
    ) -> None:
        self.settings = settings
        self.state = state
        self.handle = handle
        self.timing = timing
        self._connect = connect
        self.account = f"{settings.imap_user or settings.address}@{settings.imap_host}"
        self.sessions = 0  # sessions that reached SELECT: a reconnect shows here
        self.checks = 0  # catch-ups done (one per IDLE wake-up or re-IDLE)
        self.failures = 0  # sessions that ended in an error
        self.connected = False  # a session is logged in with the mailbox selected
        self._first_looks: set[str] = set()

    async def run(self, stop: asyncio.Event) -> None:
        pauses = Backoff(first=self.timing.backoff_first, cap=self.timing.backoff_max)
        while not stop.is_set():
            before = self.sessions
            try:
                await self._session(stop)
            except Exception as exc:  # the watcher outlives every failure and reconnects
                self.failures += 1
                if self.sessions > before:
                    pauses.reset()  # it was working: start the backoff again
                delay = pauses.next()
                if isinstance(exc, TransientError):
                    log.warning("%s; reconnecting in %.1fs", exc, delay)
                else:
                    log.exception("IMAP %s: unexpected failure; reconnecting in %.1fs", self.account, delay)
                await _first(stop.wait(), within=delay)

    async def _session(self, stop: asyncio.Event) -> None:
        client = await self._connect(self.settings, self.timing.timeout)
        try:
            mailbox = self.settings.imap_mailbox
            key = uid_key(self.account, mailbox, await client.select(mailbox))
            self.sessions += 1
            self.connected = True
            while not stop.is_set():
                client.changed.clear()  # before the search: whatever arrives later wakes the next IDLE
                await self._catch_up(client, key)
                self.checks += 1
                await client.idle(self.timing.idle_seconds, stop)
        finally:
            self.connected = False
            await client.close()

    async def _catch_up(self, client: ImapClient, key: str) -> None:
        last = await self.state.last_uid(key)
        since = None
        if last is None:
            since = datetime.now(UTC).date() - timedelta(days=self.timing.first_sight_days)
            if key not in self._first_looks:
                self._first_looks.add(key)
                log.info("IMAP %s: first look at %s; taking mail since %s", self.account, key, since)
        for uid in await client.uids_from((last or 0) + 1, since):
            raw = await client.fetch(uid)
            if raw is not None:
                await self._hand_over(raw, uid)
            await client.mark_seen(uid)
            await self.state.advance_uid(key, uid)

    async def _hand_over(self, raw: bytes, uid: int) -> None:
        try:
            await self.handle(raw)
        except TransientError:
            raise  # Redis or SMTP is down: keep the mark, reconnect, and take this mail again
        except Exception:  # one unreadable mail must not block the mailbox
            log.exception("IMAP %s: mail UID %d could not be handled; skipping it", self.account, uid)
