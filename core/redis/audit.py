"""The audit trail in Redis: one append-only, hash-chained stream of approval facts (`core.domain.audit`).

- Records are derived from a thread's committed events, never written beside them: the thread log is
  the truth. Each thread has a cursor, "audited through event N" with its open gated calls.
- Python reads the chain head and the cursor, derives and links the records; one script appends them
  and moves the head and the cursor only if both are still what Python read (else it answers what
  they are now, and Python derives again). A record is never written twice.
- Before a commit that holds audit facts, the thread is marked due (`{audit}:due`) in the same round
  trip that reads the head and cursor; the append clears the mark. A process that dies between the
  commit and the append leaves the mark, and the sweeper (`catch_up_due`) appends what it left, from
  the thread's log. So a record is never lost either. A commit with no mark pending before it has no
  unaudited facts behind it, so the gap since the cursor is not read.
- Every key is in the `{audit}` slot (Redis Cluster: one script, one slot).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import TypeAdapter

from core.domain import events as ev
from core.domain.audit import (
    APPROVAL_EVENTS,
    FACTS,
    GENESIS,
    AuditFact,
    AuditRecord,
    Cursor,
    GatedCall,
    Head,
    Verification,
    chain,
    derive,
    open_approved,
    verify,
)
from core.domain.errors import ConflictError, StoreUnavailable
from core.domain.reducer import ThreadState
from core.obs import failpoints
from core.redis import keys
from core.redis.store import Store, redis_errors

log = logging.getLogger(__name__)

# Append linked records if the chain head and the thread's cursor are what the caller read; clear the
# thread's due mark if it is still the one the caller names. KEYS: 1 the stream, 2 the head, 3 the cursor,
# 4 the due set, 5 the thread's record index. ARGV: 1 head n read, 2 head hash read, 3 cursor seq read,
# 4 new cursor seq, 5 new open calls (JSON), 6 thread id, 7 due score to clear ('' none), 8 new head hash,
# 9.. the records' JSON in chain order. Returns {1, n} appended; {2, n} audited that far already (nothing
# written); {0, head n, head hash, cursor seq, open calls} when either moved: derive again and retry.
APPEND = """
local n = tonumber(redis.call('HGET', KEYS[2], 'n') or '0')
local hash = redis.call('HGET', KEYS[2], 'hash') or ''
local seq = tonumber(redis.call('HGET', KEYS[3], 'seq') or '0')
local function clear()
  if ARGV[7] ~= '' and tonumber(redis.call('ZSCORE', KEYS[4], ARGV[6]) or '-1') == tonumber(ARGV[7]) then
    redis.call('ZREM', KEYS[4], ARGV[6])
  end
end
if seq >= tonumber(ARGV[4]) then clear() return {2, n} end
local count = #ARGV - 8
if seq ~= tonumber(ARGV[3]) or (count > 0 and (n ~= tonumber(ARGV[1]) or hash ~= ARGV[2])) then
  return {0, n, hash, seq, redis.call('HGET', KEYS[3], 'open') or ''}
end
for i = 9, #ARGV do redis.call('RPUSH', KEYS[5], redis.call('XADD', KEYS[1], '*', 'r', ARGV[i])) end
if count > 0 then redis.call('HSET', KEYS[2], 'n', n + count, 'hash', ARGV[8]) end
redis.call('HSET', KEYS[3], 'seq', ARGV[4], 'open', ARGV[5])
clear()
return {1, n + count}
"""

# Append one record that belongs to no thread event (a grant's revocation) if the chain head is what the
# caller read. KEYS: 1 the stream, 2 the head, 3 the thread's record index. ARGV: 1 head n read, 2 head
# hash read, 3 the new head hash, 4 the record's JSON. Returns {1, n}, or {0, head n, head hash}: retry.
APPEND_FACT = """
local n = tonumber(redis.call('HGET', KEYS[2], 'n') or '0')
local hash = redis.call('HGET', KEYS[2], 'hash') or ''
if n ~= tonumber(ARGV[1]) or hash ~= ARGV[2] then return {0, n, hash} end
redis.call('RPUSH', KEYS[3], redis.call('XADD', KEYS[1], '*', 'r', ARGV[4]))
redis.call('HSET', KEYS[2], 'n', n + 1, 'hash', ARGV[3])
return {1, n + 1}
"""

ATTEMPTS = 8  # appends racing other threads' appends; past this the thread stays due for the sweeper
PAGE = 1000
CLOCK_SKEW = timedelta(minutes=5)  # `since`: stream ids are Redis's clock, `at` the worker's
_OPEN: TypeAdapter[dict[str, GatedCall]] = TypeAdapter(dict[str, GatedCall])


@dataclass(frozen=True)
class Ticket:
    """What announcing a commit read: the due mark set (`score`), whether an earlier one was still
    pending (its facts may be unaudited), the chain head and the thread's cursor."""

    thread_id: str
    score: int
    pending: bool
    head: Head
    cursor: Cursor


