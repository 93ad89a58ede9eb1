"""The store on fakeredis and on a real Redis: sequence-checked appends, single-use decisions, dedup."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from core.domain import events as ev
from core.domain.errors import ConflictError, StoreUnavailable
from core.domain.reducer import replay
from core.redis import keys
from core.redis.store import ApprovalRecord, Store

T0 = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


def _message(n: int, text: str = "hello") -> ev.UserMessage:
    return ev.UserMessage(id=f"e{n}", at=T0 + timedelta(seconds=n), actor="cli:operator", text=text, trigger_id=f"t{n}")


def _start() -> ev.ThreadStarted:
    return ev.ThreadStarted(
        id="e0", at=T0, actor="cli:operator", agent="a", channel="cli", conversation="c", requester="cli:operator"
    )


async def _append(store: Store, thread_id: str, *events: ev.Event) -> None:
    state = await store.load_state(thread_id)
    await store.append(state, list(events), replay(list(events), state=state))


async def test_appended_events_come_back_in_order_with_their_snapshot(redis_client) -> None:
    store = Store(redis_client)
    await _append(store, "t1", _start(), _message(1))
    await _append(store, "t1", _message(2, "again"))
    events = await store.load_events("t1")
    assert [e.id for e in events] == ["e0", "e1", "e2"]
    assert await store.load_state("t1") == await store.rebuild_state("t1") == replay(events, "t1")
    assert [e.id for e in await store.load_events("t1", start=2, end=2)] == ["e1"]
    assert [s.thread_id for s in await store.list_threads()] == ["t1"]


async def test_a_stale_writer_is_refused_and_nothing_is_written(redis_client) -> None:
    store = Store(redis_client)
    await _append(store, "t1", _start())
    stale = await store.load_state("t1")
    await _append(store, "t1", _message(1))
    with pytest.raises(ConflictError, match="is at event 2, not 1"):
        await store.append(stale, [_message(9)], replay([_message(9)], state=stale))
    assert [e.id for e in await store.load_events("t1")] == ["e0", "e1"]


async def test_concurrent_writers_never_interleave_or_lose_events(redis_client) -> None:
    """Twenty writers race from the same state; each retries on conflict; all land, once each, in order."""
    store = Store(redis_client)
    await _append(store, "t1", _start())

    async def writer(n: int) -> None:
        while True:
            state = await store.load_state("t1")
            try:
                await store.append(state, [_message(n)], replay([_message(n)], state=state))
                return
            except ConflictError:
                await asyncio.sleep(0)

    await asyncio.gather(*(writer(n) for n in range(1, 21)))
    events = await store.load_events("t1")
    assert sorted(e.id for e in events[1:]) == sorted(f"e{n}" for n in range(1, 21))
    assert (await store.load_state("t1")).seq == 21


def _record(approval_id: str = "abcd1234", expires: datetime = T0 + timedelta(hours=1)) -> ApprovalRecord:
    return ApprovalRecord(
        approval_id=approval_id,
        thread_id="t1",
        call_id="c1",
        tool="deploy",
        args={"service": "api"},
        args_hash="h",
        requester="cli:operator",
        approvers=["group:oncall"],
        allow_self=True,
        channel="cli",
        conversation="c",
        created_at=T0,
        expires_at=expires,
    )


async def test_an_approval_is_decided_exactly_once_under_a_race(redis_client) -> None:
    store = Store(redis_client)
    await store.create_approval(_record())
    outcomes = await asyncio.gather(*(store.decide("abcd1234", n % 2 == 0, f"cli:user{n}", "", T0) for n in range(10)))
    winners = [o for o in outcomes if o.outcome == "ok"]
    assert len(winners) == 1
    record = await store.get_approval("abcd1234")
    assert record is not None and record.status in ("approved", "rejected") and record.decided_by.startswith("cli:user")
    losers = {o.outcome for o in outcomes if o.outcome != "ok"}
    assert losers == {record.status}
    assert all(o.decided_by == record.decided_by for o in outcomes if o.outcome != "ok")
    assert await store.pending_approvals() == []


async def test_deciding_after_expiry_or_an_unknown_id_changes_nothing(redis_client) -> None:
    store = Store(redis_client)
    await store.create_approval(_record(expires=T0 + timedelta(seconds=10)))
    assert (await store.expire("abcd1234", T0)).outcome == "pending", "not due yet"
    late = T0 + timedelta(seconds=11)
    assert (await store.decide("abcd1234", True, "cli:operator", "", late)).outcome == "late"
    assert (await store.get_approval("abcd1234")).status == "pending"  # type: ignore[union-attr]
    assert (await store.expire("abcd1234", late)).outcome == "ok"
    assert (await store.expire("abcd1234", late)).outcome == "expired"
    assert (await store.decide("abcd1234", True, "cli:operator", "", late)).outcome == "expired"
    assert await store.due(keys.APPROVAL_INDEX, late) == []
    assert (await store.decide("nope0000", True, "cli:operator", "", T0)).outcome == "missing"
    assert await store.get_approval("nope0000") is None


async def test_dedup_keys_claim_once_and_can_be_released(redis_client) -> None:
    store = Store(redis_client)
    assert await store.claim("slack:ev:1")
    assert not await store.claim("slack:ev:1")
    assert 0 < await redis_client.ttl(keys.dedup("slack:ev:1")) <= 86400
    await store.release_claim("slack:ev:1")
    assert await store.claim("slack:ev:1")


async def test_an_unreachable_redis_is_a_clear_error() -> None:
    import redis.asyncio as aioredis
    from redis.asyncio.retry import Retry
    from redis.backoff import NoBackoff

    client = aioredis.Redis(unix_socket_path="/nonexistent/redis.sock", retry=Retry(NoBackoff(), 0))
    with pytest.raises(StoreUnavailable, match="check REDIS_URL"):
        await Store(client).load_state("t1")
    await client.aclose()


async def test_a_snapshot_from_another_version_is_rebuilt_from_the_log(redis_client) -> None:
    store = Store(redis_client)
    await _append(store, "t1", _start(), _message(1))
    await redis_client.hset("thread:{t1}:meta", "state", '{"status": "from-the-future", "seq": "x"}')
    state = await store.load_state("t1")
    assert state == replay(await store.load_events("t1"), "t1") and state.seq == 2


def test_keys_used_together_share_a_cluster_slot() -> None:
    """Redis Cluster runs a Lua script only if all its keys hash to one slot."""
    from redis.crc import key_slot

    assert key_slot(keys.thread_log("t1").encode()) == key_slot(keys.thread_meta("t1").encode())
    assert key_slot(keys.dedup("slack:ev:1").encode()) == key_slot(keys.INBOX.encode())
    slots = {key_slot(k.encode()) for k in (keys.approval("a1"), *keys.APPROVAL_SCHEDULES)}
    assert len(slots) == 1
