"""The audit trail: records derived from the thread's events, hash-chained, exported and verified."""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis

from bot import cli
from bot.audit import since
from bot.main import redis_client
from config.settings import Settings
from core.domain import events as ev
from core.domain.audit import GENESIS, AuditFact, Cursor, Head, chain, derive, link, verify
from core.redis import keys
from core.redis.audit import AuditLog
from core.redis.sweeper import Sweeper
from tests.conftest import APPROVER, Harness
from tests.test_cluster import cluster  # noqa: F401 - the three-node cluster fixture, shared

T0 = datetime(2026, 11, 23, 14, 0, tzinfo=UTC)


def _facts(count: int) -> list[AuditFact]:
    return [
        AuditFact(
            at=T0 + timedelta(minutes=i), thread_id="t1", seq=i + 1, event_id=f"e{i}", fact="requested", who="cli:a"
        )
        for i in range(count)
    ]


def _chain(count: int = 5) -> list[dict[str, Any]]:
    return [json.loads(record.model_dump_json()) for record in chain(_facts(count), Head())]


# --- verify, pure --------------------------------------------------------------------------------


def test_an_intact_chain_verifies_with_its_head() -> None:
    records = _chain()
    result = verify(records, Head(5, records[-1]["hash"]))
    assert result.intact and result.count == 5
    assert records[0]["prev"] == GENESIS and all(r["prev"] == p["hash"] for p, r in itertools.pairwise(records))


def test_a_changed_record_is_named() -> None:
    records = _chain()
    records[2]["who"] = "cli:mallory"
    fault = verify(records).fault
    assert fault is not None and (fault.position, fault.n, fault.problem) == (3, 3, "changed")


def test_a_record_changed_and_rehashed_is_found_by_the_next_ones_link() -> None:
    records = _chain()
    records[1]["who"] = "cli:mallory"
    records[1]["hash"] = link(records[1]["prev"], records[1])
    fault = verify(records).fault
    assert fault is not None and (fault.n, fault.problem) == (2, "changed")


def test_a_removed_record_is_named() -> None:
    records = _chain()
    del records[1]
    fault = verify(records).fault
    assert fault is not None and (fault.position, fault.n, fault.problem) == (2, 2, "removed")
    assert "record 2 missing" in fault.detail


def test_a_record_removed_from_the_end_is_found_by_the_head() -> None:
    records = _chain()
    head = Head(5, records[-1]["hash"])
    fault = verify(records[:-1], head).fault
    assert fault is not None and (fault.n, fault.problem) == (5, "removed")


def test_reordered_records_are_named() -> None:
    records = _chain()
    records[1], records[2] = records[2], records[1]
    fault = verify(records).fault
    assert fault is not None and (fault.position, fault.n, fault.problem) == (2, 3, "reordered")


# --- derive, pure --------------------------------------------------------------------------------


def _event(event_type: type[ev.Event], n: int, **fields: Any) -> ev.Event:
    return event_type(id=f"e{n}", at=T0 + timedelta(seconds=n), actor=fields.pop("actor", "agent"), **fields)


def _quorum_flow() -> list[tuple[int, ev.Event]]:
    terms = {"approval_id": "a1", "call_id": "c1", "tool": "deploy", "args": {"v": "1.4.2"}, "args_hash": "h" * 64}
    events = [
        _event(ev.ToolCall, 1, call_id="c0", tool="status", args={}),
        _event(ev.ToolStarted, 2, call_id="c0", tool="status"),
        _event(ev.ToolResult, 3, call_id="c0", tool="status", output="fine", actor="tool:status"),
        _event(ev.ToolCall, 4, call_id="c1", tool="deploy", args=terms["args"], freeze="year_end", freeze_until=T0),
        _event(
            ev.ApprovalRequested,
            5,
            **terms,
            approvers=["group:oncall"],
            requester="slack:U1",
            allow_self=False,
            expires_at=T0 + timedelta(hours=1),
            digest="d" * 64,
            needed=2,
        ),
        _event(ev.ApprovalVoted, 6, approval_id="a1", call_id="c1", by="slack:U2", count=1, needed=2, actor="slack:U2"),
        _event(
            ev.ApprovalDecided, 7, approval_id="a1", call_id="c1", decision="approve", channel="email", actor="email:b"
        ),
        _event(ev.ToolStarted, 8, call_id="c1", tool="deploy"),
        _event(ev.ToolErrorEvent, 9, call_id="c1", tool="deploy", error="exit 1: secret stderr", kind="failed"),
    ]
    return list(enumerate(events, start=1))


