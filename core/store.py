"""Threads and approvals in Redis.

- A thread is an append-only stream `thread:{id}:log` whose entry ids are the event sequence
  numbers, plus `thread:{id}:meta` holding the sequence number and a snapshot of the derived
  state. One Lua script checks the expected sequence number, appends and moves the snapshot,
  so two writers can never interleave and a step costs one round trip.
- An approval is a hash of its own; deciding is one compare-and-set script, so a double click,
  two approvers at once or a replayed email decide once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime
from typing import Any, Literal

import redis.asyncio as aioredis
import redis.exceptions
from pydantic import BaseModel, ConfigDict, ValidationError
from redis.asyncio.lock import Lock

from core import keys
from core.errors import ConflictError, StoreUnavailable
from core.events import Event, parse_event
from core.reducer import ThreadState, replay

log = logging.getLogger(__name__)

ApprovalStatus = Literal["pending", "approved", "rejected", "expired"]

_APPEND = """
local current = tonumber(redis.call('HGET', KEYS[2], 'seq') or '0')
if current ~= tonumber(ARGV[1]) then return {0, current} end
for i = 3, #ARGV do
  current = current + 1
  redis.call('XADD', KEYS[1], current .. '-0', 'e', ARGV[i])
end
redis.call('HSET', KEYS[2], 'seq', current, 'state', ARGV[2])
return {1, current}
"""

_DECIDE = """
local status = redis.call('HGET', KEYS[1], 'status')
if not status then return {'missing'} end
if status ~= 'pending' then
  return {status, redis.call('HGET', KEYS[1], 'decided_by') or '', redis.call('HGET', KEYS[1], 'decided_at') or ''}
