"""The project's exceptions, split by who has to act on them.

BotError
├── ToolError            the model sees it as a failed tool result and adapts
│   ├── InvalidToolCall  unknown tool or arguments that fail the tool's schema
│   └── ToolFailed       the executor ran and failed (exit code, HTTP status, timeout)
├── ConfigError          the operator must fix configuration or environment
├── ApprovalError        a decision that cannot be applied (unknown, decided, not allowed)
├── ConflictError        another writer appended first; reload and decide again
├── ThreadBusy           another worker holds the thread's lease; the trigger is tried again later
├── IllegalEvent         an event the thread's state does not allow (the reducer's table); never stored
└── TransientError       retryable
    ├── StoreUnavailable Redis cannot be reached
    ├── LLMError         the model API failed
    └── ChannelError     a chat platform or mail server failed (retried, honouring retry_after)
        └── DeliveryRefused  the platform will never take this message (a permanent refusal)
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from core.domain.events import Usage


class BotError(Exception):
    """Base of every error this project raises on purpose."""


class ToolError(BotError):
    """A tool call failed in a way the model should see and adapt to."""


class InvalidToolCall(ToolError):
    """The model (or a user command) asked for an unknown tool or gave bad arguments."""


class ToolFailed(ToolError):
    """The executor ran and the tool failed."""


class ConfigError(BotError):
    """Configuration or environment is wrong; the message names the setting and the fix."""


class ApprovalError(BotError):
    """An approval decision that cannot be applied; nothing was changed."""


class ConflictError(BotError):
    """The thread moved on since it was loaded (optimistic concurrency)."""


class ThreadBusy(BotError):
    """Another worker holds the thread's lease (it is working on it); leave the trigger for a later attempt."""


class IllegalEvent(BotError):
    """An event the thread does not allow in its state (`core.domain.reducer.TRANSITIONS`).

    A bug in the code that made the event, not something a person did: the reducer refuses it before
    any caller can store it. `status` is the thread's (", paused" added when paused) and `allowed`
    the event types it would have taken.
    """

    def __init__(self, message: str, *, event_type: str, status: str, allowed: tuple[str, ...]) -> None:
        super().__init__(message)
        self.event_type = event_type
        self.status = status
        self.allowed = allowed


class TransientError(BotError):
    """A failure worth retrying."""


class StoreUnavailable(TransientError):
    """Redis cannot be reached."""


class LLMError(TransientError):
    """The model API failed."""


class LLMRateLimited(LLMError):
    """The model API kept answering 429 after the client's retries."""


class LLMBadResponse(LLMError):
    """The model answered something that is not one usable tool call; the call still cost tokens."""

    def __init__(self, message: str, usage: Usage | None = None) -> None:
        super().__init__(message)
        self.usage = usage


class ChannelError(TransientError):
    """A chat platform or mail server failed; delivery is retried, after `retry_after` seconds when the
    platform said how long to wait (HTTP 429 `Retry-After`), else with backoff and jitter."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class DeliveryRefused(ChannelError):
    """The platform refused the message for good (missing scope, unknown channel): retrying cannot help."""