def test_the_fact_table_turns_a_quorum_flow_in_a_freeze_into_records_and_skips_immediate_calls() -> None:
    cursor, facts = derive("t1", "slack", Cursor(), _quorum_flow())
    assert [(f.seq, f.fact, f.who, f.channel) for f in facts] == [
        (4, "freeze_override", "", "slack"),
        (5, "requested", "slack:U1", "slack"),
        (6, "voted", "slack:U2", "slack"),
        (7, "approved", "email:b", "email"),
        (8, "started", "email:b", "slack"),
        (9, "result", "agent", "slack"),  # a tool error is recorded by the agent, a result by the tool
    ]
    assert facts[0].detail == {"freeze": "year_end", "freeze_until": T0.isoformat()}
    assert facts[1].detail["digest"] == "d" * 64 and facts[1].detail["needed"] == 2
    assert facts[2].detail == {"count": 1, "needed": 2}
    assert facts[5].detail == {"outcome": "failed"}, "a failure's text (the tool's output) is not audited"
    assert cursor == Cursor(seq=9), "nothing left open"


def test_deriving_in_pieces_gives_the_same_facts_as_at_once() -> None:
    """A catch-up resumes from the cursor: its open calls carry what the first piece saw."""
    flow = _quorum_flow()
    whole = derive("t1", "slack", Cursor(), flow)[1]
    cursor, first = derive("t1", "slack", Cursor(), flow[:6])
    assert cursor.seq == 6 and set(cursor.open) == {"c1"}
    _, rest = derive("t1", "slack", cursor, flow)  # events up to the cursor are skipped
    assert first + rest == whole


# --- end to end ----------------------------------------------------------------------------------


async def _approved_deploy(h: Harness) -> str:
    await h.say("/deploy api 1.4.2 production")
    *_, approval = (o for o in await h.outbox() if isinstance(o, ev.ApprovalRequest))
    await h.say(f"approve {approval.approval_id}", sender=APPROVER)
    return approval.thread_id


async def test_a_gated_deploy_leaves_requested_approved_started_result_in_a_valid_chain(
    redis_client, make_harness
) -> None:
    h = make_harness(redis_client)
    thread_id = await _approved_deploy(h)
    audit = AuditLog(h.wiring.store)
    records = await audit.thread_records(thread_id)
    assert [r.fact for r in records] == ["previewed", "requested", "approved", "started", "result"]
    previewed, requested, approved, started, result = records
    # The deploy tool's dry run ran before the card: whether it worked and a hash of what it said, never the text.
    assert (previewed.tool, previewed.call_id, previewed.detail["ok"]) == ("deploy", requested.call_id, True)
    assert len(previewed.detail["output_sha256"]) == 64 and "output" not in previewed.detail
    assert requested.tool == "deploy" and requested.who == "cli:operator" and requested.channel == "cli"
    assert requested.detail["args_hash"] and requested.detail["approvers"] and requested.detail["expires_at"]
    assert (approved.who, approved.channel) == (APPROVER, "cli") and approved.source.startswith("trigger:")
    assert started.detail["args_hash"] == requested.detail["args_hash"] and started.who == APPROVER
    assert result.detail["outcome"] == "ok" and "duration_ms" in result.detail
    assert "output" not in json.dumps(result.detail) and "1.4.2" not in json.dumps([r.detail for r in records])
    assert [r.n for r in records] == [1, 2, 3, 4, 5]
    assert (await audit.verify()).intact
    assert not await h.wiring.redis.zrange(keys.AUDIT_DUE, 0, -1), "nothing left due"


