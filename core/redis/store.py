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
import json
import logging
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

import redis.asyncio as aioredis
import redis.exceptions
from pydantic import BaseModel, ConfigDict, TypeAdapter, ValidationError
from redis.asyncio.lock import Lock

from core.domain.backoff import Backoff
from core.domain.errors import ConflictError, StoreUnavailable, ThreadBusy
from core.domain.events import Event, Outbound, parse_event
from core.domain.quorum import Vote
from core.domain.reducer import ThreadState, replay
from core.obs import failpoints
from core.redis import keys, lua, paging
from core.redis.paging import Cursor

log = logging.getLogger(__name__)

ApprovalStatus = Literal["pending", "approved", "rejected", "expired", "edited"]  # edited: replaced by a new request
VOTES: TypeAdapter[list[Vote]] = TypeAdapter(list[Vote])


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
    # Quorum (`core.domain.quorum`): how many approvals, from which groups; the votes so far live in
    # the record's `votes` field, written by `Store.vote` only while the request is pending.
    needed: int = 1
    from_groups: list[str] = []
    votes: list[Vote] = []
    digest: str = ""  # of (tool, arguments, thread): what an approval covers (`core.runtime.approvals.digest`)
    wait_until: datetime | None = None  # no approval before this
    valid_for: int | None = None  # seconds an approval stays good for when not acted on
    freeze: str = ""  # the change freeze the call overrides: its quorum also needs one of `freeze_override`
    freeze_until: datetime | None = None
    freeze_override: list[str] = []
    edited_from: str = ""  # the request an approver's edit replaced with this one
    agent: str = ""  # the agent whose thread asked (the console's inbox filters by it)
    # "Not now" (`core.runtime.snoozes`): the card is asked again at `snoozed_until`; written by `Store.snooze`.
    snoozed_until: datetime | None = None
    snoozed_by: str = ""
    # The tool's preview as its card shows it (`core.runtime.previews`), for the arguments hashed in
    # `preview_of`: a card for other arguments (an approver's edit) does not show it.
    preview: str = ""
    preview_failed: bool = False
    preview_more: int = 0
    preview_of: str = ""

    @property
    def card_preview(self) -> dict[str, Any]:
        """The preview's fields for the record's card (`ApprovalRequest`): none for arguments it did not preview."""
        if not self.preview_of or self.preview_of != self.args_hash:
            return {}
        return {"preview": self.preview, "preview_failed": self.preview_failed, "preview_more": self.preview_more}

    @property
    def allowed(self) -> list[str]:
        """Who may decide now: the approvers, and the escalation group once the request was escalated."""
        return [*self.approvers, *self.escalate_to] if self.escalated else list(self.approvers)


class Decided(BaseModel):
    """What a decision attempt found: `ok`, or why nothing changed."""

    model_config = ConfigDict(frozen=True)
    outcome: Literal["ok", "missing", "approved", "rejected", "expired", "edited", "late", "pending"]
    decided_by: str = ""
    decided_at: str = ""


# Redis answers these while it cannot take writes (full, a replica, loading, a cluster in flux). redis-py
# strips the code from the message of the classes it knows, and a script's error keeps it in the text.
UNWRITABLE = ("OOM", "READONLY", "MASTERDOWN", "LOADING", "CLUSTERDOWN", "TRYAGAIN", "BUSY", "NOREPLICAS", "MOVED")
UNWRITABLE_CLASSES = (
    redis.exceptions.OutOfMemoryError,
    redis.exceptions.ReadOnlyError,
    redis.exceptions.ClusterDownError,
    redis.exceptions.TryAgainError,
    redis.exceptions.AskError,
)


def unwritable(exc: BaseException) -> bool:
    """A Redis refusal that says "not now" (out of memory, read-only replica, ...), not a bug in the command."""
    if isinstance(exc, UNWRITABLE_CLASSES):
        return True
    text = str(exc).upper()
    return isinstance(exc, redis.exceptions.ResponseError) and any(
        text.startswith(code + " ") or f" {code} " in text or f"-{code} " in text for code in UNWRITABLE
    )


@contextlib.contextmanager
def redis_errors() -> Any:
    """Translate "Redis cannot do this now" into StoreUnavailable, with a message saying what to do."""
    try:
        yield
    except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as exc:
        raise StoreUnavailable(
            f"Redis is unreachable ({exc}); check REDIS_URL or the embedded server, then retry"
        ) from exc
    except redis.exceptions.ResponseError as exc:
        if not unwritable(exc):
            raise
        raise StoreUnavailable(
            f"Redis cannot store anything right now ({str(exc)[:200]}); nothing was written. "
            "Free memory or fix the server (maxmemory, replica, cluster state), then retry"
        ) from exc


