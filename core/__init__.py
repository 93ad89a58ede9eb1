"""The core: events, the reducer, the agent loop, tools, the store and the bus. No channel code."""

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