end
local expired = tonumber(redis.call('HGET', KEYS[1], 'expires') or '0') <= tonumber(ARGV[5])
if expired and ARGV[1] ~= 'expired' then return {'late', '', ''} end
if ARGV[1] == 'expired' and not expired then return {'pending', '', ''} end
redis.call('HSET', KEYS[1], 'status', ARGV[1], 'decided_by', ARGV[2], 'decided_at', ARGV[3], 'comment', ARGV[4])
for i = 2, #KEYS do redis.call('ZREM', KEYS[i], ARGV[6]) end
return {'ok'}
"""

_ESCALATE = """
if redis.call('HGET', KEYS[1], 'status') ~= 'pending' then return 0 end
return redis.call('HSETNX', KEYS[1], 'escalated', '1')
"""


class ApprovalRecord(BaseModel):
    """An approval and its state. Deadlines (expiry, reminder, escalation) live in sorted sets beside it."""

    model_config = ConfigDict(frozen=True)

    approval_id: str
    thread_id: str
    call_id: str
    tool: str
    args: dict[str, Any]
    args_hash: str
    reason: str = ""
    requester: str
    approvers: list[str]
    allow_self: bool
    channel: str
    conversation: str
    reply_to: dict[str, str] = {}
    created_at: datetime
    expires_at: datetime
    remind_at: datetime | None = None
    escalate_at: datetime | None = None
    escalate_to: list[str] = []
    notify: list[str] = []
    status: ApprovalStatus = "pending"
    decided_by: str = ""
    decided_at: str = ""
    comment: str = ""
    escalated: bool = False

    @property
    def allowed(self) -> list[str]:
        """Who may decide now: the approvers, and the escalation group once the request was escalated."""
        return [*self.approvers, *self.escalate_to] if self.escalated else list(self.approvers)


class Decided(BaseModel):
    """What a decision attempt found: `ok`, or why nothing changed."""

    model_config = ConfigDict(frozen=True)
    outcome: Literal["ok", "missing", "approved", "rejected", "expired", "late", "pending"]
    decided_by: str = ""
    decided_at: str = ""


@contextlib.contextmanager
def redis_errors() -> Any:
    """Translate connection failures into StoreUnavailable with a message saying what to do."""
    try:
        yield
    except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as exc:
        raise StoreUnavailable(
            f"Redis is unreachable ({exc}); check REDIS_URL or the embedded server, then retry"
        ) from exc


def _s(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class Store:
    """Thread logs, state snapshots, approvals, dedup keys and thread locks."""

    def __init__(self, client: aioredis.Redis, lock_ttl_ms: int = keys.LOCK_TTL_MS) -> None:
        self.redis = client
        self.lock_ttl_ms = lock_ttl_ms
        self._append = client.register_script(_APPEND)
        self._decide = client.register_script(_DECIDE)
        self._escalate = client.register_script(_ESCALATE)

    # --- threads -------------------------------------------------------------------------

    async def load_state(self, thread_id: str) -> ThreadState:
        """The thread's derived state from its snapshot; a fresh state when the thread does not exist."""
        with redis_errors():
            raw = await self.redis.hget(keys.thread_meta(thread_id), "state")
        if raw is None:
            return ThreadState(thread_id=thread_id)
        try:
            return ThreadState.model_validate_json(raw)
        except ValidationError:
            # A snapshot from another schema version: the log is the truth, derive the state again.
            log.warning("thread %s: state snapshot does not match this version; rebuilding from its events", thread_id)
            return await self.rebuild_state(thread_id)

    async def load_events(self, thread_id: str, start: int = 1, end: int | None = None) -> list[Event]:
        """Events `start..end` (1-based, inclusive)."""
        with redis_errors():
            entries: Any = await self.redis.xrange(keys.thread_log(thread_id), f"{start}-0", f"{end}-0" if end else "+")
        return [parse_event(fields[b"e"]) for _, fields in entries]

    async def rebuild_state(self, thread_id: str) -> ThreadState:
        """Derive the state from the whole log, ignoring the snapshot (replay, repair, audits)."""
        return replay(await self.load_events(thread_id), thread_id=thread_id)

    async def append(self, state: ThreadState, events: Sequence[Event], new_state: ThreadState) -> None:
        """Append `events` if the log is still at `state.seq`; otherwise raise ConflictError."""
        args: list[str | int] = [state.seq, new_state.model_dump_json(exclude_defaults=True)]
        args += [event.model_dump_json() for event in events]
        with redis_errors():
            ok, current = await self._append(
                keys=[keys.thread_log(state.thread_id), keys.thread_meta(state.thread_id)], args=args
            )
            if ok and state.seq == 0:
                await self.redis.zadd(keys.THREAD_INDEX, {state.thread_id: events[0].at.timestamp()}, nx=True)
        if not ok:
            raise ConflictError(f"thread {state.thread_id} is at event {current}, not {state.seq}; reload it")

    async def list_threads(self, limit: int = 50) -> list[ThreadState]:
        with redis_errors():
            ids = [_s(tid) for tid in await self.redis.zrevrange(keys.THREAD_INDEX, 0, limit - 1)]
            async with self.redis.pipeline(transaction=False) as pipe:
                for tid in ids:
                    pipe.hget(keys.thread_meta(tid), "state")
                raws = await pipe.execute()
        return [ThreadState.model_validate_json(raw) for raw in raws if raw is not None]

    # --- approvals -----------------------------------------------------------------------

    async def create_approval(self, record: ApprovalRecord) -> None:
        fields: dict[Any, Any] = {
            "data": record.model_dump_json(),
            "status": record.status,
            "thread_id": record.thread_id,
            "expires": str(record.expires_at.timestamp()),
        }
        with redis_errors():
            async with self.redis.pipeline(transaction=True) as pipe:
                pipe.hset(keys.approval(record.approval_id), mapping=fields)
                pipe.zadd(keys.APPROVAL_INDEX, {record.approval_id: record.expires_at.timestamp()})
                if record.remind_at:
                    pipe.zadd(keys.APPROVAL_REMINDERS, {record.approval_id: record.remind_at.timestamp()})
                if record.escalate_at:
                    pipe.zadd(keys.APPROVAL_ESCALATIONS, {record.approval_id: record.escalate_at.timestamp()})
                await pipe.execute()

    async def get_approval(self, approval_id: str) -> ApprovalRecord | None:
        with redis_errors():
            raw = await self.redis.hgetall(keys.approval(approval_id))
        if not raw:
            return None
        fields = {_s(k): _s(v) for k, v in raw.items()}
        base = ApprovalRecord.model_validate_json(fields["data"])
        return base.model_copy(
            update={
                "status": fields["status"],
                "decided_by": fields.get("decided_by", ""),
                "decided_at": fields.get("decided_at", ""),
                "comment": fields.get("comment", ""),
                "escalated": fields.get("escalated") == "1",
            }
        )

    async def decide(self, approval_id: str, approved: bool, by: str, comment: str, now: datetime) -> Decided:
        """Compare-and-set pending -> approved/rejected before the deadline; anything else changes nothing."""
        return await self._set_status(approval_id, "approved" if approved else "rejected", by, comment, now)

    async def expire(self, approval_id: str, now: datetime) -> Decided:
        """Compare-and-set pending -> expired, once the deadline has passed."""
        return await self._set_status(approval_id, "expired", "system", "", now)

    async def _set_status(self, approval_id: str, status: str, by: str, comment: str, now: datetime) -> Decided:
        args = [status, by, now.astimezone(UTC).isoformat(), comment, str(now.timestamp()), approval_id]
        with redis_errors():
            result = await self._decide(keys=[keys.approval(approval_id), *keys.APPROVAL_SCHEDULES], args=args)
        outcome, *rest = (_s(part) for part in result)
        if outcome == "ok":  # what the script just wrote
            return Decided(outcome="ok", decided_by=by, decided_at=args[2])
        return Decided(outcome=outcome, decided_by=rest[0] if rest else "", decided_at=rest[1] if rest else "")  # type: ignore[arg-type]

    async def mark_escalated(self, approval_id: str) -> bool:
        """True once, when a still pending approval is escalated to its second group."""
        with redis_errors():
            return bool(await self._escalate(keys=[keys.approval(approval_id)], args=[]))

    async def due(self, schedule: str, now: datetime, limit: int = 100) -> list[str]:
        """Approval ids whose time in `schedule` (one of keys.APPROVAL_SCHEDULES) has come."""
        with redis_errors():
            ids = await self.redis.zrangebyscore(schedule, "-inf", now.timestamp(), start=0, num=limit)
        return [_s(approval_id) for approval_id in ids]

    async def take_due(self, schedule: str, approval_id: str) -> bool:
        """Claim one due entry: True for exactly one process, however many sweep at once."""
        with redis_errors():
            return bool(await self.redis.zrem(schedule, approval_id))

    async def pending_approvals(self, limit: int = 100) -> list[ApprovalRecord]:
        with redis_errors():
            ids = [_s(aid) for aid in await self.redis.zrange(keys.APPROVAL_INDEX, 0, limit - 1)]
        records = [await self.get_approval(aid) for aid in ids]
        return [record for record in records if record is not None and record.status == "pending"]

    # --- dedup and locks -----------------------------------------------------------------

    async def claim(self, dedup_key: str, ttl: int = keys.DEDUP_TTL_SECONDS) -> bool:
        """True the first time a key is seen within `ttl` seconds."""
        with redis_errors():
            return bool(await self.redis.set(keys.dedup(dedup_key), 1, nx=True, ex=ttl))

    async def release_claim(self, dedup_key: str) -> None:
        with redis_errors():
            await self.redis.delete(keys.dedup(dedup_key))

    @contextlib.asynccontextmanager
    async def lock(self, thread_id: str) -> AsyncIterator[None]:
        """Hold the thread's lease while working on it, renewing it until done.

        A worker that dies stops renewing, so another can take the thread after `lock_ttl_ms`.
        The lease only avoids duplicate work; correctness comes from the sequence-checked append.
        """
        ttl = self.lock_ttl_ms / 1000
        lock = self.redis.lock(keys.thread_lock(thread_id), timeout=ttl, blocking_timeout=keys.LOCK_WAIT_SECONDS)
        with redis_errors():
            if not await lock.acquire():
                raise redis.exceptions.LockError(f"thread {thread_id} is busy in another worker; will retry")
        renewing = asyncio.create_task(self._renew(lock, ttl / 3))
        try:
            yield
        finally:
            renewing.cancel()
            with contextlib.suppress(asyncio.CancelledError, redis.exceptions.RedisError):
                await renewing
            with contextlib.suppress(redis.exceptions.RedisError):
                await lock.release()

    @staticmethod
    async def _renew(lock: Lock, every: float) -> None:
        """Renew the lease every `every` seconds; ride out Redis blips shorter than the lease."""
        pause = every
        while True:
            await asyncio.sleep(pause)
            try:
                await lock.reacquire()
                pause = every
            except redis.exceptions.LockNotOwnedError:
                log.error("thread lease %s lapsed while held; the sequence check will refuse this worker's writes",
                          lock.name)  # fmt: skip
                return
            except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as exc:
                log.warning("thread lease %s: renewal failed (%s); retrying", lock.name, exc)
                pause = every / 4
