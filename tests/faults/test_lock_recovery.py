"""A target lock whose holder's worker is killed mid-tool is released by the crash recovery, not by its TTL."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.domain import events as ev
from core.redis.locks import Holder, Locks
from tests.faults.cluster import eventually
from tests.faults.harness import EFFECT_SCRIPT, StartCluster, of_type, tools_toml

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(60)]


def _tools() -> str:
    """The suite's tools, and `migrate`: gated by ops, one call per database at a time, slow, not idempotent."""
    effect = f'"{{python}}", "{EFFECT_SCRIPT}", "{{data_dir}}/effects.log", "{{call_id}}", "{{thread_id}}"'
    migrate = f"""
[tools.migrate]
description = "Migrate a database; ops approve, one migration per database at a time."
executor = {{ kind = "command", argv = [{effect}, "migrate:{{db}}", "{{seconds}}"] }}
approval = {{ required = true, approvers = ["group:ops"], lock = "db/{{db}}" }}
[tools.migrate.parameters]
type = "object"
required = ["db", "seconds"]
additionalProperties = false
properties.db = {{ type = "string" }}
properties.seconds = {{ type = "number", minimum = 0 }}
"""
    return tools_toml() + migrate


async def test_a_lock_held_by_a_killed_workers_tool_is_released_by_crash_recovery(
    tmp_path: Path, start_cluster: StartCluster
) -> None:
    """SIGKILL the worker inside the locked `migrate`: another takes its trigger over, records the tool as
    interrupted, and the lock goes with it; meanwhile another thread was refused the same target."""
    tools = tmp_path / "lock_tools.toml"
    tools.write_text(_tools())
    cluster = await start_cluster(2, BOT_TOOLS_FILE=str(tools))
    locks = Locks(cluster.client)
    victim = await cluster.say("/migrate orders 30", "victim")
    assert await cluster.bus.publish(cluster.decision(await cluster.approval_requested(victim), "cli:alice"))
    effect = await cluster.effect_of("migrate:orders")
    holder = await locks.holder("db/orders")
    assert holder is not None and (holder.thread_id, holder.call_id) == (victim, effect.call_id)

    other = await cluster.say("/migrate orders 0", "other")
    await cluster.settled(other, "done")
    [refusal] = [o for o in await cluster.outbox() if isinstance(o, ev.Reply) and o.thread_id == other]
    assert refusal.text.startswith(f"migrate on db/orders is locked: thread {victim} holds it since ")

    await cluster.workers.by_pid(effect.worker_pid).crash()
    await cluster.settled(victim, "awaiting_human")

    async def released() -> bool:
        return await locks.holder("db/orders") is None and await locks.held(victim) == {}

    await eventually(released, "the interrupted call's lock released")
    events = await cluster.audit(victim)
    [error] = of_type(events, ev.ToolErrorEvent)
    assert (error.kind, error.call_id) == ("interrupted", effect.call_id)

    await cluster.say("/migrate orders 0", "other")  # the target is free again
    await cluster.settled(other, "awaiting_approval")
    now = await locks.holder("db/orders")
    assert isinstance(now, Holder) and now.thread_id == other
    assert [e for e in await cluster.effects() if e.thread_id == victim] == [effect], "nothing ran twice"