def _s(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _head(n: Any, digest: Any) -> Head:
    return Head(int(n or 0), _s(digest) if digest else GENESIS)


def _cursor(seq: Any, open_calls: Any) -> Cursor:
    return Cursor(seq=int(seq or 0), open=_OPEN.validate_json(open_calls) if open_calls else {})


def _score(at: datetime) -> int:
    """A due mark: milliseconds, then three random digits, so two announces never hold the same token."""
    return int(at.timestamp() * 1000) * 1000 + int.from_bytes(os.urandom(2), "big") % 1000


class AuditLog:
    """The audit stream, its head, the threads' cursors and due marks."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.redis = store.redis
        self._append = self.redis.register_script(APPEND)
        self._append_fact = self.redis.register_script(APPEND_FACT)

    # --- writing -----------------------------------------------------------------------------

    async def announce(self, thread_id: str, at: datetime) -> Ticket:
        """Mark the thread due before a commit with facts, reading the head and its cursor (one round trip)."""
        score = _score(at)
        with redis_errors():
            async with self.redis.pipeline(transaction=False) as pipe:
                pipe.zscore(keys.AUDIT_DUE, thread_id)
                pipe.zadd(keys.AUDIT_DUE, {thread_id: score})
                pipe.hmget(keys.AUDIT_HEAD, ["n", "hash"])
                pipe.hmget(keys.audit_cursor(thread_id), ["seq", "open"])
                earlier, _, head, cursor = await pipe.execute()
        return Ticket(thread_id, score, earlier is not None, _head(*head), _cursor(*cursor))

    async def record(self, ticket: Ticket, channel: str, events: Sequence[tuple[int, ev.Event]]) -> int:
        """After the commit: append the facts of `events` (seq, event), and of any unaudited gap before them."""
        upto = events[-1][0]
        return await self._append_all(ticket, channel, list(events), upto, read_gap=ticket.pending)

    async def append_fact(self, fact: AuditFact) -> AuditRecord:
        """Chain one fact that no thread event carries (a grant's revocation) onto the head, now."""
        head = await self.head()
        for _ in range(ATTEMPTS):
            [record] = chain([fact], head)
            args: list[str | int] = [head.n, "" if head.n == 0 else head.hash, record.hash, record.model_dump_json()]
            with redis_errors():
                reply = await self._append_fact(
                    keys=[keys.AUDIT_LOG, keys.AUDIT_HEAD, keys.audit_records(fact.thread_id)], args=args
                )
            if int(reply[0]) == 1:
                return record
            head = _head(reply[1], reply[2])
        raise ConflictError(f"audit: a {fact.fact} record lost {ATTEMPTS} races for the chain head")

    async def catch_up(self, thread_id: str, score: int | None = None) -> int:
        """Append what the thread's log holds past its cursor; clear its due mark `score`. Returns how many."""
        state = await self.store.load_state(thread_id)
        with redis_errors():
            async with self.redis.pipeline(transaction=False) as pipe:
                pipe.hmget(keys.AUDIT_HEAD, ["n", "hash"])
                pipe.hmget(keys.audit_cursor(thread_id), ["seq", "open"])
                head, cursor = await pipe.execute()
        ticket = Ticket(thread_id, -1 if score is None else score, True, _head(*head), _cursor(*cursor))
        events = await self._events(thread_id, ticket.cursor.seq + 1, state.seq)
        return await self._append_all(ticket, state.channel, events, state.seq, read_gap=True)

    async def catch_up_due(self, before: datetime, limit: int = 50) -> int:
        """The sweeper's part: threads marked due before `before` whose lease nobody holds (their worker died
        after the commit); a live worker's thread is left to it, so its mark is never cleared under it."""
        cutoff = int(before.timestamp() * 1000) * 1000
        with redis_errors():
            due: Any = await self.redis.zrangebyscore(
                keys.AUDIT_DUE, "-inf", cutoff, start=0, num=limit, withscores=True
            )
        if not due:
            return 0
        with redis_errors():  # a thread under a lease has a live worker, which appends its own facts
            async with self.redis.pipeline(transaction=False) as pipe:
                for member, _ in due:
                    pipe.exists(keys.thread_lock(_s(member)))
                held = await pipe.execute()
        done = 0
        for (member, score), leased in zip(due, held, strict=True):
            if leased:
                continue
            thread_id = _s(member)
            appended = await self.catch_up(thread_id, int(score))
            if appended:
                log.warning(
                    "audit: thread %s had %d unaudited facts (its worker stopped); appended", thread_id, appended
                )
            done += appended
        return done

    async def _append_all(
        self, ticket: Ticket, channel: str, events: list[tuple[int, ev.Event]], upto: int, *, read_gap: bool
    ) -> int:
        tid, head, cursor = ticket.thread_id, ticket.head, ticket.cursor
        for _ in range(ATTEMPTS):
            first = events[0][0] if events else upto + 1
            if cursor.seq + 1 < first and (read_gap or open_approved(cursor)):
                events = await self._events(tid, cursor.seq + 1, first - 1) + events
            new_cursor, facts = derive(tid, channel, cursor, events, upto)
            records = chain(facts, head)
            args: list[str | int] = [
                head.n,
                "" if head.n == 0 else head.hash,
                cursor.seq,
                new_cursor.seq,
                _OPEN.dump_json(dict(new_cursor.open)).decode(),
                tid,
                "" if ticket.score < 0 else ticket.score,
                records[-1].hash if records else "",
                *(record.model_dump_json() for record in records),
            ]
            with redis_errors():
                reply = await self._append(
                    keys=[
                        keys.AUDIT_LOG,
                        keys.AUDIT_HEAD,
                        keys.audit_cursor(tid),
                        keys.AUDIT_DUE,
                        keys.audit_records(tid),
                    ],
                    args=args,
                )
            if int(reply[0]) == 1:
                return len(records)
            if int(reply[0]) == 2:
                return 0
            head, cursor = _head(reply[1], reply[2]), _cursor(reply[3], reply[4])
        raise ConflictError(f"audit: thread {tid}'s records lost {ATTEMPTS} races for the chain head; left due")

    async def _events(self, thread_id: str, start: int, end: int) -> list[tuple[int, ev.Event]]:
        found: list[tuple[int, ev.Event]] = []
        while start <= end:
            page = await self.store.load_events(thread_id, start, end, count=PAGE)
            if not page:
                break
            found += enumerate(page, start=start)
            start += len(page)
        return found

    # --- reading -----------------------------------------------------------------------------

    async def head(self) -> Head:
        with redis_errors():
            n, digest = await self.redis.hmget(keys.AUDIT_HEAD, ["n", "hash"])
        return _head(n, digest)

    async def raw(self, since: datetime | None = None) -> AsyncIterator[str]:
        """Every record's stored JSON in chain order (from `since`, by the record's time), a page at a time."""
        start = "-" if since is None else f"{max(0, int((since - CLOCK_SKEW).timestamp() * 1000))}-0"
        while True:
            with redis_errors():
                entries: Any = await self.redis.xrange(keys.AUDIT_LOG, start, "+", count=PAGE)
            for _, fields in entries:
                text = _s(fields[b"r"])
                if since is None or _at(text) >= since:
                    yield text
            if len(entries) < PAGE:
                return
            start = "(" + _s(entries[-1][0])

    async def thread_records(self, thread_id: str) -> list[AuditRecord]:
        """One thread's records, in order (through its index: no scan of the stream)."""
        with redis_errors():
            ids = await self.redis.lrange(keys.audit_records(thread_id), 0, -1)
            async with self.redis.pipeline(transaction=False) as pipe:
                for entry_id in ids:
                    pipe.xrange(keys.AUDIT_LOG, entry_id, entry_id)
                found = await pipe.execute()
        return [AuditRecord.model_validate_json(entries[0][1][b"r"]) for entries in found if entries]

    async def verify(self) -> Verification:
        """The whole chain checked against its head (`core.domain.audit.verify`)."""
        head = await self.head()
        records: list[dict[str, Any]] = []
        async for text in self.raw():
            try:
                records.append(json.loads(text))
            except ValueError:
                records.append({"n": None, "unreadable": text[:200]})
        return verify(records, head)


def _at(text: str) -> datetime:
    try:
        return datetime.fromisoformat(json.loads(text)["at"])
    except (ValueError, KeyError, TypeError):
        return datetime.max.replace(tzinfo=UTC)  # an unreadable record is exported: verify names it


class CommitAudit:
    """One run's hook around its commits: announce before a commit with facts, append after it.

    Which commits hold facts is known without a read: approval events always; a tool's start, result
    or error when its call is one this run saw an approval event for, or the call the run found
    running (a dead worker's approved tool, recovered here).
    """

    def __init__(self, audit: AuditLog, state: ThreadState) -> None:
        self.audit = audit
        self.gated = {state.running.call_id} if state.running else set()
        if state.pending_approval is not None:
            self.gated.add(state.pending_approval.call_id)

    def holds_facts(self, events: Sequence[ev.Event]) -> bool:
        found = False
        for event in events:
            call_id = getattr(event, "call_id", "")
            if event.type in APPROVAL_EVENTS:
                self.gated.add(call_id)
                found = True
            elif event.type in FACTS and call_id in self.gated:
                found = True
        return found

    @contextlib.asynccontextmanager
    async def commit(self, before: ThreadState, after: ThreadState, events: Sequence[ev.Event]) -> AsyncIterator[None]:
        """Around `Store.append`: its facts reach the audit stream, now or (after a crash) by the sweeper."""
        if not events or not self.holds_facts(events):
            yield
            return
        ticket = await self.audit.announce(before.thread_id, max(event.at for event in events))
        yield  # the commit; if it raises, nothing is appended (the mark stays: the sweeper checks the log)
        await failpoints.hit("before-audit")
        try:
            await self.audit.record(ticket, after.channel, list(enumerate(events, start=before.seq + 1)))
        except (StoreUnavailable, ConflictError) as exc:  # committed: the thread stays due, the sweeper appends
            log.warning("thread %s: audit records not appended yet (%s); the sweeper will", before.thread_id, exc)
