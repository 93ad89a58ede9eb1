"""The model seam (factor 1): natural language in, exactly one structured tool call out.

`Model` is the one-method port the agent depends on. `core.model.anthropic.AnthropicModel`
speaks to Claude; `core.model.commands.CommandModel` is the deterministic one.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

from core.domain.events import Event, Usage
from core.domain.reducer import ThreadState
from core.tools.registry import ToolRegistry


@dataclass(frozen=True)
class Choice:
    """The next step: a call of one tool with its (not yet validated) arguments."""

    tool: str
    args: Any
    reason: str = ""
    call_id: str = ""
    usage: Usage | None = None


@dataclass
class ModelRequest:
    """What a model chooses from: the thread's derived state, the tools it may call, who is asking, and
    the thread's events, which a model that reads them loads with `events()` (the command model and
    workflows that look only at `state` never pay for it)."""

    state: ThreadState
    tools: ToolRegistry
    caller: str
    history: list[Event] | None = None  # the events, when the caller has them already
    load_history: Callable[[], Awaitable[list[Event]]] | None = None

    async def events(self) -> list[Event]:
        if self.history is None:
            self.history = await self.load_history() if self.load_history is not None else []
        return self.history


class Model(Protocol):
    async def choose(self, request: ModelRequest) -> Choice: ...
