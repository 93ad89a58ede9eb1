"""Log context (thread, channel, agent, trigger) carried by contextvars, and a JSON formatter."""

from __future__ import annotations

import contextvars
import json
import logging
from datetime import UTC, datetime

FIELDS = ("thread_id", "channel", "agent", "trigger_id")
_context: contextvars.ContextVar[tuple[tuple[str, str], ...]] = contextvars.ContextVar("bot_log_context", default=())


def bind(**fields: str) -> None:
    """Add fields to every log record of the current task (and tasks it starts)."""
    merged = dict(_context.get()) | {k: v for k, v in fields.items() if v}
    _context.set(tuple(merged.items()))


def clear() -> None:
    _context.set(())


class ContextFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        for name, value in _context.get():
            setattr(record, name, value)
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, and the bound context."""

    def format(self, record: logging.LogRecord) -> str:
        line = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        line |= {name: getattr(record, name) for name in FIELDS if hasattr(record, name)}
        if record.exc_info:
            line["error"] = self.formatException(record.exc_info)
        return json.dumps(line)
