"""What holds a gated call back before it may ask for approval or run: change freezes, closed windows and
another thread's lock on the same target. Ungated calls are never held.

- Freezes and windows (`core.domain.calendar`, config/calendar.toml). With the policy's `freeze = "refuse"`
  (the default) a gated call in a freeze, or outside every allowed window, is refused: the thread records
  the call and a `rejected` error, and its channel is told the freeze's name, until when, and what to do;
  nothing runs, no approval is asked, the turn ends. The same holds when an approved call is about to
  start. With `freeze = "override"` it asks for approval, the call recording the freeze it overrides
  (`ToolCall.freeze`, `freeze_until`), and the approval also needs one from `freeze_override`.
- Target locks (`core.redis.locks`). A policy's `lock = "{service}/{environment}"` names the target. The
  lock is taken when the call asks for approval (or when it starts, if it asked none) and renewed when it
  starts; `release`, at the end of every `Loop.advance`, lets go of what the thread no longer holds (the
  call done, rejected, expired, or recovered after its worker died). Its TTL covers everything dying.
"""

from __future__ import annotations

from pathlib import Path

from core.domain import events as ev
from core.domain.calendar import Calendar, Freeze, load_calendar
from core.domain.people import when
from core.domain.reducer import ThreadState
from core.redis.locks import Holder, Locks
from core.runtime.run import Run
from core.tools.registry import ToolRegistry, ToolSpec


class Holds:
    def __init__(self, calendar: Calendar, locks: Locks | None, tools: ToolRegistry, console_url: str = "") -> None:
        self.calendar = calendar
        self.locks = locks
        self.tools = tools
        self.console_url = console_url.rstrip("/")  # BOT_PUBLIC_URL: a refusal links to the holding thread

    def frozen(self, spec: ToolSpec, run: Run) -> Freeze | None:
        """The freeze (or closed window) that holds a gated call of `spec` now, or None."""
        return self.calendar.frozen(spec.name, run.clock.now())

    async def admit(self, run: Run, call: ev.ToolCall, spec: ToolSpec) -> ev.ToolCall | None:
        """The gated call to ask approval for (with the freeze it overrides, if any), or None: it was refused
        (recorded, the channel told, the turn ended)."""
        policy, frozen = spec.policy(call.args), self.frozen(spec, run)
        if frozen is not None and policy.freeze == "refuse":
            await self._refuse(run, call, frozen_text(spec.name, frozen))
            return None
        ttl = policy.expires_in + spec.timeout
        if refusal := await self._lock(run, spec, call.call_id, call.args, ttl):
            await self._refuse(run, call, refusal)
            return None
        if frozen is None:
            return call
        run.say(
            f"{held_by(spec.name, frozen)}. This tool may be run in a freeze with an override: besides its "
            f"approvers, the request needs an approval from {self.tools.describe(policy.freeze_override)}."
        )
        return call.model_copy(update={"freeze": frozen.name, "freeze_until": frozen.ends})

    async def before_run(self, run: Run, spec: ToolSpec, call_id: str, args: dict[str, object]) -> str | None:
        """Why a gated call must not start now after all, or None; it renews (or takes) its lock."""
        policy = spec.policy(args)
        if not policy.applies(args):
            return None
        frozen, call = self.frozen(spec, run), run.state.last_call
        overridden = call is not None and call.call_id == call_id and bool(call.freeze)
        if frozen is not None and (policy.freeze == "refuse" or not overridden):
            # Asked for before the freeze began, an approval carries no override: it does not start in one.
            return frozen_text(spec.name, frozen, starting=True)
        return await self._lock(run, spec, call_id, args, spec.timeout)

    async def release(self, run: Run) -> None:
        """Let go of the locks of calls the thread held when the run began (or locked since) and holds no more."""
        if self.locks is None:
            return
        now = held_calls(run.state)
        ended = [tool for call, tool in held_calls(run.began).items() if call not in now]
        if run.locked - now.keys() or any(self._may_lock(tool) for tool in ended):
            await self.locks.release(run.state.thread_id, keep=list(now))
        run.began, run.locked = run.state, run.locked & now.keys()

    def _may_lock(self, tool: str) -> bool:
        return tool not in self.tools or any(policy.lock for policy in self.tools.get(tool).every_policy)

    async def _lock(self, run: Run, spec: ToolSpec, call_id: str, args: dict[str, object], ttl: float) -> str | None:
        target = spec.policy(args).lock_key(args)
        if not target or self.locks is None:
            return None
        holder = Holder(run.state.thread_id, call_id, spec.name, run.clock.now())
        other = await self.locks.take(target, holder, ttl)
        if other is None:
            run.locked.add(call_id)
            return None
        link = f" ({self.console_url}/#thread/{other.thread_id})" if self.console_url else ""
        return (
            f"{spec.name} on {target} is locked: thread {other.thread_id}{link} holds it since {when(other.since)} "
            f"for its {other.tool} call, waiting for approval or running. Nothing ran and no approval was asked; "
            "ask again when that thread is done with it"
        )

    async def _refuse(self, run: Run, call: ev.ToolCall, text: str) -> None:
        """Record the call refused, tell the thread's channel why, and end the turn."""
        run.send(ev.Reply, text=text)
        await run.commit(
            call, run.error(call.call_id, call.tool, text, "rejected"), ev.AgentReply(**run.meta(), text=text)
        )


def calendar_for(path: Path, tools: ToolRegistry) -> Calendar:
    """The calendar file, each tool it names checked against `tools` (an MCP server's by its namespace)."""
    return load_calendar(path, lambda name: name in tools or (tools.mcp is not None and tools.mcp.declares(name)))


def held_calls(state: ThreadState) -> dict[str, str]:
    """Call id -> tool: the calls the thread holds now (its pending approval's, its running tool's)."""
    held = {}
    if state.pending_approval is not None:
        held[state.pending_approval.call_id] = state.pending_approval.tool
    if state.running is not None:
        held[state.running.call_id] = state.running.tool
    return held


def held_by(tool: str, frozen: Freeze) -> str:
    """`deploy is held by the change freeze year_end until <when>`: what holds it and until when."""
    why = f" ({frozen.reason})" if frozen.reason else ""
    if frozen.kind == "freeze":
        until = f" until {when(frozen.ends)}" if frozen.ends else ""
        return f"{tool} is held by the change freeze {frozen.name}{why}{until}"
    opens = f"; the next opens at {when(frozen.ends)}" if frozen.ends else "; none opens again"
    return f"{tool} runs only inside the allowed window {frozen.name}{why}{opens}"


def frozen_text(tool: str, frozen: Freeze, *, starting: bool = False) -> str:
    """The refusal: what holds the call, until when, and what to do."""
    done = "It was approved but did not run" if starting else "Nothing ran and no approval was asked"
    if frozen.reopens is None:
        return f"{held_by(tool, frozen)}. {done}; the calendar (config/calendar.toml) never allows it again"
    then = " (when the freezes and windows that follow allow it)" if frozen.reopens != frozen.ends else ""
    return f"{held_by(tool, frozen)}. {done}; ask again after {when(frozen.reopens)}{then}"
