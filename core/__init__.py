"""The core: events, the reducer, the agent loop, tools, the store and the bus. No channel code.

Its names load on first use (PEP 562): `from core import Bus` imports `core.redis.bus` and what it needs,
not the whole core, so a command line that only parses its arguments starts fast.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from core.domain import events as events
    from core.domain import people as people
    from core.domain.backoff import Backoff
    from core.domain.durations import words
    from core.domain.errors import (
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
    from core.domain.events import (
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
        SnoozeTrigger,
        Trigger,
        Verdict,
    )
    from core.domain.ids import new_id, thread_id_for
    from core.domain.ports import ChannelAdapter, Clock, Publisher, SystemClock
    from core.domain.reducer import ThreadState, reduce, replay
    from core.model.commands import CommandModel, as_command, parse_command, parse_decision, snooze_seconds
    from core.model.function import FunctionModel
    from core.model.llm import Choice, Model, ModelRequest
    from core.redis.bus import Bus
    from core.redis.store import ApprovalRecord, Store
    from core.runtime.delivery import deliver
    from core.runtime.threads import Threads
    from core.runtime.worker import Worker
    from core.tools.edits import as_text, form_changes, form_fields
    from core.tools.registry import ToolRegistry, ToolSpec, load_tools

_HOMES = {
    "Backoff": "core.domain.backoff",
    "Threads": "core.runtime.threads",
    "Bus": "core.redis.bus",
    "deliver": "core.runtime.delivery",
    "CommandModel": "core.model.commands",
    "as_command": "core.model.commands",
    "FunctionModel": "core.model.function",
    "parse_command": "core.model.commands",
    "parse_decision": "core.model.commands",
    "snooze_seconds": "core.model.commands",
    "ApprovalError": "core.domain.errors",
    "BotError": "core.domain.errors",
    "ChannelError": "core.domain.errors",
    "ConfigError": "core.domain.errors",
    "ConflictError": "core.domain.errors",
    "DeliveryRefused": "core.domain.errors",
    "InvalidToolCall": "core.domain.errors",
    "LLMError": "core.domain.errors",
    "StoreUnavailable": "core.domain.errors",
    "ToolError": "core.domain.errors",
    "ToolFailed": "core.domain.errors",
    "TransientError": "core.domain.errors",
    "ApprovalRequest": "core.domain.events",
    "ControlTrigger": "core.domain.events",
    "DecisionReceipt": "core.domain.events",
    "DecisionTrigger": "core.domain.events",
    "Event": "core.domain.events",
    "MessageTrigger": "core.domain.events",
    "Notice": "core.domain.events",
    "NoticeLevel": "core.domain.events",
    "Outbound": "core.domain.events",
    "Question": "core.domain.events",
    "Reply": "core.domain.events",
    "SnoozeTrigger": "core.domain.events",
    "Trigger": "core.domain.events",
    "Verdict": "core.domain.events",
    "new_id": "core.domain.ids",
    "thread_id_for": "core.domain.ids",
    "Choice": "core.model.llm",
    "Model": "core.model.llm",
    "ModelRequest": "core.model.llm",
    "ChannelAdapter": "core.domain.ports",
    "Clock": "core.domain.ports",
    "Publisher": "core.domain.ports",
    "SystemClock": "core.domain.ports",
    "ThreadState": "core.domain.reducer",
    "reduce": "core.domain.reducer",
    "replay": "core.domain.reducer",
    "ApprovalRecord": "core.redis.store",
    "Store": "core.redis.store",
    "ToolRegistry": "core.tools.registry",
    "as_text": "core.tools.edits",
    "words": "core.domain.durations",
    "form_changes": "core.tools.edits",
    "form_fields": "core.tools.edits",
    "ToolSpec": "core.tools.registry",
    "load_tools": "core.tools.registry",
    "Worker": "core.runtime.worker",
}

__all__ = [
    "ApprovalError",
    "ApprovalRecord",
    "ApprovalRequest",
    "Backoff",
    "BotError",
    "Bus",
    "ChannelAdapter",
    "ChannelError",
    "Choice",
    "Clock",
    "CommandModel",
    "ConfigError",
    "ConflictError",
    "ControlTrigger",
    "DecisionReceipt",
    "DecisionTrigger",
    "DeliveryRefused",
    "Event",
    "FunctionModel",
    "InvalidToolCall",
    "LLMError",
    "MessageTrigger",
    "Model",
    "ModelRequest",
    "Notice",
    "NoticeLevel",
    "Outbound",
    "Publisher",
    "Question",
    "Reply",
    "SnoozeTrigger",
    "Store",
    "StoreUnavailable",
    "SystemClock",
    "ThreadState",
    "Threads",
    "ToolError",
    "ToolFailed",
    "ToolRegistry",
    "ToolSpec",
    "TransientError",
    "Trigger",
    "Verdict",
    "Worker",
    "as_command",
    "as_text",
    "deliver",
    "form_changes",
    "form_fields",
    "load_tools",
    "new_id",
    "parse_command",
    "parse_decision",
    "reduce",
    "replay",
    "snooze_seconds",
    "thread_id_for",
    "words",
]


# The event vocabulary as a module, for the channels: `from core import events as ev`; and the people
# and times in core's text, which each channel renders natively: `from core import people`.
_MODULES = {"events": "core.domain.events", "people": "core.domain.people"}


def __getattr__(name: str) -> Any:
    if name in _MODULES:
        module: Any = importlib.import_module(_MODULES[name])
        globals()[name] = module
        return module
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'core' has no attribute {name!r}")
    value = getattr(importlib.import_module(home), name)
    globals()[name] = value  # once loaded, a plain attribute
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
