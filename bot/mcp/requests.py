"""Opening an MCP caller's request as a thread, and waiting for its decision.

Nothing here is kept in memory between calls: a request is a trigger on the inbox (a worker opens
the thread and its card), and waiting reads the approval record and the thread's log from Redis,
blocking on the log (`XREAD`) so a decision applied by any worker wakes the waiter at once.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

import redis.asyncio as aioredis

from core.domain import events as ev
from core.domain.errors import BotError
from core.domain.ids import new_id
from core.redis import keys
from core.redis.bus import Bus
from core.redis.store import Store
from core.runtime.external import AGENT, PREFIX, Decision, ExternalActions, ExternalRequest, outcome
from core.tools.registry import MAX_OPTIONS, ToolRegistry, args_hash

Progress = Callable[[float, str], Awaitable[None]]  # (seconds waited, what we wait for)
HANDLE_PREFIX = "mcp-"
WAKE_MS = 1000  # a decision through the API changes the record before the log: look again this often


class Refused(BotError):
    """The request is refused before anything is stored; the message says why and what to do."""


class Requests:
    """The MCP tools' operations, for one identity per call."""

    def __init__(
        self, *, store: Store, bus: Bus, redis: aioredis.Redis, tools: ToolRegistry, actions: ExternalActions | None
    ) -> None:
        self.store = store
        self.bus = bus
        self.redis = redis
        self.tools = tools
        self.actions = actions

    def _actions_for(self, identity: str) -> ExternalActions:
        if self.actions is None:
            raise Refused(
                "the bot has no approvers for MCP requests: add an [mcp_server] table with approvers to the tools "
                "file (BOT_TOOLS_FILE), or a group named oncall; nothing was asked"
            )
        if not self.actions.may_call(self.tools, identity):
            raise Refused(f"{identity} may not ask through the MCP server: that needs [mcp_server].callers")
        return self.actions

    async def request_approval(self, identity: str, action: str, arguments: dict[str, Any], reason: str) -> str:
        """Enqueue the request; returns its handle (the thread's id)."""
        actions = self._actions_for(identity)
        try:
            actions.tool_name(action)
        except ValueError as exc:
            raise Refused(f"{exc}; nothing was asked") from None
        asked = ExternalRequest(kind="approval", action=action, arguments=arguments, reason=reason.strip())
        return await self._launch(identity, asked, actions)

    async def ask_human(self, identity: str, question: str, options: list[str]) -> str:
        actions = self._actions_for(identity)
        if not question.strip():
            raise Refused("the question is empty; nothing was asked")
        if len(options) > MAX_OPTIONS or len(set(options)) != len(options) or any(len(o) > 75 for o in options):
            raise Refused(f"options: up to {MAX_OPTIONS} different choices of up to 75 characters; nothing was asked")
        asked = ExternalRequest(kind="question", question=question.strip(), options=options)
        return await self._launch(identity, asked, actions)

    async def _launch(self, identity: str, asked: ExternalRequest, actions: ExternalActions) -> str:
        handle = HANDLE_PREFIX + new_id()
        trigger = ev.MessageTrigger(
            id=new_id(),
            channel=actions.config.channel,
            conversation=actions.config.conversation,
            sender=identity,
            text=asked.text(identity),
            agent=AGENT,
            thread_id=handle,
            dedup_key=f"mcp:{handle}",
        )
        await self.bus.publish(trigger)
        return handle

    async def decision(self, identity: str, handle: str, arguments: dict[str, Any] | None = None) -> Decision:
        """The request's decision now; refused when it is another identity's or `arguments` differ."""
        return (await self._read(identity, handle, arguments))[1]

    async def _read(self, identity: str, handle: str, arguments: dict[str, Any] | None) -> tuple[int, Decision]:
        if not handle.startswith(HANDLE_PREFIX):
            raise Refused(f"{handle[:60]!r} is not a handle this server gave; it looks like {HANDLE_PREFIX}<id>")
        state, decision = await outcome(self.store, handle)
        if state.seq and state.requester != identity and not self.tools.is_member(identity, self.tools.access.admins):
            raise Refused(f"{handle} is not a request of {identity}; only its caller (or an admin) may read it")
        changed = arguments is not None and args_hash(PREFIX + decision.action, arguments) != decision.args_hash
        if changed and decision.status == "approved":
            raise Refused(
                f"approval {decision.approval_id} is for other arguments than these: it answers only for "
                f"{decision.arguments}. Do not run {decision.action} with these; request approval for them"
            )
        return state.seq, decision

    async def wait(
        self,
        identity: str,
        handle: str,
        *,
        seconds: float,
        every: float,
        progress: Progress,
        arguments: dict[str, Any] | None = None,
    ) -> Decision:
        """The decision as soon as there is one, else after `seconds` the request as it stands; `progress`
        is told what it waits for when that changes, and at least every `every` seconds."""
        started = time.monotonic()
        said, told = "", started
        while True:
            seq, decision = await self._read(identity, handle, arguments)
            now = time.monotonic()
            if decision.final or now - started >= seconds:
                return decision
            if decision.message != said or now - told >= every:
                said, told = decision.message, now
                await progress(now - started, said)
            block = max(1, int(min(WAKE_MS, (seconds - (now - started)) * 1000)))
            # Wakes as soon as the thread records anything after what was read (the decision, the card).
            await self.redis.xread({keys.thread_log(handle): f"{seq}-0"}, count=1, block=block)
