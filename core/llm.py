"""The model seam (factor 1): natural language in, exactly one structured tool call out.

`Model` is the one-method port the agent depends on. `core.anthropic_model.AnthropicModel`
speaks to Claude; `core.commands.CommandModel` is the deterministic one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from core.events import Event
from core.reducer import ThreadState
from core.tools import ToolRegistry


@dataclass(frozen=True)
class Usage:
    prompt_name: str
    prompt_hash: str
    model: str
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    latency_ms: float = 0.0


@dataclass(frozen=True)
class Decision:
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

    async def decide(self, request: ModelRequest) -> Decision: ...