def _record(raw: dict[Any, Any]) -> ApprovalRecord:
    fields = {_s(k): _s(v) for k, v in raw.items()}
    base = ApprovalRecord.model_validate_json(fields["data"])
    return base.model_copy(
        update={
            "status": fields["status"],
            "decided_by": fields.get("decided_by", ""),
            "decided_at": fields.get("decided_at", ""),
            "comment": fields.get("comment", ""),
            "escalated": fields.get("escalated") == "1",
            "votes": VOTES.validate_json(fields.get("votes") or "[]"),
            "snoozed_until": datetime.fromisoformat(fields["snoozed_until"]) if fields.get("snoozed_until") else None,
            "snoozed_by": fields.get("snoozed_by", ""),
        }
    )


def _s(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


@dataclass(frozen=True)
class DecisionWrite:
    """An approve / reject to store with the step that applies it, if the approval is still pending and in time."""

    approval_id: str
    approved: bool
    by: str
    comment: str
    now: datetime
    recorded: bool = False  # decided already (through the API): only mark it applied
    edited: bool = False  # not a decision: an approver's edit replaced the request (`status` "edited")

    @property
    def status(self) -> str:
        return "edited" if self.edited else "approved" if self.approved else "rejected"

    def args(self) -> list[str]:
        status = "" if self.recorded else self.status
        at = self.now.astimezone(UTC).isoformat()
        return [status, self.by, at, self.comment, str(self.now.timestamp()), self.approval_id]


@dataclass(frozen=True)
class Leased:
    """What taking a thread's lease read in the same round trip: its state, and an approval asked for."""

    state: ThreadState
    approval: ApprovalRecord | None = None


class Store:
    """Thread logs, state snapshots, approvals, dedup keys and thread leases."""

    def __init__(self, client: aioredis.Redis, lock_ttl_ms: int = keys.LOCK_TTL_MS) -> None:
        self.redis = client
        self.lock_ttl_ms = lock_ttl_ms
        # On Redis Cluster a script may only touch one slot: a step's outbound messages wait in the
        # thread's own outbox stream and are relayed to the channels' streams right after the commit.
        self.cluster = isinstance(client, aioredis.RedisCluster)
        self.channels: set[str] = set()  # outboxes this process's commits wrote to: the sweeper trims them
        self._commit = client.register_script(lua.COMMIT)
        self._lease = client.register_script(lua.LEASE)
        self._decide = client.register_script(lua.DECIDE)
        self._escalate = client.register_script(lua.ESCALATE)
        self._vote = client.register_script(lua.VOTE)
        self._snooze = client.register_script(lua.SNOOZE)

    # --- threads -------------------------------------------------------------------------

    async def load_state(self, thread_id: str) -> ThreadState:
        """The thread's derived state from its snapshot; a fresh state when the thread does not exist."""
        with redis_errors():
            raw = await self.redis.hget(keys.thread_meta(thread_id), "state")
        return await self._state(thread_id, raw)

    async def _state(self, thread_id: str, raw: bytes | str | None) -> ThreadState:
        if not raw:
            return ThreadState(thread_id=thread_id)
        try:
            return ThreadState.model_validate_json(raw)
        except ValidationError:
            # A snapshot from another schema version: the log is the truth, derive the state again.
            log.warning("thread %s: state snapshot does not match this version; rebuilding from its events", thread_id)
            return await self.rebuild_state(thread_id)

    async def load_events(
        self, thread_id: str, start: int = 1, end: int | None = None, count: int | None = None
    ) -> list[Event]:
        """Events `start..end` (1-based, inclusive), at most `count` of them."""
        with redis_errors():
            entries: Any = await self.redis.xrange(
                keys.thread_log(thread_id), f"{start}-0", f"{end}-0" if end else "+", count=count
            )
        return [parse_event(fields[b"e"]) for _, fields in entries]

    async def rebuild_state(self, thread_id: str) -> ThreadState:
        """Derive the state from the whole log, ignoring the snapshot (replay, repair, audits)."""
        return replay(await self.load_events(thread_id), thread_id=thread_id, stored=True)

    async def append(
        self,
        state: ThreadState,
        events: Sequence[Event],
        new_state: ThreadState,
        outbound: Sequence[Outbound] = (),
        decision: DecisionWrite | None = None,
        *,
        encoded: Sequence[str] | None = None,
        encoded_outbound: Sequence[str] | None = None,
    ) -> None:
        """Append `events` and publish `outbound` in one script, if the log is still at `state.seq`.

        `encoded` / `encoded_outbound`: their JSON, when the caller has it already (serialized once).

        With `decision`, the approval is decided in the same script, only if it is still pending and in
        time. Raises ConflictError, and writes nothing, when the thread moved on or the approval did.
        """
        tid = state.thread_id
        extra: list[str] = []

        def key(name: str) -> int:
            if name not in extra:
                extra.append(name)
            return extra.index(name) + 3

        if decision is not None and self.cluster and not decision.recorded and not decision.edited:
            # Another slot: decided first; the sweeper re-drives it if this worker dies before the commit.
            status, by, _, comment, *_ = decision.args()
            outcome = await self._set_status(decision.approval_id, status, by, comment, decision.now)
            if outcome.outcome != "ok":
                raise ConflictError(f"approval {decision.approval_id} is {outcome.outcome} now; not applied")
        cas: list[str | int] = [0, "", "", "", "", "", ""]
        if decision is not None and not self.cluster:
            first = key(keys.approval(decision.approval_id))
            ended = (keys.approvals_ended(decision.status), keys.approvals_decided_by(decision.by))
            for name in (*keys.APPROVAL_SCHEDULES, keys.APPROVALS_DECIDED, *ended):
                key(name)
            cas = [first, *decision.args()]
        in_flight = new_state.status == "running" and not new_state.paused
        score = str(events[-1].at.timestamp()) if events else str(datetime.now(UTC).timestamp())
        args: list[str | int] = [
            state.seq,
            new_state.model_dump_json(exclude_defaults=True),
            tid,
            len(events),
            score,
            0 if self.cluster else key(keys.THREAD_INDEX),
            0 if self.cluster else key(keys.ACTIVE_THREADS),
            score if in_flight else "",
            *cas,
            0 if self.cluster else key(keys.THREADS_UPDATED),
        ]
        args += encoded if encoded is not None else [event.model_dump_json() for event in events]
        payloads = encoded_outbound if encoded_outbound is not None else [o.model_dump_json() for o in outbound]
        for item, payload in zip(outbound, payloads, strict=True):
            self.channels.add(item.channel)
            args += [key(keys.thread_outbox(tid) if self.cluster else keys.outbox(item.channel)), payload]
        with redis_errors():
            reply = await self._commit(keys=[keys.thread_log(tid), keys.thread_meta(tid), *extra], args=args)
        ok, current = int(reply[0]), _s(reply[1])
        if ok == 0:
            raise ConflictError(f"thread {tid} is at event {current}, not {state.seq}; reload it")
        if ok == 2:
            raise ConflictError(f"approval {decision.approval_id if decision else ''} is {current} now; not applied")
        if decision is not None and self.cluster and decision.edited:
            # Another slot, after the commit: a crash between leaves the old request pending, not awaited by
            # its thread (an answer to it is refused), until its deadline expires it.
            await self._set_status(decision.approval_id, "edited", decision.by, "", decision.now)
        if outbound:
            await failpoints.hit("after-commit")
        if self.cluster:
            await self.relay(new_state, first=state.seq == 0, applied=decision.approval_id if decision else "")

    async def relay(self, state: ThreadState, first: bool = False, applied: str = "") -> None:
        """Redis Cluster: move the thread's stored outbound messages to their channels and update the indexes.

        Re-run from `lock` after a crash, so a message can be relayed twice, never lost; renderers
        skip an outbound id they already rendered.
        """
        tid = state.thread_id
        with redis_errors():
            entries: Any = await self.redis.xrange(keys.thread_outbox(tid), "-", "+", count=100)
            async with self.redis.pipeline(transaction=False) as pipe:
                for _, fields in entries:
                    channel = json.loads(fields[b"o"])["channel"]
                    pipe.xadd(keys.outbox(channel), {"o": fields[b"o"]})
                if first and state.updated_at is not None:
                    pipe.zadd(keys.THREAD_INDEX, {tid: state.updated_at.timestamp()}, nx=True)
                if state.updated_at is not None:
                    pipe.zadd(keys.THREADS_UPDATED, {tid: state.updated_at.timestamp()})
                if state.status == "running" and not state.paused and state.updated_at is not None:
                    pipe.zadd(keys.ACTIVE_THREADS, {tid: state.updated_at.timestamp()})
                else:
                    pipe.zrem(keys.ACTIVE_THREADS, tid)
                if applied:
                    pipe.zrem(keys.APPROVALS_DECIDED, applied)
                if entries:
                    pipe.xdel(keys.thread_outbox(tid), *[entry_id for entry_id, _ in entries])
                await pipe.execute()

    async def list_threads(self, limit: int = 50) -> list[ThreadState]:
        return (await self.page_threads(limit))[0]

    async def page_threads(
        self, limit: int = 50, after: Cursor | None = None, *, by: Literal["created", "updated"] = "created"
    ) -> tuple[list[ThreadState], Cursor | None]:
        """Threads newest first by creation (or by last write), `limit` at a time, from just past `after`;
        and the next cursor.

        Creation time never changes, so a thread is on exactly one page however many are created or
        updated while someone pages (new ones go before the first page). By last write, a thread
        written while someone pages moves before the first page: it is missed by this paging (and
        first on the next), or, if already shown, not shown again.
        """
        index = keys.THREAD_INDEX if by == "created" else keys.THREADS_UPDATED
        with redis_errors():
            ids, following = await paging.page(self.redis, index, limit, after)
            async with self.redis.pipeline(transaction=False) as pipe:
                for tid in ids:
                    pipe.hget(keys.thread_meta(tid), "state")
                raws = await pipe.execute()
        return [ThreadState.model_validate_json(raw) for raw in raws if raw is not None], following

    # --- approvals -----------------------------------------------------------------------

    async def create_approval(self, record: ApprovalRecord) -> None:
        fields: dict[Any, Any] = {
            "data": record.model_dump_json(),
            "status": record.status,
            "thread_id": record.thread_id,
            "expires": str(record.expires_at.timestamp()),
        }
        if record.votes:  # an edited call's request opens with its editor's approval (`Approvals.edited`)
            fields["votes"] = VOTES.dump_json(record.votes).decode()
        with redis_errors():
            async with self.redis.pipeline(transaction=True) as pipe:
                pipe.hset(keys.approval(record.approval_id), mapping=fields)
                pipe.zadd(keys.APPROVAL_INDEX, {record.approval_id: record.expires_at.timestamp()})
                pipe.zadd(
                    keys.approvals_requested_by(record.requester), {record.approval_id: record.created_at.timestamp()}
                )
                if record.remind_at:
                    pipe.zadd(keys.APPROVAL_REMINDERS, {record.approval_id: record.remind_at.timestamp()})
                if record.escalate_at:
                    pipe.zadd(keys.APPROVAL_ESCALATIONS, {record.approval_id: record.escalate_at.timestamp()})
                await pipe.execute()

    async def get_approval(self, approval_id: str) -> ApprovalRecord | None:
        with redis_errors():
            raw = await self.redis.hgetall(keys.approval(approval_id))
        return _record(raw) if raw else None

    async def decide(self, approval_id: str, approved: bool, by: str, comment: str, now: datetime) -> Decided:
        """Compare-and-set pending -> approved/rejected before the deadline; anything else changes nothing."""
        return await self._set_status(approval_id, "approved" if approved else "rejected", by, comment, now)

    async def expire(self, approval_id: str, now: datetime) -> Decided:
        """Compare-and-set pending -> expired, once the deadline has passed."""
        return await self._set_status(approval_id, "expired", "system", "", now)

    async def supersede(self, approval_id: str, by: str, now: datetime) -> Decided:
        """Compare-and-set pending -> edited, in time: an approver's edit replaced the request."""
        return await self._set_status(approval_id, "edited", by, "", now)

    async def _set_status(self, approval_id: str, status: str, by: str, comment: str, now: datetime) -> Decided:
        args = [status, by, now.astimezone(UTC).isoformat(), comment, str(now.timestamp()), approval_id]
        with redis_errors():
            result = await self._decide(
                keys=[
                    keys.approval(approval_id),
                    *keys.APPROVAL_SCHEDULES,
                    keys.APPROVALS_DECIDED,
                    keys.approvals_ended(status),
                    keys.approvals_decided_by(by),
                ],
                args=args,
            )
        outcome, *rest = (_s(part) for part in result)
        if outcome == "ok":  # what the script just wrote
            return Decided(outcome="ok", decided_by=by, decided_at=args[2])
        return Decided(outcome=outcome, decided_by=rest[0] if rest else "", decided_at=rest[1] if rest else "")  # type: ignore[arg-type]

    async def vote(self, record: ApprovalRecord, votes: list[Vote], now: datetime) -> str:
        """Replace the record's votes with `votes` if they are still the ones `record` holds and the request
        is pending and in time: "ok", else what changed ("changed", a status, "late", "missing")."""
        expected = VOTES.dump_json(record.votes).decode() if record.votes else ""
        with redis_errors():
            result = await self._vote(
                keys=[keys.approval(record.approval_id)],
                args=[expected, VOTES.dump_json(votes).decode(), str(now.timestamp())],
            )
        return _s(result)

    async def snooze(self, approval_id: str, until: datetime, by: str, now: datetime) -> str:
        """Ask for a pending approval again at `until` (before its deadline), its deadlines unchanged: "ok",
        else why not (its status, "late", "too_late": `until` is not before the deadline, "missing")."""
        args = [str(until.timestamp()), until.astimezone(UTC).isoformat(), by, str(now.timestamp()), approval_id]
        with redis_errors():
            result = await self._snooze(keys=[keys.approval(approval_id), keys.APPROVAL_SNOOZES], args=args)
        return _s(result)

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

    async def page_approvals(
        self, index: str, limit: int = 100, after: Cursor | None = None, *, newest_first: bool = True
    ) -> tuple[list[ApprovalRecord], Cursor | None]:
        """A page of the approvals in one index (keys.APPROVAL_INDEX, keys.approvals_ended, approvals_by...)."""
        with redis_errors():
            ids, following = await paging.page(self.redis, index, limit, after, newest_first=newest_first)
            async with self.redis.pipeline(transaction=False) as pipe:  # one round trip for the page
                for aid in ids:
                    pipe.hgetall(keys.approval(aid))
                raws = await pipe.execute()
        return [_record(raw) for raw in raws if raw], following

    async def ended_approvals(self, status: str, limit: int = 100) -> list[ApprovalRecord]:
        """Approvals that ended as `status` (approved, rejected, expired), the most recent first."""
        records, _ = await self.page_approvals(keys.approvals_ended(status), limit)
        return [record for record in records if record.status == status]

    async def pending_approvals(self, limit: int = 100) -> list[ApprovalRecord]:
        """Pending approvals, the soonest to expire first."""
        records, _ = await self.page_approvals(keys.APPROVAL_INDEX, limit, newest_first=False)
        return [record for record in records if record.status == "pending"]

    # --- what the sweepers re-drive ----------------------------------------------------------

    async def stalled_threads(self, quiet_since: datetime, limit: int = 50) -> list[str]:
        """Threads whose status says work is in flight, unchanged since `quiet_since`, with no lease holder."""
        with redis_errors():
            ids = [
                _s(t)
                for t in await self.redis.zrangebyscore(
                    keys.ACTIVE_THREADS, "-inf", quiet_since.timestamp(), start=0, num=limit
                )
            ]
            if not ids:
                return []
            async with self.redis.pipeline(transaction=False) as pipe:
                for tid in ids:
                    pipe.exists(keys.thread_lock(tid))
                held = await pipe.execute()
        return [tid for tid, leased in zip(ids, held, strict=True) if not leased]

    async def decided_unapplied(self, decided_before: datetime, limit: int = 50) -> list[str]:
        """Approvals decided before `decided_before` that no worker has confirmed applying to their thread."""
        with redis_errors():
            ids = await self.redis.zrangebyscore(
                keys.APPROVALS_DECIDED, "-inf", decided_before.timestamp(), start=0, num=limit
            )
        return [_s(approval_id) for approval_id in ids]

    async def forget_decided(self, approval_id: str) -> None:
        with redis_errors():
            await self.redis.zrem(keys.APPROVALS_DECIDED, approval_id)

    # --- dedup and locks -----------------------------------------------------------------

    async def claim(self, dedup_key: str, ttl: int = keys.DEDUP_TTL_SECONDS) -> bool:
        """True the first time a key is seen within `ttl` seconds."""
        with redis_errors():
            return bool(await self.redis.set(keys.dedup(dedup_key), 1, nx=True, ex=ttl))

    async def release_claim(self, dedup_key: str) -> None:
        with redis_errors():
            await self.redis.delete(keys.dedup(dedup_key))

    @contextlib.asynccontextmanager
    async def lock(self, thread_id: str, approval_id: str = "") -> AsyncIterator[Leased]:
        """Hold the thread's lease while working on it, renewing it until done; yields its state.

        Taking the lease reads the state snapshot in the same round trip (and the approval
        `approval_id`, pipelined). A worker that dies stops renewing, so another can take the
        thread after `lock_ttl_ms`. The lease only avoids duplicate work; correctness comes from
        the sequence-checked append. Raises ThreadBusy when another worker keeps it past the wait.
        """
        ttl = self.lock_ttl_ms / 1000
        lock = self.redis.lock(keys.thread_lock(thread_id), timeout=ttl, thread_local=False)
        token = uuid.uuid1().hex.encode()
        lease_keys = [keys.thread_lock(thread_id), keys.thread_meta(thread_id), keys.thread_outbox(thread_id)]
        lease_args: list[Any] = [token, self.lock_ttl_ms, "1" if self.cluster else "0"]
        deadline = asyncio.get_running_loop().time() + keys.LOCK_WAIT_SECONDS
        approval: Any = None
        while True:
            with redis_errors():
                if approval_id:
                    reply, approval = await self._lease_reading(lease_keys, lease_args, approval_id)
                else:
                    reply = await self._lease(keys=lease_keys, args=lease_args)
            if int(reply[0]) == 1:
                break
            if asyncio.get_running_loop().time() >= deadline:
                raise ThreadBusy(f"thread {thread_id} is busy in another worker; will retry")
            await asyncio.sleep(0.05)
        lock.local.token = token
        state = await self._state(thread_id, reply[1])
        if self.cluster and len(reply) > 2 and reply[2]:
            log.warning("thread %s: relaying outbound messages a stopped worker stored", thread_id)
            await self.relay(state)
        done = asyncio.Event()
        renewing = asyncio.create_task(self._renew(lock, ttl / 3, done))
        try:
            yield Leased(state, _record(approval) if approval else None)
        finally:
            done.set()
            try:  # a renewal in flight finishes; one stuck (Redis gone) is given up after a lease's time
                async with asyncio.timeout(ttl):
                    await asyncio.shield(renewing)
            except (TimeoutError, redis.exceptions.RedisError):
                renewing.cancel()
            with contextlib.suppress(redis.exceptions.RedisError):
                await lock.release()

    async def _lease_reading(self, lease_keys: list[str], lease_args: list[Any], approval_id: str) -> tuple[Any, Any]:
        """The lease script and the approval's hash in one pipelined round trip.

        EVALSHA directly: a pipeline given the script object would first ask SCRIPT EXISTS (one
        more round trip every time). A server that lost its scripts (restarted) gets it loaded.
        """
        if self.cluster:  # no scripts in a cluster pipeline: two round trips
            return await self._lease(keys=lease_keys, args=lease_args), await self.redis.hgetall(
                keys.approval(approval_id)
            )
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.evalsha(self._lease.sha, len(lease_keys), *lease_keys, *lease_args)
            pipe.hgetall(keys.approval(approval_id))
            reply, approval = await pipe.execute(raise_on_error=False)
        if isinstance(reply, redis.exceptions.NoScriptError):
            reply = await self._lease(keys=lease_keys, args=lease_args)
        for result in (reply, approval):
            if isinstance(result, Exception):
                raise result
        return reply, approval

    @staticmethod
    async def _renew(lock: Lock, every: float, done: asyncio.Event) -> None:
        """Renew the lease every `every` seconds until `done`; ride out Redis blips shorter than the lease.

        Stopped by `done`, never cancelled mid-command: a command cancelled while its reply is on the
        way can leave the connection out of step, and the holder's next command waiting on it.
        """
        # A failed renewal is retried sooner than the next one is due, and never later: the lease lapses
        # three periods after the last renewal that worked, so the retries must keep landing inside it.
        retries = Backoff(first=every / 4, cap=every / 4)
        pause = every
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(pause):
                    await done.wait()
            if done.is_set():
                return
            try:
                await lock.reacquire()
                retries.reset()
                pause = every
            except redis.exceptions.LockNotOwnedError:
                log.error(
                    "thread lease %s lapsed while held; the sequence check will refuse this worker's writes", lock.name
                )
                return
            except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as exc:
                log.warning("thread lease %s: renewal failed (%s); retrying", lock.name, exc)
                pause = retries.next()