async def test_immediate_tools_leave_no_records(fake_redis, make_harness) -> None:
    h = make_harness(fake_redis)
    await h.say("/status api")
    state = (await h.wiring.store.list_threads())[0]
    assert await AuditLog(h.wiring.store).thread_records(state.thread_id) == []
    assert await fake_redis.xlen(keys.AUDIT_LOG) == 0


async def test_a_rejection_is_one_record_and_nothing_runs(fake_redis, make_harness) -> None:
    h = make_harness(fake_redis)
    await h.say("/deploy api 1.4.2 production")
    approval = next(o for o in await h.outbox() if isinstance(o, ev.ApprovalRequest))
    await h.say(f"reject {approval.approval_id} not now", sender=APPROVER)
    records = await AuditLog(h.wiring.store).thread_records(approval.thread_id)
    assert [(r.fact, r.detail.get("comment")) for r in records] == [
        ("previewed", None),
        ("requested", None),
        ("rejected", "not now"),
    ]


async def test_an_expiry_is_a_record_of_the_deadline(fake_redis, make_harness) -> None:
    h = make_harness(fake_redis)
    await h.say("/deploy api 1.4.2 production")
    approval = next(o for o in await h.outbox() if isinstance(o, ev.ApprovalRequest))
    h.clock.current = approval.expires_at + timedelta(seconds=1)
    await Sweeper(h.wiring.store, h.wiring.bus, h.wiring.tools, h.clock).sweep()
    await h.drain()
    records = await AuditLog(h.wiring.store).thread_records(approval.thread_id)
    assert [(r.fact, r.who, r.source) for r in records][-1] == ("expired", "system", "deadline")


async def test_a_thread_left_unaudited_is_caught_up_once_by_the_sweeper(fake_redis, make_harness) -> None:
    """The records are derived from the log: a lost append (the mark stays) is appended by the sweeper, once."""
    h = make_harness(fake_redis)
    thread_id = await _approved_deploy(h)
    audit = AuditLog(h.wiring.store)
    expected = [r.fact for r in await audit.thread_records(thread_id)]
    for key in (keys.AUDIT_LOG, keys.AUDIT_HEAD, keys.audit_cursor(thread_id), keys.audit_records(thread_id)):
        await fake_redis.delete(key)  # as if no append had happened after any commit
    await fake_redis.zadd(keys.AUDIT_DUE, {thread_id: 1})
    sweepers = [Sweeper(h.wiring.store, h.wiring.bus, h.wiring.tools, h.clock) for _ in range(2)]
    assert [await s.audit.catch_up_due(h.clock.now()) for s in sweepers] == [5, 0]
    assert [r.fact for r in await audit.thread_records(thread_id)] == expected
    assert (await audit.verify()).intact and not await fake_redis.zrange(keys.AUDIT_DUE, 0, -1)


async def test_the_trail_is_kept_on_a_redis_cluster(request: pytest.FixtureRequest, make_harness) -> None:
    """Every key the append script touches is in the `{audit}` slot; the thread's log is in another."""
    url = request.getfixturevalue("cluster")
    client = redis_client(Settings.from_env({"REDIS_URL": url, "REDIS_CLUSTER": "1"}), url)
    try:
        h = make_harness(client)
        thread_id = await _approved_deploy(h)
        audit = AuditLog(h.wiring.store)
        facts = [r.fact for r in await audit.thread_records(thread_id)]
        assert facts == ["previewed", "requested", "approved", "started", "result"]
        assert (await audit.verify()).intact
    finally:
        await client.aclose()


# --- the CLI -------------------------------------------------------------------------------------


