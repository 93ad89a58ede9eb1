"""Talk to a cluster of real workers the way channels do, and audit what they left in Redis.

`audit` is the suite's one definition of "nothing lost, nothing doubled" for a thread:
contiguous sequence numbers, unique event ids, the snapshot equal to a replay of the log,
each trigger applied once, each call started at most once (an idempotent tool may be started
again after a crash, by design) and ended at most once, each approval decided once, and the
side-effect file agreeing with the log.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import redis.asyncio as aioredis

from bot.redis_server import RedisServer
from core.domain import events as ev
from core.domain.ids import new_id, thread_id_for
from core.domain.reducer import ThreadState, replay
from core.redis import keys
from core.redis.bus import Bus
from core.redis.store import ApprovalRecord, Store
from tests.eventually import eventually
from tests.faults.cluster import Workers

EFFECT_SCRIPT = Path(__file__).resolve().parent / "effect.py"
REQUESTER = "cli:carol"
APPROVERS = ("cli:alice", "cli:bob")
IDEMPOTENT = {"read"}
CHANNEL = "cli"
E = TypeVar("E")

READ_FLOW = ["thread_started", "user_message", "tool_call", "tool_started", "tool_result", "tool_call", "agent_reply"]
INTERRUPTED_FLOW = ["thread_started", "user_message", "tool_call", "tool_started", "tool_error", "escalated"]
SHIPPED_FLOW = [
    "thread_started",
    "user_message",
    "tool_call",
    "approval_requested",
    "approval_decided",
    "tool_started",
    "tool_result",
    "tool_call",
    "agent_reply",
]
EXPIRED_FLOW = [
    "thread_started",
    "user_message",
    "tool_call",
    "approval_requested",
    "approval_decided",
    "tool_error",
    "tool_call",
    "agent_reply",
]


def tools_toml(expires_in: int = 3600) -> str:
    """`read` (idempotent, Python), `slow_write` (not idempotent, writes then sleeps), `ship` (gated by ops)."""
    effect = f'"{{python}}", "{EFFECT_SCRIPT}", "{{data_dir}}/effects.log", "{{call_id}}", "{{thread_id}}"'
    return f"""
[groups]
ops = ["cli:alice", "cli:bob"]

[tools.read]
description = "Read something; idempotent and instant."
idempotent = true
executor = {{ kind = "python", target = "tests.faults.tools:read" }}
parameters = {{ type = "object", required = ["target"], additionalProperties = false, properties.target = {{ type = "string" }} }}

[tools.slow_write]
description = "Append a line naming the call to a file, then sleep; not idempotent."
executor = {{ kind = "command", argv = [{effect}, "slow_write:{{target}}", "{{seconds}}"] }}
[tools.slow_write.parameters]
type = "object"
required = ["target", "seconds"]
additionalProperties = false
properties.target = {{ type = "string" }}
properties.seconds = {{ type = "number", minimum = 0 }}

