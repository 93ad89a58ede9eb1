"""Log context (thread, channel, agent, trigger) carried by contextvars, and a JSON formatter.

`scope` binds a trigger's fields for as long as it is handled; `bind` adds what is learnt on the way
(the thread, its agent). `ContextFilter`, on the handler, copies them onto every record, with the
active trace's id when tracing (`core.obs.tracing`); `JsonFormatter` writes them, and the fields a line
passes itself with `extra=` (the step line: `step`, `tool`, `outcome`, `duration_ms`).
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import logging
from collections.abc import Iterator
from datetime import UTC, datetime

from core.obs import tracing

FIELDS = ("thread_id", "channel", "agent", "trigger_id")
EXTRA_FIELDS = ("trace_id", "step", "tool", "outcome", "duration_ms")
_context: contextvars.ContextVar[tuple[tuple[str, str], ...]] = contextvars.ContextVar("bot_log_context", default=())


def bind(**fields: str) -> None:
    """Add fields to every log record of the current task (and tasks it starts)."""
    merged = dict(_context.get()) | {k: v for k, v in fields.items() if v}
    _context.set(tuple(merged.items()))


def clear() -> None:
    _context.set(())


@contextlib.contextmanager
def scope(**fields: str) -> Iterator[None]:
    """Only these fields (and what is bound inside) for the block; what was bound before comes back after."""
    token = _context.set(())
    try:
        bind(**fields)
        yield
    finally:
        _context.reset(token)


def fields() -> dict[str, str]:
    """The fields bound now."""
    return dict(_context.get())


class ContextFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        for name, value in _context.get():
            setattr(record, name, value)
        if trace_id := tracing.trace_id():
            record.trace_id = trace_id
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, the bound context and the line's own fields."""

    def format(self, record: logging.LogRecord) -> str:
        line = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        line |= {name: getattr(record, name) for name in FIELDS + EXTRA_FIELDS if hasattr(record, name)}
        if record.exc_info:
            line["error"] = self.formatException(record.exc_info)
        return json.dumps(line)
