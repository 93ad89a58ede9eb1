"""The core: events, the reducer, the agent loop, tools, the store and the bus. No channel code.

Its names load on first use (PEP 562): `from core import Bus` imports `core.bus` and what it needs,
not the whole core, so a command line that only parses its arguments starts fast.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from core.agent import Agent, Limits, Models
    from core.bus import Bus
    from core.commands import CommandModel, parse_command, parse_decision
    from core.errors import (
        ApprovalError,
        BotError,
        ChannelError,
        ConfigError,
        ConflictError,
        DeliveryRefused,
        InvalidToolCall,
        LLMError,
        StoreUnavailable,
        ToolError,
        ToolFailed,
        TransientError,
    )
    from core.events import (
        ApprovalRequest,
        ControlTrigger,
        DecisionReceipt,
        DecisionTrigger,
        Event,
        MessageTrigger,
        Notice,
        NoticeLevel,
        Outbound,
        Question,
        Reply,
        Trigger,
        Verdict,
    )
    from core.ids import new_id, thread_id_for
    from core.llm import Decision, Model, ModelRequest
    from core.ports import ChannelAdapter, Clock, Publisher, SystemClock
    from core.reducer import ThreadState, reduce, replay
    from core.store import ApprovalRecord, Store
    from core.tools import ToolRegistry, ToolSpec, load_tools
    from core.worker import Worker

_HOMES = {
    "Agent": "core.agent",
    "Limits": "core.agent",
    "Models": "core.agent",
    "Bus": "core.bus",
    "CommandModel": "core.commands",
    "parse_command": "core.commands",
    "parse_decision": "core.commands",
    "ApprovalError": "core.errors",
    "BotError": "core.errors",
    "ChannelError": "core.errors",
    "ConfigError": "core.errors",
    "ConflictError": "core.errors",
    "DeliveryRefused": "core.errors",
    "InvalidToolCall": "core.errors",
    "LLMError": "core.errors",
    "StoreUnavailable": "core.errors",
    "ToolError": "core.errors",
    "ToolFailed": "core.errors",
    "TransientError": "core.errors",
    "ApprovalRequest": "core.events",
    "ControlTrigger": "core.events",
    "DecisionReceipt": "core.events",
    "DecisionTrigger": "core.events",
    "Event": "core.events",
    "MessageTrigger": "core.events",
    "Notice": "core.events",
    "NoticeLevel": "core.events",
    "Outbound": "core.events",
    "Question": "core.events",
    "Reply": "core.events",
    "Trigger": "core.events",
    "Verdict": "core.events",
    "new_id": "core.ids",
    "thread_id_for": "core.ids",
    "Decision": "core.llm",
    "Model": "core.llm",
    "ModelRequest": "core.llm",
    "ChannelAdapter": "core.ports",
    "Clock": "core.ports",
    "Publisher": "core.ports",
    "SystemClock": "core.ports",
    "ThreadState": "core.reducer",
    "reduce": "core.reducer",
    "replay": "core.reducer",
    "ApprovalRecord": "core.store",
    "Store": "core.store",
    "ToolRegistry": "core.tools",
    "ToolSpec": "core.tools",
    "load_tools": "core.tools",
    "Worker": "core.worker",
}

__all__ = [
    "Agent",
    "ApprovalError",
    "ApprovalRecord",
    "ApprovalRequest",
    "BotError",
    "Bus",
    "ChannelAdapter",
    "ChannelError",
    "Clock",
    "CommandModel",
    "ConfigError",
    "ConflictError",
    "ControlTrigger",
    "Decision",
    "DecisionReceipt",
    "DecisionTrigger",
    "DeliveryRefused",
    "Event",
    "InvalidToolCall",
    "LLMError",
    "Limits",
    "MessageTrigger",
    "Model",
    "ModelRequest",
    "Models",
    "Notice",
    "NoticeLevel",
    "Outbound",
    "Publisher",
    "Question",
    "Reply",
    "Store",
    "StoreUnavailable",
    "SystemClock",
    "ThreadState",
    "ToolError",
    "ToolFailed",
    "ToolRegistry",
    "ToolSpec",
    "TransientError",
    "Trigger",
    "Verdict",
    "Worker",
    "load_tools",
    "new_id",
    "parse_command",
    "parse_decision",
    "reduce",
    "replay",
    "thread_id_for",
]


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'core' has no attribute {name!r}")
    value = getattr(importlib.import_module(home), name)
    globals()[name] = value  # once loaded, a plain attribute
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