[tools.ship]
description = "Ship a release; ops must approve."
executor = {{ kind = "command", argv = [{effect}, "ship:{{target}}", "0"] }}
approval = {{ required = true, approvers = ["group:ops"], allow_self = false, expires_in = {expires_in} }}
parameters = {{ type = "object", required = ["target"], additionalProperties = false, properties.target = {{ type = "string" }} }}
"""


@dataclass(frozen=True)
class Effect:
    """One line of the side-effect file: a tool really ran."""

    call_id: str
    thread_id: str
    label: str
    worker_pid: int
    tool_pid: int


@dataclass
class Cluster:
    server: RedisServer
    client: aioredis.Redis
    store: Store
    bus: Bus
    workers: Workers
    data_dir: Path

    # --- what channels do --------------------------------------------------------------------

    def message(self, text: str, conversation: str, sender: str = REQUESTER, **fields: Any) -> ev.MessageTrigger:
        return ev.MessageTrigger(
            id=new_id(), channel=CHANNEL, conversation=conversation, sender=sender, text=text, **fields
        )

    async def say(self, text: str, conversation: str, sender: str = REQUESTER) -> str:
        """Publish a message; returns its thread id."""
        assert await self.bus.publish(self.message(text, conversation, sender))
        return thread_id_for(CHANNEL, conversation)

    def decision(self, approval_id: str, sender: str, approve: bool = True) -> ev.DecisionTrigger:
        return ev.DecisionTrigger(
            id=new_id(),
            channel=CHANNEL,
            conversation=f"{sender}/dm",
            sender=sender,
            approval_id=approval_id,
            decision="approve" if approve else "reject",
        )

    # --- what the test reads back --------------------------------------------------------------

    async def state(self, thread_id: str) -> ThreadState:
        return await self.store.load_state(thread_id)

    async def settled(self, thread_id: str, *statuses: str, within: float = 20) -> ThreadState:
        """Wait until the thread's status is one of `statuses`."""

        async def check() -> ThreadState | None:
            state = await self.state(thread_id)
            return state if state.status in statuses else None

        try:
            return await eventually(check, f"thread {thread_id} reaching {statuses}", within)
        except AssertionError as exc:
            state = await self.state(thread_id)
            raise AssertionError(f"{exc}; it is {state.status}\n{await self.workers.tails()}") from None

    async def approval_requested(self, thread_id: str) -> str:
        state = await self.settled(thread_id, "awaiting_approval")
        assert state.pending_approval is not None
        return state.pending_approval.approval_id

    async def approval(self, approval_id: str) -> ApprovalRecord:
        record = await self.store.get_approval(approval_id)
        assert record is not None
        return record

    async def effects(self) -> list[Effect]:
        path = self.data_dir / "effects.log"
        if not await asyncio.to_thread(path.exists):
            return []
        lines = (await asyncio.to_thread(path.read_text)).splitlines()
        return [Effect(p[0], p[1], p[2], int(p[3]), int(p[4])) for p in (line.split() for line in lines)]

    async def effect_of(self, label: str) -> Effect:
        """Wait until the tool labelled `label` is running (its side effect is there)."""

        async def check() -> Effect | None:
            return next((e for e in await self.effects() if e.label == label), None)

        return await eventually(check, f"tool {label} starting")

    async def outbox(self) -> list[ev.Outbound]:
        _, items = await self.bus.follow(CHANNEL, "0-0", block_ms=0)
        return items

    async def inbox_settled(self) -> bool:
        """Every inbox entry was delivered and acknowledged."""
        stream: Any = await self.client.xinfo_stream(keys.INBOX)
        groups: Any = await self.client.xinfo_groups(keys.INBOX)
        group = next(g for g in groups if g["name"] == keys.WORKERS_GROUP.encode())
        return bool(group["pending"] == 0 and group["last-delivered-id"] == stream["last-generated-id"])

    async def dead_letters(self) -> list[dict[bytes, bytes]]:
        entries: Any = await self.client.xrange("inbox:dead")
        return [fields for _, fields in entries]

    # --- the audit -------------------------------------------------------------------------------

    async def audit(self, thread_id: str, flow: list[str] | None = None) -> list[ev.Event]:
        """Check one thread's log for lost, duplicated or doubly-applied events; return the events."""
        entries: Any = await self.client.xrange(keys.thread_log(thread_id))
        events = await self.store.load_events(thread_id)
        where = f"thread {thread_id}: {[e.type for e in events]}"
        seqs = [entry_id.decode() for entry_id, _ in entries]
        assert seqs == [f"{n}-0" for n in range(1, len(seqs) + 1)], f"{where}: sequence numbers {seqs}"
        assert int(await self.client.hget(keys.thread_meta(thread_id), "seq") or 0) == len(events), where
        assert _repeated(e.id for e in events) == [], f"{where}: duplicate event ids"
        assert await self.state(thread_id) == replay(events, thread_id=thread_id), f"{where}: snapshot != replay"
        triggers = [e.trigger_id for e in events if isinstance(e, ev.UserMessage | ev.HumanAnswer)]
        triggers += [e.trigger_id for e in events if isinstance(e, ev.ApprovalDecided) and e.trigger_id]
        assert _repeated(triggers) == [], f"{where}: a trigger applied twice"
        assert _repeated(e.call_id for e in events if isinstance(e, ev.ToolCall)) == [], f"{where}: call ids"
        started = [e for e in events if isinstance(e, ev.ToolStarted) and e.tool not in IDEMPOTENT]
        assert _repeated(e.call_id for e in started) == [], f"{where}: a non-idempotent tool started twice"
        ended = [e.call_id for e in events if isinstance(e, ev.ToolResult | ev.ToolErrorEvent)]
        assert _repeated(ended) == [], f"{where}: a call ended twice"
        assert _repeated(e.approval_id for e in events if isinstance(e, ev.ApprovalDecided)) == [], where
        ran = [e for e in await self.effects() if e.thread_id == thread_id]
        assert _repeated(e.call_id for e in ran) == [], f"{where}: a tool's side effect happened twice: {ran}"
        assert {e.call_id for e in ran} <= {e.call_id for e in started}, f"{where}: a side effect without a record"
        if flow is not None:
            assert [e.type for e in events] == flow, where
        return events


StartCluster = Callable[..., Awaitable[Cluster]]


def _repeated(items: Any) -> list[Any]:
    return [item for item, n in Counter(items).items() if n > 1]


def of_type(events: list[ev.Event], kind: type[E]) -> list[E]:
    return [event for event in events if isinstance(event, kind)]