@pytest.fixture
def cli_redis(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, embedded_redis: str) -> str:
    """`bot` in this process on the real test Redis, emptied first."""
    for name, value in {
        "REDIS_URL": embedded_redis,
        "BOT_DATA_DIR": str(tmp_path / "data"),
        "BOT_WORKDIR": str(tmp_path),
        "BOT_GROUP_ONCALL": APPROVER,
    }.items():
        monkeypatch.setenv(name, value)
    asyncio.run(_on(embedded_redis, lambda client: client.flushdb()))
    return embedded_redis


async def _on(url: str, action: Any) -> Any:
    client = aioredis.Redis.from_url(url)
    try:
        return await action(client)
    finally:
        await client.aclose()


def _deploys(url: str, make_harness, clock, *, days_apart: float = 0, count: int = 1) -> None:
    async def run(client: aioredis.Redis) -> None:
        h = make_harness(client)
        for _ in range(count):
            h.conversation = f"operator/{h.clock.now().timestamp()}"
            await _approved_deploy(h)
            clock.advance(days_apart * 86400)

    asyncio.run(_on(url, run))


async def _alter(client: aioredis.Redis, position: int, **change: Any) -> None:
    """Rewrite the stream with record `position` altered (a stream entry cannot be edited in place)."""
    entries = await client.xrange(keys.AUDIT_LOG)
    await client.delete(keys.AUDIT_LOG)
    for index, (_, fields) in enumerate(entries, start=1):
        record = json.loads(fields[b"r"])
        await client.xadd(keys.AUDIT_LOG, {"r": json.dumps(record | change if index == position else record)})


def test_audit_verify_passes_then_names_a_record_altered_in_redis(cli_redis, make_harness, clock, capsys) -> None:
    _deploys(cli_redis, make_harness, clock)
    assert cli.main(["audit", "verify"]) == 0
    assert capsys.readouterr().out.strip() == "5 records, chain intact"
    asyncio.run(_on(cli_redis, lambda client: _alter(client, 2, who="cli:mallory")))
    assert cli.main(["audit", "verify"]) == 1
    out = capsys.readouterr().out
    assert "record 2 (position 2 of the stream): changed: its content does not match its hash" in out, out


def test_audit_verify_names_a_removed_record(cli_redis, make_harness, clock, capsys) -> None:
    _deploys(cli_redis, make_harness, clock)

    async def remove_third(client: aioredis.Redis) -> None:
        entries = await client.xrange(keys.AUDIT_LOG)
        await client.xdel(keys.AUDIT_LOG, entries[2][0])

    asyncio.run(_on(cli_redis, remove_third))
    assert cli.main(["audit", "verify"]) == 1
    assert "record 3 (position 3 of the stream): removed: record 3 missing before it" in capsys.readouterr().out


def test_audit_export_since_keeps_only_the_later_records(cli_redis, make_harness, clock, capsys) -> None:
    _deploys(cli_redis, make_harness, clock, days_apart=2, count=2)  # at 14:00 on the 23rd and on the 25th
    assert cli.main(["audit", "export", "--since", "2026-11-24T00:00:00Z", "--format", "jsonl"]) == 0
    later = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["n"] for r in later] == [6, 7, 8, 9, 10] and {r["at"][:10] for r in later} == {"2026-11-25"}
    assert cli.main(["audit", "export"]) == 0
    everything = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(everything) == 10 and verify(everything).intact, "what is exported verifies on its own"


def test_since_reads_durations_and_iso_times() -> None:
    now = datetime(2026, 11, 23, 14, 0, tzinfo=UTC)
    assert since("24h", now) == now - timedelta(hours=24) and since("30m", now) == now - timedelta(minutes=30)
    assert since("2026-11-20T08:00:00") == datetime(2026, 11, 20, 8, tzinfo=UTC)
    with pytest.raises(argparse.ArgumentTypeError, match="neither a duration"):
        since("yesterday")
