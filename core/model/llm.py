"""The model seam (factor 1): natural language in, exactly one structured tool call out.

`Model` is the one-method port the agent depends on. `core.model.anthropic.AnthropicModel`
speaks to Claude; `core.model.commands.CommandModel` is the deterministic one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
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
    state: ThreadState
    tools: ToolRegistry
    caller: str
    history: list[Event] = field(default_factory=list)


class Model(Protocol):
    needs_history: bool

    async def choose(self, request: ModelRequest) -> Choice: ...
